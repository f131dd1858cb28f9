//! The HTTP API: routes, the request-body extractor, error mapping and the order's JSON view.

mod body;
mod error;
mod health;
mod idempotency;
pub mod order_view;
mod orders;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub use error::ApiError;

use crate::saga::Saga;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub saga: Saga,
    /// How long an idempotency key protects its request.
    pub idempotency_ttl: Duration,
}

/// The service's routes, with request ids taken from `X-Request-Id` or generated, and
/// returned on every answer.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/orders", post(orders::create))
        .route("/orders/{id}", get(orders::get))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
