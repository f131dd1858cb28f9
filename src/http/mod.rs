//! The HTTP API: routes, the request-body extractor, error mapping, the order's JSON view,
//! observability, and the OpenAPI document built from the routes.

mod body;
mod cache;
mod error;
mod events;
mod health;
mod idempotency;
mod listing;
mod observe;
mod openapi;
mod operator;
pub mod ops;
pub mod order_view;
mod orders;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
use error::order_id_of;
pub use ops::Readiness;

use crate::saga::Saga;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub saga: Saga,
    /// How long an idempotency key protects its request.
    pub idempotency_ttl: Duration,
    pub readiness: Arc<Readiness>,
    pub metrics: PrometheusHandle,
    /// How long `POST /orders` waits for the saga before answering `202`.
    pub order_wait: Duration,
    /// Answers that can no longer change (replays, settled orders).
    pub cache: Arc<cache::AnswerCache>,
}

/// The routes and the OpenAPI document that describes them, from one definition.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .routes(routes!(orders::create, listing::list))
        .routes(routes!(orders::get))
        .routes(routes!(events::timeline))
        .routes(routes!(operator::retry))
        .routes(routes!(operator::resolve))
}

/// The OpenAPI document of the service.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, document) = documented_routes().split_for_parts();
    document
}

/// The service's routes, `/openapi.json` and `/docs`, with request ids taken from
/// `X-Request-Id` or generated (and returned on every answer), a span and metrics per
/// request.
pub fn router(state: AppState) -> Router {
    let (routes, document) = documented_routes().split_for_parts();
    let routes = routes
        .merge(openapi::swagger_ui(document))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state);
    observe::observed(routes)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// A JSON answer from an already serialized body.
fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.into(),
    )
        .into_response()
}
