//! The "honour `Idempotency-Key`" mode, off (like the real services) and on.

use futures::future::join_all;
use platform_sandbox::Service::{Inventory, Shipping};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Sandbox, into_parts, reserve_body, shipment_body, start};

async fn post_with_key(
    sandbox: &Sandbox,
    service: platform_sandbox::Service,
    path: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = sandbox
        .client
        .post(sandbox.url(service, path))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    into_parts(response).await
}

#[tokio::test]
async fn key_is_ignored_by_default_so_a_repeat_reserves_again() {
    let sandbox = start().await;
    let body = reserve_body("o", &[("SKU-001", 10)]);
    let (_, first) = post_with_key(&sandbox, Inventory, "/reserve", "k1", body.clone()).await;
    let (_, second) = post_with_key(&sandbox, Inventory, "/reserve", "k1", body).await;
    assert_ne!(first["id"], second["id"]);
    assert_eq!(sandbox.inventory_ledger().await.stock["SKU-001"], 80);
}

#[tokio::test]
async fn honoured_key_replays_the_first_reservation_without_taking_stock_again() {
    let sandbox = start().await;
    sandbox
        .set_faults(Inventory, json!({"honorIdempotencyKey": true}))
        .await;
    let body = reserve_body("o", &[("SKU-001", 10)]);
    let first = post_with_key(&sandbox, Inventory, "/reserve", "k1", body.clone()).await;
    let replay = post_with_key(&sandbox, Inventory, "/reserve", "k1", body.clone()).await;
    assert_eq!(first.0, StatusCode::OK);
    assert_eq!(replay, first);
    let other = post_with_key(&sandbox, Inventory, "/reserve", "k2", body.clone()).await;
    assert_ne!(other.1["id"], first.1["id"]);
    // Without a key the request acts as usual.
    let (status, _) = sandbox.post(Inventory, "/reserve", body).await;
    assert_eq!(status, StatusCode::OK);
    let ledger = sandbox.inventory_ledger().await;
    assert_eq!(ledger.stock["SKU-001"], 70);
    assert_eq!(ledger.reservations.len(), 3);
    assert_eq!(ledger.faults_injected.idempotent_replay, 1);
}

#[tokio::test]
async fn honoured_key_replays_a_shipment_instead_of_the_duplicate_error() {
    let sandbox = start().await;
    sandbox
        .set_faults(
            Shipping,
            json!({"endpoint": "POST /shipments", "honorIdempotencyKey": true}),
        )
        .await;
    let body = shipment_body("ship-1", "IN");
    let first = post_with_key(&sandbox, Shipping, "/shipments", "k", body.clone()).await;
    let replay = post_with_key(&sandbox, Shipping, "/shipments", "k", body.clone()).await;
    assert_eq!(first.0, StatusCode::CREATED);
    assert_eq!(replay, first);
    // A new key for the same id still hits the real service's duplicate error.
    let (status, _) = post_with_key(&sandbox, Shipping, "/shipments", "k-new", body).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_honoured_key_take_effect_once() {
    let sandbox = start().await;
    sandbox
        .set_faults(
            Inventory,
            json!({"honorIdempotencyKey": true, "latencyMs": 20}),
        )
        .await;
    let body = reserve_body("o", &[("SKU-003", 5)]);
    let answers = join_all(
        (0..10).map(|_| post_with_key(&sandbox, Inventory, "/reserve", "same", body.clone())),
    )
    .await;
    assert!(answers.iter().all(|answer| *answer == answers[0]));
    let ledger = sandbox.inventory_ledger().await;
    assert_eq!(ledger.reservations.len(), 1);
    assert_eq!(ledger.stock["SKU-003"], 495);
}

#[tokio::test]
async fn turning_the_mode_off_again_stops_replaying() {
    let sandbox = start().await;
    sandbox
        .set_faults(Inventory, json!({"honorIdempotencyKey": true}))
        .await;
    let body = reserve_body("o", &[("SKU-001", 1)]);
    let (_, first) = post_with_key(&sandbox, Inventory, "/reserve", "k", body.clone()).await;
    sandbox
        .set_faults(Inventory, json!({"honorIdempotencyKey": false}))
        .await;
    let (_, second) = post_with_key(&sandbox, Inventory, "/reserve", "k", body).await;
    assert_ne!(first["id"], second["id"]);
}
