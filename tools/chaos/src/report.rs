//! What the run prints: violations with their detail, needs_attention orders, anomalies,
//! and the one summary line; and the full report file in the run directory.

use std::fmt::{self, Write as _};

use crate::check::{Findings, Violation};

/// Violations printed to the terminal; the report file has all of them.
const PRINTED_VIOLATIONS: usize = 100;

/// The one line a run ends with.
#[derive(Debug)]
pub struct Summary {
    pub mode: &'static str,
    pub replicas: usize,
    pub seed: u64,
    pub orders: u64,
    pub acknowledged: usize,
    pub kills: u64,
    pub faults_injected: u64,
    pub needs_attention: usize,
    pub violations: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chaos mode={} replicas={} seed={} orders={} acknowledged={} kills={} faults_injected={} needs_attention={} violations={}",
            self.mode,
            self.replicas,
            self.seed,
            self.orders,
            self.acknowledged,
            self.kills,
            self.faults_injected,
            self.needs_attention,
            self.violations
        )
    }
}

fn violation_line(v: &Violation) -> String {
    match &v.order_id {
        Some(id) => format!("VIOLATION {} order={id}: {}", v.invariant, v.detail),
        None => format!("VIOLATION {}: {}", v.invariant, v.detail),
    }
}

/// Prints the findings to stdout (violations capped; the rest is in the report file).
pub fn print(findings: &Findings, report: Option<&std::path::Path>) {
    for v in findings.violations.iter().take(PRINTED_VIOLATIONS) {
        println!("{}", violation_line(v));
    }
    if findings.violations.len() > PRINTED_VIOLATIONS {
        println!(
            "... and {} more violations{}",
            findings.violations.len() - PRINTED_VIOLATIONS,
            report.map_or(String::new(), |p| format!(" (all in {})", p.display()))
        );
    }
    for (id, detail) in &findings.needs_attention {
        println!("NEEDS_ATTENTION order={id}: {detail}");
    }
    let unexpected = &findings.unexpected_answers;
    if !unexpected.is_empty() {
        println!(
            "UNEXPECTED {} answers outside the contract (first: key {}: {})",
            unexpected.len(),
            unexpected[0].0,
            unexpected[0].1
        );
    }
}

/// The full report: every violation, needs_attention order and unexpected answer,
/// then the timelines of the orders involved.
pub fn full_text(
    summary: &Summary,
    findings: &Findings,
    timelines: &[(String, serde_json::Value)],
) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{summary}\n");
    for v in &findings.violations {
        let _ = writeln!(text, "{}", violation_line(v));
    }
    for (id, detail) in &findings.needs_attention {
        let _ = writeln!(text, "NEEDS_ATTENTION order={id}: {detail}");
    }
    for (key, detail) in &findings.unexpected_answers {
        let _ = writeln!(text, "UNEXPECTED key={key}: {detail}");
    }
    for (id, events) in timelines {
        let _ = writeln!(
            text,
            "\n--- events of order {id}\n{}",
            serde_json::to_string_pretty(events).unwrap_or_default()
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_one_line_of_name_value_pairs() {
        let summary = Summary {
            mode: "postgres",
            replicas: 3,
            seed: 42,
            orders: 1234,
            acknowledged: 1200,
            kills: 9,
            faults_injected: 345,
            needs_attention: 2,
            violations: 0,
        };
        assert_eq!(
            summary.to_string(),
            "chaos mode=postgres replicas=3 seed=42 orders=1234 acknowledged=1200 kills=9 faults_injected=345 needs_attention=2 violations=0"
        );
    }
}
