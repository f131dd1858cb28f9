//! The fault settings in force for one service, its seeded RNG, and the per-request draw.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::counters::Counters;
use super::idempotency::IdempotencyStore;
use super::{EffectiveFaults, FaultSettings, FaultSettingsError, FaultView};
use crate::shutdown::ShutdownSignal;
use crate::sync::lock;
use crate::{Service, endpoints};

/// Everything fault-related for one service: settings, RNG, counters, remembered answers.
#[derive(Debug)]
pub(crate) struct FaultTable {
    service: Service,
    state: Mutex<TableState>,
    /// False while every endpoint is quiet, so unfaulted requests skip the lock entirely.
    active: AtomicBool,
    counters: Counters,
    idempotency: IdempotencyStore,
    shutdown: ShutdownSignal,
}

#[derive(Debug)]
struct TableState {
    seed: u64,
    rng: StdRng,
    service_wide: FaultSettings,
    per_endpoint: Vec<FaultSettings>,
    /// Resolved on every change so that drawing a plan is a lookup.
    effective: Vec<EffectiveFaults>,
}

/// What happens to one request, drawn when it arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Plan {
    pub delay: Option<Duration>,
    pub hang: bool,
    pub error: Option<StatusCode>,
    pub drop_response: bool,
    pub decline: bool,
    pub honor_idempotency_key: bool,
}

impl FaultTable {
    pub(crate) fn new(service: Service, seed: u64, shutdown: ShutdownSignal) -> Self {
        let endpoint_count = endpoints::of(service).len();
        let table = Self {
            service,
            state: Mutex::new(TableState {
                seed,
                rng: StdRng::seed_from_u64(seed),
                service_wide: FaultSettings::default(),
                per_endpoint: vec![FaultSettings::default(); endpoint_count],
                effective: Vec::new(),
            }),
            active: AtomicBool::new(false),
            counters: Counters::new(service),
            idempotency: IdempotencyStore::default(),
            shutdown,
        };
        table.refresh(&mut lock(&table.state));
        table
    }

