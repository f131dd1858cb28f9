//! Compensations, newest effect first: cancel an unconfirmed shipment, refund the payment,
//! release the stock. Each is retried; one that still fails is recorded as failed (and the
//! order says so) and tried again by a later run, never dropped.

use super::{Saga, events};
use crate::domain::order::Order;
use crate::domain::progress::CompensationAction;
use crate::downstream::payment::RefundOutcome;
use crate::downstream::retry::{Retried, retry};
use crate::downstream::{CallContext, CallError};
use crate::store::NewEvent;

pub(super) async fn run(saga: &Saga, order: &mut Order, ctx: &CallContext) -> Vec<NewEvent> {
    let pending: Vec<CompensationAction> = order
        .progress
        .compensations
        .iter()
        .filter(|c| !c.is_done())
        .map(|c| c.action)
        .collect();
    let mut all_events = Vec::new();
    for action in pending {
        let (events, attempts, error) = match action {
            CompensationAction::CancelShipment => cancel_shipment(saga, order, ctx).await,
            CompensationAction::RefundPayment => refund(saga, order, ctx).await,
            CompensationAction::ReleaseReservation => release(saga, order, ctx).await,
        };
        if attempts == 0 && error.is_some() {
            // Refused by an open breaker, never sent: not a try; the run pauses.
            order.progress.step_unsent = true;
            all_events.extend(events);
            continue;
        }
        if let Some(error) = &error {
            tracing::warn!(action = action.as_str(), %error, "compensation failed; it will be retried");
        }
        order.compensation_finished(action, attempts, error);
        all_events.extend(events);
    }
    all_events
}

type Outcome = (Vec<NewEvent>, u32, Option<String>);

fn outcome<T>(
    step: &'static str,
    out: &Retried<T>,
    done: &'static str,
    refused: Option<String>,
) -> Outcome {
    let error = match (&out.result, refused) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(_), Some(reason)) => Some(reason),
        (Ok(_), None) => None,
    };
    let events = events::of_attempts(step, out, if error.is_some() { "failed" } else { done });
    // Tries an open breaker refused were never sent and do not count.
    let sent = out
        .attempts
        .iter()
        .filter(|a| !matches!(a.error, Some(CallError::CircuitOpen { .. })))
        .count();
    (events, sent as u32, error)
}

async fn cancel_shipment(saga: &Saga, order: &Order, ctx: &CallContext) -> Outcome {
    let shipping = &saga.downstream().shipping;
    let out = retry(
        saga.retry_policy(),
        |_| true,
        |_| shipping.cancel(&order.shipment_id, ctx),
    )
    .await;
    // A shipment that was never created (a 404) is logged as such, not as cancelled.
    let done = if matches!(out.result, Ok(false)) {
        "not_found"
    } else {
        "cancelled"
    };
    outcome("cancel_shipment", &out, done, None)
}

async fn refund(saga: &Saga, order: &Order, ctx: &CallContext) -> Outcome {
    let payment = &saga.downstream().payment;
    let out = retry(
        saga.retry_policy(),
        |_| true,
        |_| payment.refund(&order.payment_id, ctx),
    )
    .await;
    let refused = match &out.result {
        Ok(RefundOutcome::Refused(status)) => {
            Some(format!("Refund attempt failed (status={status})"))
        }
        _ => None,
    };
    // A payment that was never taken (a 404) is logged as such, not as refunded.
    let done = if matches!(out.result, Ok(RefundOutcome::NoSuchPayment)) {
        "not_found"
    } else {
        "refunded"
    };
    outcome("refund_payment", &out, done, refused)
}

async fn release(saga: &Saga, order: &Order, ctx: &CallContext) -> Outcome {
    let Some(reservation) = order.reservation_id().cloned() else {
        return (Vec::new(), 0, None);
    };
    let inventory = &saga.downstream().inventory;
    let out: Retried<()> = retry(
        saga.retry_policy(),
        |_: &CallError| true,
        |_| inventory.release(&reservation, ctx),
    )
    .await;
    outcome("release_reservation", &out, "released", None)
}
