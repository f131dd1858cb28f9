//! What a run does: the target, the scenario, the load shape and the order bodies.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// The request every worker sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// `POST /orders` with a new idempotency key each time (a share may be replays, see
    /// `--replay-share`).
    Create,
    /// `POST /orders` replaying the key and body of an order created before the run.
    Replay,
    /// `GET /orders/{id}` of an order created before the run.
    Get,
    /// `GET /health`: the server's ceiling, as a reference for the other scenarios.
    Health,
}

impl Scenario {
    /// The request line people know the scenario by.
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Create => "POST /orders",
            Scenario::Replay => "POST /orders (replay)",
            Scenario::Get => "GET /orders/{id}",
            Scenario::Health => "GET /health",
        }
    }

    /// The status that counts as a success.
    pub fn expected_status(self) -> u16 {
        match self {
            Scenario::Create | Scenario::Replay => 201,
            Scenario::Get | Scenario::Health => 200,
        }
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each of `--concurrency` workers sends its next request as soon as the previous
    /// answer arrived.
    Closed,
    /// Requests start at `--rate` per second whatever the answers; latency counts from
    /// the intended start, so a stalled server is not hidden (no coordinated omission).
    Open,
}

/// One load generator run. Also the `loadgen` command line.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Base URL of the order service.
    #[arg(long, default_value = "http://127.0.0.1:8004")]
    pub target: String,

    /// What to send.
    #[arg(long, value_enum, default_value_t = Scenario::Create)]
    pub scenario: Scenario,

    /// Workers (closed loop) or the most requests in flight (open loop); also the number
    /// of keep-alive connections.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub concurrency: usize,

    /// How long to measure, after the warm-up (e.g. `10s`, `500ms`, `2m`).
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Load sent before measuring starts; its answers are not in the report.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Closed loop (back-to-back per worker) or open loop (fixed rate, needs `--rate`).
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    pub mode: Mode,

    /// Requests per second in open loop.
    #[arg(long, required_if_eq("mode", "open"))]
    pub rate: Option<f64>,

    /// SKUs the order lines are drawn from; each needs stock on the target.
    #[arg(long, value_delimiter = ',', default_value = "SKU-001,SKU-002,SKU-003")]
    pub skus: Vec<String>,

    /// Lines per order are drawn from 1 to this (distinct SKUs while there are enough).
    #[arg(long, default_value_t = 5)]
    pub max_items: usize,

    /// `create` only: this share of requests replays one of the worker's recent keys with
    /// the same body (answered from the idempotency store).
    #[arg(long, default_value_t = 0.0)]
    pub replay_share: f64,

    /// `replay` and `get`: how many orders to create before the run.
    #[arg(long, default_value_t = 256)]
    pub pool_size: usize,

    /// `userId`s are drawn from this many users (idempotency keys are scoped by user).
    #[arg(long, default_value_t = 1000)]
    pub users: u32,

    /// Longest wait for one answer; a request past it counts as a connection error.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Extra request header, `Name: value` (repeatable), e.g. for an ingress that wants
    /// authentication.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Seed of the order contents (keys are unique per run whatever the seed).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Config {
    /// A closed-loop run of `scenario` against `target` with the defaults of the command
    /// line.
    pub fn new(target: impl Into<String>, scenario: Scenario) -> Self {
        Config {
            target: target.into(),
            scenario,
            concurrency: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            mode: Mode::Closed,
            rate: None,
            skus: vec!["SKU-001".into(), "SKU-002".into(), "SKU-003".into()],
            max_items: 5,
            replay_share: 0.0,
            pool_size: 256,
            users: 1000,
            timeout: Duration::from_secs(30),
            headers: Vec::new(),
            seed: None,
        }
    }

    /// Checks the values that clap cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if self.duration.is_zero() {
            bail!("--duration must be positive");
        }
        if self.mode == Mode::Open {
            match self.rate {
                Some(rate) if rate.is_finite() && rate > 0.0 => {}
                _ => bail!("--mode open needs a positive --rate"),
            }
        }
        if self.skus.is_empty() || self.skus.iter().any(|s| s.trim().is_empty()) {
            bail!("--skus needs at least one non-blank SKU");
        }
        if self.max_items == 0 || self.max_items > 100 {
            bail!("--max-items must be 1 to 100 (the service's limit)");
        }
        if !(0.0..=1.0).contains(&self.replay_share) {
            bail!("--replay-share must be between 0 and 1");
        }
        if self.pool_size == 0 {
            bail!("--pool-size must be at least 1");
        }
        if self.users == 0 {
            bail!("--users must be at least 1");
        }
        self.header_map()?;
        reqwest::Url::parse(&self.target)
            .with_context(|| format!("--target {:?} is not a URL", self.target))?;
        Ok(())
    }

    /// The `--header` values as a header map.
    pub fn header_map(&self) -> anyhow::Result<HeaderMap> {
        let mut map = HeaderMap::new();
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .with_context(|| format!("--header {header:?} is not `Name: value`"))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("--header {header:?}: bad name"))?;
            let value = HeaderValue::from_str(value.trim())
                .with_context(|| format!("--header {header:?}: bad value"))?;
            map.append(name, value);
        }
        Ok(map)
    }

    /// The target without a trailing slash, ready for a path to be appended.
    pub(crate) fn base_url(&self) -> &str {
        self.target.trim_end_matches('/')
    }
}

/// Parses `10s`, `500ms`, `2m`, `1.5s` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unit must be ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is not a valid duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn open_loop_needs_a_rate() {
        let mut config = Config::new("http://127.0.0.1:1", Scenario::Health);
        config.mode = Mode::Open;
        assert!(config.validate().is_err());
        config.rate = Some(100.0);
        config.validate().unwrap();
    }

    #[test]
    fn headers_are_name_colon_value() {
        let mut config = Config::new("http://127.0.0.1:1", Scenario::Health);
        config.headers = vec!["Authorization: Bearer x".into()];
        assert_eq!(config.header_map().unwrap()["authorization"], "Bearer x");
        config.headers = vec!["no colon".into()];
        assert!(config.validate().is_err());
    }
}
