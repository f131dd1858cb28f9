//! The two writes of the saga's hot path on PostgreSQL — a new order with its key and
//! first event, and a step's progress with its events — as owned rows, and the statement
//! that applies any number of them, of both kinds, at once ([`super::pg_batch`] gathers
//! them).
//!
//! A write alone goes as a small statement of its own (prepared, planned once per
//! connection: an index lookup by id whatever the table's size). Several go as one
//! statement that takes an array per column (`unnest`), prepared too and planned once per
//! connection (see [`SAGA_WRITES`] for how that plan is kept from scanning a table).
//! Prepared rather than sent as text, the batch costs one round trip instead of two and
//! no parse on the server.

use rust_decimal::Decimal;
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use uuid::Uuid;

use super::pg_batch::BatchedWrite;
use super::pg_connections::WriteConnections;
use super::row::{OrderJson, ProgressJson};
use super::{Flush, Lease, NewEvent, NewKey, StoreError};
use crate::domain::order::Order;
use crate::domain::when::Timestamp;

/// A new order, its idempotency key (if any) and its first event.
pub(super) struct NewOrderRow {
    id: Uuid,
    user_id: String,
    currency: &'static str,
    json: OrderJson,
    total: Decimal,
    status: &'static str,
    step: &'static str,
    reservation_id: Option<String>,
    payment_id: String,
    shipment_id: String,
    response_status: Option<i32>,
    response_body: Option<String>,
    lease_owner: String,
    lease_expires_at: Timestamp,
    created_at: Timestamp,
    updated_at: Timestamp,
    key: Option<(String, String, Timestamp)>,
    event: NewEvent,
}

impl NewOrderRow {
    pub fn of(order: &Order, key: Option<NewKey<'_>>, event: &NewEvent, lease: &Lease) -> Self {
        Self {
            id: order.id.as_uuid(),
            user_id: order.user_id.as_str().to_owned(),
            currency: order.currency.code(),
            json: storable_order_json(OrderJson::of(order)),
            total: order.total,
            status: order.status.as_str(),
            step: order.progress.step.as_str(),
            reservation_id: order.reservation_id().map(|r| storable(r.as_str())),
            payment_id: order.payment_id.as_str().to_owned(),
            shipment_id: order.shipment_id.as_str().to_owned(),
            response_status: order.response.as_ref().map(|r| i32::from(r.status)),
            response_body: order.response.as_ref().map(|r| r.body.clone()),
            lease_owner: lease.owner.clone(),
            lease_expires_at: lease.expires_at(order.updated_at),
            created_at: order.created_at,
            updated_at: order.updated_at,
            key: key.map(|k| {
                (
                    k.key.as_str().to_owned(),
                    k.fingerprint.as_str().to_owned(),
                    k.expires_at,
                )
            }),
            event: storable_event(event),
        }
    }
}

/// One order: key, order and first event through data-modifying CTEs; a taken key fails
/// the whole statement with a unique violation.
const INSERT_ORDER: &str = "\
WITH new_key AS (
  INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, order_id, created_at, expires_at)
  SELECT $2, $20, $21, $1, $18, $22 WHERE $20::text IS NOT NULL
), new_order AS (
  INSERT INTO orders (id, user_id, currency, address, items, total, status, step,
    reservation_id, payment_id, shipment_id, progress, failure, response_status,
    response_body, lease_owner, lease_expires_at, created_at, updated_at)
  VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7, $8, $9, $10, $11, $12::jsonb, $13::jsonb,
    $14, $15, $16, $17, $18, $19)
)
INSERT INTO order_events (order_id, at, step, outcome, attempt, upstream_status, duration_ms, detail)
VALUES ($1, $23, $24, $25, $26, $27, $28, $29)";

