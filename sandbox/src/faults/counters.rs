//! Lock-free counters of calls per endpoint and of faults injected, for the ledger.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ledger::{CallCounts, FaultCounts};
use crate::{Service, endpoints};

/// A kind of injected fault, as counted in the ledger's `faultsInjected`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FaultKind {
    Latency,
    Error,
    Hang,
    DropResponse,
    Decline,
    IdempotentReplay,
}

/// Counters for one service; atomics so that counting never contends with request handling.
#[derive(Debug)]
pub(crate) struct Counters {
    service: Service,
    calls: Box<[AtomicU64]>,
    faults: [AtomicU64; 6],
}

impl Counters {
    pub(crate) fn new(service: Service) -> Self {
        Self {
            service,
            calls: endpoints::of(service)
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
            faults: Default::default(),
        }
    }

    pub(crate) fn count_call(&self, endpoint: usize) {
        self.calls[endpoint].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_fault(&self, kind: FaultKind) {
        self.faults[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls per endpoint label, every endpoint present.
    pub(crate) fn calls(&self) -> CallCounts {
        endpoints::of(self.service)
            .iter()
            .zip(self.calls.iter())
            .map(|(endpoint, count)| (endpoint.label.to_owned(), count.load(Ordering::Relaxed)))
            .collect::<BTreeMap<_, _>>()
    }

    pub(crate) fn faults(&self) -> FaultCounts {
        let get = |kind: FaultKind| self.faults[kind as usize].load(Ordering::Relaxed);
        FaultCounts {
            latency: get(FaultKind::Latency),
            error: get(FaultKind::Error),
            hang: get(FaultKind::Hang),
            drop_response: get(FaultKind::DropResponse),
            decline: get(FaultKind::Decline),
            idempotent_replay: get(FaultKind::IdempotentReplay),
        }
    }
}
