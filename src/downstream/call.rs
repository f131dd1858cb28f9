//! One HTTP exchange with a downstream service, and what its failure means.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use super::breaker::{Admission, BreakerSettings, CircuitBreaker};
use crate::domain::ids::OrderId;
use crate::domain::order::Step;

/// Who a call is made for: sent as `Idempotency-Key: <order>:<action>` and `X-Request-Id`.
#[derive(Clone, Debug)]
pub struct CallContext {
    pub order_id: OrderId,
    pub request_id: String,
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

/// A pooled client for one service.
#[derive(Clone, Debug)]
pub struct ServiceClient {
    service: Step,
    base_url: String,
    http: reqwest::Client,
    timeout: Duration,
    breaker: Arc<CircuitBreaker>,
}

impl ServiceClient {
    pub fn new(
        service: Step,
        base_url: &str,
        timeout: Duration,
        breaker: BreakerSettings,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            service,
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
            timeout,
            breaker: Arc::new(CircuitBreaker::new(service, breaker)),
        })
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
        let result = self.exchange(method, path, body, action, ctx).await;
        self.breaker
            .record(result.as_ref().err().is_none_or(is_healthy_answer));
        result
    }

    async fn exchange<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        action: &str,
        ctx: &CallContext,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.base_url, path))
            .timeout(self.timeout)
            .header("Idempotency-Key", format!("{}:{}", ctx.order_id, action))
            .header("X-Request-Id", &ctx.request_id);
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut trace_headers = reqwest::header::HeaderMap::new();
        crate::telemetry::propagation::inject_current(&mut trace_headers);
        request = request.headers(trace_headers);
        let response = request.send().await.map_err(|e| self.classify(e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(|e| self.classify(e))?;
        if status.is_success() {
            return Ok((status, bytes));
        }
        Err(CallError::Status {
            service: self.service,
            status: status.as_u16(),
            detail: error_detail(&bytes),
            retry_after,
        })
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

    fn classify(&self, error: reqwest::Error) -> CallError {
        let service = self.service;
        if error.is_connect() {
            CallError::Unreachable {
                service,
                message: root_cause(&error),
            }
        } else if error.is_timeout() {
            CallError::Timeout { service }
        } else {
            CallError::ConnectionLost {
                service,
                message: root_cause(&error),
            }
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