impl NewOrderRow {
    /// Applies this write alone; `false` if its key is taken.
    async fn apply_one(&self, connections: &WriteConnections) -> Result<bool, sqlx::Error> {
        let key = self.key.as_ref();
        let mut connection = connections.checkout().await?;
        let done = sqlx::query(INSERT_ORDER)
            .bind(self.id)
            .bind(&self.user_id)
            .bind(self.currency)
            .bind(&self.json.address)
            .bind(&self.json.items)
            .bind(self.total)
            .bind(self.status)
            .bind(self.step)
            .bind(self.reservation_id.as_deref())
            .bind(&self.payment_id)
            .bind(&self.shipment_id)
            .bind(&self.json.progress)
            .bind(self.json.failure.as_deref())
            .bind(self.response_status)
            .bind(self.response_body.as_deref())
            .bind(&self.lease_owner)
            .bind(self.lease_expires_at)
            .bind(self.created_at)
            .bind(self.updated_at)
            .bind(key.map(|k| k.0.as_str()))
            .bind(key.map(|k| k.1.as_str()))
            .bind(key.map(|k| k.2))
            .bind(self.event.at)
            .bind(self.event.step)
            .bind(self.event.outcome)
            .bind(self.event.attempt.map(to_i32))
            .bind(self.event.upstream_status.map(i32::from))
            .bind(self.event.duration_ms.map(to_i64))
            .bind(self.event.detail.as_deref())
            .execute(&mut *connection)
            .await;
        match connection.settle(done) {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Binds `rows` as parameters 1 to 29 of [`SAGA_WRITES`].
    fn bind_many<'q, O>(rows: &[&'q Self], query: Scalar<'q, O>) -> Scalar<'q, O> {
        let column =
            |f: fn(&'q Self) -> Option<&'q str>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        let events = EventColumns::of(rows.iter().map(|r| &r.event));
        let query = query
            .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
            .bind(column(|r| Some(&r.user_id)))
            .bind(column(|r| Some(r.currency)))
            .bind(column(|r| Some(&r.json.address)))
            .bind(column(|r| Some(&r.json.items)))
            .bind(rows.iter().map(|r| r.total).collect::<Vec<_>>())
            .bind(column(|r| Some(r.status)))
            .bind(column(|r| Some(r.step)))
            .bind(column(|r| r.reservation_id.as_deref()))
            .bind(column(|r| Some(&r.payment_id)))
            .bind(column(|r| Some(&r.shipment_id)))
            .bind(column(|r| Some(&r.json.progress)))
            .bind(column(|r| r.json.failure.as_deref()))
            .bind(rows.iter().map(|r| r.response_status).collect::<Vec<_>>())
            .bind(column(|r| r.response_body.as_deref()))
            .bind(column(|r| Some(&r.lease_owner)))
            .bind(rows.iter().map(|r| r.lease_expires_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
            .bind(column(|r| r.key.as_ref().map(|k| k.0.as_str())))
            .bind(column(|r| r.key.as_ref().map(|k| k.1.as_str())))
            .bind(
                rows.iter()
                    .map(|r| r.key.as_ref().map(|k| k.2))
                    .collect::<Vec<_>>(),
            );
        events.bind_to(query)
    }

    fn outcome(&self, applied: bool) -> Result<(), StoreError> {
        match (applied, &self.key) {
            (true, _) => Ok(()),
            (false, Some(_)) => Err(StoreError::KeyTaken),
            (false, None) => Err(StoreError::Corrupt(format!(
                "order {} was not stored, and it has no key that could be taken",
                self.id
            ))),
        }
    }
}

/// A step's result: the order's new state and the events that go with it.
pub(super) struct ProgressRow {
    id: Uuid,
    status: &'static str,
    step: &'static str,
    reservation_id: Option<String>,
    json: ProgressJson,
    response_status: Option<i32>,
    response_body: Option<String>,
    updated_at: Timestamp,
    lease_owner: String,
    events: Vec<NewEvent>,
    flush: Flush,
}

impl ProgressRow {
    pub fn of(order: &Order, events: &[NewEvent], lease: &Lease, flush: Flush) -> Self {
        Self {
            flush,
            id: order.id.as_uuid(),
            status: order.status.as_str(),
            step: order.progress.step.as_str(),
            reservation_id: order.reservation_id().map(|r| storable(r.as_str())),
            json: storable_progress_json(ProgressJson::of(order)),
            response_status: order.response.as_ref().map(|r| i32::from(r.status)),
            response_body: order.response.as_ref().map(|r| r.body.clone()),
            updated_at: order.updated_at,
            lease_owner: lease.owner.clone(),
            events: events.iter().map(storable_event).collect(),
        }
    }
}

/// One order's new state, and its events (in the order given) only if the update found
/// the lease held by the writer.
const SAVE_ONE: &str = "\
WITH updated AS (
  UPDATE orders SET status = $2, step = $3, reservation_id = $4, progress = $5::jsonb,
    failure = $6::jsonb, response_status = $7, response_body = $8, updated_at = $9
  WHERE id = $1 AND lease_owner = $10
  RETURNING id
), logged AS (
  INSERT INTO order_events (order_id, at, step, outcome, attempt, upstream_status, duration_ms, detail)
  SELECT updated.id, e.at, e.step, e.outcome, e.attempt, e.upstream_status, e.duration_ms, e.detail
  FROM updated CROSS JOIN unnest($11::timestamptz[], $12::text[], $13::text[], $14::int4[],
      $15::int4[], $16::int8[], $17::text[])
    WITH ORDINALITY AS e(at, step, outcome, attempt, upstream_status, duration_ms, detail, n)
  ORDER BY e.n
)
SELECT count(*) FROM updated";

impl ProgressRow {
    /// Applies this write alone; `false` if another process holds the order's lease.
    async fn apply_one(&self, connections: &WriteConnections) -> Result<bool, sqlx::Error> {
        let query = sqlx::query_scalar(SAVE_ONE)
            .bind(self.id)
            .bind(self.status)
            .bind(self.step)
            .bind(self.reservation_id.as_deref())
            .bind(&self.json.progress)
            .bind(self.json.failure.as_deref())
            .bind(self.response_status)
            .bind(self.response_body.as_deref())
            .bind(self.updated_at)
            .bind(&self.lease_owner);
        let mut connection = connections.checkout().await?;
        let updated = EventColumns::of(self.events.iter())
            .bind_to(query)
            .fetch_one(&mut *connection)
            .await;
        let updated: i64 = connection.settle(updated)?;
        Ok(updated == 1)
    }

    /// Binds `rows` as parameters 30 to 47 of [`SAGA_WRITES`].
    fn bind_many<'q, O>(rows: &[&'q Self], query: Scalar<'q, O>) -> Scalar<'q, O> {
        let column =
            |f: fn(&'q Self) -> Option<&'q str>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        let events = EventColumns::of(rows.iter().flat_map(|r| r.events.iter()));
        let event_orders: Vec<Uuid> = rows
            .iter()
            .flat_map(|r| r.events.iter().map(|_| r.id))
            .collect();
        let query = query
            .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
            .bind(column(|r| Some(r.status)))
            .bind(column(|r| Some(r.step)))
            .bind(column(|r| r.reservation_id.as_deref()))
            .bind(column(|r| Some(&r.json.progress)))
            .bind(column(|r| r.json.failure.as_deref()))
            .bind(rows.iter().map(|r| r.response_status).collect::<Vec<_>>())
            .bind(column(|r| r.response_body.as_deref()))
            .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
            .bind(column(|r| Some(&r.lease_owner)))
            .bind(event_orders);
        events.bind_to(query)
    }

    fn outcome(&self, applied: bool) -> Result<(), StoreError> {
        if applied {
            Ok(())
        } else {
            Err(StoreError::LeaseLost(self.id.into()))
        }
    }
}

/// Either write of the saga, so that both kinds share one statement: one round trip, one
/// transaction and one WAL flush for every write queued meanwhile. Measured with the
/// kinds apart (one statement of each in flight), the server's commits were the bound:
/// a third statement in flight (settling saves apart) cost 8 % of the orders per second.
#[expect(
    clippy::large_enum_variant,
    reason = "moved once into the queue; a box would be one more allocation per write"
)]
pub(super) enum SagaWrite {
    NewOrder(NewOrderRow),
    Progress(ProgressRow),
}

/// New orders (parameters 1-29) and step saves (30-47) in one statement; either list
/// may be empty. An order's saves never share a statement with its insert (the saga
/// waits for each write), so the two parts touch different rows.
///
/// New orders: keys go in with `ON CONFLICT DO NOTHING`, and only the orders whose key
/// went in (or that have none) follow, with their events: a taken key — by another
/// transaction or by an earlier row of the same batch — leaves that one order out
/// instead of failing the statement.
///
/// Saves: only rows whose lease is still held by the writer are updated, and only their
/// events are logged (in the order given). The lease's end is left alone: the driver
/// renews it while a step runs.
///
/// Returns the ids of the orders stored or updated.
///
/// Its plan is made once per connection (`plan_cache_mode = force_generic_plan`) and kept
/// while the tables grow, so it must not depend on their size: the saves' update finds
/// its rows through `o.id = ANY($30)`, an index condition on the primary key bounded by
/// the batch's own ids, and the connections run with `enable_seqscan = off`, so that even
/// a plan made on empty tables does not scan `orders` (see
/// `postgres::tests::the_batched_statements_plan_finds_orders_by_their_ids`). Until
/// 2026-12-07 the statement was planned at every run instead (`force_custom_plan`),
/// because a cached plan made while the tables were small scanned `orders` in full and
/// halved throughput; planning took about a third of the server's CPU at 16 clients.
pub(super) const SAGA_WRITES: &str = "\
WITH v AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[],
      $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
      $14::int4[], $15::text[], $16::text[], $17::timestamptz[], $18::timestamptz[],
      $19::timestamptz[], $20::text[], $21::text[], $22::timestamptz[], $23::timestamptz[],
      $24::text[], $25::text[], $26::int4[], $27::int4[], $28::int8[], $29::text[])
    WITH ORDINALITY AS v(id, user_id, currency, address, items, total, status, step,
      reservation_id, payment_id, shipment_id, progress, failure, response_status,
      response_body, lease_owner, lease_expires_at, created_at, updated_at, idem_key,
      fingerprint, key_expires_at, event_at, event_step, event_outcome, event_attempt,
      event_upstream_status, event_duration_ms, event_detail, n)
), new_key AS (
  INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, order_id, created_at, expires_at)
  SELECT user_id, idem_key, fingerprint, id, created_at, key_expires_at
  FROM v WHERE idem_key IS NOT NULL ORDER BY n
  ON CONFLICT DO NOTHING
  RETURNING order_id
), new_order AS (
  INSERT INTO orders (id, user_id, currency, address, items, total, status, step,
    reservation_id, payment_id, shipment_id, progress, failure, response_status,
    response_body, lease_owner, lease_expires_at, created_at, updated_at)
  SELECT id, user_id, currency, address::jsonb, items::jsonb, total, status, step,
    reservation_id, payment_id, shipment_id, progress::jsonb, failure::jsonb, response_status,
    response_body, lease_owner, lease_expires_at, created_at, updated_at
  FROM v WHERE idem_key IS NULL OR id IN (SELECT order_id FROM new_key) ORDER BY n
  RETURNING id
), first_events AS (
  INSERT INTO order_events (order_id, at, step, outcome, attempt, upstream_status, duration_ms, detail)
  SELECT id, event_at, event_step, event_outcome, event_attempt, event_upstream_status,
    event_duration_ms, event_detail
  FROM v WHERE id IN (SELECT id FROM new_order) ORDER BY n
), s AS (
  SELECT * FROM unnest($30::uuid[], $31::text[], $32::text[], $33::text[], $34::text[],
      $35::text[], $36::int4[], $37::text[], $38::timestamptz[], $39::text[])
    AS s(id, status, step, reservation_id, progress, failure, response_status, response_body,
      updated_at, lease_owner)
), updated AS (
  UPDATE orders o SET status = s.status, step = s.step, reservation_id = s.reservation_id,
    progress = s.progress::jsonb, failure = s.failure::jsonb,
    response_status = s.response_status, response_body = s.response_body,
    updated_at = s.updated_at
  FROM s WHERE o.id = ANY($30::uuid[]) AND o.id = s.id AND o.lease_owner = s.lease_owner
  RETURNING o.id
), step_events AS (
  INSERT INTO order_events (order_id, at, step, outcome, attempt, upstream_status, duration_ms, detail)
  SELECT e.order_id, e.at, e.step, e.outcome, e.attempt, e.upstream_status, e.duration_ms, e.detail
  FROM unnest($40::uuid[], $41::timestamptz[], $42::text[], $43::text[], $44::int4[],
      $45::int4[], $46::int8[], $47::text[])
    WITH ORDINALITY AS e(order_id, at, step, outcome, attempt, upstream_status, duration_ms,
      detail, n)
  WHERE e.order_id IN (SELECT id FROM updated) ORDER BY e.n
)
SELECT id FROM new_order UNION ALL SELECT id FROM updated";

