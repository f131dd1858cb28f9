//! Crash safety: sagas a dead process left are claimed and finished or compensated by the
//! recovery worker; uncertain outcomes are learnt before acting again; compensations are
//! retried and end in `needs_attention`; operators retry and resolve; the `202` path;
//! circuit breakers; shutdown with sagas in flight; replicas racing.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Backend, Options, TestApp, json_of, order_body};
use order_service::domain::idempotency::{Fingerprint, IdempotencyKey, StoredResponse};
use order_service::domain::ids::ReservationId;
use order_service::domain::order::Order;
use order_service::domain::validation::parse_new_order;
use order_service::domain::when;
use order_service::saga::recovery::Recovery;
use order_service::store::{Lease, NewKey};
use platform_sandbox::ledger::ReservationStatus;
use serde_json::{Value, json};

on_both_databases!(
    crash_after_reserve_is_finished_by_recovery,
    crash_during_reserve_needs_attention,
    crash_during_reserve_is_retried_where_reserves_replay,
    crash_during_reserve_then_refused_replays_needs_attention,
    crash_after_payment_taken_repeats_the_same_payment,
    crash_after_shipment_created_finds_it_instead_of_posting_again,
    crash_after_the_answer_commits_the_reservation_and_keeps_the_answer,
    crash_after_unsaved_payment_and_shipment_makes_neither_again,
    crash_after_unsaved_payment_then_a_failing_charge_cancels_the_shipment_too,
    crash_while_saving_the_reservation_undoes_a_payment_and_shipment_it_may_have_made,
    crash_while_saving_the_reservation_makes_nothing_twice_where_reserves_replay,
    past_the_deadline_a_crashed_order_is_compensated,
    past_the_deadline_a_shipped_order_is_finished_not_undone,
    past_the_deadline_a_paid_unshipped_order_is_refunded,
    a_live_lease_is_not_taken,
    failed_compensation_is_retried_by_a_later_pass,
    compensation_failing_too_often_needs_attention_then_operator_retry,
    unknown_reservation_is_resolved_by_an_operator,
    slow_saga_answers_202_and_a_replay_returns_the_final_answer,
    open_breaker_refuses_new_orders_before_any_side_effect,
    an_open_breaker_still_replays_keys_that_answered,
    sigterm_lets_in_flight_sagas_finish,
    a_step_longer_than_the_lease_keeps_it,
    a_run_whose_lease_was_taken_stops_before_its_next_call,
    an_open_breaker_pauses_a_running_saga_instead_of_failing_it,
    undeliverable_addresses_do_not_open_the_shipping_breaker,
);

/// Stores `order` as a process that died right after saving it would have left it.
async fn leave_as_crashed(app: &TestApp, order: &Order) {
    let event = common::created_event();
    let dead = Lease {
        owner: "process-that-died".to_owned(),
        ttl: Duration::ZERO,
    };
    app.state
        .saga
        .store()
        .insert_order(order, None, &event, &dead)
        .await
        .unwrap();
}

