//! Which step results must be saved before the saga goes on.
//!
//! A save exists so that a run resuming after a crash knows what the stopped run did. That
//! is needed where the service cannot tell us again: the order must exist before the
//! reserve, and the reservation id must be saved right after it (the inventory service is
//! not idempotent and has no lookup). The next steps are different — a payment is
//! idempotent by the id we chose, a shipment can be looked up by its id, and committing a
//! reservation twice is harmless — so a resumed run repeats them safely and learns their
//! results again. Their saves are therefore deferred to the end of the run: a completed
//! order costs three writes (create, reserved, done) instead of five, which is most of
//! the database work per order.
//!
//! Failures, compensations and pauses are always saved at once, as is the settled order
//! before anyone is answered.

use crate::domain::order::Order;
use crate::domain::progress::SagaStep;

/// Whether the result of `done` (now recorded in `order`) may go unsaved until a later
/// step's save, because a run resuming before that save repeats it without harm.
pub(super) fn can_skip_save(done: SagaStep, order: &Order) -> bool {
    let next = order.progress.step;
    match done {
        SagaStep::Pay => next == SagaStep::Ship,
        SagaStep::Ship => next == SagaStep::CommitReservation,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::ReservationId;
    use crate::domain::order::{Failure, FailureKind, Step};
    use crate::domain::progress::Effect;

    fn reserved_order() -> Order {
        let body = br#"{"address": {"line1": "1 Main St", "city": "Pune", "country": "IN",
            "postalCode": "411001"}, "items": [{"sku": "SKU-001", "qty": 1, "price": 10}]}"#;
        let new = crate::domain::validation::parse_new_order(body).expect("valid order");
        let mut order = Order::create(new);
        order.reserved(ReservationId::from("r-1".to_owned()));
        order
    }

    #[test]
    fn the_reservation_is_always_saved() {
        let order = reserved_order();
        assert!(!can_skip_save(SagaStep::Reserve, &order));
    }

    #[test]
    fn payment_and_shipment_results_wait_for_the_next_save() {
        let mut order = reserved_order();
        order.paid("completed".to_owned());
        assert!(can_skip_save(SagaStep::Pay, &order));
        order.shipped();
        assert!(can_skip_save(SagaStep::Ship, &order));
    }

    #[test]
    fn failures_and_the_settled_order_are_saved_at_once() {
        let mut order = reserved_order();
        order.fail(
            Failure {
                step: Step::Payment,
                kind: FailureKind::Declined,
                detail: "declined".to_owned(),
                upstream_status: Some(201),
            },
            Effect::Done,
        );
        assert!(!can_skip_save(SagaStep::Pay, &order));
        let mut shipped = reserved_order();
        shipped.paid("completed".to_owned());
        shipped.shipped();
        shipped.reservation_commit_finished(true);
        assert!(!can_skip_save(SagaStep::CommitReservation, &shipped));
        assert!(!can_skip_save(SagaStep::Compensate, &order));
    }
}
