//! `/_sandbox/faults`: the view, merging, and 422s that name the bad field.

use platform_sandbox::FaultView;
use platform_sandbox::Service::{Inventory, Payment, Shipping};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::start;

#[tokio::test]
async fn get_shows_no_faults_by_default_for_every_endpoint() {
    let sandbox = start().await;
    let (status, body) = sandbox.get(Inventory, "/_sandbox/faults").await;
    assert_eq!(status, StatusCode::OK);
    let view: FaultView = serde_json::from_value(body).unwrap();
    assert_eq!(view.service, Inventory);
    assert!(view.endpoints.is_empty());
    let labels: Vec<&str> = view.effective.keys().map(String::as_str).collect();
    assert_eq!(
        labels,
        [
            "POST /admin/seed",
            "POST /reservations/{id}/commit",
            "POST /reservations/{id}/release",
            "POST /reserve"
        ]
    );
    assert!(
        view.effective
            .values()
            .all(|e| e.error_rate == 0.0 && e.latency_ms == 0)
    );
}

#[tokio::test]
async fn post_merges_into_the_scope_and_answers_the_full_settings() {
    let sandbox = start().await;
    sandbox
        .set_faults(
            Payment,
            json!({"endpoint": "POST /payments", "latencyMs": 10}),
        )
        .await;
    let body = sandbox
        .set_faults(
            Payment,
            json!({"endpoint": "POST /payments", "errorRate": 0.25, "errorStatus": 500}),
        )
        .await;
    let view: FaultView = serde_json::from_value(body).unwrap();
    let own = &view.endpoints["POST /payments"];
    assert_eq!(
        (own.latency_ms, own.error_rate, own.error_status),
        (Some(10), Some(0.25), Some(500))
    );
    let effective = view.effective["POST /payments"];
    assert_eq!((effective.latency_ms, effective.error_status), (10, 500));
    assert_eq!(view.effective["GET /payments/{id}"].latency_ms, 0);
}

async fn rejected(service: platform_sandbox::Service, settings: Value) -> Value {
    let sandbox = start().await;
    let (status, body) = sandbox.post(service, "/_sandbox/faults", settings).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // A refused body changes nothing.
    let (_, view) = sandbox.get(service, "/_sandbox/faults").await;
    assert_eq!(view["serviceWide"], json!({}));
    assert_eq!(view["endpoints"], json!({}));
    body
}

#[tokio::test]
async fn rate_above_one_is_422_naming_the_field() {
    let body = rejected(Payment, json!({"errorRate": 1.5})).await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "errorRate"]));
    assert_eq!(body["detail"][0]["type"], "less_than_equal");
}

#[tokio::test]
async fn negative_rate_and_negative_latency_are_422_naming_both_fields() {
    let body = rejected(Shipping, json!({"hangRate": -0.1, "latencyMs": -5})).await;
    let mut locs: Vec<Value> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|issue| issue["loc"].clone())
        .collect();
    locs.sort_by_key(|loc| loc.to_string());
    assert_eq!(
        locs,
        [json!(["body", "hangRate"]), json!(["body", "latencyMs"])]
    );
}

#[tokio::test]
async fn unsupported_error_status_is_422() {
    let body = rejected(Inventory, json!({"errorStatus": 404})).await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "errorStatus"]));
}

#[tokio::test]
async fn wrong_field_type_is_422_naming_the_field() {
    let body = rejected(Inventory, json!({"dropResponseRate": "NaN"})).await;
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "dropResponseRate"])
    );
    assert_eq!(body["detail"][0]["type"], "float_type");
    let body = rejected(Inventory, json!({"honorIdempotencyKey": "yes"})).await;
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "honorIdempotencyKey"])
    );
}

#[tokio::test]
async fn unknown_endpoint_is_422_naming_endpoint() {
    let body = rejected(
        Shipping,
        json!({"endpoint": "PATCH /shipments/{id}", "errorRate": 1}),
    )
    .await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "endpoint"]));
}

#[tokio::test]
async fn unknown_field_is_422_so_typos_are_not_ignored() {
    let body = rejected(Payment, json!({"errorrate": 1})).await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "errorrate"]));
    assert_eq!(body["detail"][0]["type"], "extra_forbidden");
}

#[tokio::test]
async fn decline_rate_outside_the_payment_service_is_422() {
    let body = rejected(Inventory, json!({"declineRate": 0.5})).await;
    assert_eq!(body["detail"][0]["loc"], json!(["body", "declineRate"]));
}

#[tokio::test]
async fn body_that_is_not_an_object_is_422_at_body() {
    let body = rejected(Payment, json!([1, 2])).await;
    assert_eq!(body["detail"][0]["loc"], json!(["body"]));
}
