//! The store behind each service's book: records in the order they were made, found by id.
//!
//! Two B-trees rather than a `Vec` with a `HashMap` index: those grow by copying all they
//! hold, and the copy runs under the service's lock. With two million records a rehash
//! alone took ~0.4 s, and since each order adds one record to each of the three services
//! at about the same count, one order waited for three of them in a row: the 1–2.5 s
//! stalls that long benchmark runs showed. A B-tree grows a node at a time.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

/// Records of type `T` keyed by a string id, listed oldest first.
#[derive(Debug)]
pub(crate) struct Records<T> {
    by_age: BTreeMap<u64, T>,
    age_of: BTreeMap<String, u64>,
    next_age: u64,
}

impl<T> Default for Records<T> {
    fn default() -> Self {
        Self {
            by_age: BTreeMap::new(),
            age_of: BTreeMap::new(),
            next_age: 0,
        }
    }
}

impl<T> Records<T> {
    /// Adds `record` as the newest, unless `id` is taken (then nothing changes and `false`
    /// is returned).
    pub(crate) fn insert(&mut self, id: String, record: T) -> bool {
        // One walk down the id tree, not two (a lookup, then the insert): comparing ids
        // was ~5 % of the sandbox's CPU under load.
        let Entry::Vacant(slot) = self.age_of.entry(id) else {
            return false;
        };
        slot.insert(self.next_age);
        self.by_age.insert(self.next_age, record);
        self.next_age += 1;
        true
    }

    pub(crate) fn get(&self, id: &str) -> Option<&T> {
        self.by_age.get(self.age_of.get(id)?)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        self.by_age.get_mut(self.age_of.get(id)?)
    }

    /// Forgets the record; its id may be used again, for a record that is then the newest.
    pub(crate) fn remove(&mut self, id: &str) -> Option<T> {
        let age = self.age_of.remove(id)?;
        self.by_age.remove(&age)
    }

    /// Oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.by_age.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(records: &Records<&'static str>) -> Vec<&'static str> {
        records.iter().copied().collect()
    }

    #[test]
    fn records_are_listed_oldest_first_and_found_by_id() {
        let mut records = Records::default();
        for id in ["c", "a", "b"] {
            assert!(records.insert(id.to_owned(), id));
        }
        assert_eq!(ids(&records), ["c", "a", "b"]);
        assert_eq!(records.get("a"), Some(&"a"));
        assert_eq!(records.get("z"), None);
        *records.get_mut("a").unwrap() = "A";
        assert_eq!(ids(&records), ["c", "A", "b"]);
    }

    #[test]
    fn a_taken_id_is_refused_and_the_record_kept() {
        let mut records = Records::default();
        assert!(records.insert("a".to_owned(), "first"));
        assert!(!records.insert("a".to_owned(), "second"));
        assert_eq!(ids(&records), ["first"]);
    }

    #[test]
    fn a_removed_id_can_be_used_again_and_then_counts_as_newest() {
        let mut records = Records::default();
        for id in ["a", "b"] {
            records.insert(id.to_owned(), id);
        }
        assert_eq!(records.remove("a"), Some("a"));
        assert_eq!(records.remove("a"), None);
        assert_eq!(records.get("a"), None);
        assert!(records.insert("a".to_owned(), "a again"));
        assert_eq!(ids(&records), ["b", "a again"]);
    }
}
