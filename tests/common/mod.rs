//! Test harness: the real server on port 0, against an in-process platform sandbox, with a
//! fresh database per test (a new SQLite file, or a new PostgreSQL schema).
#![allow(dead_code)]

use std::time::Duration;

use order_service::config::{Config, DatabaseUrl};
use order_service::downstream::{DownstreamSettings, RetryPolicy};
use order_service::startup::Application;
use platform_sandbox::ledger::{InventoryLedger, PaymentLedger, ShippingLedger};
use platform_sandbox::{RunningSandbox, SandboxConfig, SandboxListeners};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const POSTGRES_ENV: &str = "ORDER_SERVICE_TEST_POSTGRES_URL";
pub const REQUIRE_POSTGRES_ENV: &str = "ORDER_SERVICE_REQUIRE_POSTGRES";

/// Which database a test runs against.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// The PostgreSQL backend, or `None` (with a printed notice) when no server is
    /// configured. With `ORDER_SERVICE_REQUIRE_POSTGRES=1` (as in CI) a skip is a failure.
    pub fn postgres_or_skip(test: &str) -> Option<Self> {
        match std::env::var(POSTGRES_ENV) {
            Ok(url) if !url.is_empty() => Some(Self::Postgres(url)),
            _ => {
                if std::env::var(REQUIRE_POSTGRES_ENV).is_ok_and(|v| v == "1") {
                    panic!("{test}: {POSTGRES_ENV} is not set but {REQUIRE_POSTGRES_ENV}=1");
                }
                eprintln!("SKIPPED {test} on PostgreSQL: {POSTGRES_ENV} is not set");
                None
            }
        }
    }

    /// The label of this database's series in the service's metrics.
    pub fn metrics_label(&self) -> &'static str {
        match self {
            Self::Sqlite => "database=\"sqlite\"",
            Self::Postgres(_) => "database=\"postgres\"",
        }
    }
}

/// The sum of the samples of `series` (a metric's name with its suffix, e.g.
/// `db_write_batch_size_count`) that carry every label in `labels`, in a Prometheus text.
pub fn metric_total(text: &str, series: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{series}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Declares each listed `async fn name(backend: Backend)` as a test on SQLite and on
/// PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(backend) =
                        $crate::common::Backend::postgres_or_skip(stringify!($name))
                    {
                        super::$name(backend).await
                    }
                }
            )*
        }
    };
}

/// Knobs a test may turn before the service starts.
pub struct Options {
    pub sandbox: SandboxConfig,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub idempotency_ttl: Duration,
    pub inventory_honors_idempotency_key: bool,
    /// `None`: no recovery worker (tests drive recovery with `run_once`).
    pub recovery: Option<Duration>,
    pub order_deadline: Duration,
    pub order_wait: Duration,
    pub compensation_max_attempts: u32,
    pub breaker: order_service::downstream::BreakerSettings,
    pub saga_lease: Duration,
    /// Open on this database URL instead of a fresh one (a second replica).
    pub database_url: Option<String>,
    /// Replace a downstream URL (e.g. with a closed port).
    pub inventory_url: Option<String>,
    pub payment_url: Option<String>,
    pub shipping_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sandbox: SandboxConfig::default(),
            retry: RetryPolicy {
                attempts: 3,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
            },
            timeout: Duration::from_millis(1500),
            idempotency_ttl: Duration::from_secs(3600),
            inventory_honors_idempotency_key: false,
            recovery: None,
            order_deadline: Duration::from_secs(120),
            order_wait: Duration::from_secs(10),
            compensation_max_attempts: 10,
            breaker: order_service::downstream::BreakerSettings {
                failure_threshold: 1000,
                cooldown: Duration::from_secs(10),
            },
            saga_lease: Duration::from_secs(30),
            database_url: None,
            inventory_url: None,
            payment_url: None,
            shipping_url: None,
        }
    }
}

