//! Wires the store, the downstream clients, the saga and the routes, and serves until the
//! shutdown future completes. Takes a bound listener so tests can use port 0.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::domain::order::OrderStatus;
use crate::domain::when;
use crate::downstream::Downstream;
use crate::http::{self, AppState, Readiness, order_view::JsonAnswer};
use crate::saga::recovery::Recovery;
use crate::saga::{Saga, SagaSettings};
use crate::store::{Lease, Store, StoreSettings};
use crate::telemetry::metrics;

/// How often the housekeeping loop runs; key purges and gauge refreshes run every few turns.
const HOUSEKEEPING_TICK: Duration = Duration::from_secs(5);
/// Expired idempotency keys are deleted every this many ticks (one minute).
const PURGE_EVERY: u32 = 12;
/// The `needs_attention` gauge is refreshed every this many ticks.
const GAUGES_EVERY: u32 = 3;

/// A built service, ready to serve on its listener.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    store: Store,
    shutdown_grace: Duration,
    /// `None` when this process runs no recovery worker.
    recovery_interval: Option<Duration>,
}

impl Application {
    /// Opens (and migrates) the database and builds the service.
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        if config.legacy_database_service_url.is_some() {
            tracing::info!(
                "DATABASE_SERVICE_URL is set but no longer used: orders are stored in DATABASE_URL ({})",
                config.database_url.redacted()
            );
        }
        let store = Store::open(&StoreSettings {
            url: config.database_url.expose().to_owned(),
            max_connections: config.database_max_connections,
            sqlite_synchronous: config.sqlite_synchronous,
        })
        .await
        .with_context(|| format!("opening the database {}", config.database_url.redacted()))?;
        let downstream = Downstream::new(&config.downstream);
        let saga = Saga::new(
            store.clone(),
            downstream,
            SagaSettings {
                retry: config.retry,
                lease: Lease {
                    owner: instance_id(),
                    ttl: config.saga_lease,
                },
                inventory_honors_idempotency_key: config.inventory_honors_idempotency_key,
                order_deadline: config.order_deadline,
                compensation_max_attempts: config.compensation_max_attempts,
            },
            Arc::new(JsonAnswer),
        );
        tracing::info!(
            database = store.dialect(),
            inventory = %config.downstream.inventory_url,
            payment = %config.downstream.payment_url,
            shipping = %config.downstream.shipping_url,
            retries = config.retry.attempts.saturating_sub(1),
            "order service ready"
        );
        Ok(Self {
            listener,
            state: AppState {
                saga,
                idempotency_ttl: config.idempotency_ttl,
                readiness: Arc::new(Readiness::default()),
                metrics: metrics::install(),
                order_wait: config.order_wait,
                cache: Arc::default(),
            },
            store,
            shutdown_grace: config.shutdown_grace,
            recovery_interval: config.recovery,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The handlers' shared state (tests drive the router with it directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes. Then `/ready` turns unready, no new connection
    /// is accepted, and in-flight requests (and the sagas they wait for) get the shutdown
    /// grace period to finish; what is left is resumed later by a recovery worker.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let housekeeping = tokio::spawn(housekeeping(self.store.clone(), stopped.clone()));
        let saga = self.state.saga.clone();
        let recovery = self.recovery_interval.map(|interval| {
            tokio::spawn(Recovery::new(saga.clone()).run(interval, stopped.clone()))
        });
        tracing::info!(address = %self.listener.local_addr()?, recovery = recovery.is_some(), "listening");
        let readiness = self.state.readiness.clone();
        let server = axum::serve(self.listener, http::router(self.state))
            .with_graceful_shutdown(async move {
                shutdown.await;
                readiness.begin_shutdown();
                tracing::info!("shutting down: no new connections, draining in-flight requests");
                let _ = stop.send(true);
            })
            .into_future();
        let tasks = saga.tasks().clone();
        let drained = async move {
            let served = server.await;
            // Sagas answered with 202 (and recovery's) run on after their request ended.
            tasks.close();
            tasks.wait().await;
            served
        };
        let grace = self.shutdown_grace;
        let mut stopped = stopped;
        let out_of_time = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            served = drained => served.context("serving HTTP")?,
            () = out_of_time => {
                let released = self
                    .store
                    .release_leases(&saga.lease().owner, when::now())
                    .await
                    .unwrap_or_default();
                tracing::warn!(
                    grace_secs = grace.as_secs(),
                    released,
                    "shutdown grace period over; unfinished sagas are left to recovery"
                );
            }
        }
        if let Some(recovery) = recovery {
            recovery.abort();
        }
        let _ = housekeeping.await;
        Ok(())
    }
}

/// Builds and serves: the whole of `serve`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Application::build(config, listener)
        .await?
        .run_until_stopped(shutdown)
        .await
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Names this process in saga leases: the pod name on Kubernetes, plus pid and a random part.
fn instance_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

/// Periodic chores: purge expired idempotency keys, refresh gauges that come from the
/// database, and let the metrics exporter drain its buffers.
async fn housekeeping(store: Store, mut stopped: watch::Receiver<bool>) {
    let mut tick: u32 = 0;
    loop {
        if tick.is_multiple_of(PURGE_EVERY) {
            match store.purge_expired_keys(when::now()).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "expired idempotency keys deleted"),
                Err(error) => tracing::warn!(%error, "purging expired idempotency keys failed"),
            }
        }
        if tick.is_multiple_of(GAUGES_EVERY) {
            match store.count_with_status(OrderStatus::NeedsAttention).await {
                Ok(count) => metrics::needs_attention(count),
                Err(error) => tracing::warn!(%error, "counting orders that need attention failed"),
            }
        }
        metrics::upkeep();
        tick = tick.wrapping_add(1);
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(HOUSEKEEPING_TICK) => {}
        }
    }
}
