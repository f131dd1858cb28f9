//! The SQLite dialect: one writer connection (SQLite allows one writer at a time; queueing
//! in the pool is fairer and cheaper than `SQLITE_BUSY` retries) and a pool of readers, in
//! WAL mode so readers never wait for the writer.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::row::{OrderJson, OrderRow, ProgressJson, stored_response};
use super::sqlite_writer::Writer;
use super::{
    KeyRecord, Lease, NewEvent, NewKey, OrderEvent, OrderFilter, PoolStats, StoreError,
    successful_versions,
};
use crate::domain::idempotency::{Fingerprint, IdempotencyKey};
use crate::domain::ids::{OrderId, UserId};
use crate::domain::order::{Order, OrderStatus};
use crate::domain::when::{self, Timestamp};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The page size of a database this service creates: 2 KiB, not SQLite's 4 KiB. Every
/// commit writes each page it touched to the WAL, and the checkpoints write it again to
/// the database file; under load nearly every save of an order dirties a page of its own
/// (a row is ~1.3 KB), so smaller pages mean fewer bytes written: 41.5–41.9 against
/// 48.8–49.4 KiB per order (`/proc/<pid>/io`, 15 s at 64 clients, two runs each). In
/// seven alternating pairs at 64 the p99.9 was lower in five, orders/s within the noise
/// (BENCHMARKS.md, 2026-12-06 08:24). The price is ~10 % more file per order (one row per
/// leaf page). A bigger row spills into an overflow page, as it did before at twice the
/// size. An existing database keeps its page size: SQLite cannot change it in WAL mode
/// without a `VACUUM` (docs/operations.md says how).
pub(super) const NEW_DATABASE_PAGE_SIZE: u32 = 2048;

#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Used for migrations only; every other write goes through `writes`.
    writer: SqlitePool,
    writes: Writer,
    reader: SqlitePool,
    /// Held for the life of the process: SQLite serves one order-service process only.
    _process_lock: Option<std::sync::Arc<std::fs::File>>,
}

/// Takes the exclusive lock `<database>.lock`, so that a second process on the same file
/// refuses to start instead of racing this one.
fn lock_database_file(database: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let path = database.with_extension(match database.extension() {
        Some(ext) => format!("{}.lock", ext.to_string_lossy()),
        None => "lock".to_owned(),
    });
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            StoreError::Database(sqlx::Error::Configuration(
                format!("cannot open lock file {}: {e}", path.display()).into(),
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StoreError::InUse(database.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Database(
            sqlx::Error::Configuration(format!("cannot lock {}: {e}", path.display()).into()),
        )),
    }
}

fn time(text: &str) -> Result<Timestamp, StoreError> {
    when::parse(text).map_err(|e| StoreError::Corrupt(format!("timestamp '{text}': {e}")))
}

fn order_id(text: &str) -> Result<OrderId, StoreError> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("order id '{text}': {e}")))
}

const ORDER_COLUMNS: &str = "id, user_id, currency, address, items, total, status, payment_id, \
     shipment_id, progress, failure, response_status, response_body, created_at, updated_at";

fn order_row(row: &SqliteRow) -> Result<OrderRow, StoreError> {
    let total: String = row.try_get("total")?;
    Ok(OrderRow {
        id: order_id(row.try_get("id")?)?,
        user_id: row.try_get("user_id")?,
        currency: row.try_get("currency")?,
        address: row.try_get("address")?,
        items: row.try_get("items")?,
        total: total
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("total '{total}': {e}")))?,
        status: row.try_get("status")?,
        payment_id: row.try_get("payment_id")?,
        shipment_id: row.try_get("shipment_id")?,
        progress: row.try_get("progress")?,
        failure: row.try_get("failure")?,
        response_status: row.try_get("response_status")?,
        response_body: row.try_get("response_body")?,
        created_at: time(row.try_get("created_at")?)?,
        updated_at: time(row.try_get("updated_at")?)?,
    })
}

