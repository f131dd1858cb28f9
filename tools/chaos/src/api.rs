//! The order service's API as the tool reads it: the order view, listing every order, and
//! one order or its timeline by id.

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

/// The statuses an order may end in.
pub const FINAL_STATUSES: [&str; 4] = [
    "completed",
    "cancelled",
    "failed_shipping",
    "needs_attention",
];

/// The fields of an order the invariants look at.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub reservation_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub shipment_id: Option<String>,
    pub total: f64,
    #[serde(default)]
    pub failure: Option<Failure>,
    #[serde(default)]
    pub compensations: Vec<Compensation>,
}

impl Order {
    /// True when nothing more will happen to the order by itself: a final status and
    /// (except for needs_attention, which waits for an operator) every compensation done.
    pub fn settled(&self) -> bool {
        FINAL_STATUSES.contains(&self.status.as_str())
            && (self.status == "needs_attention"
                || self.compensations.iter().all(|c| c.state == "done"))
    }
}

/// One compensation of a failed order.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compensation {
    pub action: String,
    /// `pending`, `done` or `failed`.
    pub state: String,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Why an order did not complete.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub step: String,
    pub detail: String,
    pub upstream_status: Option<u16>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    orders: Vec<Order>,
    next_cursor: Option<String>,
}

/// Every order in the database, following `nextCursor` (`status` narrows it).
pub async fn list_orders(
    http: &reqwest::Client,
    base: &str,
    status: Option<&str>,
) -> anyhow::Result<Vec<Order>> {
    let mut orders = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query: Vec<(&str, &str)> = vec![("limit", "100")];
        if let Some(status) = status {
            query.push(("status", status));
        }
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor));
        }
        let response = http
            .get(format!("{base}/orders"))
            .query(&query)
            .send()
            .await
            .context("GET /orders")?;
        if !response.status().is_success() {
            bail!("GET /orders answered {}", response.status());
        }
        let page: Page = response.json().await.context("reading a page of orders")?;
        orders.extend(page.orders);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(orders),
        }
    }
}

/// How many orders have `status`, counting at most one page of 100.
pub async fn count_with_status(
    http: &reqwest::Client,
    base: &str,
    status: &str,
) -> anyhow::Result<usize> {
    let response = http
        .get(format!("{base}/orders"))
        .query(&[("limit", "100"), ("status", status)])
        .send()
        .await
        .context("GET /orders")?;
    if !response.status().is_success() {
        bail!("GET /orders answered {}", response.status());
    }
    let page: Page = response.json().await.context("reading a page of orders")?;
    Ok(page.orders.len())
}

/// The status code of `GET /orders/{id}`.
pub async fn order_status_code(
    http: &reqwest::Client,
    base: &str,
    id: &str,
) -> anyhow::Result<u16> {
    let response = http
        .get(format!("{base}/orders/{id}"))
        .send()
        .await
        .with_context(|| format!("GET /orders/{id}"))?;
    Ok(response.status().as_u16())
}

/// `GET /orders/{id}/events`, as raw JSON (for the report).
pub async fn events(http: &reqwest::Client, base: &str, id: &str) -> anyhow::Result<Value> {
    let response = http
        .get(format!("{base}/orders/{id}/events"))
        .send()
        .await
        .with_context(|| format!("GET /orders/{id}/events"))?;
    response.json().await.context("reading an order's events")
}
