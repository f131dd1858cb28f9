//! `/_sandbox/faults`: show, change and clear a service's fault settings at run time.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::Value;

use super::{FaultSettings, FaultSettingsError, FaultTable, FaultView};
use crate::http::{ApiError, Issue, LocPart, parse_json};

/// The fault admin routes of one service.
pub(crate) fn routes(table: Arc<FaultTable>) -> Router {
    Router::new()
        .route("/_sandbox/faults", get(show).post(update).delete(clear))
        .with_state(table)
}

async fn show(State(table): State<Arc<FaultTable>>) -> Json<FaultView> {
    Json(table.view())
}

/// Merges the body into the settings of its scope and answers the full configuration.
async fn update(
    State(table): State<Arc<FaultTable>>,
    body: Bytes,
) -> Result<Json<FaultView>, ApiError> {
    let body: Value = parse_json(&body)?;
    let settings = FaultSettings::parse(&body, table.service()).map_err(validation_error)?;
    table.apply(&settings).map(Json).map_err(validation_error)
}

async fn clear(State(table): State<Arc<FaultTable>>) -> Json<FaultView> {
    Json(table.clear())
}

fn validation_error(error: FaultSettingsError) -> ApiError {
    ApiError::Validation(
        error
            .errors
            .into_iter()
            .map(|e| {
                let path = (!e.field.is_empty()).then(|| LocPart::from(e.field));
                Issue::in_body(path, e.kind, e.message)
            })
            .collect(),
    )
}
