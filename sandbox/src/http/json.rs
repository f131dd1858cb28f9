//! A JSON body extractor whose rejections are FastAPI's 422 shape, naming the field at fault.

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::{ApiError, Issue, LocPart};

/// Like `axum::Json`, but a malformed body, a missing field or a wrong type is answered as
/// FastAPI would (`422` with `loc` pointing into the body), because clients of the real
/// services see exactly that.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses `bytes` as a `T`, describing any failure the way FastAPI does.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(Issue::in_body(
            [],
            "missing",
            "Field required",
        )));
    }
    // Valid bodies, nearly all of them, take the plain parser; only a failure is parsed
    // again with path tracking, which costs on every value and is needed only to say where.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    Err(describe_failure::<T>(bytes))
}

/// Parses `bytes` again, tracking the path, to say where and why a `T` could not be read.
fn describe_failure<T: DeserializeOwned>(bytes: &[u8]) -> ApiError {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(err) => data_error(bytes, err),
        Ok(_) => match deserializer.end() {
            Err(err) => decode_error(bytes, &err),
            // Not reached: the plain parse failed, so one of the two steps above fails too.
            Ok(()) => ApiError::invalid(Issue::in_body([], "json_invalid", "JSON decode error")),
        },
    }
}

fn data_error(bytes: &[u8], err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path: Vec<LocPart> = err
        .path()
        .iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(LocPart::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(LocPart::Key(key.clone().into())),
            serde_path_to_error::Segment::Enum { variant } => {
                Some(LocPart::Key(variant.clone().into()))
            }
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect();
    let inner = err.into_inner();
    if inner.classify() != Category::Data {
        return decode_error(bytes, &inner);
    }
    let message = without_position(&inner.to_string());
    ApiError::invalid(describe_data_error(path, &message))
}

/// Turns serde's message into pydantic's vocabulary, which is what FastAPI clients match on.
fn describe_data_error(mut path: Vec<LocPart>, message: &str) -> Issue {
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        path.push(LocPart::Key(field.to_owned().into()));
        return Issue::in_body(path, "missing", "Field required");
    }
    let expected = message
        .rsplit_once("expected ")
        .map_or("", |(_, expected)| expected);
    let (kind, msg) = if ["u64", "i64", "u32", "i32", "usize", "integer"]
        .iter()
        .any(|t| expected.contains(t))
    {
        ("int_type", "Input should be a valid integer")
    } else if expected.contains("f64") || expected.contains("number") {
        ("float_type", "Input should be a valid number")
    } else if expected.contains("string") {
        ("string_type", "Input should be a valid string")
    } else if expected.contains("sequence") {
        ("list_type", "Input should be a valid list")
    } else if expected.contains("boolean") {
        ("bool_type", "Input should be a valid boolean")
    } else if expected.contains("struct") || expected.contains("map") {
        ("dict_type", "Input should be a valid dictionary")
    } else {
        return Issue::in_body(path, "value_error", message.to_owned());
    };
    Issue::in_body(path, kind, msg)
}

fn decode_error(bytes: &[u8], err: &serde_json::Error) -> ApiError {
    let offset = byte_offset(bytes, err.line(), err.column());
    ApiError::invalid(Issue::in_body(
        [LocPart::Index(offset)],
        "json_invalid",
        "JSON decode error",
    ))
}

/// FastAPI reports where JSON decoding failed as a character offset; serde gives line and
/// column (both 1-based), so walk the input to convert.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = bytes
        .split(|b| *b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(bytes.len())
}

fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        qty: i64,
    }

    fn issue_json(result: Result<Body, ApiError>) -> serde_json::Value {
        match result {
            Err(ApiError::Validation(issues)) => serde_json::to_value(&issues[0]).unwrap(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn missing_field_is_located_under_body() {
        let issue = issue_json(parse_json(br#"{"name": "x"}"#));
        assert_eq!(
            issue,
            json!({"type": "missing", "loc": ["body", "items"], "msg": "Field required"})
        );
    }

    #[test]
    fn wrong_type_in_a_list_names_the_index_and_field() {
        let issue = issue_json(parse_json(br#"{"name": "x", "items": [{"qty": "two"}]}"#));
        assert_eq!(issue["loc"], json!(["body", "items", 0, "qty"]));
        assert_eq!(issue["type"], "int_type");
    }

    #[test]
    fn malformed_json_is_a_decode_error_with_its_offset() {
        let issue = issue_json(parse_json(b"{\"name\": }"));
        assert_eq!(issue["type"], "json_invalid");
        assert_eq!(issue["loc"], json!(["body", 9]));
    }

    #[test]
    fn trailing_characters_are_a_decode_error_at_their_offset() {
        let issue = issue_json(parse_json(br#"{"name": "x", "items": []} x"#));
        assert_eq!(issue["type"], "json_invalid");
        assert_eq!(issue["loc"], json!(["body", 27]));
    }

    #[test]
    fn a_valid_body_is_parsed() {
        let body: Body = parse_json(br#"{"name": "x", "items": [{"qty": 2}]}"#).unwrap();
        assert_eq!((body.name.as_str(), body.items[0].qty), ("x", 2));
    }

    #[test]
    fn empty_body_is_a_missing_body() {
        let issue = issue_json(parse_json(b""));
        assert_eq!(issue["loc"], json!(["body"]));
        assert_eq!(issue["type"], "missing");
    }
}
