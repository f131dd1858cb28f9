//! The order saga end to end: success, each kind of downstream failure, and the
//! compensations, checked against the sandbox's ledger. Every test runs on SQLite and on
//! PostgreSQL, but the last one, which holds a save up inside PostgreSQL.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Backend, Options, TestApp, json_of, order_body};
use platform_sandbox::ledger::ReservationStatus;
use serde_json::json;

on_both_databases!(
    successful_order_is_created_with_every_field,
    a_completed_order_is_answered_before_its_reservation_is_committed,
    unknown_sku_is_409_and_takes_no_stock,
    insufficient_stock_is_409_and_takes_no_stock,
    payment_decline_is_402_and_releases_the_stock,
    shipping_failure_is_502_refunds_and_releases,
    inventory_5xx_is_retried_then_502,
    payment_5xx_is_502_and_gives_everything_back,
    inventory_timeout_is_504_and_needs_attention,
    payment_timeout_is_504_and_refunds_what_may_have_been_charged,
    unreachable_inventory_is_502,
    lost_payment_answer_is_retried_and_charges_once,
    lost_shipment_answer_is_found_by_lookup_not_created_twice,
    lost_reserve_answer_is_not_repeated,
    lost_reserve_answer_is_repeated_when_inventory_honours_keys,
    lost_reserve_answer_then_refusals_leave_the_reservation_unknown,
    debug_mode_turns_retries_off,
    retry_after_of_429_is_honoured,
    money_is_exact_from_request_to_payment,
    get_returns_the_stored_order,
    downstream_calls_carry_idempotency_key_and_request_id,
);

async fn successful_order_is_created_with_every_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, order) = json_of(app.post_order(&order_body(2), None).await).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "completed");
    assert_eq!(order["userId"], "user-1");
    assert_eq!(order["currency"], "INR");
    assert_eq!(order["address"]["postalCode"], "411001");
    assert_eq!(
        order["items"],
        json!([{"sku": "SKU-001", "qty": 2, "price": 10.5}])
    );
    assert_eq!(order["total"], json!(21));
    for field in [
        "id",
        "reservationId",
        "paymentIntentId",
        "shipmentId",
        "createdAt",
        "updatedAt",
    ] {
        assert!(order[field].is_string(), "{field} missing in {order}");
    }
    assert!(order.get("failure").is_none());
    assert!(order.get("detail").is_none());

    // The reservation's commit comes after the answer.
    common::settled(&app, order["id"].as_str().unwrap()).await;
    let inventory = app.inventory().await;
    assert_eq!(inventory.stock["SKU-001"], 98);
    assert_eq!(inventory.reservations.len(), 1);
    assert_eq!(
        inventory.reservations[0].id,
        order["reservationId"].as_str().unwrap()
    );
    assert_eq!(
        inventory.reservations[0].status,
        ReservationStatus::Committed
    );
    let payments = app.payments().await;
    assert_eq!(payments.payments.len(), 1);
    assert_eq!(
        payments.payments[0].id,
        order["paymentIntentId"].as_str().unwrap()
    );
    assert_eq!(payments.payments[0].status, "completed");
    assert_eq!(payments.payments[0].amount, 21.0);
    let shipments = app.shipments().await;
    assert_eq!(shipments.shipments.len(), 1);
    assert_eq!(shipments.shipments[0].status, "shipped");
    assert_eq!(
        shipments.shipments[0].order_id,
        order["id"].as_str().unwrap()
    );
    app.stop().await;
}

