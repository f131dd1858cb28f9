//! A circuit breaker per downstream service: after repeated failures it opens for a
//! cool-down, during which calls fail at once without being sent; then it lets one probe
//! through (half-open) and closes when the probe succeeds.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::order::Step;
use crate::telemetry::metrics;

/// When a breaker opens and for how long.
#[derive(Clone, Copy, Debug)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is out; everyone else waits for its result.
    HalfOpen,
}

/// What a caller may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send the call.
    Allowed,
    /// Send the call: it is the probe of a half-open breaker.
    Probe,
    /// Do not send; the breaker is open for about this long.
    Rejected { retry_after: Duration },
}

/// The breaker of one service.
#[derive(Debug)]
pub struct CircuitBreaker {
    service: Step,
    settings: BreakerSettings,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(service: Step, settings: BreakerSettings) -> Self {
        metrics::breaker_state(service.as_str(), 0.0);
        Self {
            service,
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks to send a call now.
    pub fn admit(&self) -> Admission {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admission::Allowed,
            State::HalfOpen => Admission::Rejected {
                retry_after: Duration::from_secs(1),
            },
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen;
                    self.report(1.0, "half-open: letting one probe through");
                    Admission::Probe
                } else {
                    Admission::Rejected {
                        retry_after: until - now,
                    }
                }
            }
        }
    }

    /// How long the breaker stays open, if it is open (or a probe is out).
    pub fn open_for(&self) -> Option<Duration> {
        match *self.lock() {
            State::Closed { .. } => None,
            State::HalfOpen => Some(Duration::from_secs(1)),
            State::Open { until } => {
                let left = until.saturating_duration_since(Instant::now());
                // Past the cool-down the next call is a probe: let orders try.
                (!left.is_zero()).then_some(left)
            }
        }
    }

    /// Records the result of an admitted call: `healthy` is false for failures that say the
    /// service is in trouble (no answer, 5xx, 429), true for any other answer.
    pub fn record(&self, healthy: bool) {
        let mut state = self.lock();
        match (*state, healthy) {
            (State::HalfOpen, true) => {
                *state = State::Closed { failures: 0 };
                self.report(0.0, "closed: the probe succeeded");
            }
            (State::HalfOpen, false) => {
                *state = State::Open {
                    until: Instant::now() + self.settings.cooldown,
                };
                self.report(2.0, "open again: the probe failed");
            }
            (State::Closed { .. }, true) => *state = State::Closed { failures: 0 },
            (State::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= self.settings.failure_threshold {
                    *state = State::Open {
                        until: Instant::now() + self.settings.cooldown,
                    };
                    self.report(2.0, "open: too many consecutive failures");
                } else {
                    *state = State::Closed { failures };
                }
            }
            // Results of calls admitted before the breaker opened change nothing.
            (State::Open { .. }, _) => {}
        }
    }

    fn report(&self, gauge: f64, what: &'static str) {
        metrics::breaker_state(self.service.as_str(), gauge);
        if gauge == 0.0 {
            tracing::info!(service = self.service.as_str(), "circuit breaker {what}");
        } else {
            tracing::warn!(service = self.service.as_str(), "circuit breaker {what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(cooldown_ms: u64) -> CircuitBreaker {
        CircuitBreaker::new(
            Step::Payment,
            BreakerSettings {
                failure_threshold: 3,
                cooldown: Duration::from_millis(cooldown_ms),
            },
        )
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(10_000);
        b.record(false);
        b.record(false);
        b.record(true);
        b.record(false);
        b.record(false);
        assert_eq!(b.admit(), Admission::Allowed, "a success resets the count");
        b.record(false);
        assert!(matches!(b.admit(), Admission::Rejected { .. }));
        assert!(b.open_for().is_some());
    }

    #[test]
    fn half_open_probe_closes_on_success() {
        let b = breaker(20);
        for _ in 0..3 {
            b.record(false);
        }
        assert!(matches!(b.admit(), Admission::Rejected { .. }));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.open_for(), None, "past the cool-down orders may try");
        assert_eq!(b.admit(), Admission::Probe);
        assert!(
            matches!(b.admit(), Admission::Rejected { .. }),
            "one probe at a time"
        );
        b.record(true);
        assert_eq!(b.admit(), Admission::Allowed);
    }

    #[test]
    fn failed_probe_opens_again() {
        let b = breaker(20);
        for _ in 0..3 {
            b.record(false);
        }
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.admit(), Admission::Probe);
        b.record(false);
        assert!(matches!(b.admit(), Admission::Rejected { .. }));
    }
}
