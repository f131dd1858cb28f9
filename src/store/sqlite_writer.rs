//! The SQLite writer: one thread owns the database's only write connection and applies
//! the writes queued by every saga in batches — each write in its own savepoint, each
//! batch in one transaction ("group commit"). A write's caller is answered only after its
//! batch committed.
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

use super::{SqliteSynchronous, StoreError};
use crate::telemetry::metrics;

/// Most writes committed together.
const MAX_BATCH: usize = 256;
/// How often the checkpoint thread copies the WAL into the database file. Often: under
/// load the WAL grows by ~40 KiB per order (each commit writes every page it touched),
/// over 100 MiB/s at 4,000 orders/s. Every 100 ms let it reach the writer's backstop
/// between two checkpoints, and the writer then copied ~16 MiB and synced the files
/// itself, stalling every queued write for up to 20 ms (measured: ~12 such stalls a
/// second, `POST /orders` p99 at 64 ~35 ms); every 5 ms the thread keeps up, the writer's
/// own checkpoints only finish a short tail, and that p99 is ~25 ms.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(5);
/// WAL size (pages) at which the writer checkpoints by itself, about 16 MiB. Only the
/// writer can complete a checkpoint while writes go on (the thread's always lags the
/// newest frames), and only a complete one lets the WAL start over from its beginning,
/// so this bounds the WAL's size.
const WRITER_CHECKPOINT_PAGES: i64 = 4_000;

/// What a job leaves to do once its batch committed (`Ok`) or failed (`Err` with why).
type Settle = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A write: given the connection (or why there is none), it runs its statements and says
/// whether they succeeded, plus how to answer its caller once the batch is settled.
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> (bool, Settle) + Send>;

/// The handle of the writer thread; cheap to clone.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    jobs: Arc<Mutex<Option<mpsc::UnboundedSender<Job>>>>,
}

impl Writer {
    /// Opens the write connection on `path` and starts the thread.
    pub fn start(path: &Path, synchronous: SqliteSynchronous) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        // WAL; NORMAL (the default) makes a commit survive a killed process, FULL also a
        // power loss, at an fsync per batch.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous.pragma_value())?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Each write runs in a savepoint; its sub-journal stays in memory instead of a
        // temporary file written per page.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // 8 MiB of page cache: the recent orders and their index pages stay hot.
        conn.pragma_update(None, "cache_size", -8_192)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        // Checkpoints run on their own thread (below); the writer checkpoints itself only
        // if that thread falls far behind, so the WAL stays bounded either way.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
        let checkpointer = Connection::open(path)?;
        checkpointer.busy_timeout(Duration::from_secs(5))?;
        let (sender, receiver) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || serve(conn, receiver))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the SQLite writer: {e}")))?;
        let jobs = Arc::new(Mutex::new(Some(sender)));
        let open = Arc::downgrade(&jobs);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || checkpoint_while_open(checkpointer, open))
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
    /// its result once that transaction committed.
    pub async fn run<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => write(conn).map_err(StoreError::from),
                Err(why) => Err(StoreError::Corrupt(format!("SQLite write not run: {why}"))),
            };
            let ok = result.is_ok();
            let settle: Settle = Box::new(move |committed| {
                let out = match (result, committed) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Err(error), _) => Err(error),
                    (Ok(_), Err(why)) => {
                        Err(StoreError::Corrupt(format!("SQLite commit failed: {why}")))
                    }
                };
                let _ = answer.send(out);
            });
            (ok, settle)
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

/// The writer thread: takes every queued job (up to [`MAX_BATCH`]), runs them in one
/// transaction, each in a savepoint so a failing one leaves the others, then commits and
/// answers them all.
fn serve(conn: Connection, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        metrics::write_batch("sqlite", "any", batch.len());
        let begun = run_cached(&conn, "BEGIN IMMEDIATE").map_err(|e| e.to_string());
        let mut settles = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            match &begun {
                Ok(()) => {
                    let saved = run_cached(&conn, "SAVEPOINT job");
                    let (ok, settle) = match &saved {
                        Ok(()) => job(Ok(&conn)),
                        Err(e) => job(Err(&e.to_string())),
                    };
                    if saved.is_ok() {
                        let end = if ok {
                            run_cached(&conn, "RELEASE job")
                        } else {
                            run_cached(&conn, "ROLLBACK TO job")
                                .and_then(|()| run_cached(&conn, "RELEASE job"))
                        };
                        if let Err(error) = end {
                            tracing::error!(%error, "ending a write's savepoint failed");
                        }
                    }
                    settles.push(settle);
                }
                Err(why) => settles.push(job(Err(why)).1),
            }
        }
        let committed = begun.and_then(|()| run_cached(&conn, "COMMIT").map_err(|e| e.to_string()));
        if committed.is_err()
            && !conn.is_autocommit()
            && let Err(error) = conn.execute_batch("ROLLBACK")
        {
            tracing::error!(%error, "rolling back a failed batch failed");
        }
        for settle in settles {
            settle(committed.clone());
        }
    }
}

/// Copies the WAL back into the database file every [`CHECKPOINT_EVERY`] until the writer
/// closes. Why a thread: a checkpoint writes and syncs the files, which on the writer's
/// thread stalls every write queued behind it; `PASSIVE` never blocks the writer.
fn checkpoint_while_open(
    conn: Connection,
    open: std::sync::Weak<Mutex<Option<mpsc::UnboundedSender<Job>>>>,
) {
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let still_open = open.upgrade().is_some_and(|jobs| {
            jobs.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .is_some()
        });
        if !still_open {
            return;
        }
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(error) = done {
            tracing::warn!(%error, "SQLite checkpoint failed; the writer checkpoints by itself");
        }
    }
}

/// Runs a statement from the connection's prepared-statement cache: the transaction and
/// savepoint statements run several times per batch, and parsing them each time cost
/// more than running them.
fn run_cached(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

#[cfg(test)]
mod tests {
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
