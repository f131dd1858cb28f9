//! Turns the bytes of a `POST /orders` body into a [`NewOrder`], or into every problem with
//! it at once, each located by its JSON path (`items.0.qty`) the way FastAPI reports them.
//!
//! The body is read as raw JSON fragments rather than through `f64`, so a price of `0.1` is
//! exactly one tenth.

use std::borrow::Cow;
use std::fmt;

use rust_decimal::Decimal;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ids::UserId;
use super::money::{self, AmountError, Currency, MAX_UNIT_PRICE};
use super::order::{Address, LineItem, NewOrder, Quantity, Sku};

/// Most items an order may have.
pub const MAX_ITEMS: usize = 100;
/// Longest address field, in characters.
pub const MAX_ADDRESS_CHARS: usize = 200;
/// Longest user id, in characters.
pub const MAX_USER_ID_CHARS: usize = 128;

/// One step of a JSON path: an object key or an array index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum LocPart {
    Key(String),
    Index(usize),
}

impl From<&str> for LocPart {
    fn from(key: &str) -> Self {
        Self::Key(key.to_owned())
    }
}

impl From<usize> for LocPart {
    fn from(index: usize) -> Self {
        Self::Index(index)
    }
}

/// One problem with one field, in FastAPI's vocabulary (`type` is e.g. `missing`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub loc: Vec<LocPart>,
    pub msg: String,
    pub kind: &'static str,
}

/// Why a body is not an order.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON at all; `offset` is the byte where parsing stopped.
    MalformedJson { offset: usize, message: String },
    /// JSON, but with these problems.
    Invalid(Vec<FieldError>),
}

/// The broad JSON type of a fragment, read from its first character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

fn kind_of(raw: &RawValue) -> Kind {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'"') => Kind::String,
        Some(b'[') => Kind::Array,
        Some(b'{') => Kind::Object,
        _ => Kind::Number,
    }
}

/// An object's members in the body's order, names borrowed from the body unless they
/// hold escapes. A list searched by name, not a hash map: an order's objects have a handful
/// of members, and copying and hashing every name (with [`Path`]'s lists built for every
/// field) took ~40 % of the validation's instructions (callgrind; BENCHMARKS.md,
/// 2026-12-06 19:18).
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Fields<'a> {
    /// The member called `name`; of duplicates the last counts, as in serde_json's maps.
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((Name(name), value)) = map.next_entry::<Name, &RawValue>()? {
                    members.push((name, value));
                }
                Ok(Fields(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// A member's name: borrowed from the body when it has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// Where a field is: a chain of steps up to the body's root, made into a `Vec<LocPart>`
/// only when an error is reported there, not for every field checked.
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    step: PathStep<'a>,
}

#[derive(Clone, Copy)]
enum PathStep<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        parent: None,
        step: PathStep::Root,
    };

    fn key(&'a self, key: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            step: PathStep::Key(key),
        }
    }

    fn index(&'a self, index: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            step: PathStep::Index(index),
        }
    }

    fn to_loc(self) -> Vec<LocPart> {
        let mut loc = self.parent.map(|p| p.to_loc()).unwrap_or_default();
        match self.step {
            PathStep::Root => {}
            PathStep::Key(key) => loc.push(key.into()),
            PathStep::Index(index) => loc.push(index.into()),
        }
        loc
    }
}

/// Collects errors under a path prefix while fields are checked.
struct Errors {
    list: Vec<FieldError>,
}

impl Errors {
    fn push(&mut self, loc: &Path, kind: &'static str, msg: impl Into<String>) {
        self.list.push(FieldError {
            loc: loc.to_loc(),
            msg: msg.into(),
            kind,
        });
    }

    fn missing(&mut self, loc: &Path) {
        self.push(loc, "missing", "Field required");
    }
}

/// Whether `text` has nothing but whitespace, with whitespace as JSON Schema's `\s` (the
/// ECMAScript set) defines it, so that the published patterns (`[^\s\u0000]` somewhere) and
/// this check agree.
pub fn is_blank(text: &str) -> bool {
    text.chars().all(|c| {
        matches!(
            c,
            '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
                ..='\u{200a}'
                    | '\u{2028}'
                    | '\u{2029}'
                    | '\u{202f}'
                    | '\u{205f}'
                    | '\u{3000}'
                    | '\u{feff}'
        )
    })
}

