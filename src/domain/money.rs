//! Exact money: ISO 4217 currencies with their minor units, and decimal amounts that never
//! pass through binary floats (`0.1 + 0.2` is `0.3` here).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The currency of an order when the client names none, as in the old service.
pub const DEFAULT_CURRENCY: &str = "INR";

/// The largest unit price accepted. Bounds every total far inside `Decimal`'s exact range
/// (100 items x 10,000 units x 10^12 < 10^19).
pub const MAX_UNIT_PRICE: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0); // 10^12

/// An ISO 4217 currency that has minor units (so `XAU`, `XXX` and the like are refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Currency {
    iso: iso_currency::Currency,
    exponent: u32,
}

/// Why a currency code was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CurrencyError {
    #[error("'{0}' is not an ISO 4217 currency code")]
    Unknown(String),
    #[error("'{0}' has no minor unit and cannot price an order")]
    NotMoney(String),
}

impl Currency {
    /// Parses a code such as `INR` (case-insensitive; stored upper-case).
    pub fn parse(code: &str) -> Result<Self, CurrencyError> {
        let upper = code.trim().to_ascii_uppercase();
        let iso = iso_currency::Currency::from_code(&upper)
            .ok_or_else(|| CurrencyError::Unknown(code.to_owned()))?;
        let exponent = iso
            .exponent()
            .ok_or_else(|| CurrencyError::NotMoney(upper.clone()))?;
        Ok(Self {
            iso,
            exponent: u32::from(exponent),
        })
    }

    /// The three-letter code.
    pub fn code(&self) -> &'static str {
        self.iso.code()
    }

    /// How many decimals an amount in this currency may have (2 for INR, 0 for JPY).
    pub fn exponent(&self) -> u32 {
        self.exponent
    }
}

impl Default for Currency {
    fn default() -> Self {
        Self::parse(DEFAULT_CURRENCY).expect("the default currency is valid")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Self::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// Why the text of a JSON number is not an exact decimal amount.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AmountError {
    #[error("not a number")]
    NotANumber,
    #[error("too large or too precise to be represented exactly")]
    OutOfRange,
}

/// Parses the literal text of a JSON number (`12.5`, `1e2`, `-0.10`) into an exact decimal,
/// refusing anything it would have to round.
pub fn parse_json_number(text: &str) -> Result<Decimal, AmountError> {
    let text = text.trim();
    let first = text.bytes().next().ok_or(AmountError::NotANumber)?;
    if !(first == b'-' || first.is_ascii_digit()) {
        return Err(AmountError::NotANumber);
    }
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    };
    parsed
        .map(|d| d.normalize())
        .map_err(|_| AmountError::OutOfRange)
}

/// The number of decimals of an amount once trailing zeros are dropped (`10.50` has 1).
pub fn decimals(amount: Decimal) -> u32 {
    amount.normalize().scale()
}

/// Writes an amount as a JSON number with its exact decimal text, never through `f64`.
pub fn to_json_number(amount: Decimal) -> Box<RawValue> {
    RawValue::from_string(amount.normalize().to_string())
        .expect("a decimal's text is a valid JSON number")
}

/// Serde adapter: a `Decimal` as an exact JSON number, both ways.
pub mod json_number {
    use super::*;

    pub fn serialize<S: Serializer>(amount: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        to_json_number(*amount).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        let raw = <Box<RawValue>>::deserialize(deserializer)?;
        let text = raw.get();
        let text = text.trim_matches('"');
        parse_json_number(text)
            .or_else(|_| Decimal::from_str(text).map_err(|_| AmountError::NotANumber))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenths_add_up_exactly() {
        let a = parse_json_number("0.1").unwrap();
        let b = parse_json_number("0.2").unwrap();
        assert_eq!((a + b).to_string(), "0.3");
    }

    #[test]
    fn scientific_notation_is_exact() {
        assert_eq!(parse_json_number("1e2").unwrap().to_string(), "100");
        assert_eq!(parse_json_number("1.5E-1").unwrap().to_string(), "0.15");
    }

    #[test]
    fn trailing_zeros_do_not_count_as_decimals() {
        assert_eq!(decimals(parse_json_number("10.500").unwrap()), 1);
        assert_eq!(decimals(parse_json_number("10").unwrap()), 0);
    }

    #[test]
    fn numbers_beyond_exact_range_are_refused() {
        assert_eq!(
            parse_json_number("1e40"),
            Err(AmountError::OutOfRange),
            "must not silently round"
        );
        assert_eq!(
            parse_json_number("0.12345678901234567890123456789"),
            Err(AmountError::OutOfRange)
        );
    }

    #[test]
    fn strings_and_literals_are_not_numbers() {
        assert_eq!(parse_json_number("\"1\""), Err(AmountError::NotANumber));
        assert_eq!(parse_json_number("true"), Err(AmountError::NotANumber));
    }

    #[test]
    fn max_unit_price_is_ten_to_the_twelfth() {
        assert_eq!(MAX_UNIT_PRICE.to_string(), "1000000000000");
    }

    #[test]
    fn currencies_know_their_minor_units() {
        assert_eq!(Currency::parse("INR").unwrap().exponent(), 2);
        assert_eq!(Currency::parse("jpy").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().exponent(), 3);
        assert_eq!(Currency::parse("jpy").unwrap().code(), "JPY");
        assert!(matches!(
            Currency::parse("ABC"),
            Err(CurrencyError::Unknown(_))
        ));
        assert!(matches!(
            Currency::parse("XAU"),
            Err(CurrencyError::NotMoney(_))
        ));
    }

    #[test]
    fn amounts_round_trip_through_json_as_numbers() {
        #[derive(Serialize, Deserialize)]
        struct Holder {
            #[serde(with = "json_number")]
            price: Decimal,
        }
        let json = serde_json::to_string(&Holder {
            price: parse_json_number("19.990").unwrap(),
        })
        .unwrap();
        assert_eq!(json, r#"{"price":19.99}"#);
        let back: Holder = serde_json::from_str(&json).unwrap();
        assert_eq!(back.price.to_string(), "19.99");
    }
}
