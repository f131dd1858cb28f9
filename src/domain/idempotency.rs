//! Idempotency keys as Stripe and the IETF `Idempotency-Key` draft define them: a key names
//! one request; repeating it replays the first answer; reusing it for another request is an
//! error.

use std::fmt;

use sha2::{Digest, Sha256};

use super::order::NewOrder;

/// A client's idempotency key: 1 to 255 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters", max = IdempotencyKey::MAX_LEN)]
    TooLong,
    #[error("must contain printable ASCII characters only")]
    NotPrintable,
}

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(key: &str) -> Result<Self, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > Self::MAX_LEN {
            return Err(KeyError::TooLong);
        }
        if !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(KeyError::NotPrintable);
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A digest of the validated request, so the same key with another request is caught
/// while harmless differences (key order, whitespace, unknown fields) are not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(order: &NewOrder) -> Self {
        let canonical = serde_json::to_vec(order).expect("a validated order serializes");
        Self(hex::encode(Sha256::digest(&canonical)))
    }

    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The status and exact body a client was answered with, replayed byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_printable_ascii() {
        assert!(IdempotencyKey::parse("order-123 abc").is_ok());
        assert_eq!(IdempotencyKey::parse(""), Err(KeyError::Empty));
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)),
            Err(KeyError::TooLong)
        );
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert_eq!(IdempotencyKey::parse("tab\t"), Err(KeyError::NotPrintable));
        assert_eq!(IdempotencyKey::parse("é"), Err(KeyError::NotPrintable));
    }
}
