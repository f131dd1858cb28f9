//! `GET /_sandbox/requests`: the recent contract requests with their correlation headers.

use platform_sandbox::Service;
use platform_sandbox::requests::RecentRequests;
use reqwest::StatusCode;
use serde_json::json;

use crate::common;

#[tokio::test]
async fn requests_are_recorded_with_their_correlation_headers() {
    let sandbox = common::start().await;
    let response = sandbox
        .client
        .post(sandbox.url(Service::Payment, "/payments"))
        .header("Idempotency-Key", "order-1:payment")
        .header("X-Request-Id", "req-1")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .json(&json!({"id": "p1", "order_id": "o1", "amount": 5, "status": "pending"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    sandbox
        .client
        .get(sandbox.url(Service::Payment, "/payments/p1"))
        .send()
        .await
        .unwrap();
    sandbox
        .client
        .get(sandbox.url(Service::Payment, "/health"))
        .send()
        .await
        .unwrap();

    let recent: RecentRequests = sandbox
        .client
        .get(sandbox.url(Service::Payment, "/_sandbox/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        recent.requests.len(),
        2,
        "health and admin routes are not recorded"
    );
    let first = &recent.requests[0];
    assert_eq!(first.endpoint, "POST /payments");
    assert_eq!(first.idempotency_key.as_deref(), Some("order-1:payment"));
    assert_eq!(first.request_id.as_deref(), Some("req-1"));
    assert_eq!(
        first.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(recent.requests[1].endpoint, "GET /payments/{id}");
    assert_eq!(recent.requests[1].idempotency_key, None);

    let cleared = sandbox
        .client
        .delete(sandbox.url(Service::Payment, "/_sandbox/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    let recent: RecentRequests = sandbox
        .client
        .get(sandbox.url(Service::Payment, "/_sandbox/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(recent.requests.is_empty());
}

#[tokio::test]
async fn faulted_requests_are_recorded_too() {
    let sandbox = common::start().await;
    sandbox
        .client
        .post(sandbox.url(Service::Inventory, "/_sandbox/faults"))
        .json(&json!({"errorRate": 1.0}))
        .send()
        .await
        .unwrap();
    let response = sandbox
        .client
        .post(sandbox.url(Service::Inventory, "/reserve"))
        .json(&json!({"orderId": "o", "items": [{"sku": "SKU-001", "qty": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let recent: RecentRequests = sandbox
        .client
        .get(sandbox.url(Service::Inventory, "/_sandbox/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recent.requests.len(), 1);
    assert_eq!(recent.requests[0].endpoint, "POST /reserve");
}
