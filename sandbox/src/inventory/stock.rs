//! Stock levels and reservations, and the rules of reserve, commit and release.

use std::collections::{BTreeMap, HashMap};

use crate::ledger::{Reservation, ReservationStatus, ReservedItem};
use crate::records::Records;

/// The stock `POST /admin/seed` restores, and the sandbox starts with.
pub(crate) const SEED_STOCK: [(&str, u64); 3] =
    [("SKU-001", 100), ("SKU-002", 250), ("SKU-003", 500)];

/// Why a reservation was refused; nothing was taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReserveError {
    #[error("No items to reserve")]
    NoItems,
    #[error("SKU {0} not found")]
    UnknownSku(String),
    #[error("Insufficient stock for {0}")]
    InsufficientStock(String),
}

/// No reservation has the given id.
#[derive(Debug, thiserror::Error)]
#[error("Reservation not found")]
pub(crate) struct ReservationNotFound;

/// What a release did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Released {
    /// The reservation exists and is now `released` (stock returned only if it was
    /// `reserved`).
    Known,
    /// No such reservation; the real service answers as if it had released it.
    Unknown,
}

/// The whole state of the inventory service.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    stock: HashMap<String, u64>,
    reservations: Records<Reservation>,
}

impl Inventory {
    /// The seeded stock, with `overrides` setting other SKUs or replacing seeded levels.
    pub(crate) fn new(overrides: &[(String, u64)]) -> Self {
        let mut inventory = Self::default();
        inventory.seed();
        inventory.stock.extend(overrides.iter().cloned());
        inventory
    }

    /// Sets the three contract SKUs back to their seed levels; other SKUs are untouched.
    pub(crate) fn seed(&mut self) {
        for (sku, qty) in SEED_STOCK {
            self.stock.insert(sku.to_owned(), qty);
        }
    }

    /// Takes the stock for every item or for none. Lines naming the same SKU are added up
    /// before checking, so one request cannot oversell by splitting a SKU over lines.
    pub(crate) fn reserve(
        &mut self,
        order_id: String,
        items: Vec<ReservedItem>,
    ) -> Result<Reservation, ReserveError> {
        if items.is_empty() {
            return Err(ReserveError::NoItems);
        }
        let mut needed: Vec<(&str, u64)> = Vec::with_capacity(items.len());
        for item in &items {
            let Some(&on_hand) = self.stock.get(&item.sku) else {
                return Err(ReserveError::UnknownSku(item.sku.clone()));
            };
            let total = match needed.iter_mut().find(|(sku, _)| *sku == item.sku) {
                Some((_, total)) => {
                    *total = total.saturating_add(item.qty);
                    *total
                }
                None => {
                    needed.push((&item.sku, item.qty));
                    item.qty
                }
            };
            if total > on_hand {
                return Err(ReserveError::InsufficientStock(item.sku.clone()));
            }
        }
        for (sku, qty) in needed {
            if let Some(on_hand) = self.stock.get_mut(sku) {
                *on_hand -= qty;
            }
        }
        let reservation = Reservation {
            id: uuid::Uuid::new_v4().to_string(),
            order_id,
            items,
            status: ReservationStatus::Reserved,
        };
        self.reservations
            .insert(reservation.id.clone(), reservation.clone());
        Ok(reservation)
    }

    /// Marks the reservation committed whatever its status; stock was taken at reserve.
    pub(crate) fn commit(&mut self, id: &str) -> Result<(), ReservationNotFound> {
        let reservation = self.find_mut(id).ok_or(ReservationNotFound)?;
        reservation.status = ReservationStatus::Committed;
        Ok(())
    }

    /// Marks the reservation released, returning its stock only if it was still `reserved`:
    /// releasing twice returns nothing the second time, and (the real service's quirk)
    /// releasing a committed reservation returns nothing at all.
    pub(crate) fn release(&mut self, id: &str) -> Released {
        let Some(reservation) = self.find_mut(id) else {
            return Released::Unknown;
        };
        let was = std::mem::replace(&mut reservation.status, ReservationStatus::Released);
        if was == ReservationStatus::Reserved {
            let items = reservation.items.clone();
            for item in items {
                *self.stock.entry(item.sku).or_default() += item.qty;
            }
        }
        Released::Known
    }

    pub(crate) fn stock(&self) -> BTreeMap<String, u64> {
        self.stock
            .iter()
            .map(|(sku, qty)| (sku.clone(), *qty))
            .collect()
    }

    /// Oldest first.
    pub(crate) fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.iter()
    }

    fn find_mut(&mut self, id: &str) -> Option<&mut Reservation> {
        self.reservations.get_mut(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sku: &str, qty: u64) -> ReservedItem {
        ReservedItem {
            sku: sku.into(),
            qty,
        }
    }

    #[test]
    fn reserve_is_all_or_nothing() {
        let mut inventory = Inventory::new(&[("SKU-009".into(), 1)]);
        let refused = inventory.reserve("o1".into(), vec![item("SKU-001", 10), item("SKU-009", 2)]);
        assert!(matches!(refused, Err(ReserveError::InsufficientStock(sku)) if sku == "SKU-009"));
        assert_eq!(inventory.stock()["SKU-001"], 100);
    }

    #[test]
    fn lines_of_one_sku_are_added_up() {
        let mut inventory = Inventory::new(&[]);
        let refused =
            inventory.reserve("o1".into(), vec![item("SKU-001", 60), item("SKU-001", 60)]);
        assert!(matches!(refused, Err(ReserveError::InsufficientStock(_))));
        assert_eq!(inventory.stock()["SKU-001"], 100);
    }

    #[test]
    fn overrides_replace_seeded_levels() {
        let inventory = Inventory::new(&[("SKU-001".into(), 7)]);
        assert_eq!(inventory.stock()["SKU-001"], 7);
        assert_eq!(inventory.stock()["SKU-002"], 250);
    }
}
