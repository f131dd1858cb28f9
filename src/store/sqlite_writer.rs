//! The SQLite writer: one thread owns the database's only write connection and applies
//! the writes queued by every saga in batches, each batch in one transaction ("group
//! commit"). A write's caller is answered only after its batch committed. A batch runs
//! without savepoints; only if one of its writes fails is it rolled back and run again
//! with a savepoint per write, so that the failing one leaves the others.
//!
//! Why a thread and not sqlx's pool of one: with one writer, every write used to wait for
//! the previous one to hand the connection back through the async pool, and each commit
//! wrote the pages it touched to the WAL. Batching writes shares those pages and commits,
//! and statements run where the connection lives, with no hop per statement.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::expected_writers::expected_writers;
use super::sqlite::NEW_DATABASE_PAGE_SIZE;
use super::sqlite_cache_size::CacheSize;
use super::{SqliteSynchronous, StoreError};
use crate::telemetry::metrics;

/// Most writes committed together.
const MAX_BATCH: usize = 256;
/// When a small batch waits for more writes before it commits (see [`Linger::DEFAULT`]).
#[derive(Clone, Copy, Debug)]
struct Linger {
    /// How long it waits.
    wait: Duration,
    /// Batches smaller than this may wait.
    below: usize,
    /// Sagas in flight, besides those whose writes the batch holds, from which more
    /// writes are expected soon enough to wait for.
    others: usize,
}

impl Linger {
    /// Every commit writes each page it touched to the WAL, and the pages a write shares
    /// with others (the ends of the indexes new orders go to, the rows of orders in
    /// flight) are written once per commit: under load a commit of one write cost nearly
    /// as much as one of several. At 64 clients 45 % of the commits held a single write;
    /// waiting 200 µs halved the commits (~23,000 to ~12,900 in 10 s) and cut the bytes
    /// written per order by 9 % (WAL and checkpoints, `/proc/<pid>/io`), and at 16
    /// clients the service used less CPU per order in 3 of 3 alternating pairs, with a
    /// lower p99 (7.4 / 8.6 / 8.1 against 6.9 / 7.9 / 7.6 ms). 100, 200 and 400 µs could
    /// not be told apart on a machine whose speed drifted more than they differ. A quiet
    /// service never waits, and neither does one with a few clients: at concurrency 1 an
    /// order's writes are ~0.3 ms apart, and waiting would only add to its latency.
    const DEFAULT: Self = Self {
        wait: Duration::from_micros(200),
        below: 4,
        others: 8,
    };

    /// Whether a batch of `batch` writes should wait, with `expected_writers` sagas in
    /// flight (some of them the batch's own writers).
    fn worth_it(&self, batch: usize, expected_writers: usize) -> bool {
        batch < self.below && expected_writers >= batch + self.others
    }
}

/// How often the checkpoint thread copies the WAL into the database file. Often: under
/// load the WAL grows by ~40 KiB per order (each commit writes every page it touched),
/// over 100 MiB/s at 4,000 orders/s. Every 100 ms let it reach the writer's backstop
/// (then ~16 MiB) between two checkpoints, and the writer then copied it and synced the
/// files itself, stalling every queued write for up to 20 ms (measured: ~12 such stalls a
/// second, `POST /orders` p99 at 64 ~35 ms); every 5 ms the thread kept up, the writer's
/// own checkpoints only finished a short tail, and that p99 was ~25 ms. With the writer's
/// own checkpoints at ~250 MiB of WAL (2026-12-04; ~64 MiB now, below, not measured
/// again for this interval), every 20 ms did as well for the tail with fewer `fsync`s: alternating 10 s runs at 64, 7 of 8 pairs faster than at 5 ms (mean
/// 3,144 against 2,817 orders/s), p99 37.2 against 39.3 ms on average; every 50 ms was
/// faster still but had the worse p99 in 2 of 3 pairs (53.0 / 45.4 ms against
/// 45.3 / 42.7).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);
/// How often the checkpoint thread copies the WAL once the WAL is nearly as big as the
/// writer's backstop ([`WalBounds::near_backstop_frames`]): the writer's own checkpoint is
/// then close, and it has to sync what was written since the thread's last checkpoint
/// (the WAL's new frames and the pages it copies itself) with every queued write waiting.
/// Checkpoints back to back leave it little: at 64 clients, writer batches of 6 ms or
/// more in 10 s went from 38–57 to 4–9 (their sum from 305–464 to 27–64 ms), p99 from
/// 24.3 / 27.3 / 26.4 to 22.8 / 24.7 / 22.9 ms in three alternating pairs.
const CHECKPOINT_NEAR_BACKSTOP_EVERY: Duration = Duration::from_millis(1);
/// WAL size at which the writer checkpoints by itself. Only the
/// writer can complete a checkpoint while writes go on (the thread's always lag the
/// newest frames), and only a complete one lets the WAL start over from its beginning,
/// so this bounds the WAL's size. Each time costs the writer, with every queued write
/// waiting, the copy of the WAL's last frames and its `fsync`s. Those used to include
/// writing out every page the checkpoint thread had copied since the last such time,
/// which made this a trade-off (~16 MiB: ~10 stalls a second; ~250 MiB: one every
/// ~1.2 s at ~5,000 orders/s, but each 10–35 ms). Since that thread syncs the database
/// file itself (see [`checkpoint_while_open`]), a stall is short and ~64 MiB did best:
/// in alternating runs at 64, against ~250 MiB faster in 3 of 3 pairs with p99
/// 24.6 / 22.2 / 22.7 ms against 27.1 / 23.6 / 24.7, and against ~16 MiB a p99 better
/// in 3 of 3 (24.6 / 24.2 / 26.1 against 26.9 / 26.7 / 28.0 ms). The price is disk
/// space: the `-wal` file stays at about this size under sustained load.
const WRITER_CHECKPOINT_BYTES: i64 = 64 * 1024 * 1024;
/// A WAL frame's header; the frame is that and one page.
const WAL_FRAME_HEADER_BYTES: i64 = 24;

