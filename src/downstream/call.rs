//! One HTTP exchange with a downstream service, and what its failure means.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::breaker::{Admission, BreakerSettings, CircuitBreaker};
use crate::domain::ids::OrderId;
use crate::domain::order::Step;

/// Who a call is made for: sent as `Idempotency-Key: <order>:<action>` and `X-Request-Id`,
/// with the trace context it was made in.
#[derive(Clone, Debug)]
pub struct CallContext {
    pub order_id: OrderId,
    pub request_id: String,
    /// `traceparent` (and `tracestate`) of calls made at [`CallContext::new`] (see
    /// `telemetry::propagation::inject_current`), rendered once: every call of a saga run
    /// is made in the same context, and rendering it per call (propagator lock, hex
    /// formatting, header parsing) was ~5 % of the tokio workers' instructions.
    trace_headers: HeaderMap,
}

impl CallContext {
    /// The context of calls made in the current span, which they name as their parent.
    pub fn new(order_id: OrderId, request_id: String) -> Self {
        let mut trace_headers = HeaderMap::new();
        crate::telemetry::propagation::inject_current(&mut trace_headers);
        Self {
            order_id,
            request_id,
            trace_headers,
        }
    }
}

/// How a call failed, classified by whether the request could have taken effect.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The connection could not be made: the request was never sent.
    #[error("{service} service unreachable: {message}")]
    Unreachable { service: Step, message: String },
    /// No answer in time; the request may have taken effect.
    #[error("Upstream timeout from {service} service")]
    Timeout { service: Step },
    /// The connection broke after the request was sent; it may have taken effect.
    #[error("Connection to {service} service lost before its answer: {message}")]
    ConnectionLost { service: Step, message: String },
    /// The service answered with an error status.
    #[error("{detail}")]
    Status {
        service: Step,
        status: u16,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// The service's circuit breaker is open: the call was not sent.
    #[error("{service} service is unavailable (circuit breaker open); retry in {} s", retry_after.as_secs().max(1))]
    CircuitOpen {
        service: Step,
        retry_after: Duration,
    },
    /// The service answered 2xx with a body we cannot read.
    #[error("Unreadable answer from {service} service: {message}")]
    BadResponse {
        service: Step,
        status: u16,
        message: String,
    },
}

impl CallError {
    /// The HTTP status the service answered, if it answered.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } | Self::BadResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the request may have taken effect although we have no answer.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::ConnectionLost { .. })
    }

    /// Whether waiting and trying again could help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::ConnectionLost { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::BadResponse { .. } | Self::CircuitOpen { .. } => false,
        }
    }

    /// Whether the service answered that it will not do it (a `4xx` other than `429`):
    /// the request was looked at and took no effect.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Self::Status { status, .. } if *status < 500 && *status != 429)
    }

    /// Whether the request certainly had no effect (it was never sent, or refused).
    pub fn not_sent(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::CircuitOpen { .. })
    }

    /// The delay the service asked for with `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            Self::CircuitOpen { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// The HTTP/1.1 client of one service: hyper's pooled client over plain TCP.
///
/// Why not reqwest: it parsed every call's URL three times (our string, then again for its
/// redirect policy and for the response's URL) and ran each call through redirect and
/// retry layers we never use: measured with callgrind, the tokio workers' instructions
/// per order fell by 22 % without it. The downstream services speak plain HTTP/1.1 (the
/// service never had TLS for them), and the timeout, pooling and error classification
/// below are all that was used of reqwest.
type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled client for one service.
#[derive(Clone, Debug)]
pub struct ServiceClient {
    service: Step,
    base_url: String,
    http: HttpClient,
    timeout: Duration,
    breaker: Arc<CircuitBreaker>,
}

