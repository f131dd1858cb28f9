//! How much page cache the SQLite writer keeps: little while the database is under
//! 1 GiB, 8 MiB after.
//!
//! When SQLite rebalances a B-tree it may swap two pages' numbers, through a spare one:
//! the lock page, the page at 1 GiB (page 524,289 with 2 KiB pages), which no database
//! uses. Its page cache then counts that number as the highest it holds, and at the end
//! of the write transaction it drops the pages past the end of the database by walking
//! its whole hash table, finding nothing. While a database is smaller than 1 GiB nearly
//! every commit under load did that (about 700 a second at 64 clients), and the walk
//! grows with the cache: with 8 MiB it was 4.0–4.3 % of the service's CPU samples, with
//! 1 MiB 0.2–0.4 %. Once the database reaches the lock page, the spare number is inside
//! it and the walk is gone; from there on a cache too small for the random-order indexes
//! only costs reads (see BENCHMARKS.md, 2026-12-03 and 2026-12-06).

use rusqlite::Connection;

/// SQLite's `PENDING_BYTE`: the lock page is the page that holds this offset.
const LOCK_BYTE_OFFSET: i64 = 0x4000_0000;
/// The writer's cache while the database ends before the lock page.
const BELOW_LOCK_PAGE_KIB: i64 = 1024;
/// The writer's cache from there on: the recent orders and the upper levels of their
/// indexes stay hot.
const PAST_LOCK_PAGE_KIB: i64 = 8 * 1024;
/// Commits between two looks at the database's size.
const COMMITS_BETWEEN_CHECKS: u32 = 1024;

/// The lock page's number for pages of `page_size` bytes.
fn lock_page(page_size: i64) -> i64 {
    LOCK_BYTE_OFFSET / page_size.max(512) + 1
}

/// The page cache, in KiB, for a database of `page_count` pages whose lock page is
/// `lock_page`.
fn cache_kib(lock_page: i64, page_count: i64) -> i64 {
    if page_count >= lock_page {
        PAST_LOCK_PAGE_KIB
    } else {
        BELOW_LOCK_PAGE_KIB
    }
}

/// Keeps the writer's cache size in step with its database's size.
#[derive(Debug)]
pub(super) struct CacheSize {
    lock_page: i64,
    kib: i64,
    commits_to_check: u32,
}

impl CacheSize {
    /// Sets the cache for the database as it is now; `page_size` is its page size.
    pub(super) fn set(conn: &Connection, page_size: i64) -> Result<Self, rusqlite::Error> {
        let mut size = Self {
            lock_page: lock_page(page_size),
            kib: 0,
            commits_to_check: 0,
        };
        size.check(conn)?;
        Ok(size)
    }

    /// Called after each commit; looks at the database's size now and then, and once it
    /// has reached the lock page, gives the cache its larger size (a database does not
    /// shrink but by `VACUUM`, and one that did would only keep the larger cache).
    pub(super) fn after_commit(&mut self, conn: &Connection) {
        if self.kib == PAST_LOCK_PAGE_KIB {
            return;
        }
        self.commits_to_check = self.commits_to_check.saturating_sub(1);
        if self.commits_to_check == 0 {
            // A failed look is tried again at the next check: the size is only speed.
            let _ = self.check(conn);
        }
    }

    fn check(&mut self, conn: &Connection) -> Result<(), rusqlite::Error> {
        self.commits_to_check = COMMITS_BETWEEN_CHECKS;
        let page_count: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
        let kib = cache_kib(self.lock_page, page_count);
        if kib != self.kib {
            // Negative: in KiB, whatever the page size.
            conn.pragma_update(None, "cache_size", -kib)?;
            self.kib = kib;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_size_of(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "cache_size", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn the_cache_grows_when_the_database_reaches_its_lock_page() {
        // 2 KiB pages: the lock page is page 524,289.
        assert_eq!(lock_page(2048), 524_289);
        assert_eq!(cache_kib(lock_page(2048), 1), BELOW_LOCK_PAGE_KIB);
        assert_eq!(cache_kib(lock_page(2048), 524_288), BELOW_LOCK_PAGE_KIB);
        assert_eq!(cache_kib(lock_page(2048), 524_289), PAST_LOCK_PAGE_KIB);
        // 4 KiB pages (databases made before 2026-12-06): page 262,145.
        assert_eq!(lock_page(4096), 262_145);
        assert_eq!(cache_kib(lock_page(4096), 262_144), BELOW_LOCK_PAGE_KIB);
        assert_eq!(cache_kib(lock_page(4096), 262_145), PAST_LOCK_PAGE_KIB);
        assert_eq!(cache_kib(lock_page(4096), 10_000_000), PAST_LOCK_PAGE_KIB);
    }

    #[test]
    fn a_small_database_gets_the_small_cache_and_keeps_it_through_commits() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("c.db")).unwrap();
        conn.pragma_update(None, "page_size", 2048).unwrap();
        // Thousands of commits: without a sync each.
        conn.pragma_update(None, "synchronous", "OFF").unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .unwrap();
        let mut size = CacheSize::set(&conn, 2048).unwrap();
        assert_eq!(cache_size_of(&conn), -BELOW_LOCK_PAGE_KIB);
        for n in 0..2 * COMMITS_BETWEEN_CHECKS {
            conn.execute("INSERT INTO t (n) VALUES (?1)", [n]).unwrap();
            size.after_commit(&conn);
        }
        assert_eq!(cache_size_of(&conn), -BELOW_LOCK_PAGE_KIB);
        assert_eq!(size.kib, BELOW_LOCK_PAGE_KIB);
    }

    /// Makes the database file at `path` say it has `pages` pages, as if it had grown
    /// (the file is extended sparsely: no test writes a GiB). SQLite reads a database's
    /// size from its header, trusted while the header's two change counters agree.
    fn pretend_grown(path: &std::path::Path, pages: u32) {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut header = [0u8; 100];
        file.read_exact(&mut header).unwrap();
        let page_size = u64::from(u16::from_be_bytes([header[16], header[17]]));
        let counter = u32::from_be_bytes(header[24..28].try_into().unwrap()) + 1;
        header[24..28].copy_from_slice(&counter.to_be_bytes());
        header[28..32].copy_from_slice(&pages.to_be_bytes());
        header[92..96].copy_from_slice(&counter.to_be_bytes());
        file.seek(SeekFrom::Start(0)).unwrap();
        file.write_all(&header).unwrap();
        file.set_len(u64::from(pages) * page_size).unwrap();
    }

    #[test]
    fn a_database_that_reaches_its_lock_page_gets_the_large_cache_at_the_next_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "page_size", 2048).unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .unwrap();
        let mut size = CacheSize::set(&conn, 2048).unwrap();
        assert_eq!(cache_size_of(&conn), -BELOW_LOCK_PAGE_KIB);

        pretend_grown(&path, 524_289);
        let pages: i64 = conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        assert_eq!(pages, 524_289, "the connection sees the database grown");
        for _ in 0..COMMITS_BETWEEN_CHECKS - 1 {
            size.after_commit(&conn);
        }
        assert_eq!(
            cache_size_of(&conn),
            -BELOW_LOCK_PAGE_KIB,
            "not looked at yet"
        );
        size.after_commit(&conn);
        assert_eq!(cache_size_of(&conn), -PAST_LOCK_PAGE_KIB);
        // And a writer opening such a database starts with it.
        drop(conn);
        let again = Connection::open(&path).unwrap();
        CacheSize::set(&again, 2048).unwrap();
        assert_eq!(cache_size_of(&again), -PAST_LOCK_PAGE_KIB);
    }
}
