//! The OpenAPI 3.1 document, built from the same route definitions the server runs (so it
//! cannot list a route the server lacks), and Swagger UI at `/docs`, served from assets
//! compiled into the binary.

use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

/// Title, description and tags; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-service",
        description = "Orders for an e-commerce platform: reserve stock, take payment, ship — as a durable saga with compensations. A drop-in for the platform's old order service.",
        license(name = "Apache-2.0"),
    ),
    tags(
        (name = "orders", description = "Create, read and list orders"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// Swagger UI at `/docs`, reading the document at `/openapi.json`.
pub fn swagger_ui(document: utoipa::openapi::OpenApi) -> SwaggerUi {
    SwaggerUi::new("/docs").url("/openapi.json", document)
}
