//! Drives an order through its saga: reserve -> pay -> ship -> commit, or backwards
//! through the compensations. Every step's result is saved (with its events) under a
//! lease, so a run that stops — crash, lease expiry, a compensation that keeps failing —
//! is resumed later by any process ([`recovery`]). A save precedes the next call, except
//! where the calls after it can be found and undone without it (a payment saved with the
//! shipment, a reservation saved while paying and shipping, or with the shipment where
//! reserves replay by key; see [`saved_with_next_step`] and [`saved_alongside_next_calls`]).

mod commit;
mod compensation;
mod events;
mod payment;
pub mod recovery;
mod reserve;
mod shipment;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::domain::idempotency::StoredResponse;
use crate::domain::ids::OrderId;
use crate::domain::order::{Failure, FailureKind, Order, OrderStatus, Step};
use crate::domain::progress::SagaStep;
use crate::domain::when;
use crate::downstream::{CallContext, CallError, Downstream, RetryPolicy};
use crate::store::{ExpectedWriter, Flush, Lease, NewEvent, Store, StoreError};
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
#[derive(Clone, Debug)]
pub struct SagaSettings {
    pub retry: RetryPolicy,
    pub lease: Lease,
    /// The inventory service replays `POST /reserve` by `Idempotency-Key` (the sandbox can;
    /// the real one does not), which makes repeating a reserve with a lost answer safe,
    /// and lets the reservation be saved with the shipment (one durable write less).
    pub inventory_honors_idempotency_key: bool,
    /// Past `created_at + deadline` an unfinished order is compensated, not driven on.
    pub order_deadline: Duration,
    /// Tries of a compensation (over all runs) before the order needs attention.
    pub compensation_max_attempts: u32,
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
    /// Every saga task, so shutdown can wait for them.
    tasks: TaskTracker,
}

