//! The domain: validated order data, exact money, the order's lifecycle and the saga's
//! durable progress. It knows nothing of HTTP or SQL; the layers above and below translate.

pub mod idempotency;
pub mod ids;
pub mod money;
pub mod order;
pub mod progress;
pub mod validation;
pub mod when;
