//! How many durable writes an order costs: each is a commit's worth of work (and, on
//! PostgreSQL, a statement), so the count is part of the saga's design. Alone in its test
//! binary, because it reads the process-wide `db_write_batch_size` metric.

#[macro_use]
mod common;

use common::{Backend, TestApp, json_of, order_body};

on_both_databases!(a_completed_order_takes_four_durable_writes_or_three_where_reserves_replay);

/// Writes committed so far by this process on the backend's database (the sum of
/// `db_write_batch_size`).
async fn writes_so_far(app: &TestApp, backend: &Backend) -> f64 {
    let text = app.metrics_text().await;
    let database = match backend {
        Backend::Sqlite => "database=\"sqlite\"",
        Backend::Postgres(_) => "database=\"postgres\"",
    };
    text.lines()
        .filter(|l| l.starts_with("db_write_batch_size_sum{") && l.contains(database))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// The order with its key, the reservation, the shipment (with the payment's result)
/// and the settled order: four, not one per step; the client's answer waits for the
/// first three only. Where the inventory replays a reserve by its key, the reservation
/// is saved with the shipment too: three. (One test, so that the two apps' writes are
/// counted one after the other in the process-wide metric.)
async fn a_completed_order_takes_four_durable_writes_or_three_where_reserves_replay(
    backend: Backend,
) {
    let app = TestApp::spawn(backend.clone()).await;
    assert_eq!(writes_of_one_order(&app, &backend).await, 4.0);
    app.stop().await;

    let app = TestApp::spawn_where_reserves_replay(backend.clone()).await;
    assert_eq!(writes_of_one_order(&app, &backend).await, 3.0);
    app.stop().await;
}

/// The durable writes of one completed order, from its `POST` until it is settled; also
/// checks that every step's events were saved.
async fn writes_of_one_order(app: &TestApp, backend: &Backend) -> f64 {
    // The first order also lets start-up's own writes (the first key purge) land.
    let (status, first) = json_of(app.post_order(&order_body(1), Some("w-1")).await).await;
    assert_eq!(status, 201);
    common::settled(app, first["id"].as_str().unwrap()).await;
    let before = writes_so_far(app, backend).await;
    let (status, order) = json_of(app.post_order(&order_body(1), Some("w-2")).await).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "completed");
    let id = order["id"].as_str().unwrap();
    common::settled(app, id).await;
    let after = writes_so_far(app, backend).await;
    let steps = common::timeline_steps(app, id).await;
    for (step, outcome) in [
        ("reserve", "reserved"),
        ("payment", "paid"),
        ("shipment", "shipped"),
    ] {
        assert!(
            steps.iter().any(|(s, o)| s == step && o == outcome),
            "the deferred steps' events are saved with a later step's: {steps:?}"
        );
    }
    after - before
}
