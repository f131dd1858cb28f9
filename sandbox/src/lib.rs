//! In-memory reference copies of the platform's inventory, payment and shipping services,
//! speaking their wire contract exactly (quirks included), with faults injected on demand.
//!
//! # Layout
//! - [`startup`]: [`spawn`] and [`run`] start the three services on bound listeners
//!   ([`listeners`]) from a [`SandboxConfig`] ([`config`], [`cli`] for the flags).
//! - `server`: the accept loop (hyper, one task per connection) that can drop a connection
//!   unanswered and shuts down gracefully.
//! - `app`: assembles each service's router; `http`: FastAPI-shaped errors and JSON
//!   extraction shared by the services.
//! - `inventory`, `payment`, `shipping`: one folder per service, its domain rules in one
//!   file and its routes in another.
//! - [`faults`]: fault settings, the seeded per-service draw, the middleware that injects
//!   latency, hangs, errors, dropped responses, declines and idempotent replays, and the
//!   `/_sandbox/faults` routes.
//! - [`ledger`]: typed bodies of `GET /_sandbox/ledger`, for tests to deserialize.
//! - [`requests`]: the recent requests and their correlation headers, at
//!   `GET /_sandbox/requests`.

mod app;
pub mod cli;
pub mod config;
mod endpoints;
pub mod faults;
mod http;
mod inventory;
pub mod ledger;
pub mod listeners;
mod payment;
mod records;
pub mod requests;
mod server;
mod service;
mod shipping;
mod shutdown;
pub mod startup;
mod sync;

pub use cli::SandboxArgs;
pub use config::{ConfigError, SandboxConfig};
pub use faults::{FaultSettings, FaultView};
pub use listeners::SandboxListeners;
pub use service::{Service, UnknownService};
pub use startup::{RunningSandbox, run, spawn};