/// A running service with its sandbox and database.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub sandbox: Option<RunningSandbox>,
    pub database_url: String,
    pub state: order_service::http::AppState,
    inventory_url: String,
    payment_url: String,
    shipping_url: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, Options::default()).await
    }

    /// A service told that its inventory replays a reserve by `Idempotency-Key`
    /// (`INVENTORY_HONORS_IDEMPOTENCY_KEY=true`), with a sandbox inventory that does.
    pub async fn spawn_where_reserves_replay(backend: Backend) -> Self {
        let app = Self::spawn_with(
            backend,
            Options {
                inventory_honors_idempotency_key: true,
                ..Options::default()
            },
        )
        .await;
        app.fault(
            "inventory",
            json!({"endpoint": "POST /reserve", "honorIdempotencyKey": true}),
        )
        .await;
        app
    }

    pub async fn spawn_with(backend: Backend, options: Options) -> Self {
        init_telemetry();
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = match (&options.database_url, &backend) {
            (Some(url), _) => url.clone(),
            (None, Backend::Sqlite) => {
                format!("sqlite://{}", dir.path().join("orders.db").display())
            }
            (None, Backend::Postgres(base)) => fresh_schema(base).await,
        };
        let sandbox = platform_sandbox::spawn(
            options.sandbox,
            SandboxListeners::bind("127.0.0.1", 0)
                .await
                .expect("sandbox ports"),
        );
        let inventory_url = options
            .inventory_url
            .unwrap_or_else(|| sandbox.inventory_url.clone());
        let payment_url = options
            .payment_url
            .unwrap_or_else(|| sandbox.payment_url.clone());
        let shipping_url = options
            .shipping_url
            .unwrap_or_else(|| sandbox.shipping_url.clone());
        let config = Config {
            database_url: parse_db(&database_url),
            database_max_connections: 8,
            sqlite_synchronous: Default::default(),
            downstream: DownstreamSettings {
                inventory_url: inventory_url.clone(),
                payment_url: payment_url.clone(),
                shipping_url: shipping_url.clone(),
                timeout: options.timeout,
                breaker: options.breaker,
            },
            retry: options.retry,
            idempotency_ttl: options.idempotency_ttl,
            inventory_honors_idempotency_key: options.inventory_honors_idempotency_key,
            saga_lease: options.saga_lease,
            shutdown_grace: Duration::from_secs(5),
            recovery: options.recovery,
            order_deadline: options.order_deadline,
            order_wait: options.order_wait,
            compensation_max_attempts: options.compensation_max_attempts,
            legacy_database_service_url: None,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("port");
        let app = Application::build(config, listener)
            .await
            .expect("service builds");
        let address = format!("http://{}", app.local_addr().expect("address"));
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            address,
            client: reqwest::Client::new(),
            sandbox: Some(sandbox),
            database_url,
            state,
            inventory_url,
            payment_url,
            shipping_url,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    /// The inventory, payment and shipping URLs this service talks to.
    pub fn sandbox_urls(&self) -> (String, String, String) {
        (
            self.inventory_url.clone(),
            self.payment_url.clone(),
            self.shipping_url.clone(),
        )
    }

    pub fn sandbox(&self) -> &RunningSandbox {
        self.sandbox.as_ref().expect("sandbox running")
    }

    /// `POST /orders` with an optional `Idempotency-Key`.
    pub async fn post_order(&self, body: &Value, key: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/orders", self.address))
            .json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("POST /orders")
    }

    pub async fn get_order(&self, id: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/orders/{id}", self.address))
            .send()
            .await
            .expect("GET /orders/{id}")
    }

    /// Sets a fault on one sandbox service (`inventory`, `payment` or `shipping`).
    pub async fn fault(&self, service: &str, body: Value) {
        let response = self
            .client
            .post(format!("{}/_sandbox/faults", self.service_url(service)))
            .json(&body)
            .send()
            .await
            .expect("set fault");
        assert!(
            response.status().is_success(),
            "fault {body} refused: {}",
            response.text().await.unwrap_or_default()
        );
    }

    pub fn service_url(&self, service: &str) -> &str {
        let sandbox = self.sandbox();
        match service {
            "inventory" => &sandbox.inventory_url,
            "payment" => &sandbox.payment_url,
            "shipping" => &sandbox.shipping_url,
            other => panic!("no service {other}"),
        }
    }

    pub async fn inventory(&self) -> InventoryLedger {
        self.ledger("inventory").await
    }

    pub async fn payments(&self) -> PaymentLedger {
        self.ledger("payment").await
    }

    pub async fn shipments(&self) -> ShippingLedger {
        self.ledger("shipping").await
    }

    /// Waits until the sandbox's `service` has received `endpoint` (`"POST /payments"`)
    /// at least once. The sandbox counts a call on arrival, before any injected latency,
    /// so a test whose saga is held up there knows the order is saved and inside that
    /// step. A fixed sleep instead could end, on a loaded machine, before the request had
    /// even reached the service.
    pub async fn wait_for_call(&self, service: &str, endpoint: &str) {
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let calls = match service {
                "inventory" => self.inventory().await.calls,
                "payment" => self.payments().await.calls,
                "shipping" => self.shipments().await.calls,
                other => panic!("no service {other}"),
            };
            if calls.get(endpoint).copied().unwrap_or(0) > 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < give_up,
                "no {endpoint} call reached {service} within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The recent requests a sandbox service received, with their correlation headers.
    pub async fn requests(&self, service: &str) -> platform_sandbox::requests::RecentRequests {
        self.client
            .get(format!("{}/_sandbox/requests", self.service_url(service)))
            .send()
            .await
            .expect("requests")
            .json()
            .await
            .expect("requests JSON")
    }

    async fn ledger<T: serde::de::DeserializeOwned>(&self, service: &str) -> T {
        self.client
            .get(format!("{}/_sandbox/ledger", self.service_url(service)))
            .send()
            .await
            .expect("ledger")
            .json()
            .await
            .expect("ledger JSON")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        json_of(
            self.client
                .get(format!("{}{path}", self.address))
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    /// The Prometheus text of `GET /metrics` (checked to be a `200` in text format).
    pub async fn metrics_text(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        response.text().await.expect("metrics text")
    }

    /// Stops the server and the sandbox and waits for both.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
        if let Some(sandbox) = self.sandbox.take() {
            sandbox.shutdown().await;
        }
    }
}

/// Installs the tracing subscriber (with trace-context propagation) once per test process;
/// logs go to the captured output at `warn`.
fn init_telemetry() {
    static GUARD: std::sync::OnceLock<order_service::telemetry::TelemetryGuard> =
        std::sync::OnceLock::new();
    GUARD.get_or_init(|| order_service::telemetry::init_for_tests("warn"));
}

fn parse_db(url: &str) -> DatabaseUrl {
    order_service::config::parse_database_url_arg(url).expect("test database URL")
}

/// Creates a new schema and returns a URL whose connections use it.
pub async fn fresh_schema(base: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("connect to the test PostgreSQL");
    drop_stale_schemas(&mut conn).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let schema = format!(
        "t_{now}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options[search_path]={schema}")
}

/// Drops test schemas left by runs more than an hour old (their names start with the
/// creation time), so the shared test database does not fill up.
async fn drop_stale_schemas(conn: &mut sqlx::PgConnection) {
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .saturating_sub(3600);
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname ~ '^t_[0-9]+_[0-9a-f]+$' \
         AND split_part(nspname, '_', 2)::bigint < $1",
    )
    .bind(cutoff as i64)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for schema in stale {
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&mut *conn)
            .await;
    }
}

/// A valid order body: `qty` units of `SKU-001` at 10.50.
pub fn order_body(qty: u32) -> Value {
    json!({
        "userId": "user-1",
        "address": {"line1": "1 MG Road", "city": "Pune", "country": "IN", "postalCode": "411001"},
        "currency": "INR",
        "items": [{"sku": "SKU-001", "qty": qty, "price": 10.5}],
    })
}

/// Reads a response as JSON.
pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// A validated new order of `qty` units of `SKU-001`, not stored anywhere yet.
pub fn new_order(qty: u32) -> order_service::domain::order::Order {
    let body = serde_json::to_vec(&order_body(qty)).expect("body");
    order_service::domain::order::Order::create(
        order_service::domain::validation::parse_new_order(&body).expect("valid order"),
    )
}

/// The event an order's creation writes.
pub fn created_event() -> order_service::store::NewEvent {
    order_service::store::NewEvent {
        at: order_service::domain::when::now(),
        step: "create",
        outcome: "pending",
        attempt: None,
        upstream_status: None,
        duration_ms: None,
        detail: None,
    }
}

/// `(step, outcome)` of every event of an order's timeline, oldest first.
pub async fn timeline_steps(app: &TestApp, id: &str) -> Vec<(String, String)> {
    let (status, body) = app.get_json(&format!("/orders/{id}/events")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["orderId"], id);
    body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            assert!(e["at"].is_string());
            (
                e["step"].as_str().expect("step").to_owned(),
                e["outcome"].as_str().expect("outcome").to_owned(),
            )
        })
        .collect()
}

/// Waits until the order's saga has nothing left to do. A `201` comes before the
/// reservation's commit (the saga commits and saves the settled order after answering),
/// so a test that looks at what the commit does waits for this first.
pub async fn settled(app: &TestApp, id: &str) -> order_service::domain::order::Order {
    let id: order_service::domain::ids::OrderId = id.parse().expect("an order id");
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let order = app
            .state
            .saga
            .store()
            .find_order(id)
            .await
            .expect("the store answers")
            .expect("the order exists");
        if order.is_settled() {
            return order;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "order {id} still at step {} after 15 s",
            order.progress.step.as_str()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
