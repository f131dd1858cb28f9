//! The inventory service's HTTP routes: request and answer bodies, and error mapping.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::Inventory;
use super::stock::{Released, ReservationNotFound, ReserveError, SEED_STOCK};
use crate::faults::FaultTable;
use crate::http::{ApiError, ApiJson, Issue, LocPart};
use crate::ledger::{InventoryLedger, Reservation, ReservedItem};
use crate::sync::lock;

/// Shared state of the inventory routes.
#[derive(Clone)]
struct InventoryState {
    inventory: Arc<Mutex<Inventory>>,
    faults: Arc<FaultTable>,
}

/// The contract endpoints (faults apply to these).
pub(crate) fn contract_routes(inventory: Arc<Mutex<Inventory>>, faults: Arc<FaultTable>) -> Router {
    Router::new()
        .route("/admin/seed", post(seed))
        .route("/reserve", post(reserve))
        .route("/reservations/{id}/commit", post(commit))
        .route("/reservations/{id}/release", post(release))
        .with_state(InventoryState { inventory, faults })
}

/// `GET /_sandbox/ledger`.
pub(crate) fn control_routes(inventory: Arc<Mutex<Inventory>>, faults: Arc<FaultTable>) -> Router {
    Router::new()
        .route("/_sandbox/ledger", get(ledger))
        .with_state(InventoryState { inventory, faults })
}

#[derive(Deserialize)]
struct ReserveRequest {
    #[serde(rename = "orderId")]
    order_id: String,
    items: Vec<ItemRequest>,
}

/// An item line as sent; other fields (`price`, ...) are ignored.
#[derive(Deserialize)]
struct ItemRequest {
    sku: String,
    qty: i64,
}

#[derive(Serialize)]
struct Seeded {
    seeded: bool,
    stock: BTreeMap<&'static str, u64>,
}

#[derive(Serialize)]
struct Committed {
    committed: bool,
    reservation: String,
}

#[derive(Serialize)]
struct ReleaseAnswer {
    released: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    idempotent: bool,
}

async fn seed(State(state): State<InventoryState>) -> Json<Seeded> {
    lock(&state.inventory).seed();
    Json(Seeded {
        seeded: true,
        stock: SEED_STOCK.into_iter().collect(),
    })
}

async fn reserve(
    State(state): State<InventoryState>,
    ApiJson(request): ApiJson<ReserveRequest>,
) -> Result<Json<Reservation>, ApiError> {
    let items = request
        .items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match u64::try_from(item.qty) {
            Ok(qty) if qty > 0 => Ok(ReservedItem { sku: item.sku, qty }),
            _ => Err(ApiError::invalid(Issue::in_body(
                [
                    LocPart::from("items"),
                    LocPart::from(index),
                    LocPart::from("qty"),
                ],
                "greater_than_equal",
                "Input should be greater than or equal to 1",
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let reservation = lock(&state.inventory).reserve(request.order_id, items)?;
    Ok(Json(reservation))
}

async fn commit(
    State(state): State<InventoryState>,
    Path(id): Path<String>,
) -> Result<Json<Committed>, ApiError> {
    lock(&state.inventory).commit(&id)?;
    Ok(Json(Committed {
        committed: true,
        reservation: id,
    }))
}

async fn release(
    State(state): State<InventoryState>,
    Path(id): Path<String>,
) -> Json<ReleaseAnswer> {
    let released = lock(&state.inventory).release(&id);
    Json(ReleaseAnswer {
        released: true,
        idempotent: released == Released::Unknown,
    })
}

async fn ledger(State(state): State<InventoryState>) -> Json<InventoryLedger> {
    let (stock, reservations) = {
        let inventory = lock(&state.inventory);
        (
            inventory.stock(),
            inventory.reservations().cloned().collect(),
        )
    };
    let counters = state.faults.counters();
    Json(InventoryLedger {
        stock,
        reservations,
        calls: counters.calls(),
        faults_injected: counters.faults(),
    })
}

impl From<ReserveError> for ApiError {
    fn from(error: ReserveError) -> Self {
        let status = match error {
            ReserveError::NoItems => StatusCode::BAD_REQUEST,
            ReserveError::UnknownSku(_) | ReserveError::InsufficientStock(_) => {
                StatusCode::CONFLICT
            }
        };
        ApiError::new(status, error.to_string())
    }
}

impl From<ReservationNotFound> for ApiError {
    fn from(error: ReservationNotFound) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, error.to_string())
    }
}
