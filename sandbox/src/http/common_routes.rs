//! Routes every service answers the same way: `GET /health` and FastAPI's 404/405 bodies.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;

use super::ApiError;
use crate::Service;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    service: &'static str,
}

/// Adds `GET /health` and the not-found / method-not-allowed answers to a service's router.
/// Call it last, so the fallbacks cover every route already added.
pub(crate) fn with_common_routes(service: Service, router: Router) -> Router {
    let health = Health {
        status: "ok",
        service: service.health_name(),
    };
    router
        .route(
            "/health",
            get(move || async move {
                Json(Health {
                    status: health.status,
                    service: health.service,
                })
            }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "Not Found") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        })
}