/// A run could not record its progress.
#[derive(Debug, thiserror::Error)]
#[error("saga of order could not save its progress: {0}")]
pub struct SagaError(#[from] pub StoreError);

/// Longest pause before an order whose run stopped on a failure is tried again.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(300);
/// First pause before an order whose run stopped on a failure is tried again.
const FIRST_RETRY_PAUSE: Duration = Duration::from_secs(5);

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
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn lease(&self) -> &Lease {
        &self.inner.settings.lease
    }

    pub fn settings(&self) -> &SagaSettings {
        &self.inner.settings
    }

    pub fn downstream(&self) -> &Downstream {
        &self.inner.downstream
    }

    /// The tracker of every saga task this process runs.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// Runs [`drive`](Self::drive) in its own task (in the current span), so that a client
    /// hanging up cannot stop a saga half-way, and shutdown can wait for it.
    pub fn spawn_drive(
        &self,
        order: Order,
        start: Start,
        request_id: String,
        first_events: Vec<NewEvent>,
    ) -> JoinHandle<Result<Order, SagaError>> {
        self.spawn(order, start, request_id, first_events, None)
    }

    /// Starts a new order's saga in its own task, like [`spawn_drive`](Self::spawn_drive),
    /// and resolves as soon as the order's answer is saved: when the saga ends, or earlier,
    /// once only the reservation's commit is left. The commit cannot change the answer
    /// (it is best effort: a failed one leaves the order completed), so the client does
    /// not wait for it; the task commits and saves the settled order after the answer,
    /// and a crash in between is finished by recovery like any saved step.
    pub fn start_fresh(
        &self,
        order: Order,
        request_id: String,
    ) -> impl Future<Output = Result<Result<Order, SagaError>, JoinError>> + use<> {
        let (answered, answer) = oneshot::channel();
        let task = self.spawn(order, Start::Fresh, request_id, Vec::new(), Some(answered));
        async move {
            match answer.await {
                Ok(order) => Ok(Ok(order)),
                // Ended without an early answer: its result is the answer.
                Err(_) => task.await,
            }
        }
    }

    fn spawn(
        &self,
        order: Order,
        start: Start,
        request_id: String,
        first_events: Vec<NewEvent>,
        answered: Option<oneshot::Sender<Order>>,
    ) -> JoinHandle<Result<Order, SagaError>> {
        let saga = self.clone();
        // Boxed: the saga's future is ~6 KB, and every wrapper on its way into the task
        // (span, trace context, tracker, the task's cell) would copy it again.
        let drive = Box::pin(async move {
            saga.drive(order, start, request_id, first_events, answered)
                .await
        });
        self.inner
            .tasks
            .spawn(crate::telemetry::propagation::carry_into(
                drive.instrument(tracing::Span::current()),
            ))
    }

    /// Runs the order's saga until it is settled or cannot progress now (a compensation or
    /// the reservation commit keeps failing), saving after every step. `first_events` are
    /// written with the first save. Returns the order as last saved; `answered`, if
    /// given, gets it earlier, once its answer is final and saved (see
    /// [`start_fresh`](Self::start_fresh)).
    async fn drive(
        &self,
        mut order: Order,
        start: Start,
        request_id: String,
        first_events: Vec<NewEvent>,
        mut answered: Option<oneshot::Sender<Order>>,
    ) -> Result<Order, SagaError> {
        let span = tracing::info_span!("saga", order_id = %order.id);
        let _in_flight = metrics::InFlight::start();
        // Its saves are coming: the SQLite writer may hold a lone write back for them.
        let _writing = ExpectedWriter::enter();
        async move {
            // Inside the saga's span: its calls name it as their parent.
            let ctx = CallContext::new(order.id, request_id);
            let mut resumed = start == Start::Resumed;
            let mut pending_events = first_events;
            // The reservation's save while the payment and shipment calls go on.
            let mut saving: Option<SaveInFlight> = None;
            loop {
                let step = order.progress.step;
                if step == SagaStep::Done {
                    break;
                }
                if order.progress.step_unsent {
                    // A paused step was never sent: take it up as new.
                    resumed = false;
                    order.progress.step_unsent = false;
                }
                let deadline_passed = self.deadline_passed(&order);
                let id = order.id;
                let (mut events, lease_lost) = {
                    // Pinned here, not in `keeping_lease`: moving it in would copy it twice.
                    let work = std::pin::pin!(async {
                        match step {
                            SagaStep::Reserve => {
                                reserve::run(self, &mut order, &ctx, resumed).await
                            }
                            SagaStep::Pay if deadline_passed => {
                                payment::look_up_only(self, &mut order, &ctx, resumed).await
                            }
                            SagaStep::Pay => payment::run(self, &mut order, &ctx, resumed).await,
                            SagaStep::Ship => {
                                shipment::run(self, &mut order, &ctx, resumed, deadline_passed)
                                    .await
                            }
                            SagaStep::CommitReservation => {
                                commit::run(self, &mut order, &ctx).await
                            }
                            SagaStep::Compensate => {
                                compensation::run(self, &mut order, &ctx).await
                            }
                            SagaStep::Done => unreachable!("checked above"),
                        }
                    });
                    self.keeping_lease(id, work).await
                };
                if lease_lost {
                    // Another process drives the order now: stop before the next call
                    // instead of racing it (this step's save would be refused anyway).
                    return Err(SagaError(StoreError::LeaseLost(id)));
                }
                if step != SagaStep::CommitReservation {
                    // The commit changes nothing the order shows, so the order (its
                    // `updatedAt` too) stays as answered before it: GET shows the answer.
                    order.updated_at = when::now();
                }
                if order.progress.step_unsent {
                    // An open breaker refused the call before it was sent: nothing happened.
                    // Rest until the breaker may let calls through, then go on (or, past
                    // the deadline, compensate).
                    let pause = self
                        .downstream()
                        .open_breaker()
                        .map(|(_, left)| left)
                        .unwrap_or(FIRST_RETRY_PAUSE)
                        .max(Duration::from_secs(1));
                    events.push(events::decision(
                        step.as_str(),
                        "paused",
                        format!(
                            "a downstream service is unavailable (circuit breaker open); resuming in about {} s",
                            pause.as_secs()
                        ),
                    ));
                    if order.status != OrderStatus::Pending && order.response.is_none() {
                        // The outcome is decided (only a compensation waits): answer it.
                        order.response = Some(self.inner.answer.answer(&order));
                        metrics::order_finished(order.status.as_str());
                    }
                    pending_events.append(&mut events);
                    SaveInFlight::finish(saving.take()).await?;
                    let lease = &self.inner.settings.lease;
                    self.inner
                        .store
                        .save_progress(&order, &pending_events, lease)
                        .await?;
                    let until = when::now() + chrono::Duration::from_std(pause).unwrap_or_default();
                    self.inner
                        .store
                        .extend_lease(order.id, &lease.owner, until)
                        .await?;
                    return Ok(order);
                }
                let stops = self.stop_here(step, &mut order, &mut events);
                if (stops || order.answer_is_final()) && order.response.is_none() {
                    order.response = Some(self.inner.answer.answer(&order));
                    metrics::order_finished(order.status.as_str());
                    tracing::info!(status = %order.status, step = order.progress.step.as_str(), "order finished");
                }
                pending_events.append(&mut events);
                let reserves_replay = self.inner.settings.inventory_honors_idempotency_key;
                if !stops && saved_with_next_step(step, &order, reserves_replay) {
                    // `resumed` stays: if this run was resumed at the payment (or the
                    // reservation), the stopped run may also have made the next calls.
                    continue;
                }
                // Saves of one order land in the order they were made.
                SaveInFlight::finish(saving.take()).await?;
                if !stops && saved_alongside_next_calls(step, &order) {
                    saving = Some(self.save_in_background(&order, &pending_events));
                    pending_events.clear();
                    // `resumed` stays: if this run was resumed at the reservation, the
                    // stopped run may also have paid and shipped.
                    continue;
                }
                self.inner
                    .store
                    .save_progress_flushing(
                        &order,
                        &pending_events,
                        &self.inner.settings.lease,
                        flush_of_save_after(step),
                    )
                    .await?;
                pending_events.clear();
                resumed = false;
                tracing::debug!(from = step.as_str(), to = order.progress.step.as_str(), status = %order.status, "saga step saved");
                if stops {
                    break;
                }
                if order.response.is_some()
                    && let Some(answered) = answered.take()
                {
                    // The answer is saved and final: the client need not wait for the rest.
                    let _ = answered.send(order.clone());
                }
            }
            SaveInFlight::finish(saving).await?;
            if !order.is_settled() {
                self.postpone(&order).await?;
            }
            Ok(order)
        }
        .instrument(span)
        .await
    }

    /// Starts saving the order as it is now in its own task, so the saga's next calls need
    /// not wait for the commit (see [`saved_alongside_next_calls`]). Nor need the commit
    /// wait for its flush ([`Flush::Deferred`]): the next save, which waits for this one,
    /// is flushed before anything relies on it, and flushes this one with it.
    fn save_in_background(&self, order: &Order, events: &[NewEvent]) -> SaveInFlight {
        let store = self.inner.store.clone();
        let lease = self.inner.settings.lease.clone();
        let (order, events) = (order.clone(), events.to_vec());
        // Boxed for the reason given in `spawn` (~3 KB).
        let save = Box::pin(async move {
            store
                .save_progress_flushing(&order, &events, &lease, Flush::Deferred)
                .await
        });
        SaveInFlight(
            self.inner
                .tasks
                .spawn(save.instrument(tracing::Span::current())),
        )
    }

    /// Runs a step while renewing the order's lease every third of its time-to-live, so a
    /// slow step (long timeouts, many retries) is not taken for a dead process's. Also
    /// says whether the lease was found taken by another process meanwhile.
    async fn keeping_lease<T>(
        &self,
        id: OrderId,
        mut work: impl Future<Output = T> + Unpin,
    ) -> (T, bool) {
        let lease = &self.inner.settings.lease;
        let every = (lease.ttl / 3).max(Duration::from_millis(100));
        let mut lost = false;
        loop {
            tokio::select! {
                out = &mut work => return (out, lost),
                () = tokio::time::sleep(every) => {
                    let until = lease.expires_at(when::now());
                    match self.inner.store.extend_lease(id, &lease.owner, until).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost = true;
                            tracing::warn!("lease lost while a step runs; its result will not be saved");
                        }
                        Err(error) => tracing::warn!(%error, "renewing the lease failed"),
                    }
                }
            }
        }
    }

    fn deadline_passed(&self, order: &Order) -> bool {
        let deadline = chrono::Duration::from_std(self.inner.settings.order_deadline)
            .unwrap_or(chrono::Duration::MAX);
        when::now() > order.created_at + deadline
    }

    /// Whether this run ends after the step `done`: settled, or waiting to try a failed
    /// compensation or commit again. Too many failed tries end automatic work.
    fn stop_here(&self, done: SagaStep, order: &mut Order, events: &mut Vec<NewEvent>) -> bool {
        let max = self.inner.settings.compensation_max_attempts;
        match order.progress.step {
            SagaStep::Done => true,
            SagaStep::Compensate
                if done == SagaStep::Compensate && order.has_failed_compensation() =>
            {
                if order.progress.compensation_attempts() >= max {
                    let reason = format!("compensations still failing after {max} tries");
                    events.push(events::decision(
                        "compensate",
                        "needs_attention",
                        reason.clone(),
                    ));
                    tracing::warn!(%reason, "order needs attention");
                    order.needs_attention(reason);
                }
                true
            }
            SagaStep::CommitReservation if done == SagaStep::CommitReservation => {
                if order.progress.commit_attempts >= max {
                    events.push(events::decision(
                        "commit_reservation",
                        "abandoned",
                        format!(
                            "commit still failing after {max} tries; the order stays completed"
                        ),
                    ));
                    order.abandon_commit();
                }
                true
            }
            _ => false,
        }
    }

    /// Lets a stopped, unsettled order rest before the recovery worker tries it again:
    /// its lease is kept until then, longer after each failed run.
    async fn postpone(&self, order: &Order) -> Result<(), SagaError> {
        let runs = order
            .progress
            .compensation_attempts()
            .max(order.progress.commit_attempts)
            / self.inner.settings.retry.attempts.max(1);
        let pause = FIRST_RETRY_PAUSE
            .saturating_mul(1u32 << runs.min(10))
            .min(MAX_RETRY_PAUSE);
        let until = when::now() + chrono::Duration::from_std(pause).unwrap_or_default();
        self.inner
            .store
            .extend_lease(order.id, &self.inner.settings.lease.owner, until)
            .await?;
        Ok(())
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.inner.settings.retry
    }
}

