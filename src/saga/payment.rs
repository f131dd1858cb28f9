//! Step 2: take the payment. Payments are idempotent by the id we chose, so every kind of
//! transient failure is retried with the same id. Past the order's deadline no payment is
//! taken any more; one that an earlier run may have taken is looked up instead.
//!
//! A taken payment is saved only with the shipment that follows it, so a run resumed at
//! this step (`resumed`) must reckon with a shipment the stopped run may have created: if
//! it cannot learn the payment and has to undo the order, it cancels that shipment too.

use super::{Saga, events, failure_of, paused_by_breaker};
use crate::domain::order::{Failure, FailureKind, Order, Step};
use crate::domain::progress::Effect;
use crate::downstream::CallContext;
use crate::downstream::payment::PaymentRecord;
use crate::downstream::retry::retry;
use crate::store::NewEvent;

pub(super) async fn run(
    saga: &Saga,
    order: &mut Order,
    ctx: &CallContext,
    resumed: bool,
) -> Vec<NewEvent> {
    let payment = &saga.downstream().payment;
    let out = retry(
        saga.retry_policy(),
        |_| true,
        |_| {
            payment.charge(
                &order.payment_id,
                order.id,
                order.total,
                order.currency.code(),
                ctx,
            )
        },
    )
    .await;
    match &out.result {
        Ok(record) => {
            let outcome = take_record(order, record, Some(201));
            events::of_attempts("payment", &out, outcome)
        }
        Err(error) if paused_by_breaker(order, error) => {
            events::of_attempts("payment", &out, "not_sent")
        }
        Err(error) => {
            // Only answers that prove nothing was stored rule a charge out; anything else is
            // refunded (a refund of an unknown payment id is a harmless 404).
            let no_charge = out.attempts.iter().all(|a| {
                a.error
                    .as_ref()
                    .is_some_and(|e| e.is_rejection() || e.not_sent())
            });
            // A stopped run's charge is ruled out by nothing we saw.
            let effect = if no_charge && !resumed {
                Effect::None
            } else {
                Effect::Unknown
            };
            let events = events::of_attempts("payment", &out, "failed");
            fail_maybe_shipped(order, failure_of(Step::Payment, error), effect, resumed);
            events
        }
    }
}

/// Past the deadline: looks up the payment an earlier run may have taken before it
/// stopped, instead of refunding blindly. A payment found taken drives the order on, to
/// the shipment (which past the deadline is only looked up, too); none means nothing was
/// charged, and the order is compensated (its stock released).
pub(super) async fn look_up_only(
    saga: &Saga,
    order: &mut Order,
    ctx: &CallContext,
    resumed: bool,
) -> Vec<NewEvent> {
    let payment = &saga.downstream().payment;
    let out = retry(
        saga.retry_policy(),
        |_| true,
        |_| payment.find(&order.payment_id, ctx),
    )
    .await;
    match &out.result {
        Ok(Some(record)) => {
            let outcome = take_record(order, record, None);
            events::of_attempts("payment", &out, outcome)
        }
        Ok(None) => {
            let failure = Failure {
                step: Step::Payment,
                kind: FailureKind::Timeout,
                detail: "The order's deadline passed before the payment was taken".to_owned(),
                upstream_status: None,
            };
            let mut events = events::of_attempts("payment", &out, "not_found");
            events.push(events::decision(
                "payment",
                "deadline_passed",
                failure.detail.clone(),
            ));
            order.fail(failure, Effect::None);
            events
        }
        Err(error) => {
            // We cannot tell whether an earlier run charged: refund in case it did (a
            // refund of an unknown payment id is a harmless 404).
            let events = events::of_attempts("payment", &out, "unknown");
            fail_maybe_shipped(
                order,
                failure_of(Step::Payment, error),
                Effect::Unknown,
                resumed,
            );
            events
        }
    }
}

/// Fails the order at its payment. When the run was resumed here and the payment may
/// have been taken, the stopped run may also have created the shipment (a payment is
/// saved only with it): it is then cancelled with the rest.
fn fail_maybe_shipped(order: &mut Order, failure: Failure, payment: Effect, resumed: bool) {
    if resumed && payment.may_have_happened() {
        order.progress.shipment = Effect::Unknown;
    }
    order.fail(failure, payment);
}

/// Records what the payment service's record of our payment says — paid: go on to
/// shipping; anything else: a decline — and returns the outcome for the event.
/// `upstream_status` is the HTTP status that carried the record, if it was a charge's.
fn take_record(
    order: &mut Order,
    record: &PaymentRecord,
    upstream_status: Option<u16>,
) -> &'static str {
    if record.is_paid() {
        order.paid(record.status.clone());
        return "paid";
    }
    order.progress.payment_status = Some(record.status.clone());
    let failure = Failure {
        step: Step::Payment,
        kind: FailureKind::Declined,
        detail: format!("Payment failed (status={})", record.status),
        upstream_status,
    };
    order.fail(failure, Effect::Done);
    "declined"
}