/// The message for a text with a NUL character, which no string field may hold:
/// PostgreSQL cannot store it in `TEXT` or `JSONB`, so taking it would fail only later,
/// and only on one database.
pub const NUL_MESSAGE: &str = "String should not contain the NUL character (U+0000)";

/// Whether `text` holds a NUL character (see [`NUL_MESSAGE`]).
pub fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

/// Parses and validates an order request body.
pub fn parse_new_order(body: &[u8]) -> Result<NewOrder, BodyError> {
    let root: &RawValue = serde_json::from_slice(body).map_err(|e| BodyError::MalformedJson {
        offset: byte_offset(body, e.line(), e.column()),
        message: e.to_string(),
    })?;
    let mut errors = Errors { list: Vec::new() };
    let Some(fields) = as_object(root, &Path::ROOT, &mut errors) else {
        return Err(BodyError::Invalid(errors.list));
    };

    let user_id = optional_string(
        &fields,
        "userId",
        MAX_USER_ID_CHARS,
        &Path::ROOT,
        &mut errors,
    )
    .map(|id| id.map(UserId::from).unwrap_or_else(UserId::anonymous));
    let address = address(fields.get("address"), &mut errors);
    let currency = currency(fields.get("currency"), &mut errors);
    let items = items(
        fields.get("items"),
        currency.as_ref().map(Currency::exponent),
        &mut errors,
    );

    if let Some(items) = &items
        && errors.list.is_empty()
        && total(items).is_zero()
    {
        errors.push(
            &Path::ROOT.key("items"),
            "value_error",
            "Value error, the order total must be greater than 0",
        );
    }
    match (user_id, address, currency, items) {
        (Some(user_id), Some(address), Some(currency), Some(items)) if errors.list.is_empty() => {
            Ok(NewOrder {
                total: total(&items),
                user_id,
                address,
                currency,
                items,
            })
        }
        _ => Err(BodyError::Invalid(errors.list)),
    }
}

fn total(items: &[LineItem]) -> Decimal {
    items.iter().map(LineItem::subtotal).sum()
}

/// Converts serde_json's 1-based line and column into a byte offset.
fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = body
        .split(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(body.len())
}