/// The WAL's bounds in frames, which is how SQLite counts them, for a database's page
/// size: the service's own databases have 2 KiB pages (`NEW_DATABASE_PAGE_SIZE`), ones
/// made before keep 4 KiB, and the bounds stay the same in bytes for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WalBounds {
    /// Frames at which the writer checkpoints by itself ([`WRITER_CHECKPOINT_BYTES`]).
    writer_checkpoint_frames: i64,
    /// Frames from which the checkpoint thread runs every
    /// [`CHECKPOINT_NEAR_BACKSTOP_EVERY`]: 85 % of `writer_checkpoint_frames`.
    near_backstop_frames: i64,
    /// The WAL file is cut back to this size when it starts over after having grown past
    /// it (a long read can hold the checkpoints back), so a burst does not leave it big.
    /// 5 % above the WAL's size when the writer checkpoints (the commit that crosses
    /// `writer_checkpoint_frames` adds its own frames), so the normal cycle never cuts it.
    size_limit_bytes: i64,
}

impl WalBounds {
    fn for_page_size(page_size: i64) -> Self {
        let frame_bytes = WAL_FRAME_HEADER_BYTES + page_size;
        let writer_checkpoint_frames = WRITER_CHECKPOINT_BYTES / frame_bytes;
        Self {
            writer_checkpoint_frames,
            near_backstop_frames: writer_checkpoint_frames * 85 / 100,
            size_limit_bytes: writer_checkpoint_frames * frame_bytes * 21 / 20,
        }
    }

    /// How long the checkpoint thread waits before its next checkpoint, given how many
    /// frames the WAL had at its last one and whether that one copied any. Back to back
    /// only while writes go on: a WAL left big by a burst, or held back by a long read,
    /// has nothing to copy.
    fn pause_before_checkpoint(&self, wal_frames: i64, copied_last_time: bool) -> Duration {
        if copied_last_time && wal_frames >= self.near_backstop_frames {
            CHECKPOINT_NEAR_BACKSTOP_EVERY
        } else {
            CHECKPOINT_EVERY
        }
    }
}

