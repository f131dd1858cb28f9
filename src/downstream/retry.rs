//! Retries with exponential backoff and full jitter, honouring `Retry-After`.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::CallError;

/// How often and how patiently to repeat a call.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Total tries, the first included; 1 means no retry (`DEBUG_MODE=true`).
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }
    }

    /// The pause before try number `retry + 1` (`retry` counts from 1): a random delay
    /// between zero and `base * 2^(retry-1)` capped at `max` ("full jitter"), but no
    /// shorter than what the service asked for with `Retry-After` (itself capped at `max`).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max_delay);
        let jittered = if ceiling.is_zero() {
            Duration::ZERO
        } else {
            rand::rng().random_range(Duration::ZERO..=ceiling)
        };
        match retry_after {
            Some(asked) => jittered.max(asked.min(self.max_delay)),
            None => jittered,
        }
    }
}

/// One finished try of a retried call.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub number: u32,
    pub duration: Duration,
    pub error: Option<CallError>,
}

/// The result of a retried call with every try it took.
#[derive(Debug)]
pub struct Retried<T> {
    pub result: Result<T, CallError>,
    pub attempts: Vec<Attempt>,
}

impl<T> Retried<T> {
    /// Whether any try may have taken effect without us learning its result.
    pub fn any_outcome_unknown(&self) -> bool {
        self.attempts
            .iter()
            .any(|a| a.error.as_ref().is_some_and(CallError::outcome_unknown))
    }
}

/// Runs `call` until it succeeds, fails for good, `may_retry` refuses, or the tries run out.
/// `call` gets the try number (from 1), so a step can first ask what an earlier try did.
pub async fn retry<T, F, Fut>(
    policy: RetryPolicy,
    may_retry: impl Fn(&CallError) -> bool,
    mut call: F,
) -> Retried<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut attempts = Vec::new();
    let mut number = 1;
    loop {
        let started = std::time::Instant::now();
        let result = call(number).await;
        let duration = started.elapsed();
        match result {
            Ok(value) => {
                attempts.push(Attempt {
                    number,
                    duration,
                    error: None,
                });
                return Retried {
                    result: Ok(value),
                    attempts,
                };
            }
            Err(error) => {
                let again = number < policy.attempts && error.is_transient() && may_retry(&error);
                let pause = policy.delay(number, error.retry_after());
                attempts.push(Attempt {
                    number,
                    duration,
                    error: Some(error.clone()),
                });
                if !again {
                    // A breaker that opened during the retries is not why the call failed:
                    // report the failure that opened it.
                    let decisive = match (&error, attempts.len()) {
                        (CallError::CircuitOpen { .. }, n) if n > 1 => {
                            attempts[n - 2].error.clone().unwrap_or(error)
                        }
                        _ => error,
                    };
                    return Retried {
                        result: Err(decisive),
                        attempts,
                    };
                }
                tracing::debug!(attempt = number, ?pause, %error, "retrying downstream call");
                tokio::time::sleep(pause).await;
                number += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::Step;

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    fn unavailable() -> CallError {
        CallError::Status {
            service: Step::Payment,
            status: 503,
            detail: "busy".into(),
            retry_after: None,
        }
    }

    #[test]
    fn delays_stay_under_the_exponential_ceiling() {
        let p = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..200 {
            assert!(p.delay(1, None) <= Duration::from_millis(100));
            assert!(p.delay(3, None) <= Duration::from_millis(400));
            assert!(p.delay(10, None) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn retry_after_sets_a_floor_capped_at_the_max() {
        let p = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_secs(2),
        };
        assert!(p.delay(1, Some(Duration::from_secs(1))) >= Duration::from_secs(1));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(2)
        );
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let out = retry(
            policy(3),
            |_| true,
            |n| async move { if n < 3 { Err(unavailable()) } else { Ok(n) } },
        )
        .await;
        assert_eq!(out.result.unwrap(), 3);
        assert_eq!(out.attempts.len(), 3);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let out: Retried<()> = retry(policy(2), |_| true, |_| async { Err(unavailable()) }).await;
        assert!(out.result.is_err());
        assert_eq!(out.attempts.len(), 2);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let out: Retried<()> = retry(
            policy(3),
            |_| true,
            |_| async {
                Err(CallError::Status {
                    service: Step::Inventory,
                    status: 409,
                    detail: "no".into(),
                    retry_after: None,
                })
            },
        )
        .await;
        assert_eq!(out.attempts.len(), 1);
    }

    #[tokio::test]
    async fn a_breaker_opening_mid_retry_keeps_the_real_failure() {
        let out: Retried<()> = retry(
            policy(3),
            |_| true,
            |n| async move {
                if n == 1 {
                    Err(unavailable())
                } else {
                    Err(CallError::CircuitOpen {
                        service: Step::Payment,
                        retry_after: Duration::from_secs(5),
                    })
                }
            },
        )
        .await;
        assert_eq!(out.attempts.len(), 2);
        assert!(matches!(
            out.result,
            Err(CallError::Status { status: 503, .. })
        ));
    }

    #[tokio::test]
    async fn the_step_can_veto_a_retry() {
        let out: Retried<()> = retry(
            policy(3),
            |e| !e.outcome_unknown(),
            |_| async {
                Err(CallError::Timeout {
                    service: Step::Inventory,
                })
            },
        )
        .await;
        assert_eq!(out.attempts.len(), 1);
        assert!(out.any_outcome_unknown());
    }
}
