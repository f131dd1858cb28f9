//! The shipping service: create a shipment (not idempotent: ask before repeating), look one
//! up, cancel one whose creation we could not confirm.

use http::Method;
use serde::{Deserialize, Serialize};

use super::inventory::path_segment;
use super::{CallContext, CallError, ServiceClient, found};
use crate::domain::ids::{OrderId, ShipmentId};
use crate::domain::order::{Address, LineItem};

#[derive(Clone, Debug)]
pub struct ShippingClient {
    client: ServiceClient,
}

#[derive(Serialize)]
struct ShipmentRequest<'a> {
    id: &'a str,
    order_id: OrderId,
    address: &'a Address,
    items: &'a [LineItem],
    status: &'static str,
}

/// The shipping service's record of a shipment.
#[derive(Clone, Debug, Deserialize)]
pub struct ShipmentRecord {
    pub status: String,
}

impl ShipmentRecord {
    pub fn is_shipped(&self) -> bool {
        self.status != "failed"
    }
}

impl ShippingClient {
    pub fn new(client: ServiceClient) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &ServiceClient {
        &self.client
    }

    /// `POST /shipments`. A second POST with the same id fails, so callers ask with
    /// [`find`](Self::find) before repeating one whose answer was lost.
    pub async fn create(
        &self,
        id: &ShipmentId,
        order_id: OrderId,
        address: &Address,
        items: &[LineItem],
        ctx: &CallContext,
    ) -> Result<ShipmentRecord, CallError> {
        let body = ShipmentRequest {
            id: id.as_str(),
            order_id,
            address,
            items,
            status: "created",
        };
        self.client
            .send_json(Method::POST, "/shipments", Some(&body), "shipment", ctx)
            .await
    }

    /// `GET /shipments/{id}`: `None` when the service has no such shipment.
    pub async fn find(
        &self,
        id: &ShipmentId,
        ctx: &CallContext,
    ) -> Result<Option<ShipmentRecord>, CallError> {
        let path = format!("/shipments/{}", path_segment(id.as_str()));
        found(
            self.client
                .send_json::<(), ShipmentRecord>(Method::GET, &path, None, "shipment-lookup", ctx)
                .await,
        )
    }

    /// `DELETE /shipments/{id}`: cancels a shipment; `false` when there was none.
    pub async fn cancel(&self, id: &ShipmentId, ctx: &CallContext) -> Result<bool, CallError> {
        let path = format!("/shipments/{}", path_segment(id.as_str()));
        let answer = self
            .client
            .send::<()>(Method::DELETE, &path, None, "shipment-cancel", ctx)
            .await;
        Ok(found(answer)?.is_some())
    }
}
