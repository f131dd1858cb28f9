//! The command line: which database, how long, how hard, and which faults.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Chaos test of the order service: the platform sandbox with faults, several order-service
/// processes killed with SIGKILL and restarted, concurrent clients re-sending idempotency
/// keys; then every invariant checked against the sandbox ledgers and the order database.
#[derive(Parser, Debug, Clone)]
#[command(name = "chaos", version, about)]
pub struct Args {
    /// `postgres`: several replicas sharing one PostgreSQL schema; `sqlite`: one process,
    /// killed and restarted on the same database file.
    #[arg(long, value_enum, default_value_t = Mode::Postgres)]
    pub mode: Mode,
    /// Order-service processes (default 3 on PostgreSQL; SQLite allows only 1).
    #[arg(long)]
    pub replicas: Option<usize>,
    /// The order-service binary (default: next to this binary, then
    /// `$CARGO_TARGET_DIR/release/order-service`, then `target/release/order-service`).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// PostgreSQL base URL; the run creates its own schema in it and drops it at the end.
    #[arg(
        long,
        env = "ORDER_SERVICE_TEST_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Length of the load phase (`90s`, `5m`, `1h`, or seconds).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Concurrent clients.
    #[arg(long, default_value_t = 12)]
    pub concurrency: usize,
    /// Mean interval between two kills (each drawn uniformly from 0.5x..1.5x); 0 = no kills.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub kill_every: Duration,
    /// Seed of every random choice (order contents, kills, faults); printed at start.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How long to wait, after the load, for every order to become final.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub settle_timeout: Duration,
    /// Fraction of downstream requests answered 5xx (no effect).
    #[arg(long, default_value_t = 0.05)]
    pub error_rate: f64,
    /// Fraction of downstream requests that hang.
    #[arg(long, default_value_t = 0.02)]
    pub hang_rate: f64,
    /// Fraction of downstream requests that take effect but lose their answer.
    #[arg(long, default_value_t = 0.02)]
    pub drop_rate: f64,
    /// Fraction of new payments declined.
    #[arg(long, default_value_t = 0.03)]
    pub decline_rate: f64,
    /// Fixed latency added to every downstream request, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub latency_ms: u64,
    /// Extra latency drawn uniformly from 0..=jitter, in milliseconds.
    #[arg(long, default_value_t = 150)]
    pub jitter_ms: u64,
    /// Inject no faults at all (kills still happen unless --kill-every 0).
    #[arg(long)]
    pub no_faults: bool,
    /// Run the sandbox's `POST /reserve` in honour-Idempotency-Key mode and tell the service
    /// (`INVENTORY_HONORS_IDEMPOTENCY_KEY=true`), so a lost reserve is retried.
    #[arg(long)]
    pub honor_reserve_keys: bool,
    /// Fraction of orders shipped to country `FAIL` (shipping fails, compensated).
    #[arg(long, default_value_t = 0.05)]
    pub fail_share: f64,
    /// Fraction of orders asking for more stock than exists (409).
    #[arg(long, default_value_t = 0.03)]
    pub large_share: f64,
    /// Fraction of orders whose key is sent a second time while the first is running.
    #[arg(long, default_value_t = 0.10)]
    pub duplicate_share: f64,
    /// `SAGA_LEASE_SECS` of the service processes.
    #[arg(long, default_value_t = 3)]
    pub lease_secs: u64,
    /// Extra environment for the service processes, `NAME=VALUE` (repeatable; wins over
    /// the tool's own settings).
    #[arg(long = "service-env", value_parser = parse_env)]
    pub service_env: Vec<(String, String)>,
    /// Keep the run directory (logs, SQLite file, report) and the PostgreSQL schema.
    #[arg(long)]
    pub keep: bool,
}

/// Which database the service processes share.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Postgres,
    Sqlite,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Postgres => "postgres",
            Mode::Sqlite => "sqlite",
        }
    }
}

impl Args {
    /// The number of service processes, checked against the mode.
    pub fn replica_count(&self) -> anyhow::Result<usize> {
        let count = self.replicas.unwrap_or(match self.mode {
            Mode::Postgres => 3,
            Mode::Sqlite => 1,
        });
        anyhow::ensure!(count >= 1, "--replicas must be at least 1");
        anyhow::ensure!(
            self.mode == Mode::Postgres || count == 1,
            "--mode sqlite runs exactly one process (SQLite is single-process)"
        );
        anyhow::ensure!(self.concurrency >= 1, "--concurrency must be at least 1");
        for (name, rate) in [
            ("--error-rate", self.error_rate),
            ("--hang-rate", self.hang_rate),
            ("--drop-rate", self.drop_rate),
            ("--decline-rate", self.decline_rate),
            ("--fail-share", self.fail_share),
            ("--large-share", self.large_share),
            ("--duplicate-share", self.duplicate_share),
        ] {
            anyhow::ensure!(
                (0.0..=1.0).contains(&rate),
                "{name} must be between 0 and 1"
            );
        }
        Ok(count)
    }
}

/// Parses `500ms`, `90s`, `5m`, `2h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (try 90s, 5m, 500ms)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|err| format!("{text:?}: {err}"))
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn sqlite_mode_refuses_several_replicas() {
        let args = Args::parse_from(["chaos", "--mode", "sqlite", "--replicas", "2"]);
        assert!(args.replica_count().is_err());
        let args = Args::parse_from(["chaos", "--mode", "sqlite"]);
        assert_eq!(args.replica_count().unwrap(), 1);
    }
}
