//! The shape of an order row, shared by both dialects, and its conversion from and to the
//! domain's [`Order`].

use rust_decimal::Decimal;

use super::StoreError;
use crate::domain::idempotency::StoredResponse;
use crate::domain::ids::{OrderId, PaymentId, ShipmentId, UserId};
use crate::domain::money::Currency;
use crate::domain::order::{Order, OrderStatus};
use crate::domain::when::Timestamp;

/// An order row with JSON columns as text; each dialect decodes its own column types
/// into this.
pub(super) struct OrderRow {
    pub id: OrderId,
    pub user_id: String,
    pub currency: String,
    pub address: String,
    pub items: String,
    pub total: Decimal,
    pub status: String,
    pub payment_id: String,
    pub shipment_id: String,
    pub progress: String,
    pub failure: Option<String>,
    pub response_status: Option<i32>,
    pub response_body: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The JSON columns of an order, encoded for writing.
pub(super) struct OrderJson {
    pub address: String,
    pub items: String,
    pub progress: String,
    pub failure: Option<String>,
}

impl OrderJson {
    pub fn of(order: &Order) -> Self {
        Self {
            address: to_json(&order.address),
            items: to_json(&order.items),
            progress: to_json(&order.progress),
            failure: order.failure.as_ref().map(to_json),
        }
    }
}

/// The columns that change as the saga runs (the request itself never does).
pub(super) struct ProgressJson {
    pub progress: String,
    pub failure: Option<String>,
}

impl ProgressJson {
    pub fn of(order: &Order) -> Self {
        Self {
            progress: to_json(&order.progress),
            failure: order.failure.as_ref().map(to_json),
        }
    }
}

/// The stored first answer of an order, from its two columns.
pub(super) fn stored_response(
    status: Option<i32>,
    body: Option<String>,
) -> Result<Option<StoredResponse>, StoreError> {
    match (status, body) {
        (Some(status), Some(body)) => Ok(Some(StoredResponse {
            status: u16::try_from(status)
                .map_err(|e| StoreError::Corrupt(format!("response status {status}: {e}")))?,
            body,
        })),
        _ => Ok(None),
    }
}

/// Serializes a stored part of an order; these types cannot fail to serialize.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("order parts serialize")
}

fn corrupt(what: &str, id: OrderId, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("order {id}: {what}: {e}"))
}

impl OrderRow {
    pub fn into_order(self) -> Result<Order, StoreError> {
        let id = self.id;
        Ok(Order {
            id,
            user_id: UserId::from(self.user_id),
            currency: Currency::parse(&self.currency).map_err(|e| corrupt("currency", id, e))?,
            address: serde_json::from_str(&self.address).map_err(|e| corrupt("address", id, e))?,
            items: serde_json::from_str(&self.items).map_err(|e| corrupt("items", id, e))?,
            total: self.total,
            status: self
                .status
                .parse::<OrderStatus>()
                .map_err(|e| corrupt("status", id, e))?,
            payment_id: PaymentId::from(self.payment_id),
            shipment_id: ShipmentId::from(self.shipment_id),
            progress: serde_json::from_str(&self.progress)
                .map_err(|e| corrupt("progress", id, e))?,
            failure: self
                .failure
                .map(|f| serde_json::from_str(&f))
                .transpose()
                .map_err(|e| corrupt("failure", id, e))?,
            response: stored_response(self.response_status, self.response_body)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}
