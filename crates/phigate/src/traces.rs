//! Request traces for `phigate serve` (optional): the OTLP/HTTP exporter the standard
//! `OTEL_*` variables ask for, wrapped so that an export that fails is reported in the log and
//! in `/metrics` without anything the SDK's own error text holds (the collector's URL, which may
//! carry credentials, and its answer's body).

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

/// After a failure has been logged, the next failures are counted and logged together at most
/// this often (a collector that is down must not fill the log).
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The tracer provider the standard variables ask for (`OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; none unless one is set, or with
/// `OTEL_SDK_DISABLED=true`), with the endpoint it sends to. `OTEL_SERVICE_NAME` (default
/// `phigate`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER` and `OTEL_BSP_*` apply.
pub fn provider() -> anyhow::Result<Option<(SdkTracerProvider, String)>> {
    let var =
        |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let endpoint =
        match (var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), var("OTEL_EXPORTER_OTLP_ENDPOINT")) {
            (Some(t), _) => t,
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("cannot set up the OTLP trace exporter (check OTEL_EXPORTER_OTLP_*)")?;
    let service = var("OTEL_SERVICE_NAME").unwrap_or_else(|| "phigate".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Reporting::new(exporter))
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service).build())
        .build();
    Ok(Some((provider, endpoint)))
}

/// `endpoint` without a `user:password@` part, for printing (credentials never go to the log).
pub fn without_userinfo(endpoint: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => endpoint.to_string(),
            }
        }
        None => endpoint.to_string(),
    }
}

/// Why an export failed, in words that hold nothing of the SDK's message but a status code.
pub fn reason(e: &OTelSdkError) -> String {
    match e {
        OTelSdkError::AlreadyShutdown => "the exporter was already shut down".into(),
        OTelSdkError::Timeout(d) => format!("no answer within {} ms", d.as_millis()),
        OTelSdkError::InternalFailure(msg) => {
            // A refused export, as the HTTP client says it ("kind: Status(503, ...") or as the
            // exporter does ("Status Code: 503, ...").
            let status = ["Status(", "Status Code: "].iter().find_map(|marker| {
                let (_, rest) = msg.split_once(marker)?;
                rest.get(..3)?.parse::<u16>().ok()
            });
            match status {
                Some(code) => format!("the collector answered HTTP {code}"),
                None if msg.contains("imed out") || msg.contains("TimedOut") => {
                    "no answer from the collector in time".into()
                }
                // Mostly a connection refused or reset; also a request that could not be made.
                None => {
                    "the collector could not be reached, or the export could not be sent".into()
                }
            }
        }
    }
}

/// Failures not yet logged, and whether the last export failed.
#[derive(Debug, Default)]
struct Tally {
    failures: u64,
    spans_lost: u64,
    last_logged: Option<Instant>,
    failing: bool,
}

/// A span exporter that reports its inner exporter's failures: the first one at once, then at
/// most one log line per [`REPORT_EVERY`] with how many exports and spans were lost since, and
/// one line when exports succeed again. Counts go to `/metrics` as well.
pub struct Reporting<E> {
    inner: E,
    tally: Mutex<Tally>,
}

impl<E> fmt::Debug for Reporting<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reporting(OTLP span exporter)")
    }
}

impl<E> Reporting<E> {
    pub fn new(inner: E) -> Reporting<E> {
        Reporting { inner, tally: Mutex::new(Tally::default()) }
    }

    fn report(&self, result: &OTelSdkResult, spans: usize) {
        gateway::telemetry::record_export(result.is_ok(), spans);
        let Ok(mut t) = self.tally.lock() else { return };
        match result {
            Ok(()) => {
                if t.failing {
                    t.failing = false;
                    tracing::info!(
                        failed_exports = t.failures,
                        spans_lost = t.spans_lost,
                        "request traces reach the collector again"
                    );
                    t.failures = 0;
                    t.spans_lost = 0;
                    t.last_logged = None;
                }
            }
            Err(e) => {
                t.failing = true;
                t.failures += 1;
                t.spans_lost += spans as u64;
                if t.last_logged.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                    tracing::warn!(
                        reason = %reason(e),
                        failed_exports = t.failures,
                        spans_lost = t.spans_lost,
                        "request traces could not be exported (those spans are lost; the next batch tries again)"
                    );
                    t.failures = 0;
                    t.spans_lost = 0;
                    t.last_logged = Some(Instant::now());
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let spans = batch.len();
        let export = self.inner.export(batch);
        async move {
            let result = export.await;
            self.report(&result, spans);
            result
        }
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn shutdown(&mut self) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_endpoint_is_printed_without_credentials() {
        assert_eq!(
            without_userinfo("https://user:s3cret@collector:4318/v1/traces"),
            "https://collector:4318/v1/traces"
        );
        assert_eq!(
            without_userinfo("http://collector:4318/v1/traces"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            without_userinfo("http://c:4318/v1/traces?a=b@c"),
            "http://c:4318/v1/traces?a=b@c"
        );
        assert_eq!(without_userinfo("collector:4318"), "collector:4318");
    }

    #[test]
    fn failure_reasons_keep_only_a_status_code() {
        let refused = OTelSdkError::InternalFailure(
            "OpenTelemetry trace export failed. Url: http://u:s3cret@c:4318/v1/traces, Status \
             Code: 503, Response: b\"secret body\""
                .into(),
        );
        assert_eq!(reason(&refused), "the collector answered HTTP 503");
        let refused_by_client = OTelSdkError::InternalFailure(
            "reqwest::Error { kind: Status(502, None), url: \"http://u:s3cret@c:4318/v1/traces\" }"
                .into(),
        );
        assert_eq!(reason(&refused_by_client), "the collector answered HTTP 502");
        let down = OTelSdkError::InternalFailure(
            "reqwest::Error { kind: Request, url: \"http://u:s3cret@c:4318/v1/traces\", \
             source: ConnectError(\"tcp connect error\", Os { code: 111 }) }"
                .into(),
        );
        assert_eq!(
            reason(&down),
            "the collector could not be reached, or the export could not be sent"
        );
        assert_eq!(
            reason(&OTelSdkError::Timeout(Duration::from_secs(10))),
            "no answer within 10000 ms"
        );
        for e in [refused, refused_by_client, down] {
            assert!(!reason(&e).contains("s3cret") && !reason(&e).contains("body"));
        }
    }
}
