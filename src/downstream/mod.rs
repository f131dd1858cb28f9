//! Clients of the platform's other services. One pooled HTTP client per service
//! (keep-alive), a timeout per call, and errors classified by what they tell us about the
//! call's effect, which is what decides whether repeating it is safe.

mod call;
pub mod inventory;
pub mod payment;
pub mod retry;
pub mod shipping;

use std::time::Duration;

pub use call::{CallContext, CallError, ServiceClient};
pub use retry::RetryPolicy;

use crate::domain::order::Step;

/// Where the downstream services are and how to talk to them.
#[derive(Clone, Debug)]
pub struct DownstreamSettings {
    pub inventory_url: String,
    pub payment_url: String,
    pub shipping_url: String,
    /// Upper bound for one HTTP exchange.
    pub timeout: Duration,
}

/// The three downstream services.
#[derive(Clone, Debug)]
pub struct Downstream {
    pub inventory: inventory::InventoryClient,
    pub payment: payment::PaymentClient,
    pub shipping: shipping::ShippingClient,
}

impl Downstream {
    pub fn new(settings: &DownstreamSettings) -> Result<Self, reqwest::Error> {
        let client = |step, url: &str| ServiceClient::new(step, url, settings.timeout);
        Ok(Self {
            inventory: inventory::InventoryClient::new(client(
                Step::Inventory,
                &settings.inventory_url,
            )?),
            payment: payment::PaymentClient::new(client(Step::Payment, &settings.payment_url)?),
            shipping: shipping::ShippingClient::new(client(
                Step::Shipping,
                &settings.shipping_url,
            )?),
        })
    }
}
