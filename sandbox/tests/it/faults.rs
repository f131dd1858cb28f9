//! Each fault kind, injected at run time through `/_sandbox/faults` or at start.

use std::time::{Duration, Instant};

use platform_sandbox::Service::{Inventory, Payment, Shipping};
use platform_sandbox::{FaultSettings, SandboxConfig, Service};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{client, payment_body, reserve_body, shipment_body, start, start_with};

#[tokio::test]
async fn latency_delays_the_answer_by_at_least_latency_ms() {
    let sandbox = start().await;
    sandbox
        .set_faults(
            Payment,
            json!({"endpoint": "GET /payments/{id}", "latencyMs": 300}),
        )
        .await;
    let started = Instant::now();
    let (status, _) = sandbox.get(Payment, "/payments/none").await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(elapsed >= Duration::from_millis(300), "took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(2000), "took {elapsed:?}");
    assert_eq!(sandbox.payment_ledger().await.faults_injected.latency, 1);
}

#[tokio::test]
async fn jitter_adds_at_most_jitter_ms() {
    let sandbox = start().await;
    sandbox
        .set_faults(
            Shipping,
            json!({"latencyMs": 50, "jitterMs": 100, "seed": 3}),
        )
        .await;
    for _ in 0..5 {
        let started = Instant::now();
        sandbox.get(Shipping, "/shipments").await;
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(50), "took {elapsed:?}");
        assert!(elapsed < Duration::from_millis(1000), "took {elapsed:?}");
    }
}

#[tokio::test]
async fn error_rate_one_answers_the_status_without_taking_effect() {
    let sandbox = start().await;
    sandbox
        .set_faults(
            Inventory,
            json!({"endpoint": "POST /reserve", "errorRate": 1.0, "errorStatus": 502}),
        )
        .await;
    let (status, body) = sandbox
        .post(Inventory, "/reserve", reserve_body("o", &[("SKU-001", 5)]))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body["detail"].is_string());
    let ledger = sandbox.inventory_ledger().await;
    assert_eq!(ledger.stock["SKU-001"], 100);
    assert!(ledger.reservations.is_empty());
    assert_eq!(ledger.faults_injected.error, 1);
    assert_eq!(ledger.calls["POST /reserve"], 1);
}

