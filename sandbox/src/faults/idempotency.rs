//! Answers remembered by `Idempotency-Key`, for the "honour `Idempotency-Key`" mode.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::sync::lock;

/// Set on every answer served from this store, first or replayed, so a human reading a
/// capture can tell the mode was on.
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// An endpoint index and the client's key.
type AnswerKey = (usize, String);
/// Filled by the first call with a key; later calls wait on it, then replay it.
type AnswerCell = Arc<OnceCell<StoredAnswer>>;

/// The first answer given per (endpoint, key). Never pruned: the sandbox lives as long as
/// one test run. A B-tree, like the services' records (`crate::records`): a `HashMap`
/// grows by copying all it holds, under this lock.
#[derive(Debug, Default)]
pub(crate) struct IdempotencyStore {
    answers: Mutex<BTreeMap<AnswerKey, AnswerCell>>,
}

#[derive(Debug, Clone)]
struct StoredAnswer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl IdempotencyStore {
    /// Runs `handle` unless an answer for `key` on `endpoint` exists, and returns that answer
    /// and whether it was replayed. Concurrent first calls with one key wait for a single
    /// effect; if the one running it is cancelled, the next waiter runs its own.
    pub(crate) async fn once<F>(&self, endpoint: usize, key: &str, handle: F) -> (Response, bool)
    where
        F: Future<Output = Response>,
    {
        let cell = lock(&self.answers)
            .entry((endpoint, key.to_owned()))
            .or_default()
            .clone();
        let mut ran = false;
        let answer = cell
            .get_or_init(|| {
                ran = true;
                async move { StoredAnswer::capture(handle.await).await }
            })
            .await;
        (answer.to_response(!ran), !ran)
    }
}

impl StoredAnswer {
    async fn capture(response: Response) -> Self {
        let (parts, body) = response.into_parts();
        // Handler bodies are in memory, so reading them cannot fail in practice; an empty
        // body is the least surprising thing to replay if it ever does.
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        Self {
            status: parts.status,
            content_type: parts.headers.get(CONTENT_TYPE).cloned(),
            body,
        }
    }

    fn to_response(&self, replayed: bool) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if let Some(content_type) = &self.content_type {
            headers.insert(CONTENT_TYPE, content_type.clone());
        }
        headers.insert(
            REPLAYED,
            HeaderValue::from_static(if replayed { "true" } else { "false" }),
        );
        response
    }
}
