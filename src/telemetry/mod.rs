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
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
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
/// Spans always carry OpenTelemetry context, so an incoming `traceparent` is passed on to
/// downstream calls; they are exported only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
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
    let tracer = provider.tracer("order-service");
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let terminal = std::io::stdout().is_terminal();
    let json = match format {
        Some(f) => f == "json",
        None => !terminal,
    };
    // Spans reach the trace layer whatever the log level, so that `RUST_LOG=warn` does not
    // cut the trace (and the `traceparent` sent downstream).
    // Nothing reads the OpenTelemetry context from the thread (the `traceparent` sent
    // downstream is taken from the span itself), and the busy/idle times are not worth a
    // clock read and a span lookup at every poll of every saga: both off.
    // Without an exporter the spans serve only to name the trace sent downstream: events
    // (kept as span events), code locations and thread names would be built per order and
    // dropped unread, so the layer then sees spans only and records nothing extra.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_context_activation(false)
        .with_tracked_inactivity(false)
        .with_location(exporting)
        .with_threads(exporting)
        .with_filter(
            Targets::new()
                .with_target("order_service", Level::INFO)
                .and(filter_fn(move |metadata| exporting || metadata.is_span())),
        );
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
    // A second init (tests start many services in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(otel)
        .with(logs)
        .try_init();
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
