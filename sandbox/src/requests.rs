//! A bounded log of the most recent requests to a service's contract routes, with the
//! headers that tie a call to an order: `Idempotency-Key`, `X-Request-Id` and W3C
//! `traceparent`. Lets tests check what an order service actually sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderName;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::sync::lock;

/// How many requests are kept; older ones are forgotten.
pub const CAPACITY: usize = 1000;

/// One request as received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedRequest {
    /// `METHOD /route-template`, e.g. `POST /reserve`.
    pub endpoint: String,
    pub idempotency_key: Option<String>,
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
}

/// The body of `GET /_sandbox/requests`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentRequests {
    /// Oldest first.
    pub requests: Vec<RecordedRequest>,
}

/// The recorder of one service.
#[derive(Clone, Default)]
pub(crate) struct RequestLog {
    entries: Arc<Mutex<VecDeque<RecordedRequest>>>,
}

impl RequestLog {
    fn push(&self, entry: RecordedRequest) {
        let mut entries = lock(&self.entries);
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    fn snapshot(&self) -> RecentRequests {
        RecentRequests {
            requests: lock(&self.entries).iter().cloned().collect(),
        }
    }

    fn clear(&self) {
        lock(&self.entries).clear();
    }
}

/// Middleware (installed with `route_layer`) that records each contract request.
pub(crate) async fn record(
    State(log): State<RequestLog>,
    request: Request,
    next: Next,
) -> Response {
    log.push(recorded(&request));
    next.run(request).await
}

fn recorded(request: &Request) -> RecordedRequest {
    // Names as `HeaderName`s, not `&str`s, which would be parsed again at every lookup.
    static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
    static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
    let header = |name: &HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let endpoint = match request.extensions().get::<MatchedPath>() {
        Some(path) => format!("{} {}", request.method(), path.as_str()),
        None => format!("{} {}", request.method(), request.uri().path()),
    };
    RecordedRequest {
        endpoint,
        idempotency_key: header(&IDEMPOTENCY_KEY),
        request_id: header(&REQUEST_ID),
        traceparent: header(&TRACEPARENT),
    }
}

/// `GET /_sandbox/requests` (oldest first) and `DELETE /_sandbox/requests` (forget all).
pub(crate) fn routes(log: RequestLog) -> Router {
    Router::new()
        .route(
            "/_sandbox/requests",
            get(|State(log): State<RequestLog>| async move { Json(log.snapshot()) }).delete(
                |State(log): State<RequestLog>| async move {
                    log.clear();
                    Json(RecentRequests::default())
                },
            ),
        )
        .with_state(log)
}