/// Reserves the order's items in the sandbox, as the dead process did (with the key it
/// sends, which an inventory that replays by key remembers).
async fn reserve_in_sandbox(app: &TestApp, order: &Order) -> ReservationId {
    let items: Vec<Value> = order
        .items
        .iter()
        .map(|i| json!({"sku": i.sku.as_str(), "qty": i.qty.get()}))
        .collect();
    let answer: Value = app
        .client
        .post(format!("{}/reserve", app.sandbox().inventory_url))
        .header("Idempotency-Key", format!("{}:reserve", order.id))
        .json(&json!({"orderId": order.id.to_string(), "items": items}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ReservationId::from(answer["id"].as_str().unwrap().to_owned())
}

/// Takes the order's payment in the sandbox, as the dead process did.
async fn charge_in_sandbox(app: &TestApp, order: &Order) {
    let charged = app
        .client
        .post(format!("{}/payments", app.sandbox().payment_url))
        .json(&json!({"id": order.payment_id.as_str(), "order_id": order.id.to_string(), "amount": 10.5, "status": "pending"}))
        .send()
        .await
        .unwrap();
    assert_eq!(charged.status(), 201);
}

/// Creates the order's shipment in the sandbox, as the dead process did.
async fn ship_in_sandbox(app: &TestApp, order: &Order) {
    let created = app
        .client
        .post(format!("{}/shipments", app.sandbox().shipping_url))
        .json(
            &json!({"id": order.shipment_id.as_str(), "order_id": order.id.to_string(),
                      "address": {"line1": "x", "city": "y", "country": "IN", "postalCode": "1"},
                      "items": [], "status": "created"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

/// A service whose orders have a 1 s deadline, and an order of it (not stored yet) that
/// reserved its stock 5 s ago.
async fn reserved_past_its_deadline(backend: Backend) -> (TestApp, Order) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            order_deadline: Duration::from_secs(1),
            ..Options::default()
        },
    )
    .await;
    let mut order = common::new_order(1);
    let reservation = reserve_in_sandbox(&app, &order).await;
    order.reserved(reservation);
    order.created_at = when::now() - chrono::Duration::seconds(5);
    (app, order)
}

/// The order's one reservation was released and its stock (of 100) is back.
async fn assert_stock_released(app: &TestApp) {
    let inventory = app.inventory().await;
    assert_eq!(
        inventory.reservations[0].status,
        ReservationStatus::Released
    );
    assert_eq!(inventory.stock["SKU-001"], 100);
}

async fn recover(app: &TestApp) -> order_service::saga::recovery::PassReport {
    Recovery::new(app.state.saga.clone())
        .run_once()
        .await
        .unwrap()
}

async fn order_json(app: &TestApp, order: &Order) -> Value {
    let (status, body) = app.get_json(&format!("/orders/{}", order.id)).await;
    assert_eq!(status, 200);
    body
}

fn has(steps: &[(String, String)], step: &str, outcome: &str) -> bool {
    steps.iter().any(|(s, o)| s == step && o == outcome)
}

async fn crash_after_reserve_is_finished_by_recovery(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut order = common::new_order(2);
    let reservation = reserve_in_sandbox(&app, &order).await;
    order.reserved(reservation);
    leave_as_crashed(&app, &order).await;

    let report = recover(&app).await;
    assert_eq!((report.claimed, report.settled), (1, 1));
    let body = order_json(&app, &order).await;
    assert_eq!(body["status"], "completed");
    let inventory = app.inventory().await;
    assert_eq!(inventory.reservations.len(), 1);
    assert_eq!(
        inventory.reservations[0].status,
        ReservationStatus::Committed
    );
    assert_eq!(inventory.stock["SKU-001"], 98);
    assert_eq!(app.payments().await.payments.len(), 1);
    assert_eq!(app.shipments().await.shipments.len(), 1);
    let steps = common::timeline_steps(&app, &order.id.to_string()).await;
    assert!(has(&steps, "recovery", "claimed"), "{steps:?}");
    assert!(has(&steps, "payment", "paid"));
    assert_eq!(
        recover(&app).await.claimed,
        0,
        "a settled order is not claimed again"
    );
    app.stop().await;
}

async fn crash_during_reserve_needs_attention(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let order = common::new_order(1);
    leave_as_crashed(&app, &order).await;
    assert_eq!(recover(&app).await.claimed, 1);
    let body = order_json(&app, &order).await;
    assert_eq!(body["status"], "needs_attention");
    assert_eq!(body["failure"]["step"], "inventory");
    assert_eq!(
        app.inventory().await.calls["POST /reserve"],
        0,
        "a reserve that may have been sent is not sent again"
    );
    // The payment and shipment it may have made are undone by id: there were none.
    let steps = common::timeline_steps(&app, &order.id.to_string()).await;
    assert!(has(&steps, "refund_payment", "not_found"), "{steps:?}");
    assert!(has(&steps, "cancel_shipment", "not_found"), "{steps:?}");
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("reservation_outcome_unknown_total"));
    app.stop().await;
}

async fn crash_during_reserve_is_retried_where_reserves_replay(backend: Backend) {
    let app = TestApp::spawn_where_reserves_replay(backend).await;
    let order = common::new_order(1);
    leave_as_crashed(&app, &order).await;
    assert_eq!(recover(&app).await.settled, 1);
    assert_eq!(order_json(&app, &order).await["status"], "completed");
    assert_eq!(app.inventory().await.reservations.len(), 1);
    app.stop().await;
}

/// Where reserves replay, the run that resumes an order left at its reservation sends
/// the reserve again; if the inventory refuses every try (`503`, before it looks at the
/// key), nothing says whether the dead process's reserve took the stock: the order needs
/// attention instead of being cancelled with the stock held.
async fn crash_during_reserve_then_refused_replays_needs_attention(backend: Backend) {
    let app = TestApp::spawn_where_reserves_replay(backend).await;
    let order = common::new_order(1);
    reserve_in_sandbox(&app, &order).await;
    leave_as_crashed(&app, &order).await;
    app.fault(
        "inventory",
        json!({"endpoint": "POST /reserve", "errorRate": 1.0}),
    )
    .await;

    assert_eq!(recover(&app).await.claimed, 1);
    let body = order_json(&app, &order).await;
    assert_eq!(body["status"], "needs_attention", "{body}");
    assert_eq!(body["failure"]["step"], "inventory");
    let steps = common::timeline_steps(&app, &order.id.to_string()).await;
    assert!(has(&steps, "reserve", "unknown"), "{steps:?}");
    app.stop().await;
}

async fn crash_after_payment_taken_repeats_the_same_payment(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut order = common::new_order(1);
    let reservation = reserve_in_sandbox(&app, &order).await;
    order.reserved(reservation);
    // The dead process's payment went through; its answer was lost with the process.
    charge_in_sandbox(&app, &order).await;
    leave_as_crashed(&app, &order).await;
    assert_eq!(recover(&app).await.settled, 1);
    assert_eq!(order_json(&app, &order).await["status"], "completed");
    let payments = app.payments().await;
    assert_eq!(
        payments.payments.len(),
        1,
        "the same payment, not a second one"
    );
    assert_eq!(payments.payments[0].status, "completed");
    app.stop().await;
}

async fn crash_after_shipment_created_finds_it_instead_of_posting_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut order = common::new_order(1);
    let reservation = reserve_in_sandbox(&app, &order).await;
    order.reserved(reservation);
    order.paid("completed".into());
    ship_in_sandbox(&app, &order).await;
    leave_as_crashed(&app, &order).await;
    assert_eq!(recover(&app).await.settled, 1);
    assert_eq!(order_json(&app, &order).await["status"], "completed");
    let shipments = app.shipments().await;
    assert_eq!(
        shipments.calls["POST /shipments"], 1,
        "looked up, not posted again"
    );
    assert_eq!(shipments.calls["GET /shipments/{id}"], 1);
    assert_eq!(shipments.shipments.len(), 1);
    app.stop().await;
}

/// The answer of a completed order is saved before its reservation's commit; a process
/// that died between the two leaves the commit to recovery, which changes nothing of the
/// order that was answered.
async fn crash_after_the_answer_commits_the_reservation_and_keeps_the_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut order = common::new_order(1);
    let reservation = reserve_in_sandbox(&app, &order).await;
    order.reserved(reservation);
    order.paid("completed".into());
    charge_in_sandbox(&app, &order).await;
    ship_in_sandbox(&app, &order).await;
    order.shipped();
    let answer = StoredResponse {
        status: 201,
        body: r#"{"the":"answer"}"#.into(),
    };
    order.response = Some(answer.clone());
    leave_as_crashed(&app, &order).await;

    assert_eq!(recover(&app).await.settled, 1);
    let recovered = common::settled(&app, &order.id.to_string()).await;
    assert_eq!(recovered.response, Some(answer));
    assert_eq!(recovered.updated_at, order.updated_at);
    assert_eq!(
        app.inventory().await.reservations[0].status,
        ReservationStatus::Committed
    );
    assert_eq!(app.payments().await.calls["POST /payments"], 1);
    assert_eq!(app.shipments().await.calls["POST /shipments"], 1);
    app.stop().await;
}

