//! Locking helper for the in-memory state.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, carrying on after a panic in another holder: every critical section in
/// the sandbox leaves its state consistent before anything that can panic, so a poisoned
/// lock is still safe to use and a test run should not cascade into unrelated failures.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