/// The reservation's commit is best effort (a failed one leaves the order completed), so
/// the answer does not wait for it: the order is answered, saved with its answer, while
/// the commit is still in flight, and settles after it without changing what it shows.
async fn a_completed_order_is_answered_before_its_reservation_is_committed(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            timeout: Duration::from_secs(10),
            ..Options::default()
        },
    )
    .await;
    app.fault(
        "inventory",
        json!({"endpoint": "POST /reservations/{id}/commit", "latencyMs": 2000}),
    )
    .await;
    let response = app.post_order(&order_body(1), Some("early-1")).await;
    assert_eq!(response.status(), 201);
    let answer = response.bytes().await.unwrap();
    let order: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(order["status"], "completed");
    let id = order["id"].as_str().unwrap();

    // The commit has been sent and is held for 2 s by the sandbox.
    let steps = common::timeline_steps(&app, id).await;
    assert_eq!(
        steps.last().unwrap(),
        &("shipment".into(), "shipped".into())
    );
    let inventory = app.inventory().await;
    assert_eq!(inventory.calls["POST /reservations/{id}/commit"], 1);
    assert_eq!(
        inventory.reservations[0].status,
        ReservationStatus::Reserved
    );
    let replay = app.post_order(&order_body(1), Some("early-1")).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(
        replay.bytes().await.unwrap(),
        answer,
        "a replay gets the answer"
    );
    assert_eq!(app.get_order(id).await.bytes().await.unwrap(), answer);

    common::settled(&app, id).await;
    assert_eq!(
        common::timeline_steps(&app, id).await.last().unwrap(),
        &("commit_reservation".into(), "committed".into())
    );
    assert_eq!(
        app.inventory().await.reservations[0].status,
        ReservationStatus::Committed
    );
    assert_eq!(
        app.get_order(id).await.bytes().await.unwrap(),
        answer,
        "the commit changes nothing the order shows"
    );
    app.stop().await;
}

async fn unknown_sku_is_409_and_takes_no_stock(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut body = order_body(1);
    body["items"] =
        json!([{"sku": "SKU-001", "qty": 1, "price": 1}, {"sku": "NOPE", "qty": 1, "price": 1}]);
    let (status, order) = json_of(app.post_order(&body, None).await).await;
    assert_eq!(status, 409);
    assert_eq!(order["detail"], "SKU NOPE not found");
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["failure"]["step"], "inventory");
    assert_eq!(order["failure"]["upstreamStatus"], 409);
    assert!(order["id"].is_string());
    let inventory = app.inventory().await;
    assert_eq!(inventory.stock["SKU-001"], 100, "no stock lost");
    assert!(inventory.reservations.is_empty());
    assert!(app.payments().await.payments.is_empty());
    app.stop().await;
}

async fn insufficient_stock_is_409_and_takes_no_stock(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, order) = json_of(app.post_order(&order_body(101), None).await).await;
    assert_eq!(status, 409);
    assert_eq!(order["detail"], "Insufficient stock for SKU-001");
    assert_eq!(order["status"], "cancelled");
    assert_eq!(app.inventory().await.stock["SKU-001"], 100);
    app.stop().await;
}

async fn payment_decline_is_402_and_releases_the_stock(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fault("payment", json!({"declineRate": 1.0})).await;
    let (status, order) = json_of(app.post_order(&order_body(3), None).await).await;
    assert_eq!(status, 402, "{order}");
    assert_eq!(order["detail"], "Payment failed (status=failed)");
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["failure"]["step"], "payment");
    assert_eq!(order["compensations"][0]["action"], "release_reservation");
    assert_eq!(order["compensations"][0]["state"], "done");
    let inventory = app.inventory().await;
    assert_eq!(inventory.stock["SKU-001"], 100, "stock given back");
    assert_eq!(
        inventory.reservations[0].status,
        ReservationStatus::Released
    );
    let payments = app.payments().await;
    assert_eq!(payments.payments.len(), 1);
    assert_eq!(
        payments.payments[0].status, "failed",
        "a decline is not refunded"
    );
    assert!(app.shipments().await.shipments.is_empty());
    app.stop().await;
}

async fn shipping_failure_is_502_refunds_and_releases(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut body = order_body(1);
    body["address"]["country"] = json!("fail");
    let (status, order) = json_of(app.post_order(&body, None).await).await;
    assert_eq!(status, 502, "{order}");
    assert_eq!(order["status"], "failed_shipping");
    assert_eq!(
        order["detail"],
        "Shipping failed: Shipping provider reported failure for shipment. Payment refunded."
    );
    assert_eq!(order["failure"]["step"], "shipping");
    assert_eq!(order["failure"]["upstreamStatus"], 502);
    let payments = app.payments().await;
    assert_eq!(payments.payments.len(), 1);
    assert_eq!(payments.payments[0].status, "refunded");
    let inventory = app.inventory().await;
    assert_eq!(inventory.stock["SKU-001"], 100);
    assert_eq!(
        inventory.reservations[0].status,
        ReservationStatus::Released
    );
    let shipments = app.shipments().await;
    assert_eq!(
        shipments.shipments.len(),
        1,
        "the failed shipment was not posted twice"
    );
    assert_eq!(shipments.shipments[0].status, "failed");
    app.stop().await;
}

