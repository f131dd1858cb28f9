//! Binding, serving and shutting down.

use std::time::{Duration, Instant};

use platform_sandbox::Service::{Inventory, Shipping};
use platform_sandbox::{FaultSettings, SandboxConfig, SandboxListeners, Service};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{client, shipment_body, start};

#[tokio::test]
async fn base_port_lays_out_payment_inventory_and_shipping_after_it() {
    // Fixed ports may be taken on a busy machine: try a few bases in the ephemeral range.
    let base_candidates = (0..20u16).map(|i| 41_000 + i * 37);
    for base in base_candidates {
        let Ok(listeners) = SandboxListeners::bind("127.0.0.1", base).await else {
            continue;
        };
        let port = |l: &tokio::net::TcpListener| l.local_addr().unwrap().port();
        assert_eq!(port(&listeners.payment), base + 1);
        assert_eq!(port(&listeners.inventory), base + 2);
        assert_eq!(port(&listeners.shipping), base + 3);
        let sandbox = platform_sandbox::spawn(SandboxConfig::default(), listeners);
        assert_eq!(
            sandbox.inventory_url,
            format!("http://127.0.0.1:{}", base + 2)
        );
        sandbox.shutdown().await;
        return;
    }
    panic!("no free base port found");
}

#[tokio::test]
async fn base_port_zero_binds_three_distinct_random_ports() {
    let listeners = SandboxListeners::bind("127.0.0.1", 0).await.unwrap();
    let mut ports: Vec<u16> = [
        &listeners.inventory,
        &listeners.payment,
        &listeners.shipping,
    ]
    .iter()
    .map(|l| l.local_addr().unwrap().port())
    .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3);
}

#[tokio::test]
async fn shutdown_stops_all_three_services() {
    let sandbox = start().await;
    let (status, _) = sandbox.get(Inventory, "/health").await;
    assert_eq!(status, StatusCode::OK);
    let urls = [
        sandbox.running.inventory_url.clone(),
        sandbox.running.payment_url.clone(),
        sandbox.running.shipping_url.clone(),
    ];
    sandbox.stop().await;
    let fresh = client(Duration::from_secs(2));
    for url in urls {
        let error = fresh.get(format!("{url}/health")).send().await.unwrap_err();
        assert!(error.is_connect(), "{url}: {error:?}");
    }
}

#[tokio::test]
async fn shutdown_does_not_wait_for_hung_requests() {
    let sandbox = start().await;
    sandbox.set_faults(Shipping, json!({"hangRate": 1})).await;
    let url = sandbox.url(Shipping, "/shipments");
    let hung = tokio::spawn(async move {
        client(Duration::from_secs(30))
            .post(url)
            .json(&shipment_body("s", "IN"))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    sandbox.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let outcome = hung.await.unwrap();
    assert!(
        outcome.is_err(),
        "a hung request got an answer: {outcome:?}"
    );
}

#[tokio::test]
async fn run_serves_until_the_shutdown_future_completes() {
    let listeners = SandboxListeners::bind("127.0.0.1", 0).await.unwrap();
    let url = format!("http://{}/health", listeners.payment.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(platform_sandbox::run(
        SandboxConfig::default(),
        listeners,
        async {
            let _ = stopped.await;
        },
    ));
    let body: serde_json::Value = client(Duration::from_secs(5))
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["service"], "Payment Service");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("run did not stop")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn run_refuses_invalid_fault_settings() {
    let listeners = SandboxListeners::bind("127.0.0.1", 0).await.unwrap();
    let config = SandboxConfig {
        faults: vec![(
            Service::Inventory,
            FaultSettings {
                error_rate: Some(3.0),
                ..FaultSettings::default()
            },
        )],
        ..SandboxConfig::default()
    };
    let error = platform_sandbox::run(config, listeners, std::future::pending())
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("errorRate"), "{error:#}");
}
