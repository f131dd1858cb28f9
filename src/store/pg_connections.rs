//! Connections for the saga's writes on PostgreSQL, reused without a round trip between
//! two uses.
//!
//! Why not sqlx's pool: it sends a `Sync` to every connection given back to it and waits
//! for the server's answer before the connection can be used again (sqlx 0.8,
//! `return_to_pool`), so each statement costs two round trips. Seen with `strace` at one
//! client: that second round trip ran on the saga's worker thread before its next call,
//! 0.05–0.1 ms each, and before the client's answer after the shipment's save. The
//! writes here are single statements that either end (answered, or refused by the
//! server, which ends their implicit transaction at the same `Sync`) or leave their
//! connection in a state nobody checks: such a connection is closed instead of reused.

use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, QueueMode, RecycleResult};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgSeverity};

/// Opens connections with fixed options; a connection given back is reused as it is.
#[derive(Debug)]
pub(super) struct Opener {
    options: PgConnectOptions,
}

impl managed::Manager for Opener {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.options).await
    }

    /// Nothing to check: only a connection whose statement ended is given back (see
    /// [`Checkout::settle`]).
    async fn recycle(&self, _: &mut PgConnection, _: &Metrics) -> RecycleResult<sqlx::Error> {
        Ok(())
    }
}

/// Up to `size` connections opened with the same options, opened when first needed.
#[derive(Clone, Debug)]
pub(super) struct WriteConnections {
    pool: managed::Pool<Opener>,
}

impl WriteConnections {
    /// `wait` bounds both the wait for a free connection and the opening of a new one,
    /// like sqlx's `acquire_timeout`.
    pub fn new(options: PgConnectOptions, size: usize, wait: Duration) -> Self {
        let pool = managed::Pool::builder(Opener { options })
            .max_size(size)
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait))
            // The connection used last first: under light load the same one or two
            // serve every write, with their statements prepared and their backends warm.
            .queue_mode(QueueMode::Lifo)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a runtime and no hooks: building cannot fail");
        Self { pool }
    }

    /// The connection options, to tell the sets apart in tests.
    #[cfg(test)]
    pub fn options(&self) -> &PgConnectOptions {
        &self.pool.manager().options
    }

    /// A connection for one statement; see [`Checkout::settle`].
    pub async fn checkout(&self) -> Result<Checkout, sqlx::Error> {
        match self.pool.get().await {
            Ok(connection) => Ok(Checkout(Some(connection))),
            Err(PoolError::Backend(error)) => Err(error),
            Err(PoolError::Timeout(_)) => Err(sqlx::Error::PoolTimedOut),
            Err(PoolError::Closed) => Err(sqlx::Error::PoolClosed),
            Err(error @ (PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_))) => {
                Err(sqlx::Error::Configuration(error.to_string().into()))
            }
        }
    }

    /// Closes the idle connections (politely: the server sees a `Terminate`) and refuses
    /// further checkouts; a connection in use is closed when given back.
    pub async fn close(&self) {
        let idle = self.pool.retain(|_, _| false).removed;
        self.pool.close();
        for connection in idle {
            let _ = connection.close().await;
        }
    }

    /// Connections open now: idle, and in use.
    pub fn stats(&self) -> (usize, usize) {
        let status = self.pool.status();
        let idle = status.available;
        (idle, status.size.saturating_sub(idle))
    }
}

/// A connection taken for one statement. Given back by [`settle`](Self::settle) when the
/// statement ended; closed when dropped before (its statement was cancelled half-way, so
/// the server may still be sending its answer).
pub(super) struct Checkout(Option<Object<Opener>>);

impl std::ops::Deref for Checkout {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.0.as_ref().expect("held until settled or dropped")
    }
}

impl std::ops::DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.0.as_mut().expect("held until settled or dropped")
    }
}

