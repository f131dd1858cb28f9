//! The orders that `replay` and `get` work on, created before the measured run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use reqwest::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use reqwest::{Client, Url};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::body::{BodyMaker, Catalogue};

/// An order that exists on the target: its key and body (to replay) and its URL (to GET).
#[derive(Debug, Clone)]
pub struct PooledOrder {
    pub key: HeaderValue,
    pub body: Bytes,
    pub url: Url,
}

/// Only the id is read from a created order, and only when there is no `Location`.
#[derive(Deserialize)]
struct Created {
    id: String,
}

/// What creating the pool needs from the run.
pub(crate) struct PoolSpec<'a> {
    pub client: &'a Client,
    pub base_url: &'a str,
    pub catalogue: &'a Arc<Catalogue>,
    pub run_id: u64,
    pub seed: u64,
    pub size: usize,
    pub concurrency: usize,
}

/// Creates `size` orders with up to 16 requests at once. Fails when more than half the
/// attempts do not give a `201`, naming the statuses seen.
pub(crate) async fn create(spec: PoolSpec<'_>) -> anyhow::Result<Vec<PooledOrder>> {
    let orders_url = Url::parse(&format!("{}/orders", spec.base_url))?;
    let created = Arc::new(Mutex::new(Vec::with_capacity(spec.size)));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(AtomicUsize::new(0));
    let claimed = Arc::new(AtomicUsize::new(0));
    let max_attempts = spec.size * 2 + 16;
    let workers = spec.concurrency.clamp(1, 16);

    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers {
        let client = spec.client.clone();
        let catalogue = Arc::clone(spec.catalogue);
        let orders_url = orders_url.clone();
        let base_url = spec.base_url.to_owned();
        let (created, failures, attempts, claimed) = (
            Arc::clone(&created),
            Arc::clone(&failures),
            Arc::clone(&attempts),
            Arc::clone(&claimed),
        );
        let size = spec.size;
        // Worker numbers past the run's own workers keep the pool's keys apart from theirs.
        let mut maker = BodyMaker::new(&catalogue, spec.run_id, 1_000_000 + worker);
        let mut rng = SmallRng::seed_from_u64(spec.seed ^ 0x5eed_0000 ^ worker as u64);
        tasks.push(tokio::spawn(async move {
            // A slot is claimed before its request, so the pool gets exactly `size`
            // orders; a failed request gives its slot back.
            while attempts.fetch_add(1, Ordering::Relaxed) < max_attempts {
                if claimed.fetch_add(1, Ordering::Relaxed) >= size {
                    claimed.fetch_sub(1, Ordering::Relaxed);
                    break;
                }
                let (key, body) = maker.next(&catalogue, &mut rng);
                match create_one(&client, &orders_url, &base_url, &key, &body).await {
                    Ok(url) => created.lock().await.push(PooledOrder { key, body, url }),
                    Err(error) => {
                        claimed.fetch_sub(1, Ordering::Relaxed);
                        failures.lock().await.push(format!("{error:#}"));
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.context("a pool worker panicked")?;
    }
    let created = std::mem::take(&mut *created.lock().await);
    if created.len() < spec.size {
        let failures = failures.lock().await;
        let mut kinds: Vec<&String> = failures.iter().collect();
        kinds.sort();
        kinds.dedup();
        kinds.truncate(5);
        bail!(
            "created only {} of {} orders for the pool ({} failures, e.g. {:?})",
            created.len(),
            spec.size,
            failures.len(),
            kinds
        );
    }
    Ok(created)
}

async fn create_one(
    client: &Client,
    orders_url: &Url,
    base_url: &str,
    key: &HeaderValue,
    body: &Bytes,
) -> anyhow::Result<Url> {
    let response = client
        .post(orders_url.clone())
        .header("idempotency-key", key.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body.clone())
        .send()
        .await
        .context("POST /orders")?;
    let status = response.status();
    if status.as_u16() != 201 {
        bail!("POST /orders answered {status}");
    }
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let bytes = response.bytes().await.context("reading the order")?;
    let path = match location {
        Some(location) => location,
        None => {
            let created: Created =
                serde_json::from_slice(&bytes).context("the created order has no `id`")?;
            format!("/orders/{}", created.id)
        }
    };
    let url = if path.starts_with('/') {
        Url::parse(&format!("{base_url}{path}"))
    } else {
        Url::parse(&path)
    };
    url.with_context(|| format!("bad order location {path:?}"))
}