/// The dead process's payment is the only one, and taken; its shipment is the only
/// one, found by lookup, not posted again.
async fn assert_paid_and_shipped_once(app: &TestApp) {
    let payments = app.payments().await;
    assert_eq!(payments.payments.len(), 1, "the same payment");
    assert_eq!(payments.payments[0].status, "completed");
    let shipments = app.shipments().await;
    assert_eq!(
        shipments.calls["POST /shipments"], 1,
        "only the dead process's: looked up, not posted again"
    );
    assert_eq!(shipments.shipments.len(), 1);
}

/// An order whose process reserved (and saved that), then paid and shipped, and died
/// before saving either: it is left at its payment step.
async fn crashed_after_unsaved_payment_and_shipment(backend: Backend) -> (TestApp, Order) {
    let app = TestApp::spawn(backend).await;
    let mut order = common::new_order(1);
    let reservation = reserve_in_sandbox(&app, &order).await;
    order.reserved(reservation);
    charge_in_sandbox(&app, &order).await;
    ship_in_sandbox(&app, &order).await;
    leave_as_crashed(&app, &order).await;
    (app, order)
}

/// A taken payment is saved only with the shipment, so a process that died after both
/// calls left the order at its payment step: the run that resumes it finds the payment by
/// charging again with its id and the shipment by looking it up; neither is made twice.
async fn crash_after_unsaved_payment_and_shipment_makes_neither_again(backend: Backend) {
    let (app, order) = crashed_after_unsaved_payment_and_shipment(backend).await;

    assert_eq!(recover(&app).await.settled, 1);
    let body = order_json(&app, &order).await;
    assert_eq!(body["status"], "completed", "{body}");
    assert_paid_and_shipped_once(&app).await;
    assert_eq!(
        app.inventory().await.reservations[0].status,
        ReservationStatus::Committed
    );
    app.stop().await;
}

/// The same crash, but charging again fails: the payment may have been taken and the
/// shipment may exist, so undoing the order cancels the shipment as well as refunding and
/// releasing — no cancelled order keeps a shipment.
async fn crash_after_unsaved_payment_then_a_failing_charge_cancels_the_shipment_too(
    backend: Backend,
) {
    let (app, order) = crashed_after_unsaved_payment_and_shipment(backend).await;
    app.fault(
        "payment",
        json!({"endpoint": "POST /payments", "errorRate": 1.0}),
    )
    .await;

    assert_eq!(recover(&app).await.settled, 1);
    let body = order_json(&app, &order).await;
    assert_eq!(body["status"], "cancelled", "{body}");
    assert_eq!(body["failure"]["step"], "payment");
    let shipments = app.shipments().await;
    assert_eq!(shipments.calls["DELETE /shipments/{id}"], 1);
    assert!(shipments.shipments.is_empty(), "{:?}", shipments.shipments);
    assert_eq!(app.payments().await.payments[0].status, "refunded");
    assert_stock_released(&app).await;
    app.stop().await;
}

/// An order whose process reserved, paid and shipped, and died before the save of its
/// reservation (which runs while paying and shipping) committed: it is left at its
/// reservation step.
async fn crashed_while_saving_the_reservation(app: &TestApp) -> Order {
    let order = common::new_order(1);
    reserve_in_sandbox(app, &order).await;
    charge_in_sandbox(app, &order).await;
    ship_in_sandbox(app, &order).await;
    leave_as_crashed(app, &order).await;
    order
}

/// A reservation is saved while the payment and shipment calls go on: a process that
/// died before that save committed left the order at its reservation step, possibly paid
/// and shipped. Where the reservation cannot be learnt, the order needs attention, and the
/// payment and shipment are undone by their ids (not left charged and shipped).
async fn crash_while_saving_the_reservation_undoes_a_payment_and_shipment_it_may_have_made(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let order = crashed_while_saving_the_reservation(&app).await;

    assert_eq!(recover(&app).await.claimed, 1);
    let body = order_json(&app, &order).await;
    assert_eq!(body["status"], "needs_attention", "{body}");
    assert_eq!(body["failure"]["step"], "inventory");
    assert_eq!(app.payments().await.payments[0].status, "refunded");
    let shipments = app.shipments().await;
    assert_eq!(shipments.calls["DELETE /shipments/{id}"], 1);
    assert!(shipments.shipments.is_empty(), "{:?}", shipments.shipments);
    assert_eq!(
        app.inventory().await.calls["POST /reserve"],
        1,
        "only the dead process's reserve"
    );
    let steps = common::timeline_steps(&app, &order.id.to_string()).await;
    assert!(has(&steps, "refund_payment", "refunded"), "{steps:?}");
    assert!(has(&steps, "cancel_shipment", "cancelled"), "{steps:?}");
    app.stop().await;
}