fn as_object<'a>(raw: &'a RawValue, loc: &Path, errors: &mut Errors) -> Option<Fields<'a>> {
    if kind_of(raw) != Kind::Object {
        errors.push(
            loc,
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        );
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// A string field; `None` when it is absent or null.
fn optional_string(
    fields: &Fields<'_>,
    name: &str,
    max_chars: usize,
    prefix: &Path,
    errors: &mut Errors,
) -> Option<Option<String>> {
    match fields.get(name) {
        None => Some(None),
        Some(raw) if kind_of(raw) == Kind::Null => Some(None),
        Some(raw) => string_value(raw, max_chars, &prefix.key(name), errors).map(Some),
    }
}

/// A required, non-blank string field.
fn required_string(
    fields: &Fields<'_>,
    name: &str,
    max_chars: usize,
    prefix: &Path,
    errors: &mut Errors,
) -> Option<String> {
    let loc = prefix.key(name);
    let Some(raw) = fields.get(name) else {
        errors.missing(&loc);
        return None;
    };
    let value = string_value(raw, max_chars, &loc, errors)?;
    if is_blank(&value) {
        errors.push(&loc, "value_error", "Value error, must not be blank");
        return None;
    }
    Some(value)
}

fn string_value(
    raw: &RawValue,
    max_chars: usize,
    loc: &Path,
    errors: &mut Errors,
) -> Option<String> {
    if kind_of(raw) != Kind::String {
        errors.push(loc, "string_type", "Input should be a valid string");
        return None;
    }
    let value: String = serde_json::from_str(raw.get()).ok()?;
    if has_nul(&value) {
        errors.push(loc, "string_pattern_mismatch", NUL_MESSAGE);
        return None;
    }
    if value.chars().count() > max_chars {
        errors.push(
            loc,
            "string_too_long",
            format!("String should have at most {max_chars} characters"),
        );
        return None;
    }
    Some(value)
}

fn address(raw: Option<&RawValue>, errors: &mut Errors) -> Option<Address> {
    let loc = Path::ROOT.key("address");
    let Some(raw) = raw else {
        errors.missing(&loc);
        return None;
    };
    let fields = as_object(raw, &loc, errors)?;
    let line1 = required_string(&fields, "line1", MAX_ADDRESS_CHARS, &loc, errors);
    let city = required_string(&fields, "city", MAX_ADDRESS_CHARS, &loc, errors);
    let country = required_string(&fields, "country", MAX_ADDRESS_CHARS, &loc, errors);
    let postal_code = required_string(&fields, "postalCode", MAX_ADDRESS_CHARS, &loc, errors);
    Some(Address {
        line1: line1?,
        city: city?,
        country: country?,
        postal_code: postal_code?,
    })
}

fn currency(raw: Option<&RawValue>, errors: &mut Errors) -> Option<Currency> {
    let loc = Path::ROOT.key("currency");
    match raw {
        None => Some(Currency::default()),
        Some(raw) if kind_of(raw) == Kind::Null => Some(Currency::default()),
        Some(raw) => {
            let code = string_value(raw, 16, &loc, errors)?;
            Currency::parse(&code)
                .map_err(|e| errors.push(&loc, "value_error", format!("Value error, {e}")))
                .ok()
        }
    }
}

fn items(
    raw: Option<&RawValue>,
    exponent: Option<u32>,
    errors: &mut Errors,
) -> Option<Vec<LineItem>> {
    let loc = Path::ROOT.key("items");
    let Some(raw) = raw else {
        errors.missing(&loc);
        return None;
    };
    if kind_of(raw) != Kind::Array {
        errors.push(&loc, "list_type", "Input should be a valid list");
        return None;
    }
    let list: Vec<&RawValue> = serde_json::from_str(raw.get()).ok()?;
    if list.is_empty() {
        errors.push(
            &loc,
            "too_short",
            "List should have at least 1 item after validation, not 0",
        );
        return None;
    }
    if list.len() > MAX_ITEMS {
        errors.push(
            &loc,
            "too_long",
            format!(
                "List should have at most {MAX_ITEMS} items after validation, not {}",
                list.len()
            ),
        );
        return None;
    }
    let parsed: Vec<Option<LineItem>> = list
        .iter()
        .enumerate()
        .map(|(i, raw)| item(raw, &loc.index(i), exponent, errors))
        .collect();
    parsed.into_iter().collect()
}

fn item(
    raw: &RawValue,
    loc: &Path,
    exponent: Option<u32>,
    errors: &mut Errors,
) -> Option<LineItem> {
    let fields = as_object(raw, loc, errors)?;
    let sku = required_string(&fields, "sku", Sku::MAX_CHARS, loc, errors);
    let qty = quantity(fields.get("qty"), &loc.key("qty"), errors);
    let price = price(fields.get("price"), &loc.key("price"), exponent, errors);
    Some(LineItem {
        sku: Sku::new_unchecked(sku?),
        qty: qty?,
        price: price?,
    })
}

fn number(raw: Option<&RawValue>, loc: &Path, errors: &mut Errors) -> Option<Decimal> {
    let Some(raw) = raw else {
        errors.missing(loc);
        return None;
    };
    if kind_of(raw) != Kind::Number {
        errors.push(loc, "float_type", "Input should be a valid number");
        return None;
    }
    match money::parse_json_number(raw.get()) {
        Ok(value) => Some(value),
        Err(AmountError::NotANumber) => {
            errors.push(loc, "float_type", "Input should be a valid number");
            None
        }
        Err(AmountError::OutOfRange) => {
            // Beyond Decimal's range: clamp, so the caller reports the bound it breaks.
            match raw.get().parse::<f64>() {
                Ok(f) if f > 1e28 => return Some(Decimal::MAX),
                Ok(f) if f < -1e28 => return Some(Decimal::MIN),
                _ => {}
            }
            errors.push(
                loc,
                "decimal_parsing",
                "Input should be a number with at most 28 significant digits",
            );
            None
        }
    }
}

fn quantity(raw: Option<&RawValue>, loc: &Path, errors: &mut Errors) -> Option<Quantity> {
    if raw.is_some_and(|r| kind_of(r) != Kind::Number) {
        errors.push(loc, "int_type", "Input should be a valid integer");
        return None;
    }
    let value = number(raw, loc, errors)?;
    if !value.is_integer() {
        errors.push(
            loc,
            "int_from_float",
            "Input should be a valid integer, got a number with a fractional part",
        );
        return None;
    }
    if value < Decimal::from(Quantity::MIN) {
        errors.push(
            loc,
            "greater_than_equal",
            format!("Input should be greater than or equal to {}", Quantity::MIN),
        );
        return None;
    }
    let qty = u32::try_from(value.mantissa() / 10i128.pow(value.scale()))
        .ok()
        .and_then(Quantity::new);
    if qty.is_none() {
        errors.push(
            loc,
            "less_than_equal",
            format!("Input should be less than or equal to {}", Quantity::MAX),
        );
    }
    qty
}

fn price(
    raw: Option<&RawValue>,
    loc: &Path,
    exponent: Option<u32>,
    errors: &mut Errors,
) -> Option<Decimal> {
    let value = number(raw, loc, errors)?;
    if value.is_sign_negative() && !value.is_zero() {
        errors.push(
            loc,
            "greater_than_equal",
            "Input should be greater than or equal to 0",
        );
        return None;
    }
    if value > MAX_UNIT_PRICE {
        errors.push(
            loc,
            "less_than_equal",
            format!("Input should be less than or equal to {MAX_UNIT_PRICE}"),
        );
        return None;
    }
    // Without a valid currency the allowed decimals are unknown; the currency error is
    // reported on its own.
    let exponent = exponent?;
    if money::decimals(value) > exponent {
        errors.push(
            loc,
            "decimal_max_places",
            format!(
                "Decimal input should have no more than {exponent} decimal place{} for this currency",
                if exponent == 1 { "" } else { "s" }
            ),
        );
        return None;
    }
    Some(value.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> NewOrder {
        parse_new_order(body.as_bytes()).expect("valid")
    }

    fn errors(body: &str) -> Vec<(String, &'static str)> {
        match parse_new_order(body.as_bytes()) {
            Err(BodyError::Invalid(list)) => list
                .into_iter()
                .map(|e| {
                    let path = e
                        .loc
                        .iter()
                        .map(|p| match p {
                            LocPart::Key(k) => k.clone(),
                            LocPart::Index(i) => i.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(".");
                    (path, e.kind)
                })
                .collect(),
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    const ADDRESS: &str =
        r#"{"line1":"1 Main St","city":"Pune","country":"IN","postalCode":"411001"}"#;

    fn body(items: &str) -> String {
        format!(r#"{{"address":{ADDRESS},"items":{items}}}"#)
    }

    #[test]
    fn minimal_order_gets_defaults() {
        let order = ok(&body(r#"[{"sku":"SKU-001","qty":2,"price":10.5}]"#));
        assert_eq!(order.user_id, UserId::anonymous());
        assert_eq!(order.currency.code(), "INR");
        assert_eq!(order.total.to_string(), "21.0");
    }

    #[test]
    fn prices_are_summed_exactly() {
        let order = ok(&body(
            r#"[{"sku":"A","qty":1,"price":0.1},{"sku":"B","qty":1,"price":0.2}]"#,
        ));
        assert_eq!(order.total.normalize().to_string(), "0.3");
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let errs = errors(
            r#"{"userId":5,"address":{"line1":" ","city":"x"},"currency":"ABC",
                "items":[{"sku":"","qty":0,"price":-1},{"qty":"2","price":"1"}]}"#,
        );
        let expected = vec![
            ("userId".to_owned(), "string_type"),
            ("address.line1".to_owned(), "value_error"),
            ("address.country".to_owned(), "missing"),
            ("address.postalCode".to_owned(), "missing"),
            ("currency".to_owned(), "value_error"),
            ("items.0.sku".to_owned(), "value_error"),
            ("items.0.qty".to_owned(), "greater_than_equal"),
            ("items.0.price".to_owned(), "greater_than_equal"),
            ("items.1.sku".to_owned(), "missing"),
            ("items.1.qty".to_owned(), "int_type"),
            ("items.1.price".to_owned(), "float_type"),
        ];
        assert_eq!(errs, expected);
    }

    #[test]
    fn missing_top_level_fields() {
        assert_eq!(
            errors("{}"),
            vec![
                ("address".to_owned(), "missing"),
                ("items".to_owned(), "missing")
            ]
        );
    }

    #[test]
    fn body_must_be_an_object() {
        assert_eq!(
            errors("[1]"),
            vec![(String::new(), "model_attributes_type")]
        );
    }

    #[test]
    fn item_count_is_bounded() {
        assert_eq!(errors(&body("[]")), vec![("items".to_owned(), "too_short")]);
        let many = vec![r#"{"sku":"A","qty":1,"price":1}"#; 101].join(",");
        assert_eq!(
            errors(&body(&format!("[{many}]"))),
            vec![("items".to_owned(), "too_long")]
        );
        let hundred = vec![r#"{"sku":"A","qty":1,"price":1}"#; 100].join(",");
        assert_eq!(ok(&body(&format!("[{hundred}]"))).items.len(), 100);
    }

    #[test]
    fn quantity_bounds_and_integrality() {
        let e = |q: &str| errors(&body(&format!(r#"[{{"sku":"A","qty":{q},"price":1}}]"#)));
        assert_eq!(
            e("10001"),
            vec![("items.0.qty".to_owned(), "less_than_equal")]
        );
        assert_eq!(
            e("1e30"),
            vec![("items.0.qty".to_owned(), "less_than_equal")]
        );
        assert_eq!(
            e("-1e30"),
            vec![("items.0.qty".to_owned(), "greater_than_equal")]
        );
        assert_eq!(e("1.5"), vec![("items.0.qty".to_owned(), "int_from_float")]);
        assert_eq!(
            e("-3"),
            vec![("items.0.qty".to_owned(), "greater_than_equal")]
        );
        assert_eq!(e("true"), vec![("items.0.qty".to_owned(), "int_type")]);
        assert_eq!(
            ok(&body(r#"[{"sku":"A","qty":10000,"price":1}]"#)).items[0]
                .qty
                .get(),
            10_000
        );
        assert_eq!(
            ok(&body(r#"[{"sku":"A","qty":2.0,"price":1}]"#)).items[0]
                .qty
                .get(),
            2
        );
    }

    #[test]
    fn price_decimals_follow_the_currency() {
        let with = |currency: &str, price: &str| {
            format!(
                r#"{{"address":{ADDRESS},"currency":"{currency}","items":[{{"sku":"A","qty":1,"price":{price}}}]}}"#
            )
        };
        assert!(parse_new_order(with("INR", "10.25").as_bytes()).is_ok());
        assert!(parse_new_order(with("INR", "10.250").as_bytes()).is_ok());
        assert_eq!(
            errors(&with("INR", "10.255")),
            vec![("items.0.price".to_owned(), "decimal_max_places")]
        );
        assert_eq!(
            errors(&with("JPY", "100.5")),
            vec![("items.0.price".to_owned(), "decimal_max_places")]
        );
        assert!(parse_new_order(with("JPY", "100").as_bytes()).is_ok());
        assert!(parse_new_order(with("KWD", "1.125").as_bytes()).is_ok());
        assert_eq!(
            errors(&with("INR", "1e13")),
            vec![("items.0.price".to_owned(), "less_than_equal")]
        );
        assert_eq!(
            errors(&with("INR", "1e40")),
            vec![("items.0.price".to_owned(), "less_than_equal")]
        );
        assert_eq!(
            errors(&with("INR", "0.12345678901234567890123456789")),
            vec![("items.0.price".to_owned(), "decimal_parsing")]
        );
    }

    #[test]
    fn total_must_be_positive() {
        assert_eq!(
            errors(&body(r#"[{"sku":"A","qty":1,"price":0}]"#)),
            vec![("items".to_owned(), "value_error")]
        );
        assert!(
            parse_new_order(
                body(r#"[{"sku":"A","qty":1,"price":0},{"sku":"B","qty":1,"price":1}]"#).as_bytes()
            )
            .is_ok()
        );
    }

    #[test]
    fn string_lengths_are_bounded_in_characters() {
        let long_sku = "é".repeat(65);
        assert_eq!(
            errors(&body(&format!(
                r#"[{{"sku":"{long_sku}","qty":1,"price":1}}]"#
            ))),
            vec![("items.0.sku".to_owned(), "string_too_long")]
        );
        let sku64 = "é".repeat(64);
        assert!(
            parse_new_order(
                body(&format!(r#"[{{"sku":"{sku64}","qty":1,"price":1}}]"#)).as_bytes()
            )
            .is_ok()
        );
        let long_user = "u".repeat(129);
        let b = format!(
            r#"{{"userId":"{long_user}","address":{ADDRESS},"items":[{{"sku":"A","qty":1,"price":1}}]}}"#
        );
        assert_eq!(errors(&b), vec![("userId".to_owned(), "string_too_long")]);
        let long_city = "c".repeat(201);
        let b = format!(
            r#"{{"address":{{"line1":"a","city":"{long_city}","country":"IN","postalCode":"1"}},"items":[{{"sku":"A","qty":1,"price":1}}]}}"#
        );
        assert_eq!(
            errors(&b),
            vec![("address.city".to_owned(), "string_too_long")]
        );
    }

    #[test]
    fn blank_means_ecmascript_whitespace_only() {
        assert!(is_blank(""));
        assert!(is_blank(" \t\u{a0}\u{feff}\u{3000}"));
        assert!(
            !is_blank("\u{85}"),
            "NEL is not \\s in JSON Schema patterns"
        );
        assert!(!is_blank(" a "));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let order = ok(&format!(
            r#"{{"extra":1,"address":{ADDRESS},"items":[{{"sku":"A","qty":1,"price":1,"note":"x"}}]}}"#
        ));
        assert_eq!(order.items.len(), 1);
    }

    #[test]
    fn of_duplicate_members_the_last_counts() {
        let order = ok(&body(
            r#"[{"sku":"A","qty":"no","price":1,"qty":3},{"sku":"B","qty":1,"price":2}]"#,
        ));
        assert_eq!(order.items[0].qty.get(), 3);
        assert_eq!(
            errors(&body(r#"[{"sku":"A","qty":3,"price":1,"qty":"no"}]"#)),
            [("items.0.qty".to_owned(), "int_type")]
        );
    }

    #[test]
    fn member_names_with_escapes_are_read_as_their_text() {
        let order = ok(&format!(
            r#"{{"address":{ADDRESS},"\u0069tems":[{{"\u0073ku":"A","qty":1,"pr\u0069ce":2}}]}}"#
        ));
        assert_eq!(order.items[0].sku.as_str(), "A");
        assert_eq!(order.total.to_string(), "2");
    }

    #[test]
    fn errors_deep_in_the_body_name_their_whole_path() {
        let found = errors(
            r#"{"address":{"line1":"x","city":" ","country":"IN","postalCode":"1"},"items":[{"sku":"A","qty":1,"price":1},{"sku":"B","qty":1,"price":-1}]}"#,
        );
        assert_eq!(
            found,
            [
                ("address.city".to_owned(), "value_error"),
                ("items.1.price".to_owned(), "greater_than_equal"),
            ]
        );
    }

    #[test]
    fn null_user_and_currency_take_defaults() {
        let order = ok(&format!(
            r#"{{"userId":null,"currency":null,"address":{ADDRESS},"items":[{{"sku":"A","qty":1,"price":1}}]}}"#
        ));
        assert_eq!(order.user_id, UserId::anonymous());
        assert_eq!(order.currency.code(), "INR");
    }

    #[test]
    fn malformed_json_reports_where() {
        match parse_new_order(b"{\"items\": [1,}") {
            Err(BodyError::MalformedJson { offset, .. }) => assert_eq!(offset, 13),
            other => panic!("{other:?}"),
        }
    }
}
