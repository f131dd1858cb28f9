//! W3C trace context across services: read `traceparent` from incoming requests, write it
//! on outgoing ones.
//!
//! Two ways, by whether spans are exported. When they are (`OTEL_EXPORTER_OTLP_ENDPOINT`),
//! the OpenTelemetry layer keeps a context in every span, and a downstream call names the
//! span it was made in: the exported trace links the two. When they are not, nothing
//! would read those spans, and keeping them cost ~6 % of the service's CPU per order
//! under load (BENCHMARKS.md, 2026-12-06 16:54): then the caller's trace travels with the
//! request's task instead ([`IncomingTrace`], [`carry_into`]), and each saga run sends it
//! on under a span id of its own, as its span would have.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether spans carry OpenTelemetry context (set once, when telemetry is installed).
static SPANS_CARRY_CONTEXT: AtomicBool = AtomicBool::new(false);

tokio::task_local! {
    /// The caller's trace, for the tasks of one request (and the saga it starts), when
    /// spans do not carry it. `None`: the request named no valid trace.
    static INCOMING: Option<SpanContext>;
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Says how the trace context travels: in spans (`true`: the OpenTelemetry layer is
/// installed) or with the request's task.
pub(super) fn set_spans_carry_context(carry: bool) {
    SPANS_CARRY_CONTEXT.store(carry, Ordering::Relaxed);
}

fn spans_carry_context() -> bool {
    SPANS_CARRY_CONTEXT.load(Ordering::Relaxed)
}

/// The context `headers` name (`traceparent`, `tracestate`); empty if none is valid.
fn extracted(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// The trace context named by `headers`, if valid.
fn remote_parent(headers: &http::HeaderMap) -> Option<SpanContext> {
    let parent = extracted(headers).span().span_context().clone();
    parent.is_valid().then_some(parent)
}

/// The caller's trace of the request being handled now, if any.
fn incoming_now() -> Option<SpanContext> {
    INCOMING.try_with(Clone::clone).ok().flatten()
}

/// Makes `span` a child of the trace named by the request's `traceparent`, if any (when
/// spans carry context).
pub fn adopt_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if !spans_carry_context() {
        return;
    }
    if let Err(error) = span.set_parent(extracted(headers)) {
        tracing::debug!(%error, "cannot attach the remote trace parent");
    }
}

/// The trace a request's headers name, to handle it in ([`IncomingTrace::continue_in`]).
#[derive(Debug)]
pub enum IncomingTrace {
    /// Spans carry it: the request's span has it (see [`adopt_remote_parent`]).
    InSpans,
    /// The caller's trace (`None`: the request named no valid one).
    Named(Option<SpanContext>),
}

impl IncomingTrace {
    /// Read from a request's `headers` only when spans do not carry it.
    pub fn of(headers: &http::HeaderMap) -> Self {
        if spans_carry_context() {
            return Self::InSpans;
        }
        let named = headers.contains_key("traceparent");
        Self::Named(named.then(|| remote_parent(headers)).flatten())
    }

    /// Runs a request's `handling` with this trace, so that the sagas it starts continue
    /// it.
    pub async fn continue_in<F: Future>(self, handling: F) -> F::Output {
        match self {
            Self::InSpans => handling.await,
            Self::Named(parent) => INCOMING.scope(parent, handling).await,
        }
    }
}

/// `task` with the trace of the request being handled now, if any: for work spawned into
/// a task of its own, which does not inherit it.
pub fn carry_into<F: Future>(task: F) -> impl Future<Output = F::Output> {
    INCOMING.scope(incoming_now(), task)
}

/// Writes the trace context of calls made now into outgoing `headers`: the current
/// span's, or (when spans do not carry context) the caller's trace under a new span id,
/// or a new trace when no caller named one.
pub fn inject_current(headers: &mut http::HeaderMap) {
    let context = if spans_carry_context() {
        tracing::Span::current().context()
    } else {
        opentelemetry::Context::new().with_remote_span_context(child_of(incoming_now().as_ref()))
    };
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// A new span's context in the trace of `parent`, as the SDK's default sampler would make
/// it: sampled as its parent was, or sampled as a new trace's root.
fn child_of(parent: Option<&SpanContext>) -> SpanContext {
    let ids = RandomIdGenerator::default();
    match parent {
        Some(parent) => SpanContext::new(
            parent.trace_id(),
            ids.new_span_id(),
            parent.trace_flags() & TraceFlags::SAMPLED,
            false,
            parent.trace_state().clone(),
        ),
        None => SpanContext::new(
            ids.new_trace_id(),
            ids.new_span_id(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn with_propagator() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
    }

    fn incoming(traceparent: &str, tracestate: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", traceparent.parse().unwrap());
        if let Some(state) = tracestate {
            headers.insert("tracestate", state.parse().unwrap());
        }
        headers
    }

    /// `(trace id, parent id, flags)` of the `traceparent` in `headers`.
    fn sent(headers: &http::HeaderMap) -> (String, String, String) {
        let value = headers["traceparent"].to_str().unwrap();
        let parts: Vec<&str> = value.split('-').collect();
        assert_eq!(parts.len(), 4, "{value}");
        assert_eq!(parts[0], "00", "{value}");
        (parts[1].into(), parts[2].into(), parts[3].into())
    }

    async fn sent_while_handling(request: http::HeaderMap) -> http::HeaderMap {
        IncomingTrace::of(&request)
            .continue_in(async {
                // As a saga does: in a task of its own.
                tokio::spawn(carry_into(async {
                    let mut headers = http::HeaderMap::new();
                    inject_current(&mut headers);
                    headers
                }))
                .await
                .unwrap()
            })
            .await
    }

    #[tokio::test]
    async fn continues_the_callers_trace_under_a_span_id_of_its_own() {
        with_propagator();
        let request = incoming(&format!("00-{TRACE}-{PARENT}-01"), Some("vendor=opaque"));
        let headers = sent_while_handling(request).await;
        let (trace, parent, flags) = sent(&headers);
        assert_eq!(trace, TRACE);
        assert_ne!(parent, PARENT, "the call's parent is the service's span");
        assert_ne!(parent, "0000000000000000");
        assert_eq!(flags, "01");
        assert_eq!(headers["tracestate"], "vendor=opaque");
    }

    #[tokio::test]
    async fn keeps_a_callers_decision_not_to_sample() {
        with_propagator();
        let headers = sent_while_handling(incoming(&format!("00-{TRACE}-{PARENT}-00"), None)).await;
        let (trace, _, flags) = sent(&headers);
        assert_eq!(trace, TRACE);
        assert_eq!(flags, "00");
    }

    #[tokio::test]
    async fn starts_a_new_sampled_trace_without_a_valid_caller_trace() {
        with_propagator();
        let without = sent_while_handling(http::HeaderMap::new()).await;
        let invalid = sent_while_handling(incoming(
            &format!("00-00000000000000000000000000000000-{PARENT}-01"),
            None,
        ))
        .await;
        let (first, _, flags) = sent(&without);
        let (second, _, _) = sent(&invalid);
        assert_eq!(flags, "01");
        assert_ne!(first, "0".repeat(32));
        assert_ne!(second, "0".repeat(32));
        assert_ne!(first, second, "each request without a trace starts its own");
    }

    #[tokio::test]
    async fn work_outside_any_request_starts_its_own_trace() {
        with_propagator();
        let mut first = http::HeaderMap::new();
        let mut second = http::HeaderMap::new();
        inject_current(&mut first);
        inject_current(&mut second);
        assert_ne!(sent(&first).0, sent(&second).0);
    }
}
