//! Answers that can never change again, kept in memory so that replays of a key and reads
//! of settled orders need no database round trip. Safe with many replicas: only what is
//! immutable everywhere is kept — a key's stored first answer (until the key expires) and
//! an order whose view is final (its saga done, or only the reservation's commit left,
//! which shows nowhere; nothing waiting for an operator).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};

use crate::domain::idempotency::{Fingerprint, IdempotencyKey, StoredResponse};
use crate::domain::ids::{OrderId, UserId};
use crate::domain::order::{Order, OrderStatus};
use crate::domain::when::{self, Timestamp};

/// Bytes of answers each cache may hold.
const BUDGET_BYTES: u64 = 4 * 1024 * 1024;
/// A guess of entries per cache, for sizing its tables.
const ESTIMATED_ENTRIES: usize = 4 * 1024;

/// The first answer to an idempotency key, as stored with its order.
#[derive(Clone, Debug)]
pub struct Replay {
    pub fingerprint: Fingerprint,
    pub expires_at: Timestamp,
    pub response: StoredResponse,
}

#[derive(Clone)]
struct ReplayWeight;

impl Weighter<(UserId, IdempotencyKey), Arc<Replay>> for ReplayWeight {
    fn weight(&self, _key: &(UserId, IdempotencyKey), value: &Arc<Replay>) -> u64 {
        value.response.body.len() as u64 + 256
    }
}

#[derive(Clone)]
struct BodyWeight;

impl Weighter<OrderId, Bytes> for BodyWeight {
    fn weight(&self, _key: &OrderId, value: &Bytes) -> u64 {
        value.len() as u64 + 64
    }
}

/// A key with the exact bytes of a request body that was answered under it.
#[derive(PartialEq, Eq)]
struct SameRequest {
    key: IdempotencyKey,
    body: Bytes,
}

/// [`SameRequest`] borrowed from a request, to look one up without copying the body.
struct SameRequestRef<'a> {
    key: &'a IdempotencyKey,
    body: &'a [u8],
}

/// The one hash both forms use, so that a lookup finds what was stored.
fn hash_request(key: &IdempotencyKey, body: &[u8], state: &mut impl Hasher) {
    key.hash(state);
    body.hash(state);
}

impl Hash for SameRequest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_request(&self.key, &self.body, state);
    }
}

impl Hash for SameRequestRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_request(self.key, self.body, state);
    }
}

impl Equivalent<SameRequest> for SameRequestRef<'_> {
    fn equivalent(&self, stored: &SameRequest) -> bool {
        *self.key == stored.key && self.body == stored.body.as_ref()
    }
}

#[derive(Clone)]
struct SameRequestWeight;

impl Weighter<SameRequest, Arc<Replay>> for SameRequestWeight {
    fn weight(&self, key: &SameRequest, value: &Arc<Replay>) -> u64 {
        // The answer is counted too: evicted from `replays`, it lives on here.
        (key.body.len() + value.response.body.len()) as u64 + 256
    }
}

/// The three caches; shared by all handlers.
pub struct AnswerCache {
    replays: Cache<(UserId, IdempotencyKey), Arc<Replay>, ReplayWeight>,
    /// The same answers, found by key and the request's exact bytes (see
    /// [`AnswerCache::replay_of_same_bytes`]).
    replays_by_bytes: Cache<SameRequest, Arc<Replay>, SameRequestWeight>,
    orders: Cache<OrderId, Bytes, BodyWeight>,
}

impl Default for AnswerCache {
    fn default() -> Self {
        Self {
            replays: Cache::with_weighter(ESTIMATED_ENTRIES, BUDGET_BYTES, ReplayWeight),
            replays_by_bytes: Cache::with_weighter(
                ESTIMATED_ENTRIES,
                BUDGET_BYTES,
                SameRequestWeight,
            ),
            orders: Cache::with_weighter(ESTIMATED_ENTRIES, BUDGET_BYTES, BodyWeight),
        }
    }
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("replays", &self.replays.len())
            .field("replays_by_bytes", &self.replays_by_bytes.len())
            .field("orders", &self.orders.len())
            .finish()
    }
}

impl AnswerCache {
    /// The stored first answer to `key`, unless it is unknown here or expired.
    pub fn replay(&self, user: &UserId, key: &IdempotencyKey) -> Option<Arc<Replay>> {
        let cache_key = (user.clone(), key.clone());
        let hit = self.replays.get(&cache_key)?;
        if hit.expires_at < when::now() {
            self.replays.remove(&cache_key);
            return None;
        }
        Some(hit)
    }

    /// Remembers the first answer to `key`.
    pub fn remember_replay(&self, user: &UserId, key: &IdempotencyKey, replay: Arc<Replay>) {
        self.replays.insert((user.clone(), key.clone()), replay);
    }

