//! `POST /orders` and `GET /orders/{id}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use tower_http::request_id::RequestId;

use super::body::JsonBytes;
use super::cache::Replay;
use super::idempotency::key_of;
use super::observe::record_order_id;
use super::order_view::{self, JsonAnswer};
use super::{ApiError, AppState, json_response, order_id_of};
use crate::domain::idempotency::{Fingerprint, IdempotencyKey, StoredResponse};
use crate::domain::ids::UserId;
use crate::domain::order::{NewOrder, Order};
use crate::domain::validation::{BodyError, parse_new_order};
use crate::domain::when;
use crate::saga::{Answer, SagaError};
use crate::store::{KeyRecord, NewEvent, NewKey, StoreError};
use crate::telemetry::metrics;

/// Creates an order and runs its saga; with an idempotency key, a repeat gets the first
/// answer, byte for byte.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    request_body(content = super::schema::OrderRequest, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x20-\\x7E]+$", description = "Makes the request safe to repeat: a repeat gets the first answer (1-255 printable ASCII characters)"),
        ("X-Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[\\x20-\\x7E]+$", description = "The old service's name for Idempotency-Key; if both are sent they must be equal"),
        ("X-Request-Id" = Option<String>, Header, description = "Correlation id, returned and passed downstream; generated when absent"),
    ),
    responses(
        (status = 201, description = "Completed", body = super::schema::OrderSchema,
            headers(("Location" = String, description = "/orders/{id}"), ("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 202, description = "Accepted; the saga goes on in the background", body = super::schema::OrderSchema),
        (status = 400, description = "Bad idempotency key headers", body = super::schema::ErrorBody),
        (status = 402, description = "Payment declined; stock released", body = super::schema::OrderSchema),
        (status = 409, description = "Refused by the inventory service (order cancelled), or the key's first request still runs (with Retry-After)", body = super::schema::ConflictBody),
        (status = 413, description = "Body over 64 KiB", body = super::schema::ErrorBody),
        (status = 415, description = "Content-Type is not JSON", body = super::schema::ErrorBody),
        (status = 422, description = "Invalid body, malformed JSON, or a key reused with another body", body = super::schema::UnprocessableBody),
        (status = 502, description = "A downstream service failed or was unreachable; done steps undone", body = super::schema::OrderSchema),
        (status = 503, description = "A downstream service is known to be down; nothing was done (a key that already answered is still replayed)", body = super::schema::ErrorBody),
        (status = 504, description = "A downstream service did not answer in time", body = super::schema::OrderSchema),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: Option<axum::Extension<RequestId>>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let key = key_of(&headers);
    if let Ok(Some(key)) = &key
        && let Some(answer) = replay_of_same_bytes(&state, key, &body)
    {
        return answer;
    }
    let new = parse_new_order(&body).map_err(|e| match e {
        BodyError::MalformedJson { offset, message } => ApiError::MalformedJson { offset, message },
        BodyError::Invalid(errors) => ApiError::Validation(errors),
    })?;
    // A bad key header is reported after the body's problems, as it always was.
    // With a key, what recognises a repeat: the fingerprint of the body.
    let keyed = key?.map(|key| {
        let fingerprint = Fingerprint::of(&new);
        (key, fingerprint)
    });
    // A key answered before is replayed, whether or not a service is down: that calls none.
    if let Some((key, fingerprint)) = &keyed
        && let Some(first) = state.cache.replay(&new.user_id, key)
    {
        return replay(&state, key, &body, first, fingerprint);
    }
    if let Err(down) = fail_fast_if_a_service_is_down(&state) {
        return match &keyed {
            Some((key, fingerprint)) => {
                replay_stored_while_down(&state, &new.user_id, key, &body, fingerprint, down).await
            }
            None => Err(down),
        };
    }
    let request_id = request_id
        .and_then(|id| id.0.header_value().to_str().ok().map(str::to_owned))
        .unwrap_or_default();

    // What a replay needs to be recognised later: the user, the key, the fingerprint.
    let mut replayable = None;
    let order = match keyed {
        None => {
            let order = Order::create(new);
            insert(&state, &order, None).await?;
            order
        }
        Some((key, fingerprint)) => {
            let user = new.user_id.clone();
            match claim_key(&state, new, &key, &fingerprint).await? {
                Claim::New(order) => {
                    replayable = Some((user, key, fingerprint));
                    *order
                }
                Claim::Replay(first) => return replay(&state, &key, &body, first, &fingerprint),
            }
        }
    };

    // The saga runs in its own task: a client that hangs up must not stop it half-way.
    let id = order.id;
    record_order_id(&id);
    let run = state.saga.start_fresh(order, request_id);
    let finished = match tokio::time::timeout(state.order_wait, run).await {
        Ok(Ok(Ok(order))) => Some(order),
        // Another process took the saga over; it will finish it.
        Ok(Ok(Err(SagaError(StoreError::LeaseLost(_))))) => None,
        Ok(Ok(Err(error))) => {
            return Err(ApiError::Internal(
                anyhow::Error::new(error).context(format!("saga of order {id}")),
            ));
        }
        Ok(Err(join)) => {
            return Err(ApiError::Internal(
                anyhow::Error::new(join).context(format!("saga task of order {id}")),
            ));
        }
        // Still running: answer 202 now; the saga goes on, and a replay of the key
        // returns the final answer later.
        Err(_elapsed) => None,
    };
    let order = match finished {
        Some(order) => order,
        None => state
            .saga
            .store()
            .find_order(id)
            .await?
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("order {id} vanished")))?,
    };
    let response = match &order.response {
        Some(response) => {
            if let Some((user, key, fingerprint)) = replayable {
                let ttl = chrono::Duration::from_std(state.idempotency_ttl).unwrap_or_default();
                let first = Arc::new(Replay {
                    fingerprint,
                    expires_at: order.created_at + ttl,
                    response: response.clone(),
                });
                state.cache.remember_same_bytes(&key, &body, first.clone());
                state.cache.remember_replay(&user, &key, first);
            }
            response.clone()
        }
        // Still running (or taken over): what stands now, answered 202.
        None => JsonAnswer.answer(&order),
    };
    let mut response = stored(response, false);
    if let Ok(location) = HeaderValue::from_str(&format!("/orders/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Answers a repeat of a key with its first answer, or refuses another body under it.
/// Once this body matched, a request with its exact bytes is answered from memory
/// ([`replay_of_same_bytes`]).
fn replay(
    state: &AppState,
    key: &IdempotencyKey,
    body: &[u8],
    first: Arc<Replay>,
    fingerprint: &Fingerprint,
) -> Result<Response, ApiError> {
    if first.fingerprint != *fingerprint {
        return Err(reused_with_another_body());
    }
    metrics::idempotency_replay();
    let response = stored(first.response.clone(), true);
    state.cache.remember_same_bytes(key, body, first);
    Ok(response)
}

/// A repeat, byte for byte, of a request whose answer is remembered: that answer, before
/// the body is parsed again (see `AnswerCache::replay_of_same_bytes`). Bytes not seen
/// before under `key` go the full way (so do requests without a key or with a bad key
/// header), which reports errors in its own order. Like every replay it calls no
/// downstream service, so an open circuit breaker does not stop it.
fn replay_of_same_bytes(
    state: &AppState,
    key: &IdempotencyKey,
    body: &[u8],
) -> Option<Result<Response, ApiError>> {
    let first = state.cache.replay_of_same_bytes(key, body)?;
    metrics::idempotency_replay();
    Some(Ok(stored(first.response.clone(), true)))
}

/// While a downstream service is known to be down, a key the database knows (and memory
/// did not) still gets what it means (its first answer, `422` for another body, `409`
/// while its first request runs): none of that calls the service. Only a new order is
/// refused, with `down`, before anything is stored for it; so is a request whose key
/// could not be looked up (the database failing too): `503` says to try again, as it
/// would have before replays went on during an outage.
async fn replay_stored_while_down(
    state: &AppState,
    user: &UserId,
    key: &IdempotencyKey,
    body: &[u8],
    fingerprint: &Fingerprint,
    down: ApiError,
) -> Result<Response, ApiError> {
    match state.saga.store().find_key(user, key).await {
        Ok(Some(record)) if record.expires_at >= when::now() => {
            let first = what_the_key_means(state, user, key, record, fingerprint)?;
            replay(state, key, body, first, fingerprint)
        }
        Ok(_) => Err(down),
        Err(error) => {
            tracing::warn!(%error, "idempotency key not looked up while a service is down");
            Err(down)
        }
    }
}

/// A service known to be down (its circuit breaker open) fails the order fast, before
/// anything is done for it.
fn fail_fast_if_a_service_is_down(state: &AppState) -> Result<(), ApiError> {
    match state.saga.downstream().open_breaker() {
        Some((service, retry_after)) => Err(ApiError::Unavailable {
            service: service.as_str(),
            retry_after,
        }),
        None => Ok(()),
    }
}

/// `GET /orders/{id}`.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = String, Path, description = "The order id")),
    responses(
        (status = 200, description = "The order", body = super::schema::OrderSchema),
        (status = 404, description = "No such order", body = super::schema::ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = order_id_of(&id)?;
    if let Some(json) = state.cache.order(&id) {
        return Ok(json_response(StatusCode::OK, json));
    }
    let order = state
        .saga
        .store()
        .find_order(id)
        .await?
        .ok_or(ApiError::OrderNotFound)?;
    let json = Bytes::from(order_view::to_json(&order));
    state.cache.remember_order(&order, &json);
    Ok(json_response(StatusCode::OK, json))
}

enum Claim {
    /// The key is ours: the order is stored and its saga may start.
    New(Box<Order>),
    /// The key answered before: replay that.
    Replay(Arc<Replay>),
}

/// Stores the order under `key`, or finds out what the key already means.
async fn claim_key(
    state: &AppState,
    new: NewOrder,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
) -> Result<Claim, ApiError> {
    let user = new.user_id.clone();
    let order = Order::create(new);
    let store = state.saga.store();
    // Two rounds: the second runs only when the key expired or vanished in between.
    for _ in 0..2 {
        let ttl = chrono::Duration::from_std(state.idempotency_ttl)
            .unwrap_or(chrono::Duration::hours(24));
        let new_key = NewKey {
            key,
            fingerprint,
            expires_at: order.created_at + ttl,
        };
        match insert(state, &order, Some(new_key)).await {
            Ok(()) => return Ok(Claim::New(Box::new(order))),
            Err(InsertError::KeyTaken) => {}
            Err(InsertError::Api(e)) => return Err(e),
        }
        let Some(record) = store.find_key(&user, key).await? else {
            continue;
        };
        let now = when::now();
        if record.expires_at < now {
            store.delete_expired_key(&user, key, now).await?;
            continue;
        }
        return what_the_key_means(state, &user, key, record, fingerprint).map(Claim::Replay);
    }
    Err(ApiError::KeyInProgress)
}

/// What a stored, unexpired key means for a request with `fingerprint`: its first answer
/// to replay (the caller compares fingerprints), or, while its first request still runs,
/// `422` for another body and `409` for the same.
fn what_the_key_means(
    state: &AppState,
    user: &UserId,
    key: &IdempotencyKey,
    record: KeyRecord,
    fingerprint: &Fingerprint,
) -> Result<Arc<Replay>, ApiError> {
    record_order_id(&record.order_id);
    match record.response {
        Some(response) => {
            let first = Arc::new(Replay {
                fingerprint: record.fingerprint,
                expires_at: record.expires_at,
                response,
            });
            // Remembered whatever this request's body: the first answer is fixed.
            state.cache.remember_replay(user, key, first.clone());
            Ok(first)
        }
        None if record.fingerprint != *fingerprint => Err(reused_with_another_body()),
        None => {
            metrics::idempotency_conflict("in_progress");
            Err(ApiError::KeyInProgress)
        }
    }
}

/// The `422` of a key sent again with another body (counted as such a conflict).
fn reused_with_another_body() -> ApiError {
    metrics::idempotency_conflict("body_mismatch");
    ApiError::KeyReused(
        "This idempotency key was already used with a different request body".to_owned(),
    )
}

enum InsertError {
    KeyTaken,
    Api(ApiError),
}

impl From<InsertError> for ApiError {
    fn from(e: InsertError) -> Self {
        match e {
            InsertError::KeyTaken => ApiError::KeyInProgress,
            InsertError::Api(e) => e,
        }
    }
}

async fn insert(
    state: &AppState,
    order: &Order,
    key: Option<NewKey<'_>>,
) -> Result<(), InsertError> {
    let event = NewEvent {
        at: order.created_at,
        step: "create",
        outcome: "pending",
        attempt: None,
        upstream_status: None,
        duration_ms: None,
        detail: key.as_ref().map(|k| format!("idempotency key {}", k.key)),
    };
    match state
        .saga
        .store()
        .insert_order(order, key, &event, state.saga.lease())
        .await
    {
        Ok(()) => Ok(()),
        Err(StoreError::KeyTaken) => Err(InsertError::KeyTaken),
        Err(e) => Err(InsertError::Api(e.into())),
    }
}

fn stored(response: StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    let mut out = json_response(status, response.body);
    if replayed {
        out.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    out
}