/// How a call failed on the way, before it is classified by [`ServiceClient::classify`].
enum ExchangeError {
    /// The request could not be built: the base URL and path make no URI, or the body
    /// does not serialize. Nothing was sent.
    Request(String),
    /// Sending the request or reading the head of the answer failed.
    Send(hyper_util::client::legacy::Error),
    /// Reading the answer's body failed.
    Body(Box<dyn std::error::Error + Send + Sync>),
    /// No complete answer within the call's timeout.
    TimedOut,
}

impl ServiceClient {
    pub fn new(service: Step, base_url: &str, timeout: Duration, breaker: BreakerSettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout.min(Duration::from_secs(2))));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Self {
            service,
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
            timeout,
            breaker: Arc::new(CircuitBreaker::new(service, breaker)),
        }
    }

    pub fn service(&self) -> Step {
        self.service
    }

    /// How long this service's breaker stays open, if it is.
    pub fn breaker_open_for(&self) -> Option<Duration> {
        self.breaker.open_for()
    }

    /// Sends one request, unless the service's breaker is open, and returns the status and
    /// body of a 2xx answer, or the classified failure. `404` is returned as a `Status`
    /// error for the caller to interpret.
    pub async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        action: &str,
        ctx: &CallContext,
    ) -> Result<(StatusCode, Bytes), CallError> {
        if let Admission::Rejected { retry_after } = self.breaker.admit() {
            return Err(CallError::CircuitOpen {
                service: self.service,
                retry_after,
            });
        }
        let result = match self.request(method, path, body, action, ctx) {
            Ok(request) => self.exchange(request).await,
            Err(error) => Err(self.classify(error)),
        };
        self.breaker
            .record(result.as_ref().err().is_none_or(is_healthy_answer));
        result
    }

    /// Sends `request` and reads the whole answer, all within the call's timeout.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let answer = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(ExchangeError::Send)?;
            let (head, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| ExchangeError::Body(e.into()))?
                .to_bytes();
            Ok((head, bytes))
        };
        let (head, bytes) = tokio::time::timeout(self.timeout, answer)
            .await
            .unwrap_or(Err(ExchangeError::TimedOut))
            .map_err(|e| self.classify(e))?;
        let status = head.status;
        if status.is_success() {
            return Ok((status, bytes));
        }
        let retry_after = head
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(CallError::Status {
            service: self.service,
            status: status.as_u16(),
            detail: error_detail(&bytes),
            retry_after,
        })
    }

    /// The request of one call: `Idempotency-Key`, `X-Request-Id`, the trace context and,
    /// with a body, its JSON.
    fn request<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        action: &str,
        ctx: &CallContext,
    ) -> Result<Request<Full<Bytes>>, ExchangeError> {
        // The header names are parsed once, and the request is put together in place
        // rather than through `http::request::Builder`, which moves the whole request head
        // at each step: together ~13–20 % of the instructions of building a request
        // (callgrind, BENCHMARKS.md 2026-12-06 19:18).
        static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
        static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
        let invalid = |e: &dyn std::fmt::Display| ExchangeError::Request(e.to_string());
        let uri = Uri::try_from(format!("{}{}", self.base_url, path)).map_err(|e| invalid(&e))?;
        let content = match body {
            Some(body) => Bytes::from(serde_json::to_vec(body).map_err(|e| invalid(&e))?),
            None => Bytes::new(),
        };
        let key = HeaderValue::try_from(format!("{}:{}", ctx.order_id, action))
            .map_err(|e| invalid(&e))?;
        let request_id = HeaderValue::try_from(ctx.request_id.as_str()).map_err(|e| invalid(&e))?;
        let mut request = Request::new(Full::new(content));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.reserve(4 + ctx.trace_headers.len());
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        headers.insert(&IDEMPOTENCY_KEY, key);
        headers.insert(&REQUEST_ID, request_id);
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in &ctx.trace_headers {
            headers.insert(name, value.clone());
        }
        Ok(request)
    }

    /// Like [`send`](Self::send), decoding the answer's JSON.
    pub async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        action: &str,
        ctx: &CallContext,
    ) -> Result<T, CallError> {
        let (status, bytes) = self.send(method, path, body, action, ctx).await?;
        serde_json::from_slice(&bytes).map_err(|e| CallError::BadResponse {
            service: self.service,
            status: status.as_u16(),
            message: e.to_string(),
        })
    }

    /// What a failed exchange tells about the call's effect: a connection that could not
    /// be made (or a request that could not be built) means it was never sent; anything
    /// later may have reached the service.
    fn classify(&self, error: ExchangeError) -> CallError {
        let service = self.service;
        match error {
            ExchangeError::Request(message) => CallError::Unreachable { service, message },
            ExchangeError::Send(error) if error.is_connect() => CallError::Unreachable {
                service,
                message: root_cause(&error),
            },
            ExchangeError::Send(error) => CallError::ConnectionLost {
                service,
                message: root_cause(&error),
            },
            ExchangeError::Body(error) => CallError::ConnectionLost {
                service,
                message: root_cause(error.as_ref()),
            },
            ExchangeError::TimedOut => CallError::Timeout { service },
        }
    }
}

