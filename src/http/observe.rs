//! Per-request observability: a span carrying the request id (and the order id once
//! known) that continues the caller's trace, an access log line, and the HTTP metrics
//! labelled by route template.

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::telemetry::{metrics, propagation};

/// The label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

fn route_of(request: &Request<Body>) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or(UNMATCHED)
}

/// Wraps `router` in the request span (`method`, `route`, `request_id`, and `order_id`
/// once the handler knows it; continuing the caller's trace), the access log line and the
/// HTTP metrics.
pub fn observed(router: Router) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request<Body>| {
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let span = tracing::info_span!(
                "request",
                method = %request.method(),
                route = route_of(request),
                request_id,
                order_id = tracing::field::Empty,
            );
            propagation::adopt_remote_parent(&span, request.headers());
            span
        })
        .on_request(())
        .on_response(DefaultOnResponse::new().level(Level::INFO))
        // 502/504 answers are the outcome of a downstream failure, already logged by the
        // saga; a 5xx is worth a warning here, not an error.
        .on_failure(DefaultOnFailure::new().level(Level::WARN));
    router
        .layer(axum::middleware::from_fn(record_metrics))
        .layer(trace)
}

/// Records `http_requests_total` and `http_request_duration_seconds`, and runs the
/// request with the caller's trace (see `propagation::IncomingTrace`).
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = route_of(&request).to_owned();
    let method = request.method().clone();
    let started = Instant::now();
    let trace = propagation::IncomingTrace::of(request.headers());
    let response = trace.continue_in(next.run(request)).await;
    metrics::http_request(method, route, response.status().as_u16(), started.elapsed());
    response
}

/// Adds the order id to the current request span, so every later log line carries it.
pub fn record_order_id(id: &crate::domain::ids::OrderId) {
    tracing::Span::current().record("order_id", tracing::field::display(id));
}
