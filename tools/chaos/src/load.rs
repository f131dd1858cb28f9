//! The clients: what each logical order contains, how it is sent (to a random live replica,
//! re-sent with the same key after a lost connection, a 409 or a 503, sometimes twice at
//! once), and every answer received, per key.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};

use crate::procs::Fleet;

/// SKUs with stock to spare; the sandbox is started with this much of each.
pub const PLENTIFUL: [&str; 3] = ["SKU-001", "SKU-002", "SKU-003"];
pub const PLENTIFUL_STOCK: u64 = 10_000_000;
/// A SKU that runs out during the run (some orders then get 409).
pub const SCARCE: &str = "SKU-SCARCE";
pub const SCARCE_STOCK: u64 = 150;
/// Prices with two decimals, so totals exercise decimal arithmetic.
const PRICES: [&str; 5] = ["499.99", "0.10", "1299.00", "19.95", "7.05"];

/// The shares of special orders, from the flags.
#[derive(Copy, Clone, Debug)]
pub struct Mix {
    pub fail_share: f64,
    pub large_share: f64,
    pub duplicate_share: f64,
}

/// What the client does for one logical order: one key, one user, one body.
#[derive(Clone, Debug)]
pub struct OrderPlan {
    pub index: u64,
    pub key: String,
    pub user_id: String,
    pub body: String,
    /// Send the key a second time, this long after the first send, while it may run.
    pub duplicate_after: Option<Duration>,
}

impl OrderPlan {
    /// The order with number `index` of the run with `seed`: its contents depend only on
    /// these two, so a run can be repeated. Each order has its own user, so the key scope
    /// `(userId, key)` is one logical order and the orders of a user can be counted.
    pub fn new(seed: u64, index: u64, mix: Mix) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let key = format!("chaos-{seed}-{index}");
        let user_id = format!("chaos-user-{seed}-{index}");
        let country = if rng.random_bool(mix.fail_share) {
            "FAIL"
        } else {
            "IN"
        };
        let mut items = Vec::new();
        if rng.random_bool(mix.large_share) {
            items.push(item(SCARCE, 10_000, "1.00"));
        } else {
            let lines = rng.random_range(1..=3);
            let first = rng.random_range(0..PLENTIFUL.len());
            for line in 0..lines {
                let sku = PLENTIFUL[(first + line) % PLENTIFUL.len()];
                let price = PRICES[rng.random_range(0..PRICES.len())];
                items.push(item(sku, rng.random_range(1..=5), price));
            }
            if rng.random_bool(0.05) {
                items.push(item(SCARCE, rng.random_range(1..=3), "250.00"));
            }
        }
        let body = format!(
            r#"{{"userId":{},"currency":"INR","address":{{"line1":"1 MG Road","city":"Pune","country":"{country}","postalCode":"411001"}},"items":[{}]}}"#,
            json!(user_id),
            items.join(",")
        );
        let duplicate_after = rng
            .random_bool(mix.duplicate_share)
            .then(|| Duration::from_millis(rng.random_range(0..=600)));
        OrderPlan {
            index,
            key,
            user_id,
            body,
            duplicate_after,
        }
    }
}

/// An item's JSON text; the price is written as given so that it stays an exact decimal.
fn item(sku: &str, qty: u64, price: &str) -> String {
    format!(r#"{{"sku":"{sku}","qty":{qty},"price":{price}}}"#)
}

/// One answer to a `POST /orders` (or the lack of one).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// `None` when the connection failed or timed out before an answer.
    pub status: Option<u16>,
    pub order_id: Option<String>,
    pub order_status: Option<String>,
    pub retry_after: Option<u64>,
    pub replayed: bool,
    pub replica: usize,
    /// The transport error, or the body of an unexpected answer.
    pub error: Option<String>,
    /// Milliseconds since the start of the load phase when the request was sent.
    pub sent_at_ms: u64,
    /// How long the request took, in milliseconds.
    pub took_ms: u64,
}

/// What a client makes of an answer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The order's outcome (201, or a failed order's 4xx/5xx with the order in the body).
    Final,
    /// 202: accepted, still running; ask again later.
    Accepted,
    /// 409 + Retry-After: the same key is still being processed.
    InProgress,
    /// 503 + Retry-After: a circuit breaker is open; nothing was done.
    Busy,
    /// No answer: connection refused, reset, or timed out.
    Lost,
    /// Anything the contract does not promise for a valid body (500, 422, ...).
    Unexpected,
}

impl Answer {
    pub fn verdict(&self) -> Verdict {
        let Some(status) = self.status else {
            return Verdict::Lost;
        };
        let has_order = self.order_id.is_some();
        match status {
            201 | 402 => Verdict::Final,
            202 => Verdict::Accepted,
            409 if !has_order => Verdict::InProgress,
            503 if !has_order => Verdict::Busy,
            400..=599 if has_order && status != 500 => Verdict::Final,
            _ => Verdict::Unexpected,
        }
    }

