//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use loadgen::parse_duration;

/// Which databases to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    Sqlite,
    Postgres,
}

/// Benchmarks `order-service serve` (release build) against the platform sandbox, on
/// SQLite and on PostgreSQL, and writes a Markdown section and an SVG chart.
///
/// It builds nothing: run `cargo build --release --bin order-service` first (or pass
/// `--bin`).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Args {
    /// A few seconds in all, to check that the benchmark works; fails (exit 1) if the
    /// service does not answer or too many requests fail, never on speed.
    #[arg(long)]
    pub smoke: bool,

    /// The `order-service` binary. Default: the one next to this executable (so
    /// `cargo run --release -p bench` uses `target/release/order-service`).
    #[arg(long = "bin", value_name = "PATH")]
    pub binary: Option<PathBuf>,

    /// Put the Markdown section into this file, between `<!-- bench:begin -->` and
    /// `<!-- bench:end -->` (the rest of the file is kept; created if missing). Without
    /// it the section goes to standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Write the chart (throughput and p99 of POST /orders against concurrency) here.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,

    /// Write every measurement as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Measure nothing: read a run saved with `--json` and write its chart and Markdown
    /// again (e.g. after changing how they look). The saved command line is kept.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["smoke", "only", "binary"])]
    pub render: Option<PathBuf>,

    /// Measure one database only.
    #[arg(long, value_enum)]
    pub only: Option<Only>,

    /// PostgreSQL server to use; each run works in a new schema, dropped at the end.
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub postgres_url: String,

    /// Measured time per point. Default: 15s, or 1s with `--smoke`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Warm-up before each point. Default: 3s, or 0.5s with `--smoke`.
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,

    /// Concurrencies of the POST /orders points.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub concurrency: Vec<usize>,

    /// Concurrency of the health, replay and GET points.
    #[arg(long, default_value_t = 64)]
    pub reference_concurrency: usize,

    /// Number of SKUs the orders draw from (each with 10^12 units of stock).
    #[arg(long, default_value_t = 20)]
    pub skus: usize,

    /// Orders created before the replay and GET points. Default: 500, or 64 with
    /// `--smoke`.
    #[arg(long)]
    pub pool_size: Option<usize>,

    /// Fail (exit 1) when more than this share of the requests of a point fail.
    #[arg(long, default_value_t = 0.02)]
    pub max_error_share: f64,

    /// Extra environment of `order-service serve`, `NAME=VALUE` (repeatable), e.g.
    /// `DATABASE_MAX_CONNECTIONS=32`.
    #[arg(long = "service-env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub service_env: Vec<(String, String)>,

    /// Run the sandbox's inventory in its replay-by-`Idempotency-Key` mode and tell the
    /// service so (`INVENTORY_HONORS_IDEMPOTENCY_KEY=true`), as for a platform whose
    /// inventory replays reserves: the service then saves the reservation with the
    /// shipment (three durable writes per order instead of four). Off by default, as in
    /// the service.
    #[arg(long)]
    pub reserves_replay: bool,
}

impl Args {
    pub fn duration(&self) -> Duration {
        self.duration.unwrap_or(if self.smoke {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(15)
        })
    }

    pub fn warmup(&self) -> Duration {
        self.warmup.unwrap_or(if self.smoke {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(3)
        })
    }

    pub fn pool_size(&self) -> usize {
        self.pool_size.unwrap_or(if self.smoke { 64 } else { 500 })
    }

    pub fn runs_sqlite(&self) -> bool {
        self.only != Some(Only::Postgres)
    }

    pub fn runs_postgres(&self) -> bool {
        self.only != Some(Only::Sqlite)
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}