    pub(crate) fn service(&self) -> Service {
        self.service
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn idempotency(&self) -> &IdempotencyStore {
        &self.idempotency
    }

    pub(crate) fn shutdown(&self) -> &ShutdownSignal {
        &self.shutdown
    }

    /// Validates `settings` and merges them into their scope; a `seed` re-seeds the RNG.
    pub(crate) fn apply(&self, settings: &FaultSettings) -> Result<FaultView, FaultSettingsError> {
        settings.validate(self.service)?;
        let endpoint = settings
            .endpoint
            .as_deref()
            .and_then(|label| endpoints::find_label(self.service, label));
        let mut state = lock(&self.state);
        match endpoint {
            Some(index) => state.per_endpoint[index].merge_from(settings),
            None => state.service_wide.merge_from(settings),
        }
        if let Some(seed) = settings.seed {
            state.seed = seed;
            state.rng = StdRng::seed_from_u64(seed);
        }
        self.refresh(&mut state);
        Ok(self.view_of(&state))
    }

    /// Removes every setting of every scope; the RNG carries on where it was.
    pub(crate) fn clear(&self) -> FaultView {
        let mut state = lock(&self.state);
        state.service_wide = FaultSettings::default();
        state
            .per_endpoint
            .iter_mut()
            .for_each(|s| *s = FaultSettings::default());
        self.refresh(&mut state);
        self.view_of(&state)
    }

    pub(crate) fn view(&self) -> FaultView {
        self.view_of(&lock(&self.state))
    }

    /// Draws what happens to a request on `endpoint`. Random numbers are drawn in a fixed
    /// order and only for faults that are on, so one seed and one sequence of requests give
    /// one sequence of faults.
    pub(crate) fn plan(&self, endpoint: usize) -> Plan {
        if !self.active.load(Ordering::Relaxed) {
            return Plan::default();
        }
        let mut state = lock(&self.state);
        let faults = state.effective[endpoint];
        let rng = &mut state.rng;
        let jitter = if faults.jitter_ms > 0 {
            rng.random_range(0..=faults.jitter_ms)
        } else {
            0
        };
        let delay_ms = faults.latency_ms + jitter;
        Plan {
            delay: (delay_ms > 0).then(|| Duration::from_millis(delay_ms)),
            hang: chance(rng, faults.hang_rate),
            error: chance(rng, faults.error_rate)
                .then(|| StatusCode::from_u16(faults.error_status).ok())
                .flatten(),
            drop_response: chance(rng, faults.drop_response_rate),
            decline: chance(rng, faults.decline_rate),
            honor_idempotency_key: faults.honor_idempotency_key,
        }
    }

    fn refresh(&self, state: &mut TableState) {
        let TableState {
            service_wide,
            per_endpoint,
            effective,
            ..
        } = state;
        *effective = endpoints::of(self.service)
            .iter()
            .zip(per_endpoint.iter())
            .map(|(endpoint, own)| EffectiveFaults::resolve(endpoint, own, service_wide))
            .collect();
        let active = effective.iter().any(|e| !e.is_quiet());
        self.active.store(active, Ordering::Relaxed);
    }

    fn view_of(&self, state: &TableState) -> FaultView {
        let labels = endpoints::of(self.service)
            .iter()
            .map(|e| e.label.to_owned());
        FaultView {
            service: self.service,
            seed: state.seed,
            service_wide: state.service_wide.clone(),
            endpoints: labels
                .clone()
                .zip(state.per_endpoint.iter())
                .filter(|(_, settings)| !settings.is_empty())
                .map(|(label, settings)| {
                    let mut settings = settings.clone();
                    settings.endpoint = Some(label.clone());
                    (label, settings)
                })
                .collect(),
            effective: labels.zip(state.effective.iter().copied()).collect(),
        }
    }
}

fn chance(rng: &mut StdRng, rate: f64) -> bool {
    rate > 0.0 && rng.random::<f64>() < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> FaultTable {
        FaultTable::new(Service::Payment, 0, ShutdownSignal::new())
    }

    #[test]
    fn quiet_table_draws_empty_plans() {
        assert_eq!(table().plan(0), Plan::default());
    }

    #[test]
    fn endpoint_settings_override_service_wide_ones_field_by_field() {
        let table = table();
        table
            .apply(&FaultSettings {
                error_rate: Some(1.0),
                latency_ms: Some(5),
                ..FaultSettings::default()
            })
            .unwrap();
        let view = table
            .apply(&FaultSettings {
                endpoint: Some("GET /payments/{id}".into()),
                error_rate: Some(0.0),
                ..FaultSettings::default()
            })
            .unwrap();
        let get = view.effective["GET /payments/{id}"];
        assert_eq!((get.error_rate, get.latency_ms), (0.0, 5));
        assert_eq!(view.effective["POST /payments"].error_rate, 1.0);
        assert_eq!(table.plan(1).error, None);
        assert_eq!(table.plan(0).error, Some(StatusCode::SERVICE_UNAVAILABLE));
    }

    #[test]
    fn same_seed_draws_the_same_sequence() {
        let draw = |table: &FaultTable| (0..64).map(|_| table.plan(0)).collect::<Vec<_>>();
        let table = table();
        let half = FaultSettings {
            error_rate: Some(0.5),
            jitter_ms: Some(100),
            seed: Some(42),
            ..FaultSettings::default()
        };
        table.apply(&half).unwrap();
        let first = draw(&table);
        table.apply(&half).unwrap();
        assert_eq!(draw(&table), first);
        let errors = first.iter().filter(|p| p.error.is_some()).count();
        assert!((10..54).contains(&errors), "{errors} errors of 64");
    }

    #[test]
    fn clear_removes_every_scope() {
        let table = table();
        table
            .apply(&FaultSettings {
                endpoint: Some("POST /payments".into()),
                hang_rate: Some(1.0),
                ..FaultSettings::default()
            })
            .unwrap();
        assert!(table.plan(0).hang);
        let view = table.clear();
        assert!(view.endpoints.is_empty());
        assert_eq!(table.plan(0), Plan::default());
    }
}
