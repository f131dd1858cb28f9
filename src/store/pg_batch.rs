//! Group commit for PostgreSQL: the saga's writes of every order this process drives are
//! queued, and whatever has queued while the previous statements ran goes to the server
//! as one statement — one round trip, one transaction, one WAL flush for all of them. A
//! write's caller is answered only after its statement committed.
//!
//! Why: measured with `perf`, the server spent most of its CPU per statement, not per row
//! (protocol, executor start-up, commit and `fdatasync`), and five statements per order
//! made the database server on the same cores the bound. Batching changes none of the
//! rules: each write is still applied only under its lease, and is committed before its
//! caller goes on.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{Flush, StoreError};
use crate::telemetry::metrics;

/// Most writes in one statement.
const MAX_BATCH: usize = 256;
/// Statements in flight at once (but see [`gather`]: a lone write may go beside another).
/// While one runs, new writes queue and make the next batch. One is the fastest measured
/// on two cores: more statements in flight only split the same writes into smaller
/// batches, each with its own commit (with a statement of each kind in flight, one
/// against two against four gave ~2,840 / ~2,700 / ~2,380 orders/s at 64; with both
/// kinds in one statement, two in flight gave ~2,500 against ~3,230 for one). All
/// statements are short (nothing here holds a row lock across statements), so one does
/// not wait long.
pub(super) const BATCHES_IN_FLIGHT: usize = 1;

/// A write that can be applied together with others.
pub(super) trait BatchedWrite: Send + Sync + Sized + 'static {
    /// What the write is, for the `db_write_batch_size` metric.
    const NAME: &'static str;
    /// The order the write is about (at most one write per order goes in a statement).
    fn order_id(&self) -> Uuid;
    /// Applies this write alone; `false` if its condition did not hold (a taken key, a
    /// lease held by another process). Runs on the service's main pool.
    fn apply_one(&self, pool: &PgPool) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;
    /// Applies `writes` in one statement; returns the ids of the orders it wrote (a write
    /// whose condition did not hold is left out, not failed). Runs on the batch pool,
    /// whose connections plan every statement for its own arrays (see `PgStore`).
    fn apply_many(
        pool: &PgPool,
        writes: &[Self],
    ) -> impl Future<Output = Result<Vec<Uuid>, sqlx::Error>> + Send;
    /// What the caller gets when its write was (`true`) or was not applied.
    fn outcome(&self, applied: bool) -> Result<(), StoreError>;
    /// Whether its commit must be flushed before the caller is answered (see
    /// [`Flush`]).
    fn flush(&self) -> Flush;
}

/// The queue of one kind of write; cheap to clone.
pub(super) struct Batcher<W> {
    queue: mpsc::UnboundedSender<Job<W>>,
}

impl<W> Clone for Batcher<W> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<W> std::fmt::Debug for Batcher<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

struct Job<W> {
    write: W,
    answer: oneshot::Sender<Result<(), StoreError>>,
}

impl<W: BatchedWrite> Batcher<W> {
    /// Starts the task that gathers and applies the writes (on the current runtime): a
    /// lone write on `single` (or `single_deferred`, if its flush may wait), a batch on
    /// `batched`.
    pub fn start(single: PgPool, single_deferred: PgPool, batched: PgPool) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        let pools = Pools {
            single,
            single_deferred,
            batched,
        };
        tokio::spawn(gather(pools, jobs));
        Self { queue }
    }

    /// Queues `write` for the next batch at once (so writes queue in the order of the
    /// calls) and returns its outcome once that batch committed.
    pub fn write(&self, write: W) -> impl Future<Output = Result<(), StoreError>> + use<W> {
        let (answer, answered) = oneshot::channel();
        let queued = self.queue.send(Job { write, answer }).is_ok();
        async move {
            if !queued {
                return Err(StoreError::Database(sqlx::Error::PoolClosed));
            }
            answered.await.map_err(|_| {
                StoreError::Corrupt("the PostgreSQL batch writer stopped before answering".into())
            })?
        }
    }
}

/// Where lone writes and batches run.
#[derive(Clone)]
struct Pools {
    single: PgPool,
    /// Connections whose commits do not wait for their flush (`synchronous_commit=off`),
    /// for a lone write whose [`Flush`] may be deferred. A batch always flushes: it
    /// rarely holds only such writes, and one flush covers them all.
    single_deferred: PgPool,
    batched: PgPool,
}

impl Pools {
    fn single_for(&self, write: &impl BatchedWrite) -> &PgPool {
        match write.flush() {
            Flush::AtCommit => &self.single,
            Flush::Deferred => &self.single_deferred,
        }
    }
}

