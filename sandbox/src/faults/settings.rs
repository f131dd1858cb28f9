//! The fault settings body (`POST /_sandbox/faults`, `--fault`): its fields, and parsing and
//! validation that name the offending field the way FastAPI does.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Service, endpoints};

/// The statuses an injected error may carry; 429 also carries `Retry-After: 1`.
pub const ERROR_STATUSES: [u16; 4] = [500, 502, 503, 429];
/// Longest added latency (and jitter) accepted, in milliseconds: ten minutes.
pub const MAX_LATENCY_MS: u64 = 600_000;

/// Faults to inject into one service, for one endpoint or (without `endpoint`) for all.
///
/// Every field is optional: a `POST` merges the given fields into the settings already in
/// force for that scope, and an endpoint's own value wins over the service-wide one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSettings {
    /// `METHOD /route-template` as in the contract (`"POST /reservations/{id}/release"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Fixed delay added before the request is handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Extra delay drawn uniformly from `0..=jitterMs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    /// Fraction of requests answered with `errorStatus` and no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// One of [`ERROR_STATUSES`]; 503 when never set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_status: Option<u16>,
    /// Fraction of requests that never take effect and never get an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hang_rate: Option<f64>,
    /// Fraction of requests that take effect but whose connection is dropped unanswered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_response_rate: Option<f64>,
    /// Payment service only: fraction of new payments stored as `failed` whatever the amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_rate: Option<f64>,
    /// `POST /reserve` and `POST /shipments` only: replay the first answer for a repeated
    /// `Idempotency-Key` instead of acting again (the real services ignore the header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honor_idempotency_key: Option<bool>,
    /// Re-seeds the service's fault RNG so a run can be repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// One bad field of a fault settings body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The camelCase field name, or empty when the body as a whole is wrong.
    pub field: String,
    /// The pydantic error type (`less_than_equal`, `float_type`, ...).
    pub kind: &'static str,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in a fault settings body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct FaultSettingsError {
    pub errors: Vec<FieldError>,
}

impl fmt::Display for FaultSettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl FaultSettingsError {
    fn check(errors: Vec<FieldError>) -> Result<(), Self> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Self { errors })
        }
    }
}

impl FaultSettings {
    /// Parses and validates a fault settings body meant for `service`.
    pub fn parse(body: &Value, service: Service) -> Result<Self, FaultSettingsError> {
        let (settings, mut errors) = Self::from_value(body)?;
        if let Err(invalid) = settings.validate(service) {
            errors.extend(invalid.errors);
        }
        FaultSettingsError::check(errors)?;
        Ok(settings)
    }

    /// Like [`FaultSettings::parse`], from JSON text (the `--fault` flag).
    pub fn parse_str(text: &str, service: Service) -> Result<Self, FaultSettingsError> {
        let body: Value = serde_json::from_str(text).map_err(|err| FaultSettingsError {
            errors: vec![FieldError::new(
                "",
                "json_invalid",
                format!("invalid JSON: {err}"),
            )],
        })?;
        Self::parse(&body, service)
    }

    /// Reads the fields by hand rather than with serde so that each wrong type is reported
    /// against its own field, and all of them at once; fields of the wrong type are left
    /// unset and their errors returned beside the rest.
    fn from_value(body: &Value) -> Result<(Self, Vec<FieldError>), FaultSettingsError> {
        let Value::Object(fields) = body else {
            return Err(FaultSettingsError {
                errors: vec![FieldError::new(
                    "",
                    "dict_type",
                    "Input should be a valid dictionary",
                )],
            });
        };
        let mut reader = FieldReader {
            fields,
            errors: Vec::new(),
        };
        let settings = Self {
            endpoint: reader.read("endpoint", string),
            latency_ms: reader.read("latencyMs", millis),
            jitter_ms: reader.read("jitterMs", millis),
            error_rate: reader.read("errorRate", number),
            error_status: reader.read("errorStatus", status),
            hang_rate: reader.read("hangRate", number),
            drop_response_rate: reader.read("dropResponseRate", number),
            decline_rate: reader.read("declineRate", number),
            honor_idempotency_key: reader.read("honorIdempotencyKey", boolean),
            seed: reader.read("seed", unsigned),
        };
        let mut errors = reader.errors;
        for name in fields.keys() {
            if !KNOWN_FIELDS.contains(&name.as_str()) {
                errors.push(FieldError::new(
                    name,
                    "extra_forbidden",
                    "Extra inputs are not permitted",
                ));
            }
        }
        Ok((settings, errors))
    }

