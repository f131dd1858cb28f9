//! The load itself: one pooled keep-alive client, one task per worker, closed or open
//! loop pacing, warm-up, measured window and drain.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Client, Url};

use crate::body::{BodyMaker, Catalogue};
use crate::config::{Config, Mode, Scenario};
use crate::pool::{self, PoolSpec, PooledOrder};
use crate::report::{Report, Totals};
use crate::stats::{ConnectionError, Outcome, Stats};

/// How many of its own recent orders a worker may replay (`--replay-share`).
const RECENT: usize = 64;

/// A run ready to start: the client is built, the target answered, and the orders that
/// `replay` and `get` need exist.
#[derive(Debug)]
pub struct Prepared {
    config: Config,
    client: Client,
    catalogue: Arc<Catalogue>,
    pool: Arc<Vec<PooledOrder>>,
    run_id: u64,
    seed: u64,
}

/// Checks the configuration, reaches the target and, for `replay` and `get`, creates
/// the pool of orders. The run starts with [`Prepared::run`].
pub async fn prepare(config: Config) -> anyhow::Result<Prepared> {
    config.validate()?;
    let client = Client::builder()
        .pool_max_idle_per_host(config.concurrency)
        .tcp_nodelay(true)
        .timeout(config.timeout)
        .connect_timeout(config.timeout.min(Duration::from_secs(10)))
        .default_headers(config.header_map()?)
        .user_agent(concat!("order-service-loadgen/", env!("CARGO_PKG_VERSION")))
        // A proxy from the environment would be measured instead of the target.
        .no_proxy()
        .build()
        .context("building the HTTP client")?;

    let health = format!("{}/health", config.base_url());
    client
        .get(&health)
        .send()
        .await
        .with_context(|| format!("cannot reach the target: GET {health}"))?;

    let catalogue = Arc::new(Catalogue::new(&config.skus, config.max_items, config.users));
    let run_id: u64 = rand::random();
    let seed = config.seed.unwrap_or_else(rand::random);
    let pool = match config.scenario {
        Scenario::Replay | Scenario::Get => {
            pool::create(PoolSpec {
                client: &client,
                base_url: config.base_url(),
                catalogue: &catalogue,
                run_id,
                seed,
                size: config.pool_size,
                concurrency: config.concurrency,
            })
            .await?
        }
        Scenario::Create | Scenario::Health => Vec::new(),
    };
    Ok(Prepared {
        config,
        client,
        catalogue,
        pool: Arc::new(pool),
        run_id,
        seed,
    })
}

/// Prepares and runs in one go.
pub async fn run(config: Config) -> anyhow::Result<Report> {
    prepare(config).await?.run().await
}

/// The instants every worker goes by.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

/// What every worker shares.
struct Shared {
    config: Config,
    client: Client,
    catalogue: Arc<Catalogue>,
    pool: Arc<Vec<PooledOrder>>,
    orders_url: Url,
    health_url: Url,
    run_id: u64,
    seed: u64,
}

/// One worker's results.
struct WorkerResult {
    measured: Stats,
    late: u64,
    total_ok: u64,
    total_errors: u64,
}

impl Prepared {
    /// The run's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sends the load: warm-up, then the measured window; waits for the requests still
    /// running at its end.
    pub async fn run(self) -> anyhow::Result<Report> {
        let base = self.config.base_url();
        let shared = Arc::new(Shared {
            orders_url: Url::parse(&format!("{base}/orders"))?,
            health_url: Url::parse(&format!("{base}/health"))?,
            config: self.config,
            client: self.client,
            catalogue: self.catalogue,
            pool: self.pool,
            run_id: self.run_id,
            seed: self.seed,
        });
        let start = Instant::now();
        let clock = Clock {
            start,
            measure_from: start + shared.config.warmup,
            end: start + shared.config.warmup + shared.config.duration,
        };
        let workers: Vec<_> = (0..shared.config.concurrency)
            .map(|index| tokio::spawn(worker(Arc::clone(&shared), index, clock)))
            .collect();

        let expected = shared.config.scenario.expected_status();
        let mut measured = Stats::new(expected);
        let (mut late, mut total_ok, mut total_errors) = (0, 0, 0);
        for handle in workers {
            let result = handle.await.context("a worker panicked")?;
            measured.merge(&result.measured);
            late += result.late;
            total_ok += result.total_ok;
            total_errors += result.total_errors;
        }
        let totals = Totals {
            ok: total_ok,
            errors: total_errors,
            seconds: start.elapsed().as_secs_f64(),
        };
        Ok(Report::new(
            &shared.config,
            &measured,
            shared.config.duration,
            late,
            totals,
        ))
    }
}

