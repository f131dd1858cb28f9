//! `GET /orders/{id}/events`: the saga's event log, oldest first — the first place to look
//! when a customer asks what happened to an order.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, AppState, order_id_of};
use crate::domain::ids::OrderId;
use crate::domain::when;
use crate::store::OrderEvent;

/// One entry of an order's timeline.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// When it happened (RFC 3339, UTC, microseconds).
    #[schema(format = DateTime)]
    pub at: String,
    /// `create`, `reserve`, `payment`, `shipment`, `commit_reservation`, `refund_payment`,
    /// `release_reservation`, `cancel_shipment`, ...
    pub step: String,
    /// What came of it: `reserved`, `paid`, `retried`, `failed`, `unknown`, ...
    pub outcome: String,
    /// The try number of a downstream call.
    pub attempt: Option<u32>,
    /// The downstream service's HTTP status, if it answered.
    pub upstream_status: Option<u16>,
    /// How long the call took.
    pub duration_ms: Option<u64>,
    pub detail: Option<String>,
}

/// The answer of `GET /orders/{id}/events`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    #[schema(value_type = String, format = Uuid)]
    pub order_id: OrderId,
    pub events: Vec<EventView>,
}

impl From<OrderEvent> for EventView {
    fn from(e: OrderEvent) -> Self {
        Self {
            at: when::format(e.at),
            step: e.step,
            outcome: e.outcome,
            attempt: e.attempt,
            upstream_status: e.upstream_status,
            duration_ms: e.duration_ms,
            detail: e.detail,
        }
    }
}

#[utoipa::path(
    get,
    path = "/orders/{id}/events",
    tag = "orders",
    params(("id" = String, Path, description = "The order id")),
    responses(
        (status = 200, description = "The order's events, oldest first", body = Timeline),
        (status = 404, description = "No such order", body = super::schema::ErrorBody),
    )
)]
pub async fn timeline(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Timeline>, ApiError> {
    let id = order_id_of(&id)?;
    let store = state.saga.store();
    if store.find_order(id).await?.is_none() {
        return Err(ApiError::OrderNotFound);
    }
    let events = store.events(id).await?;
    Ok(Json(Timeline {
        order_id: id,
        events: events.into_iter().map(EventView::from).collect(),
    }))
}
