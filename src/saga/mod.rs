//! Drives an order through its saga: reserve -> pay -> ship -> commit, or backwards
//! through the compensations. Every step's result is saved (with its events) before the
//! next call, so a crashed run can be resumed by any process from the stored progress.

mod commit;
mod compensation;
mod events;
mod payment;
mod reserve;
mod shipment;

use std::sync::Arc;

use tracing::Instrument;

use crate::domain::idempotency::StoredResponse;
use crate::domain::order::{Failure, FailureKind, Order, Step};
use crate::domain::progress::SagaStep;
use crate::domain::when;
use crate::downstream::{CallContext, CallError, Downstream, RetryPolicy};
use crate::store::{Lease, Store, StoreError};
use crate::telemetry::metrics;

/// Renders the answer a client gets for a settled order, so it can be stored with the
/// order and replayed byte for byte. Provided by the HTTP layer.
pub trait Answer: Send + Sync {
    fn answer(&self, order: &Order) -> StoredResponse;
}

/// Whether a drive starts a new order or resumes one that another run left unfinished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The order was just created; no call has been made for it.
    Fresh,
    /// A run stopped mid-way (crash, lease expiry): its last call may have been sent.
    Resumed,
}

/// What the saga needs to run.
pub struct SagaSettings {
    pub retry: RetryPolicy,
    pub lease: Lease,
    /// The inventory service replays `POST /reserve` by `Idempotency-Key` (the sandbox can;
    /// the real one does not), which makes repeating a reserve with a lost answer safe.
    pub inventory_honors_idempotency_key: bool,
}

/// The saga runner; cheap to clone.
#[derive(Clone)]
pub struct Saga {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    downstream: Downstream,
    settings: SagaSettings,
    answer: Arc<dyn Answer>,
}

/// A run could not record its progress.
#[derive(Debug, thiserror::Error)]
#[error("saga of order could not save its progress: {0}")]
pub struct SagaError(#[from] pub StoreError);

impl Saga {
    pub fn new(
        store: Store,
        downstream: Downstream,
        settings: SagaSettings,
        answer: Arc<dyn Answer>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                downstream,
                settings,
                answer,
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn lease(&self) -> &Lease {
        &self.inner.settings.lease
    }

    /// Runs the order's saga until it is settled or cannot progress now (a compensation
    /// keeps failing), saving after every step. Returns the order as last saved.
    pub async fn drive(
        &self,
        mut order: Order,
        start: Start,
        request_id: String,
    ) -> Result<Order, SagaError> {
        let span = tracing::info_span!("saga", order_id = %order.id);
        let _in_flight = metrics::InFlight::start();
        async move {
            let ctx = CallContext {
                order_id: order.id,
                request_id,
            };
            let mut resumed = start == Start::Resumed;
            loop {
                let step = order.progress.step;
                let events = match step {
                    SagaStep::Reserve => reserve::run(self, &mut order, &ctx, resumed).await,
                    SagaStep::Pay => payment::run(self, &mut order, &ctx).await,
                    SagaStep::Ship => shipment::run(self, &mut order, &ctx, resumed).await,
                    SagaStep::CommitReservation => commit::run(self, &mut order, &ctx).await,
                    SagaStep::Compensate => compensation::run(self, &mut order, &ctx).await,
                    SagaStep::Done => break,
                };
                resumed = false;
                order.updated_at = when::now();
                let stops = order.is_settled() || order.has_failed_compensation();
                if stops && order.response.is_none() {
                    order.response = Some(self.inner.answer.answer(&order));
                    metrics::order_finished(order.status.as_str());
                    tracing::info!(status = %order.status, step = order.progress.step.as_str(), "order finished");
                }
                self.inner
                    .store
                    .save_progress(&order, &events, &self.inner.settings.lease)
                    .await?;
                tracing::debug!(from = step.as_str(), to = order.progress.step.as_str(), status = %order.status, "saga step saved");
                if stops {
                    break;
                }
            }
            Ok(order)
        }
        .instrument(span)
        .await
    }

    fn downstream(&self) -> &Downstream {
        &self.inner.downstream
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.inner.settings.retry
    }
}

/// Describes a failed call as the order's failure, with the old service's wording.
fn failure_of(step: Step, error: &CallError) -> Failure {
    let service = step.as_str();
    let (kind, detail) = match error {
        CallError::Status { status, detail, .. } if *status < 500 && *status != 429 => {
            (FailureKind::Rejected, detail.clone())
        }
        // The old service said "Shipping failed: <detail>" for any shipping error; the
        // view adds that prefix, so the provider's text stays bare here.
        CallError::Status { detail, .. } if step == Step::Shipping => {
            (FailureKind::UpstreamError, detail.clone())
        }
        CallError::Status { detail, .. } => (
            FailureKind::UpstreamError,
            format!("Upstream error from {service} service: {detail}"),
        ),
        CallError::Timeout { .. } => (FailureKind::Timeout, error.to_string()),
        CallError::Unreachable { .. } => (FailureKind::Unreachable, error.to_string()),
        CallError::ConnectionLost { .. } | CallError::BadResponse { .. } => {
            (FailureKind::UpstreamError, error.to_string())
        }
    };
    Failure {
        step,
        kind,
        detail,
        upstream_status: error.upstream_status(),
    }
}
