//! The PostgreSQL dialect: native UUID, NUMERIC, TIMESTAMPTZ and JSONB columns, for
//! deployments with many replicas on one database.

use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::pg_batch::{BATCHES_IN_FLIGHT, Batcher};
use super::pg_connections::WriteConnections;
use super::pg_writes::{NewOrderRow, ProgressRow, SagaWrite};
use super::row::{OrderRow, stored_response};
use super::{
    Flush, KeyRecord, Lease, NewEvent, NewKey, OrderEvent, OrderFilter, PoolStats, StoreError,
    successful_versions,
};
use crate::domain::idempotency::{Fingerprint, IdempotencyKey};
use crate::domain::ids::{OrderId, UserId};
use crate::domain::order::{Order, OrderStatus};
use crate::domain::when::Timestamp;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections for batched writes: one per statement in flight (a connection given back
/// is ready at once, see `pg_connections`).
const BATCH_CONNECTIONS: usize = BATCHES_IN_FLIGHT;

/// Connections for lone writes, of each kind of flush: as many as statements can be in
/// flight at once (`pg_batch::gather`: its statements and a lone write beside them; and a
/// write its caller applies alone, see `Batcher::write`), in case all are of that kind.
const LONE_CONNECTIONS: usize = BATCHES_IN_FLIGHT + 2;

/// How long a write waits for a connection, or for a new one to open.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct PgStore {
    /// Reads, and writes outside the saga's hot path.
    pool: PgPool,
    /// The saga's writes alone (`LONE_CONNECTIONS`).
    lone_writes: WriteConnections,
    /// The saga's writes alone whose flush may wait (`LONE_CONNECTIONS`).
    deferred_writes: WriteConnections,
    /// The saga's writes together (`BATCH_CONNECTIONS`).
    batch_writes: WriteConnections,
    /// The saga's two writes go through group commit ([`super::pg_batch`]).
    writes: Batcher<SagaWrite>,
}

const ORDER_COLUMNS: &str = "id, user_id, currency, address::text AS address, items::text AS items, \
     total, status, payment_id, shipment_id, progress::text AS progress, failure::text AS failure, \
     response_status, response_body, created_at, updated_at";

