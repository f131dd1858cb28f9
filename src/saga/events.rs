//! Turns the tries of a step into rows of the order's event log.

use crate::domain::when;
use crate::downstream::retry::{Attempt, Retried};
use crate::store::NewEvent;

/// One event per try: earlier failed tries are `retried`, the last one gets `outcome`.
pub(super) fn of_attempts<T>(
    step: &'static str,
    retried: &Retried<T>,
    outcome: &'static str,
) -> Vec<NewEvent> {
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
