//! The inventory service: reserve stock, commit or release a reservation.

use http::Method;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{CallContext, CallError, ServiceClient};
use crate::domain::ids::{OrderId, ReservationId};
use crate::domain::money::json_number;
use crate::domain::order::LineItem;

#[derive(Clone, Debug)]
pub struct InventoryClient {
    client: ServiceClient,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReserveRequest<'a> {
    order_id: OrderId,
    items: Vec<ReserveItem<'a>>,
}

#[derive(Serialize)]
struct ReserveItem<'a> {
    sku: &'a str,
    qty: u32,
    #[serde(with = "json_number")]
    price: Decimal,
}

#[derive(Deserialize)]
struct Reservation {
    id: String,
}

impl InventoryClient {
    pub fn new(client: ServiceClient) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &ServiceClient {
        &self.client
    }

    /// `POST /reserve`: takes the stock of every item or none. Not idempotent on the real
    /// service: each call takes stock again.
    pub async fn reserve(
        &self,
        order_id: OrderId,
        items: &[LineItem],
        ctx: &CallContext,
    ) -> Result<ReservationId, CallError> {
        let body = ReserveRequest {
            order_id,
            items: items
                .iter()
                .map(|i| ReserveItem {
                    sku: i.sku.as_str(),
                    qty: i.qty.get(),
                    price: i.price,
                })
                .collect(),
        };
        let reservation: Reservation = self
            .client
            .send_json(Method::POST, "/reserve", Some(&body), "reserve", ctx)
            .await?;
        Ok(ReservationId::from(reservation.id))
    }

    /// `POST /reservations/{id}/commit`: makes the reservation final.
    pub async fn commit(&self, id: &ReservationId, ctx: &CallContext) -> Result<(), CallError> {
        let path = format!("/reservations/{}/commit", path_segment(id.as_str()));
        self.client
            .send::<()>(Method::POST, &path, None, "commit", ctx)
            .await
            .map(drop)
    }

    /// `POST /reservations/{id}/release`: puts the stock back; safe to repeat.
    pub async fn release(&self, id: &ReservationId, ctx: &CallContext) -> Result<(), CallError> {
        let path = format!("/reservations/{}/release", path_segment(id.as_str()));
        self.client
            .send::<()>(Method::POST, &path, None, "release", ctx)
            .await
            .map(drop)
    }
}

/// Percent-encodes an id taken from another service before it goes into a URL path.
pub(crate) fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn ids_are_escaped_for_paths() {
        assert_eq!(path_segment("abc-123"), "abc-123");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