impl SqliteStore {
    pub async fn connect(
        url: &str,
        readers: u32,
        synchronous: super::SqliteSynchronous,
    ) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL survives a killed process (the WAL is in the OS's hands at commit);
            // FULL also survives power loss, at an fsync per commit.
            .synchronous(match synchronous {
                super::SqliteSynchronous::Normal => SqliteSynchronous::Normal,
                super::SqliteSynchronous::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // First of the pragmas (sqlx orders them): it only counts before the file
            // has its first page, and does nothing to an existing database.
            .page_size(NEW_DATABASE_PAGE_SIZE);
        let filename = options.get_filename().to_owned();
        let in_memory = filename.as_os_str().is_empty() || filename.to_string_lossy() == ":memory:";
        if in_memory {
            return Err(StoreError::Database(sqlx::Error::Configuration(
                "an in-memory SQLite database is not supported: give DATABASE_URL a file, e.g. sqlite://./data/orders.db"
                    .into(),
            )));
        }
        if let Some(dir) = filename.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(sqlx::Error::Configuration(
                    format!("cannot create directory {}: {e}", dir.display()).into(),
                ))
            })?;
        }
        let process_lock = Some(std::sync::Arc::new(lock_database_file(&filename)?));
        // A local file needs no liveness ping before each use (sqlx's default costs a
        // round trip to the connection's thread per query).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        // A reader's page cache is dropped whenever another connection commits, which
        // under load is all the time: 1 MiB each (not SQLite's 2 MiB) keeps a full pool
        // of readers from holding memory for nothing.
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .test_before_acquire(false)
            .connect_with(options.read_only(true).pragma("cache_size", "-1024"))
            .await?;
        Ok(Self {
            writer,
            writes: Writer::start(&filename, synchronous)?,
            reader,
            _process_lock: process_lock,
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Key, order and first event, written together in the writer's next batch.
    pub async fn insert_order(
        &self,
        order: &Order,
        key: Option<NewKey<'_>>,
        event: &NewEvent,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        let json = OrderJson::of(order);
        let id = order.id.to_string();
        let user = order.user_id.as_str().to_owned();
        let created_at = when::format(order.created_at);
        let key = key.map(|k| {
            (
                k.key.as_str().to_owned(),
                k.fingerprint.as_str().to_owned(),
                when::format(k.expires_at),
            )
        });
        let row = (
            order.currency.code(),
            order.total.to_string(),
            order.status.as_str(),
            order.progress.step.as_str(),
            order.reservation_id().map(|r| r.as_str().to_owned()),
            order.payment_id.as_str().to_owned(),
            order.shipment_id.as_str().to_owned(),
            order.response.clone(),
            lease.owner.clone(),
            when::format(lease.expires_at(order.updated_at)),
            when::format(order.updated_at),
        );
        let event = EventRow::of(event);
        let taken = self
            .writes
            .run(move |conn| {
                if let Some((key, fingerprint, expires_at)) = &key {
                    let inserted = conn
                        .prepare_cached(
                            "INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, order_id, created_at, expires_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        )?
                        .execute(rusqlite::params![user, key, fingerprint, id, created_at, expires_at]);
                    match inserted {
                        Err(rusqlite::Error::SqliteFailure(e, _))
                            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
                        {
                            return Ok(true);
                        }
                        other => {
                            other?;
                        }
                    }
                }
                let (currency, total, status, step, reservation, payment, shipment, response, owner, lease_until, updated_at) = &row;
                conn.prepare_cached(
                    "INSERT INTO orders (id, user_id, currency, address, items, total, status, step, \
                     reservation_id, payment_id, shipment_id, progress, failure, response_status, \
                     response_body, lease_owner, lease_expires_at, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                )?
                .execute(rusqlite::params![
                    id,
                    user,
                    currency,
                    json.address,
                    json.items,
                    total,
                    status,
                    step,
                    reservation,
                    payment,
                    shipment,
                    json.progress,
                    json.failure,
                    response.as_ref().map(|r| i64::from(r.status)),
                    response.as_ref().map(|r| r.body.as_str()),
                    owner,
                    lease_until,
                    created_at,
                    updated_at,
                ])?;
                event.insert(conn, &id)?;
                Ok(false)
            })
            .await?;
        if taken {
            return Err(StoreError::KeyTaken);
        }
        Ok(())
    }

    /// The new state and its events, in the writer's next batch, only if `lease.owner`
    /// still holds the lease (the events are written only then, too). The lease's end is
    /// left alone: the driver renews it while a step runs, and leaving it spares an index
    /// update per step.
    pub async fn save_progress(
        &self,
        order: &Order,
        events: &[NewEvent],
        lease: &Lease,
    ) -> Result<(), StoreError> {
        let json = ProgressJson::of(order);
        let id = order.id.to_string();
        let fields = (
            order.status.as_str(),
            order.progress.step.as_str(),
            order.reservation_id().map(|r| r.as_str().to_owned()),
            order.response.clone(),
            when::format(order.updated_at),
            lease.owner.clone(),
        );
        let events: Vec<EventRow> = events.iter().map(EventRow::of).collect();
        let held = self
            .writes
            .run(move |conn| {
                let (status, step, reservation, response, updated_at, owner) = &fields;
                let updated = conn
                    .prepare_cached(
                        "UPDATE orders SET status = ?1, step = ?2, reservation_id = ?3, progress = ?4, \
                         failure = ?5, response_status = ?6, response_body = ?7, \
                         updated_at = ?8 WHERE id = ?9 AND lease_owner = ?10",
                    )?
                    .execute(rusqlite::params![
                        status,
                        step,
                        reservation,
                        json.progress,
                        json.failure,
                        response.as_ref().map(|r| i64::from(r.status)),
                        response.as_ref().map(|r| r.body.as_str()),
                        updated_at,
                        id,
                        owner,
                    ])?;
                if updated != 1 {
                    return Ok(false);
                }
                for event in &events {
                    event.insert(conn, &id)?;
                }
                Ok(true)
            })
            .await?;
        if !held {
            return Err(StoreError::LeaseLost(order.id));
        }
        Ok(())
    }

    pub async fn find_order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| order_row(&r)?.into_order()).transpose()
    }

    pub async fn find_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT k.fingerprint, k.order_id, k.expires_at, o.response_status, o.response_body \
             FROM idempotency_keys k LEFT JOIN orders o ON o.id = k.order_id \
             WHERE k.user_id = ?1 AND k.idem_key = ?2",
        )
        .bind(user.as_str())
        .bind(key.as_str())
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(KeyRecord {
            fingerprint: Fingerprint::from_stored(row.try_get("fingerprint")?),
            order_id: order_id(row.try_get("order_id")?)?,
            expires_at: time(row.try_get("expires_at")?)?,
            response: stored_response(
                row.try_get("response_status")?,
                row.try_get("response_body")?,
            )?,
        }))
    }

    pub async fn delete_expired_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (user, key, now) = (
            user.as_str().to_owned(),
            key.as_str().to_owned(),
            when::format(now),
        );
        let deleted = self
            .writes
            .run(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM idempotency_keys WHERE user_id = ?1 AND idem_key = ?2 AND expires_at < ?3",
                )?
                .execute(rusqlite::params![user, key, now])
            })
            .await?;
        Ok(deleted > 0)
    }

    pub async fn purge_expired_keys(&self, now: Timestamp) -> Result<u64, StoreError> {
        let now = when::format(now);
        let deleted = self
            .writes
            .run(move |conn| {
                conn.prepare_cached("DELETE FROM idempotency_keys WHERE expires_at < ?1")?
                    .execute([&now])
            })
            .await?;
        Ok(deleted as u64)
    }

    pub async fn events(&self, id: OrderId) -> Result<Vec<OrderEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, step, outcome, attempt, upstream_status, duration_ms, detail \
             FROM order_events WHERE order_id = ?1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OrderEvent {
                    id: row.try_get("id")?,
                    at: time(row.try_get("at")?)?,
                    step: row.try_get("step")?,
                    outcome: row.try_get("outcome")?,
                    attempt: row.try_get::<Option<i64>, _>("attempt")?.map(|v| v as u32),
                    upstream_status: row
                        .try_get::<Option<i64>, _>("upstream_status")?
                        .map(|v| v as u16),
                    duration_ms: row
                        .try_get::<Option<i64>, _>("duration_ms")?
                        .map(|v| v as u64),
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }
}

