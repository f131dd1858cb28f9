//! Typed identifiers, so an order id can never be passed where a payment id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An order's id: a UUIDv7, so ids sort by creation time and index well.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for OrderId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for OrderId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl FromStr for OrderId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_id!(
    /// The inventory service's id for a reservation; we learn it from its answer.
    ReservationId
);
text_id!(
    /// The payment id we choose and store before the first payment call, so that every
    /// retry (and a recovery after a crash) repeats the same, idempotent, payment.
    PaymentId
);
text_id!(
    /// The shipment id we choose and store before the first shipment call, so that a retry
    /// can ask the shipping service whether the earlier attempt went through.
    ShipmentId
);
text_id!(
    /// Who placed the order; `anonymous` when the client names nobody, as before.
    UserId
);

impl PaymentId {
    pub fn generate() -> Self {
        Self(Uuid::new_v4().to_string())
    }
}

impl ShipmentId {
    pub fn generate() -> Self {
        Self(Uuid::new_v4().to_string())
    }
}

impl UserId {
    /// The user of orders that name none.
    pub fn anonymous() -> Self {
        Self("anonymous".to_owned())
    }
}