/// The same crash where the inventory replays a reserve by its key: the run that resumes
/// the order gets the same reservation, the same payment, finds the shipment, and
/// completes the order with one of each.
async fn crash_while_saving_the_reservation_makes_nothing_twice_where_reserves_replay(
    backend: Backend,
) {
    let app = TestApp::spawn_where_reserves_replay(backend).await;
    let order = crashed_while_saving_the_reservation(&app).await;

    assert_eq!(recover(&app).await.settled, 1);
    let body = order_json(&app, &order).await;
    assert_eq!(body["status"], "completed", "{body}");
    let inventory = app.inventory().await;
    assert_eq!(inventory.reservations.len(), 1, "the same reservation");
    assert_eq!(inventory.stock["SKU-001"], 99);
    assert_paid_and_shipped_once(&app).await;
    app.stop().await;
}

async fn past_the_deadline_a_crashed_order_is_compensated(backend: Backend) {
    let (app, order) = reserved_past_its_deadline(backend).await;
    leave_as_crashed(&app, &order).await;
    assert_eq!(recover(&app).await.settled, 1);
    let body = order_json(&app, &order).await;
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["failure"]["step"], "payment");
    assert_stock_released(&app).await;
    let payments = app.payments().await;
    assert_eq!(
        payments.calls["POST /payments"], 0,
        "no charge past the deadline"
    );
    assert_eq!(
        payments.calls["GET /payments/{id}"], 1,
        "whether the dead process charged is looked up"
    );
    assert_eq!(
        payments.calls["POST /payments/{id}/refund"], 0,
        "nothing was charged, so nothing is refunded"
    );
    app.stop().await;
}

/// Past the deadline, a payment the dead process took is found, and so is its shipment:
/// the order is complete, not undone.
async fn past_the_deadline_a_shipped_order_is_finished_not_undone(backend: Backend) {
    let (app, order) = reserved_past_its_deadline(backend).await;
    charge_in_sandbox(&app, &order).await;
    ship_in_sandbox(&app, &order).await;
    leave_as_crashed(&app, &order).await;

    assert_eq!(recover(&app).await.settled, 1);
    let body = order_json(&app, &order).await;
    assert_eq!(body["status"], "completed", "{body}");
    let payments = app.payments().await;
    assert_eq!(
        payments.calls["POST /payments"], 1,
        "only the dead process's"
    );
    assert_eq!(payments.calls["POST /payments/{id}/refund"], 0);
    let shipments = app.shipments().await;
    assert_eq!(
        shipments.calls["POST /shipments"], 1,
        "only the dead process's"
    );
    assert_eq!(
        app.inventory().await.reservations[0].status,
        ReservationStatus::Committed
    );
    app.stop().await;
}

/// Past the deadline, a payment found taken but no shipment: refund and release.
async fn past_the_deadline_a_paid_unshipped_order_is_refunded(backend: Backend) {
    let (app, order) = reserved_past_its_deadline(backend).await;
    charge_in_sandbox(&app, &order).await;
    leave_as_crashed(&app, &order).await;

    assert_eq!(recover(&app).await.settled, 1);
    let body = order_json(&app, &order).await;
    assert_eq!(body["status"], "failed_shipping", "{body}");
    let payments = app.payments().await;
    assert_eq!(payments.payments[0].status, "refunded");
    let shipments = app.shipments().await;
    assert_eq!(
        shipments.calls["POST /shipments"], 0,
        "no shipment past the deadline"
    );
    assert_stock_released(&app).await;
    app.stop().await;
}

async fn a_live_lease_is_not_taken(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let order = common::new_order(1);
    let alive = Lease {
        owner: "process-still-running".to_owned(),
        ttl: Duration::from_secs(60),
    };
    let event = common::created_event();
    app.state
        .saga
        .store()
        .insert_order(&order, None, &event, &alive)
        .await
        .unwrap();
    assert_eq!(recover(&app).await.claimed, 0);
    assert_eq!(order_json(&app, &order).await["status"], "pending");
    app.stop().await;
}

async fn failed_compensation_is_retried_by_a_later_pass(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fault("payment", json!({"declineRate": 1.0})).await;
    app.fault(
        "inventory",
        json!({"endpoint": "POST /reservations/{id}/release", "errorRate": 1.0, "errorStatus": 503}),
    )
    .await;
    let (status, body) = json_of(app.post_order(&order_body(1), Some("comp-1")).await).await;
    assert_eq!(status, 402);
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["compensations"][0]["state"], "failed");
    assert!(
        body["detail"].as_str().unwrap().contains("will be retried"),
        "{body}"
    );
    assert_eq!(
        app.inventory().await.stock["SKU-001"],
        99,
        "not released yet"
    );

    // The service comes back; the next pass (once the rest is over) releases the stock.
    app.client
        .delete(format!("{}/_sandbox/faults", app.sandbox().inventory_url))
        .send()
        .await
        .unwrap();
    let store = app.state.saga.store();
    assert_eq!(
        recover(&app).await.claimed,
        0,
        "resting after the failed run"
    );
    store
        .release_leases(&app.state.saga.lease().owner, when::now())
        .await
        .unwrap();
    assert_eq!(recover(&app).await.settled, 1);
    let id = body["id"].as_str().unwrap();
    let (_, now) = app.get_json(&format!("/orders/{id}")).await;
    assert_eq!(now["compensations"][0]["state"], "done");
    assert_eq!(now["compensations"][0]["attempts"], 4);
    assert_eq!(app.inventory().await.stock["SKU-001"], 100);
    // The client's answer stays the first one.
    let replay = app.post_order(&order_body(1), Some("comp-1")).await;
    assert_eq!(json_of(replay).await.1, body);
    app.stop().await;
}