#[tokio::test]
async fn error_429_carries_retry_after_one_second() {
    let sandbox = start().await;
    sandbox
        .set_faults(Payment, json!({"errorRate": 1, "errorStatus": 429}))
        .await;
    let response = sandbox
        .send(
            reqwest::Method::POST,
            Payment,
            "/payments",
            payment_body("p", json!(5)),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(sandbox.payment_ledger().await.payments.is_empty());
}

#[tokio::test]
async fn default_error_status_is_503() {
    let sandbox = start().await;
    sandbox.set_faults(Shipping, json!({"errorRate": 1})).await;
    let (status, _) = sandbox.get(Shipping, "/shipments").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn hang_makes_the_client_time_out_and_takes_no_effect() {
    let sandbox = start().await;
    sandbox
        .set_faults(
            Shipping,
            json!({"endpoint": "POST /shipments", "hangRate": 1}),
        )
        .await;
    let impatient = client(Duration::from_millis(300));
    let error = impatient
        .post(sandbox.url(Shipping, "/shipments"))
        .json(&shipment_body("ship-1", "IN"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    let ledger = sandbox.shipping_ledger().await;
    assert!(ledger.shipments.is_empty());
    assert_eq!(ledger.faults_injected.hang, 1);
    // Other endpoints still answer while a request hangs.
    let (status, _) = sandbox.get(Shipping, "/shipments").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn dropped_response_is_a_connection_error_but_the_effect_happened() {
    let sandbox = start().await;
    sandbox
        .set_faults(
            Payment,
            json!({"endpoint": "POST /payments", "dropResponseRate": 1}),
        )
        .await;
    let started = Instant::now();
    let error = sandbox
        .send(
            reqwest::Method::POST,
            Payment,
            "/payments",
            payment_body("pay-1", json!(42)),
        )
        .await
        .unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
    assert!(error.status().is_none(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let ledger = sandbox.payment_ledger().await;
    assert_eq!(ledger.payments.len(), 1);
    assert_eq!(ledger.payments[0].status, "completed");
    assert_eq!(ledger.faults_injected.drop_response, 1);
    // The lost answer can be recovered the way the contract says: by looking it up.
    let (status, body) = sandbox.get(Payment, "/payments/pay-1").await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &json!("completed"))
    );
}

#[tokio::test]
async fn decline_rate_stores_new_payments_as_failed_with_201() {
    let sandbox = start().await;
    sandbox.set_faults(Payment, json!({"declineRate": 1})).await;
    let (status, body) = sandbox
        .post(Payment, "/payments", payment_body("pay-1", json!(99.99)))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["status"], "failed");
    let ledger = sandbox.payment_ledger().await;
    assert_eq!(ledger.faults_injected.decline, 1);
    assert_eq!(ledger.payments[0].status, "failed");
}

#[tokio::test]
async fn endpoint_setting_overrides_the_service_wide_one() {
    let sandbox = start().await;
    sandbox.set_faults(Payment, json!({"errorRate": 1})).await;
    sandbox
        .set_faults(
            Payment,
            json!({"endpoint": "GET /payments/{id}", "errorRate": 0}),
        )
        .await;
    let (status, _) = sandbox.get(Payment, "/payments/x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = sandbox
        .post(Payment, "/payments", payment_body("p", json!(1)))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn endpoint_setting_leaves_other_endpoints_alone() {
    let sandbox = start().await;
    sandbox
        .set_faults(
            Inventory,
            json!({"endpoint": "POST /reservations/{id}/release", "errorRate": 1}),
        )
        .await;
    let (status, _) = sandbox
        .post(Inventory, "/reserve", reserve_body("o", &[("SKU-001", 1)]))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = sandbox
        .post(Inventory, "/reservations/x/release", Value::Null)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn delete_clears_every_fault_of_the_service() {
    let sandbox = start().await;
    sandbox.set_faults(Shipping, json!({"errorRate": 1})).await;
    sandbox
        .set_faults(
            Shipping,
            json!({"endpoint": "GET /shipments", "hangRate": 1}),
        )
        .await;
    let response = sandbox
        .client
        .delete(sandbox.url(Shipping, "/_sandbox/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["endpoints"], json!({}));
    assert_eq!(view["serviceWide"], json!({}));
    let (status, _) = sandbox.get(Shipping, "/shipments").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn health_and_sandbox_routes_are_never_faulted() {
    let sandbox = start().await;
    sandbox
        .set_faults(Inventory, json!({"errorRate": 1, "hangRate": 1}))
        .await;
    let (status, _) = sandbox.get(Inventory, "/health").await;
    assert_eq!(status, StatusCode::OK);
    let ledger = sandbox.inventory_ledger().await;
    assert_eq!(
        ledger.faults_injected.hang + ledger.faults_injected.error,
        0
    );
    let (status, _) = sandbox.get(Inventory, "/_sandbox/faults").await;
    assert_eq!(status, StatusCode::OK);
}

/// Statuses of `n` sequential `GET /shipments` calls.
async fn status_sequence(sandbox: &crate::common::Sandbox, n: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(sandbox.get(Shipping, "/shipments").await.0.as_u16());
    }
    statuses
}

#[tokio::test]
async fn same_seed_gives_the_same_fault_sequence() {
    let sandbox = start().await;
    sandbox
        .set_faults(Shipping, json!({"errorRate": 0.5, "seed": 42}))
        .await;
    let first = status_sequence(&sandbox, 40).await;
    sandbox.set_faults(Shipping, json!({"seed": 42})).await;
    let again = status_sequence(&sandbox, 40).await;
    assert_eq!(first, again);
    assert!(first.contains(&200) && first.contains(&503), "{first:?}");
    sandbox.set_faults(Shipping, json!({"seed": 43})).await;
    let other = status_sequence(&sandbox, 40).await;
    assert_ne!(first, other);
}

#[tokio::test]
async fn config_seed_and_faults_apply_from_the_start() {
    let config = || SandboxConfig {
        faults: vec![(
            Service::Shipping,
            FaultSettings {
                error_rate: Some(0.5),
                ..FaultSettings::default()
            },
        )],
        seed: 7,
        ..SandboxConfig::default()
    };
    let one = start_with(config()).await;
    let two = start_with(config()).await;
    let first = status_sequence(&one, 30).await;
    assert_eq!(first, status_sequence(&two, 30).await);
    assert!(first.contains(&503), "{first:?}");
    let (_, view) = one.get(Shipping, "/_sandbox/faults").await;
    assert_eq!(view["seed"], 7);
}

#[tokio::test]
async fn dropped_response_closes_the_socket_before_any_byte_is_written() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let sandbox = start().await;
    sandbox
        .set_faults(
            Payment,
            json!({"endpoint": "POST /payments", "dropResponseRate": 1}),
        )
        .await;
    let address = sandbox
        .running
        .payment_url
        .trim_start_matches("http://")
        .to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let body = payment_body("raw-1", json!(7)).to_string();
    let request = format!(
        "POST /payments HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer))
        .await
        .expect("the connection was neither answered nor closed");
    // Either a clean close or a reset; never a byte of HTTP.
    if let Err(error) = read {
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
    }
    assert!(
        answer.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(sandbox.payment_ledger().await.payments[0].id, "raw-1");
}
