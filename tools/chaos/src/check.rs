//! The invariants, checked once everything is settled: the orders as the service lists
//! them, the sandbox ledgers, and every answer the clients got. Pure: evidence in,
//! findings out.

use std::collections::{BTreeMap, BTreeSet};

use platform_sandbox::ledger::ReservationStatus;

use crate::api::{FINAL_STATUSES, Order};
use crate::load::{KeyRecord, Verdict};
use crate::sandbox::Ledgers;

/// Everything the invariants are checked against.
pub struct Evidence<'a> {
    /// Every order in the database.
    pub orders: &'a [Order],
    /// Stock per SKU before the first order.
    pub initial_stock: &'a BTreeMap<String, u64>,
    pub ledgers: &'a Ledgers,
    /// Every key fired and the answers it got.
    pub keys: &'a [KeyRecord],
    /// `GET /orders/{id}` status for every order id an answer named.
    pub lookups: &'a BTreeMap<String, u16>,
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub order_id: Option<String>,
    pub detail: String,
}

/// What the check found.
#[derive(Debug, Default)]
pub struct Findings {
    pub violations: Vec<Violation>,
    /// `needs_attention` orders: id and failure detail.
    pub needs_attention: Vec<(String, String)>,
    /// Answers the contract does not promise for a valid request (not counted as
    /// violations, but worth a look): key and description.
    pub unexpected_answers: Vec<(String, String)>,
}

impl Findings {
    fn violate(&mut self, invariant: &'static str, order_id: Option<&str>, detail: String) {
        self.violations.push(Violation {
            invariant,
            order_id: order_id.map(str::to_owned),
            detail,
        });
    }
}