/// Takes the queued writes, up to [`MAX_BATCH`] at a time, and applies each batch in a
/// task of its own. A statement starts when none runs, or beside one that carries a
/// single write: under load, writes wait for the statement in flight and go together in
/// the next (that wait is what lets batches grow), while at low load a write does not
/// wait behind another lone one (say, a new order behind the last save of the previous
/// order, which goes on after its client was answered).
async fn gather<W: BatchedWrite>(pools: Pools, mut jobs: mpsc::UnboundedReceiver<Job<W>>) {
    let mut running = tokio::task::JoinSet::new();
    let writes_in_flight = Arc::new(AtomicUsize::new(0));
    loop {
        while let Some(done) = running.try_join_next() {
            log_panic(done);
        }
        let only_lone_writes_run = writes_in_flight.load(Ordering::Acquire) == running.len();
        let may_start = running.len() < BATCHES_IN_FLIGHT
            || (running.len() == BATCHES_IN_FLIGHT && only_lone_writes_run);
        if !may_start {
            if let Some(done) = running.join_next().await {
                log_panic(done);
            }
            continue;
        }
        let mut batch = Vec::new();
        if jobs.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let pools = pools.clone();
        let in_flight = writes_in_flight.clone();
        in_flight.fetch_add(batch.len(), Ordering::AcqRel);
        running.spawn(async move {
            let size = batch.len();
            apply_batch(&pools, batch).await;
            in_flight.fetch_sub(size, Ordering::AcqRel);
        });
    }
}

/// A batch task that panicked answered none of its writes (their callers get an error
/// when their answer channel closes); the next batches go on.
fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        tracing::error!(%error, "a PostgreSQL batch task failed");
    }
}

/// Applies a batch and answers every write in it. An order written twice in one batch
/// (nothing in the saga does that, but nothing here relies on it) has its later write
/// applied after the rest, on its own: one statement updates a row only once.
async fn apply_batch<W: BatchedWrite>(pools: &Pools, batch: Vec<Job<W>>) {
    let mut seen = HashSet::with_capacity(batch.len());
    let (once, repeated): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|job| seen.insert(job.write.order_id()));
    apply_together(pools, once).await;
    for job in repeated {
        apply_together(pools, vec![job]).await;
    }
}

/// Applies the writes in one statement (or a lone write in its own, smaller one) and
/// answers each.
async fn apply_together<W: BatchedWrite>(pools: &Pools, jobs: Vec<Job<W>>) {
    let (writes, answers): (Vec<W>, Vec<_>) = jobs.into_iter().map(|j| (j.write, j.answer)).unzip();
    metrics::write_batch("postgres", W::NAME, writes.len());
    if writes.len() > 1 {
        match W::apply_many(&pools.batched, &writes).await {
            Ok(applied) => {
                let applied: HashSet<Uuid> = applied.into_iter().collect();
                for (write, answer) in writes.iter().zip(answers) {
                    let _ = answer.send(write.outcome(applied.contains(&write.order_id())));
                }
                return;
            }
            Err(sqlx::Error::Database(error)) => {
                // The server refused the statement, so none of it was written. One
                // write's fault (a value out of range, a deadlock with another replica)
                // must not fail the others: each goes again on its own, below.
                tracing::warn!(%error, writes = writes.len(), "a batched write failed; applying its writes one by one");
            }
            Err(error) => {
                // The connection failed (or the pool closed): whether the statement
                // committed is unknown, so nothing is tried again; every caller gets the
                // error, as it would have for a statement of its own.
                let error = Arc::new(error);
                for answer in answers {
                    let _ = answer.send(Err(StoreError::Batch(error.clone())));
                }
                return;
            }
        }
    }
    for (write, answer) in writes.iter().zip(answers) {
        let pool = pools.single_for(write);
        let _ = answer.send(outcome_of(write, write.apply_one(pool).await));
    }
}