async fn inventory_5xx_is_retried_then_502(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fault(
        "inventory",
        json!({"endpoint": "POST /reserve", "errorRate": 1.0, "errorStatus": 500}),
    )
    .await;
    let (status, order) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 502, "{order}");
    assert!(
        order["detail"]
            .as_str()
            .unwrap()
            .starts_with("Upstream error from inventory service"),
        "{order}"
    );
    assert_eq!(order["status"], "cancelled");
    let inventory = app.inventory().await;
    assert_eq!(inventory.calls["POST /reserve"], 3, "three tries");
    assert_eq!(inventory.stock["SKU-001"], 100);
    app.stop().await;
}

async fn payment_5xx_is_502_and_gives_everything_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fault(
        "payment",
        json!({"endpoint": "POST /payments", "errorRate": 1.0, "errorStatus": 503}),
    )
    .await;
    let (status, order) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 502, "{order}");
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["failure"]["step"], "payment");
    let payments = app.payments().await;
    assert_eq!(payments.calls["POST /payments"], 3);
    assert!(payments.payments.is_empty());
    let inventory = app.inventory().await;
    assert_eq!(inventory.stock["SKU-001"], 100);
    assert_eq!(
        inventory.reservations[0].status,
        ReservationStatus::Released
    );
    app.stop().await;
}

fn fast_timeout() -> Options {
    Options {
        timeout: Duration::from_millis(300),
        ..Options::default()
    }
}

async fn inventory_timeout_is_504_and_needs_attention(backend: Backend) {
    let app = TestApp::spawn_with(backend, fast_timeout()).await;
    app.fault(
        "inventory",
        json!({"endpoint": "POST /reserve", "hangRate": 1.0}),
    )
    .await;
    let (status, order) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 504, "{order}");
    assert_eq!(
        order["status"], "needs_attention",
        "a lost reserve may hold stock"
    );
    assert_eq!(order["failure"]["step"], "inventory");
    assert_eq!(order["failure"]["upstreamStatus"], json!(null));
    assert_eq!(
        app.inventory().await.calls["POST /reserve"],
        1,
        "a reserve whose answer never came is not repeated"
    );
    app.stop().await;
}

async fn payment_timeout_is_504_and_refunds_what_may_have_been_charged(backend: Backend) {
    let app = TestApp::spawn_with(backend, fast_timeout()).await;
    app.fault(
        "payment",
        json!({"endpoint": "POST /payments", "hangRate": 1.0}),
    )
    .await;
    let (status, order) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 504, "{order}");
    assert_eq!(order["status"], "cancelled");
    let actions: Vec<_> = order["compensations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap().to_owned(),
                c["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("refund_payment".to_owned(), "done".to_owned()),
            ("release_reservation".to_owned(), "done".to_owned())
        ]
    );
    let payments = app.payments().await;
    assert_eq!(payments.calls["POST /payments"], 3);
    assert_eq!(payments.calls["POST /payments/{id}/refund"], 1);
    assert!(payments.payments.is_empty(), "hung calls took no effect");
    assert_eq!(app.inventory().await.stock["SKU-001"], 100);
    app.stop().await;
}

async fn unreachable_inventory_is_502(backend: Backend) {
    // Bound but not listening: a connection is refused, and the port stays ours until the
    // end of the test. (A port bound and let go could be handed to another test's server
    // at once, which then answered in the inventory's place.)
    let closed_socket = tokio::net::TcpSocket::new_v4().unwrap();
    closed_socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = closed_socket.local_addr().unwrap().port();
    let app = TestApp::spawn_with(
        backend,
        Options {
            inventory_url: Some(format!("http://127.0.0.1:{closed}")),
            ..Options::default()
        },
    )
    .await;
    let (status, order) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 502, "{order}");
    assert_eq!(order["status"], "cancelled");
    assert!(
        order["detail"].as_str().unwrap().contains("unreachable"),
        "{order}"
    );
    app.stop().await;
}

