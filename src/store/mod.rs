//! Persistence of orders, idempotency keys and order events, in SQLite (the zero-setup
//! default) or PostgreSQL (for many replicas). The only module with SQL in it.
//!
//! Each dialect has its own file and migrations folder; both implement the same small set
//! of operations, and the same tests run against both.

mod expected_writers;
mod pg_batch;
mod pg_connections;
mod pg_writes;
mod postgres;
mod row;
mod sqlite;
mod sqlite_cache_size;
mod sqlite_writer;

use std::time::Duration;

use crate::domain::idempotency::{Fingerprint, IdempotencyKey, StoredResponse};
use crate::domain::ids::{OrderId, UserId};
use crate::domain::order::Order;
use crate::domain::when::Timestamp;
use crate::telemetry::metrics;

pub use expected_writers::ExpectedWriter;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Errors of the store. Constraint violations that mean something to the domain have
/// their own variants; everything else is `Database`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The idempotency key is already taken by another request.
    #[error("idempotency key already used")]
    KeyTaken,
    /// Another process holds the order's lease: this one must stop driving it.
    #[error("the lease on order {0} is held by another process")]
    LeaseLost(OrderId),
    /// Another process already serves this SQLite database.
    #[error(
        "the SQLite database {0} is in use by another order-service process; SQLite serves \
         one process only: stop the other one, or use PostgreSQL (DATABASE_URL=postgres://...) \
         to run several"
    )]
    InUse(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A statement that carried this write with others failed on the way (PostgreSQL's
    /// group commit); shared by every write of that statement.
    #[error("the batched statement with this write failed: {0}")]
    Batch(std::sync::Arc<sqlx::Error>),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// A save running in its own task was cancelled (the runtime shut down under it).
    #[error("a save was cancelled before it finished")]
    Interrupted,
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A lease on an order's saga: only the owner may write its progress until it expires.
#[derive(Clone, Debug)]
pub struct Lease {
    pub owner: String,
    pub ttl: Duration,
}

impl Lease {
    pub fn expires_at(&self, now: Timestamp) -> Timestamp {
        now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::seconds(30))
    }
}

/// The idempotency key of a new order, stored with it in one transaction.
#[derive(Clone, Debug)]
pub struct NewKey<'a> {
    pub key: &'a IdempotencyKey,
    pub fingerprint: &'a Fingerprint,
    pub expires_at: Timestamp,
}

/// What a used idempotency key points at.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub fingerprint: Fingerprint,
    pub order_id: OrderId,
    pub expires_at: Timestamp,
    /// The first answer, once the order got one.
    pub response: Option<StoredResponse>,
}

/// One entry of an order's event log, to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub at: Timestamp,
    pub step: &'static str,
    pub outcome: &'static str,
    pub attempt: Option<u32>,
    pub upstream_status: Option<u16>,
    pub duration_ms: Option<u64>,
    pub detail: Option<String>,
}

/// One entry of an order's event log, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderEvent {
    pub id: i64,
    pub at: Timestamp,
    pub step: String,
    pub outcome: String,
    pub attempt: Option<u32>,
    pub upstream_status: Option<u16>,
    pub duration_ms: Option<u64>,
    pub detail: Option<String>,
}

/// The order store, in one of its dialects.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Tuning that applies to either database.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    pub url: String,
    pub max_connections: u32,
    /// How hard an SQLite commit is pushed to disk; PostgreSQL ignores it.
    pub sqlite_synchronous: SqliteSynchronous,
}

/// When a save's commit must reach the disk. Where the database lets each commit choose
/// (PostgreSQL's `synchronous_commit`), a save that nothing relies on before the order's
/// next save (or at all, as the settled order's last) need not wait for its flush: the
/// database's log is flushed in order, so the next flushed commit covers it, and
/// PostgreSQL's WAL writer flushes it within three `wal_writer_delay`s (600 ms by default)
/// anyway. Until then only a crash of the database server (not of this process) can lose
/// it, which leaves the order as a crash of this process during that save does: recovery
/// finishes or undoes it from the save before.
/// SQLite's flushes are set per file (`SQLITE_SYNCHRONOUS`), so there every save is alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Before the caller goes on: what the client's answer or the next call relies on.
    AtCommit,
    /// With a later commit (see the type's doc).
    Deferred,
}

