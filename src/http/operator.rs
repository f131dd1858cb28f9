//! Operator actions on orders that wait for a person: drive one again now, or mark it
//! handled by hand. Both are recorded in the order's event log.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::body::JsonBytes;
use super::{ApiError, AppState, json_response, order_id_of, order_view};
use crate::domain::order::Order;
use crate::domain::validation::{FieldError, LocPart, NUL_MESSAGE, has_nul, is_blank};
use crate::domain::when;
use crate::saga::Start;
use crate::store::{NewEvent, StoreError};

/// Takes the order's lease for this process, or explains why not.
async fn claim(state: &AppState, id: &str) -> Result<Order, ApiError> {
    let id = order_id_of(id)?;
    let store = state.saga.store();
    if store.find_order(id).await?.is_none() {
        return Err(ApiError::OrderNotFound);
    }
    store
        .claim_one(id, state.saga.lease(), when::now())
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(
                "The order's saga is being driven by a process right now; try again later"
                    .to_owned(),
            )
        })
}

fn operator_event(outcome: &'static str, detail: String) -> NewEvent {
    NewEvent {
        at: when::now(),
        step: "operator",
        outcome,
        attempt: None,
        upstream_status: None,
        duration_ms: None,
        detail: Some(detail),
    }
}

/// Drives an order that needs attention (or whose compensation keeps failing) again now,
/// and answers with the order as it stands afterwards.
#[utoipa::path(
    post,
    path = "/orders/{id}/retry",
    tag = "operations",
    params(("id" = String, Path, description = "The order id")),
    responses(
        (status = 200, description = "Driven again; the order as it stands now", body = super::schema::OrderSchema),
        (status = 404, description = "No such order", body = super::schema::ErrorBody),
        (status = 409, description = "Nothing to retry, or another process drives it now", body = super::schema::ErrorBody),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut order = claim(&state, &id).await?;
    order
        .prepare_retry(state.saga.settings().inventory_honors_idempotency_key)
        .map_err(|e| ApiError::Conflict(format!("Cannot retry: {e}")))?;
    let event = operator_event(
        "retry",
        format!("driven again from step {}", order.progress.step.as_str()),
    );
    let request_id = format!("operator-{}", uuid::Uuid::new_v4().simple());
    let order = state
        .saga
        .spawn_drive(order, Start::Resumed, request_id, vec![event])
        .await??;
    Ok(json_response(StatusCode::OK, order_view::to_json(&order)))
}

/// The body of `POST /orders/{id}/resolve`.
#[derive(Deserialize, ToSchema)]
pub struct ResolveRequest {
    /// What was checked or done by hand (1 to 2,000 characters, not all blank).
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
    )]
    pub note: String,
}

/// Marks an order that needs attention as handled by hand, with a note; it takes the final
/// status its failure implies and automatic work on it ends.
#[utoipa::path(
    post,
    path = "/orders/{id}/resolve",
    tag = "operations",
    params(("id" = String, Path, description = "The order id")),
    request_body(content = ResolveRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Resolved; the order as it stands now", body = super::schema::OrderSchema),
        (status = 404, description = "No such order", body = super::schema::ErrorBody),
        (status = 409, description = "The order waits for nobody, or a process drives it now", body = super::schema::ErrorBody),
        (status = 422, description = "Missing or invalid note", body = super::schema::ValidationErrorBody),
    )
)]
pub async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let note = parse_note(&body)?;
    let mut order = claim(&state, &id).await?;
    order
        .resolve(note.clone())
        .map_err(|e| ApiError::Conflict(format!("Cannot resolve: {e}")))?;
    order.updated_at = when::now();
    let event = operator_event("resolved", note);
    match state
        .saga
        .store()
        .save_progress(&order, &[event], state.saga.lease())
        .await
    {
        Ok(()) => Ok(json_response(StatusCode::OK, order_view::to_json(&order))),
        Err(StoreError::LeaseLost(_)) => Err(ApiError::Conflict(
            "The order's saga was taken over by another process; try again".to_owned(),
        )),
        Err(error) => Err(error.into()),
    }
}

fn parse_note(body: &[u8]) -> Result<String, ApiError> {
    let invalid = |kind: &'static str, msg: &str| {
        ApiError::Validation(vec![FieldError {
            loc: vec![LocPart::from("note")],
            msg: msg.to_owned(),
            kind,
        }])
    };
    let request: ResolveRequest = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::MalformedJson {
                offset: 0,
                message: e.to_string(),
            }
        } else {
            invalid("missing", "Field required: a string `note`")
        }
    })?;
    if has_nul(&request.note) {
        return Err(invalid("string_pattern_mismatch", NUL_MESSAGE));
    }
    if is_blank(&request.note) {
        return Err(invalid("value_error", "Value error, must not be blank"));
    }
    if request.note.chars().count() > 2000 {
        return Err(invalid(
            "string_too_long",
            "String should have at most 2000 characters",
        ));
    }
    Ok(request.note)
}