async fn lost_payment_answer_is_retried_and_charges_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fault(
        "payment",
        json!({"endpoint": "POST /payments", "dropResponseRate": 1.0}),
    )
    .await;
    let (status, order) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 502, "{order}");
    let payments = app.payments().await;
    assert_eq!(
        payments.calls["POST /payments"], 3,
        "retried with the same id"
    );
    assert_eq!(payments.payments.len(), 1, "charged once");
    assert_eq!(payments.payments[0].status, "refunded", "and refunded");
    assert_eq!(app.inventory().await.stock["SKU-001"], 100);
    app.stop().await;
}

async fn lost_shipment_answer_is_found_by_lookup_not_created_twice(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fault(
        "shipping",
        json!({"endpoint": "POST /shipments", "dropResponseRate": 1.0}),
    )
    .await;
    let (status, order) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "completed");
    let shipments = app.shipments().await;
    assert_eq!(shipments.calls["POST /shipments"], 1);
    assert_eq!(shipments.calls["GET /shipments/{id}"], 1);
    assert_eq!(shipments.shipments.len(), 1);
    assert_eq!(
        shipments.shipments[0].id,
        order["shipmentId"].as_str().unwrap()
    );
    app.stop().await;
}

async fn lost_reserve_answer_is_not_repeated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fault(
        "inventory",
        json!({"endpoint": "POST /reserve", "dropResponseRate": 1.0}),
    )
    .await;
    let (status, order) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 502, "{order}");
    assert_eq!(order["status"], "needs_attention");
    let inventory = app.inventory().await;
    assert_eq!(inventory.calls["POST /reserve"], 1, "never sent twice");
    assert_eq!(
        inventory.stock["SKU-001"], 99,
        "the lost reserve did take stock"
    );
    app.stop().await;
}

async fn lost_reserve_answer_is_repeated_when_inventory_honours_keys(backend: Backend) {
    let app = TestApp::spawn_where_reserves_replay(backend).await;
    // The first reserve takes effect and its answer is lost; the retry carries the same
    // Idempotency-Key and gets the first reservation back.
    app.fault(
        "inventory",
        json!({"endpoint": "POST /reserve", "dropResponseRate": 1.0}),
    )
    .await;
    let (status, order) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 502, "every answer was dropped: {order}");
    let inventory = app.inventory().await;
    assert_eq!(inventory.calls["POST /reserve"], 3, "retried");
    assert_eq!(
        inventory.reservations.len(),
        1,
        "one reservation for three tries"
    );
    assert_eq!(inventory.stock["SKU-001"], 99, "stock taken once");
    app.stop().await;
}

/// Where reserves replay, a reserve whose answer was lost is tried again; if the next
/// tries are refused before the inventory looks at them (`503`), nothing says whether the
/// first took the stock: the order needs attention (found by chaos: it was cancelled
/// with the stock still held). Seed 16 draws: processed and answer dropped, 503, 503.
async fn lost_reserve_answer_then_refusals_leave_the_reservation_unknown(backend: Backend) {
    let app = TestApp::spawn_where_reserves_replay(backend).await;
    app.fault(
        "inventory",
        json!({"endpoint": "POST /reserve", "dropResponseRate": 0.5, "errorRate": 0.5, "seed": 16}),
    )
    .await;
    let (status, order) = json_of(app.post_order(&order_body(1), None).await).await;
    let inventory = app.inventory().await;
    assert_eq!(inventory.calls["POST /reserve"], 3, "{order}");
    assert_eq!(
        inventory.reservations.len(),
        1,
        "the first try took the stock"
    );
    assert_eq!(status, 502, "{order}");
    assert_eq!(order["status"], "needs_attention", "{order}");
    assert_eq!(order["failure"]["step"], "inventory");
    app.stop().await;
}

async fn debug_mode_turns_retries_off(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            retry: order_service::downstream::RetryPolicy::none(),
            ..Options::default()
        },
    )
    .await;
    app.fault(
        "inventory",
        json!({"endpoint": "POST /reserve", "errorRate": 1.0, "errorStatus": 503}),
    )
    .await;
    let (status, _) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 502);
    assert_eq!(app.inventory().await.calls["POST /reserve"], 1);
    app.stop().await;
}

async fn retry_after_of_429_is_honoured(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            retry: order_service::downstream::RetryPolicy {
                attempts: 2,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_secs(5),
            },
            ..Options::default()
        },
    )
    .await;
    app.fault(
        "inventory",
        json!({"endpoint": "POST /reserve", "errorRate": 1.0, "errorStatus": 429}),
    )
    .await;
    let started = std::time::Instant::now();
    let (status, _) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 502);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After: 1, took {:?}",
        started.elapsed()
    );
    assert_eq!(app.inventory().await.calls["POST /reserve"], 2);
    app.stop().await;
}