/// SQLite's `synchronous` setting for the orders file (WAL mode either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteSynchronous {
    /// A commit is in the operating system's hands: it survives a killed process, not a
    /// power loss (the last commits before it may be lost). The default.
    #[default]
    Normal,
    /// A commit is synced to the disk: it also survives a power loss, at an `fsync` per
    /// committed batch.
    Full,
}

impl SqliteSynchronous {
    /// The value of `PRAGMA synchronous`.
    pub fn pragma_value(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

impl Store {
    /// Connects to `settings.url` (`sqlite:` or `postgres://`) and applies migrations.
    pub async fn open(settings: &StoreSettings) -> Result<Self, StoreError> {
        let store = if settings.url.starts_with("postgres") {
            Self::Postgres(PgStore::connect(&settings.url, settings.max_connections).await?)
        } else {
            Self::Sqlite(
                SqliteStore::connect(
                    &settings.url,
                    settings.max_connections,
                    settings.sqlite_synchronous,
                )
                .await?,
            )
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Brings the schema up to date; safe to run on every start and from many processes.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.migrate().await,
            Self::Postgres(s) => s.migrate().await,
        }
    }

    /// Which database this is, for logs.
    pub fn dialect(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Stores a new order with its key and first event in one transaction, leased to
    /// `lease.owner`. Fails with [`StoreError::KeyTaken`] if the key is in use.
    pub async fn insert_order(
        &self,
        order: &Order,
        key: Option<NewKey<'_>>,
        event: &NewEvent,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let inserted = match self {
            Self::Sqlite(s) => s.insert_order(order, key, event, lease).await,
            Self::Postgres(s) => s.insert_order(order, key, event, lease).await,
        };
        metrics::write_duration(self.dialect(), "new_order", started.elapsed());
        inserted
    }

    /// Writes the order's new state and events if `lease.owner` still holds the lease
    /// (which it does not renew: the driver does, while a step runs).
    pub async fn save_progress(
        &self,
        order: &Order,
        events: &[NewEvent],
        lease: &Lease,
    ) -> Result<(), StoreError> {
        self.save_progress_flushing(order, events, lease, Flush::AtCommit)
            .await
    }

    /// Like [`save_progress`](Self::save_progress), with the commit's flush as `flush`
    /// says.
    pub async fn save_progress_flushing(
        &self,
        order: &Order,
        events: &[NewEvent],
        lease: &Lease,
        flush: Flush,
    ) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let saved = match self {
            Self::Sqlite(s) => s.save_progress(order, events, lease).await,
            Self::Postgres(s) => s.save_progress(order, events, lease, flush).await,
        };
        let write = match flush {
            Flush::AtCommit => "progress",
            Flush::Deferred => "progress_deferred",
        };
        metrics::write_duration(self.dialect(), write, started.elapsed());
        saved
    }

    pub async fn find_order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        match self {
            Self::Sqlite(s) => s.find_order(id).await,
            Self::Postgres(s) => s.find_order(id).await,
        }
    }

    /// The record of a used key, with the answer it got.
    pub async fn find_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<KeyRecord>, StoreError> {
        match self {
            Self::Sqlite(s) => s.find_key(user, key).await,
            Self::Postgres(s) => s.find_key(user, key).await,
        }
    }

    /// Deletes keys that expired before `now`; returns how many.
    pub async fn purge_expired_keys(&self, now: Timestamp) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.purge_expired_keys(now).await,
            Self::Postgres(s) => s.purge_expired_keys(now).await,
        }
    }

    /// The order's event log, oldest first.
    pub async fn events(&self, id: OrderId) -> Result<Vec<OrderEvent>, StoreError> {
        match self {
            Self::Sqlite(s) => s.events(id).await,
            Self::Postgres(s) => s.events(id).await,
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.ping().await,
            Self::Postgres(s) => s.ping().await,
        }
    }
}

