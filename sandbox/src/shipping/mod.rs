//! The shipping service: shipments created once per id, with a provider that fails on demand.

mod book;
mod routes;

pub(crate) use book::ShipmentBook;
pub(crate) use routes::{contract_routes, control_routes};