impl Checkout {
    /// Gives the connection back if `result` shows its statement ended and the session
    /// goes on: it succeeded, or the server refused it. After any other error (the
    /// connection broke, a protocol error; or the server ended the session, as it does
    /// with a `FATAL` error when it shuts down or an administrator terminates the backend)
    /// the connection is closed, and a new one is opened when needed.
    pub fn settle<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        let session_goes_on = match &result {
            Ok(_) => true,
            Err(sqlx::Error::Database(error)) => error
                .try_downcast_ref::<PgDatabaseError>()
                .is_some_and(|error| {
                    !matches!(error.severity(), PgSeverity::Fatal | PgSeverity::Panic)
                }),
            Err(_) => false,
        };
        if session_goes_on {
            drop(self.0.take());
        }
        result
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            drop(Object::take(connection));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::postgres::test_postgres_url;
    use super::*;

    /// The server process behind the checked-out connection.
    async fn backend_of(connection: &mut Checkout) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut **connection)
            .await
            .unwrap()
    }

    async fn backend_of_next(connections: &WriteConnections) -> i32 {
        let mut connection = connections.checkout().await.unwrap();
        let backend = backend_of(&mut connection).await;
        connection.settle(Ok(())).unwrap();
        backend
    }

    fn connections(url: &str, size: usize) -> WriteConnections {
        WriteConnections::new(url.parse().unwrap(), size, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_connection_is_reused_after_its_statement_succeeded_or_was_refused() {
        let Some(url) = test_postgres_url(
            "a_connection_is_reused_after_its_statement_succeeded_or_was_refused",
        ) else {
            return;
        };
        let connections = connections(&url, 2);
        let first = backend_of_next(&connections).await;
        assert_eq!(backend_of_next(&connections).await, first);

        let mut connection = connections.checkout().await.unwrap();
        let refused = sqlx::query("SELECT 1 / 0").execute(&mut *connection).await;
        let error = connection.settle(refused).unwrap_err();
        assert!(matches!(error, sqlx::Error::Database(_)), "{error}");
        assert_eq!(backend_of_next(&connections).await, first);
        assert_eq!(connections.stats(), (1, 0), "one connection, idle");
        connections.close().await;
    }

    #[tokio::test]
    async fn a_connection_whose_statement_was_cancelled_is_closed() {
        let Some(url) = test_postgres_url("a_connection_whose_statement_was_cancelled_is_closed")
        else {
            return;
        };
        let connections = connections(&url, 2);
        let first = backend_of_next(&connections).await;
        let mut connection = connections.checkout().await.unwrap();
        let sleep = sqlx::query("SELECT pg_sleep(1)").execute(&mut *connection);
        let cancelled = tokio::time::timeout(Duration::from_millis(50), sleep).await;
        assert!(cancelled.is_err(), "the statement was still running");
        drop(connection);
        assert_eq!(connections.stats(), (0, 0), "closed, not given back");
        let next = backend_of_next(&connections).await;
        assert_ne!(next, first, "a new connection");
        connections.close().await;
    }

    #[tokio::test]
    async fn a_connection_the_server_ended_is_replaced_after_one_failed_statement() {
        let Some(url) = test_postgres_url(
            "a_connection_the_server_ended_is_replaced_after_one_failed_statement",
        ) else {
            return;
        };
        let connections = connections(&url, 1);
        let first = backend_of_next(&connections).await;
        let mut admin = PgConnection::connect(&url).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(first)
            .execute(&mut admin)
            .await
            .unwrap();

        let mut connection = connections.checkout().await.unwrap();
        let failed = sqlx::query("SELECT 1").execute(&mut *connection).await;
        assert!(connection.settle(failed).is_err(), "its session was ended");
        assert_eq!(connections.stats(), (0, 0), "closed, not given back");
        let next = backend_of_next(&connections).await;
        assert_ne!(next, first, "a new connection");
        connections.close().await;
        admin.close().await.unwrap();
    }

    #[tokio::test]
    async fn closing_refuses_further_checkouts() {
        let Some(url) = test_postgres_url("closing_refuses_further_checkouts") else {
            return;
        };
        let connections = connections(&url, 1);
        backend_of_next(&connections).await;
        connections.close().await;
        assert_eq!(connections.stats(), (0, 0));
        assert!(matches!(
            connections.checkout().await,
            Err(sqlx::Error::PoolClosed)
        ));
    }
}
