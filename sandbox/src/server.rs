//! The accept loop: HTTP/1.1 with keep-alive, one task per connection, a per-connection kill
//! switch that lets a handler drop its connection unanswered, and graceful shutdown.
//!
//! `axum::serve` cannot drop a connection from inside a handler, which the `dropResponse`
//! fault needs, so connections are driven by hyper directly.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::shutdown::ShutdownSignal;

/// How long in-flight requests may run on after shutdown starts before they are cut off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Put into every request's extensions: firing it closes the request's TCP connection
/// without writing another byte.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionKill(Arc<Notify>);

impl ConnectionKill {
    fn new() -> Self {
        Self(Arc::new(Notify::new()))
    }

    /// Drops the connection; safe to call before the connection task is waiting for it.
    pub(crate) fn fire(&self) {
        self.0.notify_one();
    }

    async fn fired(&self) {
        self.0.notified().await;
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then stops accepting, gives
/// in-flight requests [`SHUTDOWN_GRACE`] to finish, and aborts the rest.
pub(crate) async fn serve(listener: TcpListener, router: Router, shutdown: ShutdownSignal) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone(), shutdown.clone()));
                }
                Err(error) => accept_failed(&error).await,
            },
            // Reap finished connections so the set does not grow with every client.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            remaining = connections.len(),
            "aborting connections still busy after the shutdown grace period"
        );
    }
    connections.shutdown().await;
}

/// Errors from `accept` are about one connection (reset before accept) or the process
/// (out of file descriptors); neither should end the server, but the latter would spin.
async fn accept_failed(error: &io::Error) {
    match error.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => {}
        _ => {
            tracing::warn!(%error, "accept failed; pausing before the next attempt");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serve_connection(stream: TcpStream, router: Router, shutdown: ShutdownSignal) {
    // Small JSON answers must not wait for Nagle's algorithm.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    let kill = ConnectionKill::new();
    let handler_kill = kill.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(handler_kill.clone());
        router.clone().oneshot(request)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        // Idle keep-alive connections stay open until the client closes them: a server-side
        // idle timeout races with clients reusing pooled connections and would inject
        // errors nobody asked for.
        .header_read_timeout(None);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            // Returning drops the connection and its socket before any answer is written.
            () = kill.fired() => return,
            () = shutdown.wait(), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}
