//! Documentation-only types: the JSON shapes of requests and answers as the OpenAPI
//! document shows them. The handlers write these shapes through their own (borrowing) view
//! types; the OpenAPI tests and schemathesis check the two agree.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

/// The body of `POST /orders`. Unknown fields are ignored.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderRequest {
    /// Who orders; `anonymous` when absent.
    #[schema(max_length = 128, pattern = "^[^\\u0000]*$")]
    user_id: Option<String>,
    address: AddressSchema,
    /// ISO 4217 code (case-insensitive); `INR` when absent.
    #[schema(example = "INR", pattern = "^[A-Za-z]{3}$")]
    currency: Option<String>,
    #[schema(min_items = 1, max_items = 100)]
    items: Vec<ItemSchema>,
}

/// A shipping address.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressSchema {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
    )]
    line1: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
    )]
    city: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
    )]
    country: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
    )]
    postal_code: String,
}

/// One order line. `price` may have no more decimals than the currency (2 for INR).
#[derive(Serialize, ToSchema)]
pub struct ItemSchema {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
    )]
    sku: String,
    #[schema(minimum = 1, maximum = 10000)]
    qty: u32,
    #[schema(minimum = 0, maximum = 1000000000000_f64)]
    price: f64,
}

/// Where an order is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatusSchema {
    Pending,
    Completed,
    Cancelled,
    FailedShipping,
    NeedsAttention,
}

/// The downstream service a failed step talked to.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepSchema {
    Inventory,
    Payment,
    Shipping,
}

/// Why an order did not complete.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureSchema {
    step: StepSchema,
    detail: String,
    /// The downstream service's status code, when it answered.
    upstream_status: Option<u16>,
}

/// An undo action of the saga and how it went.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompensationSchema {
    action: CompensationActionSchema,
    state: CompensationStateSchema,
    attempts: u32,
    last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompensationActionSchema {
    CancelShipment,
    RefundPayment,
    ReleaseReservation,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompensationStateSchema {
    Pending,
    Done,
    Failed,
}

/// An order. Orders that did not complete also carry `failure` and `compensations`, and,
/// in the answer to `POST /orders`, the old service's `detail` text.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderSchema {
    #[schema(format = Uuid)]
    id: String,
    user_id: String,
    address: AddressSchema,
    currency: String,
    items: Vec<ItemSchema>,
    status: OrderStatusSchema,
    reservation_id: Option<String>,
    payment_intent_id: Option<String>,
    shipment_id: Option<String>,
    /// The exact sum of `qty * price`.
    total: f64,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    failure: Option<FailureSchema>,
    compensations: Option<Vec<CompensationSchema>>,
    detail: Option<String>,
}

/// A page of `GET /orders`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPage {
    orders: Vec<OrderSchema>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// An error: `{"detail": "<text>"}` and nothing else.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    detail: String,
}

/// One step of a location: a field name or an array index.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LocPartSchema {
    Key(String),
    Index(u32),
}

/// One problem of a request, located like FastAPI does (`["body","items",0,"qty"]`).
#[derive(Serialize, ToSchema)]
pub struct ValidationItem {
    loc: Vec<LocPartSchema>,
    msg: String,
    #[serde(rename = "type")]
    kind: String,
}

/// FastAPI's validation error: every problem of the request at once.
#[derive(Serialize, ToSchema)]
pub struct ValidationErrorBody {
    detail: Vec<ValidationItem>,
}

/// `422`: a validation error, or (text `detail`) an idempotency key reused with another body.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UnprocessableBody {
    Validation(ValidationErrorBody),
    Error(ErrorBody),
}

/// `409`: an order refused by the inventory service, or a key whose request still runs.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ConflictBody {
    Order(Box<OrderSchema>),
    Error(ErrorBody),
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    #[schema(example = "ok")]
    status: String,
    #[schema(example = "Order Service")]
    service: String,
}