fn outcome_of<W: BatchedWrite>(
    write: &W,
    applied: Result<bool, sqlx::Error>,
) -> Result<(), StoreError> {
    write.outcome(applied.map_err(StoreError::Database)?)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::RwLock;

    use super::*;

    /// How a fake write ends.
    #[derive(Clone, Copy, PartialEq)]
    enum End {
        Applied,
        /// Its condition did not hold (a lease held by another process).
        Refused,
        /// The server rejects any statement that carries it.
        ServerError,
        /// The connection breaks during any statement that carries it.
        ConnectionLost,
    }

    /// A write that touches no database: it records the statements it went out in, and a
    /// statement does not end while the test holds the gate shut.
    struct Fake {
        id: Uuid,
        end: End,
        flush: Flush,
        log: Arc<Log>,
    }

    #[derive(Default)]
    struct Log {
        statements: Mutex<Vec<Vec<Uuid>>>,
        /// The pool of each statement, by its database's name (see [`Harness::new`]).
        pools: Mutex<Vec<String>>,
        gate: RwLock<()>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("rejected by the fake server")]
    struct Rejected;

    impl sqlx::error::DatabaseError for Rejected {
        fn message(&self) -> &str {
            "rejected by the fake server"
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    impl BatchedWrite for Fake {
        const NAME: &'static str = "fake";

        fn order_id(&self) -> Uuid {
            self.id
        }

        async fn apply_one(&self, pool: &PgPool) -> Result<bool, sqlx::Error> {
            let applied = Self::apply_many(pool, std::slice::from_ref(self)).await?;
            Ok(!applied.is_empty())
        }

        async fn apply_many(pool: &PgPool, writes: &[Self]) -> Result<Vec<Uuid>, sqlx::Error> {
            let log = &writes[0].log;
            log.statements
                .lock()
                .unwrap()
                .push(writes.iter().map(|w| w.id).collect());
            let options = pool.connect_options();
            let pool_name = options.get_database().unwrap_or_default().to_owned();
            log.pools.lock().unwrap().push(pool_name);
            let _open = log.gate.read().await;
            if writes.iter().any(|w| w.end == End::ServerError) {
                return Err(sqlx::Error::Database(Box::new(Rejected)));
            }
            if writes.iter().any(|w| w.end == End::ConnectionLost) {
                return Err(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()));
            }
            Ok(writes
                .iter()
                .filter(|w| w.end == End::Applied)
                .map(|w| w.id)
                .collect())
        }

        fn flush(&self) -> Flush {
            self.flush
        }

        fn outcome(&self, applied: bool) -> Result<(), StoreError> {
            if applied {
                Ok(())
            } else {
                Err(StoreError::LeaseLost(self.id.into()))
            }
        }
    }

    type Outcome = tokio::task::JoinHandle<Result<(), StoreError>>;

    /// The batcher with fake writes, on the test's single-threaded runtime: nothing runs
    /// until the test awaits, so which writes share a statement is deterministic.
    struct Harness {
        batcher: Batcher<Fake>,
        log: Arc<Log>,
    }

    impl Harness {
        fn new() -> Self {
            // Never connect (the fake writes do not use them); named so that a statement
            // can tell which it was given.
            let pool = |name: &str| {
                sqlx::postgres::PgPoolOptions::new()
                    .connect_lazy(&format!("postgres://nobody@127.0.0.1:1/{name}"))
                    .unwrap()
            };
            Self {
                batcher: Batcher::start(pool("single"), pool("deferred"), pool("batched")),
                log: Arc::default(),
            }
        }

        /// Queues a write now; its outcome comes from the returned task.
        fn send(&self, id: Uuid, end: End) -> Outcome {
            self.send_flushing(id, end, Flush::AtCommit)
        }

        fn send_flushing(&self, id: Uuid, end: End, flush: Flush) -> Outcome {
            let log = self.log.clone();
            tokio::spawn(self.batcher.write(Fake {
                id,
                end,
                flush,
                log,
            }))
        }

        /// Lets every task run until it waits (for the gate, a slot or a write).
        async fn settle(&self) {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }

        fn statements(&self) -> Vec<Vec<Uuid>> {
            self.log.statements.lock().unwrap().clone()
        }

        fn pools(&self) -> Vec<String> {
            self.log.pools.lock().unwrap().clone()
        }
    }

    async fn outcomes(handles: Vec<Outcome>) -> Vec<Result<(), StoreError>> {
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.unwrap());
        }
        out
    }

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    #[tokio::test]
    async fn writes_queued_while_a_batch_runs_make_the_next_statement() {
        let harness = Harness::new();
        let shut = harness.log.gate.write().await;
        let ids = ids(2 + 30);
        // Two writes queued together go out together...
        let mut sent = vec![
            harness.send(ids[0], End::Applied),
            harness.send(ids[1], End::Applied),
        ];
        harness.settle().await;
        // ...and while that statement runs, the rest queue, then go out together.
        for id in &ids[2..] {
            sent.push(harness.send(*id, End::Applied));
            harness.settle().await;
        }
        assert_eq!(harness.statements(), vec![ids[..2].to_vec()]);
        drop(shut);
        assert!(outcomes(sent).await.iter().all(Result::is_ok));
        assert_eq!(
            harness.statements(),
            vec![ids[..2].to_vec(), ids[2..].to_vec()]
        );
    }

    #[tokio::test]
    async fn a_lone_write_does_not_wait_behind_another_lone_write() {
        let harness = Harness::new();
        let shut = harness.log.gate.write().await;
        let ids = ids(4);
        let mut sent = vec![harness.send(ids[0], End::Applied)];
        harness.settle().await;
        // Beside a statement of one write, the next goes at once (here two together)...
        sent.push(harness.send(ids[1], End::Applied));
        sent.push(harness.send(ids[2], End::Applied));
        harness.settle().await;
        // ...but no third statement starts.
        sent.push(harness.send(ids[3], End::Applied));
        harness.settle().await;
        assert_eq!(
            harness.statements(),
            vec![vec![ids[0]], vec![ids[1], ids[2]]]
        );
        drop(shut);
        assert!(outcomes(sent).await.iter().all(Result::is_ok));
        assert_eq!(
            harness.statements(),
            vec![vec![ids[0]], vec![ids[1], ids[2]], vec![ids[3]]]
        );
    }

    #[tokio::test]
    async fn only_a_lone_write_whose_flush_may_wait_skips_the_flush() {
        let harness = Harness::new();
        let ids = ids(4);
        // Alone, each goes on the connections its flush asks for...
        let deferred = harness.send_flushing(ids[0], End::Applied, Flush::Deferred);
        assert!(outcomes(vec![deferred]).await[0].is_ok());
        assert!(outcomes(vec![harness.send(ids[1], End::Applied)]).await[0].is_ok());
        // ...and together, even if none needs it, they are flushed.
        let together = vec![
            harness.send_flushing(ids[2], End::Applied, Flush::Deferred),
            harness.send_flushing(ids[3], End::Applied, Flush::Deferred),
        ];
        assert!(outcomes(together).await.iter().all(Result::is_ok));
        assert_eq!(
            harness.statements(),
            vec![vec![ids[0]], vec![ids[1]], ids[2..].to_vec()]
        );
        assert_eq!(harness.pools(), ["deferred", "single", "batched"]);
    }

    #[tokio::test]
    async fn a_refused_condition_fails_only_its_own_write() {
        let harness = Harness::new();
        let ids = ids(3);
        let ends = [End::Applied, End::Refused, End::Applied];
        let sent = ids
            .iter()
            .zip(ends)
            .map(|(id, end)| harness.send(*id, end))
            .collect();
        let got = outcomes(sent).await;
        assert!(got[0].is_ok() && got[2].is_ok(), "{got:?}");
        assert!(matches!(got[1], Err(StoreError::LeaseLost(_))), "{got:?}");
        assert_eq!(harness.statements(), vec![ids]);
    }

    #[tokio::test]
    async fn a_statement_the_server_rejects_is_retried_write_by_write() {
        let harness = Harness::new();
        let ids = ids(4);
        let ends = [End::Applied, End::Applied, End::ServerError, End::Applied];
        let sent = ids
            .iter()
            .zip(ends)
            .map(|(id, end)| harness.send(*id, end))
            .collect();
        let got = outcomes(sent).await;
        for (n, outcome) in got.iter().enumerate() {
            match n {
                2 => assert!(matches!(outcome, Err(StoreError::Database(_))), "{got:?}"),
                _ => assert!(outcome.is_ok(), "write {n}: {outcome:?}"),
            }
        }
        let mut expected = vec![ids.clone()];
        expected.extend(ids.iter().map(|id| vec![*id]));
        assert_eq!(harness.statements(), expected);
    }

    #[tokio::test]
    async fn a_lost_connection_fails_its_whole_batch_and_nothing_is_repeated() {
        let harness = Harness::new();
        let ids = ids(3);
        let ends = [End::Applied, End::ConnectionLost, End::Applied];
        let sent = ids
            .iter()
            .zip(ends)
            .map(|(id, end)| harness.send(*id, end))
            .collect();
        let got = outcomes(sent).await;
        assert!(
            got.iter().all(|o| matches!(o, Err(StoreError::Batch(_)))),
            "{got:?}"
        );
        assert_eq!(harness.statements(), vec![ids]);
    }

    #[tokio::test]
    async fn a_lone_write_that_fails_gets_its_own_error() {
        let harness = Harness::new();
        let id = Uuid::new_v4();
        let got = outcomes(vec![harness.send(id, End::ConnectionLost)]).await;
        assert!(
            matches!(got[0], Err(StoreError::Database(sqlx::Error::Io(_)))),
            "{got:?}"
        );
        assert_eq!(harness.statements(), vec![vec![id]]);
    }

    #[tokio::test]
    async fn an_order_written_twice_goes_in_two_statements() {
        let harness = Harness::new();
        let [twice, other] = [Uuid::new_v4(), Uuid::new_v4()];
        let sent = vec![
            harness.send(twice, End::Applied),
            harness.send(other, End::Applied),
            harness.send(twice, End::Applied),
        ];
        assert!(outcomes(sent).await.iter().all(Result::is_ok));
        assert_eq!(harness.statements(), vec![vec![twice, other], vec![twice]]);
    }
}