async fn money_is_exact_from_request_to_payment(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut body = order_body(1);
    body["items"] = json!([
        {"sku": "SKU-001", "qty": 1, "price": 0.1},
        {"sku": "SKU-002", "qty": 1, "price": 0.2},
    ]);
    let response = app.post_order(&body, None).await;
    assert_eq!(response.status(), 201);
    let text = response.text().await.unwrap();
    assert!(text.contains(r#""total":0.3,"#), "{text}");
    let payments = app.payments().await;
    assert_eq!(payments.payments[0].amount.to_string(), "0.3");
    app.stop().await;
}

async fn get_returns_the_stored_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, created) = json_of(app.post_order(&order_body(1), None).await).await;
    let id = created["id"].as_str().unwrap();
    let (status, fetched) = json_of(app.get_order(id).await).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, created, "GET shows what POST answered");

    let (status, missing) = json_of(app.get_order(&uuid::Uuid::now_v7().to_string()).await).await;
    assert_eq!(status, 404);
    assert_eq!(missing, json!({"detail": "Order not found"}));
    let (status, _) = json_of(app.get_order("not-a-uuid").await).await;
    assert_eq!(status, 404);
    app.stop().await;
}

mod event_log {
    use super::*;
    use order_service::domain::ids::OrderId;

    on_both_databases!(
        every_step_and_compensation_is_logged,
        a_completed_order_logs_every_step
    );

    async fn events_of(app: &TestApp, id: &str) -> Vec<(String, String)> {
        let id: OrderId = id.parse().unwrap();
        app.state
            .saga
            .store()
            .events(id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.step, e.outcome))
            .collect()
    }

    async fn a_completed_order_logs_every_step(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let (status, order) = json_of(app.post_order(&order_body(1), None).await).await;
        assert_eq!(status, 201, "{order}");
        common::settled(&app, order["id"].as_str().unwrap()).await;
        let events = events_of(&app, order["id"].as_str().unwrap()).await;
        let expected: Vec<(String, String)> = [
            ("create", "pending"),
            ("reserve", "reserved"),
            ("payment", "paid"),
            ("shipment", "shipped"),
            ("commit_reservation", "committed"),
        ]
        .iter()
        .map(|(s, o)| (s.to_string(), o.to_string()))
        .collect();
        assert_eq!(events, expected);
        app.stop().await;
    }

    async fn every_step_and_compensation_is_logged(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut body = order_body(1);
        body["address"]["country"] = json!("FAIL");
        let (_, order) = json_of(app.post_order(&body, None).await).await;
        let store = app.state.saga.store();
        let id: OrderId = order["id"].as_str().unwrap().parse().unwrap();
        let events = events_of(&app, order["id"].as_str().unwrap()).await;
        let expected = [
            ("create", "pending"),
            ("reserve", "reserved"),
            ("payment", "paid"),
            ("shipment", "retried"),
            ("shipment", "failed"),
            ("refund_payment", "refunded"),
            ("release_reservation", "released"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(s, o)| (s.to_string(), o.to_string()))
            .collect();
        assert_eq!(events, expected);
        let stored = store.events(id).await.unwrap();
        assert_eq!(stored[3].upstream_status, Some(502));
        assert!(stored.iter().skip(1).all(|e| e.duration_ms.is_some()));
        app.stop().await;
    }
}