    /// Checks ranges and that every setting can apply to `service` (and to `endpoint`).
    pub fn validate(&self, service: Service) -> Result<(), FaultSettingsError> {
        let mut errors = Vec::new();
        let endpoint = match &self.endpoint {
            None => None,
            Some(label) => match endpoints::find_label(service, label) {
                Some(index) => Some(&endpoints::of(service)[index]),
                None => {
                    errors.push(unknown_endpoint(service, label));
                    None
                }
            },
        };
        for (field, value) in [("latencyMs", self.latency_ms), ("jitterMs", self.jitter_ms)] {
            if value.is_some_and(|ms| ms > MAX_LATENCY_MS) {
                errors.push(FieldError::new(
                    field,
                    "less_than_equal",
                    format!("Input should be less than or equal to {MAX_LATENCY_MS}"),
                ));
            }
        }
        for (field, rate) in [
            ("errorRate", self.error_rate),
            ("hangRate", self.hang_rate),
            ("dropResponseRate", self.drop_response_rate),
            ("declineRate", self.decline_rate),
        ] {
            if let Some(error) = rate.and_then(|rate| check_rate(field, rate)) {
                errors.push(error);
            }
        }
        if let Some(code) = self.error_status
            && !ERROR_STATUSES.contains(&code)
        {
            errors.push(FieldError::new(
                "errorStatus",
                "literal_error",
                "Input should be 500, 502, 503 or 429",
            ));
        }
        if self.decline_rate.is_some_and(|rate| rate > 0.0) {
            let applies = match endpoint {
                Some(endpoint) => endpoint.can_decline,
                None => service == Service::Payment,
            };
            if !applies {
                errors.push(FieldError::new(
                    "declineRate",
                    "value_error",
                    "declineRate applies only to POST /payments of the payment service",
                ));
            }
        }
        if self.honor_idempotency_key == Some(true) {
            let applies = match endpoint {
                Some(endpoint) => endpoint.honors_idempotency_key,
                None => endpoints::of(service)
                    .iter()
                    .any(|e| e.honors_idempotency_key),
            };
            if !applies {
                errors.push(FieldError::new(
                    "honorIdempotencyKey",
                    "value_error",
                    "honorIdempotencyKey applies only to POST /reserve and POST /shipments",
                ));
            }
        }
        FaultSettingsError::check(errors)
    }

    /// Copies every field set in `other` (except `endpoint` and `seed`, which say where and
    /// how to apply rather than what) over this one.
    pub(crate) fn merge_from(&mut self, other: &FaultSettings) {
        fn take<T: Copy>(into: &mut Option<T>, from: Option<T>) {
            if from.is_some() {
                *into = from;
            }
        }
        take(&mut self.latency_ms, other.latency_ms);
        take(&mut self.jitter_ms, other.jitter_ms);
        take(&mut self.error_rate, other.error_rate);
        take(&mut self.error_status, other.error_status);
        take(&mut self.hang_rate, other.hang_rate);
        take(&mut self.drop_response_rate, other.drop_response_rate);
        take(&mut self.decline_rate, other.decline_rate);
        take(&mut self.honor_idempotency_key, other.honor_idempotency_key);
    }

    /// True when no setting is present (the scope has nothing of its own).
    pub(crate) fn is_empty(&self) -> bool {
        *self == FaultSettings::default()
    }
}

const KNOWN_FIELDS: [&str; 10] = [
    "endpoint",
    "latencyMs",
    "jitterMs",
    "errorRate",
    "errorStatus",
    "hangRate",
    "dropResponseRate",
    "declineRate",
    "honorIdempotencyKey",
    "seed",
];

type FieldResult<T> = Result<T, (&'static str, String)>;

/// Reads typed fields out of a JSON object, collecting errors instead of stopping at the first.
struct FieldReader<'a> {
    fields: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl FieldReader<'_> {
    /// `null` and absent both mean "not given".
    fn read<T>(&mut self, name: &str, convert: fn(&Value) -> FieldResult<T>) -> Option<T> {
        match self.fields.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => match convert(value) {
                Ok(value) => Some(value),
                Err((kind, message)) => {
                    self.errors.push(FieldError::new(name, kind, message));
                    None
                }
            },
        }
    }
}

fn string(value: &Value) -> FieldResult<String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or(("string_type", "Input should be a valid string".into()))
}

fn boolean(value: &Value) -> FieldResult<bool> {
    value
        .as_bool()
        .ok_or(("bool_type", "Input should be a valid boolean".into()))
}

fn number(value: &Value) -> FieldResult<f64> {
    value
        .as_f64()
        .ok_or(("float_type", "Input should be a valid number".into()))
}

fn unsigned(value: &Value) -> FieldResult<u64> {
    if let Some(n) = value.as_u64() {
        return Ok(n);
    }
    match value.as_f64() {
        Some(f) if f < 0.0 => Err((
            "greater_than_equal",
            "Input should be greater than or equal to 0".into(),
        )),
        Some(f) if f.fract() == 0.0 && f <= u64::MAX as f64 => Ok(f as u64),
        Some(_) => Err((
            "int_from_float",
            "Input should be a valid integer, got a number with a fractional part".into(),
        )),
        None => Err(("int_type", "Input should be a valid integer".into())),
    }
}

