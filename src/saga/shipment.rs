//! Step 3: create the shipment. The shipping service rejects a second POST with the same
//! id, so before repeating one we ask with `GET /shipments/{id}` whether it went through.

use super::{Saga, events, failure_of};
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
) -> Vec<NewEvent> {
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
