//! Wires the store, the downstream clients, the saga and the routes, and serves until the
//! shutdown future completes. Takes a bound listener so tests can use port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::domain::when;
use crate::downstream::Downstream;
use crate::http::{self, AppState, order_view::JsonAnswer};
use crate::saga::{Saga, SagaSettings};
use crate::store::{Lease, Store, StoreSettings};

/// How often expired idempotency keys are deleted.
const KEY_PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// A built service, ready to serve on its listener.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    store: Store,
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
        })
        .await
        .with_context(|| format!("opening the database {}", config.database_url.redacted()))?;
        let downstream =
            Downstream::new(&config.downstream).context("building the downstream HTTP clients")?;
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
            },
            store,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let purger = tokio::spawn(purge_expired_keys(self.store.clone(), stopped));
        tracing::info!(address = %self.listener.local_addr()?, "listening");
        axum::serve(self.listener, http::router(self.state))
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down");
                let _ = stop.send(true);
            })
            .await
            .context("serving HTTP")?;
        let _ = purger.await;
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

async fn purge_expired_keys(store: Store, mut stopped: watch::Receiver<bool>) {
    loop {
        match store.purge_expired_keys(when::now()).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency keys deleted"),
            Err(error) => tracing::warn!(%error, "purging expired idempotency keys failed"),
        }
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(KEY_PURGE_INTERVAL) => {}
        }
    }
}