    /// The stored first answer to `key`, if a request with exactly these body bytes was
    /// answered with it before (see [`AnswerCache::remember_same_bytes`]) and the key has
    /// not expired. Why: a client's retry sends the same bytes, and finding its answer by
    /// them skips parsing, validating and fingerprinting the body, which took ~25 % of
    /// the service's CPU per replay (perf at 64 clients, 2026-12-06). Sound because the
    /// same bytes are the same request: the same user (the body names it) and the same
    /// fingerprint, so the slow path would have found this answer too.
    pub fn replay_of_same_bytes(&self, key: &IdempotencyKey, body: &[u8]) -> Option<Arc<Replay>> {
        let request = SameRequestRef { key, body };
        let hit = self.replays_by_bytes.get(&request)?;
        if hit.expires_at < when::now() {
            self.replays_by_bytes.remove(&request);
            return None;
        }
        Some(hit)
    }

    /// Remembers that a request under `key` with exactly `body` is answered by `replay`:
    /// the request that made the answer, or one whose fingerprint matched it.
    pub fn remember_same_bytes(&self, key: &IdempotencyKey, body: &[u8], replay: Arc<Replay>) {
        // A copy: the request's own buffer may be a slice of a larger one, which would
        // stay alive with it and escape the cache's weighing.
        let request = SameRequest {
            key: key.clone(),
            body: Bytes::copy_from_slice(body),
        };
        self.replays_by_bytes.insert(request, replay);
    }

    /// The JSON of an order read before whose view is final.
    pub fn order(&self, id: &OrderId) -> Option<Bytes> {
        self.orders.get(id)
    }

    /// Remembers an order's JSON if what the order shows can no longer change: settled,
    /// or completed with only its reservation's commit left (which shows nowhere).
    pub fn remember_order(&self, order: &Order, json: &Bytes) {
        if order.answer_is_final() && order.status != OrderStatus::NeedsAttention {
            self.orders.insert(order.id, json.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(expires_at: Timestamp) -> Replay {
        Replay {
            fingerprint: Fingerprint::from_stored("f".into()),
            expires_at,
            response: StoredResponse {
                status: 201,
                body: "{}".into(),
            },
        }
    }

    #[test]
    fn expired_replays_are_forgotten() {
        let cache = AnswerCache::default();
        let user = UserId::anonymous();
        let key = IdempotencyKey::parse("k").unwrap();
        cache.remember_replay(
            &user,
            &key,
            Arc::new(replay(when::now() - chrono::Duration::seconds(1))),
        );
        assert!(cache.replay(&user, &key).is_none());
        cache.remember_replay(
            &user,
            &key,
            Arc::new(replay(when::now() + chrono::Duration::hours(1))),
        );
        assert!(cache.replay(&user, &key).is_some());
        assert!(
            cache
                .replay(&UserId::from("other".to_owned()), &key)
                .is_none(),
            "keys are scoped by user"
        );
    }

    #[test]
    fn only_the_same_key_with_the_same_bytes_finds_an_answer() {
        let cache = AnswerCache::default();
        let key = IdempotencyKey::parse("k").unwrap();
        let body = br#"{"userId":"u-1","items":[]}"#;
        let first = Arc::new(replay(when::now() + chrono::Duration::hours(1)));
        cache.remember_same_bytes(&key, body, first.clone());
        let hit = cache.replay_of_same_bytes(&key, body).unwrap();
        assert!(Arc::ptr_eq(&hit, &first));
        let spaced = br#"{"userId": "u-1","items":[]}"#;
        assert!(
            cache.replay_of_same_bytes(&key, spaced).is_none(),
            "other bytes go the slow way, which compares fingerprints"
        );
        let other_key = IdempotencyKey::parse("k2").unwrap();
        assert!(cache.replay_of_same_bytes(&other_key, body).is_none());
    }

    #[test]
    fn an_expired_key_is_not_found_by_its_bytes() {
        let cache = AnswerCache::default();
        let key = IdempotencyKey::parse("k").unwrap();
        let expired = Arc::new(replay(when::now() - chrono::Duration::seconds(1)));
        cache.remember_same_bytes(&key, b"{}", expired);
        assert!(cache.replay_of_same_bytes(&key, b"{}").is_none());
        assert_eq!(cache.replays_by_bytes.len(), 0, "and it is forgotten");
    }

    #[test]
    fn a_remembered_body_does_not_hold_on_to_the_request_buffer() {
        let cache = AnswerCache::default();
        let key = IdempotencyKey::parse("k").unwrap();
        let buffer = Bytes::from(vec![b'x'; 64 * 1024]);
        let body = buffer.slice(0..2);
        let first = Arc::new(replay(when::now() + chrono::Duration::hours(1)));
        cache.remember_same_bytes(&key, &body, first);
        drop(buffer);
        // The buffer is freed only if nothing else refers to it: `body` is the last
        // reference, so converting it back into a `Vec` succeeds only then.
        assert!(
            body.try_into_mut().is_ok(),
            "the cache kept a reference to the request's buffer"
        );
    }
}
