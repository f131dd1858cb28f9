//! Concurrent requests never oversell and never return stock twice.

use futures::future::join_all;
use platform_sandbox::Service::Inventory;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{reserve_body, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_reserves_of_one_against_stock_100_sell_exactly_100() {
    let sandbox = start().await;
    let attempts = (0..200).map(|i| {
        let sandbox = &sandbox;
        async move {
            sandbox
                .post(
                    Inventory,
                    "/reserve",
                    reserve_body(&format!("order-{i}"), &[("SKU-001", 1)]),
                )
                .await
                .0
        }
    });
    let statuses = join_all(attempts).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((ok, conflicts), (100, 100));
    let ledger = sandbox.inventory_ledger().await;
    assert_eq!(ledger.stock["SKU-001"], 0);
    assert_eq!(ledger.reservations.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_releases_of_one_reservation_return_its_stock_once() {
    let sandbox = start().await;
    let (_, reservation) = sandbox
        .post(Inventory, "/reserve", reserve_body("o", &[("SKU-002", 50)]))
        .await;
    let path = format!(
        "/reservations/{}/release",
        reservation["id"].as_str().unwrap()
    );
    let releases = (0..20).map(|_| sandbox.post(Inventory, &path, Value::Null));
    for (status, _) in join_all(releases).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(sandbox.inventory_ledger().await.stock["SKU-002"], 250);
}