    /// An answer saying the order is recorded: 201 or 202 with an id.
    pub fn acknowledged(&self) -> bool {
        matches!(self.status, Some(201 | 202)) && self.order_id.is_some()
    }
}

/// Every logical order fired and every answer it got.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub plan: Arc<OrderPlan>,
    pub answers: Vec<Answer>,
}

impl KeyRecord {
    /// The record as one JSON line, for `answers.jsonl` in the run directory.
    pub fn json_line(&self) -> String {
        json!({
            "key": self.plan.key,
            "userId": self.plan.user_id,
            "body": serde_json::from_str::<Value>(&self.plan.body).unwrap_or(Value::Null),
            "answers": self.answers,
        })
        .to_string()
    }

    /// True when the client still has no final answer for this key.
    pub fn unresolved(&self) -> bool {
        self.answers
            .last()
            .is_none_or(|a| a.verdict() != Verdict::Final)
    }
}

/// The answers of the run, per order index.
#[derive(Default)]
pub struct Journal {
    keys: Mutex<BTreeMap<u64, KeyRecord>>,
}

impl Journal {
    fn register(&self, plan: Arc<OrderPlan>) {
        let mut keys = self.keys.lock().unwrap();
        keys.insert(
            plan.index,
            KeyRecord {
                plan,
                answers: Vec::new(),
            },
        );
    }

    fn record(&self, index: u64, answer: Answer) {
        if let Some(record) = self.keys.lock().unwrap().get_mut(&index) {
            record.answers.push(answer);
        }
    }

    pub fn snapshot(&self) -> Vec<KeyRecord> {
        self.keys.lock().unwrap().values().cloned().collect()
    }

    pub fn unresolved(&self) -> Vec<Arc<OrderPlan>> {
        let keys = self.keys.lock().unwrap();
        keys.values()
            .filter(|r| r.unresolved())
            .map(|r| r.plan.clone())
            .collect()
    }
}

/// The clients' side of the run: an HTTP client, the replicas, the journal.
pub struct Clients {
    pub http: reqwest::Client,
    pub fleet: Arc<Fleet>,
    pub journal: Arc<Journal>,
    pub seed: u64,
    pub mix: Mix,
    next_index: AtomicU64,
    started: Instant,
}

/// Tries per logical order during the load phase; the settle phase finishes the rest.
const LOAD_ATTEMPTS: u32 = 8;

impl Clients {
    pub fn new(
        http: reqwest::Client,
        fleet: Arc<Fleet>,
        journal: Arc<Journal>,
        seed: u64,
        mix: Mix,
    ) -> Self {
        Clients {
            http,
            fleet,
            journal,
            seed,
            mix,
            next_index: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Logical orders fired so far.
    pub fn fired(&self) -> u64 {
        self.next_index.load(Ordering::Relaxed)
    }

    /// Fires orders from `concurrency` clients until `until`.
    pub async fn load(self: &Arc<Self>, concurrency: usize, until: Instant) {
        let workers = (0..concurrency).map(|worker| {
            let clients = Arc::clone(self);
            let seed = self.seed.wrapping_add(1_000 + worker as u64);
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                while Instant::now() < until {
                    let index = clients.next_index.fetch_add(1, Ordering::Relaxed);
                    let plan = Arc::new(OrderPlan::new(clients.seed, index, clients.mix));
                    clients.run_order(plan, &mut rng, until).await;
                }
            })
        });
        for worker in futures::future::join_all(workers).await {
            if let Err(err) = worker {
                eprintln!("chaos: a client task failed: {err}");
            }
        }
    }

    /// Sends one logical order like a client behind a load balancer: re-sent with the same
    /// key, to another replica, until a final answer, `LOAD_ATTEMPTS`, or `until`.
    async fn run_order(self: &Arc<Self>, plan: Arc<OrderPlan>, rng: &mut StdRng, until: Instant) {
        self.journal.register(plan.clone());
        let mut duplicate = None;
        let mut last_replica = None;
        for attempt in 0..LOAD_ATTEMPTS {
            let Some(replica) = self.wait_for_replica(rng, last_replica).await else {
                break;
            };
            if attempt == 0
                && let Some(delay) = plan.duplicate_after
            {
                let clients = Arc::clone(self);
                let plan = plan.clone();
                let other = self.fleet.pick(rng, Some(replica)).unwrap_or(replica);
                duplicate = Some(tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    clients.send(&plan, other).await;
                }));
            }
            let answer = self.send(&plan, replica).await;
            last_replica = Some(replica);
            let pause = match answer.verdict() {
                Verdict::Final => break,
                Verdict::Accepted => Duration::from_millis(1_000),
                Verdict::InProgress | Verdict::Busy => {
                    Duration::from_secs(answer.retry_after.unwrap_or(1).min(2))
                        + Duration::from_millis(rng.random_range(0..200))
                }
                Verdict::Lost => backoff(rng, attempt),
                Verdict::Unexpected => Duration::from_millis(500),
            };
            if Instant::now() + pause >= until {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        if let Some(duplicate) = duplicate {
            let _ = duplicate.await;
        }
    }

