//! Reads the idempotency key from `Idempotency-Key` or the old `X-Idempotency-Key`.

use axum::http::HeaderMap;

use super::ApiError;
use crate::domain::idempotency::IdempotencyKey;

const HEADER: &str = "idempotency-key";
const OLD_HEADER: &str = "x-idempotency-key";

/// The request's key, if it has one. Both headers with different values is a client error.
pub fn key_of(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let read = |name: &str| -> Result<Option<IdempotencyKey>, ApiError> {
        let Some(value) = headers.get(name) else {
            return Ok(None);
        };
        let text = value.to_str().map_err(|_| {
            ApiError::BadRequest(format!(
                "{} must contain printable ASCII characters only",
                display(name)
            ))
        })?;
        IdempotencyKey::parse(text)
            .map(Some)
            .map_err(|e| ApiError::BadRequest(format!("{} {e}", display(name))))
    };
    match (read(HEADER)?, read(OLD_HEADER)?) {
        (Some(new), Some(old)) if new != old => Err(ApiError::BadRequest(
            "Idempotency-Key and X-Idempotency-Key differ; send one of them".to_owned(),
        )),
        (Some(key), _) | (None, Some(key)) => Ok(Some(key)),
        (None, None) => Ok(None),
    }
}

fn display(name: &str) -> &'static str {
    if name == HEADER {
        "Idempotency-Key"
    } else {
        "X-Idempotency-Key"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn either_header_names_the_key() {
        let key = key_of(&headers(&[("idempotency-key", "a")])).unwrap();
        assert_eq!(key.unwrap().as_str(), "a");
        let key = key_of(&headers(&[("x-idempotency-key", "b")])).unwrap();
        assert_eq!(key.unwrap().as_str(), "b");
        assert!(key_of(&headers(&[])).unwrap().is_none());
    }

    #[test]
    fn equal_headers_are_fine_different_ones_are_not() {
        assert!(
            key_of(&headers(&[
                ("idempotency-key", "a"),
                ("x-idempotency-key", "a")
            ]))
            .is_ok()
        );
        assert!(matches!(
            key_of(&headers(&[
                ("idempotency-key", "a"),
                ("x-idempotency-key", "b")
            ])),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn bad_keys_name_the_header() {
        match key_of(&headers(&[("x-idempotency-key", "")])) {
            Err(ApiError::BadRequest(text)) => assert!(text.starts_with("X-Idempotency-Key")),
            other => panic!("{other:?}"),
        }
    }
}
