//! Idempotency keys: replays, conflicts, concurrency and expiry, on SQLite and PostgreSQL.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Backend, Options, TestApp, json_of, order_body};
use serde_json::json;

on_both_databases!(
    replay_of_a_success_is_byte_identical,
    replay_of_a_failure_is_byte_identical,
    old_header_is_accepted_and_equivalent,
    different_headers_are_400,
    invalid_key_is_400,
    same_key_with_another_body_is_422,
    same_key_for_another_user_is_another_order,
    repeat_while_running_is_409_with_retry_after,
    fifty_concurrent_requests_with_one_key_make_one_order,
    expired_key_starts_a_new_order,
    harmless_body_differences_are_the_same_request,
    settled_answers_are_kept_in_memory,
    repeats_answered_from_memory_still_check_key_and_body,
);

async fn post_raw(
    app: &TestApp,
    body: &serde_json::Value,
    header: &str,
    key: &str,
) -> reqwest::Response {
    app.client
        .post(format!("{}/orders", app.address))
        .header(header, key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn replay_of_a_success_is_byte_identical(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = app.post_order(&order_body(1), Some("k-1")).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.bytes().await.unwrap();
    let again = app.post_order(&order_body(1), Some("k-1")).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first_body);
    assert_eq!(app.payments().await.payments.len(), 1);
    assert_eq!(app.inventory().await.reservations.len(), 1);
    app.stop().await;
}

async fn replay_of_a_failure_is_byte_identical(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut body = order_body(1);
    body["address"]["country"] = json!("FAIL");
    let first = app.post_order(&body, Some("k-fail")).await;
    assert_eq!(first.status(), 502);
    let first_body = first.bytes().await.unwrap();
    let again = app.post_order(&body, Some("k-fail")).await;
    assert_eq!(
        again.status(),
        502,
        "a failure replays as a failure, not 201"
    );
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first_body);
    assert_eq!(app.shipments().await.shipments.len(), 1);
    app.stop().await;
}

async fn old_header_is_accepted_and_equivalent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = post_raw(&app, &order_body(1), "X-Idempotency-Key", "old-1").await;
    assert_eq!(first.status(), 201);
    let again = post_raw(&app, &order_body(1), "Idempotency-Key", "old-1").await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(app.payments().await.payments.len(), 1);
    app.stop().await;
}

async fn different_headers_are_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .post(format!("{}/orders", app.address))
        .header("Idempotency-Key", "a")
        .header("X-Idempotency-Key", "b")
        .json(&order_body(1))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("differ"));
    assert!(app.inventory().await.reservations.is_empty());
    app.stop().await;
}

async fn invalid_key_is_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) =
        json_of(app.post_order(&order_body(1), Some(&"k".repeat(256))).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["detail"],
        "Idempotency-Key must be at most 255 characters"
    );
    let (status, _) = json_of(app.post_order(&order_body(1), Some(&"k".repeat(255))).await).await;
    assert_eq!(status, 201);
    app.stop().await;
}

async fn same_key_with_another_body_is_422(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        app.post_order(&order_body(1), Some("k-2")).await.status(),
        201
    );
    let (status, body) = json_of(app.post_order(&order_body(2), Some("k-2")).await).await;
    assert_eq!(status, 422);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("different request body")
    );
    assert_eq!(app.payments().await.payments.len(), 1);
    app.stop().await;
}

async fn same_key_for_another_user_is_another_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut other = order_body(1);
    other["userId"] = json!("user-2");
    assert_eq!(
        app.post_order(&order_body(1), Some("shared"))
            .await
            .status(),
        201
    );
    let second = app.post_order(&other, Some("shared")).await;
    assert_eq!(second.status(), 201);
    assert!(second.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.payments().await.payments.len(), 2);
    app.stop().await;
}

