//! Turns the tries of a step into rows of the order's event log.

use crate::domain::when;
use crate::downstream::CallError;
use crate::downstream::retry::{Attempt, Retried};
use crate::store::NewEvent;
use crate::telemetry::metrics;

/// The downstream service a step's calls go to, for metric labels.
fn service_of(step: &str) -> &'static str {
    match step {
        "payment" | "refund_payment" => "payment",
        "shipment" | "cancel_shipment" => "shipping",
        _ => "inventory",
    }
}

/// A short label for how one try ended.
fn attempt_outcome(error: Option<&CallError>) -> &'static str {
    match error {
        None => "ok",
        Some(CallError::Unreachable { .. }) => "unreachable",
        Some(CallError::Timeout { .. }) => "timeout",
        Some(CallError::ConnectionLost { .. }) => "connection_lost",
        Some(CallError::Status { status, .. }) if *status >= 500 => "status_5xx",
        Some(CallError::Status { status: 429, .. }) => "status_429",
        Some(CallError::Status { .. }) => "status_4xx",
        Some(CallError::BadResponse { .. }) => "bad_response",
        Some(CallError::CircuitOpen { .. }) => "circuit_open",
    }
}

/// One event per try: earlier failed tries are `retried`, the last one gets `outcome`.
/// Also counts the tries in the step metrics.
pub(super) fn of_attempts<T>(
    step: &'static str,
    retried: &Retried<T>,
    outcome: &'static str,
) -> Vec<NewEvent> {
    let service = service_of(step);
    for attempt in &retried.attempts {
        metrics::step_attempt(
            service,
            step,
            attempt_outcome(attempt.error.as_ref()),
            attempt.duration,
        );
        if attempt.number > 1 {
            metrics::retry(service, step);
        }
    }
    let last = retried.attempts.len();
    retried
        .attempts
        .iter()
        .map(|attempt| {
            let is_last = attempt.number as usize == last;
            of_attempt(step, attempt, if is_last { outcome } else { "retried" })
        })
        .collect()
}

fn of_attempt(step: &'static str, attempt: &Attempt, outcome: &'static str) -> NewEvent {
    NewEvent {
        at: when::now(),
        step,
        outcome,
        attempt: Some(attempt.number),
        upstream_status: attempt.error.as_ref().and_then(|e| e.upstream_status()),
        duration_ms: Some(attempt.duration.as_millis() as u64),
        detail: attempt.error.as_ref().map(ToString::to_string),
    }
}

/// An event that is not a call: a decision of the saga itself.
pub(super) fn decision(step: &'static str, outcome: &'static str, detail: String) -> NewEvent {
    NewEvent {
        at: when::now(),
        step,
        outcome,
        attempt: None,
        upstream_status: None,
        duration_ms: None,
        detail: Some(detail),
    }
}
