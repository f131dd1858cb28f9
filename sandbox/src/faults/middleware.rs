//! Carries out a request's fault plan around the handler, in the contract's order: latency,
//! then hang, then error, then the effect (with decline or idempotent replay), then drop.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::FaultTable;
use super::counters::FaultKind;
use crate::endpoints;
use crate::http::ApiError;
use crate::server::ConnectionKill;

/// A hung request gives up after this long, by dropping its connection unanswered.
const HANG_CAP: Duration = Duration::from_secs(600);
/// Largest body read before hanging (see [`hang`]).
const HANG_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Request marker: the payment handler must store a new payment as declined.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ForceDecline;

/// Response marker: the handler did turn a payment into a decline (it was new and would
/// otherwise have completed), so the ledger counts it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeclineApplied;

/// Middleware for a service's contract routes (installed with `route_layer`, so the matched
/// route is known and `/health` and `/_sandbox/*` never pass through it).
pub(crate) async fn inject(
    State(table): State<Arc<FaultTable>>,
    mut request: Request,
    next: Next,
) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| endpoints::find(table.service(), request.method(), path.as_str()));
    let Some(endpoint) = endpoint else {
        return next.run(request).await;
    };
    let counters = table.counters();
    counters.count_call(endpoint);
    let plan = table.plan(endpoint);
    let kill = request.extensions().get::<ConnectionKill>().cloned();

    if let Some(delay) = plan.delay {
        counters.count_fault(FaultKind::Latency);
        tokio::time::sleep(delay).await;
    }
    if plan.hang {
        counters.count_fault(FaultKind::Hang);
        return hang(&table, request, kill).await;
    }
    if let Some(status) = plan.error {
        counters.count_fault(FaultKind::Error);
        return injected_error(status);
    }
    if plan.decline {
        request.extensions_mut().insert(ForceDecline);
    }
    let key = plan
        .honor_idempotency_key
        .then(|| request.headers().get("idempotency-key"))
        .flatten()
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let response = match key {
        Some(key) => {
            let (response, replayed) = table
                .idempotency()
                .once(endpoint, &key, next.run(request))
                .await;
            if replayed {
                counters.count_fault(FaultKind::IdempotentReplay);
            }
            response
        }
        None => next.run(request).await,
    };
    if response.extensions().get::<DeclineApplied>().is_some() {
        counters.count_fault(FaultKind::Decline);
    }
    if plan.drop_response {
        counters.count_fault(FaultKind::DropResponse);
        return drop_connection(kill).await;
    }
    response
}

/// Never answers. The body is read first because hyper only notices a client hanging up
/// once it has nothing left to read; then the client giving up cancels this future with its
/// connection, which is what a real hung upstream looks like.
async fn hang(table: &FaultTable, request: Request, kill: Option<ConnectionKill>) -> Response {
    let _ = axum::body::to_bytes(request.into_body(), HANG_BODY_LIMIT).await;
    tokio::select! {
        () = tokio::time::sleep(HANG_CAP) => {}
        () = table.shutdown().wait() => {}
    }
    drop_connection(kill).await
}

/// Asks the connection task to close the socket, and never produces the answer meanwhile.
async fn drop_connection(kill: Option<ConnectionKill>) -> Response {
    match kill {
        Some(kill) => kill.fire(),
        None => tracing::warn!("cannot drop a connection not served by the sandbox server"),
    }
    std::future::pending().await
}

fn injected_error(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut response = ApiError::new(
        status,
        format!("{reason} (fault injected by the platform sandbox)"),
    )
    .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
