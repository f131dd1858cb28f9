//! Errors a client can get, each with its status code and a FastAPI-shaped body. Unexpected
//! errors are logged with their cause and answered with an opaque 500.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::validation::{FieldError, LocPart};

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body has these problems (422, FastAPI's list shape).
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    /// Query parameters with these problems (422, located under `query`).
    #[error("query validation failed")]
    QueryValidation(Vec<FieldError>),
    /// The body is not JSON (422, FastAPI's `json_invalid`).
    #[error("malformed JSON: {message}")]
    MalformedJson { offset: usize, message: String },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("request body too large")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    BadRequest(String),
    /// The same idempotency key came with another request (422).
    #[error("{0}")]
    KeyReused(String),
    /// The first request with this key is still running (409 with `Retry-After`).
    #[error("a request with this idempotency key is still in progress")]
    KeyInProgress,
    #[error("Order not found")]
    OrderNotFound,
    /// A downstream service is known to be down: nothing was done (503 + `Retry-After`).
    #[error("{service} service unavailable")]
    Unavailable {
        service: &'static str,
        retry_after: std::time::Duration,
    },
    /// The operator action does not apply to the order now (409).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = |status: StatusCode, text: String| {
            (status, Json(json!({ "detail": text }))).into_response()
        };
        match self {
            Self::Validation(errors) => validation_response("body", errors),
            Self::QueryValidation(errors) => validation_response("query", errors),
            Self::MalformedJson { offset, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"detail": [{
                    "loc": ["body", offset],
                    "msg": format!("JSON decode error: {message}"),
                    "type": "json_invalid",
                }]})),
            )
                .into_response(),
            Self::UnsupportedMediaType => detail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json".to_owned(),
            ),
            Self::PayloadTooLarge { limit } => detail(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body is larger than {limit} bytes"),
            ),
            Self::BadRequest(text) => detail(StatusCode::BAD_REQUEST, text),
            Self::KeyReused(text) => detail(StatusCode::UNPROCESSABLE_ENTITY, text),
            Self::KeyInProgress => {
                let mut response = detail(
                    StatusCode::CONFLICT,
                    "A request with this idempotency key is still in progress; retry later"
                        .to_owned(),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Self::OrderNotFound => detail(StatusCode::NOT_FOUND, "Order not found".to_owned()),
            Self::Unavailable {
                service,
                retry_after,
            } => {
                let seconds = retry_after.as_secs().max(1);
                let mut response = detail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "The {service} service is unavailable (circuit breaker open); no order was created. Retry in {seconds} s."
                    ),
                );
                if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            Self::Conflict(text) => detail(StatusCode::CONFLICT, text),
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed unexpectedly");
                detail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error".to_owned(),
                )
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        Self::Internal(error.into())
    }
}

impl From<crate::saga::SagaError> for ApiError {
    fn from(error: crate::saga::SagaError) -> Self {
        Self::Internal(error.into())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::Internal(error.into())
    }
}

/// An order id from a path; anything that is not one names no order (404, as before).
pub fn order_id_of(text: &str) -> Result<crate::domain::ids::OrderId, ApiError> {
    text.parse().map_err(|_| ApiError::OrderNotFound)
}

/// FastAPI's `422` list, each location prefixed by where the field was (`body`, `query`).
fn validation_response(origin: &str, errors: Vec<FieldError>) -> Response {
    let list: Vec<_> = errors
        .into_iter()
        .map(|e| {
            let mut loc = vec![LocPart::from(origin)];
            loc.extend(e.loc);
            json!({"loc": loc, "msg": e.msg, "type": e.kind})
        })
        .collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "detail": list })),
    )
        .into_response()
}

/// FastAPI's answer to an unknown path.
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Not Found"}))).into_response()
}

/// FastAPI's answer to a known path with the wrong method.
pub async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"detail": "Method Not Allowed"})),
    )
        .into_response()
}
