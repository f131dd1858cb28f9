//! The payment service's HTTP routes.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::Number;

use super::PaymentBook;
use super::book::Payment;
use crate::faults::{DeclineApplied, FaultTable, ForceDecline};
use crate::http::{ApiError, ApiJson};
use crate::ledger::PaymentLedger;
use crate::sync::lock;

#[derive(Clone)]
struct PaymentState {
    book: Arc<Mutex<PaymentBook>>,
    faults: Arc<FaultTable>,
}

/// The contract endpoints (faults apply to these).
pub(crate) fn contract_routes(book: Arc<Mutex<PaymentBook>>, faults: Arc<FaultTable>) -> Router {
    Router::new()
        .route("/payments", post(create))
        .route("/payments/{id}", get(show))
        .route("/payments/{id}/refund", post(refund))
        .with_state(PaymentState { book, faults })
}

/// `GET /_sandbox/ledger`.
pub(crate) fn control_routes(book: Arc<Mutex<PaymentBook>>, faults: Arc<FaultTable>) -> Router {
    Router::new()
        .route("/_sandbox/ledger", get(ledger))
        .with_state(PaymentState { book, faults })
}

/// The create body; other fields (`currency`, ...) are ignored.
#[derive(Deserialize)]
struct CreatePayment {
    id: String,
    order_id: String,
    amount: Number,
    #[serde(default = "pending")]
    status: String,
}

fn pending() -> String {
    "pending".to_owned()
}

async fn create(
    State(state): State<PaymentState>,
    decline: Option<Extension<ForceDecline>>,
    ApiJson(request): ApiJson<CreatePayment>,
) -> Response {
    let payment = Payment {
        id: request.id,
        order_id: request.order_id,
        amount: request.amount,
        status: request.status,
    };
    let created = lock(&state.book).create(payment, decline.is_some());
    let mut response = (StatusCode::CREATED, Json(created.payment)).into_response();
    if created.declined_by_fault {
        response.extensions_mut().insert(DeclineApplied);
    }
    response
}

async fn show(
    State(state): State<PaymentState>,
    Path(id): Path<String>,
) -> Result<Json<Payment>, ApiError> {
    lock(&state.book)
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(not_found)
}

async fn refund(
    State(state): State<PaymentState>,
    Path(id): Path<String>,
) -> Result<Json<Payment>, ApiError> {
    lock(&state.book)
        .refund(&id)
        .cloned()
        .map(Json)
        .ok_or_else(not_found)
}

async fn ledger(State(state): State<PaymentState>) -> Json<PaymentLedger> {
    let payments = lock(&state.book).ledger_entries();
    let counters = state.faults.counters();
    Json(PaymentLedger {
        payments,
        calls: counters.calls(),
        faults_injected: counters.faults(),
    })
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Payment not found")
}
