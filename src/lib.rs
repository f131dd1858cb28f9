//! # order-service
//!
//! Takes `POST /orders`, reserves stock, takes payment and creates the shipment, as a
//! durable saga that compensates (release, refund) when a step fails.
//!
//! ## Layout
//! - [`config`]: settings from env, `.env` and flags, validated at start.
//! - [`http`]: routes, extractors, error mapping, the order's JSON view.
//! - [`domain`]: validated types, money, the order state machine. No HTTP, no SQL.
//! - [`saga`]: drives an order through its steps and compensations.
//! - [`downstream`]: pooled clients of the inventory, payment and shipping services, with
//!   timeouts and retries.
//! - [`store`]: SQLite and PostgreSQL persistence; the only place with SQL.
//! - [`startup`]: wires it all and serves until told to stop.
//! - [`dev`]: the one-command demo (sandbox + service).

pub mod cli;
pub mod config;
pub mod dev;
pub mod domain;
pub mod downstream;
pub mod http;
pub mod saga;
pub mod startup;
pub mod store;
pub mod telemetry;