    /// A replica to send to, waiting (up to 30 s) while none is up.
    async fn wait_for_replica(&self, rng: &mut StdRng, avoid: Option<usize>) -> Option<usize> {
        for _ in 0..300 {
            if let Some(replica) = self.fleet.pick(rng, avoid) {
                return Some(replica);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// One `POST /orders` of `plan` to `replica`, recorded in the journal.
    pub async fn send(&self, plan: &OrderPlan, replica: usize) -> Answer {
        let sent = Instant::now();
        let result = self
            .http
            .post(format!("{}/orders", self.fleet.url(replica)))
            .header("Idempotency-Key", &plan.key)
            .header("Content-Type", "application/json")
            .body(plan.body.clone())
            .send()
            .await;
        let answer = match result {
            Err(err) => lost(replica, &err),
            Ok(response) => {
                let status = response.status().as_u16();
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let retry_after = header("retry-after").and_then(|v| v.parse().ok());
                let replayed = header("idempotent-replayed").as_deref() == Some("true");
                match response.text().await {
                    Err(err) => lost(replica, &err),
                    Ok(text) => {
                        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        let field = |name: &str| body.get(name).and_then(Value::as_str);
                        let mut answer = Answer {
                            status: Some(status),
                            order_id: field("id").map(str::to_owned),
                            order_status: field("status").map(str::to_owned),
                            retry_after,
                            replayed,
                            replica,
                            error: None,
                            sent_at_ms: 0,
                            took_ms: 0,
                        };
                        if answer.verdict() == Verdict::Unexpected {
                            answer.error = Some(text.chars().take(300).collect());
                        }
                        answer
                    }
                }
            }
        };
        let answer = Answer {
            sent_at_ms: millis(sent.duration_since(self.started)),
            took_ms: millis(sent.elapsed()),
            ..answer
        };
        self.journal.record(plan.index, answer.clone());
        answer
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn lost(replica: usize, err: &reqwest::Error) -> Answer {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else {
        "connection lost"
    };
    Answer {
        status: None,
        order_id: None,
        order_status: None,
        retry_after: None,
        replayed: false,
        replica,
        error: Some(format!("{kind}: {err}")),
        sent_at_ms: 0,
        took_ms: 0,
    }
}

/// Exponential backoff with full jitter: 100 ms, doubling, at most 2 s.
fn backoff(rng: &mut StdRng, attempt: u32) -> Duration {
    let ceiling = (100u64 << attempt.min(5)).min(2_000);
    Duration::from_millis(50 + rng.random_range(0..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIX: Mix = Mix {
        fail_share: 0.2,
        large_share: 0.2,
        duplicate_share: 0.2,
    };

    #[test]
    fn an_order_depends_only_on_the_seed_and_its_index() {
        let a = OrderPlan::new(7, 42, MIX);
        let b = OrderPlan::new(7, 42, MIX);
        assert_eq!(
            (a.key.as_str(), a.body.as_str()),
            (b.key.as_str(), b.body.as_str())
        );
        assert_ne!(OrderPlan::new(8, 42, MIX).body, a.body);
        let body: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(body["userId"], a.user_id.as_str());
        assert!(!body["items"].as_array().unwrap().is_empty());
    }

    fn answer(status: Option<u16>, id: Option<&str>, retry_after: Option<u64>) -> Answer {
        Answer {
            status,
            order_id: id.map(str::to_owned),
            order_status: None,
            retry_after,
            replayed: false,
            replica: 0,
            error: None,
            sent_at_ms: 0,
            took_ms: 0,
        }
    }

    #[test]
    fn verdicts_follow_the_contract() {
        assert_eq!(answer(Some(201), Some("o"), None).verdict(), Verdict::Final);
        assert_eq!(
            answer(Some(202), Some("o"), None).verdict(),
            Verdict::Accepted
        );
        assert_eq!(
            answer(Some(409), None, Some(1)).verdict(),
            Verdict::InProgress
        );
        assert_eq!(answer(Some(409), Some("o"), None).verdict(), Verdict::Final);
        assert_eq!(answer(Some(503), None, Some(2)).verdict(), Verdict::Busy);
        assert_eq!(answer(Some(504), Some("o"), None).verdict(), Verdict::Final);
        assert_eq!(answer(Some(500), None, None).verdict(), Verdict::Unexpected);
        assert_eq!(answer(Some(422), None, None).verdict(), Verdict::Unexpected);
        assert_eq!(answer(None, None, None).verdict(), Verdict::Lost);
        assert!(answer(Some(202), Some("o"), None).acknowledged());
        assert!(!answer(Some(402), Some("o"), None).acknowledged());
    }
}
