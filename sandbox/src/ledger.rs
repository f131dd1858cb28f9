//! Typed views of `GET /_sandbox/ledger`, so tests of the order service can deserialize what
//! each service holds and how often it was called or faulted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Calls received per endpoint, keyed `METHOD /route-template`; every contract endpoint of
/// the service is present, with 0 when it was never called.
pub type CallCounts = BTreeMap<String, u64>;

/// How many times each kind of fault was injected, over all endpoints of one service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultCounts {
    /// Requests delayed by `latencyMs`/`jitterMs`.
    pub latency: u64,
    /// Requests answered with the injected `errorStatus`.
    pub error: u64,
    /// Requests that hung.
    pub hang: u64,
    /// Requests that took effect but whose connection was dropped before the answer.
    pub drop_response: u64,
    /// New payments forced to `failed` by `declineRate`.
    pub decline: u64,
    /// Requests answered from an earlier call with the same `Idempotency-Key`.
    pub idempotent_replay: u64,
}

/// The state of the inventory service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryLedger {
    /// Units on hand per SKU (reserved units are already taken out).
    pub stock: BTreeMap<String, u64>,
    /// Every reservation ever made, oldest first.
    pub reservations: Vec<Reservation>,
    /// Requests received per endpoint.
    pub calls: CallCounts,
    /// Faults injected, per kind.
    pub faults_injected: FaultCounts,
}

/// A reservation as the inventory service stores and returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub id: String,
    pub order_id: String,
    pub items: Vec<ReservedItem>,
    pub status: ReservationStatus,
}

/// One line of a reservation; extra fields sent by the client (such as `price`) are not kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedItem {
    pub sku: String,
    pub qty: u64,
}

/// Where a reservation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReservationStatus {
    /// Stock taken, neither committed nor released.
    Reserved,
    /// Kept for good; stock stays taken.
    Committed,
    /// Given up; stock was returned if it was still `reserved`.
    Released,
}

/// The state of the payment service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentLedger {
    /// Every payment, in the order it was first created.
    pub payments: Vec<Payment>,
    /// Requests received per endpoint.
    pub calls: CallCounts,
    /// Faults injected, per kind.
    pub faults_injected: FaultCounts,
}

/// A stored payment (field names as on the payment service's wire).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub id: String,
    pub order_id: String,
    pub amount: f64,
    /// `completed`, `failed`, `refunded`, `refund_failed`, or whatever non-pending status a
    /// client created the payment with.
    pub status: String,
}

/// The state of the shipping service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippingLedger {
    /// Every shipment not deleted, in the order it was created.
    pub shipments: Vec<Shipment>,
    /// Requests received per endpoint.
    pub calls: CallCounts,
    /// Faults injected, per kind.
    pub faults_injected: FaultCounts,
}

/// A stored shipment, reduced to what tests usually check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub id: String,
    pub order_id: String,
    /// `shipped`, `failed`, or whatever a `PUT` set.
    pub status: String,
}
