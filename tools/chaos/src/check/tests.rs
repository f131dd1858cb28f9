use std::collections::BTreeMap;
use std::sync::Arc;

use platform_sandbox::ledger::{
    FaultCounts, InventoryLedger, Payment, PaymentLedger, Reservation, ReservationStatus,
    ReservedItem, Shipment, ShippingLedger,
};

use super::*;
use crate::api::Order;
use crate::load::{Answer, KeyRecord, Mix, OrderPlan};
use crate::sandbox::Ledgers;

const MIX: Mix = Mix {
    fail_share: 0.0,
    large_share: 0.0,
    duplicate_share: 0.0,
};

fn order(id: &str, index: u64, status: &str) -> Order {
    Order {
        id: id.to_owned(),
        user_id: OrderPlan::new(1, index, MIX).user_id,
        status: status.to_owned(),
        reservation_id: Some(format!("r-{id}")),
        payment_intent_id: Some(format!("p-{id}")),
        shipment_id: Some(format!("s-{id}")),
        total: 10.0,
        failure: None,
        compensations: Vec::new(),
    }
}

fn reservation(order_id: &str, qty: u64, status: ReservationStatus) -> Reservation {
    Reservation {
        id: format!("r-{order_id}"),
        order_id: order_id.to_owned(),
        items: vec![ReservedItem {
            sku: "SKU-001".to_owned(),
            qty,
        }],
        status,
    }
}

fn payment(order_id: &str, status: &str) -> Payment {
    Payment {
        id: format!("p-{order_id}"),
        order_id: order_id.to_owned(),
        amount: 10.0,
        status: status.to_owned(),
    }
}

fn shipment(order_id: &str) -> Shipment {
    Shipment {
        id: format!("s-{order_id}"),
        order_id: order_id.to_owned(),
        status: "shipped".to_owned(),
    }
}

fn answer(status: u16, id: &str) -> Answer {
    Answer {
        status: Some(status),
        order_id: Some(id.to_owned()),
        order_status: None,
        retry_after: None,
        replayed: false,
        replica: 0,
        error: None,
        sent_at_ms: 0,
        took_ms: 0,
    }
}

fn key(index: u64, answers: Vec<Answer>) -> KeyRecord {
    KeyRecord {
        plan: Arc::new(OrderPlan::new(1, index, MIX)),
        answers,
    }
}

/// A completed order `a` (2 units) and a cancelled order `b`, all consistent.
struct World {
    orders: Vec<Order>,
    ledgers: Ledgers,
    keys: Vec<KeyRecord>,
    lookups: BTreeMap<String, u16>,
    initial: BTreeMap<String, u64>,
}

impl World {
    fn new() -> Self {
        let ledgers = Ledgers {
            inventory: InventoryLedger {
                stock: BTreeMap::from([("SKU-001".to_owned(), 98)]),
                reservations: vec![
                    reservation("a", 2, ReservationStatus::Committed),
                    reservation("b", 5, ReservationStatus::Released),
                ],
                calls: BTreeMap::new(),
                faults_injected: FaultCounts::default(),
            },
            payment: PaymentLedger {
                payments: vec![payment("a", "completed"), payment("b", "refunded")],
                calls: BTreeMap::new(),
                faults_injected: FaultCounts::default(),
            },
            shipping: ShippingLedger {
                shipments: vec![shipment("a")],
                calls: BTreeMap::new(),
                faults_injected: FaultCounts::default(),
            },
        };
        World {
            orders: vec![order("a", 0, "completed"), order("b", 1, "cancelled")],
            ledgers,
            keys: vec![
                key(
                    0,
                    vec![answer(202, "a"), answer(201, "a"), answer(201, "a")],
                ),
                key(1, vec![answer(502, "b")]),
            ],
            lookups: BTreeMap::from([("a".to_owned(), 200), ("b".to_owned(), 200)]),
            initial: BTreeMap::from([("SKU-001".to_owned(), 100)]),
        }
    }

    fn check(&self) -> Findings {
        check(&Evidence {
            orders: &self.orders,
            initial_stock: &self.initial,
            ledgers: &self.ledgers,
            keys: &self.keys,
            lookups: &self.lookups,
        })
    }

