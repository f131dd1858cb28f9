//! What `GET /_sandbox/faults` shows: the settings per scope and what is in force per endpoint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::FaultSettings;
use crate::Service;
use crate::endpoints::Endpoint;

/// The full fault configuration of one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultView {
    pub service: Service,
    /// The seed the fault RNG was last seeded with.
    pub seed: u64,
    /// Settings given without an `endpoint`.
    pub service_wide: FaultSettings,
    /// Settings given for one endpoint, keyed `METHOD /route-template`; only endpoints that
    /// have some.
    pub endpoints: BTreeMap<String, FaultSettings>,
    /// What each endpoint actually gets, after endpoint settings override service-wide ones.
    pub effective: BTreeMap<String, EffectiveFaults>,
}

/// The faults in force for one endpoint, every field resolved.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveFaults {
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub error_rate: f64,
    pub error_status: u16,
    pub hang_rate: f64,
    pub drop_response_rate: f64,
    pub decline_rate: f64,
    pub honor_idempotency_key: bool,
}

/// Injected errors are 503 unless told otherwise: the status a load balancer gives for a
/// service that is down, and one clients are expected to retry.
const DEFAULT_ERROR_STATUS: u16 = 503;

impl EffectiveFaults {
    /// Resolves `endpoint`'s settings: its own where set, else the service-wide ones, else
    /// nothing; modes that cannot apply to this endpoint are off.
    pub(crate) fn resolve(
        endpoint: &Endpoint,
        own: &FaultSettings,
        service_wide: &FaultSettings,
    ) -> Self {
        fn pick<T: Copy>(own: Option<T>, wide: Option<T>, default: T) -> T {
            own.or(wide).unwrap_or(default)
        }
        Self {
            latency_ms: pick(own.latency_ms, service_wide.latency_ms, 0),
            jitter_ms: pick(own.jitter_ms, service_wide.jitter_ms, 0),
            error_rate: pick(own.error_rate, service_wide.error_rate, 0.0),
            error_status: pick(
                own.error_status,
                service_wide.error_status,
                DEFAULT_ERROR_STATUS,
            ),
            hang_rate: pick(own.hang_rate, service_wide.hang_rate, 0.0),
            drop_response_rate: pick(own.drop_response_rate, service_wide.drop_response_rate, 0.0),
            decline_rate: if endpoint.can_decline {
                pick(own.decline_rate, service_wide.decline_rate, 0.0)
            } else {
                0.0
            },
            honor_idempotency_key: endpoint.honors_idempotency_key
                && pick(
                    own.honor_idempotency_key,
                    service_wide.honor_idempotency_key,
                    false,
                ),
        }
    }

    /// True when a request to this endpoint is served untouched.
    pub(crate) fn is_quiet(&self) -> bool {
        self.latency_ms == 0
            && self.jitter_ms == 0
            && self.error_rate == 0.0
            && self.hang_rate == 0.0
            && self.drop_response_rate == 0.0
            && self.decline_rate == 0.0
            && !self.honor_idempotency_key
    }
}
