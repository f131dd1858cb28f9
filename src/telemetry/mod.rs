//! Logs, traces and metrics. Logs are `tracing` events, as JSON lines or pretty; spans
//! follow W3C trace context across services and go to an OTLP collector when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set; metrics are Prometheus text at `/metrics`.

mod handles;
pub mod metrics;
pub mod propagation;

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Default log levels when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,hyper=warn,opentelemetry=warn";

/// Flushes spans still buffered for export when dropped at exit.
#[must_use = "dropping the guard flushes and stops trace export"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("flushing traces at exit failed: {error}");
        }
    }
}

/// Installs the global subscriber and the trace-context propagator. `format` is `json` or
/// `pretty`; `None` picks pretty on a terminal and JSON otherwise (containers).
///
/// An incoming `traceparent` is passed on to downstream calls: in the spans, which are
/// exported, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and otherwise with the request's
/// task (see [`propagation`]).
pub fn init(format: Option<&str>, default_filter: &str) -> TelemetryGuard {
    install(format, default_filter, false)
}

/// Like [`init`] with JSON logs written through the test harness (captured per test).
pub fn init_for_tests(default_filter: &str) -> TelemetryGuard {
    install(Some("json"), default_filter, true)
}

fn install(format: Option<&str>, default_filter: &str, for_tests: bool) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let (provider, exporting) = tracer_provider();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let terminal = std::io::stdout().is_terminal();
    let json = match format {
        Some(f) => f == "json",
        None => !terminal,
    };
    // The trace layer is there only when spans are exported. Spans reach it whatever the
    // log level, so that `RUST_LOG=warn` does not cut the exported trace; code locations
    // and thread names go with them. Nothing reads the OpenTelemetry context from the
    // thread (the `traceparent` sent downstream is taken from the span itself), and the
    // busy/idle times are not worth a clock read and a span lookup at every poll of every
    // saga: both off. Without an exporter the layer would keep a context in every span
    // only to name the trace sent downstream, at ~6 % of the service's CPU per order
    // under load; the trace then travels with the request's task (see `propagation`).
    let otel = exporting.then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("order-service"))
            .with_context_activation(false)
            .with_tracked_inactivity(false)
            .with_filter(Targets::new().with_target("order_service", Level::INFO))
    });
    let logs = if for_tests {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_test_writer()
            .with_filter(filter)
            .boxed()
    } else if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(terminal)
            .with_filter(filter)
            .boxed()
    };
    // A second init (tests start many services in one process) keeps the first subscriber,
    // and with it the first's way of carrying the trace.
    let installed = tracing_subscriber::registry()
        .with(otel)
        .with(logs)
        .try_init()
        .is_ok();
    if installed {
        propagation::set_spans_carry_context(exporting);
    }
    TelemetryGuard { provider }
}

/// The tracer provider, and whether it exports (`OTEL_EXPORTER_OTLP_ENDPOINT` is set and
/// the exporter could be built).
fn tracer_provider() -> (SdkTracerProvider, bool) {
    let builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(
                std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "order-service".into()),
            )
            .build(),
    );
    let endpoint_set = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").is_ok_and(|v| !v.is_empty());
    if !endpoint_set {
        return (builder.build(), false);
    }
    match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => (builder.with_batch_exporter(exporter).build(), true),
        Err(error) => {
            eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter failed: {error}");
            (builder.build(), false)
        }
    }
}