    fn rules(&self) -> Vec<&'static str> {
        self.check()
            .violations
            .iter()
            .map(|v| v.invariant)
            .collect()
    }
}

#[test]
fn a_consistent_world_has_no_violations() {
    let findings = World::new().check();
    assert_eq!(findings.violations, vec![]);
    assert!(findings.needs_attention.is_empty());
}

#[test]
fn a_pending_order_is_not_final() {
    let mut world = World::new();
    world.orders[1].status = "pending".to_owned();
    assert_eq!(world.rules(), vec!["1-final"]);
}

#[test]
fn a_cancelled_order_with_a_failed_compensation_is_not_final() {
    let mut world = World::new();
    world.orders[1]
        .compensations
        .push(crate::api::Compensation {
            action: "refund_payment".to_owned(),
            state: "failed".to_owned(),
            last_error: Some("503".to_owned()),
        });
    assert_eq!(world.rules(), vec!["1-final"]);
}

#[test]
fn stock_taken_without_a_reservation_breaks_conservation() {
    let mut world = World::new();
    world
        .ledgers
        .inventory
        .stock
        .insert("SKU-001".to_owned(), 97);
    assert_eq!(world.rules(), vec!["2-stock"]);
}

#[test]
fn a_completed_order_needs_its_payment_and_shipment() {
    let mut world = World::new();
    world.ledgers.shipping.shipments.clear();
    world.ledgers.payment.payments[0].status = "refunded".to_owned();
    assert_eq!(world.rules(), vec!["3-completed", "3-completed"]);
}

#[test]
fn a_cancelled_order_with_a_charge_or_held_stock_is_reported() {
    let mut world = World::new();
    world.ledgers.payment.payments[1].status = "completed".to_owned();
    assert_eq!(world.rules(), vec!["4-failed"]);
    let mut world = World::new();
    world.ledgers.inventory.reservations[1].status = ReservationStatus::Reserved;
    world
        .ledgers
        .inventory
        .stock
        .insert("SKU-001".to_owned(), 93);
    assert_eq!(world.rules(), vec!["4-failed"]);
}

#[test]
fn needs_attention_orders_are_listed_not_checked() {
    let mut world = World::new();
    world.orders[1].status = "needs_attention".to_owned();
    world.ledgers.inventory.reservations[1].status = ReservationStatus::Reserved;
    world
        .ledgers
        .inventory
        .stock
        .insert("SKU-001".to_owned(), 93);
    let findings = world.check();
    assert_eq!(findings.violations, vec![]);
    assert_eq!(findings.needs_attention.len(), 1);
}

#[test]
fn side_effects_of_unknown_orders_are_reported() {
    let mut world = World::new();
    world
        .ledgers
        .payment
        .payments
        .push(payment("ghost", "completed"));
    assert_eq!(world.rules(), vec!["3-completed"]);
}

#[test]
fn two_payments_for_one_order_are_a_double_charge() {
    let mut world = World::new();
    let mut second = payment("b", "refunded");
    second.id = "p-b-2".to_owned();
    world.ledgers.payment.payments.push(second);
    assert_eq!(world.rules(), vec!["5-charged-once"]);
}

#[test]
fn a_key_naming_two_orders_is_reported() {
    let mut world = World::new();
    world.keys[1].answers.push(answer(502, "c"));
    world.lookups.insert("c".to_owned(), 200);
    world.orders.push(order("c", 1, "cancelled"));
    let rules = world.rules();
    assert!(rules.contains(&"6-one-order-per-key"), "{rules:?}");
}

#[test]
fn an_answer_contradicting_the_final_status_is_reported() {
    let mut world = World::new();
    world.keys[1].answers.push(answer(201, "b"));
    let rules = world.rules();
    assert!(rules.contains(&"6-one-order-per-key"), "{rules:?}");
}

#[test]
fn an_acknowledged_order_that_vanished_is_reported() {
    let mut world = World::new();
    world.keys[0].answers = vec![answer(202, "lost")];
    world.lookups.insert("lost".to_owned(), 404);
    assert_eq!(world.rules(), vec!["7-acknowledged-exists"]);
}
