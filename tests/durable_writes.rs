//! How many durable writes an order costs: each is a commit's worth of work (and, on
//! PostgreSQL, a statement), so the count is part of the saga's design. Alone in its test
//! binary, because it reads the process-wide `db_write_batch_size` metric.

#[macro_use]
mod common;

use common::{Backend, TestApp, order_body};

on_both_databases!(a_completed_order_takes_four_durable_writes);

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
/// and the settled order: four, not one per step.
async fn a_completed_order_takes_four_durable_writes(backend: Backend) {
    let app = TestApp::spawn(backend.clone()).await;
    // The first order also lets start-up's own writes (the first key purge) land.
    assert_eq!(
        app.post_order(&order_body(1), Some("w-1")).await.status(),
        201
    );
    let before = writes_so_far(&app, &backend).await;
    assert_eq!(
        app.post_order(&order_body(1), Some("w-2")).await.status(),
        201
    );
    let after = writes_so_far(&app, &backend).await;
    assert_eq!(after - before, 4.0);
    let steps = common::timeline_steps(&app, &latest_order_id(&app).await).await;
    for (step, outcome) in [("payment", "paid"), ("shipment", "shipped")] {
        assert!(
            steps.iter().any(|(s, o)| s == step && o == outcome),
            "the payment's events are saved with the shipment's: {steps:?}"
        );
    }
    app.stop().await;
}

async fn latest_order_id(app: &TestApp) -> String {
    let (_, page) = app.get_json("/orders?limit=1").await;
    page["orders"][0]["id"].as_str().unwrap().to_owned()
}
