//! Answers that can never change again, kept in memory so that replays of a key and reads
//! of settled orders need no database round trip. Safe with many replicas: only what is
//! immutable everywhere is kept — a key's stored first answer (until the key expires) and
//! an order whose view is final (its saga done, or only the reservation's commit left,
//! which shows nowhere; nothing waiting for an operator).

use std::sync::Arc;

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

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

/// The two caches; shared by all handlers.
pub struct AnswerCache {
    replays: Cache<(UserId, IdempotencyKey), Arc<Replay>, ReplayWeight>,
    orders: Cache<OrderId, Bytes, BodyWeight>,
}

impl Default for AnswerCache {
    fn default() -> Self {
        Self {
            replays: Cache::with_weighter(ESTIMATED_ENTRIES, BUDGET_BYTES, ReplayWeight),
            orders: Cache::with_weighter(ESTIMATED_ENTRIES, BUDGET_BYTES, BodyWeight),
        }
    }
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("replays", &self.replays.len())
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
    pub fn remember_replay(&self, user: &UserId, key: &IdempotencyKey, replay: Replay) {
        self.replays
            .insert((user.clone(), key.clone()), Arc::new(replay));
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
            replay(when::now() - chrono::Duration::seconds(1)),
        );
        assert!(cache.replay(&user, &key).is_none());
        cache.remember_replay(
            &user,
            &key,
            replay(when::now() + chrono::Duration::hours(1)),
        );
        assert!(cache.replay(&user, &key).is_some());
        assert!(
            cache
                .replay(&UserId::from("other".to_owned()), &key)
                .is_none(),
            "keys are scoped by user"
        );
    }
}
