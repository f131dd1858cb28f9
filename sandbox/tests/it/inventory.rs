//! Contract conformance of the inventory service.

use platform_sandbox::ledger::ReservationStatus;
use platform_sandbox::{SandboxConfig, Service::Inventory};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{reserve_body, start, start_with};

#[tokio::test]
async fn health_names_the_inventory_service() {
    let sandbox = start().await;
    let (status, body) = sandbox.get(Inventory, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "ok", "service": "Inventory Service"})
    );
}

#[tokio::test]
async fn reserve_takes_stock_and_answers_the_reservation_without_extra_item_fields() {
    let sandbox = start().await;
    let (status, body) = sandbox
        .post(
            Inventory,
            "/reserve",
            reserve_body("order-1", &[("SKU-001", 3), ("SKU-002", 5)]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let id = body["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "id {id} is not a uuid");
    assert_eq!(
        body,
        json!({
            "id": id, "orderId": "order-1", "status": "reserved",
            "items": [{"sku": "SKU-001", "qty": 3}, {"sku": "SKU-002", "qty": 5}]
        })
    );
    let ledger = sandbox.inventory_ledger().await;
    assert_eq!(ledger.stock["SKU-001"], 97);
    assert_eq!(ledger.stock["SKU-002"], 245);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Reserved);
}

#[tokio::test]
async fn reserve_is_not_idempotent_each_call_is_a_new_reservation() {
    let sandbox = start().await;
    let body = reserve_body("order-1", &[("SKU-001", 10)]);
    let (_, first) = sandbox.post(Inventory, "/reserve", body.clone()).await;
    let (_, second) = sandbox.post(Inventory, "/reserve", body).await;
    assert_ne!(first["id"], second["id"]);
    let ledger = sandbox.inventory_ledger().await;
    assert_eq!(ledger.stock["SKU-001"], 80);
    assert_eq!(ledger.reservations.len(), 2);
}

#[tokio::test]
async fn reserve_of_unknown_sku_is_409_and_takes_nothing() {
    let sandbox = start().await;
    let (status, body) = sandbox
        .post(
            Inventory,
            "/reserve",
            reserve_body("o", &[("SKU-001", 1), ("NOPE-9", 1)]),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, json!({"detail": "SKU NOPE-9 not found"}));
    let ledger = sandbox.inventory_ledger().await;
    assert_eq!(ledger.stock["SKU-001"], 100);
    assert!(ledger.reservations.is_empty());
}

#[tokio::test]
async fn reserve_beyond_stock_is_409_and_all_or_nothing() {
    let sandbox = start().await;
    let (status, body) = sandbox
        .post(
            Inventory,
            "/reserve",
            reserve_body("o", &[("SKU-002", 1), ("SKU-001", 101)]),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, json!({"detail": "Insufficient stock for SKU-001"}));
    let ledger = sandbox.inventory_ledger().await;
    assert_eq!(ledger.stock["SKU-002"], 250);
    assert!(ledger.reservations.is_empty());
}

#[tokio::test]
async fn reserve_with_no_items_is_400() {
    let sandbox = start().await;
    let (status, body) = sandbox
        .post(Inventory, "/reserve", json!({"orderId": "o", "items": []}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"detail": "No items to reserve"}));
}

#[tokio::test]
async fn reserve_without_items_is_422_naming_the_field() {
    let sandbox = start().await;
    let (status, body) = sandbox
        .post(Inventory, "/reserve", json!({"orderId": "o"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({"detail": [{"type": "missing", "loc": ["body", "items"], "msg": "Field required"}]})
    );
}

#[tokio::test]
async fn reserve_with_a_non_integer_qty_is_422_naming_the_item_field() {
    let sandbox = start().await;
    let body = json!({"orderId": "o", "items": [{"sku": "SKU-001", "qty": 1}, {"sku": "SKU-001", "qty": "two"}]});
    let (status, body) = sandbox.post(Inventory, "/reserve", body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "items", 1, "qty"]));
    assert_eq!(body["detail"][0]["type"], "int_type");
}

#[tokio::test]
async fn reserve_with_zero_qty_is_422() {
    let sandbox = start().await;
    let (status, body) = sandbox
        .post(Inventory, "/reserve", reserve_body("o", &[("SKU-001", 0)]))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "items", 0, "qty"]));
}