/// A queued write: applied once, or twice when its batch has to be run again, and then
/// settled once.
trait Write: Send {
    /// Runs the write's statements and keeps their result; `false` if they failed.
    fn apply(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: its result if the batch committed (`Ok`), else why not.
    fn settle(self: Box<Self>, committed: Result<(), String>);
}

type Job = Box<dyn Write>;

/// A write with its caller's answer channel and, once applied, its result.
struct Pending<T, F> {
    write: F,
    result: Option<Result<T, StoreError>>,
    answer: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Write for Pending<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T, rusqlite::Error> + Send,
{
    fn apply(&mut self, conn: &Connection) -> bool {
        let result = (self.write)(conn).map_err(StoreError::from);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn settle(self: Box<Self>, committed: Result<(), String>) {
        let out = match (self.result, committed) {
            (Some(Err(error)), _) => Err(error),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(why)) => {
                Err(StoreError::Corrupt(format!("SQLite commit failed: {why}")))
            }
            (None, Err(why)) => Err(StoreError::Corrupt(format!("SQLite write not run: {why}"))),
            (None, Ok(())) => Err(StoreError::Corrupt("SQLite write not run".to_owned())),
        };
        let _ = self.answer.send(out);
    }
}

/// The handle of the writer thread; cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    jobs: Arc<Mutex<Option<mpsc::UnboundedSender<Job>>>>,
}

impl Writer {
    /// Opens the write connection on `path` and starts the thread.
    pub fn start(path: &Path, synchronous: SqliteSynchronous) -> Result<Self, StoreError> {
        Self::start_with(path, synchronous, Linger::DEFAULT)
    }

    fn start_with(
        path: &Path,
        synchronous: SqliteSynchronous,
        linger: Linger,
    ) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        // Before anything else, for a file this opens first (an existing database keeps
        // its page size).
        conn.pragma_update(None, "page_size", NEW_DATABASE_PAGE_SIZE)?;
        // WAL; NORMAL (the default) makes a commit survive a killed process, FULL also a
        // power loss, at an fsync per batch.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous.pragma_value())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // A batch run again runs each write in a savepoint; its sub-journal stays in
        // memory instead of a temporary file written per page.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Fixed from here on: a WAL database's page size cannot change.
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |row| row.get(0))?;
        let cache_size = CacheSize::set(&conn, page_size)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        // Checkpoints run on their own thread (below); the writer checkpoints itself only
        // if that thread falls far behind, so the WAL stays bounded either way.
        let bounds = WalBounds::for_page_size(page_size);
        conn.pragma_update(None, "wal_autocheckpoint", bounds.writer_checkpoint_frames)?;
        conn.pragma_update(None, "journal_size_limit", bounds.size_limit_bytes)?;
        let checkpointer = Connection::open(path)?;
        checkpointer.busy_timeout(Duration::from_secs(5))?;
        let database_file = std::fs::File::open(path).map_err(|e| {
            StoreError::Corrupt(format!("cannot open the SQLite database file: {e}"))
        })?;
        let (sender, receiver) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || serve(conn, cache_size, receiver, linger))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the SQLite writer: {e}")))?;
        let jobs = Arc::new(Mutex::new(Some(sender)));
        let open = Arc::downgrade(&jobs);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || checkpoint_while_open(checkpointer, &database_file, bounds, open))
            .map_err(|e| {
                StoreError::Corrupt(format!("cannot start the SQLite checkpointer: {e}"))
            })?;
        Ok(Self { jobs })
    }

    /// Stops taking writes; queued ones are still applied.
    pub fn close(&self) {
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }

    /// Runs `write` on the writer thread, inside the next batch's transaction, and returns
    /// its result once that transaction committed. `write` may run twice (the second time
    /// after the first was rolled back), so its result must come from the database alone.
    pub async fn run<T: Send + 'static>(
        &self,
        write: impl FnMut(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(Pending {
            write,
            result: None,
            answer,
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .map(|jobs| jobs.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(StoreError::Database(sqlx::Error::PoolClosed));
        }
        answered
            .await
            .map_err(|_| StoreError::Corrupt("the SQLite writer stopped".to_owned()))?
    }
}

/// The writer thread: takes every queued job (up to [`MAX_BATCH`]; when they are few and
/// many sagas are in flight, those queued a moment later too: [`Linger`]), runs them in
/// one transaction, then commits and answers them all.
fn serve(
    conn: Connection,
    mut cache_size: CacheSize,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    linger: Linger,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while jobs.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        if linger.worth_it(batch.len(), expected_writers()) {
            std::thread::sleep(linger.wait);
            while batch.len() < MAX_BATCH
                && let Ok(job) = jobs.try_recv()
            {
                batch.push(job);
            }
        }
        metrics::write_batch("sqlite", "any", batch.len());
        let committed = match commit_together(&conn, &mut batch) {
            Together::Committed => Ok(()),
            Together::Failed(why) => Err(why),
            Together::AWriteFailed => commit_one_by_one(&conn, &mut batch),
        };
        for job in batch.drain(..) {
            job.settle(committed.clone());
        }
        // After the answers, which need not wait for its occasional look at the file.
        cache_size.after_commit(&conn);
    }
}