async fn worker(shared: Arc<Shared>, index: usize, clock: Clock) -> WorkerResult {
    let config = &shared.config;
    let expected = config.scenario.expected_status();
    let mut rng = SmallRng::seed_from_u64(
        shared
            .seed
            .wrapping_add((index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
    );
    let mut maker = BodyMaker::new(&shared.catalogue, shared.run_id, index);
    let mut recent: VecDeque<(HeaderValue, Bytes)> = VecDeque::with_capacity(RECENT);
    let mut result = WorkerResult {
        measured: Stats::new(expected),
        late: 0,
        total_ok: 0,
        total_errors: 0,
    };

    // Open loop: this worker's share of the rate, its first start staggered so that the
    // workers do not fire together.
    let interval = config
        .rate
        .filter(|_| config.mode == Mode::Open)
        .map(|rate| Duration::from_secs_f64(config.concurrency as f64 / rate));
    let mut next_start = match interval {
        Some(interval) => clock.start + interval.mul_f64(index as f64 / config.concurrency as f64),
        None => clock.start,
    };

    loop {
        let now = Instant::now();
        let intended = match interval {
            None if now >= clock.end => break,
            None => now,
            Some(interval) => {
                if next_start >= clock.end {
                    break;
                }
                if now >= clock.end {
                    // Behind schedule when the window closed: the requests never sent
                    // did not finish inside it.
                    let behind = clock.end.saturating_duration_since(next_start);
                    result.late += 1 + (behind.as_nanos() / interval.as_nanos().max(1)) as u64;
                    break;
                }
                tokio::time::sleep_until(next_start.into()).await;
                let intended = next_start;
                next_start += interval;
                intended
            }
        };

        let request = build_request(&shared, &mut rng, &mut maker, &mut recent);
        let outcome = send(request).await;
        let done = Instant::now();

        match outcome {
            Outcome::Status { status, .. } if status == expected => result.total_ok += 1,
            _ => result.total_errors += 1,
        }
        if done >= clock.end {
            result.late += 1;
        } else if done >= clock.measure_from {
            result
                .measured
                .record(outcome, done.saturating_duration_since(intended));
        }
        if let Outcome::Failed(ConnectionError::Connect) = outcome {
            // A refused connection comes back at once; do not spin on a server that is down.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    result
}

fn build_request(
    shared: &Shared,
    rng: &mut SmallRng,
    maker: &mut BodyMaker,
    recent: &mut VecDeque<(HeaderValue, Bytes)>,
) -> reqwest::RequestBuilder {
    let config = &shared.config;
    let post = |key: HeaderValue, body: Bytes| {
        shared
            .client
            .post(shared.orders_url.clone())
            .header("idempotency-key", key)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
    };
    match config.scenario {
        Scenario::Health => shared.client.get(shared.health_url.clone()),
        Scenario::Get => {
            let order = &shared.pool[rng.random_range(0..shared.pool.len())];
            shared.client.get(order.url.clone())
        }
        Scenario::Replay => {
            let order = &shared.pool[rng.random_range(0..shared.pool.len())];
            post(order.key.clone(), order.body.clone())
        }
        Scenario::Create => {
            if config.replay_share > 0.0
                && !recent.is_empty()
                && rng.random_bool(config.replay_share)
            {
                let (key, body) = &recent[rng.random_range(0..recent.len())];
                return post(key.clone(), body.clone());
            }
            let (key, body) = maker.next(&shared.catalogue, rng);
            if config.replay_share > 0.0 {
                if recent.len() == RECENT {
                    recent.pop_front();
                }
                recent.push_back((key.clone(), body.clone()));
            }
            post(key, body)
        }
    }
}

/// Sends one request and reads its answer to the end (so the connection goes back to
/// the pool) without keeping it.
async fn send(request: reqwest::RequestBuilder) -> Outcome {
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Outcome::Failed(classify(&error)),
    };
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"true"));
    loop {
        match response.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => return Outcome::Status { status, replayed },
            Err(error) => return Outcome::Failed(classify(&error)),
        }
    }
}

fn classify(error: &reqwest::Error) -> ConnectionError {
    if error.is_timeout() {
        ConnectionError::Timeout
    } else if error.is_connect() {
        ConnectionError::Connect
    } else {
        ConnectionError::Other
    }
}
