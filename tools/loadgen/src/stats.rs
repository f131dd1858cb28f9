//! What one worker saw: an HDR histogram of successful latencies and counters, merged
//! across workers at the end (no shared state while the load runs).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histogram tells apart (longer ones are recorded as this).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// How one request ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// An HTTP answer; `replayed` when it carried `Idempotent-Replayed: true`.
    Status { status: u16, replayed: bool },
    /// No answer: the connection failed, or the answer did not come in time.
    Failed(ConnectionError),
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, Copy)]
pub enum ConnectionError {
    Connect,
    Timeout,
    Other,
}

/// Counters and the latency histogram of one phase of one worker.
#[derive(Debug)]
pub struct Stats {
    expected: u16,
    /// Latency of successful answers, microseconds.
    pub histogram: Histogram<u64>,
    statuses: Box<[u64; 600]>,
    pub connect_errors: u64,
    pub timeouts: u64,
    pub other_errors: u64,
    pub replayed: u64,
}

impl Stats {
    /// `expected` is the status that counts as a success.
    pub fn new(expected: u16) -> Self {
        Stats {
            expected,
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("valid histogram bounds"),
            statuses: Box::new([0; 600]),
            connect_errors: 0,
            timeouts: 0,
            other_errors: 0,
            replayed: 0,
        }
    }

    /// Counts the outcome; only a success's latency goes into the histogram, so fast
    /// refusals (`503`) cannot make the latencies look better.
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Status { status, replayed } => {
                let slot = usize::from(status).min(self.statuses.len() - 1);
                self.statuses[slot] += 1;
                if replayed {
                    self.replayed += 1;
                }
                if status == self.expected {
                    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                    self.histogram.saturating_record(micros.max(1));
                }
            }
            Outcome::Failed(ConnectionError::Connect) => self.connect_errors += 1,
            Outcome::Failed(ConnectionError::Timeout) => self.timeouts += 1,
            Outcome::Failed(ConnectionError::Other) => self.other_errors += 1,
        }
    }

    /// Adds another worker's numbers to these.
    pub fn merge(&mut self, other: &Stats) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms have the same bounds");
        for (mine, theirs) in self.statuses.iter_mut().zip(other.statuses.iter()) {
            *mine += theirs;
        }
        self.connect_errors += other.connect_errors;
        self.timeouts += other.timeouts;
        self.other_errors += other.other_errors;
        self.replayed += other.replayed;
    }

    /// Answers with the expected status.
    pub fn ok(&self) -> u64 {
        self.statuses[usize::from(self.expected)]
    }

    /// Every answer and every request without one.
    pub fn completed(&self) -> u64 {
        self.statuses.iter().sum::<u64>() + self.connection_errors()
    }

    /// Requests that got no HTTP answer.
    pub fn connection_errors(&self) -> u64 {
        self.connect_errors + self.timeouts + self.other_errors
    }

    /// Requests that did not succeed, whatever the reason.
    pub fn errors(&self) -> u64 {
        self.completed() - self.ok()
    }

    /// Answers by status, only the statuses seen.
    pub fn statuses(&self) -> BTreeMap<u16, u64> {
        self.statuses
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(status, count)| (status as u16, *count))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_successes_have_latencies_and_errors_are_counted_by_kind() {
        let mut a = Stats::new(201);
        a.record(
            Outcome::Status {
                status: 201,
                replayed: false,
            },
            Duration::from_millis(5),
        );
        a.record(
            Outcome::Status {
                status: 409,
                replayed: false,
            },
            Duration::from_millis(1),
        );
        let mut b = Stats::new(201);
        b.record(
            Outcome::Status {
                status: 201,
                replayed: true,
            },
            Duration::from_millis(7),
        );
        b.record(
            Outcome::Failed(ConnectionError::Timeout),
            Duration::from_secs(30),
        );
        a.merge(&b);
        assert_eq!(a.ok(), 2);
        assert_eq!(a.completed(), 4);
        assert_eq!(a.errors(), 2);
        assert_eq!(a.replayed, 1);
        assert_eq!(a.timeouts, 1);
        assert_eq!(a.histogram.len(), 2);
        assert!(a.histogram.min() >= 4_990);
        assert_eq!(a.statuses(), BTreeMap::from([(201, 2), (409, 1)]));
    }
}
