//! `GET /_sandbox/ledger`: its JSON shape and its counters.

use platform_sandbox::Service::{Inventory, Payment, Shipping};
use serde_json::{Value, json};

use crate::common::{payment_body, reserve_body, shipment_body, start};

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn inventory_ledger_has_the_documented_shape() {
    let sandbox = start().await;
    sandbox
        .post(
            Inventory,
            "/reserve",
            reserve_body("order-9", &[("SKU-001", 1)]),
        )
        .await;
    let (_, ledger) = sandbox.get(Inventory, "/_sandbox/ledger").await;
    assert_eq!(
        keys(&ledger),
        ["calls", "faultsInjected", "reservations", "stock"]
    );
    assert_eq!(
        keys(&ledger["reservations"][0]),
        ["id", "items", "orderId", "status"]
    );
    assert_eq!(ledger["reservations"][0]["orderId"], "order-9");
    assert_eq!(ledger["stock"]["SKU-001"], 99);
    assert_eq!(
        keys(&ledger["faultsInjected"]),
        [
            "decline",
            "dropResponse",
            "error",
            "hang",
            "idempotentReplay",
            "latency"
        ]
    );
}

#[tokio::test]
async fn payment_and_shipping_ledgers_have_the_documented_shape() {
    let sandbox = start().await;
    sandbox
        .post(Payment, "/payments", payment_body("p1", json!(5)))
        .await;
    sandbox
        .post(Shipping, "/shipments", shipment_body("s1", "IN"))
        .await;
    let (_, payments) = sandbox.get(Payment, "/_sandbox/ledger").await;
    assert_eq!(keys(&payments), ["calls", "faultsInjected", "payments"]);
    assert_eq!(
        payments["payments"][0],
        json!({"id": "p1", "order_id": "order-1", "amount": 5.0, "status": "completed"})
    );
    let (_, shipments) = sandbox.get(Shipping, "/_sandbox/ledger").await;
    assert_eq!(keys(&shipments), ["calls", "faultsInjected", "shipments"]);
    assert_eq!(
        shipments["shipments"][0],
        json!({"id": "s1", "order_id": "order-1", "status": "shipped"})
    );
}

#[tokio::test]
async fn calls_are_counted_per_endpoint_template_with_every_endpoint_listed() {
    let sandbox = start().await;
    for id in ["a", "b"] {
        sandbox
            .post(Payment, "/payments", payment_body(id, json!(5)))
            .await;
    }
    sandbox.get(Payment, "/payments/a").await;
    sandbox.get(Payment, "/payments/zzz").await;
    sandbox.get(Payment, "/health").await;
    let ledger = sandbox.payment_ledger().await;
    assert_eq!(ledger.calls["POST /payments"], 2);
    assert_eq!(ledger.calls["GET /payments/{id}"], 2);
    assert_eq!(ledger.calls["POST /payments/{id}/refund"], 0);
    assert_eq!(ledger.calls.len(), 3);
}

#[tokio::test]
async fn lists_keep_insertion_order() {
    let sandbox = start().await;
    for order in ["o3", "o1", "o2"] {
        sandbox
            .post(
                Inventory,
                "/reserve",
                reserve_body(order, &[("SKU-002", 1)]),
            )
            .await;
    }
    for id in ["p3", "p1", "p2"] {
        sandbox
            .post(Payment, "/payments", payment_body(id, json!(1)))
            .await;
    }
    let orders: Vec<String> = sandbox
        .inventory_ledger()
        .await
        .reservations
        .into_iter()
        .map(|r| r.order_id)
        .collect();
    assert_eq!(orders, ["o3", "o1", "o2"]);
    let payments: Vec<String> = sandbox
        .payment_ledger()
        .await
        .payments
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(payments, ["p3", "p1", "p2"]);
}
