//! Metric handles kept by their label values, for the metrics recorded on every order.
//!
//! Why: at each `counter!` or `histogram!` call the Prometheus recorder copies the key
//! (name and labels) into a new allocation and looks it up in its registry. A saga
//! records about a dozen metrics per order, so the hot ones register once per label set
//! and keep the handle here (a read lock and a hash of a few words afterwards).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{LazyLock, PoisonError, RwLock};

/// Handles of type `H` by label values `K`.
pub(super) struct Handles<K, H>(LazyLock<RwLock<HashMap<K, H>>>);

impl<K: Eq + Hash, H> Handles<K, H> {
    pub(super) const fn new() -> Self {
        Self(LazyLock::new(|| RwLock::new(HashMap::new())))
    }

    /// Calls `record` with the handle of `key`, registering it with `register` the first
    /// time. Before the recorder is installed (`installed` false) nothing is kept: a
    /// handle taken then would stay a no-op after the recorder arrives.
    pub(super) fn with(
        &self,
        installed: bool,
        key: K,
        register: impl FnOnce(&K) -> H,
        record: impl FnOnce(&H),
    ) {
        if !installed {
            record(&register(&key));
            return;
        }
        if let Some(handle) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            record(handle);
            return;
        }
        let mut handles = self.0.write().unwrap_or_else(PoisonError::into_inner);
        record(handles.entry(key).or_insert_with_key(register));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// Counts registrations; each registered handle is the count so far.
    #[derive(Default)]
    struct Registrations(Cell<u32>);

    impl Registrations {
        fn register(&self, _key: &&str) -> u32 {
            self.0.set(self.0.get() + 1);
            self.0.get()
        }
    }

    #[test]
    fn registers_once_per_key_once_installed() {
        let handles: Handles<&str, u32> = Handles::new();
        let registrations = Registrations::default();
        let mut seen = Vec::new();
        for key in ["a", "a", "b", "a"] {
            handles.with(true, key, |k| registrations.register(k), |h| seen.push(*h));
        }
        assert_eq!(seen, [1, 1, 2, 1]);
        assert_eq!(registrations.0.get(), 2);
    }

    #[test]
    fn keeps_nothing_before_the_recorder_is_installed() {
        let handles: Handles<&str, u32> = Handles::new();
        let registrations = Registrations::default();
        handles.with(false, "a", |k| registrations.register(k), |_| {});
        handles.with(false, "a", |k| registrations.register(k), |_| {});
        let mut seen = 0;
        handles.with(true, "a", |k| registrations.register(k), |h| seen = *h);
        assert_eq!((registrations.0.get(), seen), (3, 3));
    }
}
