//! Settings from environment variables (the old service's names), `.env` and CLI flags,
//! each checked at start with a message that names the variable and what is wrong.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use clap::{ArgAction, Args};

use crate::downstream::{BreakerSettings, DownstreamSettings, RetryPolicy};
use crate::store::SqliteSynchronous;

/// Everything `serve` can be told; `dev` takes the same.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0", value_parser = parse_host)]
    pub host: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8004, value_parser = parse_port)]
    pub port: u16,
    /// `sqlite:<path>` (default `sqlite://./data/orders.db`) or `postgres://...`.
    #[arg(long, env = "DATABASE_URL", value_parser = parse_database_url, hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,
    /// Base URL of the inventory service.
    #[arg(long, env = "INVENTORY_URL", default_value = "http://localhost:8006", value_parser = url_parser("INVENTORY_URL"))]
    pub inventory_url: String,
    /// Base URL of the payment service.
    #[arg(long, env = "PAYMENT_URL", default_value = "http://localhost:8005", value_parser = url_parser("PAYMENT_URL"))]
    pub payment_url: String,
    /// Base URL of the shipping service.
    #[arg(long, env = "SHIPPING_URL", default_value = "http://localhost:8007", value_parser = url_parser("SHIPPING_URL"))]
    pub shipping_url: String,
    /// `true` turns retries of downstream calls off, as in the old service.
    #[arg(long, env = "DEBUG_MODE", default_value = "false", value_parser = bool_parser("DEBUG_MODE"), action = ArgAction::Set)]
    pub debug_mode: bool,
    /// Timeout of one downstream HTTP call, in milliseconds.
    #[arg(long, env = "DOWNSTREAM_TIMEOUT_MS", default_value_t = 5000, value_parser = ms_parser("DOWNSTREAM_TIMEOUT_MS", 1, 600_000))]
    pub downstream_timeout_ms: u64,
    /// Tries per downstream call, the first included.
    #[arg(long, env = "RETRY_ATTEMPTS", default_value_t = 3, value_parser = ms_parser("RETRY_ATTEMPTS", 1, 20))]
    pub retry_attempts: u64,
    /// First backoff ceiling between tries, in milliseconds (doubles each retry).
    #[arg(long, env = "RETRY_BASE_DELAY_MS", default_value_t = 100, value_parser = ms_parser("RETRY_BASE_DELAY_MS", 0, 60_000))]
    pub retry_base_delay_ms: u64,
    /// Longest backoff between tries, in milliseconds; also caps `Retry-After`.
    #[arg(long, env = "RETRY_MAX_DELAY_MS", default_value_t = 2000, value_parser = ms_parser("RETRY_MAX_DELAY_MS", 0, 600_000))]
    pub retry_max_delay_ms: u64,
    /// How long an idempotency key protects its request, in seconds.
    #[arg(long, env = "IDEMPOTENCY_KEY_TTL_SECS", default_value_t = 86_400, value_parser = ms_parser("IDEMPOTENCY_KEY_TTL_SECS", 1, 31_536_000))]
    pub idempotency_key_ttl_secs: u64,
    /// Whether the inventory service replays `POST /reserve` by `Idempotency-Key` (the
    /// sandbox can; the real service does not). Makes retrying a lost reserve safe.
    #[arg(long, env = "INVENTORY_HONORS_IDEMPOTENCY_KEY", default_value = "false", value_parser = bool_parser("INVENTORY_HONORS_IDEMPOTENCY_KEY"), action = ArgAction::Set)]
    pub inventory_honors_idempotency_key: bool,
    /// Largest number of database connections (SQLite: readers; there is one writer).
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16, value_parser = ms_parser("DATABASE_MAX_CONNECTIONS", 1, 1000))]
    pub database_max_connections: u64,
    /// SQLite only: `normal` (a committed order survives a killed process) or `full` (it
    /// also survives a power loss, at an fsync per commit).
    #[arg(long, env = "SQLITE_SYNCHRONOUS", default_value = "normal", value_parser = sqlite_synchronous_parser)]
    pub sqlite_synchronous: SqliteSynchronous,
    /// How long a process owns a saga it drives without saving progress, in seconds.
    #[arg(long, env = "SAGA_LEASE_SECS", default_value_t = 30, value_parser = ms_parser("SAGA_LEASE_SECS", 1, 3600))]
    pub saga_lease_secs: u64,
    /// Run the recovery worker in this process (drives sagas that a dead process left).
    #[arg(long, env = "RECOVERY_ENABLED", default_value = "true", value_parser = bool_parser("RECOVERY_ENABLED"), action = ArgAction::Set)]
    pub recovery_enabled: bool,
    /// Seconds between two passes of the recovery worker.
    #[arg(long, env = "RECOVERY_INTERVAL_SECS", default_value_t = 5, value_parser = ms_parser("RECOVERY_INTERVAL_SECS", 1, 3600))]
    pub recovery_interval_secs: u64,
    /// Seconds after creation past which an unfinished order is compensated rather than
    /// driven forward.
    #[arg(long, env = "ORDER_DEADLINE_SECS", default_value_t = 120, value_parser = ms_parser("ORDER_DEADLINE_SECS", 1, 86_400))]
    pub order_deadline_secs: u64,
    /// Seconds `POST /orders` waits for the saga before answering `202 Accepted`.
    #[arg(long, env = "ORDER_WAIT_SECS", default_value_t = 10, value_parser = ms_parser("ORDER_WAIT_SECS", 0, 600))]
    pub order_wait_secs: u64,
    /// Tries of a compensation (over all runs) before the order goes to `needs_attention`.
    #[arg(long, env = "COMPENSATION_MAX_ATTEMPTS", default_value_t = 10, value_parser = ms_parser("COMPENSATION_MAX_ATTEMPTS", 1, 1000))]
    pub compensation_max_attempts: u64,
    /// Consecutive failed calls to a service that open its circuit breaker.
    #[arg(long, env = "BREAKER_FAILURE_THRESHOLD", default_value_t = 5, value_parser = ms_parser("BREAKER_FAILURE_THRESHOLD", 1, 10_000))]
    pub breaker_failure_threshold: u64,
    /// Seconds an open breaker waits before letting one probe call through.
    #[arg(long, env = "BREAKER_COOLDOWN_SECS", default_value_t = 10, value_parser = ms_parser("BREAKER_COOLDOWN_SECS", 1, 3600))]
    pub breaker_cooldown_secs: u64,
    /// On SIGTERM, how long in-flight requests and their sagas may run on, in seconds
    /// (keep it below Kubernetes' terminationGracePeriodSeconds).
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 20, value_parser = ms_parser("SHUTDOWN_GRACE_SECS", 0, 3600))]
    pub shutdown_grace_secs: u64,
    /// `json` (one object per line) or `pretty`; default: pretty on a terminal, else json.
    #[arg(long, env = "LOG_FORMAT", value_parser = ["json", "pretty"])]
    pub log_format: Option<String>,
    /// The old service's order store. Accepted so old deployments start; unused.
    #[arg(long, env = "DATABASE_SERVICE_URL", hide = true)]
    pub database_service_url: Option<String>,
}

