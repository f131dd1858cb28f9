//! How many durable writes an order costs: each is a commit's worth of work (and, on
//! PostgreSQL, a statement), so the count is part of the saga's design. Alone in its test
//! binary, because it reads the process-wide `db_write_batch_size` and
//! `db_write_duration_seconds` metrics.

#[macro_use]
mod common;

use common::{Backend, TestApp, json_of, metric_total, order_body};

on_both_databases!(a_completed_order_takes_four_durable_writes_or_three_where_reserves_replay);

/// What this process has written so far on the backend's database.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Writes {
    /// Writes committed (the sum of `db_write_batch_size`).
    committed: f64,
    /// Writes a saga waited for, by kind (the counts of `db_write_duration_seconds`).
    new_orders: f64,
    saves: f64,
    saves_with_deferred_flush: f64,
}

async fn writes_so_far(app: &TestApp, backend: &Backend) -> Writes {
    let text = app.metrics_text().await;
    let database = backend.metrics_label();
    let waited = |write: &str| {
        metric_total(
            &text,
            "db_write_duration_seconds_count",
            &[database, &format!("write=\"{write}\"")],
        )
    };
    Writes {
        committed: metric_total(&text, "db_write_batch_size_sum", &[database]),
        new_orders: waited("new_order"),
        saves: waited("progress"),
        saves_with_deferred_flush: waited("progress_deferred"),
    }
}

/// [`writes_so_far`] once it stopped moving. A settled order is visible as soon as its
/// last save committed, but the saga times that save a moment later, when the commit's
/// answer reaches it: reading at once could leave that save out of one count and put it
/// in the next.
async fn writes_once_quiet(app: &TestApp, backend: &Backend) -> Writes {
    let mut last = writes_so_far(app, backend).await;
    let mut unchanged = 0;
    while unchanged < 3 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let now = writes_so_far(app, backend).await;
        unchanged = if now == last { unchanged + 1 } else { 0 };
        last = now;
    }
    last
}

/// The order with its key, the reservation, the shipment (with the payment's result)
/// and the settled order: four, not one per step; the client's answer waits for the
/// first three only. Where the inventory replays a reserve by its key, the reservation
/// is saved with the shipment too: three. (One test, so that the two apps' writes are
/// counted one after the other in the process-wide metric.)
async fn a_completed_order_takes_four_durable_writes_or_three_where_reserves_replay(
    backend: Backend,
) {
    // Each write is also timed once by its kind (`db_write_duration_seconds`): the order
    // with its key; the shipment's save, which the answer waits for; the reservation's
    // and the settled order's, whose flushes wait for a later commit's.
    let app = TestApp::spawn(backend.clone()).await;
    let writes = writes_of_one_order(&app, &backend).await;
    assert_eq!(
        writes,
        Writes {
            committed: 4.0,
            new_orders: 1.0,
            saves: 1.0,
            saves_with_deferred_flush: 2.0,
        }
    );
    app.stop().await;

    let app = TestApp::spawn_where_reserves_replay(backend.clone()).await;
    let writes = writes_of_one_order(&app, &backend).await;
    assert_eq!(
        writes,
        Writes {
            committed: 3.0,
            new_orders: 1.0,
            saves: 1.0,
            saves_with_deferred_flush: 1.0,
        }
    );
    app.stop().await;
}

/// The durable writes of one completed order, from its `POST` until it is settled; also
/// checks that every step's events were saved.
async fn writes_of_one_order(app: &TestApp, backend: &Backend) -> Writes {
    // The first order also lets start-up's own writes (the first key purge) land.
    let (status, first) = json_of(app.post_order(&order_body(1), Some("w-1")).await).await;
    assert_eq!(status, 201);
    common::settled(app, first["id"].as_str().unwrap()).await;
    let before = writes_once_quiet(app, backend).await;
    let (status, order) = json_of(app.post_order(&order_body(1), Some("w-2")).await).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "completed");
    let id = order["id"].as_str().unwrap();
    common::settled(app, id).await;
    let after = writes_once_quiet(app, backend).await;
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
    Writes {
        committed: after.committed - before.committed,
        new_orders: after.new_orders - before.new_orders,
        saves: after.saves - before.saves,
        saves_with_deferred_flush: after.saves_with_deferred_flush
            - before.saves_with_deferred_flush,
    }
}
