//! Starting a sandbox for one test and talking to it.

use std::time::Duration;

use platform_sandbox::ledger::{InventoryLedger, PaymentLedger, ShippingLedger};
use platform_sandbox::{RunningSandbox, SandboxConfig, SandboxListeners, Service};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::Value;

/// A running sandbox and a client for it.
pub struct Sandbox {
    pub running: RunningSandbox,
    pub client: Client,
}

pub async fn start() -> Sandbox {
    start_with(SandboxConfig::default()).await
}

pub async fn start_with(config: SandboxConfig) -> Sandbox {
    let listeners = SandboxListeners::bind("127.0.0.1", 0).await.unwrap();
    Sandbox {
        running: platform_sandbox::spawn(config, listeners),
        client: client(Duration::from_secs(10)),
    }
}

pub fn client(timeout: Duration) -> Client {
    Client::builder().timeout(timeout).build().unwrap()
}

impl Sandbox {
    pub fn url(&self, service: Service, path: &str) -> String {
        let base = match service {
            Service::Inventory => &self.running.inventory_url,
            Service::Payment => &self.running.payment_url,
            Service::Shipping => &self.running.shipping_url,
        };
        format!("{base}{path}")
    }

    /// Sends a request (with a JSON body unless `body` is null) and returns status and body.
    pub async fn call(
        &self,
        method: Method,
        service: Service,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let response = self.send(method, service, path, body).await.unwrap();
        into_parts(response).await
    }

    pub async fn send(
        &self,
        method: Method,
        service: Service,
        path: &str,
        body: Value,
    ) -> reqwest::Result<Response> {
        let mut request = self.client.request(method, self.url(service, path));
        if !body.is_null() {
            request = request.json(&body);
        }
        request.send().await
    }

    pub async fn post(&self, service: Service, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, service, path, body).await
    }

    pub async fn get(&self, service: Service, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, service, path, Value::Null).await
    }

    /// Posts fault settings and insists they were accepted.
    pub async fn set_faults(&self, service: Service, settings: Value) -> Value {
        let (status, body) = self.post(service, "/_sandbox/faults", settings).await;
        assert_eq!(status, StatusCode::OK, "fault settings refused: {body}");
        body
    }

    pub async fn inventory_ledger(&self) -> InventoryLedger {
        self.ledger(Service::Inventory).await
    }

    pub async fn payment_ledger(&self) -> PaymentLedger {
        self.ledger(Service::Payment).await
    }

    pub async fn shipping_ledger(&self) -> ShippingLedger {
        self.ledger(Service::Shipping).await
    }

    async fn ledger<T: serde::de::DeserializeOwned>(&self, service: Service) -> T {
        let (status, body) = self.get(service, "/_sandbox/ledger").await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_value(body).unwrap()
    }

    pub async fn stop(self) {
        self.running.shutdown().await;
    }
}

pub async fn into_parts(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, body)
}

pub fn reserve_body(order_id: &str, items: &[(&str, u64)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(sku, qty)| serde_json::json!({"sku": sku, "qty": qty, "price": 10.5}))
        .collect();
    serde_json::json!({"orderId": order_id, "items": items})
}

pub fn payment_body(id: &str, amount: Value) -> Value {
    serde_json::json!({"id": id, "order_id": "order-1", "amount": amount, "status": "pending", "currency": "INR"})
}

pub fn shipment_body(id: &str, country: &str) -> Value {
    serde_json::json!({
        "id": id,
        "order_id": "order-1",
        "address": {"line1": "1 Road", "city": "Pune", "country": country, "postalCode": "411001"},
        "items": [{"sku": "SKU-001", "qty": 1}],
        "status": "created"
    })
}
