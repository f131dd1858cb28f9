//! The order: what was asked for (validated), where its saga stands, and the status a
//! client sees. State changes happen through the transition methods here, so the rules of
//! the lifecycle live in one place.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::idempotency::StoredResponse;
use super::ids::{OrderId, PaymentId, ReservationId, ShipmentId, UserId};
use super::money::{Currency, json_number};
use super::progress::{Compensation, CompensationAction, Effect, SagaProgress, SagaStep};
use super::when::{self, Timestamp};

/// A stock-keeping unit: non-blank, at most 64 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    pub const MAX_CHARS: usize = 64;

    /// Only [`super::validation`] builds these from client input; stored ones are trusted.
    pub(crate) fn new_unchecked(sku: String) -> Self {
        Self(sku)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many units of a SKU: 1 to 10,000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub const MIN: u32 = 1;
    pub const MAX: u32 = 10_000;

    pub fn new(qty: u32) -> Option<Self> {
        (Self::MIN..=Self::MAX).contains(&qty).then_some(Self(qty))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A shipping address, as the old service took it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub line1: String,
    pub city: String,
    pub country: String,
    pub postal_code: String,
}

/// One line of an order; `price` is the exact unit price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: Sku,
    pub qty: Quantity,
    #[serde(with = "json_number")]
    pub price: Decimal,
}

impl LineItem {
    pub fn subtotal(&self) -> Decimal {
        self.price * Decimal::from(self.qty.get())
    }
}

/// A validated request for an order: every field is known good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    pub user_id: UserId,
    pub address: Address,
    pub currency: Currency,
    pub items: Vec<LineItem>,
    #[serde(with = "json_number")]
    pub total: Decimal,
}

/// What a client sees of an order's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// The saga is still running (or waits for recovery).
    Pending,
    Completed,
    /// Failed before shipping; its stock and payment are (being) given back.
    Cancelled,
    /// Shipping failed; payment refunded and stock released.
    FailedShipping,
    /// The service cannot settle it alone (e.g. a reservation's outcome is unknown).
    NeedsAttention,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        Self::Pending,
        Self::Completed,
        Self::Cancelled,
        Self::FailedShipping,
        Self::NeedsAttention,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::FailedShipping => "failed_shipping",
            Self::NeedsAttention => "needs_attention",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unrecognised status text.
#[derive(Debug, thiserror::Error)]
#[error("unknown order status '{0}'")]
pub struct UnknownStatus(pub String);

impl FromStr for OrderStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// The downstream service a step talks to; names the failed step in `failure.step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Inventory,
    Payment,
    Shipping,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inventory => "inventory",
            Self::Payment => "payment",
            Self::Shipping => "shipping",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a step failed, in the terms that decide the client's status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The service refused the request with a 4xx; the client gets the same status.
    Rejected,
    /// The payment was declined (a 201 whose status is not completed).
    Declined,
    /// The service answered 5xx (after retries), or the shipping provider failed.
    UpstreamError,
    /// No answer in time.
    Timeout,
    /// The service could not be reached.
    Unreachable,
    /// The service is known to be down (its circuit breaker is open); nothing was sent.
    Unavailable,
}

/// Why an order did not complete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub step: Step,
    pub kind: FailureKind,
    pub detail: String,
    pub upstream_status: Option<u16>,
}

/// Why an operator action does not apply to an order.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotActionable {
    #[error("the order is {0} and waits for nobody")]
    NothingToDo(OrderStatus),
    #[error(
        "the reservation's outcome is unknown and the inventory service cannot replay it; \
         check the stock by hand, then resolve the order"
    )]
    UnknownReservation,
}

