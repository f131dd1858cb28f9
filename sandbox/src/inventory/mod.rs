//! The inventory service: stock taken at reserve time, then committed or released.

mod routes;
mod stock;

pub(crate) use routes::{contract_routes, control_routes};
pub(crate) use stock::Inventory;
