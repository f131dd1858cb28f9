//! Starting and stopping the three services: in the background for tests ([`spawn`]) or in
//! the foreground until a shutdown future completes ([`run`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::app::{self, Routers};
use crate::config::SandboxConfig;
use crate::listeners::SandboxListeners;
use crate::server;
use crate::shutdown::ShutdownSignal;

/// The three services running in background tasks.
#[derive(Debug)]
pub struct RunningSandbox {
    /// Base URL of the inventory service, like `http://127.0.0.1:PORT`.
    pub inventory_url: String,
    /// Base URL of the payment service.
    pub payment_url: String,
    /// Base URL of the shipping service.
    pub shipping_url: String,
    shutdown: ShutdownSignal,
    servers: Vec<JoinHandle<()>>,
}

impl RunningSandbox {
    /// Stops accepting, lets in-flight requests finish briefly, and waits for all three.
    pub async fn shutdown(self) {
        self.shutdown.trigger();
        for server in self.servers {
            if let Err(error) = server.await {
                tracing::error!(%error, "sandbox server task failed");
            }
        }
    }
}

/// Starts the three services on `listeners` in background tasks and returns at once.
///
/// # Panics
/// If `config` holds invalid fault settings (use [`run`] to get an error instead), or when
/// called outside a tokio runtime.
pub fn spawn(config: SandboxConfig, listeners: SandboxListeners) -> RunningSandbox {
    let shutdown = ShutdownSignal::new();
    let routers = app::build(&config, &shutdown)
        .unwrap_or_else(|error| panic!("invalid sandbox configuration: {error}"));
    let urls = Urls::of(&listeners).expect("a bound listener has a local address");
    RunningSandbox {
        inventory_url: urls.inventory,
        payment_url: urls.payment,
        shipping_url: urls.shipping,
        servers: serve_all(listeners, routers, &shutdown),
        shutdown,
    }
}

/// Runs the three services on `listeners` until `shutdown` completes, then stops them
/// gracefully; fails at once if `config` is invalid.
pub async fn run(
    config: SandboxConfig,
    listeners: SandboxListeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let signal = ShutdownSignal::new();
    let routers = app::build(&config, &signal).context("invalid sandbox configuration")?;
    let urls = Urls::of(&listeners).context("reading the sandbox listeners' addresses")?;
    tracing::info!(
        inventory = %urls.inventory,
        payment = %urls.payment,
        shipping = %urls.shipping,
        "platform sandbox listening"
    );
    let servers = serve_all(listeners, routers, &signal);
    shutdown.await;
    signal.trigger();
    for server in servers {
        server.await.context("a sandbox server task failed")?;
    }
    Ok(())
}

fn serve_all(
    listeners: SandboxListeners,
    routers: Routers,
    shutdown: &ShutdownSignal,
) -> Vec<JoinHandle<()>> {
    [
        (listeners.inventory, routers.inventory),
        (listeners.payment, routers.payment),
        (listeners.shipping, routers.shipping),
    ]
    .into_iter()
    .map(|(listener, router)| tokio::spawn(server::serve(listener, router, shutdown.clone())))
    .collect()
}

struct Urls {
    inventory: String,
    payment: String,
    shipping: String,
}

impl Urls {
    fn of(listeners: &SandboxListeners) -> std::io::Result<Self> {
        Ok(Self {
            inventory: url(&listeners.inventory)?,
            payment: url(&listeners.payment)?,
            shipping: url(&listeners.shipping)?,
        })
    }
}

/// The URL a client on this machine should use: a wildcard bind is reached over loopback.
fn url(listener: &TcpListener) -> std::io::Result<String> {
    let mut addr: SocketAddr = listener.local_addr()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(format!("http://{addr}"))
}