/// Whether the result of step `done` is saved only with the next step's: a payment taken,
/// and a reservation where the inventory service replays a reserve by its key
/// (`reserves_replay`). Four durable writes per order instead of five (the order with its
/// key, the reservation, the shipment, the settled order), three where reserves replay,
/// and nothing is lost by it: a run that stops before the next save leaves the order at
/// its payment (or reservation) step; the run that resumes it reserves again with the
/// same key and charges again with the same payment id, which those services answer with
/// the first call's result, and treats the shipment as possibly created (looks it up
/// before creating it, cancels it too if it has to undo the order). Elsewhere the
/// reservation's result is saved before the shipment (see [`saved_alongside_next_calls`]):
/// the inventory service cannot be asked for it later.
fn saved_with_next_step(done: SagaStep, order: &Order, reserves_replay: bool) -> bool {
    match (done, order.progress.step) {
        (SagaStep::Pay, SagaStep::Ship) => true,
        (SagaStep::Reserve, SagaStep::Pay) => reserves_replay,
        _ => false,
    }
}

/// Whether the result of step `done` is saved while the next calls are made: a
/// reservation. Its id must become durable (the inventory service cannot be asked for it
/// later), but nothing after it depends on the save: the payment and the shipment have
/// ids chosen with the order, so a run resumed at the reservation can find and undo them.
/// The commit then overlaps the payment and shipment calls instead of preceding them —
/// one commit fewer on the path to the answer; the next save waits for it.
fn saved_alongside_next_calls(done: SagaStep, order: &Order) -> bool {
    done == SagaStep::Reserve && order.progress.step == SagaStep::Pay
}

