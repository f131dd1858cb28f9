//! Order bodies and idempotency keys, built from pre-rendered pieces so that a request
//! costs one buffer copy rather than a JSON serialisation.

use std::io::Write;

use bytes::Bytes;
use rand::Rng;
use rand::rngs::SmallRng;
use reqwest::header::HeaderValue;

/// The same address for every order: it is validated but does not change the work.
const HEAD: &str = r#"{"currency":"INR","address":{"line1":"1 MG Road","city":"Pune","country":"IN","postalCode":"411001"},"userId":"u-"#;

/// The pre-rendered pieces shared by every worker.
#[derive(Debug)]
pub struct Catalogue {
    /// Per SKU: `{"sku":"SKU-001","qty":` …
    line_heads: Vec<String>,
    /// … and `,"price":123.45}`.
    line_tails: Vec<String>,
    max_items: usize,
    users: u32,
}

impl Catalogue {
    /// Prices are fixed per SKU (derived from its name), with two decimals.
    pub fn new(skus: &[String], max_items: usize, users: u32) -> Self {
        let line_heads = skus
            .iter()
            .map(|sku| {
                let quoted = serde_json::to_string(sku.trim()).expect("a string serialises");
                format!(r#"{{"sku":{quoted},"qty":"#)
            })
            .collect();
        let line_tails = skus
            .iter()
            .map(|sku| {
                let cents = 100 + fnv1a(sku.trim().as_bytes()) % 500_000;
                format!(r#","price":{}.{:02}}}"#, cents / 100, cents % 100)
            })
            .collect();
        Catalogue {
            line_heads,
            line_tails,
            max_items,
            users,
        }
    }

    fn sku_count(&self) -> usize {
        self.line_heads.len()
    }
}

/// One worker's source of bodies and keys; reuses its buffers between requests.
#[derive(Debug)]
pub struct BodyMaker {
    key_prefix: String,
    sequence: u64,
    buffer: Vec<u8>,
    picks: Vec<usize>,
}

impl BodyMaker {
    /// Keys are `<run>-<worker>-<sequence>`, so they are unique within and across runs.
    pub fn new(catalogue: &Catalogue, run_id: u64, worker: usize) -> Self {
        BodyMaker {
            key_prefix: format!("lg-{run_id:016x}-{worker}-"),
            sequence: 0,
            buffer: Vec::with_capacity(512),
            picks: (0..catalogue.sku_count()).collect(),
        }
    }

    /// A new idempotency key and a body of 1 to `max_items` lines over distinct SKUs (while
    /// there are enough), quantities 1 to 3.
    pub fn next(&mut self, catalogue: &Catalogue, rng: &mut SmallRng) -> (HeaderValue, Bytes) {
        self.sequence += 1;
        self.buffer.clear();
        write!(self.buffer, "{}{}", self.key_prefix, self.sequence).expect("writing to a Vec");
        let key = HeaderValue::from_bytes(&self.buffer).expect("the key is printable ASCII");

        self.buffer.clear();
        let user = rng.random_range(0..catalogue.users);
        write!(self.buffer, "{HEAD}{user}\",\"items\":[").expect("writing to a Vec");
        let lines = rng.random_range(1..=catalogue.max_items);
        let skus = catalogue.sku_count();
        for line in 0..lines {
            // A partial Fisher-Yates shuffle picks distinct SKUs without allocating; past
            // the number of SKUs, lines repeat SKUs (the service adds them up).
            let slot = line % skus;
            let swap = rng.random_range(slot..skus);
            self.picks.swap(slot, swap);
            let sku = self.picks[slot];
            if line > 0 {
                self.buffer.push(b',');
            }
            let qty: u8 = rng.random_range(1..=3);
            self.buffer
                .extend_from_slice(catalogue.line_heads[sku].as_bytes());
            write!(self.buffer, "{qty}").expect("writing to a Vec");
            self.buffer
                .extend_from_slice(catalogue.line_tails[sku].as_bytes());
        }
        self.buffer.extend_from_slice(b"]}");
        (key, Bytes::copy_from_slice(&self.buffer))
    }
}

/// FNV-1a: a stable hash, so a SKU has the same price in every run.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn bodies_are_valid_orders_with_distinct_skus() {
        let skus: Vec<String> = (1..=4).map(|i| format!("SKU-{i:03}")).collect();
        let catalogue = Catalogue::new(&skus, 5, 10);
        let mut maker = BodyMaker::new(&catalogue, 7, 3);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut keys = std::collections::HashSet::new();
        for _ in 0..200 {
            let (key, body) = maker.next(&catalogue, &mut rng);
            assert!(keys.insert(key.to_str().unwrap().to_owned()));
            let order: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let items = order["items"].as_array().unwrap();
            assert!((1..=5).contains(&items.len()));
            let mut seen: Vec<&str> = items
                .iter()
                .map(|item| item["sku"].as_str().unwrap())
                .collect();
            seen.truncate(4);
            let count = seen.len();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), count, "the first lines repeat no SKU: {order}");
            for item in items {
                assert!((1..=3).contains(&item["qty"].as_u64().unwrap()));
                let price = item["price"].to_string();
                let decimals = price.split_once('.').map_or(0, |(_, d)| d.len());
                assert!(decimals <= 2, "{price}");
            }
            assert!(order["userId"].as_str().unwrap().starts_with("u-"));
        }
    }

    #[test]
    fn a_sku_has_the_same_price_every_run() {
        let skus = vec!["SKU-001".to_owned()];
        let a = Catalogue::new(&skus, 1, 1);
        let b = Catalogue::new(&skus, 1, 1);
        assert_eq!(a.line_tails, b.line_tails);
    }
}
