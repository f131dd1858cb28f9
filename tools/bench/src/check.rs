//! What makes a run fail: no successful request, too many failed ones, or replays that
//! were not replays. Never speed.

use loadgen::Scenario;

use crate::suite::DatabaseRun;

/// The problems of `run`, one sentence each; empty when it is sound.
pub fn problems(run: &DatabaseRun, max_error_share: f64) -> Vec<String> {
    let mut problems = Vec::new();
    for point in &run.points {
        let report = &point.report;
        let name = format!(
            "{}: {} at concurrency {}",
            run.kind.name(),
            report.scenario.label(),
            report.concurrency
        );
        let totals = &report.totals;
        // The whole run, warm-up and stragglers included: on a slow build no request of a
        // short point may finish inside the window, and speed is not what is checked.
        if totals.ok == 0 {
            problems.push(format!("{name}: no request succeeded"));
        }
        let attempts = totals.ok + totals.errors;
        if attempts > 0 && totals.errors as f64 > max_error_share * attempts as f64 {
            problems.push(format!(
                "{name}: {} of {attempts} requests failed (in the measured window: {})",
                totals.errors,
                report.error_summary()
            ));
        }
        if report.scenario == Scenario::Replay && report.replayed < report.ok {
            problems.push(format!(
                "{name}: only {} of {} answers carried Idempotent-Replayed: true",
                report.replayed, report.ok
            ));
        }
        if report.scenario == Scenario::Create && report.replayed > 0 {
            problems.push(format!(
                "{name}: {} new keys were answered as replays",
                report.replayed
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run with one point of `scenario` whose whole run had `ok` successes and `errors`
    /// failures, none inside the measured window, and `replayed` replays.
    fn run(scenario: &str, ok: u64, errors: u64, replayed: u64) -> DatabaseRun {
        serde_json::from_value(serde_json::json!({
            "kind": "sqlite",
            "description": "test",
            "memory": {"after_start_kib": 1, "sampled_peak_kib": 1, "peak_kib": 1},
            "points": [{
                "cpu": {"service": 1.0, "sandbox": 0.0, "loadgen": 0.0, "other": 0.0, "wall": 1.0},
                "report": {
                    "target": "http://127.0.0.1:1", "scenario": scenario, "mode": "closed",
                    "concurrency": 256, "rate": null, "warmup_seconds": 0.5, "seconds": 1.0,
                    "completed": 0, "ok": replayed, "errors": 0, "throughput": 0.0,
                    "latency_us": {"p50": 0, "p90": 0, "p99": 0, "p999": 0, "max": 0, "mean": 0.0},
                    "statuses": {}, "connection_errors": {"connect": 0, "timeout": 0, "other": 0},
                    "replayed": replayed, "late": 256,
                    "totals": {"ok": ok, "errors": errors, "seconds": 5.0}
                }
            }]
        }))
        .unwrap()
    }

    #[test]
    fn a_slow_point_passes_when_its_requests_succeed_after_the_window() {
        assert!(problems(&run("create", 256, 0, 0), 0.02).is_empty());
    }

    #[test]
    fn failures_fail_and_speed_does_not() {
        assert_eq!(problems(&run("create", 0, 0, 0), 0.02).len(), 1);
        assert_eq!(problems(&run("create", 90, 10, 0), 0.02).len(), 1);
        assert!(problems(&run("create", 99, 1, 0), 0.02).is_empty());
    }

    #[test]
    fn replays_must_be_marked_as_replays() {
        assert!(problems(&run("replay", 10, 0, 10), 0.02).is_empty());
        let mut wrong = run("replay", 10, 0, 10);
        wrong.points[0].report.ok = 10;
        wrong.points[0].report.replayed = 3;
        assert_eq!(problems(&wrong, 0.02).len(), 1);
    }
}