async fn repeat_while_running_is_409_with_retry_after(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fault(
        "payment",
        json!({"endpoint": "POST /payments", "latencyMs": 800}),
    )
    .await;
    let first = {
        let client = app.client.clone();
        let url = format!("{}/orders", app.address);
        tokio::spawn(async move {
            client
                .post(url)
                .header("Idempotency-Key", "slow")
                .json(&order_body(1))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    app.wait_for_call("payment", "POST /payments").await;
    let second = app.post_order(&order_body(1), Some("slow")).await;
    assert_eq!(second.status(), 409);
    assert_eq!(second.headers()["retry-after"], "1");
    assert_eq!(first.await.unwrap(), 201);
    let third = app.post_order(&order_body(1), Some("slow")).await;
    assert_eq!(third.status(), 201);
    assert_eq!(third.headers()["idempotent-replayed"], "true");
    app.stop().await;
}

async fn fifty_concurrent_requests_with_one_key_make_one_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let client = app.client.clone();
            let url = format!("{}/orders", app.address);
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header("Idempotency-Key", "race")
                    .json(&order_body(1))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap();
                (status, body)
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert!(status == 201 || status == 409, "status {status}: {body}");
        if status == 201 {
            ids.insert(body["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ids.len(), 1, "every 201 names the same order");
    assert_eq!(app.payments().await.payments.len(), 1, "one payment");
    assert_eq!(
        app.inventory().await.reservations.len(),
        1,
        "one reservation"
    );
    assert_eq!(app.shipments().await.shipments.len(), 1, "one shipment");
    app.stop().await;
}

async fn expired_key_starts_a_new_order(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            idempotency_ttl: Duration::from_secs(1),
            ..Options::default()
        },
    )
    .await;
    let (_, first) = json_of(app.post_order(&order_body(1), Some("short")).await).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = app.post_order(&order_body(1), Some("short")).await;
    assert_eq!(second.status(), 201);
    assert!(second.headers().get("idempotent-replayed").is_none());
    let (_, second) = json_of(second).await;
    assert_ne!(first["id"], second["id"]);
    assert_eq!(app.payments().await.payments.len(), 2);
    app.stop().await;
}

async fn harmless_body_differences_are_the_same_request(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        app.post_order(&order_body(1), Some("k-3")).await.status(),
        201
    );
    let mut same = order_body(1);
    same["items"][0]["price"] = json!(10.50);
    same["extra"] = json!("ignored");
    let again = app.post_order(&same, Some("k-3")).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    app.stop().await;
}

async fn settled_answers_are_kept_in_memory(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = app.post_order(&order_body(1), Some("mem-1")).await;
    assert_eq!(first.status(), 201);
    let first = first.bytes().await.unwrap();
    let id = serde_json::from_slice::<serde_json::Value>(&first).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Read once from the database, after which the settled order is remembered.
    assert_eq!(app.get_order(&id).await.status(), 200);
    app.state.saga.store().close().await;
    let replay = app.post_order(&order_body(1), Some("mem-1")).await;
    assert_eq!(replay.status(), 201, "replayed without the database");
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.bytes().await.unwrap(), first);
    let other_body = app.post_order(&order_body(2), Some("mem-1")).await;
    assert_eq!(
        other_body.status(),
        422,
        "the fingerprint is checked from memory too"
    );
    let (status, order) = json_of(app.get_order(&id).await).await;
    assert_eq!((status, order["status"].as_str()), (200, Some("completed")));
    app.stop().await;
}

/// Repeats with the same bytes are answered from memory without parsing the body again;
/// a body that differs, or another key, must still be told apart there.
async fn repeats_answered_from_memory_still_check_key_and_body(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = app.post_order(&order_body(1), Some("fast-1")).await;
    assert_eq!(first.status(), 201);
    let first = first.bytes().await.unwrap();
    let mut harmless = order_body(1);
    harmless["extra"] = json!("ignored");
    // Twice each: the first time finds the answer by fingerprint and remembers the
    // bytes, the second finds it by them.
    for body in [&order_body(1), &order_body(1), &harmless, &harmless] {
        let again = app.post_order(body, Some("fast-1")).await;
        assert_eq!(again.status(), 201);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.bytes().await.unwrap(), first);
    }
    for _ in 0..2 {
        let (status, body) = json_of(app.post_order(&order_body(2), Some("fast-1")).await).await;
        assert_eq!(status, 422, "{body}");
    }
    let other_key = app.post_order(&order_body(1), Some("fast-2")).await;
    assert_eq!(other_key.status(), 201);
    assert!(other_key.headers().get("idempotent-replayed").is_none());
    assert_ne!(other_key.bytes().await.unwrap(), first);
    assert_eq!(app.payments().await.payments.len(), 2);
    app.stop().await;
}