/// A database URL; its password never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn sqlite_file(path: &Path) -> Self {
        Self(format!("sqlite://{}", path.display()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres")
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let credentials = &self.0[scheme + 3..at];
                match credentials.split_once(':') {
                    Some((user, _)) => {
                        format!("{}{user}:***{}", &self.0[..scheme + 3], &self.0[at..])
                    }
                    None => self.0.clone(),
                }
            }
            _ => self.0.clone(),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn parse_host(value: &str) -> Result<IpAddr, String> {
    value.parse().map_err(|_| {
        format!("HOST must be an IP address such as 0.0.0.0 or 127.0.0.1, got '{value}'")
    })
}

fn parse_port(value: &str) -> Result<u16, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("PORT must be a TCP port number from 0 to 65535, got '{value}'"))
}

fn parse_database_url(value: &str) -> Result<DatabaseUrl, String> {
    let value = value.trim();
    if value.starts_with("sqlite:")
        || value.starts_with("postgres://")
        || value.starts_with("postgresql://")
    {
        Ok(DatabaseUrl(value.to_owned()))
    } else {
        let scheme = value.split(':').next().unwrap_or_default();
        Err(format!(
            "DATABASE_URL must start with sqlite: or postgres://, got a URL of scheme '{scheme}'"
        ))
    }
}

/// Parses `DATABASE_URL` for commands other than `serve`.
pub fn parse_database_url_arg(value: &str) -> Result<DatabaseUrl, String> {
    parse_database_url(value)
}

fn url_parser(var: &'static str) -> impl Fn(&str) -> Result<String, String> + Clone {
    move |value: &str| {
        let parsed = reqwest::Url::parse(value.trim())
            .map_err(|e| format!("{var} must be an http:// URL, got '{value}' ({e})"))?;
        if parsed.scheme() == "https" {
            // Refused here rather than failing every call: the downstream client speaks
            // plain HTTP only (in-cluster services; no TLS stack is built in).
            return Err(format!(
                "{var} must be an http:// URL: calls to the platform's services have no TLS, got '{value}'"
            ));
        }
        if parsed.scheme() != "http" || parsed.host().is_none() {
            return Err(format!(
                "{var} must be an http:// URL with a host, got '{value}'"
            ));
        }
        Ok(value.trim().trim_end_matches('/').to_owned())
    }
}

fn bool_parser(var: &'static str) -> impl Fn(&str) -> Result<bool, String> + Clone {
    move |value: &str| match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("{var} must be true or false, got '{value}'")),
    }
}

fn sqlite_synchronous_parser(value: &str) -> Result<SqliteSynchronous, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "normal" => Ok(SqliteSynchronous::Normal),
        "full" => Ok(SqliteSynchronous::Full),
        _ => Err(format!(
            "SQLITE_SYNCHRONOUS must be normal or full, got '{value}'"
        )),
    }
}