impl BatchedWrite for SagaWrite {
    /// As on SQLite, whose batches mix the two kinds too.
    const NAME: &'static str = "any";

    fn order_id(&self) -> Uuid {
        match self {
            Self::NewOrder(row) => row.id,
            Self::Progress(row) => row.id,
        }
    }

    async fn apply_one(&self, connections: &WriteConnections) -> Result<bool, sqlx::Error> {
        match self {
            Self::NewOrder(row) => row.apply_one(connections).await,
            Self::Progress(row) => row.apply_one(connections).await,
        }
    }

    async fn apply_many(
        connections: &WriteConnections,
        writes: &[Self],
    ) -> Result<Vec<Uuid>, sqlx::Error> {
        let mut new_orders = Vec::new();
        let mut progress = Vec::new();
        for write in writes {
            match write {
                Self::NewOrder(row) => new_orders.push(row),
                Self::Progress(row) => progress.push(row),
            }
        }
        let query = NewOrderRow::bind_many(&new_orders, sqlx::query_scalar(SAGA_WRITES));
        let mut connection = connections.checkout().await?;
        let applied = ProgressRow::bind_many(&progress, query)
            .fetch_all(&mut *connection)
            .await;
        connection.settle(applied)
    }

    fn outcome(&self, applied: bool) -> Result<(), StoreError> {
        match self {
            Self::NewOrder(row) => row.outcome(applied),
            Self::Progress(row) => row.outcome(applied),
        }
    }

