//! `GET /orders`: filtered, newest first, with keyset pagination behind an opaque cursor
//! (so pages stay stable while orders are being created).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::order_view;
use super::{ApiError, AppState};
use crate::domain::ids::{OrderId, UserId};
use crate::domain::order::{Order, OrderStatus};
use crate::domain::validation::{FieldError, LocPart, MAX_USER_ID_CHARS, NUL_MESSAGE, has_nul};
use crate::domain::when::{self, Timestamp};
use crate::store::OrderFilter;

/// Page size when `limit` is not given, and the largest one allowed.
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// The parsed query of `GET /orders`.
#[derive(Debug, Default)]
struct ListQuery {
    filter: OrderFilter,
    limit: u32,
}

fn query_error(param: &str, kind: &'static str, msg: impl Into<String>) -> FieldError {
    FieldError {
        loc: vec![LocPart::from(param)],
        msg: msg.into(),
        kind,
    }
}

fn parse_query(raw: Option<&str>) -> Result<ListQuery, Vec<FieldError>> {
    let mut query = ListQuery {
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
    };
    let mut errors = Vec::new();
    let pairs = form_urlencoded::parse(raw.unwrap_or_default().as_bytes());
    for (name, value) in pairs {
        match name.as_ref() {
            "userId" => {
                if has_nul(&value) {
                    errors.push(query_error(
                        "userId",
                        "string_pattern_mismatch",
                        NUL_MESSAGE,
                    ));
                } else if value.chars().count() > MAX_USER_ID_CHARS {
                    errors.push(query_error(
                        "userId",
                        "string_too_long",
                        format!("String should have at most {MAX_USER_ID_CHARS} characters"),
                    ));
                } else {
                    query.filter.user_id = Some(UserId::from(value.into_owned()));
                }
            }
            "status" => match value.parse::<OrderStatus>() {
                Ok(status) => query.filter.status = Some(status),
                Err(_) => errors.push(query_error(
                    "status",
                    "enum",
                    format!(
                        "Input should be {}",
                        OrderStatus::ALL
                            .iter()
                            .map(|s| format!("'{s}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            },
            "createdAfter" | "createdBefore" => match when::parse(&value) {
                Ok(at) if name == "createdAfter" => query.filter.created_after = Some(at),
                Ok(at) => query.filter.created_before = Some(at),
                Err(_) => errors.push(query_error(
                    &name,
                    "datetime_from_date_parsing",
                    "Input should be an RFC 3339 date-time such as 2026-11-25T10:00:00Z",
                )),
            },
            "limit" => match value.parse::<u32>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => query.limit = limit,
                Ok(_) => errors.push(query_error(
                    "limit",
                    "less_than_equal",
                    format!("Input should be an integer from 1 to {MAX_LIMIT}"),
                )),
                Err(_) => errors.push(query_error(
                    "limit",
                    "int_parsing",
                    "Input should be a valid integer",
                )),
            },
            // An empty cursor (e.g. from a URL template) means the first page.
            "cursor" if value.is_empty() => {}
            "cursor" => match decode_cursor(&value) {
                Some(position) => query.filter.before = Some(position),
                None => errors.push(query_error(
                    "cursor",
                    "value_error",
                    "Value error, not a cursor returned by this endpoint",
                )),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(query)
    } else {
        Err(errors)
    }
}

/// An opaque cursor: the position of the last order of a page.
fn encode_cursor(order: &Order) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", when::format(order.created_at), order.id))
}

fn decode_cursor(cursor: &str) -> Option<(Timestamp, OrderId)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (at, id) = text.split_once('|')?;
    Some((when::parse(at).ok()?, id.parse().ok()?))
}

/// `GET /orders`: `{"orders": [...], "nextCursor": "..." | null}`.
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    params(
        ("userId" = Option<String>, Query, description = "Only this user's orders", max_length = 128, pattern = "^[^\\u0000]*$"),
        ("status" = Option<super::schema::OrderStatusSchema>, Query, description = "Only orders in this status"),
        ("createdAfter" = Option<String>, Query, format = DateTime, description = "Created at or after (RFC 3339)"),
        ("createdBefore" = Option<String>, Query, format = DateTime, description = "Created before (RFC 3339)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, default 20"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page; any other value is refused with 422"),
    ),
    responses(
        (status = 200, description = "A page of orders, newest first", body = super::schema::OrderPage),
        (status = 422, description = "A query parameter is invalid", body = super::schema::ValidationErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = parse_query(raw.as_deref()).map_err(ApiError::QueryValidation)?;
    let mut orders = state
        .saga
        .store()
        .list_orders(&query.filter, query.limit + 1)
        .await?;
    let more = orders.len() > query.limit as usize;
    orders.truncate(query.limit as usize);
    let next = if more {
        orders.last().map(encode_cursor)
    } else {
        None
    };
    let body = order_view::page_json(&orders, next.as_deref());
    Ok(super::json_response(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(raw: &str) -> Vec<String> {
        parse_query(Some(raw))
            .unwrap_err()
            .into_iter()
            .map(|e| format!("{:?}:{}", e.loc, e.kind))
            .collect()
    }

    #[test]
    fn defaults_and_filters() {
        let q = parse_query(None).unwrap();
        assert_eq!(q.limit, DEFAULT_LIMIT);
        let q = parse_query(Some("userId=u%201&status=failed_shipping&limit=100")).unwrap();
        assert_eq!(q.filter.user_id.unwrap().as_str(), "u 1");
        assert_eq!(q.filter.status, Some(OrderStatus::FailedShipping));
        assert_eq!(q.limit, 100);
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(errors("limit=0"), vec![r#"[Key("limit")]:less_than_equal"#]);
        assert_eq!(
            errors("limit=101"),
            vec![r#"[Key("limit")]:less_than_equal"#]
        );
        assert_eq!(errors("limit=x"), vec![r#"[Key("limit")]:int_parsing"#]);
        assert_eq!(errors("status=lost"), vec![r#"[Key("status")]:enum"#]);
        assert_eq!(
            errors("createdAfter=yesterday"),
            vec![r#"[Key("createdAfter")]:datetime_from_date_parsing"#]
        );
        assert_eq!(errors("cursor=abc"), vec![r#"[Key("cursor")]:value_error"#]);
    }

    #[test]
    fn cursors_round_trip() {
        let at = when::now();
        let id = OrderId::new();
        let cursor = URL_SAFE_NO_PAD.encode(format!("{}|{}", when::format(at), id));
        assert_eq!(decode_cursor(&cursor), Some((at, id)));
    }
}
