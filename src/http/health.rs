//! Liveness: exactly the old service's answer, byte for byte (key order included).

use axum::http::header;
use axum::response::IntoResponse;

const HEALTHY: &str = r#"{"status":"ok","service":"Order Service"}"#;

pub async fn health() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], HEALTHY)
}
