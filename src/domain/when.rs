//! Timestamps as the service shows and stores them: UTC with microseconds, fixed width, so
//! that their text sorts like their time (SQLite compares them as text).

use chrono::{DateTime, SecondsFormat, Utc};

/// A moment, truncated to the microsecond precision both databases keep.
pub type Timestamp = DateTime<Utc>;

/// Now, at the precision we store, so a value read back equals the one written.
pub fn now() -> Timestamp {
    let now = Utc::now();
    let micros = now.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(now)
}

/// `2026-11-25T09:22:34.123456Z`: fixed width, sorts as text.
pub fn format(at: Timestamp) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses what [`format`] wrote (or any RFC 3339 time).
pub fn parse(text: &str) -> Result<Timestamp, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc))
}

/// Serde adapter for the fixed-width form.
pub mod serde_fixed {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sorts_like_time() {
        let a = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let b = DateTime::from_timestamp(1_700_000_000, 500_000_000).unwrap();
        assert!(format(a) < format(b));
        assert_eq!(format(a), "2023-11-14T22:13:20.000000Z");
    }

    #[test]
    fn formatted_time_parses_back_equal() {
        let t = now();
        assert_eq!(parse(&format(t)).unwrap(), t);
    }
}