    fn flush(&self) -> Flush {
        match self {
            Self::NewOrder(_) => Flush::AtCommit,
            Self::Progress(row) => row.flush,
        }
    }
}

/// Events as one array per column, for `unnest`.
struct EventColumns<'a> {
    at: Vec<Timestamp>,
    step: Vec<&'static str>,
    outcome: Vec<&'static str>,
    attempt: Vec<Option<i32>>,
    upstream_status: Vec<Option<i32>>,
    duration_ms: Vec<Option<i64>>,
    detail: Vec<Option<&'a str>>,
}

type Scalar<'q, O> = sqlx::query::QueryScalar<'q, Postgres, O, PgArguments>;

impl<'a> EventColumns<'a> {
    fn of(events: impl Iterator<Item = &'a NewEvent>) -> Self {
        let mut columns = Self {
            at: Vec::new(),
            step: Vec::new(),
            outcome: Vec::new(),
            attempt: Vec::new(),
            upstream_status: Vec::new(),
            duration_ms: Vec::new(),
            detail: Vec::new(),
        };
        for event in events {
            columns.at.push(event.at);
            columns.step.push(event.step);
            columns.outcome.push(event.outcome);
            columns.attempt.push(event.attempt.map(to_i32));
            columns
                .upstream_status
                .push(event.upstream_status.map(i32::from));
            columns.duration_ms.push(event.duration_ms.map(to_i64));
            columns.detail.push(event.detail.as_deref());
        }
        columns
    }

