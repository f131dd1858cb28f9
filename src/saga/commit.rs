//! Step 4: commit the reservation of a completed order. Best effort, as in the old
//! service: the order is complete either way, and the outcome is logged.

use super::{Saga, events, paused_by_breaker};
use crate::domain::order::Order;
use crate::downstream::CallContext;
use crate::downstream::retry::retry;
use crate::store::NewEvent;

pub(super) async fn run(saga: &Saga, order: &mut Order, ctx: &CallContext) -> Vec<NewEvent> {
    let Some(reservation) = order.reservation_id().cloned() else {
        order.reservation_commit_finished(false);
        return Vec::new();
    };
    let inventory = &saga.downstream().inventory;
    let out = retry(
        saga.retry_policy(),
        |_| true,
        |_| inventory.commit(&reservation, ctx),
    )
    .await;
    if let Err(error) = &out.result
        && paused_by_breaker(order, error)
    {
        return events::of_attempts("commit_reservation", &out, "not_sent");
    }
    let committed = out.result.is_ok();
    if let Err(error) = &out.result {
        tracing::warn!(%error, reservation = %reservation, "reservation commit failed; the order stays completed");
    }
    let events = events::of_attempts(
        "commit_reservation",
        &out,
        if committed { "committed" } else { "failed" },
    );
    order.reservation_commit_finished(committed);
    events
}
