//! The payment service: charge (idempotent by payment id) and refund.

use http::Method;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::inventory::path_segment;
use super::{CallContext, CallError, ServiceClient, found};
use crate::domain::ids::{OrderId, PaymentId};
use crate::domain::money::json_number;

#[derive(Clone, Debug)]
pub struct PaymentClient {
    client: ServiceClient,
}

#[derive(Serialize)]
struct PaymentRequest<'a> {
    id: &'a str,
    order_id: OrderId,
    #[serde(with = "json_number")]
    amount: Decimal,
    currency: &'a str,
    status: &'static str,
}

/// The payment service's record of a payment.
#[derive(Clone, Debug, Deserialize)]
pub struct PaymentRecord {
    pub status: String,
}

impl PaymentRecord {
    /// The contract counts `completed` and `success` as paid; anything else is a decline.
    pub fn is_paid(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "success")
    }
}

/// What a refund found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The payment is refunded (now or before) or was voided.
    Refunded,
    /// The service knows no such payment: nothing was charged.
    NoSuchPayment,
    /// The service would not refund it (e.g. `refund_failed`).
    Refused(String),
}

impl PaymentClient {
    pub fn new(client: ServiceClient) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &ServiceClient {
        &self.client
    }

    /// `POST /payments`: charges `amount` once per payment id, however often it is repeated.
    pub async fn charge(
        &self,
        id: &PaymentId,
        order_id: OrderId,
        amount: Decimal,
        currency: &str,
        ctx: &CallContext,
    ) -> Result<PaymentRecord, CallError> {
        let body = PaymentRequest {
            id: id.as_str(),
            order_id,
            amount,
            currency,
            status: "pending",
        };
        self.client
            .send_json(Method::POST, "/payments", Some(&body), "payment", ctx)
            .await
    }

    /// `GET /payments/{id}`: `None` when the service has no such payment (nothing was
    /// charged under this id).
    pub async fn find(
        &self,
        id: &PaymentId,
        ctx: &CallContext,
    ) -> Result<Option<PaymentRecord>, CallError> {
        let path = format!("/payments/{}", path_segment(id.as_str()));
        found(
            self.client
                .send_json::<(), PaymentRecord>(Method::GET, &path, None, "payment-lookup", ctx)
                .await,
        )
    }

    /// `POST /payments/{id}/refund`: idempotent; `404` means there was no charge.
    pub async fn refund(
        &self,
        id: &PaymentId,
        ctx: &CallContext,
    ) -> Result<RefundOutcome, CallError> {
        let path = format!("/payments/{}/refund", path_segment(id.as_str()));
        let answer = self
            .client
            .send_json::<(), PaymentRecord>(Method::POST, &path, None, "refund", ctx)
            .await;
        Ok(match found(answer)? {
            Some(record) if matches!(record.status.as_str(), "refunded" | "voided") => {
                RefundOutcome::Refunded
            }
            Some(record) => RefundOutcome::Refused(record.status),
            None => RefundOutcome::NoSuchPayment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_is_sent_as_an_exact_number() {
        let body = PaymentRequest {
            id: "p1",
            order_id: OrderId::new(),
            amount: Decimal::new(30, 2),
            currency: "INR",
            status: "pending",
        };
        let json = serde_json::to_string(&body).unwrap();
        assert!(json.contains(r#""amount":0.3,"#), "{json}");
    }
}
