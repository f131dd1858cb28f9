//! What the sandbox starts with: extra stock, initial faults, and the fault RNG seed.

use crate::Service;
use crate::faults::{FaultSettings, FaultSettingsError};

/// Start-up configuration of the three services.
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    /// Stock levels set on top of the contract's seed stock (and overriding it), per SKU.
    pub stock: Vec<(String, u64)>,
    /// Fault settings applied at start, in order, as if posted to `/_sandbox/faults`.
    pub faults: Vec<(Service, FaultSettings)>,
    /// Seed of every service's fault RNG (a fault setting's own `seed` overrides it).
    pub seed: u64,
}

/// A configuration the sandbox cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A fault setting is out of range or does not apply to its service.
    #[error("invalid fault settings for the {service} service: {source}")]
    Fault {
        service: Service,
        #[source]
        source: FaultSettingsError,
    },
}