/// Versions of the migrations built into this binary.
pub(super) fn embedded_migrations() -> Vec<i64> {
    MIGRATOR.iter().map(|m| m.version).collect()
}

impl SqliteStore {
    pub async fn list_orders(
        &self,
        filter: &OrderFilter,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let mut query: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE 1 = 1"));
        if let Some(user) = &filter.user_id {
            query
                .push(" AND user_id = ")
                .push_bind(user.as_str().to_owned());
        }
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(after) = filter.created_after {
            query
                .push(" AND created_at >= ")
                .push_bind(when::format(after));
        }
        if let Some(before) = filter.created_before {
            query
                .push(" AND created_at < ")
                .push_bind(when::format(before));
        }
        if let Some((at, id)) = filter.before {
            query
                .push(" AND (created_at, id) < (")
                .push_bind(when::format(at))
                .push(", ")
                .push_bind(id.to_string())
                .push(")");
        }
        query
            .push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = query.build().fetch_all(&self.reader).await?;
        rows.iter().map(|r| order_row(r)?.into_order()).collect()
    }

    pub async fn count_with_status(&self, status: OrderStatus) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = ?1")
            .bind(status.as_str())
            .fetch_one(&self.reader)
            .await?;
        Ok(count as u64)
    }

    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations")
                .fetch_all(&self.reader)
                .await?;
        Ok(successful_versions(rows))
    }

    pub fn pool_stats(&self) -> PoolStats {
        let idle = self.reader.num_idle() + self.writer.num_idle();
        let size = self.reader.size() as usize + self.writer.size() as usize;
        PoolStats {
            idle,
            in_use: size.saturating_sub(idle),
        }
    }

    pub async fn close(&self) {
        self.writes.close();
        self.writer.close().await;
        self.reader.close().await;
    }

    pub async fn extend_lease(
        &self,
        id: OrderId,
        owner: &str,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, owner, until) = (id.to_string(), owner.to_owned(), when::format(until));
        let updated = self
            .writes
            .run(move |conn| {
                conn.prepare_cached(
                    "UPDATE orders SET lease_expires_at = ?1 WHERE id = ?2 AND lease_owner = ?3",
                )?
                .execute(rusqlite::params![until, id, owner])
            })
            .await?;
        Ok(updated == 1)
    }

    pub async fn release_leases(&self, owner: &str, now: Timestamp) -> Result<u64, StoreError> {
        let (owner, now) = (owner.to_owned(), when::format(now));
        let updated = self
            .writes
            .run(move |conn| {
                conn.prepare_cached(
                    "UPDATE orders SET lease_expires_at = ?1 WHERE lease_owner = ?2 AND step <> 'done'",
                )?
                .execute(rusqlite::params![now, owner])
            })
            .await?;
        Ok(updated as u64)
    }

    /// The single writer serialises claims, so no two claims can take the same order.
    /// The claimed orders are read back after the claim committed.
    pub async fn claim_expired(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let (owner, until, now) = (
            lease.owner.clone(),
            when::format(lease.expires_at(now)),
            when::format(now),
        );
        let ids: Vec<String> = self
            .writes
            .run(move |conn| {
                conn.prepare_cached(
                    "UPDATE orders SET lease_owner = ?1, lease_expires_at = ?2 \
                     WHERE id IN (SELECT id FROM orders WHERE step <> 'done' AND lease_expires_at < ?3 \
                                  ORDER BY lease_expires_at LIMIT ?4) \
                     RETURNING id",
                )?
                .query_map(rusqlite::params![owner, until, now, i64::from(limit)], |row| {
                    row.get(0)
                })?
                .collect()
            })
            .await?;
        let mut orders = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(order) = self.find_order(order_id(&id)?).await? {
                orders.push(order);
            }
        }
        Ok(orders)
    }

    pub async fn claim_one(
        &self,
        id: OrderId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<Order>, StoreError> {
        let (owner, until, text_id, now) = (
            lease.owner.clone(),
            when::format(lease.expires_at(now)),
            id.to_string(),
            when::format(now),
        );
        let claimed = self
            .writes
            .run(move |conn| {
                conn.prepare_cached(
                    "UPDATE orders SET lease_owner = ?1, lease_expires_at = ?2 \
                     WHERE id = ?3 AND (step = 'done' OR lease_owner = ?1 OR lease_expires_at < ?4)",
                )?
                .execute(rusqlite::params![owner, until, text_id, now])
            })
            .await?;
        if claimed == 0 {
            return Ok(None);
        }
        self.find_order(id).await
    }
}

/// An event's values, owned, for the writer thread.
struct EventRow {
    at: String,
    step: &'static str,
    outcome: &'static str,
    attempt: Option<i64>,
    upstream_status: Option<i64>,
    duration_ms: Option<i64>,
    detail: Option<String>,
}

impl EventRow {
    fn of(event: &NewEvent) -> Self {
        Self {
            at: when::format(event.at),
            step: event.step,
            outcome: event.outcome,
            attempt: event.attempt.map(i64::from),
            upstream_status: event.upstream_status.map(i64::from),
            duration_ms: event.duration_ms.map(|d| d as i64),
            detail: event.detail.clone(),
        }
    }

    fn insert(&self, conn: &rusqlite::Connection, order_id: &str) -> rusqlite::Result<usize> {
        conn.prepare_cached(
            "INSERT INTO order_events (order_id, at, step, outcome, attempt, upstream_status, duration_ms, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(rusqlite::params![
            order_id,
            self.at,
            self.step,
            self.outcome,
            self.attempt,
            self.upstream_status,
            self.duration_ms,
            self.detail,
        ])
    }
}
