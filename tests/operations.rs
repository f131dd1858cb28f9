//! Operations: readiness, metrics, trace propagation, the OpenAPI document and Swagger UI.

#[macro_use]
mod common;

use common::{Backend, TestApp, json_of, order_body};
use serde_json::{Value, json};

on_both_databases!(
    ready_when_database_and_migrations_are_fine,
    unready_while_shutting_down,
    unready_when_the_database_is_unreachable,
    unready_when_a_migration_is_missing,
    metric_families_are_present_and_move_after_an_order,
    traceparent_reaches_every_downstream_call,
    an_order_without_traceparent_gets_a_trace_of_its_own,
);

async fn ready_when_database_and_migrations_are_fine(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"status": "ready", "checks": {"database": "ok", "migrations": "ok", "shutdown": "ok"}})
    );
    app.stop().await;
}

async fn unready_while_shutting_down(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.state.readiness.begin_shutdown();
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unready");
    assert!(
        body["checks"]["shutdown"]
            .as_str()
            .unwrap()
            .starts_with("draining")
    );
    assert_eq!(body["checks"]["database"], "ok");
    // Liveness is unaffected.
    assert_eq!(app.get_json("/health").await.0, 200);
    app.stop().await;
}

async fn unready_when_the_database_is_unreachable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.state.saga.store().close().await;
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 503);
    assert!(
        body["checks"]["database"]
            .as_str()
            .unwrap()
            .starts_with("unreachable"),
        "{body}"
    );
    assert!(
        body["checks"]["migrations"]
            .as_str()
            .unwrap()
            .starts_with("unknown")
    );
    assert_eq!(app.get_json("/health").await.0, 200);
    app.stop().await;
}

async fn unready_when_a_migration_is_missing(backend: Backend) {
    let app = TestApp::spawn(backend.clone()).await;
    // Forget the newest applied migration, as if this binary were newer than the schema.
    match &backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
            sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)")
                .execute(&pool)
                .await
                .unwrap();
        }
        Backend::Postgres(_) => {
            let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
            sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)")
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 503);
    assert!(
        body["checks"]["migrations"]
            .as_str()
            .unwrap()
            .starts_with("pending"),
        "{body}"
    );
    app.stop().await;
}