async fn downstream_calls_carry_idempotency_key_and_request_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .post(format!("{}/orders", app.address))
        .header("X-Request-Id", "req-from-client")
        .json(&order_body(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-from-client");
    let (_, order) = json_of(response).await;
    let id = order["id"].as_str().unwrap();
    common::settled(&app, id).await;
    let mut seen = Vec::new();
    for service in ["inventory", "payment", "shipping"] {
        for request in app.requests(service).await.requests {
            assert_eq!(
                request.request_id.as_deref(),
                Some("req-from-client"),
                "{request:?}"
            );
            seen.push((
                request.endpoint,
                request.idempotency_key.unwrap_or_default(),
            ));
        }
    }
    let expected = vec![
        ("POST /reserve".to_owned(), format!("{id}:reserve")),
        (
            "POST /reservations/{id}/commit".to_owned(),
            format!("{id}:commit"),
        ),
        ("POST /payments".to_owned(), format!("{id}:payment")),
        ("POST /shipments".to_owned(), format!("{id}:shipment")),
    ];
    assert_eq!(seen, expected);
    app.stop().await;
}

/// The reservation's save overlaps the payment and shipment calls: with that save held
/// up in the database (a trigger sleeps in it, PostgreSQL only), the payment and the
/// shipment are made while the stored order still has no reservation; the answer comes
/// once the save is through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_and_shipment_do_not_wait_for_the_reservation_to_be_saved() {
    let Some(backend) = Backend::postgres_or_skip(
        "payment_and_shipment_do_not_wait_for_the_reservation_to_be_saved",
    ) else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    hold_reservation_saves(&app, 2.0).await;
    let response = tokio::spawn({
        let (client, url) = (app.client.clone(), format!("{}/orders", app.address));
        async move { client.post(url).json(&order_body(1)).send().await.unwrap() }
    });

    let mut shipped = None;
    for _ in 0..150 {
        if let Some(shipment) = app.shipments().await.shipments.first() {
            shipped = Some(shipment.order_id.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let id = shipped.expect("no shipment within 1.5 s of the order");
    let stored = app
        .state
        .saga
        .store()
        .find_order(id.parse().unwrap())
        .await
        .unwrap()
        .expect("the order is stored before any call");
    assert!(
        stored.progress.reservation_id.is_none(),
        "the reservation's save is still held: {:?}",
        stored.progress
    );
    assert_eq!(app.payments().await.payments.len(), 1);

    let (status, order) = json_of(response.await.unwrap()).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "completed");
    assert!(order["reservationId"].is_string());
    app.stop().await;
}

/// Of an order's four writes, two commit without waiting for their flush (PostgreSQL
/// only): the reservation's save, which the shipment's save (the one the answer waits
/// for) flushes with it, and the settled order's, which nothing waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_answers_save_and_the_new_order_wait_for_their_flush() {
    let Some(backend) =
        Backend::postgres_or_skip("only_the_answers_save_and_the_new_order_wait_for_their_flush")
    else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    let mut conn = schema_connection_after(
        &app,
        "CREATE TABLE order_writes (n serial, step text, synchronous_commit text);
         CREATE FUNCTION log_order_writes() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO order_writes (step, synchronous_commit)
                 VALUES (NEW.step, current_setting('synchronous_commit'));
             RETURN NEW;
         END $$;
         CREATE TRIGGER log_order_writes AFTER INSERT OR UPDATE ON orders
             FOR EACH ROW EXECUTE FUNCTION log_order_writes();",
    )
    .await;

    let response = app
        .client
        .post(format!("{}/orders", app.address))
        .json(&order_body(1))
        .send()
        .await
        .unwrap();
    let (status, order) = json_of(response).await;
    assert_eq!(status, 201, "{order}");
    common::settled(&app, order["id"].as_str().unwrap()).await;

    let writes: Vec<(String, String)> =
        sqlx::query_as("SELECT step, synchronous_commit FROM order_writes ORDER BY n")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let expected = [
        ("reserve", "on"),            // the order with its key
        ("pay", "off"),               // its reservation, while paying and shipping
        ("commit_reservation", "on"), // its payment and shipment, then the answer
        ("done", "off"),              // settled after the commit
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(step, flush)| (step.to_string(), flush.to_string()))
        .collect();
    assert_eq!(writes, expected);
    app.stop().await;
}

/// Makes every save that records an order's reservation sleep `seconds` in the database.
async fn hold_reservation_saves(app: &TestApp, seconds: f64) {
    schema_connection_after(
        app,
        &format!(
            "CREATE FUNCTION hold_reservation_saves() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.reservation_id IS NOT NULL AND OLD.reservation_id IS NULL THEN
                 PERFORM pg_sleep({seconds});
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER hold_reservation_saves BEFORE UPDATE ON orders
             FOR EACH ROW EXECUTE FUNCTION hold_reservation_saves();"
        ),
    )
    .await;
}

/// A connection to the app's own PostgreSQL schema (its URL names it), once `sql` (a
/// table or trigger the test needs) has run in it.
async fn schema_connection_after(app: &TestApp, sql: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("connect to the test schema");
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .expect("set up the test schema");
    conn
}
