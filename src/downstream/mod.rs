//! Clients of the platform's other services. One pooled HTTP client per service
//! (keep-alive), a timeout per call, and errors classified by what they tell us about the
//! call's effect, which is what decides whether repeating it is safe.

pub mod breaker;
mod call;
pub mod inventory;
pub mod payment;
pub mod retry;
pub mod shipping;

use std::time::Duration;

pub use breaker::BreakerSettings;
pub use call::{CallContext, CallError, ServiceClient, found};
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
    /// When each service's circuit breaker opens.
    pub breaker: BreakerSettings,
}

/// The three downstream services.
#[derive(Clone, Debug)]
pub struct Downstream {
    pub inventory: inventory::InventoryClient,
    pub payment: payment::PaymentClient,
    pub shipping: shipping::ShippingClient,
}

impl Downstream {
    pub fn new(settings: &DownstreamSettings) -> Self {
        let client =
            |step, url: &str| ServiceClient::new(step, url, settings.timeout, settings.breaker);
        Self {
            inventory: inventory::InventoryClient::new(client(
                Step::Inventory,
                &settings.inventory_url,
            )),
            payment: payment::PaymentClient::new(client(Step::Payment, &settings.payment_url)),
            shipping: shipping::ShippingClient::new(client(Step::Shipping, &settings.shipping_url)),
        }
    }

    /// A service whose breaker is open, and for about how long; new orders are refused
    /// then, before anything is done for them.
    pub fn open_breaker(&self) -> Option<(Step, Duration)> {
        [
            self.inventory.client(),
            self.payment.client(),
            self.shipping.client(),
        ]
        .into_iter()
        .find_map(|c| c.breaker_open_for().map(|left| (c.service(), left)))
    }
}
