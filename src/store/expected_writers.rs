//! How many tasks of this process will write again soon (the sagas being driven). The
//! SQLite writer reads it to tell a lone write under load, worth holding back a moment so
//! that the next writes share its commit, from a lone write on a quiet service, which
//! must go at once.

use std::sync::atomic::{AtomicUsize, Ordering};

static EXPECTED_WRITERS: AtomicUsize = AtomicUsize::new(0);

/// Counts its holder as a task that will write again, for as long as it lives.
#[must_use = "the writer is counted only while this guard lives"]
#[derive(Debug)]
pub struct ExpectedWriter(&'static AtomicUsize);

impl ExpectedWriter {
    pub fn enter() -> Self {
        Self::counted_in(&EXPECTED_WRITERS)
    }

    fn counted_in(counter: &'static AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for ExpectedWriter {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The tasks counted now (a hint: it may change at once).
pub(super) fn expected_writers() -> usize {
    EXPECTED_WRITERS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_guards_while_they_live() {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let first = ExpectedWriter::counted_in(&COUNTER);
        let second = ExpectedWriter::counted_in(&COUNTER);
        assert_eq!(COUNTER.load(Ordering::Relaxed), 2);
        drop(first);
        assert_eq!(COUNTER.load(Ordering::Relaxed), 1);
        drop(second);
        assert_eq!(COUNTER.load(Ordering::Relaxed), 0);
    }
}
