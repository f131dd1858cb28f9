//! The shipping service's HTTP routes.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ShipmentBook;
use super::book::{CreateError, Shipment, ShipmentChanges, ShipmentNotFound};
use crate::faults::FaultTable;
use crate::http::{ApiError, ApiJson};
use crate::ledger::ShippingLedger;
use crate::sync::lock;

#[derive(Clone)]
struct ShippingState {
    book: Arc<Mutex<ShipmentBook>>,
    faults: Arc<FaultTable>,
}

/// The contract endpoints (faults apply to these).
pub(crate) fn contract_routes(book: Arc<Mutex<ShipmentBook>>, faults: Arc<FaultTable>) -> Router {
    Router::new()
        .route("/shipments", get(list).post(create))
        .route("/shipments/{id}", get(show).put(update).delete(remove))
        .with_state(ShippingState { book, faults })
}

/// `GET /_sandbox/ledger`.
pub(crate) fn control_routes(book: Arc<Mutex<ShipmentBook>>, faults: Arc<FaultTable>) -> Router {
    Router::new()
        .route("/_sandbox/ledger", get(ledger))
        .with_state(ShippingState { book, faults })
}

/// The create body; the client's `status` (and any other field) is ignored: the service
/// decides the status.
#[derive(Deserialize)]
struct CreateShipment {
    id: String,
    order_id: String,
    address: Map<String, Value>,
    #[serde(default)]
    items: Vec<Value>,
}

/// The update body; every field optional, others (such as `id`) ignored.
#[derive(Deserialize)]
struct UpdateShipment {
    order_id: Option<String>,
    address: Option<Map<String, Value>>,
    items: Option<Vec<Value>>,
    status: Option<String>,
}

#[derive(Serialize)]
struct Deleted {
    deleted: bool,
    id: String,
}

async fn create(
    State(state): State<ShippingState>,
    ApiJson(request): ApiJson<CreateShipment>,
) -> Result<(StatusCode, Json<Shipment>), ApiError> {
    let shipment = Shipment {
        id: request.id,
        order_id: request.order_id,
        address: request.address,
        items: request.items,
        status: String::new(),
    };
    let created = lock(&state.book).create(shipment)?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn list(State(state): State<ShippingState>) -> Json<Vec<Shipment>> {
    Json(lock(&state.book).list())
}

async fn show(
    State(state): State<ShippingState>,
    Path(id): Path<String>,
) -> Result<Json<Shipment>, ApiError> {
    let shipment = lock(&state.book)
        .get(&id)
        .cloned()
        .ok_or(ShipmentNotFound)?;
    Ok(Json(shipment))
}

async fn update(
    State(state): State<ShippingState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpdateShipment>,
) -> Result<Json<Shipment>, ApiError> {
    let changes = ShipmentChanges {
        order_id: request.order_id,
        address: request.address,
        items: request.items,
        status: request.status,
    };
    let updated = lock(&state.book).update(&id, changes)?.clone();
    Ok(Json(updated))
}

async fn remove(
    State(state): State<ShippingState>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    lock(&state.book).delete(&id)?;
    Ok(Json(Deleted { deleted: true, id }))
}

async fn ledger(State(state): State<ShippingState>) -> Json<ShippingLedger> {
    let shipments = lock(&state.book).ledger_entries();
    let counters = state.faults.counters();
    Json(ShippingLedger {
        shipments,
        calls: counters.calls(),
        faults_injected: counters.faults(),
    })
}

impl From<CreateError> for ApiError {
    fn from(error: CreateError) -> Self {
        let status = match error {
            CreateError::AlreadyExists(_) => StatusCode::INTERNAL_SERVER_ERROR,
            CreateError::ProviderFailure => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, error.to_string())
    }
}

impl From<ShipmentNotFound> for ApiError {
    fn from(error: ShipmentNotFound) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, error.to_string())
    }
}
