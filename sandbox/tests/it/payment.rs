//! Contract conformance of the payment service.

use platform_sandbox::Service::Payment;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{payment_body, start};

#[tokio::test]
async fn health_names_the_payment_service() {
    let sandbox = start().await;
    let (status, body) = sandbox.get(Payment, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok", "service": "Payment Service"}));
}

#[tokio::test]
async fn positive_amount_completes_with_201_and_extra_fields_are_not_stored() {
    let sandbox = start().await;
    let (status, body) = sandbox
        .post(Payment, "/payments", payment_body("pay-1", json!(25.5)))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({"id": "pay-1", "order_id": "order-1", "amount": 25.5, "status": "completed"})
    );
}

#[tokio::test]
async fn zero_or_negative_amount_is_a_201_decline() {
    let sandbox = start().await;
    for (id, amount) in [("zero", json!(0)), ("negative", json!(-3.5))] {
        let (status, body) = sandbox
            .post(Payment, "/payments", payment_body(id, amount))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["status"], "failed");
    }
}

#[tokio::test]
async fn amount_is_echoed_as_the_json_number_received() {
    let sandbox = start().await;
    let (_, body) = sandbox
        .post(Payment, "/payments", payment_body("int", json!(100)))
        .await;
    assert_eq!(body["amount"].to_string(), "100");
    let (_, body) = sandbox
        .post(Payment, "/payments", payment_body("dec", json!(0.1)))
        .await;
    assert_eq!(body["amount"].to_string(), "0.1");
}

#[tokio::test]
async fn payment_is_idempotent_by_id_and_returned_unchanged() {
    let sandbox = start().await;
    let (_, first) = sandbox
        .post(Payment, "/payments", payment_body("pay-1", json!(10)))
        .await;
    let (status, second) = sandbox
        .post(Payment, "/payments", payment_body("pay-1", json!(0)))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second, first);
    assert_eq!(sandbox.payment_ledger().await.payments.len(), 1);
}

#[tokio::test]
async fn non_pending_payment_is_stored_with_its_status_unprocessed() {
    let sandbox = start().await;
    let mut body = payment_body("pay-1", json!(10));
    body["status"] = json!("authorized");
    let (_, stored) = sandbox.post(Payment, "/payments", body).await;
    assert_eq!(stored["status"], "authorized");
}

#[tokio::test]
async fn get_payment_answers_the_record_or_404() {
    let sandbox = start().await;
    let (_, created) = sandbox
        .post(Payment, "/payments", payment_body("pay-1", json!(10)))
        .await;
    let (status, fetched) = sandbox.get(Payment, "/payments/pay-1").await;
    assert_eq!((status, fetched), (StatusCode::OK, created));
    let (status, body) = sandbox.get(Payment, "/payments/pay-2").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"detail": "Payment not found"}));
}

#[tokio::test]
async fn refund_of_completed_payment_refunds_and_repeating_changes_nothing() {
    let sandbox = start().await;
    sandbox
        .post(Payment, "/payments", payment_body("pay-1", json!(10)))
        .await;
    for _ in 0..2 {
        let (status, body) = sandbox
            .post(Payment, "/payments/pay-1/refund", Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "refunded");
    }
}

#[tokio::test]
async fn refund_of_non_positive_amount_is_refund_failed() {
    let sandbox = start().await;
    sandbox
        .post(Payment, "/payments", payment_body("pay-0", json!(0)))
        .await;
    let (status, body) = sandbox
        .post(Payment, "/payments/pay-0/refund", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "refund_failed");
}

#[tokio::test]
async fn refund_of_voided_payment_is_returned_unchanged() {
    let sandbox = start().await;
    let mut body = payment_body("pay-v", json!(10));
    body["status"] = json!("voided");
    sandbox.post(Payment, "/payments", body).await;
    let (status, body) = sandbox
        .post(Payment, "/payments/pay-v/refund", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "voided");
}

#[tokio::test]
async fn refund_of_unknown_payment_is_404() {
    let sandbox = start().await;
    let (status, _) = sandbox
        .post(Payment, "/payments/none/refund", Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn payment_without_amount_or_with_a_string_amount_is_422_naming_amount() {
    let sandbox = start().await;
    let (status, body) = sandbox
        .post(Payment, "/payments", json!({"id": "p", "order_id": "o"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "amount"]));
    assert_eq!(body["detail"][0]["type"], "missing");
    let (status, body) = sandbox
        .post(Payment, "/payments", payment_body("p", json!("ten")))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "amount"]));
    assert_eq!(body["detail"][0]["type"], "float_type");
}
