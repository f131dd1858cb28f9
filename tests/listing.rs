//! `GET /orders` and `GET /orders/{id}/events`, on SQLite and PostgreSQL.

#[macro_use]
mod common;

use std::collections::HashSet;

use common::{Backend, TestApp, json_of, order_body};
use serde_json::{Value, json};

on_both_databases!(
    lists_newest_first_with_filters,
    pages_are_stable_while_orders_are_created,
    bad_parameters_are_422_naming_them,
    timeline_of_a_success,
    timeline_of_a_compensated_failure,
    timeline_of_an_unknown_order_is_404,
);

fn body_for(user: &str, qty: u32) -> Value {
    let mut body = order_body(qty);
    body["userId"] = json!(user);
    body
}

async fn ids(app: &TestApp, query: &str) -> (Vec<String>, Option<String>) {
    let (status, page) = app.get_json(&format!("/orders{query}")).await;
    assert_eq!(status, 200, "{page}");
    let ids = page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, page["nextCursor"].as_str().map(str::to_owned))
}

async fn lists_newest_first_with_filters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut created = Vec::new();
    for (user, qty) in [("alice", 1), ("bob", 1), ("alice", 101), ("alice", 2)] {
        let (_, order) = json_of(app.post_order(&body_for(user, qty), None).await).await;
        created.push(order["id"].as_str().unwrap().to_owned());
    }
    let (all, next) = ids(&app, "").await;
    assert_eq!(all, created.iter().rev().cloned().collect::<Vec<_>>());
    assert!(next.is_none());

    let (alice, _) = ids(&app, "?userId=alice").await;
    assert_eq!(
        alice,
        vec![created[3].clone(), created[2].clone(), created[0].clone()]
    );
    let (cancelled, _) = ids(&app, "?status=cancelled").await;
    assert_eq!(
        cancelled,
        vec![created[2].clone()],
        "the 101-unit order ran out of stock"
    );
    let (alice_completed, _) = ids(&app, "?userId=alice&status=completed").await;
    assert_eq!(
        alice_completed,
        vec![created[3].clone(), created[0].clone()]
    );

    let (_, second) = app.get_json(&format!("/orders/{}", created[1])).await;
    let at = second["createdAt"].as_str().unwrap();
    let (from_second, _) = ids(&app, &format!("?createdAfter={at}")).await;
    assert_eq!(from_second.len(), 3, "createdAfter is inclusive");
    let (before_second, _) = ids(&app, &format!("?createdBefore={at}")).await;
    assert_eq!(
        before_second,
        vec![created[0].clone()],
        "createdBefore is exclusive"
    );
    let (_, page) = app.get_json("/orders?limit=1").await;
    assert_eq!(page["orders"][0]["status"], "completed");
    assert!(
        page["orders"][0]["items"].is_array(),
        "full orders in the list"
    );
    app.stop().await;
}

async fn pages_are_stable_while_orders_are_created(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut created = Vec::new();
    for _ in 0..25 {
        let (_, order) = json_of(app.post_order(&body_for("pager", 1), None).await).await;
        created.push(order["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("?userId=pager&limit=10&cursor={c}"),
            None => "?userId=pager&limit=10".to_owned(),
        };
        let (page, next) = ids(&app, &query).await;
        seen.extend(page);
        pages += 1;
        // New orders arrive between pages; they are newer than every page already read.
        json_of(app.post_order(&body_for("pager", 1), None).await).await;
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no order twice");
    assert_eq!(
        seen,
        created.iter().rev().cloned().collect::<Vec<_>>(),
        "none skipped, newest first"
    );
    app.stop().await;
}

async fn bad_parameters_are_422_naming_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("status=shipped", "status"),
        ("createdAfter=last-week", "createdAfter"),
        ("createdBefore=2026-13-01", "createdBefore"),
        ("cursor=not-a-cursor", "cursor"),
        ("userId=u%00", "userId"),
    ] {
        let (status, body) = app.get_json(&format!("/orders?{query}")).await;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["query", param]),
            "{query}: {body}"
        );
    }
    let (status, body) = app.get_json("/orders?limit=0&status=x").await;
    assert_eq!(status, 422);
    assert_eq!(
        body["detail"].as_array().unwrap().len(),
        2,
        "all problems at once"
    );
    app.stop().await;
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn timeline_of_a_success(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, order) = json_of(app.post_order(&order_body(1), None).await).await;
    common::settled(&app, order["id"].as_str().unwrap()).await;
    assert_eq!(
        common::timeline_steps(&app, order["id"].as_str().unwrap()).await,
        pairs(&[
            ("create", "pending"),
            ("reserve", "reserved"),
            ("payment", "paid"),
            ("shipment", "shipped"),
            ("commit_reservation", "committed"),
        ])
    );
    app.stop().await;
}

async fn timeline_of_a_compensated_failure(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.fault("payment", json!({"declineRate": 1.0})).await;
    let (_, order) = json_of(app.post_order(&order_body(1), None).await).await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        common::timeline_steps(&app, id).await,
        pairs(&[
            ("create", "pending"),
            ("reserve", "reserved"),
            ("payment", "declined"),
            ("release_reservation", "released"),
        ])
    );
    let (_, body) = app.get_json(&format!("/orders/{id}/events")).await;
    assert_eq!(body["events"][2]["upstreamStatus"], json!(null));
    assert!(body["events"][2]["durationMs"].is_number());
    app.stop().await;
}

async fn timeline_of_an_unknown_order_is_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, body) = app
        .get_json(&format!("/orders/{}/events", uuid::Uuid::now_v7()))
        .await;
    assert_eq!((status, body), (404, json!({"detail": "Order not found"})));
    app.stop().await;
}
