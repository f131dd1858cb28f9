//! Names the three platform services the sandbox imitates.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of the platform services the sandbox stands in for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Stock and reservations (`POST /reserve`, ...).
    Inventory,
    /// Charges and refunds (`POST /payments`, ...).
    Payment,
    /// Shipments (`POST /shipments`, ...).
    Shipping,
}

impl Service {
    /// All services, in the order their ports are laid out after the order service's.
    pub const ALL: [Service; 3] = [Service::Payment, Service::Inventory, Service::Shipping];

    /// The lowercase name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Service::Inventory => "inventory",
            Service::Payment => "payment",
            Service::Shipping => "shipping",
        }
    }

    /// The name the real service reports from `GET /health`.
    pub(crate) fn health_name(self) -> &'static str {
        match self {
            Service::Inventory => "Inventory Service",
            Service::Payment => "Payment Service",
            Service::Shipping => "Shipping Service",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A service name that is not `inventory`, `payment` or `shipping`.
#[derive(Debug, thiserror::Error)]
#[error("unknown service '{0}' (expected inventory, payment or shipping)")]
pub struct UnknownService(pub String);

impl FromStr for Service {
    type Err = UnknownService;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        Service::ALL
            .into_iter()
            .find(|service| service.name().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| UnknownService(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_in_any_case_and_displays_lowercase() {
        assert_eq!("Payment".parse::<Service>().unwrap(), Service::Payment);
        assert_eq!(" shipping ".parse::<Service>().unwrap(), Service::Shipping);
        assert_eq!(Service::Inventory.to_string(), "inventory");
        assert!("orders".parse::<Service>().is_err());
    }
}