async fn compensation_failing_too_often_needs_attention_then_operator_retry(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            compensation_max_attempts: 3,
            ..Options::default()
        },
    )
    .await;
    app.fault("payment", json!({"declineRate": 1.0})).await;
    app.fault(
        "inventory",
        json!({"endpoint": "POST /reservations/{id}/release", "errorRate": 1.0, "errorStatus": 500}),
    )
    .await;
    let (status, body) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 402);
    assert_eq!(body["status"], "needs_attention", "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(recover(&app).await.claimed, 0, "automatic work ended");
    let (_, listed) = app.get_json("/orders?status=needs_attention").await;
    assert_eq!(listed["orders"][0]["id"], id.as_str());

    app.client
        .delete(format!("{}/_sandbox/faults", app.sandbox().inventory_url))
        .send()
        .await
        .unwrap();
    let retried = app
        .client
        .post(format!("{}/orders/{id}/retry", app.address))
        .send()
        .await
        .unwrap();
    let (status, after) = json_of(retried).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["status"], "cancelled");
    assert_eq!(after["compensations"][0]["state"], "done");
    assert_eq!(app.inventory().await.stock["SKU-001"], 100);
    let steps = common::timeline_steps(&app, &id).await;
    assert!(has(&steps, "compensate", "needs_attention"), "{steps:?}");
    assert!(has(&steps, "operator", "retry"), "{steps:?}");
    let again = app
        .client
        .post(format!("{}/orders/{id}/retry", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409, "nothing left to retry");
    let missing = app
        .client
        .post(format!(
            "{}/orders/{}/retry",
            app.address,
            uuid::Uuid::now_v7()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    app.stop().await;
}

async fn unknown_reservation_is_resolved_by_an_operator(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fault(
        "inventory",
        json!({"endpoint": "POST /reserve", "dropResponseRate": 1.0}),
    )
    .await;
    let (_, body) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(body["status"], "needs_attention");
    let id = body["id"].as_str().unwrap().to_owned();
    let url = |action: &str| format!("{}/orders/{id}/{action}", app.address);
    let resolve = |body: Value| {
        let sent = app.client.post(url("resolve")).json(&body).send();
        async move { sent.await.unwrap() }
    };

    let retry = app.client.post(url("retry")).send().await.unwrap();
    let (status, answer) = json_of(retry).await;
    assert_eq!(status, 409);
    assert!(
        answer["detail"].as_str().unwrap().contains("unknown"),
        "{answer}"
    );

    let bad = resolve(json!({"note": "  "})).await;
    let (status, answer) = json_of(bad).await;
    assert_eq!(status, 422);
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "note"]));
    // PostgreSQL cannot store a NUL character: refused up front on either database.
    let nul = resolve(json!({"note": "done\u{0}"})).await;
    let (status, answer) = json_of(nul).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["type"], "string_pattern_mismatch");
    let missing = resolve(json!({})).await;
    assert_eq!(missing.status(), 422);

    // Read while it needs attention: not kept in memory, as it can still change.
    assert_eq!(
        app.get_json(&format!("/orders/{id}")).await.1["status"],
        "needs_attention"
    );
    let note = "released reservation by hand in the inventory console";
    let resolved = resolve(json!({"note": note})).await;
    let (status, after) = json_of(resolved).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["status"], "cancelled");
    assert_eq!(
        app.get_json(&format!("/orders/{id}")).await.1["status"],
        "cancelled"
    );
    let steps = common::timeline_steps(&app, &id).await;
    assert!(has(&steps, "operator", "resolved"));
    let (_, timeline) = app.get_json(&format!("/orders/{id}/events")).await;
    assert!(timeline.to_string().contains(note));
    let twice = resolve(json!({"note": "again"})).await;
    assert_eq!(twice.status(), 409);
    app.stop().await;
}

async fn slow_saga_answers_202_and_a_replay_returns_the_final_answer(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            order_wait: Duration::from_millis(300),
            ..Options::default()
        },
    )
    .await;
    app.fault(
        "shipping",
        json!({"endpoint": "POST /shipments", "latencyMs": 1200}),
    )
    .await;
    let first = app.post_order(&order_body(1), Some("slow-202")).await;
    assert_eq!(first.status(), 202);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let (_, pending) = json_of(first).await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(
        location,
        format!("/orders/{}", pending["id"].as_str().unwrap())
    );

    let meanwhile = app.post_order(&order_body(1), Some("slow-202")).await;
    assert_eq!(meanwhile.status(), 409, "still running");
    common::settled(&app, pending["id"].as_str().unwrap()).await;
    let replay = app.post_order(&order_body(1), Some("slow-202")).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let (_, done) = json_of(replay).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["id"], pending["id"]);
    assert_eq!(app.payments().await.payments.len(), 1);
    app.stop().await;
}