impl Store {
    /// Deletes `key` if it has expired, so that it can be used again; `true` if it did.
    pub async fn delete_expired_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.delete_expired_key(user, key, now).await,
            Self::Postgres(s) => s.delete_expired_key(user, key, now).await,
        }
    }
}

/// Which orders `GET /orders` wants, newest first.
#[derive(Clone, Debug, Default)]
pub struct OrderFilter {
    pub user_id: Option<UserId>,
    pub status: Option<crate::domain::order::OrderStatus>,
    /// Inclusive lower bound of `created_at`.
    pub created_after: Option<Timestamp>,
    /// Exclusive upper bound of `created_at`.
    pub created_before: Option<Timestamp>,
    /// Keyset position: only orders strictly older than this `(created_at, id)`.
    pub before: Option<(Timestamp, OrderId)>,
}

/// Connections of the pool(s), for the `db_pool_connections` gauge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub idle: usize,
    pub in_use: usize,
}

impl Store {
    /// Up to `limit` orders matching `filter`, newest first.
    pub async fn list_orders(
        &self,
        filter: &OrderFilter,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        match self {
            Self::Sqlite(s) => s.list_orders(filter, limit).await,
            Self::Postgres(s) => s.list_orders(filter, limit).await,
        }
    }

    /// How many orders have `status`.
    pub async fn count_with_status(
        &self,
        status: crate::domain::order::OrderStatus,
    ) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.count_with_status(status).await,
            Self::Postgres(s) => s.count_with_status(status).await,
        }
    }

    /// Whether every migration embedded in this binary has been applied successfully.
    pub async fn migrations_current(&self) -> Result<bool, StoreError> {
        let (applied, embedded) = match self {
            Self::Sqlite(s) => (s.applied_migrations().await?, sqlite::embedded_migrations()),
            Self::Postgres(s) => (
                s.applied_migrations().await?,
                postgres::embedded_migrations(),
            ),
        };
        Ok(embedded.iter().all(|v| applied.contains(v)))
    }

    pub fn pool_stats(&self) -> PoolStats {
        match self {
            Self::Sqlite(s) => s.pool_stats(),
            Self::Postgres(s) => s.pool_stats(),
        }
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }
}

/// Versions of migrations recorded as successful in `_sqlx_migrations`.
fn successful_versions(rows: Vec<(i64, bool)>) -> Vec<i64> {
    rows.into_iter()
        .filter(|(_, success)| *success)
        .map(|(version, _)| version)
        .collect()
}

impl Store {
    /// Moves the end of `owner`'s lease on an order to `until`: to keep it while a step
    /// runs, or to let a stopped order rest before recovery claims it again. `false` if
    /// `owner` no longer holds the lease.
    pub async fn extend_lease(
        &self,
        id: OrderId,
        owner: &str,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.extend_lease(id, owner, until).await,
            Self::Postgres(s) => s.extend_lease(id, owner, until).await,
        }
    }

    /// Takes the lease of up to `limit` unsettled orders whose lease expired before `now`
    /// (their process died or gave them up for a while) and returns them. Safe with many
    /// processes: each order goes to one of them.
    pub async fn claim_expired(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        match self {
            Self::Sqlite(s) => s.claim_expired(lease, now, limit).await,
            Self::Postgres(s) => s.claim_expired(lease, now, limit).await,
        }
    }

    /// Takes the lease of one order for an operator action, unless another process holds
    /// a live lease on it (`Ok(None)` then; `Err` only for database failures). Orders that
    /// do not exist also give `Ok(None)`: callers look them up first.
    pub async fn claim_one(
        &self,
        id: OrderId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<Order>, StoreError> {
        match self {
            Self::Sqlite(s) => s.claim_one(id, lease, now).await,
            Self::Postgres(s) => s.claim_one(id, lease, now).await,
        }
    }
}

impl Store {
    /// Lets other processes claim at once the unsettled orders this owner still leases
    /// (used when shutdown runs out of time).
    pub async fn release_leases(&self, owner: &str, now: Timestamp) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.release_leases(owner, now).await,
            Self::Postgres(s) => s.release_leases(owner, now).await,
        }
    }
}
