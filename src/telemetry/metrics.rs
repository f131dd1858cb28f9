//! The service's Prometheus metrics: names, labels and the functions that record them.
//! Labels are route templates and service names, never raw paths or ids.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::handles::Handles;

/// Latency buckets, in seconds: from a cached replay to a saga with timeouts.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of `db_write_duration_seconds`, in seconds: finer at the low end, where a
/// SQLite commit (tens to hundreds of microseconds) and a PostgreSQL one with its flush
/// (a fraction of a millisecond) fall, than [`BUCKETS`].
const WRITE_DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// Buckets of `db_write_batch_size`: writes per commit, up to the writers' batch limit.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .expect("buckets are not empty")
                .set_buckets_for_metric(Matcher::Full("db_write_batch_size".into()), BATCH_BUCKETS)
                .expect("buckets are not empty")
                // A full name wins over the suffix above.
                .set_buckets_for_metric(
                    Matcher::Full("db_write_duration_seconds".into()),
                    WRITE_DURATION_BUCKETS,
                )
                .expect("buckets are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route template and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by method and route template."
    );
    describe_counter!(
        "orders_finished_total",
        "Orders whose saga settled (or stopped on a failed compensation), by status."
    );
    describe_counter!(
        "saga_step_attempts_total",
        "Downstream calls of saga steps by service, step and outcome."
    );
    describe_histogram!(
        "saga_step_duration_seconds",
        metrics::Unit::Seconds,
        "Latency of downstream calls by service and step."
    );
    describe_counter!(
        "downstream_retries_total",
        "Repeated downstream calls by service and step."
    );
    describe_gauge!(
        "circuit_breaker_state",
        "Circuit breaker per downstream service: 0 closed, 1 half-open, 2 open."
    );
    describe_counter!(
        "idempotency_replays_total",
        "Requests answered with a stored response."
    );
    describe_counter!(
        "idempotency_conflicts_total",
        "Idempotency keys refused: in_progress (409) or body_mismatch (422)."
    );
    describe_counter!(
        "recovery_claims_total",
        "Unfinished sagas claimed by the recovery worker."
    );
    describe_gauge!("sagas_in_flight", "Sagas being driven by this process.");
    describe_gauge!(
        "orders_needs_attention",
        "Orders in status needs_attention."
    );
    describe_gauge!(
        "db_pool_connections",
        "Database connections by state (idle, in_use)."
    );
    describe_histogram!(
        "db_write_batch_size",
        "Writes committed together (group commit), by database and write."
    );
    describe_histogram!(
        "db_write_duration_seconds",
        metrics::Unit::Seconds,
        "How long a saga waited for one durable write, from the call to its commit, by database and write."
    );
    describe_counter!(
        "reservation_outcome_unknown_total",
        "Reserves whose outcome could not be learnt."
    );
}

/// Whether the recorder is installed, so that handles taken now are real.
fn installed() -> bool {
    HANDLE.get().is_some()
}

static HTTP: Handles<(http::Method, String, u16), (Counter, Histogram)> = Handles::new();
static STEP_ATTEMPTS: Handles<(&str, &str, &str), (Counter, Histogram)> = Handles::new();
static ORDERS_FINISHED: Handles<&str, Counter> = Handles::new();
static WRITE_BATCHES: Handles<(&str, &str), Histogram> = Handles::new();
static WRITE_DURATIONS: Handles<(&str, &str), Histogram> = Handles::new();
static SAGAS_IN_FLIGHT: Handles<(), Gauge> = Handles::new();

/// Runs the exporter's housekeeping (drains histogram buffers); call every few seconds.
pub fn upkeep() {
    if let Some(handle) = HANDLE.get() {
        handle.run_upkeep();
    }
}

pub fn http_request(method: http::Method, route: String, status: u16, elapsed: Duration) {
    HTTP.with(
        installed(),
        (method, route, status),
        |(method, route, status)| {
            let method = method.as_str().to_owned();
            (
                counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string()),
                histogram!("http_request_duration_seconds", "method" => method, "route" => route.clone()),
            )
        },
        |(requests, duration)| {
            requests.increment(1);
            duration.record(elapsed.as_secs_f64());
        },
    );
}

pub fn step_attempt(
    service: &'static str,
    step: &'static str,
    outcome: &'static str,
    elapsed: Duration,
) {
    STEP_ATTEMPTS.with(
        installed(),
        (service, step, outcome),
        |&(service, step, outcome)| {
            (
                counter!("saga_step_attempts_total", "service" => service, "step" => step, "outcome" => outcome),
                histogram!("saga_step_duration_seconds", "service" => service, "step" => step),
            )
        },
        |(attempts, duration)| {
            attempts.increment(1);
            duration.record(elapsed.as_secs_f64());
        },
    );
}

pub fn retry(service: &'static str, step: &'static str) {
    counter!("downstream_retries_total", "service" => service, "step" => step).increment(1);
}

pub fn order_finished(status: &'static str) {
    ORDERS_FINISHED.with(
        installed(),
        status,
        |&status| counter!("orders_finished_total", "status" => status),
        |finished| finished.increment(1),
    );
}

pub fn reservation_outcome_unknown() {
    counter!("reservation_outcome_unknown_total").increment(1);
}

pub fn idempotency_replay() {
    counter!("idempotency_replays_total").increment(1);
}

pub fn idempotency_conflict(reason: &'static str) {
    counter!("idempotency_conflicts_total", "reason" => reason).increment(1);
}

pub fn breaker_state(service: &'static str, state: f64) {
    gauge!("circuit_breaker_state", "service" => service).set(state);
}

pub fn recovery_claim() {
    counter!("recovery_claims_total").increment(1);
}

pub fn needs_attention(count: u64) {
    gauge!("orders_needs_attention").set(count as f64);
}

pub fn db_pool(idle: usize, in_use: usize) {
    gauge!("db_pool_connections", "state" => "idle").set(idle as f64);
    gauge!("db_pool_connections", "state" => "in_use").set(in_use as f64);
}

/// One commit of `writes` writes of kind `write` (`any` where kinds are mixed).
pub fn write_batch(database: &'static str, write: &'static str, writes: usize) {
    WRITE_BATCHES.with(
        installed(),
        (database, write),
        |&(database, write)| {
            histogram!("db_write_batch_size", "database" => database, "write" => write)
        },
        |batches| batches.record(writes as f64),
    );
}

/// How long one durable write of kind `write` took its caller, queueing for the writer
/// or the batch in flight included: what a saga's latency is made of besides its
/// downstream calls.
pub fn write_duration(database: &'static str, write: &'static str, elapsed: Duration) {
    WRITE_DURATIONS.with(
        installed(),
        (database, write),
        |&(database, write)| {
            histogram!("db_write_duration_seconds", "database" => database, "write" => write)
        },
        |durations| durations.record(elapsed.as_secs_f64()),
    );
}

fn sagas_in_flight(change: f64) {
    SAGAS_IN_FLIGHT.with(
        installed(),
        (),
        |()| gauge!("sagas_in_flight"),
        |in_flight| in_flight.increment(change),
    );
}

/// Counts a saga in `sagas_in_flight` for as long as it lives.
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        sagas_in_flight(1.0);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        sagas_in_flight(-1.0);
    }
}