async fn open_breaker_refuses_new_orders_before_any_side_effect(backend: Backend) {
    let app = TestApp::spawn_with(backend, with_breaker(2, Duration::from_millis(800))).await;
    app.fault(
        "payment",
        json!({"endpoint": "POST /payments", "errorRate": 1.0, "errorStatus": 503}),
    )
    .await;
    let (status, first) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 502, "the failure that opened the breaker: {first}");
    assert_eq!(
        app.payments().await.calls["POST /payments"],
        2,
        "the breaker cut the retries"
    );

    let refused = app.post_order(&order_body(1), Some("during-open")).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get("retry-after").is_some());
    let (_, refused) = json_of(refused).await;
    assert!(
        refused["detail"].as_str().unwrap().contains("payment"),
        "{refused}"
    );
    let (_, listed) = app.get_json("/orders").await;
    assert_eq!(
        listed["orders"].as_array().unwrap().len(),
        1,
        "no order was created"
    );
    assert_eq!(
        app.inventory().await.calls["POST /reserve"],
        1,
        "nothing reserved"
    );

    app.client
        .delete(format!("{}/_sandbox/faults", app.sandbox().payment_url))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (status, probe) = json_of(app.post_order(&order_body(1), Some("during-open")).await).await;
    assert_eq!(status, 201, "half-open probe succeeds and closes: {probe}");
    assert_eq!(app.post_order(&order_body(1), None).await.status(), 201);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"circuit_breaker_state{service="payment"} 0"#),
        "{metrics}"
    );
    app.stop().await;
}

/// A replay calls no downstream service, so an open breaker does not stop it: a key
/// that answered gets its first answer (from memory, and after a restart from the
/// database), a key still running `409`, another body `422`; a new key is still
/// refused with `503`, and so is one that cannot be looked up.
async fn an_open_breaker_still_replays_keys_that_answered(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database_url = match &backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("orders.db").display()),
        Backend::Postgres(base) => common::fresh_schema(base).await,
    };
    let options = || Options {
        database_url: Some(database_url.clone()),
        ..with_breaker(2, Duration::from_secs(60))
    };
    let failing_payments =
        json!({"endpoint": "POST /payments", "errorRate": 1.0, "errorStatus": 503});
    let app = TestApp::spawn_with(backend.clone(), options()).await;
    let answered = app.post_order(&order_body(1), Some("answered")).await;
    assert_eq!(answered.status(), 201);
    let answered = answered.bytes().await.unwrap();
    app.fault("payment", failing_payments.clone()).await;
    let opened_it = app.post_order(&order_body(1), Some("opened-it")).await;
    assert_eq!(
        opened_it.status(),
        502,
        "the failure that opens the breaker"
    );
    let opened_it = opened_it.bytes().await.unwrap();
    let refused = app.post_order(&order_body(1), Some("new-while-open")).await;
    assert_eq!(refused.status(), 503, "a new key is refused while open");

    let mut harmless = order_body(1);
    harmless["extra"] = json!("ignored");
    // The same bytes (answered from memory by them), then other bytes with the same
    // fingerprint, which go the full way.
    for body in [&order_body(1), &harmless] {
        let again = app.post_order(body, Some("answered")).await;
        assert_replay_of(again, 201, &answered).await;
    }
    let again = app.post_order(&order_body(1), Some("opened-it")).await;
    assert_replay_of(again, 502, &opened_it).await;
    let (status, body) = json_of(app.post_order(&order_body(2), Some("answered")).await).await;
    assert_eq!(status, 422, "another body under the key: {body}");
    app.stop().await;

    // Restarted on the same database: nothing in memory, the breaker opened again by an
    // order without a key.
    let app = TestApp::spawn_with(backend, options()).await;
    app.fault("payment", failing_payments).await;
    assert_eq!(app.post_order(&order_body(1), None).await.status(), 502);
    let refused = app
        .post_order(&order_body(1), Some("new-after-restart"))
        .await;
    assert_eq!(refused.status(), 503, "the breaker is open again");
    let again = app.post_order(&order_body(1), Some("answered")).await;
    assert_replay_of(again, 201, &answered).await;
    let (status, body) = json_of(app.post_order(&order_body(2), Some("opened-it")).await).await;
    assert_eq!(status, 422, "another body under the key: {body}");

    // A key whose first request another process still runs: `409` for the same body,
    // `422` for another, as when no breaker is open.
    let body = serde_json::to_vec(&order_body(1)).unwrap();
    let running = Order::create(parse_new_order(&body).unwrap());
    let key = IdempotencyKey::parse("still-running").unwrap();
    let fingerprint = Fingerprint::of(&parse_new_order(&body).unwrap());
    let other_process = Lease {
        owner: "another-process".to_owned(),
        ttl: Duration::from_secs(60),
    };
    app.state
        .saga
        .store()
        .insert_order(
            &running,
            Some(NewKey {
                key: &key,
                fingerprint: &fingerprint,
                expires_at: when::now() + chrono::Duration::hours(1),
            }),
            &common::created_event(),
            &other_process,
        )
        .await
        .unwrap();
    let in_progress = app.post_order(&order_body(1), Some("still-running")).await;
    assert_eq!(in_progress.status(), 409);
    assert!(in_progress.headers().get("retry-after").is_some());
    let (status, body) = json_of(app.post_order(&order_body(2), Some("still-running")).await).await;
    assert_eq!(status, 422, "another body under a running key: {body}");

    let (_, listed) = app.get_json("/orders").await;
    assert_eq!(
        listed["orders"].as_array().unwrap().len(),
        4,
        "two orders before the restart, one after, the running one; none for a refused key"
    );

    // The database failing too: a key in memory is still answered, one that cannot be
    // looked up gets the breaker's `503`, not a `500`.
    app.state.saga.store().close().await;
    let again = app.post_order(&order_body(1), Some("answered")).await;
    assert_replay_of(again, 201, &answered).await;
    let refused = app.post_order(&order_body(1), Some("unknown")).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get("retry-after").is_some());
    app.stop().await;
}

/// `response` is a replay of a first answer with `status` and exactly the bytes `first`.
async fn assert_replay_of(response: reqwest::Response, status: u16, first: &[u8]) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    assert_eq!(response.bytes().await.unwrap(), first);
}

