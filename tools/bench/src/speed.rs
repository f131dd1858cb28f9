//! How fast one core is right now: a fixed loop timed before every point.
//!
//! On a shared VM the speed of a core changes from minute to minute. The same loop took
//! 0.32–0.52 s of CPU within a minute on one idle machine; only part of that showed as
//! steal time in `/proc/stat` (0.38 against 0.47 s with none in either): other guests on
//! the same physical core slow it down without taking it away. The probe makes such a run
//! visible in its own report, so that two runs are compared only when their machines went
//! at the same speed.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Steps of one timing: a few milliseconds on a current core.
const STEPS: u64 = 2_000_000;
/// Timings per probe; the median is kept, so that one preemption does not decide it.
const TIMINGS: usize = 5;

/// Millions of loop steps per second on the calling thread, now (median of a few
/// timings, ~20–50 ms in all). Higher is faster; only comparable with itself.
pub fn probe() -> f64 {
    median(
        (0..TIMINGS)
            .map(|_| steps_per_second(STEPS) / 1e6)
            .collect(),
    )
}

/// The middle one of `rates` (the upper of the two middle ones of an even count).
pub(crate) fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Times `steps` of a dependent chain of multiplications and shifts (xorshift), which
/// neither the compiler nor the CPU can shorten.
fn steps_per_second(steps: u64) -> f64 {
    let started = Instant::now();
    let mut x: u64 = black_box(0x9E37_79B9_7F4A_7C15);
    for _ in 0..steps {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    }
    black_box(x);
    let elapsed = started.elapsed().max(Duration::from_nanos(1));
    steps as f64 / elapsed.as_secs_f64()
}

/// `(lowest, highest)` of the probes that ran, or `None` if none did.
pub fn range(probes: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    probes.into_iter().fold(None, |range, speed| match range {
        None => Some((speed, speed)),
        Some((low, high)) => Some((low.min(speed), high.max(speed))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_slow_or_fast_timing_does_not_decide_the_probe() {
        assert_eq!(median(vec![310.0, 12.0, 305.0, 900.0, 300.0]), 305.0);
    }

    #[test]
    fn the_range_spans_every_probe() {
        assert_eq!(range([]), None);
        assert_eq!(range([3.0, 1.5, 2.0]), Some((1.5, 3.0)));
    }
}
