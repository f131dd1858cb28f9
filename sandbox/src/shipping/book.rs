//! The stored shipments and the rules for creating, changing and deleting them.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::ledger;
use crate::records::Records;

/// A shipment as stored and answered.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Shipment {
    pub id: String,
    pub order_id: String,
    pub address: Map<String, Value>,
    pub items: Vec<Value>,
    pub status: String,
}

/// Fields a `PUT` may change; absent ones stay as they are.
#[derive(Debug, Default)]
pub(crate) struct ShipmentChanges {
    pub order_id: Option<String>,
    pub address: Option<Map<String, Value>>,
    pub items: Option<Vec<Value>>,
    pub status: Option<String>,
}

/// Why a shipment was not created as `shipped`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateError {
    /// The real service is not idempotent: a repeated id blows up.
    #[error("Shipment {0} already exists")]
    AlreadyExists(String),
    /// The shipment was stored as `failed`.
    #[error("Shipping provider reported failure for shipment")]
    ProviderFailure,
}

#[derive(Debug, thiserror::Error)]
#[error("Shipment not found")]
pub(crate) struct ShipmentNotFound;

/// Every shipment not deleted, in creation order.
#[derive(Debug, Default)]
pub(crate) struct ShipmentBook {
    shipments: Records<Shipment>,
}

impl ShipmentBook {
    /// Stores the shipment as `shipped`, or as `failed` when the address's country is `FAIL`
    /// (any case), which is how the platform's provider failures are simulated.
    pub(crate) fn create(&mut self, mut shipment: Shipment) -> Result<Shipment, CreateError> {
        let provider_fails = shipment
            .address
            .get("country")
            .and_then(Value::as_str)
            .is_some_and(|country| country.eq_ignore_ascii_case("FAIL"));
        shipment.status = if provider_fails { "failed" } else { "shipped" }.to_owned();
        if !self.shipments.insert(shipment.id.clone(), shipment.clone()) {
            return Err(CreateError::AlreadyExists(shipment.id));
        }
        if provider_fails {
            Err(CreateError::ProviderFailure)
        } else {
            Ok(shipment)
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Shipment> {
        self.shipments.get(id)
    }

    pub(crate) fn list(&self) -> Vec<Shipment> {
        self.shipments.iter().cloned().collect()
    }

    pub(crate) fn update(
        &mut self,
        id: &str,
        changes: ShipmentChanges,
    ) -> Result<&Shipment, ShipmentNotFound> {
        let shipment = self.shipments.get_mut(id).ok_or(ShipmentNotFound)?;
        if let Some(order_id) = changes.order_id {
            shipment.order_id = order_id;
        }
        if let Some(address) = changes.address {
            shipment.address = address;
        }
        if let Some(items) = changes.items {
            shipment.items = items;
        }
        if let Some(status) = changes.status {
            shipment.status = status;
        }
        Ok(shipment)
    }

    /// Forgets the shipment; its id may be used again afterwards.
    pub(crate) fn delete(&mut self, id: &str) -> Result<(), ShipmentNotFound> {
        self.shipments.remove(id).map(drop).ok_or(ShipmentNotFound)
    }

    pub(crate) fn ledger_entries(&self) -> Vec<ledger::Shipment> {
        self.shipments
            .iter()
            .map(|s| ledger::Shipment {
                id: s.id.clone(),
                order_id: s.order_id.clone(),
                status: s.status.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn shipment(id: &str, country: &str) -> Shipment {
        Shipment {
            id: id.into(),
            order_id: "o".into(),
            address: json!({"country": country}).as_object().unwrap().clone(),
            items: vec![],
            status: "created".into(),
        }
    }

    #[test]
    fn deleted_id_can_be_created_again_at_the_end() {
        let mut book = ShipmentBook::default();
        book.create(shipment("a", "IN")).unwrap();
        book.create(shipment("b", "IN")).unwrap();
        book.delete("a").unwrap();
        book.create(shipment("a", "IN")).unwrap();
        let ids: Vec<_> = book.list().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["b", "a"]);
    }

    #[test]
    fn failed_shipment_is_kept() {
        let mut book = ShipmentBook::default();
        assert!(matches!(
            book.create(shipment("a", "fail")),
            Err(CreateError::ProviderFailure)
        ));
        assert_eq!(book.get("a").unwrap().status, "failed");
    }
}