async fn sigterm_lets_in_flight_sagas_finish(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fault(
        "shipping",
        json!({"endpoint": "POST /shipments", "latencyMs": 700}),
    )
    .await;
    let in_flight = {
        let client = app.client.clone();
        let url = format!("{}/orders", app.address);
        tokio::spawn(async move {
            client
                .post(url)
                .json(&order_body(1))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    app.wait_for_call("shipping", "POST /shipments").await;
    let readiness = app.state.readiness.clone();
    let started = std::time::Instant::now();
    let sandbox_urls = app.sandbox().shipping_url.clone();
    app.stop().await;
    assert!(readiness.is_draining(), "unready once shutdown began");
    assert_eq!(in_flight.await.unwrap(), 201, "the saga in flight finished");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within the grace period"
    );
    drop(sandbox_urls);
}

/// A service with a 600 ms saga lease, and a `POST /orders` sent to it (in its own task)
/// whose payment takes `payment_ms`.
async fn order_with_a_slow_payment(
    backend: Backend,
    payment_ms: u64,
) -> (
    TestApp,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            saga_lease: Duration::from_millis(600),
            timeout: Duration::from_secs(5),
            ..Options::default()
        },
    )
    .await;
    app.fault(
        "payment",
        json!({"endpoint": "POST /payments", "latencyMs": payment_ms}),
    )
    .await;
    let client = app.client.clone();
    let url = format!("{}/orders", app.address);
    let sent = tokio::spawn(async move { client.post(url).json(&order_body(1)).send().await });
    (app, sent)
}

async fn a_step_longer_than_the_lease_keeps_it(backend: Backend) {
    let (app, order) = order_with_a_slow_payment(backend, 2000).await;
    // Well past the lease's 600 ms, while the payment is still under way.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        recover(&app).await.claimed,
        0,
        "the running saga renewed its lease; nobody else may take it"
    );
    let answer = order.await.unwrap().unwrap();
    assert_eq!(answer.status(), 201);
    assert_eq!(app.payments().await.calls["POST /payments"], 1);
    app.stop().await;
}

/// A run that finds, while renewing its lease, that another process took the order over
/// stops before its next call instead of racing the new owner.
async fn a_run_whose_lease_was_taken_stops_before_its_next_call(backend: Backend) {
    let (app, answer) = order_with_a_slow_payment(backend, 1500).await;
    app.wait_for_call("payment", "POST /payments").await;
    // Another process takes the order, as if its clock said the lease had run out.
    let other = Lease {
        owner: "another-process".to_owned(),
        ttl: Duration::from_secs(60),
    };
    let later = when::now() + chrono::Duration::minutes(10);
    // A claim skips a row that the saga's own writes hold for a moment (PostgreSQL's
    // `SKIP LOCKED`: the reservation's save, made in the background during the payment,
    // or a lease renewal), so try again; the payment leaves 1.5 s for it.
    let give_up = std::time::Instant::now() + Duration::from_secs(1);
    let taken = loop {
        let taken = app
            .state
            .saga
            .store()
            .claim_expired(&other, later, 10)
            .await
            .unwrap();
        if !taken.is_empty() || std::time::Instant::now() > give_up {
            break taken;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(taken.len(), 1);
    let answer = answer.await.unwrap().unwrap();
    assert_eq!(answer.status(), 202, "the new owner will finish it");
    assert_eq!(app.payments().await.calls["POST /payments"], 1);
    assert_eq!(
        app.shipments().await.calls["POST /shipments"],
        0,
        "the run stopped before shipping"
    );
    app.stop().await;
}

async fn an_open_breaker_pauses_a_running_saga_instead_of_failing_it(backend: Backend) {
    let app = TestApp::spawn_with(backend, with_breaker(2, Duration::from_millis(700))).await;
    // An order stopped before its payment, as a crashed process leaves it.
    let mut order = common::new_order(1);
    let reservation = reserve_in_sandbox(&app, &order).await;
    order.reserved(reservation);
    leave_as_crashed(&app, &order).await;
    // The payment service fails until its breaker opens.
    app.fault(
        "payment",
        json!({"endpoint": "POST /payments", "errorRate": 1.0, "errorStatus": 503}),
    )
    .await;
    let (status, _) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 502);
    app.client
        .delete(format!("{}/_sandbox/faults", app.sandbox().payment_url))
        .send()
        .await
        .unwrap();

    // Recovery meets the open breaker: the order waits, it is not failed.
    assert_eq!(recover(&app).await.claimed, 1);
    let paused = order_json(&app, &order).await;
    assert_eq!(paused["status"], "pending", "{paused}");
    let id = order.id.to_string();
    assert!(has(
        &common::timeline_steps(&app, &id).await,
        "pay",
        "paused"
    ));
    assert_eq!(
        app.inventory().await.reservations[0].status,
        ReservationStatus::Reserved
    );

    // Once the breaker lets calls through again (and the pause is over), a pass
    // completes it.
    let mut passes = 0;
    while order_json(&app, &order).await["status"] == "pending" {
        assert!(passes < 30, "still pending after {passes} passes");
        tokio::time::sleep(Duration::from_millis(200)).await;
        recover(&app).await;
        passes += 1;
    }
    assert!(
        passes >= 3,
        "it rested before being resumed ({passes} passes)"
    );
    assert_eq!(order_json(&app, &order).await["status"], "completed");
    let payments = app.payments().await;
    assert_eq!(
        payments
            .payments
            .iter()
            .filter(|p| p.order_id == id)
            .count(),
        1
    );
    app.stop().await;
}

async fn undeliverable_addresses_do_not_open_the_shipping_breaker(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            retry: order_service::downstream::RetryPolicy::none(),
            ..with_breaker(2, Duration::from_secs(30))
        },
    )
    .await;
    let mut undeliverable = order_body(1);
    undeliverable["address"]["country"] = json!("FAIL");
    for _ in 0..4 {
        let (status, _) = json_of(app.post_order(&undeliverable, None).await).await;
        assert_eq!(status, 502);
    }
    // The shipping service answered every time: it is up, its provider refused.
    let (status, body) = json_of(app.post_order(&order_body(1), None).await).await;
    assert_eq!(status, 201, "{body}");
    app.stop().await;
}