/// Whether a failed call still shows the service up, for its circuit breaker: any answer
/// but 5xx/429 (a 404 is fine), and `502`, by which a service reports that *its* upstream
/// failed (the shipping provider for an undeliverable address) while it works itself.
fn is_healthy_answer(error: &CallError) -> bool {
    match error {
        CallError::Status { status: 502, .. } => true,
        other => !other.is_transient(),
    }
}

/// A call's result with a `404` as `Ok(None)`: for a lookup, a cancel or a refund, "there
/// is no such thing" is an answer, not a failure.
pub fn found<T>(result: Result<T, CallError>) -> Result<Option<T>, CallError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(CallError::Status { status: 404, .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The `detail` of a FastAPI-style error body, or the body itself. It is stored with the
/// order, so a NUL character (which PostgreSQL cannot store) becomes U+FFFD.
fn error_detail(body: &[u8]) -> String {
    raw_detail(body).replace('\0', "\u{fffd}")
}

fn raw_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Detail {
        detail: serde_json::Value,
    }
    match serde_json::from_slice::<Detail>(body) {
        Ok(Detail {
            detail: serde_json::Value::String(text),
        }) => text,
        Ok(Detail { detail }) => detail.to_string(),
        Err(_) => String::from_utf8_lossy(body).chars().take(500).collect(),
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_is_read_from_fastapi_errors() {
        assert_eq!(
            error_detail(br#"{"detail":"SKU X not found"}"#),
            "SKU X not found"
        );
        assert_eq!(
            error_detail(br#"{"detail":[{"loc":["body"]}]}"#),
            r#"[{"loc":["body"]}]"#
        );
        assert_eq!(error_detail(b"Bad Gateway"), "Bad Gateway");
        assert_eq!(
            error_detail(br#"{"detail":"SKU A\u0000 not found"}"#),
            "SKU A\u{fffd} not found"
        );
        assert_eq!(error_detail(b"down\0"), "down\u{fffd}");
    }

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        let status = |status| CallError::Status {
            service: Step::Payment,
            status,
            detail: String::new(),
            retry_after: None,
        };
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(409).is_transient());
        assert!(
            CallError::Timeout {
                service: Step::Payment
            }
            .outcome_unknown()
        );
        assert!(
            !CallError::Unreachable {
                service: Step::Payment,
                message: String::new()
            }
            .outcome_unknown()
        );
    }

    #[test]
    fn a_404_is_found_to_be_absent_and_other_errors_stay_errors() {
        let status = |status| {
            Err::<u8, _>(CallError::Status {
                service: Step::Shipping,
                status,
                detail: String::new(),
                retry_after: None,
            })
        };
        assert_eq!(found(Ok::<_, CallError>(7)).unwrap(), Some(7));
        assert_eq!(found(status(404)).unwrap(), None);
        assert!(found(status(500)).is_err());
        assert!(found(status(409)).is_err());
    }
}
