//! Fault injection: the settings an operator gives, the per-service table that draws a plan
//! for each request, the middleware that carries it out, and the `/_sandbox/faults` routes.

mod admin;
mod counters;
mod idempotency;
mod middleware;
mod settings;
mod table;
mod view;

pub(crate) use admin::routes;
pub(crate) use middleware::{DeclineApplied, ForceDecline, inject};
pub use settings::{ERROR_STATUSES, FaultSettings, FaultSettingsError, FieldError, MAX_LATENCY_MS};
pub(crate) use table::FaultTable;
pub use view::{EffectiveFaults, FaultView};