fn ms_parser(
    var: &'static str,
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<u64, String> + Clone {
    move |value: &str| {
        value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| {
                format!("{var} must be a whole number from {min} to {max}, got '{value}'")
            })
    }
}

/// The validated configuration the service runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub database_max_connections: u32,
    pub sqlite_synchronous: SqliteSynchronous,
    pub downstream: DownstreamSettings,
    pub retry: RetryPolicy,
    pub idempotency_ttl: Duration,
    pub inventory_honors_idempotency_key: bool,
    pub saga_lease: Duration,
    pub shutdown_grace: Duration,
    pub recovery: Option<Duration>,
    pub order_deadline: Duration,
    pub order_wait: Duration,
    pub compensation_max_attempts: u32,
    pub legacy_database_service_url: Option<String>,
}

/// Where orders go when no `DATABASE_URL` is given.
pub const DEFAULT_SQLITE_FILE: &str = "./data/orders.db";

impl Config {
    /// Builds the configuration from parsed arguments; `default_db` is used when no
    /// `DATABASE_URL` was given.
    pub fn from_args(args: &ServeArgs, default_db: DatabaseUrl) -> Self {
        let retry = if args.debug_mode {
            RetryPolicy::none()
        } else {
            RetryPolicy {
                attempts: args.retry_attempts as u32,
                base_delay: Duration::from_millis(args.retry_base_delay_ms),
                max_delay: Duration::from_millis(args.retry_max_delay_ms),
            }
        };
        Self {
            database_url: args.database_url.clone().unwrap_or(default_db),
            database_max_connections: args.database_max_connections as u32,
            sqlite_synchronous: args.sqlite_synchronous,
            downstream: DownstreamSettings {
                inventory_url: args.inventory_url.clone(),
                payment_url: args.payment_url.clone(),
                shipping_url: args.shipping_url.clone(),
                timeout: Duration::from_millis(args.downstream_timeout_ms),
                breaker: BreakerSettings {
                    failure_threshold: args.breaker_failure_threshold as u32,
                    cooldown: Duration::from_secs(args.breaker_cooldown_secs),
                },
            },
            retry,
            idempotency_ttl: Duration::from_secs(args.idempotency_key_ttl_secs),
            inventory_honors_idempotency_key: args.inventory_honors_idempotency_key,
            saga_lease: Duration::from_secs(args.saga_lease_secs),
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            recovery: args
                .recovery_enabled
                .then(|| Duration::from_secs(args.recovery_interval_secs)),
            order_deadline: Duration::from_secs(args.order_deadline_secs),
            order_wait: Duration::from_secs(args.order_wait_secs),
            compensation_max_attempts: args.compensation_max_attempts as u32,
            legacy_database_service_url: args.database_service_url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        let url = parse_database_url("postgres://app:s3cret@db:5432/orders").unwrap();
        assert_eq!(url.redacted(), "postgres://app:***@db:5432/orders");
        assert!(!format!("{url:?}").contains("s3cret"));
        let url = parse_database_url("postgres://postgres@127.0.0.1/test").unwrap();
        assert_eq!(url.redacted(), "postgres://postgres@127.0.0.1/test");
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert!(parse_port("70000").unwrap_err().starts_with("PORT"));
        assert!(
            parse_database_url("mysql://x")
                .unwrap_err()
                .starts_with("DATABASE_URL")
        );
        assert!(
            url_parser("PAYMENT_URL")("ftp://x")
                .unwrap_err()
                .starts_with("PAYMENT_URL")
        );
        assert!(
            url_parser("PAYMENT_URL")("nonsense")
                .unwrap_err()
                .starts_with("PAYMENT_URL")
        );
        let https = url_parser("SHIPPING_URL")("https://shipping:8007").unwrap_err();
        assert!(
            https.starts_with("SHIPPING_URL") && https.contains("no TLS"),
            "{https}"
        );
        assert!(
            bool_parser("DEBUG_MODE")("maybe")
                .unwrap_err()
                .starts_with("DEBUG_MODE")
        );
        assert!(
            ms_parser("RETRY_ATTEMPTS", 1, 20)("0")
                .unwrap_err()
                .starts_with("RETRY_ATTEMPTS")
        );
    }

    #[test]
    fn sqlite_synchronous_is_normal_or_full() {
        assert_eq!(
            sqlite_synchronous_parser(" FULL ").unwrap(),
            SqliteSynchronous::Full
        );
        assert_eq!(
            sqlite_synchronous_parser("normal").unwrap(),
            SqliteSynchronous::Normal
        );
        let error = sqlite_synchronous_parser("off").unwrap_err();
        assert!(error.starts_with("SQLITE_SYNCHRONOUS"), "{error}");
    }

    #[test]
    fn urls_lose_their_trailing_slash() {
        assert_eq!(
            url_parser("INVENTORY_URL")("http://inv:8006/").unwrap(),
            "http://inv:8006"
        );
    }
}