fn millis(value: &Value) -> FieldResult<u64> {
    unsigned(value)
}

fn status(value: &Value) -> FieldResult<u16> {
    value.as_u64().and_then(|n| u16::try_from(n).ok()).ok_or((
        "literal_error",
        "Input should be 500, 502, 503 or 429".into(),
    ))
}

fn check_rate(field: &str, rate: f64) -> Option<FieldError> {
    if !rate.is_finite() {
        Some(FieldError::new(
            field,
            "finite_number",
            "Input should be a finite number",
        ))
    } else if rate < 0.0 {
        Some(FieldError::new(
            field,
            "greater_than_equal",
            "Input should be greater than or equal to 0",
        ))
    } else if rate > 1.0 {
        Some(FieldError::new(
            field,
            "less_than_equal",
            "Input should be less than or equal to 1",
        ))
    } else {
        None
    }
}

fn unknown_endpoint(service: Service, label: &str) -> FieldError {
    let known: Vec<&str> = endpoints::of(service).iter().map(|e| e.label).collect();
    FieldError::new(
        "endpoint",
        "literal_error",
        format!(
            "Unknown endpoint '{label}' for the {service} service; expected one of: {}",
            known.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields_of(result: Result<FaultSettings, FaultSettingsError>) -> Vec<String> {
        result
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn parses_a_full_body() {
        let body = json!({
            "endpoint": "POST /payments", "latencyMs": 5, "jitterMs": 2, "errorRate": 0.5,
            "errorStatus": 429, "hangRate": 0, "dropResponseRate": 1, "declineRate": 0.25,
            "honorIdempotencyKey": false, "seed": 42
        });
        let settings = FaultSettings::parse(&body, Service::Payment).unwrap();
        assert_eq!(settings.error_status, Some(429));
        assert_eq!(settings.drop_response_rate, Some(1.0));
        assert_eq!(settings.seed, Some(42));
        let round_trip: FaultSettings =
            serde_json::from_value(serde_json::to_value(&settings).unwrap()).unwrap();
        assert_eq!(round_trip, settings);
    }

    #[test]
    fn reports_every_bad_field_by_name() {
        let body = json!({"errorRate": 1.5, "latencyMs": -1, "hangRate": "often", "bogus": 1});
        let mut fields = fields_of(FaultSettings::parse(&body, Service::Inventory));
        fields.sort();
        assert_eq!(fields, ["bogus", "errorRate", "hangRate", "latencyMs"]);
    }

    #[test]
    fn rejects_nan_and_unsupported_status_built_in_rust() {
        let settings = FaultSettings {
            hang_rate: Some(f64::NAN),
            error_status: Some(404),
            ..FaultSettings::default()
        };
        let error = settings.validate(Service::Shipping).unwrap_err();
        let fields: Vec<_> = error.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["hangRate", "errorStatus"]);
    }

    #[test]
    fn decline_and_idempotency_modes_only_where_they_apply() {
        let decline = json!({"declineRate": 0.5});
        assert!(FaultSettings::parse(&decline, Service::Payment).is_ok());
        assert_eq!(
            fields_of(FaultSettings::parse(&decline, Service::Shipping)),
            ["declineRate"]
        );
        let honor_refund =
            json!({"endpoint": "POST /reservations/{id}/commit", "honorIdempotencyKey": true});
        assert_eq!(
            fields_of(FaultSettings::parse(&honor_refund, Service::Inventory)),
            ["honorIdempotencyKey"]
        );
        let honor_all = json!({"honorIdempotencyKey": true});
        assert!(FaultSettings::parse(&honor_all, Service::Shipping).is_ok());
        assert!(FaultSettings::parse(&honor_all, Service::Payment).is_err());
    }

    #[test]
    fn unknown_endpoint_lists_the_known_ones() {
        let error = FaultSettings::parse(&json!({"endpoint": "POST /refunds"}), Service::Payment)
            .unwrap_err();
        assert_eq!(error.errors[0].field, "endpoint");
        assert!(error.to_string().contains("GET /payments/{id}"), "{error}");
    }

    #[test]
    fn merge_keeps_fields_not_given() {
        let mut scope = FaultSettings {
            error_rate: Some(0.5),
            latency_ms: Some(10),
            ..FaultSettings::default()
        };
        scope.merge_from(&FaultSettings {
            latency_ms: Some(20),
            seed: Some(7),
            ..FaultSettings::default()
        });
        assert_eq!(scope.error_rate, Some(0.5));
        assert_eq!(scope.latency_ms, Some(20));
        assert_eq!(scope.seed, None);
    }
}
