//! Step 3: create the shipment. The shipping service rejects a second POST with the same
//! id, so before repeating one we ask with `GET /shipments/{id}` whether it went through.

use super::{Saga, events, failure_of, paused_by_breaker};
use crate::domain::order::{Failure, FailureKind, Order, Step};
use crate::domain::progress::Effect;
use crate::downstream::retry::retry;
use crate::downstream::{CallContext, CallError};
use crate::store::NewEvent;

pub(super) async fn run(
    saga: &Saga,
    order: &mut Order,
    ctx: &CallContext,
    resumed: bool,
    deadline_passed: bool,
) -> Vec<NewEvent> {
    if deadline_passed {
        return look_up_only(saga, order, ctx).await;
    }
    let shipping = &saga.downstream().shipping;
    let out = retry(
        saga.retry_policy(),
        |_| true,
        |attempt| {
            let order = &*order;
            async move {
                if (attempt > 1 || resumed)
                    && let Some(existing) = shipping.find(&order.shipment_id, ctx).await?
                {
                    return Ok(existing);
                }
                shipping
                    .create(
                        &order.shipment_id,
                        order.id,
                        &order.address,
                        &order.items,
                        ctx,
                    )
                    .await
            }
        },
    )
    .await;
    let last_error = out.attempts.iter().rev().find_map(|a| a.error.clone());
    match &out.result {
        Ok(record) if record.is_shipped() => {
            let events = events::of_attempts("shipment", &out, "shipped");
            order.shipped();
            events
        }
        Ok(_) => {
            // Found as failed on a retry: report the provider's answer to the first try.
            let events = events::of_attempts("shipment", &out, "failed");
            let failure = match last_error {
                Some(CallError::Status { status, detail, .. }) => Failure {
                    step: Step::Shipping,
                    kind: FailureKind::UpstreamError,
                    detail,
                    upstream_status: Some(status),
                },
                _ => Failure {
                    step: Step::Shipping,
                    kind: FailureKind::UpstreamError,
                    detail: "Shipping provider reported failure for shipment".to_owned(),
                    upstream_status: None,
                },
            };
            order.fail(failure, Effect::Done);
            events
        }
        Err(error) if !out.any_outcome_unknown() && paused_by_breaker(order, error) => {
            events::of_attempts("shipment", &out, "not_sent")
        }
        Err(error) => {
            // A lost answer means the shipment may exist; cancelling it is then part of
            // the compensation. Errors that are answers (5xx, 4xx) created nothing usable.
            let effect = if out.any_outcome_unknown() {
                Effect::Unknown
            } else {
                Effect::None
            };
            let outcome = if effect == Effect::Unknown {
                "unknown"
            } else {
                "failed"
            };
            let events = events::of_attempts("shipment", &out, outcome);
            order.fail(failure_of(Step::Shipping, error), effect);
            events
        }
    }
}

/// Past the deadline no shipment is created any more; only one that an earlier run may
/// have created is looked for. Without one, the order is compensated.
async fn look_up_only(saga: &Saga, order: &mut Order, ctx: &CallContext) -> Vec<NewEvent> {
    let shipping = &saga.downstream().shipping;
    let out = retry(
        saga.retry_policy(),
        |_| true,
        |_| shipping.find(&order.shipment_id, ctx),
    )
    .await;
    match &out.result {
        Ok(Some(record)) if record.is_shipped() => {
            let events = events::of_attempts("shipment", &out, "shipped");
            order.shipped();
            events
        }
        Ok(found) => {
            let events = events::of_attempts("shipment", &out, "deadline_passed");
            let failure = Failure {
                step: Step::Shipping,
                kind: if found.is_some() {
                    FailureKind::UpstreamError
                } else {
                    FailureKind::Timeout
                },
                detail: if found.is_some() {
                    "Shipping provider reported failure for shipment".to_owned()
                } else {
                    "The order's deadline passed before the shipment was created".to_owned()
                },
                upstream_status: None,
            };
            let effect = if found.is_some() {
                Effect::Done
            } else {
                Effect::None
            };
            order.fail(failure, effect);
            events
        }
        Err(error) => {
            let events = events::of_attempts("shipment", &out, "unknown");
            order.fail(failure_of(Step::Shipping, error), Effect::Unknown);
            events
        }
    }
}