fn order_row(row: &PgRow) -> Result<OrderRow, StoreError> {
    Ok(OrderRow {
        id: OrderId::from(row.try_get::<Uuid, _>("id")?),
        user_id: row.try_get("user_id")?,
        currency: row.try_get("currency")?,
        address: row.try_get("address")?,
        items: row.try_get("items")?,
        total: row.try_get::<Decimal, _>("total")?,
        status: row.try_get("status")?,
        payment_id: row.try_get("payment_id")?,
        shipment_id: row.try_get("shipment_id")?,
        progress: row.try_get("progress")?,
        failure: row.try_get("failure")?,
        response_status: row.try_get("response_status")?,
        response_body: row.try_get("response_body")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        // No ping before each use: it costs a network round trip per query, and a broken
        // connection shows in the query's own error (sqlx then drops it).
        let pool_options = || {
            PgPoolOptions::new()
                .test_before_acquire(false)
                .acquire_timeout(ACQUIRE_TIMEOUT)
        };
        let pool = pool_options()
            .max_connections(max_connections.max(1))
            .connect_with(options.clone())
            .await?;
        // The saga's writes have connections of their own (see `pg_connections` for why
        // not sqlx's pool), opened when first needed.
        let lone_writes = WriteConnections::new(options.clone(), LONE_CONNECTIONS, ACQUIRE_TIMEOUT);
        // Commits that return before their WAL flush (see `Flush::Deferred`).
        let deferred_writes = WriteConnections::new(
            options.clone().options([("synchronous_commit", "off")]),
            LONE_CONNECTIONS,
            ACQUIRE_TIMEOUT,
        );
        // The batched statement's plan is made once per connection and kept, and no scan
        // of a whole table may be in it (see `pg_writes::SAGA_WRITES` for why).
        let batch_writes = WriteConnections::new(
            options.options([
                ("plan_cache_mode", "force_generic_plan"),
                ("enable_seqscan", "off"),
            ]),
            BATCH_CONNECTIONS,
            ACQUIRE_TIMEOUT,
        );
        Ok(Self {
            writes: Batcher::start(
                lone_writes.clone(),
                deferred_writes.clone(),
                batch_writes.clone(),
            ),
            pool,
            lone_writes,
            deferred_writes,
            batch_writes,
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Key, order and first event, in the next batched statement (one implicit
    /// transaction). Fails with [`StoreError::KeyTaken`] if the key is in use.
    pub async fn insert_order(
        &self,
        order: &Order,
        key: Option<NewKey<'_>>,
        event: &NewEvent,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        let row = NewOrderRow::of(order, key, event, lease);
        self.writes.write(SagaWrite::NewOrder(row)).await
    }

    /// The new state and its events, in the next batched statement, only if
    /// `lease.owner` still holds the lease. The lease's end is left alone: the driver
    /// renews it while a step runs.
    pub async fn save_progress(
        &self,
        order: &Order,
        events: &[NewEvent],
        lease: &Lease,
        flush: Flush,
    ) -> Result<(), StoreError> {
        self.writes
            .write(SagaWrite::Progress(ProgressRow::of(
                order, events, lease, flush,
            )))
            .await
    }

    pub async fn find_order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
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
             WHERE k.user_id = $1 AND k.idem_key = $2",
        )
        .bind(user.as_str())
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(KeyRecord {
            fingerprint: Fingerprint::from_stored(row.try_get("fingerprint")?),
            order_id: OrderId::from(row.try_get::<Uuid, _>("order_id")?),
            expires_at: row.try_get("expires_at")?,
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
        let done = sqlx::query(
            "DELETE FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2 AND expires_at < $3",
        )
        .bind(user.as_str())
        .bind(key.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn purge_expired_keys(&self, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn events(&self, id: OrderId) -> Result<Vec<OrderEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, step, outcome, attempt, upstream_status, duration_ms, detail \
             FROM order_events WHERE order_id = $1 ORDER BY id",
        )
        .bind(id.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OrderEvent {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    step: row.try_get("step")?,
                    outcome: row.try_get("outcome")?,
                    attempt: row.try_get::<Option<i32>, _>("attempt")?.map(|v| v as u32),
                    upstream_status: row
                        .try_get::<Option<i32>, _>("upstream_status")?
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

impl PgStore {
    pub async fn list_orders(
        &self,
        filter: &OrderFilter,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let mut query: QueryBuilder<Postgres> =
            QueryBuilder::new(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE TRUE"));
        if let Some(user) = &filter.user_id {
            query
                .push(" AND user_id = ")
                .push_bind(user.as_str().to_owned());
        }
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(after) = filter.created_after {
            query.push(" AND created_at >= ").push_bind(after);
        }
        if let Some(before) = filter.created_before {
            query.push(" AND created_at < ").push_bind(before);
        }
        if let Some((at, id)) = filter.before {
            query
                .push(" AND (created_at, id) < (")
                .push_bind(at)
                .push(", ")
                .push_bind(id.as_uuid())
                .push(")");
        }
        query
            .push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(|r| order_row(r)?.into_order()).collect()
    }

    pub async fn count_with_status(&self, status: OrderStatus) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = $1")
            .bind(status.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(count as u64)
    }

    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations")
                .fetch_all(&self.pool)
                .await?;
        Ok(successful_versions(rows))
    }

    /// The main pool's connections and the saga's write connections together.
    pub fn pool_stats(&self) -> PoolStats {
        let idle = self.pool.num_idle();
        let mut stats = PoolStats {
            idle,
            in_use: (self.pool.size() as usize).saturating_sub(idle),
        };
        for writes in [&self.lone_writes, &self.deferred_writes, &self.batch_writes] {
            let (idle, in_use) = writes.stats();
            stats.idle += idle;
            stats.in_use += in_use;
        }
        stats
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.lone_writes.close().await;
        self.deferred_writes.close().await;
        self.batch_writes.close().await;
    }

    pub async fn extend_lease(
        &self,
        id: OrderId,
        owner: &str,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE orders SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3",
        )
        .bind(until)
        .bind(id.as_uuid())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn release_leases(&self, owner: &str, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE orders SET lease_expires_at = $1 WHERE lease_owner = $2 AND step <> 'done'",
        )
        .bind(now)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// `FOR UPDATE SKIP LOCKED`: concurrent claims from several replicas skip each other's
    /// rows instead of waiting or taking the same order twice.
    pub async fn claim_expired(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let rows = sqlx::query(&format!(
            "UPDATE orders SET lease_owner = $1, lease_expires_at = $2 \
             WHERE id IN (SELECT id FROM orders WHERE step <> 'done' AND lease_expires_at < $3 \
                          ORDER BY lease_expires_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING {ORDER_COLUMNS}"
        ))
        .bind(&lease.owner)
        .bind(lease.expires_at(now))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| order_row(r)?.into_order()).collect()
    }

    pub async fn claim_one(
        &self,
        id: OrderId,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Option<Order>, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE orders SET lease_owner = $1, lease_expires_at = $2 \
             WHERE id = $3 AND (step = 'done' OR lease_owner = $1 OR lease_expires_at < $4) \
             RETURNING {ORDER_COLUMNS}"
        ))
        .bind(&lease.owner)
        .bind(lease.expires_at(now))
        .bind(id.as_uuid())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| order_row(&r)?.into_order()).transpose()
    }
}

/// The PostgreSQL server of the unit tests that need one (`ORDER_SERVICE_TEST_POSTGRES_URL`),
/// or `None` after a printed notice; a failure instead where the environment requires the
/// server (`ORDER_SERVICE_REQUIRE_POSTGRES=1`, as in CI).
#[cfg(test)]
pub(super) fn test_postgres_url(test: &str) -> Option<String> {
    let url = std::env::var("ORDER_SERVICE_TEST_POSTGRES_URL").ok();
    if url.is_none() {
        assert!(
            std::env::var("ORDER_SERVICE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "ORDER_SERVICE_TEST_POSTGRES_URL is not set but ORDER_SERVICE_REQUIRE_POSTGRES=1"
        );
        eprintln!("SKIPPED {test} on PostgreSQL: ORDER_SERVICE_TEST_POSTGRES_URL is not set");
    }
    url
}

#[cfg(test)]
mod tests {
    use sqlx::postgres::PgConnection;

    use super::*;

    /// Each set of connections' session settings: only the batched writes' plans are
    /// always generic (the others' are cached per connection as the server sees fit),
    /// only the deferred lone writes' commit without waiting for the flush.
    #[tokio::test]
    async fn each_pool_has_its_own_session_settings() {
        let Some(url) = test_postgres_url("each_pool_has_its_own_session_settings") else {
            return;
        };
        let store = PgStore::connect(&url, 2).await.unwrap();
        let settings = async |connection: &mut PgConnection| {
            let show = async |connection: &mut PgConnection, name: &str| {
                sqlx::query_scalar::<_, String>(&format!("SHOW {name}"))
                    .fetch_one(&mut *connection)
                    .await
                    .unwrap()
            };
            (
                show(connection, "plan_cache_mode").await,
                show(connection, "synchronous_commit").await,
            )
        };
        let of_writes = async |connections: &WriteConnections| {
            let mut connection = connections.checkout().await.unwrap();
            let settings = settings(&mut connection).await;
            connection.settle(Ok(())).unwrap();
            settings
        };
        let mut main = store.pool.acquire().await.unwrap();
        assert_eq!(settings(&mut main).await, ("auto".into(), "on".into()));
        assert_eq!(
            of_writes(&store.lone_writes).await,
            ("auto".into(), "on".into())
        );
        assert_eq!(
            of_writes(&store.batch_writes).await,
            ("force_generic_plan".into(), "on".into())
        );
        assert_eq!(
            of_writes(&store.deferred_writes).await,
            ("auto".into(), "off".into())
        );
    }

    impl PgStore {
        /// The plan the batched writes' connection has for the batched statement, as
        /// `EXPLAIN` shows it (generic plans show their parameters as `$n`).
        async fn batch_writes_plan(&self) -> String {
            use super::super::pg_writes::SAGA_WRITES;
            let mut connection = self.batch_writes.checkout().await.unwrap();
            // An empty array for each of its 47 parameters (a generic plan does not look
            // at them).
            let arguments = vec!["'{}'"; 47].join(", ");
            let explained = async {
                sqlx::raw_sql(&format!("PREPARE probe AS {SAGA_WRITES}"))
                    .execute(&mut *connection)
                    .await?;
                let lines: Vec<String> =
                    sqlx::query_scalar(&format!("EXPLAIN EXECUTE probe({arguments})"))
                        .fetch_all(&mut *connection)
                        .await?;
                sqlx::raw_sql("DEALLOCATE probe")
                    .execute(&mut *connection)
                    .await?;
                Ok(lines.join("\n"))
            }
            .await;
            connection.settle(explained).unwrap()
        }
    }

    /// The batched statement is planned once per connection, maybe while the tables are
    /// empty, and that plan is kept while they grow: it must find the orders it updates
    /// by their ids, never by scanning `orders`, whatever the tables held when it was
    /// made. Checked on empty tables and on three analyzed rows, where a scan is cheapest.
    #[tokio::test]
    async fn the_batched_statements_plan_finds_orders_by_their_ids() {
        let Some(base) = test_postgres_url("the_batched_statements_plan_finds_orders_by_their_ids")
        else {
            return;
        };
        let mut admin = <PgConnection as sqlx::Connection>::connect(&base)
            .await
            .unwrap();
        // Named as `tests/common`'s `fresh_schema` names its schemas, so that one left by a
        // run that failed half-way is dropped by a later run's clean-up.
        let schema = format!(
            "t_{}_{}",
            chrono::Utc::now().timestamp(),
            &Uuid::new_v4().simple().to_string()[..12]
        );
        sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options[search_path]={schema}");
        let store = PgStore::connect(&url, 1).await.unwrap();
        store.migrate().await.unwrap();

        let no_rows = store.batch_writes_plan().await;
        sqlx::raw_sql(&format!(
            "INSERT INTO {schema}.orders SELECT gen_random_uuid(), 'u', 'USD', '{{}}', '[]', 1,
                 'pending', 'pay', NULL, 'p', 's', '{{}}', NULL, NULL, NULL, 'o', now(), now(), now()
             FROM generate_series(1, 3);
             ANALYZE {schema}.orders;"
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        let three_rows = store.batch_writes_plan().await;
        store.close().await;
        sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut admin)
            .await
            .unwrap();

        for plan in [no_rows, three_rows] {
            let update = plan
                .split("CTE updated")
                .nth(1)
                .and_then(|rest| rest.split("CTE step_events").next())
                .unwrap_or_else(|| panic!("no update in the plan:\n{plan}"));
            assert!(
                update.contains("orders_pkey") && update.contains("Index Cond: (id = ANY ($30))"),
                "the update does not look its orders up by id:\n{plan}"
            );
            assert!(!plan.contains("Seq Scan"), "a table is scanned:\n{plan}");
        }
    }
}