/// How the save after step `done` is flushed. The commit's save is the last of an order
/// that went through, after its client was answered, and changes nothing the order shows:
/// nothing waits for it to reach the disk (see [`Flush`]). Lost to a crash of the
/// database server before a later flush covers it, it leaves the order at its commit,
/// which recovery makes again; the inventory answers a second commit like the first.
/// Every other save is flushed before the saga goes on: the next call, or the client's
/// answer, relies on it. At one client this takes a WAL flush off the next order's path
/// (its insert no longer shares the disk with this save's).
fn flush_of_save_after(done: SagaStep) -> Flush {
    if done == SagaStep::CommitReservation {
        Flush::Deferred
    } else {
        Flush::AtCommit
    }
}

/// A save running in its own task (see [`Saga::save_in_background`]).
struct SaveInFlight(JoinHandle<Result<(), StoreError>>);

impl SaveInFlight {
    /// Waits for the save, if one runs, and passes on its failure.
    async fn finish(saving: Option<Self>) -> Result<(), SagaError> {
        let Some(Self(task)) = saving else {
            return Ok(());
        };
        match task.await {
            Ok(saved) => Ok(saved?),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(SagaError(StoreError::Interrupted)),
        }
    }
}

/// A call an open circuit breaker refused was never sent, so it is no reason to fail the
/// order: marks the step as unsent (the run then pauses) and says whether that happened.
fn paused_by_breaker(order: &mut Order, error: &CallError) -> bool {
    let refused = matches!(error, CallError::CircuitOpen { .. });
    if refused {
        order.progress.step_unsent = true;
    }
    refused
}

/// Describes a failed call as the order's failure, with the old service's wording.
fn failure_of(step: Step, error: &CallError) -> Failure {
    let service = step.as_str();
    let (kind, detail) = match error {
        CallError::Status { detail, .. } if error.is_rejection() => {
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
        CallError::CircuitOpen { .. } => (FailureKind::Unavailable, error.to_string()),
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
