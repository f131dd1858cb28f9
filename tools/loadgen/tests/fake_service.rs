//! The load generator against a small fake order service on a loopback port: what it
//! sends and what it counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use loadgen::{Config, Mode, Scenario};

/// Orders by idempotency key: (id, body).
type Orders = Arc<Mutex<HashMap<String, (u64, Bytes)>>>;

async fn create(
    State(orders): State<Orders>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
    let order: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        order["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
    );
    let mut orders = orders.lock().unwrap();
    let next = orders.len() as u64 + 1;
    let (id, stored) = orders.entry(key).or_insert((next, body.clone())).clone();
    assert_eq!(stored, body, "a replay sends the same body");
    let replayed = if id == next { "false" } else { "true" };
    (
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/orders/{id}")),
            (
                header::HeaderName::from_static("idempotent-replayed"),
                replayed.to_owned(),
            ),
        ],
        format!(r#"{{"id":"{id}"}}"#),
    )
}

async fn read(Path(id): Path<u64>) -> impl IntoResponse {
    (StatusCode::OK, format!(r#"{{"id":"{id}"}}"#))
}

async fn start() -> (String, Orders) {
    let orders = Orders::default();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/orders", post(create))
        .route("/orders/{id}", get(read))
        .with_state(Arc::clone(&orders));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, orders)
}

fn short(target: &str, scenario: Scenario) -> Config {
    let mut config = Config::new(target, scenario);
    config.concurrency = 4;
    config.warmup = Duration::from_millis(100);
    config.duration = Duration::from_millis(400);
    config.pool_size = 10;
    config
}

#[tokio::test]
async fn every_new_order_has_its_own_key_and_only_successes_count() {
    let (target, orders) = start().await;
    let report = loadgen::run(short(&target, Scenario::Create))
        .await
        .unwrap();
    assert!(report.ok > 0);
    assert_eq!(report.errors, 0);
    assert_eq!(report.replayed, 0);
    assert_eq!(report.statuses[&201], report.ok);
    let total = report.totals.ok as usize;
    assert_eq!(orders.lock().unwrap().len(), total, "one order per key");
    assert!(report.latency_us.p50 > 0 && report.latency_us.max >= report.latency_us.p99);
}

#[tokio::test]
async fn a_replay_share_resends_recent_keys_with_their_bodies() {
    let (target, _orders) = start().await;
    let mut config = short(&target, Scenario::Create);
    config.replay_share = 0.5;
    let report = loadgen::run(config).await.unwrap();
    assert!(report.replayed > 0 && report.replayed < report.ok);
}

#[tokio::test]
async fn replay_and_get_work_on_orders_created_first() {
    let (target, orders) = start().await;
    let replay = loadgen::run(short(&target, Scenario::Replay))
        .await
        .unwrap();
    assert!(replay.ok > 0);
    assert_eq!(replay.replayed, replay.ok);
    assert_eq!(
        orders.lock().unwrap().len(),
        10,
        "only the pool was created"
    );

    let read = loadgen::run(short(&target, Scenario::Get)).await.unwrap();
    assert!(read.ok > 0);
    assert_eq!(read.statuses[&200], read.ok);
}

#[tokio::test]
async fn open_loop_keeps_to_its_rate() {
    let (target, _orders) = start().await;
    let mut config = short(&target, Scenario::Health);
    config.mode = Mode::Open;
    config.rate = Some(200.0);
    config.duration = Duration::from_secs(1);
    let report = loadgen::run(config).await.unwrap();
    // 200 requests are due in the window; a busy machine may start a few late.
    assert!((150..=205).contains(&(report.ok + report.late)), "{report}");
}

#[tokio::test]
async fn an_unreachable_target_is_an_error_not_a_report() {
    // Bound but not listening: connections are refused, and no other test's server can
    // be handed the port while the socket lives.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let target = format!("http://{}", closed.local_addr().unwrap());
    assert!(
        loadgen::run(short(&target, Scenario::Health))
            .await
            .is_err()
    );
}
