//! The stored payments and the rules for creating and refunding them.

use serde::Serialize;
use serde_json::Number;

use crate::ledger;
use crate::records::Records;

/// A payment as stored and answered; `amount` is kept as the JSON number received.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Payment {
    pub id: String,
    pub order_id: String,
    pub amount: Number,
    pub status: String,
}

impl Payment {
    fn amount_is_positive(&self) -> bool {
        self.amount.as_f64().is_some_and(|amount| amount > 0.0)
    }
}

/// What `POST /payments` did.
#[derive(Debug)]
pub(crate) struct Created {
    pub payment: Payment,
    /// A forced decline turned what would have completed into `failed`.
    pub declined_by_fault: bool,
}

/// Every payment, in creation order.
#[derive(Debug, Default)]
pub(crate) struct PaymentBook {
    payments: Records<Payment>,
}

impl PaymentBook {
    /// Stores `payment` unless its id exists, in which case the stored one is returned
    /// unchanged. A new `pending` payment is processed at once: completed if the amount is
    /// positive (and no decline is forced), failed otherwise; any other status is kept.
    pub(crate) fn create(&mut self, mut payment: Payment, force_decline: bool) -> Created {
        if let Some(stored) = self.payments.get(&payment.id) {
            return Created {
                payment: stored.clone(),
                declined_by_fault: false,
            };
        }
        let mut declined_by_fault = false;
        if payment.status == "pending" {
            let completes = payment.amount_is_positive();
            declined_by_fault = completes && force_decline;
            payment.status = if completes && !force_decline {
                "completed"
            } else {
                "failed"
            }
            .to_owned();
        }
        self.payments.insert(payment.id.clone(), payment.clone());
        Created {
            payment,
            declined_by_fault,
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Payment> {
        self.payments.get(id)
    }

    /// Refunds a payment: `refunded` and `voided` ones are left as they are; otherwise a
    /// positive amount becomes `refunded` and anything else `refund_failed`. Like the real
    /// service, this does not look at whether the payment had completed.
    pub(crate) fn refund(&mut self, id: &str) -> Option<&Payment> {
        let payment = self.payments.get_mut(id)?;
        if payment.status != "refunded" && payment.status != "voided" {
            payment.status = if payment.amount_is_positive() {
                "refunded"
            } else {
                "refund_failed"
            }
            .to_owned();
        }
        Some(payment)
    }

    pub(crate) fn ledger_entries(&self) -> Vec<ledger::Payment> {
        self.payments
            .iter()
            .map(|p| ledger::Payment {
                id: p.id.clone(),
                order_id: p.order_id.clone(),
                amount: p.amount.as_f64().unwrap_or_default(),
                status: p.status.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: &str, amount: f64) -> Payment {
        Payment {
            id: id.into(),
            order_id: "o".into(),
            amount: Number::from_f64(amount).unwrap(),
            status: "pending".into(),
        }
    }

    #[test]
    fn forced_decline_only_counts_payments_that_would_complete() {
        let mut book = PaymentBook::default();
        let declined = book.create(pending("a", 10.0), true);
        assert_eq!(declined.payment.status, "failed");
        assert!(declined.declined_by_fault);
        let zero = book.create(pending("b", 0.0), true);
        assert_eq!(zero.payment.status, "failed");
        assert!(!zero.declined_by_fault);
    }

    #[test]
    fn non_pending_status_is_stored_as_sent() {
        let mut book = PaymentBook::default();
        let mut payment = pending("a", 10.0);
        payment.status = "authorized".into();
        assert_eq!(book.create(payment, false).payment.status, "authorized");
    }
}
