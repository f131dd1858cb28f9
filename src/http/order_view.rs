//! The order as clients see it: every field of the old service's answer, plus `total`,
//! timestamps, `failure` and `compensations`; and the status code an order's outcome maps
//! to (the old service's codes).

use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::domain::idempotency::StoredResponse;
use crate::domain::ids::OrderId;
use crate::domain::money::json_number;
use crate::domain::order::{Address, Failure, FailureKind, LineItem, Order, OrderStatus, Step};
use crate::domain::progress::{Compensation, CompensationAction, CompensationState};
use crate::domain::when;
use crate::saga::Answer;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderView<'a> {
    id: OrderId,
    user_id: &'a str,
    address: &'a Address,
    currency: &'a str,
    items: &'a [LineItem],
    status: &'a str,
    reservation_id: Option<&'a str>,
    payment_intent_id: Option<&'a str>,
    shipment_id: Option<&'a str>,
    #[serde(with = "json_number")]
    total: Decimal,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<FailureView<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    compensations: &'a [Compensation],
    /// The old service's error text, for clients that read only `detail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailureView<'a> {
    step: &'a str,
    detail: &'a str,
    upstream_status: Option<u16>,
}

fn view(order: &Order, with_detail: bool) -> OrderView<'_> {
    let progress = &order.progress;
    OrderView {
        id: order.id,
        user_id: order.user_id.as_str(),
        address: &order.address,
        currency: order.currency.code(),
        items: &order.items,
        status: order.status.as_str(),
        reservation_id: order.reservation_id().map(|r| r.as_str()),
        payment_intent_id: progress
            .payment
            .may_have_happened()
            .then(|| order.payment_id.as_str()),
        shipment_id: progress
            .shipment
            .may_have_happened()
            .then(|| order.shipment_id.as_str()),
        total: order.total,
        created_at: when::format(order.created_at),
        updated_at: when::format(order.updated_at),
        failure: order.failure.as_ref().map(|f| FailureView {
            step: f.step.as_str(),
            detail: &f.detail,
            upstream_status: f.upstream_status,
        }),
        compensations: &progress.compensations,
        detail: with_detail.then(|| detail(order)).flatten(),
    }
}

/// The order as `GET /orders/{id}` shows it.
pub fn to_json(order: &Order) -> String {
    serde_json::to_string(&view(order, false)).expect("an order serializes")
}

/// A page of `GET /orders`: `{"orders": [...], "nextCursor": ...}`.
pub fn page_json(orders: &[Order], next_cursor: Option<&str>) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Page<'a> {
        orders: Vec<OrderView<'a>>,
        next_cursor: Option<&'a str>,
    }
    serde_json::to_string(&Page {
        orders: orders.iter().map(|o| view(o, false)).collect(),
        next_cursor,
    })
    .expect("orders serialize")
}

/// The status code for the answer to the `POST` that created `order`.
pub fn status_code(order: &Order) -> StatusCode {
    let Some(failure) = &order.failure else {
        return match order.status {
            OrderStatus::Completed => StatusCode::CREATED,
            _ => StatusCode::ACCEPTED,
        };
    };
    match failure.kind {
        FailureKind::Rejected => failure
            .upstream_status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .filter(StatusCode::is_client_error)
            .unwrap_or(StatusCode::CONFLICT),
        FailureKind::Declined => StatusCode::PAYMENT_REQUIRED,
        FailureKind::UpstreamError | FailureKind::Unreachable => StatusCode::BAD_GATEWAY,
        FailureKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        FailureKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The old service's `detail` text for a failed order, followed by what the compensations
/// did when one of them failed.
fn detail(order: &Order) -> Option<String> {
    let failure: &Failure = order.failure.as_ref()?;
    let compensation = |action| {
        order
            .progress
            .compensations
            .iter()
            .find(|c: &&Compensation| c.action == action)
    };
    let mut text = match failure.step {
        Step::Shipping => match compensation(CompensationAction::RefundPayment) {
            Some(c) if c.state == CompensationState::Done => {
                format!("Shipping failed: {}. Payment refunded.", failure.detail)
            }
            Some(c) => format!(
                "Shipping failed: {}. Refund attempt failed: {}. Manual reconciliation required.",
                failure.detail,
                c.last_error.as_deref().unwrap_or("not yet done")
            ),
            None => format!("Shipping failed: {}.", failure.detail),
        },
        Step::Inventory | Step::Payment => failure.detail.clone(),
    };
    for c in &order.progress.compensations {
        let refund_already_told =
            failure.step == Step::Shipping && c.action == CompensationAction::RefundPayment;
        if c.state != CompensationState::Done && !refund_already_told {
            text.push_str(&format!(
                " Compensation {} failed ({}); it will be retried.",
                c.action.as_str(),
                c.last_error.as_deref().unwrap_or("not yet done")
            ));
        }
    }
    if order.status == OrderStatus::NeedsAttention {
        text.push_str(" The order needs attention: an operator must check it.");
    }
    Some(text)
}

/// Renders the stored answer for the `POST` that created an order.
pub struct JsonAnswer;

impl Answer for JsonAnswer {
    fn answer(&self, order: &Order) -> StoredResponse {
        StoredResponse {
            status: status_code(order).as_u16(),
            body: serde_json::to_string(&view(order, true)).expect("an order serializes"),
        }
    }
}
