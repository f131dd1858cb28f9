//! Step 1: reserve the stock. The real inventory service is not idempotent, so a reserve
//! whose answer was lost is never repeated blindly: it would take the stock twice.

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
        order.fail(failure, Effect::Unknown);
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
            let effect = if error.outcome_unknown() {
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
            order.fail(failure_of(Step::Inventory, error), effect);
            events
        }
    }
}
