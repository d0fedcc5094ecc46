//! The shared state of the application: the policy (swapped atomically on reload), the store,
//! ledger and vault, the scanner, the upstream clients, the limiter and the metrics handle.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use phi::{Finding, NamePart, Scanner};

use crate::limits::Limiter;
use crate::upstream::Upstreams;
use crate::Error;

/// Finds PHI in a text. [`phi::Scanner`] is the one used in production; the trait lets a
/// deployment plug in another engine (and lets tests prove that a failing one is a refusal).
pub trait Detector: Send + Sync {
    /// Findings in `text`, sorted by start, not overlapping, on char boundaries.
    fn detect(&self, text: &str) -> Vec<Finding>;

    /// The words of the names among `found` (findings in `text`) that mark a name where
    /// another text of the request says them again ([`Scanner::name_parts`]). None by
    /// default: an engine without it reads each text's names alone.
    fn name_parts(&self, _text: &str, _found: &[Finding]) -> Vec<NamePart> {
        Vec::new()
    }

    /// Adds to `found` (findings in `text`, sorted and apart) the names of `text` that repeat
    /// `parts` outside them ([`Scanner::repeats`]); whether it added any.
    fn repeats(&self, _text: &str, _parts: &[NamePart], _found: &mut Vec<Finding>) -> bool {
        false
    }
}

impl Detector for Scanner {
    fn detect(&self, text: &str) -> Vec<Finding> {
        self.scan(text)
    }

    fn name_parts(&self, text: &str, found: &[Finding]) -> Vec<NamePart> {
        Scanner::name_parts(self, text, found)
    }

    fn repeats(&self, text: &str, parts: &[NamePart], found: &mut Vec<Finding>) -> bool {
        Scanner::repeats(self, text, parts, found)
    }
}

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) policy: ArcSwap<policy::Policy>,
    pub(crate) store: store::Store,
    pub(crate) ledger: ledger::Ledger,
    pub(crate) vault: vault::Vault,
    pub(crate) detector: Arc<dyn Detector>,
    pub(crate) hmac: ledger::HmacKey,
    pub(crate) scope_key: Vec<u8>,
    pub(crate) upstreams: Upstreams,
    pub(crate) limiter: Limiter,
    pub(crate) failures: crate::limits::FailureRecords,
    pub(crate) metrics: PrometheusHandle,
    pub(crate) texts: crate::textcache::TextCache,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("policy_version", &self.inner.policy.load().version())
            .finish_non_exhaustive()
    }
}

/// The process-wide Prometheus recorder (installed once; every `AppState` shares it).
fn recorder() -> Result<PrometheusHandle, Error> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                // Seconds. Fine below 3 ms, where phigate's own stages live (its added latency
                // is a fraction of a millisecond), coarse above, where upstreams live.
                .set_buckets(&[
                    0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003,
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .map_err(|e| e.to_string())?
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "phigate_ledger_batch_records".into(),
                    ),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                )
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())
                .inspect(|h| {
                    crate::telemetry::take_handles();
                    // Histogram samples are kept until drained: without this, they pile up
                    // between scrapes (and forever when nothing scrapes /metrics).
                    let h = h.clone();
                    let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(
                        move || loop {
                            std::thread::sleep(std::time::Duration::from_secs(5));
                            h.run_upkeep();
                        },
                    );
                })
        })
        .clone()
        .map_err(Error::Metrics)
}

impl AppState {
    /// A state over a loaded policy and opened store, ledger and vault. `audit_hmac` keys the
    /// ledger's request digests and the conversation scopes. Uses [`phi::Scanner`], and Redis
    /// for rate limits when the configuration names it.
    pub fn new(
        policy: policy::Policy,
        store: store::Store,
        ledger: ledger::Ledger,
        vault: vault::Vault,
        audit_hmac: &[u8],
    ) -> Result<AppState, Error> {
        let scanner = Arc::new(Scanner::new()?);
        AppState::with_detector(policy, store, ledger, vault, audit_hmac, scanner)
    }

    /// Like [`AppState::new`] with another PHI detector.
    pub fn with_detector(
        policy: policy::Policy,
        store: store::Store,
        ledger: ledger::Ledger,
        vault: vault::Vault,
        audit_hmac: &[u8],
        detector: Arc<dyn Detector>,
    ) -> Result<AppState, Error> {
        let limiter = match &policy.config().redis {
            Some(r) => Limiter::redis(&r.url, r.allow_local_fallback)?,
            None => Limiter::local(),
        };
        let hmac = ledger::HmacKey::from_bytes(audit_hmac)?;
        let texts = crate::textcache::TextCache::new(policy.config().server.text_cache);
        let mut scope_key = b"phigate-conversation-scope\0".to_vec();
        scope_key.extend_from_slice(audit_hmac);
        Ok(AppState {
            inner: Arc::new(Inner {
                policy: ArcSwap::from_pointee(policy),
                store,
                ledger,
                vault,
                detector,
                hmac,
                scope_key,
                upstreams: Upstreams::new()?,
                limiter,
                failures: crate::limits::FailureRecords::default(),
                metrics: recorder()?,
                texts,
            }),
        })
    }

    /// Replaces the policy atomically (requests in flight finish under the old one).
    pub fn reload(&self, policy: policy::Policy) {
        self.inner.policy.store(Arc::new(policy));
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<policy::Policy> {
        self.inner.policy.load_full()
    }

    /// The Prometheus text of every metric.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }
}
