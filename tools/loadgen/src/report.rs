//! The result of a run: throughput, latency percentiles and error counts, as text for
//! people and as JSON for tools.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Mode, Scenario};
use crate::stats::Stats;

/// Latency percentiles of the successful requests, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// Requests that got no HTTP answer, by reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionErrors {
    pub connect: u64,
    pub timeout: u64,
    pub other: u64,
}

/// Counts over the whole run, warm-up and drain included (e.g. to divide the server's CPU
/// time by the orders it made).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    pub ok: u64,
    pub errors: u64,
    /// From the start of the warm-up to the last answer.
    pub seconds: f64,
}

/// What a run measured. Only requests that finished inside the measured window count
/// (as `wrk` does); those still running at its end are waited for and counted in `late`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub target: String,
    pub scenario: Scenario,
    pub mode: Mode,
    pub concurrency: usize,
    /// Requests per second asked for (open loop).
    pub rate: Option<f64>,
    pub warmup_seconds: f64,
    /// Length of the measured window.
    pub seconds: f64,
    /// Requests that finished in the window, with or without an answer.
    pub completed: u64,
    /// Of those, answers with the expected status (`201`, or `200` for GETs).
    pub ok: u64,
    /// `completed - ok`: other statuses and connection errors.
    pub errors: u64,
    /// Successful requests per second.
    pub throughput: f64,
    pub latency_us: Latency,
    /// Answers by status (successes included).
    pub statuses: BTreeMap<u16, u64>,
    pub connection_errors: ConnectionErrors,
    /// Answers with `Idempotent-Replayed: true`.
    pub replayed: u64,
    /// Requests that finished after the window closed (not counted above).
    pub late: u64,
    pub totals: Totals,
}

impl Report {
    pub(crate) fn new(
        config: &Config,
        measured: &Stats,
        window: Duration,
        late: u64,
        totals: Totals,
    ) -> Self {
        let histogram = &measured.histogram;
        let (p50, p90, p99, p999, max, mean) = if histogram.is_empty() {
            (0, 0, 0, 0, 0, 0.0)
        } else {
            (
                histogram.value_at_quantile(0.50),
                histogram.value_at_quantile(0.90),
                histogram.value_at_quantile(0.99),
                histogram.value_at_quantile(0.999),
                histogram.max(),
                histogram.mean(),
            )
        };
        let seconds = window.as_secs_f64();
        Report {
            target: config.target.clone(),
            scenario: config.scenario,
            mode: config.mode,
            concurrency: config.concurrency,
            rate: config.rate.filter(|_| config.mode == Mode::Open),
            warmup_seconds: config.warmup.as_secs_f64(),
            seconds,
            completed: measured.completed(),
            ok: measured.ok(),
            errors: measured.errors(),
            throughput: measured.ok() as f64 / seconds,
            latency_us: Latency {
                p50,
                p90,
                p99,
                p999,
                max,
                mean,
            },
            statuses: measured.statuses(),
            connection_errors: ConnectionErrors {
                connect: measured.connect_errors,
                timeout: measured.timeouts,
                other: measured.other_errors,
            },
            replayed: measured.replayed,
            late,
            totals,
        }
    }

    /// The failed requests as `409: 3, timeout: 1`, or `-` when there were none.
    pub fn error_summary(&self) -> String {
        let expected = self.scenario.expected_status();
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .filter(|(status, _)| **status != expected)
            .map(|(status, count)| format!("{status}: {count}"))
            .collect();
        let errors = &self.connection_errors;
        for (name, count) in [
            ("connect", errors.connect),
            ("timeout", errors.timeout),
            ("other", errors.other),
        ] {
            if count > 0 {
                parts.push(format!("{name}: {count}"));
            }
        }
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// Microseconds as `850 µs`, `12.3 ms` or `1.20 s`.
pub fn format_micros(micros: u64) -> String {
    if micros < 1_000 {
        format!("{micros} µs")
    } else if micros < 1_000_000 {
        format!("{:.1} ms", micros as f64 / 1e3)
    } else {
        format!("{:.2} s", micros as f64 / 1e6)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pacing = match (self.mode, self.rate) {
            (Mode::Open, Some(rate)) => {
                format!(
                    "open loop at {rate} req/s, up to {} in flight",
                    self.concurrency
                )
            }
            _ => format!("closed loop, {} workers", self.concurrency),
        };
        writeln!(
            f,
            "{} against {}: {pacing}, {:.1} s measured after {:.1} s of warm-up",
            self.scenario.label(),
            self.target,
            self.seconds,
            self.warmup_seconds,
        )?;
        write!(f, "  requests    {} ok, {} errors", self.ok, self.errors)?;
        if self.errors > 0 {
            write!(f, " ({})", self.error_summary())?;
        }
        writeln!(f, ", {} late", self.late)?;
        if self.replayed > 0 {
            writeln!(f, "  replayed    {}", self.replayed)?;
        }
        writeln!(f, "  throughput  {:.1} req/s", self.throughput)?;
        if self.ok == 0 {
            return writeln!(f, "  latency     - (no successful request)");
        }
        let l = &self.latency_us;
        writeln!(
            f,
            "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            format_micros(l.p50),
            format_micros(l.p90),
            format_micros(l.p99),
            format_micros(l.p999),
            format_micros(l.max),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_read_in_their_unit() {
        assert_eq!(format_micros(850), "850 µs");
        assert_eq!(format_micros(12_345), "12.3 ms");
        assert_eq!(format_micros(1_200_000), "1.20 s");
    }
}
