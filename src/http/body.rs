//! Reads a JSON request body: checks its media type and size before any parsing, so a
//! client always gets our error shape rather than a framework default.

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, header};
use bytes::Bytes;

use super::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The raw bytes of a JSON body of at most [`MAX_BODY_BYTES`].
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers();
        if let Some(content_type) = headers.get(header::CONTENT_TYPE)
            && !is_json(content_type.to_str().unwrap_or_default())
        {
            return Err(ApiError::UnsupportedMediaType);
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
            return Err(ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            })?;
        Ok(Self(bytes))
    }
}

/// `application/json` or any `application/*+json`, with parameters such as `charset`.
/// A missing `Content-Type` is read as JSON, as FastAPI does.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
