//! Operational endpoints: readiness and Prometheus metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::telemetry::metrics;

/// Whether this process should get new traffic. Turns unready for good at shutdown.
#[derive(Debug, Default)]
pub struct Readiness {
    draining: AtomicBool,
}

impl Readiness {
    /// From now on `/ready` answers 503: the process is shutting down.
    pub fn begin_shutdown(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The answer of `GET /ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyReport {
    /// `ready` or `unready`.
    pub status: &'static str,
    pub checks: ReadyChecks,
}

/// One result per check: `ok`, or what is wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyChecks {
    pub database: String,
    pub migrations: String,
    pub shutdown: String,
}

/// `200` when the database answers, migrations are applied and the process is not shutting
/// down; `503` otherwise, saying which check failed.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Ready for traffic", body = ReadyReport),
        (status = 503, description = "Not ready; `checks` says why", body = ReadyReport),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Response {
    let store = state.saga.store();
    let database = match store.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(error) => format!("unreachable: {error}"),
    };
    let migrations = if database != "ok" {
        "unknown: the database is unreachable".to_owned()
    } else {
        match store.migrations_current().await {
            Ok(true) => "ok".to_owned(),
            Ok(false) => "pending: this binary has migrations the database lacks".to_owned(),
            Err(error) => format!("unknown: {error}"),
        }
    };
    let shutdown = if state.readiness.is_draining() {
        "draining: the process is shutting down".to_owned()
    } else {
        "ok".to_owned()
    };
    let ready = database == "ok" && migrations == "ok" && shutdown == "ok";
    let report = ReadyReport {
        status: if ready { "ready" } else { "unready" },
        checks: ReadyChecks {
            database,
            migrations,
            shutdown,
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// Prometheus text exposition of every metric of the process.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let pool = state.saga.store().pool_stats();
    metrics::db_pool(pool.idle, pool.in_use);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Shared so the shutdown path and the handler see the same flag.
pub type SharedReadiness = Arc<Readiness>;