    /// Binds the arrays, time to detail, as the statement's next seven parameters.
    fn bind_to<'q, O>(self, query: Scalar<'q, O>) -> Scalar<'q, O>
    where
        'a: 'q,
    {
        query
            .bind(self.at)
            .bind(self.step)
            .bind(self.outcome)
            .bind(self.attempt)
            .bind(self.upstream_status)
            .bind(self.duration_ms)
            .bind(self.detail)
    }
}

/// An event's attempt number as a column value (counts that large do not happen).
fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// An event's duration as a column value (durations that large do not happen).
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// PostgreSQL's TEXT and JSONB cannot hold U+0000. Requests with it are refused at the
// edge, but text from downstream services (a reservation id, an error's detail) is taken
// as it comes, and one NUL would make every save of its order fail: it is stored as
// U+FFFD instead. SQLite keeps it as it is.

/// `text` with NUL characters replaced.
fn storable(text: &str) -> String {
    text.replace('\0', "\u{fffd}")
}

/// `json` with every `\u0000` escape (serde's only way of writing U+0000) replaced by
/// `\ufffd`; an escaped backslash followed by `u0000` is text and stays.
fn storable_json(json: String) -> String {
    if !json.contains("\\u0000") {
        return json;
    }
    let bytes = json.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            out.push(bytes[at]);
            at += 1;
        } else if bytes[at + 1..].starts_with(b"u0000") {
            out.extend_from_slice(b"\\ufffd");
            at += 6;
        } else {
            // An escape: the backslash and the ASCII character it escapes.
            let end = (at + 2).min(bytes.len());
            out.extend_from_slice(&bytes[at..end]);
            at = end;
        }
    }
    String::from_utf8(out).expect("only ASCII escapes were replaced")
}

fn storable_order_json(json: OrderJson) -> OrderJson {
    OrderJson {
        address: storable_json(json.address),
        items: storable_json(json.items),
        progress: storable_json(json.progress),
        failure: json.failure.map(storable_json),
    }
}

fn storable_progress_json(json: ProgressJson) -> ProgressJson {
    ProgressJson {
        progress: storable_json(json.progress),
        failure: json.failure.map(storable_json),
    }
}

fn storable_event(event: &NewEvent) -> NewEvent {
    NewEvent {
        detail: event.detail.as_deref().map(storable),
        ..event.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_become_replacement_characters_and_nothing_else_changes() {
        let text = "a\0b\\u0000c\"\u{e9}\0";
        let json = serde_json::to_string(text).unwrap();
        let stored: String = serde_json::from_str(&storable_json(json)).unwrap();
        assert_eq!(stored, "a\u{fffd}b\\u0000c\"\u{e9}\u{fffd}");
        let plain = serde_json::to_string("no nul here: \\ \" \u{1}").unwrap();
        assert_eq!(storable_json(plain.clone()), plain);
    }
}
