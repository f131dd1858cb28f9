//! The saga's durable progress: which step is next, what each step did, and which
//! compensations remain. Stored with the order after every step, so that any process can
//! pick up an order where a crashed one left it.

use serde::{Deserialize, Serialize};

use super::ids::ReservationId;

/// The next thing the saga has to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStep {
    #[default]
    Reserve,
    Pay,
    Ship,
    CommitReservation,
    Compensate,
    Done,
}

impl SagaStep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserve => "reserve",
            Self::Pay => "pay",
            Self::Ship => "ship",
            Self::CommitReservation => "commit_reservation",
            Self::Compensate => "compensate",
            Self::Done => "done",
        }
    }
}

/// What a step did to the world, as far as we know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Not attempted, or definitely refused.
    #[default]
    None,
    /// Took effect, and we know its result.
    Done,
    /// A request was sent and no answer came back: it may have taken effect.
    Unknown,
}

impl Effect {
    pub fn may_have_happened(self) -> bool {
        matches!(self, Self::Done | Self::Unknown)
    }
}

/// An undo action of the saga.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompensationAction {
    /// Cancels a shipment whose creation we could not confirm either way.
    CancelShipment,
    RefundPayment,
    ReleaseReservation,
}

impl CompensationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CancelShipment => "cancel_shipment",
            Self::RefundPayment => "refund_payment",
            Self::ReleaseReservation => "release_reservation",
        }
    }
}

/// Where a compensation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompensationState {
    Pending,
    Done,
    /// Every attempt so far failed; it is retried later, never dropped.
    Failed,
}

/// One compensation and its history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compensation {
    pub action: CompensationAction,
    pub state: CompensationState,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Compensation {
    pub fn pending(action: CompensationAction) -> Self {
        Self {
            action,
            state: CompensationState::Pending,
            attempts: 0,
            last_error: None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == CompensationState::Done
    }

    /// Adds `attempts` more tries; `error` is `None` when the last one succeeded.
    pub fn record(&mut self, attempts: u32, error: Option<String>) {
        self.attempts += attempts;
        self.state = if error.is_some() {
            CompensationState::Failed
        } else {
            CompensationState::Done
        };
        self.last_error = error;
    }
}

/// Everything the saga has learnt so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaProgress {
    pub step: SagaStep,
    pub reservation_id: Option<ReservationId>,
    pub reservation: Effect,
    pub payment: Effect,
    pub payment_status: Option<String>,
    pub shipment: Effect,
    pub reservation_committed: bool,
    /// Failed tries to commit the reservation of a completed order (it is retried later).
    #[serde(default)]
    pub commit_attempts: u32,
    pub compensations: Vec<Compensation>,
    /// Why the service stopped trying and an operator has to look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<String>,
    /// The current step's call was not sent (a circuit breaker was open): a later run
    /// takes the step up as new, not as possibly sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub step_unsent: bool,
    /// An operator's note when the order was settled by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

impl SagaProgress {
    /// The most tries any unfinished compensation has had.
    pub fn compensation_attempts(&self) -> u32 {
        self.compensations
            .iter()
            .filter(|c| !c.is_done())
            .map(|c| c.attempts)
            .max()
            .unwrap_or(0)
    }
}