#[tokio::test]
async fn malformed_json_is_422_json_invalid() {
    let sandbox = start().await;
    let response = sandbox
        .client
        .post(sandbox.url(Inventory, "/reserve"))
        .header("content-type", "application/json")
        .body("{\"orderId\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    assert_eq!(body["detail"][0]["loc"][0], "body");
}

#[tokio::test]
async fn commit_answers_the_reservation_id_and_keeps_stock_taken() {
    let sandbox = start().await;
    let (_, reservation) = sandbox
        .post(Inventory, "/reserve", reserve_body("o", &[("SKU-003", 20)]))
        .await;
    let id = reservation["id"].as_str().unwrap();
    let (status, body) = sandbox
        .post(
            Inventory,
            &format!("/reservations/{id}/commit"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"committed": true, "reservation": id}));
    let ledger = sandbox.inventory_ledger().await;
    assert_eq!(ledger.stock["SKU-003"], 480);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Committed);
}

#[tokio::test]
async fn commit_of_unknown_reservation_is_404() {
    let sandbox = start().await;
    let (status, body) = sandbox
        .post(Inventory, "/reservations/nope/commit", Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn release_twice_returns_stock_once() {
    let sandbox = start().await;
    let (_, reservation) = sandbox
        .post(Inventory, "/reserve", reserve_body("o", &[("SKU-001", 30)]))
        .await;
    let path = format!(
        "/reservations/{}/release",
        reservation["id"].as_str().unwrap()
    );
    for _ in 0..2 {
        let (status, body) = sandbox.post(Inventory, &path, Value::Null).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"released": true}));
    }
    let ledger = sandbox.inventory_ledger().await;
    assert_eq!(ledger.stock["SKU-001"], 100);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
}

#[tokio::test]
async fn release_of_committed_reservation_marks_it_released_but_returns_no_stock() {
    let sandbox = start().await;
    let (_, reservation) = sandbox
        .post(Inventory, "/reserve", reserve_body("o", &[("SKU-001", 30)]))
        .await;
    let id = reservation["id"].as_str().unwrap();
    sandbox
        .post(
            Inventory,
            &format!("/reservations/{id}/commit"),
            Value::Null,
        )
        .await;
    let (status, body) = sandbox
        .post(
            Inventory,
            &format!("/reservations/{id}/release"),
            Value::Null,
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"released": true})));
    let ledger = sandbox.inventory_ledger().await;
    assert_eq!(ledger.stock["SKU-001"], 70);
    assert_eq!(ledger.reservations[0].status, ReservationStatus::Released);
}

#[tokio::test]
async fn release_of_unknown_reservation_is_200_idempotent() {
    let sandbox = start().await;
    let (status, body) = sandbox
        .post(Inventory, "/reservations/never-made/release", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"released": true, "idempotent": true}));
}

#[tokio::test]
async fn admin_seed_restores_the_contract_stock_levels() {
    let sandbox = start_with(SandboxConfig {
        stock: vec![("SKU-001".into(), 5), ("SKU-777".into(), 9)],
        ..SandboxConfig::default()
    })
    .await;
    sandbox
        .post(Inventory, "/reserve", reserve_body("o", &[("SKU-002", 50)]))
        .await;
    let (status, _) = sandbox.post(Inventory, "/admin/seed", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let stock = sandbox.inventory_ledger().await.stock;
    assert_eq!(
        (
            stock["SKU-001"],
            stock["SKU-002"],
            stock["SKU-003"],
            stock["SKU-777"]
        ),
        (100, 250, 500, 9)
    );
}

#[tokio::test]
async fn configured_stock_overrides_the_seed_and_adds_skus() {
    let sandbox = start_with(SandboxConfig {
        stock: vec![("SKU-001".into(), 1_000_000), ("SKU-009".into(), 5)],
        ..SandboxConfig::default()
    })
    .await;
    let stock = sandbox.inventory_ledger().await.stock;
    assert_eq!(stock["SKU-001"], 1_000_000);
    assert_eq!(stock["SKU-002"], 250);
    assert_eq!(stock["SKU-009"], 5);
    let (status, _) = sandbox
        .post(Inventory, "/reserve", reserve_body("o", &[("SKU-009", 5)]))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_route_is_404_and_wrong_method_is_405_in_fastapi_shape() {
    let sandbox = start().await;
    let (status, body) = sandbox.get(Inventory, "/nowhere").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"detail": "Not Found"}))
    );
    let (status, body) = sandbox
        .call(Method::GET, Inventory, "/reserve", Value::Null)
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"detail": "Method Not Allowed"})
        )
    );
}