/// The value of the first sample of `family` whose labels include all of `labels`.
fn sample(text: &str, family: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn metric_families_are_present_and_move_after_an_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before = app.metrics_text().await;
    let created_before = sample(
        &before,
        "http_requests_total",
        &[r#"route="/orders""#, r#"status="201""#],
    )
    .unwrap_or(0.0);
    let payments_before = sample(
        &before,
        "saga_step_attempts_total",
        &[
            r#"service="payment""#,
            r#"step="payment""#,
            r#"outcome="ok""#,
        ],
    )
    .unwrap_or(0.0);
    assert_eq!(
        app.post_order(&order_body(1), Some("m-1")).await.status(),
        201
    );
    assert_eq!(
        app.post_order(&order_body(1), Some("m-1")).await.status(),
        201
    );
    let id = uuid::Uuid::now_v7();
    assert_eq!(app.get_order(&id.to_string()).await.status(), 404);
    let after = app.metrics_text().await;

    assert!(
        sample(
            &after,
            "http_requests_total",
            &[r#"route="/orders""#, r#"status="201""#]
        )
        .unwrap()
            >= created_before + 2.0
    );
    assert!(
        sample(
            &after,
            "saga_step_attempts_total",
            &[
                r#"service="payment""#,
                r#"step="payment""#,
                r#"outcome="ok""#
            ]
        )
        .unwrap()
            >= payments_before + 1.0
    );
    // Labelled by route template, never by raw path.
    assert!(
        sample(
            &after,
            "http_requests_total",
            &[r#"route="/orders/{id}""#, r#"status="404""#]
        )
        .is_some()
    );
    assert!(!after.contains(&id.to_string()), "no raw ids in labels");
    for family in [
        "http_request_duration_seconds_bucket",
        "orders_finished_total",
        "saga_step_duration_seconds_bucket",
        "idempotency_replays_total",
        "sagas_in_flight",
        "orders_needs_attention",
        "db_pool_connections",
        "db_write_batch_size_bucket",
        "db_write_duration_seconds_bucket",
    ] {
        assert!(
            after.lines().any(|l| l.starts_with(family)),
            "{family} missing from\n{after}"
        );
    }
    assert!(sample(&after, "orders_finished_total", &[r#"status="completed""#]).unwrap() >= 1.0);
    // Write durations have buckets of their own, down to 100 µs (a SQLite commit).
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("db_write_duration_seconds_bucket{")
                && l.contains(r#"le="0.0001""#)),
        "no 100 µs bucket for db_write_duration_seconds"
    );
    assert!(
        !after
            .lines()
            .any(|l| l.starts_with("http_request_duration_seconds_bucket{")
                && l.contains(r#"le="0.0001""#)),
        "other durations keep the common buckets"
    );
    app.stop().await;
}

async fn traceparent_reaches_every_downstream_call(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = app
        .client
        .post(format!("{}/orders", app.address))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&order_body(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let (_, order) = json_of(response).await;
    common::settled(&app, order["id"].as_str().unwrap()).await;
    let mut calls = 0;
    for service in ["inventory", "payment", "shipping"] {
        for request in app.requests(service).await.requests {
            let traceparent = request
                .traceparent
                .unwrap_or_else(|| panic!("{} without traceparent", request.endpoint));
            let parts: Vec<_> = traceparent.split('-').collect();
            assert_eq!(parts[1], trace_id, "same trace for {}", request.endpoint);
            assert_ne!(
                parts[2], "00f067aa0ba902b7",
                "a child span, not the caller's"
            );
            calls += 1;
        }
    }
    assert_eq!(calls, 4);
    app.stop().await;
}

async fn an_order_without_traceparent_gets_a_trace_of_its_own(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut ids = Vec::new();
    for qty in [1, 2] {
        let response = app
            .client
            .post(format!("{}/orders", app.address))
            .json(&order_body(qty))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let (_, order) = json_of(response).await;
        let id = order["id"].as_str().unwrap().to_owned();
        common::settled(&app, &id).await;
        ids.push(id);
    }
    // The calls of each order, told apart by their idempotency keys (`<order>:<action>`).
    let mut traces: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for service in ["inventory", "payment", "shipping"] {
        for request in app.requests(service).await.requests {
            let key = request.idempotency_key.expect("every call has a key");
            let order = key.split(':').next().unwrap().to_owned();
            let traceparent = request
                .traceparent
                .unwrap_or_else(|| panic!("{} without traceparent", request.endpoint));
            let parts: Vec<_> = traceparent.split('-').collect();
            assert_eq!(parts.len(), 4, "{traceparent}");
            assert_eq!(parts[1].len(), 32, "{traceparent}");
            assert_ne!(parts[1], "0".repeat(32), "{traceparent}");
            assert_eq!(parts[3], "01", "a new trace is sampled: {traceparent}");
            traces.entry(order).or_default().push(parts[1].to_owned());
        }
    }
    assert_eq!(traces.keys().cloned().collect::<Vec<_>>(), {
        let mut sorted = ids.clone();
        sorted.sort();
        sorted
    });
    for (order, trace_ids) in &traces {
        assert_eq!(trace_ids.len(), 4, "calls of {order}");
        assert!(
            trace_ids.iter().all(|t| t == &trace_ids[0]),
            "one trace for all calls of {order}: {trace_ids:?}"
        );
    }
    let firsts: Vec<_> = traces.values().map(|t| &t[0]).collect();
    assert_ne!(firsts[0], firsts[1], "each order starts its own trace");
    app.stop().await;
}

mod documentation {
    use super::*;

    fn all_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "$ref" {
                        out.push(v.as_str().unwrap().to_owned());
                    }
                    all_refs(v, out);
                }
            }
            Value::Array(list) => list.iter().for_each(|v| all_refs(v, out)),
            _ => {}
        }
    }

    #[tokio::test]
    async fn openapi_document_lists_every_route_and_resolves() {
        let app = TestApp::spawn(Backend::Sqlite).await;
        let (status, doc) = app.get_json("/openapi.json").await;
        assert_eq!(status, 200);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let mut operations: Vec<String> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| format!("{} {path}", method.to_uppercase()))
            })
            .collect();
        operations.sort();
        assert_eq!(
            operations,
            vec![
                "GET /health",
                "GET /metrics",
                "GET /orders",
                "GET /orders/{id}",
                "GET /orders/{id}/events",
                "GET /ready",
                "POST /orders",
                "POST /orders/{id}/resolve",
                "POST /orders/{id}/retry",
            ]
        );
        // Every documented operation is served (no fallback 404/405 body).
        for operation in &operations {
            let (method, path) = operation.split_once(' ').unwrap();
            let url = format!(
                "{}{}",
                app.address,
                path.replace("{id}", &uuid::Uuid::now_v7().to_string())
            );
            let response = match method {
                "GET" => app.client.get(url).send().await.unwrap(),
                _ => app
                    .client
                    .post(url)
                    .json(&order_body(1))
                    .send()
                    .await
                    .unwrap(),
            };
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert_ne!(body, r#"{"detail":"Not Found"}"#, "{operation} not served");
            assert_ne!(status, 405, "{operation} not served");
        }
        // Every reference points at a schema that exists.
        let mut refs = Vec::new();
        all_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for reference in refs {
            let name = reference.strip_prefix("#/components/schemas/").unwrap();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{reference} unresolved"
            );
        }
        // The 422 validation shape is described.
        assert!(doc["components"]["schemas"]["ValidationErrorBody"].is_object());
        app.stop().await;
    }

    #[tokio::test]
    async fn swagger_ui_is_served_without_external_urls() {
        let app = TestApp::spawn(Backend::Sqlite).await;
        let page = app
            .client
            .get(format!("{}/docs/", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("swagger-ui"), "{html}");
        let assets: Vec<&str> = html
            .split(['"', '\''])
            .filter(|s| s.ends_with(".js") || s.ends_with(".css") || s.ends_with(".png"))
            .collect();
        assert!(!assets.is_empty(), "{html}");
        for asset in assets {
            assert!(
                !asset.contains("://") && !asset.starts_with("//"),
                "external asset {asset}"
            );
            let url = format!("{}/docs/{}", app.address, asset.trim_start_matches("./"));
            let response = app.client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{url}");
            let text = response.text().await.unwrap_or_default();
            if asset.contains("initializer") {
                assert!(text.contains("/openapi.json"), "{text}");
                assert!(!text.contains("https://petstore"), "{text}");
            }
        }
        app.stop().await;
    }
}
