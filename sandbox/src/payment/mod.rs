//! The payment service: payments processed at once on creation, idempotent by id, refundable.

mod book;
mod routes;

pub(crate) use book::PaymentBook;
pub(crate) use routes::{contract_routes, control_routes};