/// How a batch run without savepoints ended.
enum Together {
    Committed,
    /// A write failed; the transaction was rolled back.
    AWriteFailed,
    /// The transaction could not begin or commit (why); it was rolled back.
    Failed(String),
}

/// Runs every write of the batch in one transaction without savepoints — what nearly
/// every batch is, and cheaper: no two statements and no sub-journal pages per write
/// (measured: +8 % orders/s at 64). Stops at the first write that fails.
fn commit_together(conn: &Connection, batch: &mut [Job]) -> Together {
    if let Err(error) = run_cached(conn, "BEGIN IMMEDIATE") {
        return Together::Failed(error.to_string());
    }
    if !batch.iter_mut().all(|job| job.apply(conn)) {
        roll_back(conn);
        return Together::AWriteFailed;
    }
    match run_cached(conn, "COMMIT") {
        Ok(()) => Together::Committed,
        Err(error) => {
            roll_back(conn);
            Together::Failed(error.to_string())
        }
    }
}

/// Runs the batch again, each write in its own savepoint so a failing one leaves the
/// others, and commits what succeeded.
fn commit_one_by_one(conn: &Connection, batch: &mut [Job]) -> Result<(), String> {
    run_cached(conn, "BEGIN IMMEDIATE").map_err(|e| e.to_string())?;
    for job in batch.iter_mut() {
        if let Err(error) = run_cached(conn, "SAVEPOINT job") {
            roll_back(conn);
            return Err(error.to_string());
        }
        let end = if job.apply(conn) {
            run_cached(conn, "RELEASE job")
        } else {
            run_cached(conn, "ROLLBACK TO job").and_then(|()| run_cached(conn, "RELEASE job"))
        };
        if let Err(error) = end {
            tracing::error!(%error, "ending a write's savepoint failed");
        }
    }
    run_cached(conn, "COMMIT").map_err(|e| {
        roll_back(conn);
        e.to_string()
    })
}

/// Ends a transaction that failed, if it is still open.
fn roll_back(conn: &Connection) {
    if !conn.is_autocommit()
        && let Err(error) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(%error, "rolling back a failed batch failed");
    }
}

/// Copies the WAL back into the database file every [`CHECKPOINT_EVERY`] (more often near
/// the writer's backstop: [`WalBounds::pause_before_checkpoint`]) until the writer closes, and syncs
/// the database file after each copy. Why a thread: a checkpoint writes and syncs
/// the files, which on the writer's thread stalls every write queued behind it; `PASSIVE`
/// never blocks the writer.
///
/// Why the sync: SQLite syncs the database file only at the end of a checkpoint that
/// copied the whole WAL, and under load only the writer's own checkpoints do (this
/// thread's always lag the newest frames). Left alone, every page this thread copied
/// stayed dirty in the page cache until then, and the writer's `fsync` had to write them
/// all out while every queued write waited: traced at 64 clients, one such stall every
/// ~1.2 s, growing from 10 to 35 ms within a minute, ~1 % of the orders behind each.
/// Synced here after every checkpoint that copied something, the writer's own checkpoint
/// finds little left to write (with the ~250 MiB backstop of then: stalls of at most
/// ~11 ms, p99.9 at 64 ~50 → ~27 ms).
fn checkpoint_while_open(
    conn: Connection,
    database_file: &std::fs::File,
    bounds: WalBounds,
    open: std::sync::Weak<Mutex<Option<mpsc::UnboundedSender<Job>>>>,
) {
    let (mut copied_before, mut wal_frames, mut copied_last_time) = (0, 0, false);
    loop {
        std::thread::sleep(bounds.pause_before_checkpoint(wal_frames, copied_last_time));
        let still_open = open.upgrade().is_some_and(|jobs| {
            jobs.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .is_some()
        });
        if !still_open {
            return;
        }
        // The second column: the WAL's frames; the third: how many of them are in the
        // database file now.
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            wal_frames = row.get::<_, i64>(1)?;
            row.get::<_, i64>(2)
        });
        match done {
            Ok(copied) => {
                copied_last_time = copied_something(copied_before, copied);
                if copied_last_time && let Err(error) = database_file.sync_data() {
                    tracing::warn!(%error, "syncing the SQLite database file failed");
                }
                copied_before = copied;
            }
            Err(error) => {
                tracing::warn!(%error, "SQLite checkpoint failed; the writer checkpoints by itself");
            }
        }
    }
}

