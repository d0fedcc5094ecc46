//! Request traces (OpenTelemetry, optional): a span per HTTP request and a child span per
//! stage (auth, policy, scan, vault, upstream, output), with the W3C `traceparent` of the
//! caller taken as parent and passed on to the upstream. Spans carry routes, stage names,
//! status codes and error codes: never a header value other than `traceparent`, a body, a
//! value or a token.
//!
//! Off unless `phigate serve` installed a tracer provider and called [`enable`]: until then a
//! stage costs one atomic load more than its histogram.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{Span as _, Tracer as _};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

static ON: AtomicBool = AtomicBool::new(false);

/// Turns trace spans on. Call once the global tracer provider and text-map propagator are
/// installed (`phigate serve` does, when an OTLP endpoint is configured).
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

/// Whether trace spans are on.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Counts one export of `spans` request spans to the collector (`phigate_trace_exports_total`
/// by result) and, when it failed, the spans lost (`phigate_trace_spans_lost_total`).
pub fn record_export(ok: bool, spans: usize) {
    metrics::counter!("phigate_trace_exports_total", "result" => if ok { "ok" } else { "failed" })
        .increment(1);
    if !ok {
        metrics::counter!("phigate_trace_spans_lost_total").increment(spans as u64);
    }
}

/// The stages of a request, in the order of their histograms in [`Handles`].
const STAGES: [&str; 8] =
    ["auth", "policy", "vault_read", "scan", "vault", "ledger", "upstream", "output"];

/// Metric handles that every request records into, looked up once rather than in the
/// recorder's registry on every use (a key hashed and compared each time, labels allocated).
pub(crate) struct Handles {
    stages: Vec<metrics::Histogram>,
    findings: Vec<metrics::Counter>,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

/// Looks the handles up. Call once the process's recorder is installed: a handle taken before
/// would record nowhere. Until then (and in a process that never installs one) every use
/// looks its metric up as it goes.
pub(crate) fn take_handles() {
    HANDLES.get_or_init(|| Handles {
        stages: STAGES
            .iter()
            .map(|s| metrics::histogram!("phigate_stage_seconds", "stage" => *s))
            .collect(),
        findings: phi::Category::ALL
            .iter()
            .map(|c| metrics::counter!("phigate_phi_findings_total", "category" => c.as_str()))
            .collect(),
    });
}

/// Records a stage that began at `started` and ends now: its `phigate_stage_seconds`
/// histogram, and, with traces on, a span under the current request's span.
pub(crate) fn stage(name: &'static str, started: Instant) {
    let took = started.elapsed();
    let cached =
        HANDLES.get().and_then(|h| STAGES.iter().position(|s| *s == name).map(|i| &h.stages[i]));
    match cached {
        Some(h) => h.record(took.as_secs_f64()),
        None => {
            metrics::histogram!("phigate_stage_seconds", "stage" => name).record(took.as_secs_f64())
        }
    }
    if enabled() {
        stage_span(name, took);
    }
}

/// Counts `n` findings of category `c` (`phigate_phi_findings_total`).
pub(crate) fn findings(c: phi::Category, n: u64) {
    match HANDLES.get().and_then(|h| h.findings.get(c.index())) {
        Some(h) => h.increment(n),
        None => {
            metrics::counter!("phigate_phi_findings_total", "category" => c.as_str()).increment(n)
        }
    }
}

fn stage_span(name: &'static str, took: Duration) {
    let end = SystemTime::now();
    let start = end.checked_sub(took).unwrap_or(end);
    let parent = tracing::Span::current().context();
    let tracer = opentelemetry::global::tracer("phigate");
    let mut span =
        tracer.span_builder(name).with_start_time(start).start_with_context(&tracer, &parent);
    span.end_with_timestamp(end);
}

/// Makes `span` (a request's) the child of the caller's `traceparent`, if it sent one.
pub(crate) fn adopt_parent(span: &tracing::Span, headers: &HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    let _ = span.set_parent(cx);
}

/// Adds the current span's `traceparent` to a request for the upstream.
pub(crate) fn inject(headers: &mut HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeadersMut(headers))
    });
}

struct Headers<'a>(&'a HeaderMap);

/// `tracestate` is free text from the client: never taken in, so never passed to an upstream
/// or a collector unscanned. Only `traceparent` (hex ids and flags) is.
const IGNORED: &str = "tracestate";

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key.eq_ignore_ascii_case(IGNORED) {
            return None;
        }
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).filter(|k| *k != IGNORED).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) =
            (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value))
        {
            self.0.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_tracestate_is_never_taken_in() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap(),
        );
        h.insert("tracestate", "vendor=Alan Smith 4471902".parse().unwrap());
        let x = Headers(&h);
        assert!(x.get("traceparent").is_some());
        assert_eq!(x.get("tracestate"), None);
        assert_eq!(x.get("TraceState"), None);
        assert!(!x.keys().contains(&"tracestate"), "{:?}", x.keys());
    }
}
