//! Liveness: exactly the old service's answer, byte for byte (key order included).

use axum::http::header;
use axum::response::IntoResponse;

const HEALTHY: &str = r#"{"status":"ok","service":"Order Service"}"#;

/// The process is alive. Says nothing of the database: that is `/ready`.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "Alive", body = super::schema::HealthBody))
)]
pub async fn health() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], HEALTHY)
}