mod replicas {
    use super::*;

    /// A second service process on the same PostgreSQL schema as `first`.
    async fn second_replica(first: &TestApp, base: &str, options: Options) -> TestApp {
        TestApp::spawn_with(
            Backend::Postgres(base.to_owned()),
            Options {
                database_url: Some(first.database_url.clone()),
                inventory_url: Some(first.sandbox().inventory_url.clone()),
                payment_url: Some(first.sandbox().payment_url.clone()),
                shipping_url: Some(first.sandbox().shipping_url.clone()),
                ..options
            },
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_replicas_racing_on_one_key_make_one_order() {
        let Some(Backend::Postgres(base)) = Backend::postgres_or_skip("two_replicas_racing") else {
            return;
        };
        let a = TestApp::spawn(Backend::Postgres(base.clone())).await;
        let b = second_replica(&a, &base, Options::default()).await;
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let client = a.client.clone();
                let url = format!(
                    "{}/orders",
                    if i % 2 == 0 { &a.address } else { &b.address }
                );
                tokio::spawn(async move {
                    let r = client
                        .post(url)
                        .header("Idempotency-Key", "shared-key")
                        .json(&order_body(1))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    (status, r.json::<Value>().await.unwrap())
                })
            })
            .collect();
        let mut ids = std::collections::HashSet::new();
        for t in tasks {
            let (status, body) = t.await.unwrap();
            assert!(status == 201 || status == 409, "{status} {body}");
            if status == 201 {
                ids.insert(body["id"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(ids.len(), 1);
        assert_eq!(a.payments().await.payments.len(), 1);
        assert_eq!(a.inventory().await.reservations.len(), 1);
        b.stop().await;
        a.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_recover_each_crashed_saga_once() {
        let Some(Backend::Postgres(base)) = Backend::postgres_or_skip("replicas_recover") else {
            return;
        };
        let a = TestApp::spawn(Backend::Postgres(base.clone())).await;
        let b = second_replica(&a, &base, Options::default()).await;
        let mut orders = Vec::new();
        for _ in 0..12 {
            let mut order = common::new_order(1);
            let reservation = reserve_in_sandbox(&a, &order).await;
            order.reserved(reservation);
            leave_as_crashed(&a, &order).await;
            orders.push(order);
        }
        let (ra, rb) = tokio::join!(recover(&a), recover(&b));
        assert_eq!(ra.claimed + rb.claimed, 12, "{ra:?} {rb:?}");
        for order in &orders {
            assert_eq!(order_json(&a, order).await["status"], "completed");
        }
        let payments = a.payments().await;
        assert_eq!(payments.payments.len(), 12);
        assert_eq!(
            payments.calls["POST /payments"], 12,
            "each saga driven once"
        );
        b.stop().await;
        a.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn saga_left_at_shutdown_is_taken_over_by_another_replica() {
        let Some(Backend::Postgres(base)) = Backend::postgres_or_skip("taken_over") else {
            return;
        };
        let patient = || Options {
            timeout: Duration::from_secs(10),
            ..Options::default()
        };
        let a = TestApp::spawn_with(Backend::Postgres(base.clone()), patient()).await;
        let b = second_replica(&a, &base, patient()).await;
        // A saga slower than the grace period (5 s in tests).
        a.fault(
            "shipping",
            json!({"endpoint": "POST /shipments", "latencyMs": 6500}),
        )
        .await;
        let client = a.client.clone();
        let url = format!("{}/orders", a.address);
        let first = tokio::spawn(async move { client.post(url).json(&order_body(1)).send().await });
        a.wait_for_call("shipping", "POST /shipments").await;
        let (_, listed) = b.get_json("/orders").await;
        let id = listed["orders"][0]["id"].as_str().unwrap().to_owned();
        // Stop `a` (its sandbox stays up for `b`). A real process would be gone now; in this
        // test its saga task lingers in the runtime, and finds its lease taken.
        let a_sandbox = {
            let mut a = a;
            let sandbox = a.sandbox.take();
            a.stop().await;
            sandbox
        };
        b.client
            .delete(format!("{}/_sandbox/faults", b.sandbox_urls().2))
            .send()
            .await
            .unwrap();
        // The released lease lets `b` take the saga over at once.
        let report = recover(&b).await;
        assert_eq!(report.claimed, 1, "{report:?}");
        let _ = first.await;
        let (_, order) = b.get_json(&format!("/orders/{id}")).await;
        assert_eq!(order["status"], "completed", "{order}");
        let steps = common::timeline_steps(&b, &id).await;
        assert!(has(&steps, "recovery", "claimed"), "{steps:?}");
        b.stop().await;
        if let Some(sandbox) = a_sandbox {
            sandbox.shutdown().await;
        }
    }
}

/// Test options with a circuit breaker that opens after `failure_threshold` failed calls
/// and stays open for `cooldown`.
fn with_breaker(failure_threshold: u32, cooldown: Duration) -> Options {
    Options {
        breaker: order_service::downstream::BreakerSettings {
            failure_threshold,
            cooldown,
        },
        ..Options::default()
    }
}
