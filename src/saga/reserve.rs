//! Step 1: reserve the stock. The real inventory service is not idempotent, so a reserve
//! whose answer was lost is never repeated blindly: it would take the stock twice.
//!
//! A reservation is saved while the payment and shipment calls already go on, so a run
//! resumed at this step (`resumed`) must reckon with a payment and a shipment the stopped
//! run may have made: if it has to undo the order, it refunds and cancels them too (both
//! by the ids chosen with the order; unknown ids are a harmless `404`).

use super::{Saga, events, failure_of, paused_by_breaker};
use crate::domain::order::{Failure, FailureKind, Order, Step};
use crate::domain::progress::Effect;
use crate::downstream::CallContext;
use crate::downstream::retry::retry;
use crate::store::NewEvent;
use crate::telemetry::metrics;

pub(super) async fn run(
    saga: &Saga,
    order: &mut Order,
    ctx: &CallContext,
    resumed: bool,
) -> Vec<NewEvent> {
    let replays_by_key = saga.inner.settings.inventory_honors_idempotency_key;
    if resumed && !replays_by_key {
        // A run that stopped at this step may have sent its reserve: we cannot ask the
        // inventory service, so a person has to check the stock.
        let failure = Failure {
            step: Step::Inventory,
            kind: FailureKind::Timeout,
            detail: "Reservation outcome unknown: the process driving this order stopped \
                     while reserving stock"
                .to_owned(),
            upstream_status: None,
        };
        let event = events::decision("reserve", "unknown", failure.detail.clone());
        metrics::reservation_outcome_unknown();
        fail_maybe_paid(order, failure, Effect::Unknown, resumed);
        return vec![event];
    }
    let inventory = &saga.downstream().inventory;
    let out = retry(
        saga.retry_policy(),
        |e| replays_by_key || !e.outcome_unknown(),
        |_| inventory.reserve(order.id, &order.items, ctx),
    )
    .await;
    match &out.result {
        Ok(reservation) => {
            let events = events::of_attempts("reserve", &out, "reserved");
            order.reserved(reservation.clone());
            events
        }
        Err(error) if paused_by_breaker(order, error) => {
            events::of_attempts("reserve", &out, "not_sent")
        }
        Err(error) => {
            // Any try, not just the last: where reserves replay, a try whose answer was
            // lost is followed by more, and a refusal of those (a 503 before the inventory
            // looked at them) says nothing of whether the lost one took the stock. Nor
            // does it of the stopped run's reserve, when resumed: only the inventory's own
            // answer to the key (a rejection) rules that one out.
            let stopped_run_may_have_reserved = resumed && !error.is_rejection();
            let effect = if out.any_outcome_unknown() || stopped_run_may_have_reserved {
                Effect::Unknown
            } else {
                Effect::None
            };
            let outcome = if effect == Effect::Unknown {
                "unknown"
            } else {
                "failed"
            };
            let events = events::of_attempts("reserve", &out, outcome);
            fail_maybe_paid(order, failure_of(Step::Inventory, error), effect, resumed);
            events
        }
    }
}

/// Fails the order at its reservation. When the run was resumed here, the stopped run
/// may have gone on to pay and ship while the reservation was being saved: both are then
/// undone with the rest.
fn fail_maybe_paid(order: &mut Order, failure: Failure, reservation: Effect, resumed: bool) {
    if resumed {
        order.progress.payment = Effect::Unknown;
        order.progress.shipment = Effect::Unknown;
    }
    order.fail(failure, reservation);
}
