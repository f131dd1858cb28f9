//! Contract conformance of the shipping service.

use platform_sandbox::Service::Shipping;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{shipment_body, start};

#[tokio::test]
async fn health_names_the_shipping_service() {
    let sandbox = start().await;
    let (status, body) = sandbox.get(Shipping, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok", "service": "Shipping Service"}));
}

#[tokio::test]
async fn create_shipment_is_201_with_status_shipped() {
    let sandbox = start().await;
    let request = shipment_body("ship-1", "IN");
    let (status, body) = sandbox.post(Shipping, "/shipments", request.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["status"], "shipped");
    assert_eq!(body["id"], "ship-1");
    assert_eq!(body["order_id"], "order-1");
    assert_eq!(body["address"], request["address"]);
    assert_eq!(body["items"], request["items"]);
}

#[tokio::test]
async fn fail_country_in_any_case_is_502_and_stored_as_failed() {
    let sandbox = start().await;
    let (status, body) = sandbox
        .post(Shipping, "/shipments", shipment_body("ship-f", "fAiL"))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        body,
        json!({"detail": "Shipping provider reported failure for shipment"})
    );
    let (status, stored) = sandbox.get(Shipping, "/shipments/ship-f").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["status"], "failed");
}

#[tokio::test]
async fn duplicate_shipment_id_is_a_500() {
    let sandbox = start().await;
    sandbox
        .post(Shipping, "/shipments", shipment_body("ship-1", "IN"))
        .await;
    let (status, body) = sandbox
        .post(Shipping, "/shipments", shipment_body("ship-1", "IN"))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, json!({"detail": "Shipment ship-1 already exists"}));
    assert_eq!(sandbox.shipping_ledger().await.shipments.len(), 1);
}

#[tokio::test]
async fn get_of_unknown_shipment_is_404() {
    let sandbox = start().await;
    let (status, body) = sandbox.get(Shipping, "/shipments/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"detail": "Shipment not found"}));
}

#[tokio::test]
async fn list_answers_every_shipment_in_creation_order() {
    let sandbox = start().await;
    for id in ["b", "a", "c"] {
        sandbox
            .post(Shipping, "/shipments", shipment_body(id, "IN"))
            .await;
    }
    let (status, body) = sandbox.get(Shipping, "/shipments").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b", "a", "c"]);
}

#[tokio::test]
async fn put_changes_only_the_given_fields() {
    let sandbox = start().await;
    let (_, created) = sandbox
        .post(Shipping, "/shipments", shipment_body("ship-1", "IN"))
        .await;
    let (status, updated) = sandbox
        .call(
            Method::PUT,
            Shipping,
            "/shipments/ship-1",
            json!({"status": "delivered"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["status"], "delivered");
    assert_eq!(updated["address"], created["address"]);
    let (_, fetched) = sandbox.get(Shipping, "/shipments/ship-1").await;
    assert_eq!(fetched, updated);
}

#[tokio::test]
async fn put_of_unknown_shipment_is_404() {
    let sandbox = start().await;
    let (status, _) = sandbox
        .call(
            Method::PUT,
            Shipping,
            "/shipments/nope",
            json!({"status": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_removes_the_shipment_and_unknown_is_404() {
    let sandbox = start().await;
    sandbox
        .post(Shipping, "/shipments", shipment_body("ship-1", "IN"))
        .await;
    let (status, body) = sandbox
        .call(Method::DELETE, Shipping, "/shipments/ship-1", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"deleted": true, "id": "ship-1"}));
    let (status, _) = sandbox.get(Shipping, "/shipments/ship-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = sandbox
        .call(Method::DELETE, Shipping, "/shipments/ship-1", Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn shipment_without_address_is_422_naming_the_field() {
    let sandbox = start().await;
    let (status, body) = sandbox
        .post(
            Shipping,
            "/shipments",
            json!({"id": "s", "order_id": "o", "items": []}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "address"]));
}