/// An order as stored: the request, the saga's progress and the client-visible status.
#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub address: Address,
    pub currency: Currency,
    pub items: Vec<LineItem>,
    pub total: Decimal,
    pub status: OrderStatus,
    /// Chosen before the first payment call; see [`PaymentId`].
    pub payment_id: PaymentId,
    /// Chosen before the first shipment call; see [`ShipmentId`].
    pub shipment_id: ShipmentId,
    pub progress: SagaProgress,
    pub failure: Option<Failure>,
    /// The answer given to the client that created it, kept for idempotent replays.
    pub response: Option<StoredResponse>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Order {
    /// A new, pending order whose ids for the later steps are already chosen.
    pub fn create(new: NewOrder) -> Self {
        let now = when::now();
        Self {
            id: OrderId::new(),
            user_id: new.user_id,
            address: new.address,
            currency: new.currency,
            items: new.items,
            total: new.total,
            status: OrderStatus::Pending,
            payment_id: PaymentId::generate(),
            shipment_id: ShipmentId::generate(),
            progress: SagaProgress::default(),
            failure: None,
            response: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether the saga has nothing left to do.
    pub fn is_settled(&self) -> bool {
        self.progress.step == SagaStep::Done
    }

    /// Whether what is left of the saga can no longer change the client's answer: a
    /// completed order whose only step left is the reservation's commit, which is best
    /// effort (a failed commit leaves the order completed).
    pub fn answer_is_final(&self) -> bool {
        self.is_settled()
            || (self.status == OrderStatus::Completed
                && self.progress.step == SagaStep::CommitReservation)
    }

    /// The reservation id, once the inventory service told us.
    pub fn reservation_id(&self) -> Option<&ReservationId> {
        self.progress.reservation_id.as_ref()
    }

    /// Stock is held under `reservation`: go on to payment.
    pub fn reserved(&mut self, reservation: ReservationId) {
        self.progress.reservation_id = Some(reservation);
        self.progress.reservation = Effect::Done;
        self.progress.step = SagaStep::Pay;
    }

    /// The payment went through: go on to shipping.
    pub fn paid(&mut self, payment_status: String) {
        self.progress.payment = Effect::Done;
        self.progress.payment_status = Some(payment_status);
        self.progress.step = SagaStep::Ship;
    }

    /// The shipment exists: the order is complete; the reservation still has to be committed.
    pub fn shipped(&mut self) {
        self.progress.shipment = Effect::Done;
        self.status = OrderStatus::Completed;
        self.progress.step = SagaStep::CommitReservation;
    }

    /// Records a try to commit the reservation. A failed one leaves the step open, to be
    /// tried again by a later run.
    pub fn reservation_commit_finished(&mut self, committed: bool) {
        self.progress.reservation_committed = committed;
        if committed {
            self.progress.step = SagaStep::Done;
        } else {
            self.progress.commit_attempts += 1;
        }
    }

    /// Stops retrying the commit of a completed order's reservation: the order is
    /// complete either way (the old service treated the commit as best effort).
    pub fn abandon_commit(&mut self) {
        self.progress.step = SagaStep::Done;
    }

    /// Stops automatic work on the order: an operator has to check it (`reason` says why).
    pub fn needs_attention(&mut self, reason: String) {
        self.status = OrderStatus::NeedsAttention;
        self.progress.attention = Some(reason);
        self.progress.step = SagaStep::Done;
    }

    /// Marks the order as handled by hand. Its status becomes what its failure implies.
    pub fn resolve(&mut self, note: String) -> Result<(), NotActionable> {
        if !self.awaits_operator() {
            return Err(NotActionable::NothingToDo(self.status));
        }
        self.status = self.failure_status();
        self.progress.resolution = Some(note);
        for c in self
            .progress
            .compensations
            .iter_mut()
            .filter(|c| !c.is_done())
        {
            c.state = super::progress::CompensationState::Failed;
        }
        self.progress.step = SagaStep::Done;
        Ok(())
    }

    /// Prepares an order that waits for an operator to be driven again now. A reservation
    /// of unknown outcome can only be retried when the inventory service replays reserves
    /// by key.
    pub fn prepare_retry(&mut self, inventory_replays_by_key: bool) -> Result<(), NotActionable> {
        if !self.awaits_operator() {
            return Err(NotActionable::NothingToDo(self.status));
        }
        let unknown_reservation =
            self.progress.reservation == Effect::Unknown && self.progress.reservation_id.is_none();
        if unknown_reservation {
            if !inventory_replays_by_key {
                return Err(NotActionable::UnknownReservation);
            }
            // Send the reserve again with the same key: the inventory service answers with
            // the first reservation (or makes one), then the saga goes on.
            self.progress.reservation = Effect::None;
            self.progress.step = SagaStep::Reserve;
            self.status = OrderStatus::Pending;
            self.failure = None;
        } else if self.next_compensation().is_some() {
            self.status = self.failure_status();
            self.progress.step = SagaStep::Compensate;
        } else {
            return Err(NotActionable::NothingToDo(self.status));
        }
        self.progress.attention = None;
        Ok(())
    }

    /// Whether the order waits for an operator: it needs attention, or a compensation
    /// keeps failing.
    pub fn awaits_operator(&self) -> bool {
        self.status == OrderStatus::NeedsAttention || self.has_failed_compensation()
    }

    /// The final status a failed order has once its compensations are done.
    fn failure_status(&self) -> OrderStatus {
        match self.failure.as_ref().map(|f| f.step) {
            Some(Step::Shipping) => OrderStatus::FailedShipping,
            Some(Step::Inventory | Step::Payment) => OrderStatus::Cancelled,
            None if self.progress.shipment == Effect::Done => OrderStatus::Completed,
            None => OrderStatus::Cancelled,
        }
    }

    /// A step failed for good: record why, decide the final status and schedule the
    /// compensations, newest effect first (refund before release, as in the contract).
    /// A shipment that may exist although we saw no answer is cancelled first.
    pub fn fail(&mut self, failure: Failure, effects_of_failed_step: Effect) {
        match failure.step {
            Step::Inventory => self.progress.reservation = effects_of_failed_step,
            Step::Payment => self.progress.payment = effects_of_failed_step,
            Step::Shipping => self.progress.shipment = effects_of_failed_step,
        }
        self.status = match failure.step {
            Step::Shipping => OrderStatus::FailedShipping,
            Step::Inventory | Step::Payment => OrderStatus::Cancelled,
        };
        let mut compensations = Vec::new();
        if self.progress.shipment == Effect::Unknown {
            compensations.push(Compensation::pending(CompensationAction::CancelShipment));
        }
        if self.progress.payment.may_have_happened() && failure.kind != FailureKind::Declined {
            compensations.push(Compensation::pending(CompensationAction::RefundPayment));
        }
        if self.progress.reservation_id.is_some() {
            compensations.push(Compensation::pending(
                CompensationAction::ReleaseReservation,
            ));
        }
        if failure.step == Step::Inventory && self.progress.reservation == Effect::Unknown {
            // The stock may be held under a reservation id we never learnt: only a person
            // (or an inventory that honours Idempotency-Key) can tell.
            self.status = OrderStatus::NeedsAttention;
        }
        self.failure = Some(failure);
        self.progress.compensations = compensations;
        self.progress.step = if self.progress.compensations.is_empty() {
            SagaStep::Done
        } else {
            SagaStep::Compensate
        };
    }

    /// The next compensation still to run, if any.
    pub fn next_compensation(&self) -> Option<CompensationAction> {
        self.progress
            .compensations
            .iter()
            .find(|c| !c.is_done())
            .map(|c| c.action)
    }

    /// Records one compensation's result; the saga is done when all are.
    pub fn compensation_finished(
        &mut self,
        action: CompensationAction,
        attempts: u32,
        error: Option<String>,
    ) {
        if let Some(c) = self
            .progress
            .compensations
            .iter_mut()
            .find(|c| c.action == action)
        {
            c.record(attempts, error);
        }
        if self
            .progress
            .compensations
            .iter()
            .all(Compensation::is_done)
        {
            self.progress.step = SagaStep::Done;
        }
    }

    /// Whether a compensation failed and waits for a later retry.
    pub fn has_failed_compensation(&self) -> bool {
        self.progress
            .compensations
            .iter()
            .any(|c| c.state == super::progress::CompensationState::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::progress::CompensationState;

    fn order() -> Order {
        Order::create(NewOrder {
            user_id: UserId::anonymous(),
            address: Address {
                line1: "1 Main St".into(),
                city: "Pune".into(),
                country: "IN".into(),
                postal_code: "411001".into(),
            },
            currency: Currency::default(),
            items: vec![LineItem {
                sku: Sku::new_unchecked("SKU-001".into()),
                qty: Quantity::new(2).unwrap(),
                price: Decimal::new(1050, 2),
            }],
            total: Decimal::new(2100, 2),
        })
    }

    fn failure(step: Step, kind: FailureKind) -> Failure {
        Failure {
            step,
            kind,
            detail: "x".into(),
            upstream_status: None,
        }
    }

    #[test]
    fn happy_path_walks_every_step() {
        let mut o = order();
        assert_eq!(o.progress.step, SagaStep::Reserve);
        o.reserved(ReservationId::from("r1".to_owned()));
        assert_eq!(o.progress.step, SagaStep::Pay);
        o.paid("completed".into());
        assert_eq!(o.progress.step, SagaStep::Ship);
        o.shipped();
        assert_eq!(o.status, OrderStatus::Completed);
        assert!(!o.is_settled());
        o.reservation_commit_finished(true);
        assert!(o.is_settled());
    }

    #[test]
    fn decline_releases_stock_but_refunds_nothing() {
        let mut o = order();
        o.reserved(ReservationId::from("r1".to_owned()));
        o.fail(failure(Step::Payment, FailureKind::Declined), Effect::Done);
        assert_eq!(o.status, OrderStatus::Cancelled);
        let actions: Vec<_> = o.progress.compensations.iter().map(|c| c.action).collect();
        assert_eq!(actions, vec![CompensationAction::ReleaseReservation]);
    }

    #[test]
    fn shipping_failure_refunds_then_releases() {
        let mut o = order();
        o.reserved(ReservationId::from("r1".to_owned()));
        o.paid("completed".into());
        o.fail(
            failure(Step::Shipping, FailureKind::UpstreamError),
            Effect::None,
        );
        assert_eq!(o.status, OrderStatus::FailedShipping);
        assert_eq!(
            o.next_compensation(),
            Some(CompensationAction::RefundPayment)
        );
        o.compensation_finished(CompensationAction::RefundPayment, 1, None);
        assert_eq!(
            o.next_compensation(),
            Some(CompensationAction::ReleaseReservation)
        );
        assert!(!o.is_settled());
        o.compensation_finished(CompensationAction::ReleaseReservation, 1, None);
        assert!(o.is_settled());
    }

    #[test]
    fn uncertain_payment_is_refunded_in_case_it_happened() {
        let mut o = order();
        o.reserved(ReservationId::from("r1".to_owned()));
        o.fail(
            failure(Step::Payment, FailureKind::Timeout),
            Effect::Unknown,
        );
        assert_eq!(
            o.next_compensation(),
            Some(CompensationAction::RefundPayment)
        );
    }

    #[test]
    fn unconfirmed_shipment_is_cancelled_before_the_refund() {
        let mut o = order();
        o.reserved(ReservationId::from("r1".to_owned()));
        o.paid("completed".into());
        o.fail(
            failure(Step::Shipping, FailureKind::Timeout),
            Effect::Unknown,
        );
        let actions: Vec<_> = o.progress.compensations.iter().map(|c| c.action).collect();
        assert_eq!(
            actions,
            vec![
                CompensationAction::CancelShipment,
                CompensationAction::RefundPayment,
                CompensationAction::ReleaseReservation
            ]
        );
    }

    #[test]
    fn unknown_reservation_needs_attention() {
        let mut o = order();
        o.fail(
            failure(Step::Inventory, FailureKind::Timeout),
            Effect::Unknown,
        );
        assert_eq!(o.status, OrderStatus::NeedsAttention);
        assert!(o.is_settled(), "nothing automatic is left to do");
    }

    #[test]
    fn failed_commit_is_retried_not_dropped() {
        let mut o = order();
        o.reserved(ReservationId::from("r1".to_owned()));
        o.paid("completed".into());
        o.shipped();
        o.reservation_commit_finished(false);
        assert_eq!(o.progress.step, SagaStep::CommitReservation);
        assert_eq!(o.progress.commit_attempts, 1);
        assert_eq!(o.status, OrderStatus::Completed);
        o.reservation_commit_finished(true);
        assert!(o.is_settled());
    }

    #[test]
    fn operator_can_retry_a_stuck_compensation() {
        let mut o = order();
        o.reserved(ReservationId::from("r1".to_owned()));
        o.fail(failure(Step::Payment, FailureKind::Declined), Effect::Done);
        o.compensation_finished(
            CompensationAction::ReleaseReservation,
            10,
            Some("down".into()),
        );
        o.needs_attention("release kept failing".into());
        assert!(o.is_settled());
        o.prepare_retry(false).unwrap();
        assert_eq!(o.status, OrderStatus::Cancelled);
        assert_eq!(o.progress.step, SagaStep::Compensate);
        assert_eq!(o.progress.attention, None);
    }

    #[test]
    fn unknown_reservation_is_retried_only_where_reserves_replay() {
        let mut o = order();
        o.fail(
            failure(Step::Inventory, FailureKind::Timeout),
            Effect::Unknown,
        );
        assert_eq!(
            o.prepare_retry(false),
            Err(NotActionable::UnknownReservation)
        );
        o.prepare_retry(true).unwrap();
        assert_eq!(o.progress.step, SagaStep::Reserve);
        assert_eq!(o.status, OrderStatus::Pending);
        assert!(o.failure.is_none());
    }

    #[test]
    fn resolving_settles_with_the_failure_status() {
        let mut o = order();
        o.fail(
            failure(Step::Inventory, FailureKind::Timeout),
            Effect::Unknown,
        );
        o.resolve("stock checked, nothing held".into()).unwrap();
        assert_eq!(o.status, OrderStatus::Cancelled);
        assert_eq!(
            o.progress.resolution.as_deref(),
            Some("stock checked, nothing held")
        );
        assert!(matches!(
            o.resolve("again".into()),
            Err(NotActionable::NothingToDo(_))
        ));
    }

    #[test]
    fn failed_compensation_keeps_the_saga_open() {
        let mut o = order();
        o.reserved(ReservationId::from("r1".to_owned()));
        o.fail(failure(Step::Payment, FailureKind::Rejected), Effect::None);
        o.compensation_finished(
            CompensationAction::ReleaseReservation,
            3,
            Some("timeout".into()),
        );
        assert!(!o.is_settled());
        assert!(o.has_failed_compensation());
        assert_eq!(o.progress.compensations[0].state, CompensationState::Failed);
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>().unwrap(), status);
        }
    }
}