/// Whether a checkpoint copied frames into the database file, from the count of copied
/// frames before and after it: the count grows as the WAL is copied, starts again from
/// zero when the WAL starts over, and is negative if the checkpoint could not run.
fn copied_something(before: i64, after: i64) -> bool {
    after > 0 && after != before
}

/// Runs a statement from the connection's prepared-statement cache: the transaction and
/// savepoint statements run several times per batch, and parsing them each time cost
/// more than running them.
fn run_cached(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::super::ExpectedWriter;
    use super::*;

    async fn writer_with_table() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::start(&dir.path().join("w.db"), SqliteSynchronous::Full).unwrap();
        writer
            .run(|conn| conn.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
            .await
            .unwrap();
        (dir, writer)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_write_leaves_the_rest_of_its_batch() {
        let (_dir, writer) = writer_with_table().await;
        let writes: Vec<_> = (0..200)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .run(move |conn| {
                            conn.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                            if n % 10 == 0 {
                                // Wrote, then failed: its savepoint must undo the insert.
                                conn.execute("INSERT INTO missing_table VALUES (1)", [])?;
                            }
                            Ok(n)
                        })
                        .await
                })
            })
            .collect();
        let mut failed = 0;
        for write in writes {
            if write.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 20);
        let (rows, tens) = writer
            .run(|conn| {
                let rows: i64 = conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?;
                let tens: i64 =
                    conn.query_row("SELECT COUNT(*) FROM t WHERE n % 10 = 0", [], |r| r.get(0))?;
                Ok((rows, tens))
            })
            .await
            .unwrap();
        assert_eq!((rows, tens), (180, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writes_of_batches_without_a_failure_run_once() {
        let (_dir, writer) = writer_with_table().await;
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writes: Vec<_> = (0..100)
            .map(|n| {
                let (writer, runs) = (writer.clone(), runs.clone());
                tokio::spawn(async move {
                    writer
                        .run(move |conn| {
                            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            conn.execute("INSERT INTO t (n) VALUES (?1)", [n])
                        })
                        .await
                })
            })
            .collect();
        for write in writes {
            assert_eq!(write.await.unwrap().unwrap(), 1);
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 100);
    }

    #[test]
    fn only_a_small_batch_under_load_lingers() {
        let linger = Linger::DEFAULT;
        // Quiet: one saga in flight, its own write in the batch.
        assert!(!linger.worth_it(1, 1));
        // A few clients: fewer other sagas in flight than `others`.
        assert!(!linger.worth_it(1, 8));
        // Under load: a lone write, or a few, with many other sagas in flight.
        assert!(linger.worth_it(1, 9));
        assert!(linger.worth_it(3, 11));
        assert!(!linger.worth_it(3, 10));
        // A batch big enough goes at once, whatever the load.
        assert!(!linger.worth_it(4, 1_000));
    }

    /// Starts a writer with `linger` and sends two writes 50 ms apart; returns whether the
    /// second ran in the first one's transaction (`defer_foreign_keys`, which the first
    /// sets, is switched off by every commit).
    async fn second_write_joins_the_first(linger: Linger) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let writer =
            Writer::start_with(&dir.path().join("w.db"), SqliteSynchronous::Normal, linger)
                .unwrap();
        let first = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .run(|conn| conn.execute_batch("PRAGMA defer_foreign_keys = ON"))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let joined = writer
            .run(|conn| conn.query_row("PRAGMA defer_foreign_keys", [], |r| r.get::<_, bool>(0)))
            .await
            .unwrap();
        first.await.unwrap().unwrap();
        joined
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_load_a_lone_write_waits_for_the_next() {
        let _sagas: Vec<_> = (0..3).map(|_| ExpectedWriter::enter()).collect();
        let linger = Linger {
            wait: Duration::from_secs(2),
            below: 4,
            others: 2,
        };
        assert!(second_write_joins_the_first(linger).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_load_a_lone_write_commits_at_once() {
        let linger = Linger {
            wait: Duration::from_secs(2),
            below: 4,
            // More sagas than any test process runs.
            others: 1_000_000,
        };
        assert!(!second_write_joins_the_first(linger).await);
    }

    #[tokio::test]
    async fn the_writer_checkpoints_only_past_its_backstop_and_cuts_the_wal_back() {
        let (_dir, writer) = writer_with_table().await;
        let (page_size, frames, limit) = writer
            .run(|conn| {
                let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
                let frames: i64 =
                    conn.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))?;
                let limit: i64 =
                    conn.pragma_query_value(None, "journal_size_limit", |r| r.get(0))?;
                Ok((page_size, frames, limit))
            })
            .await
            .unwrap();
        assert_eq!(page_size, i64::from(NEW_DATABASE_PAGE_SIZE), "a new file");
        let bounds = WalBounds::for_page_size(page_size);
        assert_eq!(frames, bounds.writer_checkpoint_frames);
        assert_eq!(limit, bounds.size_limit_bytes);
    }

    #[tokio::test]
    async fn a_database_with_4_kib_pages_keeps_them_and_gets_its_own_wal_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let old = Connection::open(&path).unwrap();
            old.pragma_update(None, "page_size", 4096).unwrap();
            old.pragma_update(None, "journal_mode", "WAL").unwrap();
            old.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")
                .unwrap();
        }
        let writer = Writer::start(&path, SqliteSynchronous::Normal).unwrap();
        let (page_size, frames) = writer
            .run(|conn| {
                conn.execute("INSERT INTO t (n) VALUES (1)", [])?;
                let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
                let frames: i64 =
                    conn.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))?;
                Ok((page_size, frames))
            })
            .await
            .unwrap();
        assert_eq!(page_size, 4096);
        assert_eq!(
            frames,
            WalBounds::for_page_size(4096).writer_checkpoint_frames
        );
    }

    #[test]
    fn the_wal_bounds_are_the_same_in_bytes_for_any_page_size() {
        for page_size in [1024, 2048, 4096, 8192] {
            let bounds = WalBounds::for_page_size(page_size);
            let frame = page_size + WAL_FRAME_HEADER_BYTES;
            let at_backstop = bounds.writer_checkpoint_frames * frame;
            assert!(
                at_backstop <= WRITER_CHECKPOINT_BYTES
                    && at_backstop > WRITER_CHECKPOINT_BYTES - frame,
                "{page_size}: {at_backstop} bytes at the backstop"
            );
            // Not below what the writer lets the WAL reach, or every start-over would cut
            // the file and grow it again.
            assert!(bounds.size_limit_bytes >= at_backstop, "{page_size}");
            assert!(bounds.near_backstop_frames < bounds.writer_checkpoint_frames);
            assert!(
                bounds.near_backstop_frames >= bounds.writer_checkpoint_frames * 4 / 5,
                "{page_size}: near is close to the backstop"
            );
        }
    }

    #[test]
    fn the_database_file_is_synced_only_after_a_checkpoint_that_copied_frames() {
        assert!(copied_something(0, 120), "the first frames copied");
        assert!(copied_something(120, 300), "more frames of the same WAL");
        assert!(
            copied_something(300, 40),
            "frames of a WAL that started over"
        );
        assert!(
            !copied_something(300, 300),
            "nothing new: an idle service syncs nothing"
        );
        assert!(
            !copied_something(300, 0),
            "a WAL that started over, nothing copied yet"
        );
        assert!(!copied_something(300, -1), "the checkpoint could not run");
    }

    #[test]
    fn checkpoints_come_back_to_back_only_while_writes_bring_the_wal_near_the_backstop() {
        let bounds = WalBounds::for_page_size(2048);
        let near = bounds.near_backstop_frames;
        assert_eq!(bounds.pause_before_checkpoint(0, true), CHECKPOINT_EVERY);
        assert_eq!(
            bounds.pause_before_checkpoint(-1, false),
            CHECKPOINT_EVERY,
            "no WAL"
        );
        assert_eq!(
            bounds.pause_before_checkpoint(near - 1, true),
            CHECKPOINT_EVERY
        );
        assert_eq!(
            bounds.pause_before_checkpoint(near, true),
            CHECKPOINT_NEAR_BACKSTOP_EVERY
        );
        assert_eq!(
            bounds.pause_before_checkpoint(bounds.writer_checkpoint_frames * 2, true),
            CHECKPOINT_NEAR_BACKSTOP_EVERY,
            "past the backstop, still copying"
        );
        assert_eq!(
            bounds.pause_before_checkpoint(near, false),
            CHECKPOINT_EVERY,
            "a big WAL with nothing new to copy: idle after a burst, or a long read"
        );
        assert!(CHECKPOINT_NEAR_BACKSTOP_EVERY < CHECKPOINT_EVERY);
    }

    #[tokio::test]
    async fn a_closed_writer_refuses_writes() {
        let (_dir, writer) = writer_with_table().await;
        writer.close();
        let refused = writer
            .run(|conn| conn.execute("INSERT INTO t (n) VALUES (1)", []))
            .await;
        assert!(refused.is_err());
    }
}