/// Checks every invariant.
pub fn check(evidence: &Evidence) -> Findings {
    let mut findings = Findings::default();
    let orders: BTreeMap<&str, &Order> =
        evidence.orders.iter().map(|o| (o.id.as_str(), o)).collect();
    every_order_is_final(evidence, &mut findings);
    stock_is_conserved(evidence, &mut findings);
    side_effects_match_status(evidence, &orders, &mut findings);
    no_payment_twice(evidence, &mut findings);
    one_order_per_key(evidence, &orders, &mut findings);
    acknowledged_orders_exist(evidence, &orders, &mut findings);
    for order in evidence.orders {
        if order.status == "needs_attention" {
            let detail = order
                .failure
                .as_ref()
                .map(|f| match f.upstream_status {
                    Some(status) => format!("{} step ({status}): {}", f.step, f.detail),
                    None => format!("{} step: {}", f.step, f.detail),
                })
                .unwrap_or_else(|| "no failure recorded".to_owned());
            findings.needs_attention.push((order.id.clone(), detail));
        }
    }
    for record in evidence.keys {
        for answer in &record.answers {
            if answer.status == Some(503)
                && let Some(id) = &answer.order_id
            {
                findings.unexpected_answers.push((
                    record.plan.key.clone(),
                    format!(
                        "503 from replica {} carrying order {id} ({}), although a 503 says nothing was done",
                        answer.replica,
                        answer.order_status.as_deref().unwrap_or("?")
                    ),
                ));
            }
            if answer.verdict() == Verdict::Unexpected {
                findings.unexpected_answers.push((
                    record.plan.key.clone(),
                    format!(
                        "{} from replica {}: {}",
                        answer.status.map_or("-".to_owned(), |s| s.to_string()),
                        answer.replica,
                        answer.error.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
    }
    findings
}

/// Rule 1: Every order ended: completed, cancelled, failed_shipping or needs_attention, with
/// every compensation done (needs_attention orders excepted).
fn every_order_is_final(evidence: &Evidence, findings: &mut Findings) {
    for order in evidence.orders {
        if !FINAL_STATUSES.contains(&order.status.as_str()) {
            findings.violate(
                "1-final",
                Some(&order.id),
                format!("order is still {}", order.status),
            );
        } else if !order.settled() {
            let open: Vec<String> = order
                .compensations
                .iter()
                .filter(|c| c.state != "done")
                .map(|c| {
                    format!(
                        "{} {} ({})",
                        c.action,
                        c.state,
                        c.last_error.as_deref().unwrap_or("no error recorded")
                    )
                })
                .collect();
            findings.violate(
                "1-final",
                Some(&order.id),
                format!(
                    "order is {} but compensations are open: {open:?}",
                    order.status
                ),
            );
        }
    }
}

/// Rule 2: Stock taken (initial − now) equals what reserved or committed reservations hold.
fn stock_is_conserved(evidence: &Evidence, findings: &mut Findings) {
    let mut held: BTreeMap<&str, i128> = BTreeMap::new();
    for reservation in &evidence.ledgers.inventory.reservations {
        if reservation.status != ReservationStatus::Released {
            for item in &reservation.items {
                *held.entry(item.sku.as_str()).or_default() += i128::from(item.qty);
            }
        }
    }
    let current = &evidence.ledgers.inventory.stock;
    let skus: BTreeSet<&str> = evidence
        .initial_stock
        .keys()
        .chain(current.keys())
        .map(String::as_str)
        .chain(held.keys().copied())
        .collect();
    for sku in skus {
        let initial = i128::from(evidence.initial_stock.get(sku).copied().unwrap_or(0));
        let now = i128::from(current.get(sku).copied().unwrap_or(0));
        let held = held.get(sku).copied().unwrap_or(0);
        if initial - now != held {
            findings.violate(
                "2-stock",
                None,
                format!(
                    "{sku}: initial {initial} - now {now} = {} taken, but reservations hold {held}",
                    initial - now
                ),
            );
        }
    }
}

/// Rules 3 and 4: a completed order has exactly its committed reservation, one completed payment
/// of its total and one shipped shipment; a cancelled or failed_shipping order has no
/// charge, no held stock and no shipment. With rule 1 this also gives the converse: every
/// committed reservation, completed payment and shipped shipment belongs to a completed
/// (or needs_attention) order. needs_attention orders are left out.
fn side_effects_match_status(
    evidence: &Evidence,
    orders: &BTreeMap<&str, &Order>,
    findings: &mut Findings,
) {
    let ledgers = evidence.ledgers;
    let mut reservations: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for r in &ledgers.inventory.reservations {
        reservations.entry(r.order_id.as_str()).or_default().push(r);
    }
    let mut payments: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for p in &ledgers.payment.payments {
        payments.entry(p.order_id.as_str()).or_default().push(p);
    }
    let mut shipments: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for s in &ledgers.shipping.shipments {
        shipments.entry(s.order_id.as_str()).or_default().push(s);
    }
    for order in evidence.orders {
        let id = order.id.as_str();
        let own_reservations = reservations.get(id).map_or(&[][..], Vec::as_slice);
        let own_payments = payments.get(id).map_or(&[][..], Vec::as_slice);
        let own_shipments = shipments.get(id).map_or(&[][..], Vec::as_slice);
        match order.status.as_str() {
            "completed" => {
                let rule = "3-completed";
                match &order.reservation_id {
                    None => findings.violate(rule, Some(id), "no reservationId".to_owned()),
                    Some(rid) => match own_reservations.iter().find(|r| &r.id == rid) {
                        None => findings.violate(
                            rule,
                            Some(id),
                            format!(
                                "reservation {rid} is not in the inventory ledger under this order"
                            ),
                        ),
                        Some(r) if r.status != ReservationStatus::Committed => findings.violate(
                            rule,
                            Some(id),
                            format!("reservation {rid} is {:?}, not committed", r.status),
                        ),
                        Some(_) => {}
                    },
                }
                for r in own_reservations {
                    if Some(&r.id) != order.reservation_id.as_ref()
                        && r.status != ReservationStatus::Released
                    {
                        findings.violate(
                            rule,
                            Some(id),
                            format!("extra reservation {} is {:?}", r.id, r.status),
                        );
                    }
                }
                let completed: Vec<_> = own_payments
                    .iter()
                    .filter(|p| p.status == "completed")
                    .collect();
                if completed.len() != 1 {
                    findings.violate(
                        rule,
                        Some(id),
                        format!(
                            "{} completed payments (payments: {:?})",
                            completed.len(),
                            own_payments
                                .iter()
                                .map(|p| (&p.id, &p.status))
                                .collect::<Vec<_>>()
                        ),
                    );
                }
                for p in completed {
                    if order.payment_intent_id.as_deref() != Some(p.id.as_str()) {
                        findings.violate(
                            rule,
                            Some(id),
                            format!(
                                "completed payment {} is not the order's paymentIntentId {:?}",
                                p.id, order.payment_intent_id
                            ),
                        );
                    }
                    if (p.amount - order.total).abs() > 0.005 {
                        findings.violate(
                            rule,
                            Some(id),
                            format!(
                                "payment {} charged {} for a total of {}",
                                p.id, p.amount, order.total
                            ),
                        );
                    }
                }
                let shipped: Vec<_> = own_shipments
                    .iter()
                    .filter(|s| s.status == "shipped")
                    .collect();
                if shipped.len() != 1 {
                    findings.violate(
                        rule,
                        Some(id),
                        format!(
                            "{} shipped shipments, {} in all",
                            shipped.len(),
                            own_shipments.len()
                        ),
                    );
                }
                for s in shipped {
                    if order.shipment_id.as_deref() != Some(s.id.as_str()) {
                        findings.violate(
                            rule,
                            Some(id),
                            format!(
                                "shipped shipment {} is not the order's shipmentId {:?}",
                                s.id, order.shipment_id
                            ),
                        );
                    }
                }
            }
            "cancelled" | "failed_shipping" => {
                let rule = "4-failed";
                for p in own_payments {
                    if p.status == "completed" {
                        findings.violate(
                            rule,
                            Some(id),
                            format!(
                                "{} order has completed payment {} ({})",
                                order.status, p.id, p.amount
                            ),
                        );
                    }
                }
                for r in own_reservations {
                    if r.status != ReservationStatus::Released {
                        findings.violate(
                            rule,
                            Some(id),
                            format!(
                                "{} order's reservation {} is {:?}",
                                order.status, r.id, r.status
                            ),
                        );
                    }
                }
                for s in own_shipments {
                    if s.status == "shipped" {
                        findings.violate(
                            rule,
                            Some(id),
                            format!("{} order has shipped shipment {}", order.status, s.id),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    // Conversely, a lasting side effect must belong to an order the database knows; for a
    // known order the rules above (and rule 1 for pending ones) already cover it.
    let unknown = |order_id: &str| !orders.contains_key(order_id);
    let mut orphan = |order_id: &str, what: String| {
        findings.violate(
            "3-completed",
            Some(order_id),
            format!("{what} for an order not in the database"),
        );
    };
    for r in &ledgers.inventory.reservations {
        if r.status != ReservationStatus::Released && unknown(&r.order_id) {
            orphan(
                &r.order_id,
                format!("reservation {} is {:?}", r.id, r.status),
            );
        }
    }
    for p in &ledgers.payment.payments {
        if p.status == "completed" && unknown(&p.order_id) {
            orphan(&p.order_id, format!("payment {} is completed", p.id));
        }
    }
    for s in &ledgers.shipping.shipments {
        if s.status == "shipped" && unknown(&s.order_id) {
            orphan(&s.order_id, format!("shipment {} is shipped", s.id));
        }
    }
}

/// Rule 5: At most one payment record per order (payments are idempotent by the id we send).
fn no_payment_twice(evidence: &Evidence, findings: &mut Findings) {
    let mut per_order: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for p in &evidence.ledgers.payment.payments {
        per_order
            .entry(p.order_id.as_str())
            .or_default()
            .push((p.id.as_str(), p.status.as_str()));
    }
    for (order_id, payments) in per_order {
        if payments.len() > 1 {
            findings.violate(
                "5-charged-once",
                Some(order_id),
                format!("{} payments: {payments:?}", payments.len()),
            );
        }
    }
}

/// Rule 6: One order per idempotency key: every answer naming an order names the same one, the
/// user of the key has one order, and the final answers agree with each other and with
/// the order's final status.
fn one_order_per_key(
    evidence: &Evidence,
    orders: &BTreeMap<&str, &Order>,
    findings: &mut Findings,
) {
    let rule = "6-one-order-per-key";
    let users: BTreeSet<&str> = evidence
        .keys
        .iter()
        .map(|k| k.plan.user_id.as_str())
        .collect();
    let mut per_user: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for order in evidence.orders {
        if users.contains(order.user_id.as_str()) {
            per_user.entry(&order.user_id).or_default().push(&order.id);
        }
    }
    for (user, ids) in &per_user {
        if ids.len() > 1 {
            findings.violate(
                rule,
                Some(ids[0]),
                format!("the one key of {user} has {} orders: {ids:?}", ids.len()),
            );
        }
    }
    for record in evidence.keys {
        let key = &record.plan.key;
        let ids: BTreeSet<&str> = record
            .answers
            .iter()
            .filter_map(|a| a.order_id.as_deref())
            .collect();
        if ids.len() > 1 {
            findings.violate(
                rule,
                ids.first().copied(),
                format!(
                    "key {key} was answered with {} order ids: {ids:?}",
                    ids.len()
                ),
            );
        }
        let finals: BTreeSet<u16> = record
            .answers
            .iter()
            .filter(|a| a.verdict() == Verdict::Final)
            .filter_map(|a| a.status)
            .collect();
        if finals.len() > 1 {
            findings.violate(
                rule,
                ids.first().copied(),
                format!("key {key} got different final answers: {finals:?}"),
            );
        }
        for answer in &record.answers {
            let (Some(status), Some(id)) = (answer.status, answer.order_id.as_deref()) else {
                continue;
            };
            let Some(order) = orders.get(id) else {
                continue;
            };
            let agrees = match answer.verdict() {
                Verdict::Final if status == 201 => order.status == "completed",
                Verdict::Final => order.status != "completed",
                _ => true,
            };
            if !agrees {
                findings.violate(
                    rule,
                    Some(id),
                    format!(
                        "key {key} was answered {status} but the order ended {}",
                        order.status
                    ),
                );
            }
        }
    }
}

/// Rule 7: Every order an answer named exists after all the kills: `GET /orders/{id}` is 200
/// and the listing has it. Acknowledged (201/202) orders are the ones promised; other
/// order-bearing answers are held to the same.
fn acknowledged_orders_exist(
    evidence: &Evidence,
    orders: &BTreeMap<&str, &Order>,
    findings: &mut Findings,
) {
    let mut named: BTreeMap<&str, (&str, u16)> = BTreeMap::new();
    for record in evidence.keys {
        for answer in &record.answers {
            if let (Some(id), Some(status)) = (answer.order_id.as_deref(), answer.status) {
                let entry = named.entry(id).or_insert((&record.plan.key, status));
                if answer.acknowledged() {
                    entry.1 = status;
                }
            }
        }
    }
    for (id, (key, status)) in named {
        let looked_up = evidence.lookups.get(id).copied();
        if looked_up != Some(200) || !orders.contains_key(id) {
            findings.violate(
                "7-acknowledged-exists",
                Some(id),
                format!(
                    "key {key} was answered {status} naming this order, but GET /orders/{{id}} gives {} and the listing {}",
                    looked_up.map_or("no answer".to_owned(), |s| s.to_string()),
                    if orders.contains_key(id) { "has it" } else { "lacks it" }
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
