//! Upstream clients: any OpenAI-compatible server and Azure OpenAI.
//!
//! One call tries the eligible deployments of a model in turn: a weighted random order among
//! the healthy ones (a deployment that just failed sits out a short cool-down, behind the
//! others), each with its own timeout and a few retries with backoff on connect errors and 5xx
//! (never on 4xx). An upstream's body is never relayed to the client on an error, and never
//! logged. Redirects are never followed: the body goes only to the address the configuration
//! names.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::error::ApiError;

/// How long a deployment that just failed is skipped (tried only when nothing else is left).
pub const COOL_DOWN: Duration = Duration::from_secs(10);
/// Largest upstream response body read (non-streaming).
pub const MAX_UPSTREAM_BODY: usize = 16 * 1024 * 1024;

/// The wire dialect of a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `{base_url}/chat/completions`, `Authorization: Bearer`.
    OpenAi,
    /// `{base_url}/openai/deployments/{model}/chat/completions?api-version=`, `api-key`.
    Azure,
}

/// One deployment a request may go to.
#[derive(Clone)]
pub struct Target {
    /// The provider's name (for logs, metrics and the ledger).
    pub provider: String,
    /// Wire dialect.
    pub dialect: Dialect,
    /// Base URL (`http://host:port/v1` for OpenAI-compatible servers; the resource URL for Azure).
    pub base_url: String,
    /// The upstream model (or the Azure deployment name).
    pub model: String,
    /// API key, if any.
    pub api_key: Option<String>,
    /// Azure `api-version`.
    pub api_version: Option<String>,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retries after the first attempt (connect errors and 5xx only).
    pub retries: u32,
    /// Load-balancing weight (0: a standby, tried only after every weighted deployment).
    pub weight: u32,
    /// `hosting: private`: inside the organization.
    pub private: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("provider", &self.provider)
            .field("dialect", &self.dialect)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "[secret]"))
            .finish_non_exhaustive()
    }
}

impl Target {
    fn key(&self) -> String {
        format!("{}|{}|{}", self.provider, self.base_url, self.model)
    }

    /// The URL of an endpoint (`chat/completions` or `embeddings`).
    pub fn url(&self, endpoint: &str) -> String {
        let base = self.base_url.trim_end_matches('/');
        match self.dialect {
            Dialect::OpenAi => format!("{base}/{endpoint}"),
            Dialect::Azure => format!(
                "{base}/openai/deployments/{}/{endpoint}?api-version={}",
                self.model,
                self.api_version.as_deref().unwrap_or("2024-10-21")
            ),
        }
    }
}

/// A successful upstream answer: the response (body not yet read) and who gave it.
pub struct Answered {
    /// The response, status 2xx.
    pub response: reqwest::Response,
    /// The deployment that answered.
    pub target: Target,
}

/// The shared HTTP client and the cool-down table.
pub struct Upstreams {
    client: reqwest::Client,
    failed: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

enum Failure {
    /// Worth retrying (connect error, 5xx).
    Retry(ApiError),
    /// Move to the next deployment at once (a timeout, a transport error after the request may
    /// have been sent, 401/403/404/405/415/429, a redirect).
    Next(ApiError),
    /// Stop: the request itself was refused (4xx).
    Stop(ApiError),
}

/// A request body as sent to one deployment: the client's object with `model` set to the
/// deployment's (OpenAI dialect) or left out (Azure names the deployment in the URL), written
/// without copying the object.
struct WithModel<'a> {
    obj: &'a serde_json::Map<String, serde_json::Value>,
    model: Option<&'a str>,
}

impl serde::Serialize for WithModel<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.obj {
            if k != "model" {
                m.serialize_entry(k, v)?;
            }
        }
        if let Some(model) = self.model {
            m.serialize_entry("model", model)?;
        }
        m.end()
    }
}

/// What runs before a request body goes to a deployment (see [`Upstreams::post`]).
pub trait BeforeSend {
    /// Whether `to` may still receive the request (checked before each attempt: a BAA may
    /// lapse, or a reload take the provider out, while a request waits on another attempt).
    fn may_send(&self, to: &Target) -> bool;

    /// Called once per deployment, before anything is sent to it; an error stops the request.
    fn before_send(
        &mut self,
        to: &Target,
    ) -> impl std::future::Future<Output = Result<(), ApiError>> + Send;
}

impl Upstreams {
    /// A client with rustls, connection pooling and a connect timeout.
    pub fn new() -> Result<Upstreams, crate::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Below the keep-alive of common model servers (uvicorn, vLLM's: 5 s), so that a
            // pooled connection is not reused just as the server closes it.
            .pool_idle_timeout(Duration::from_secs(4))
            // Never follow a redirect: a 307 or 308 would send the body again to an address the
            // configuration does not name (no BAA or hosting checked, no ledger record of it).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| crate::Error::Client(e.to_string()))?;
        Ok(Upstreams { client, failed: Mutex::new(HashMap::new()) })
    }

    /// Orders the deployments: healthy weighted ones by weighted random draw, then healthy
    /// standbys (`weight: 0`, in configuration order), then those cooling down.
    pub fn order(&self, targets: Vec<Target>) -> Vec<Target> {
        let now = Instant::now();
        let (healthy, cooling): (Vec<Target>, Vec<Target>) = {
            let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            targets.into_iter().partition(|t| {
                failed.get(&t.key()).is_none_or(|at| now.duration_since(*at) >= COOL_DOWN)
            })
        };
        let (mut weighted, standby): (Vec<Target>, Vec<Target>) =
            healthy.into_iter().partition(|t| t.weight > 0);
        let mut out = Vec::with_capacity(weighted.len() + standby.len() + cooling.len());
        let mut rng = rand::thread_rng();
        while !weighted.is_empty() {
            let total: u64 = weighted.iter().map(|t| u64::from(t.weight)).sum();
            let mut pick = rng.gen_range(0..total);
            let mut idx = 0;
            for (i, t) in weighted.iter().enumerate() {
                let w = u64::from(t.weight);
                if pick < w {
                    idx = i;
                    break;
                }
                pick -= w;
            }
            out.push(weighted.remove(idx));
        }
        out.extend(standby);
        out.extend(cooling);
        out
    }

    fn mark_failed(&self, t: &Target) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.insert(t.key(), Instant::now());
    }

    fn mark_ok(&self, t: &Target) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.remove(&t.key());
    }

    /// Posts `body` (its `model` replaced by each deployment's) to `endpoint` of the first
    /// deployment that answers 2xx. The response body is left unread (streaming callers read
    /// it chunk by chunk). With a stream, the timeout covers the time to the response head.
    ///
    /// `before_send` runs once for each deployment, before anything is sent to it: the caller
    /// records the disclosure there, and an error from it ends the request with nothing sent
    /// (to that deployment or any later one).
    pub async fn post(
        &self,
        targets: Vec<Target>,
        endpoint: &str,
        body: &serde_json::Value,
        before_send: &mut impl BeforeSend,
    ) -> Result<Answered, ApiError> {
        let ordered = self.order(targets);
        if ordered.is_empty() {
            return Err(ApiError::NoEligibleProvider);
        }
        let mut last = ApiError::UpstreamUnavailable;
        let mut tried = false;
        for target in ordered {
            if !before_send.may_send(&target) {
                tracing::warn!(provider = %target.provider, "deployment no longer eligible for this request (BAA or configuration); skipped");
                continue;
            }
            tried = true;
            let model = match target.dialect {
                Dialect::OpenAi => Some(target.model.as_str()),
                Dialect::Azure => None,
            };
            let mut out = Vec::with_capacity(4096);
            let written = match body.as_object() {
                Some(obj) => serde_json::to_writer(&mut out, &WithModel { obj, model }),
                None => serde_json::to_writer(&mut out, body),
            };
            if written.is_err() {
                return Err(ApiError::InvalidRequest("body could not be encoded"));
            }
            let bytes = bytes::Bytes::from(out);
            before_send.before_send(&target).await?;
            let mut attempt = 0u32;
            loop {
                let started = Instant::now();
                let outcome = self.attempt(&target, endpoint, bytes.clone()).await;
                crate::telemetry::stage("upstream", started);
                match outcome {
                    Ok(response) => {
                        self.mark_ok(&target);
                        return Ok(Answered { response, target });
                    }
                    Err(Failure::Stop(e)) => return Err(e),
                    Err(Failure::Next(e)) => {
                        tracing::warn!(provider = %target.provider, code = e.code(), "upstream failed; trying the next deployment");
                        self.mark_failed(&target);
                        last = worse(last, e);
                        break;
                    }
                    Err(Failure::Retry(e)) => {
                        last = worse(last, e);
                        if attempt >= target.retries {
                            tracing::warn!(provider = %target.provider, code = last.code(), "upstream failed after retries");
                            self.mark_failed(&target);
                            break;
                        }
                        attempt += 1;
                        let backoff = Duration::from_millis(50u64 << attempt.min(6));
                        tokio::time::sleep(backoff).await;
                        if !before_send.may_send(&target) {
                            tracing::warn!(provider = %target.provider, "deployment no longer eligible for this request (BAA or configuration); not retried");
                            break;
                        }
                    }
                }
            }
        }
        Err(if tried { last } else { ApiError::NoEligibleProvider })
    }

    async fn attempt(
        &self,
        t: &Target,
        endpoint: &str,
        body: bytes::Bytes,
    ) -> Result<reqwest::Response, Failure> {
        let mut req = self
            .client
            .post(t.url(endpoint))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        // The trace context goes to private deployments only: its trace id may be the caller's,
        // 32 hex digits of their choosing, never scanned.
        if t.private && crate::telemetry::enabled() {
            let mut h = reqwest::header::HeaderMap::new();
            crate::telemetry::inject(&mut h);
            req = req.headers(h);
        }
        if let Some(k) = &t.api_key {
            req = match t.dialect {
                Dialect::OpenAi => req.bearer_auth(k),
                Dialect::Azure => req.header("api-key", k),
            };
        }
        match tokio::time::timeout(t.timeout, req.send()).await {
            Err(_) => Err(Failure::Next(ApiError::UpstreamTimeout)),
            Ok(Err(e)) if e.is_timeout() => Err(Failure::Next(ApiError::UpstreamTimeout)),
            // Only a connection that never opened is safe to try again on the same deployment:
            // after that, the body may have reached the model (it would run twice).
            Ok(Err(e)) if e.is_connect() => Err(Failure::Retry(ApiError::UpstreamUnavailable)),
            Ok(Err(_)) => Err(Failure::Next(ApiError::UpstreamUnavailable)),
            Ok(Ok(resp)) => {
                let s = resp.status();
                if s.is_success() {
                    Ok(resp)
                } else if s.is_server_error() {
                    Err(Failure::Retry(ApiError::UpstreamUnavailable))
                } else if s.as_u16() == 401 || s.as_u16() == 403 {
                    // Our credentials for this provider were refused: a configuration problem
                    // on our side, never the caller's key. Try another deployment.
                    tracing::error!(provider = %t.provider, status = s.as_u16(), "the upstream refused the gateway's credentials");
                    Err(Failure::Next(ApiError::UpstreamUnavailable))
                } else if s.is_redirection() {
                    tracing::error!(provider = %t.provider, status = s.as_u16(), "the upstream answered with a redirect, which phigate does not follow; fix the provider's base_url");
                    Err(Failure::Next(ApiError::UpstreamInvalidResponse))
                } else if s.as_u16() == 429 {
                    Err(Failure::Next(ApiError::UpstreamUnavailable))
                } else if matches!(s.as_u16(), 404 | 405 | 415) {
                    // No such model, deployment or route there: this deployment's
                    // configuration, not the request. The next deployment may have it.
                    tracing::error!(provider = %t.provider, status = s.as_u16(), "the upstream has no such model or route; check the deployment's model and the provider's base_url");
                    Err(Failure::Next(ApiError::UpstreamRejected { status: s.as_u16() }))
                } else if s.is_client_error() {
                    Err(Failure::Stop(ApiError::UpstreamRejected { status: s.as_u16() }))
                } else {
                    Err(Failure::Retry(ApiError::UpstreamInvalidResponse))
                }
            }
        }
    }
}

/// Of two upstream failures, the one worth reporting (timeout, then garbage, then down).
fn worse(a: ApiError, b: ApiError) -> ApiError {
    fn rank(e: &ApiError) -> u8 {
        match e {
            ApiError::UpstreamTimeout => 3,
            ApiError::UpstreamInvalidResponse => 2,
            _ => 1,
        }
    }
    if rank(&b) >= rank(&a) {
        b
    } else {
        a
    }
}

/// Reads a whole (non-streaming) body with a limit and a timeout, as JSON.
pub async fn read_json(
    mut resp: reqwest::Response,
    timeout: Duration,
) -> Result<serde_json::Value, ApiError> {
    let read = async {
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|_| ApiError::UpstreamUnavailable)? {
            if buf.len() + chunk.len() > MAX_UPSTREAM_BODY {
                return Err(ApiError::UpstreamInvalidResponse);
            }
            buf.extend_from_slice(&chunk);
        }
        serde_json::from_slice::<serde_json::Value>(&buf)
            .map_err(|_| ApiError::UpstreamInvalidResponse)
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(ApiError::UpstreamTimeout),
        Ok(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, weight: u32) -> Target {
        Target {
            provider: name.into(),
            dialect: Dialect::OpenAi,
            base_url: format!("http://{name}/v1"),
            model: "m".into(),
            api_key: Some("sk-test".into()),
            api_version: None,
            timeout: Duration::from_secs(1),
            retries: 0,
            weight,
            private: true,
        }
    }

    #[test]
    fn a_deployment_that_just_failed_goes_last() {
        let u = Upstreams::new().unwrap();
        u.mark_failed(&target("a", 1000));
        for _ in 0..50 {
            let order = u.order(vec![target("a", 1000), target("b", 1)]);
            assert_eq!(order[0].provider, "b");
            assert_eq!(order[1].provider, "a");
        }
        u.mark_ok(&target("a", 1000));
        let firsts = (0..200)
            .filter(|_| u.order(vec![target("a", 1000), target("b", 1)])[0].provider == "a")
            .count();
        assert!(firsts > 150, "weight ignored: {firsts}/200");
    }

    #[test]
    fn weights_share_the_first_place() {
        let u = Upstreams::new().unwrap();
        let firsts = (0..2000)
            .filter(|_| u.order(vec![target("a", 1), target("b", 3)])[0].provider == "b")
            .count();
        // Expected 1500; the bounds are > 10 standard deviations wide.
        assert!((1300..=1700).contains(&firsts), "{firsts}");
    }

    #[test]
    fn a_standby_takes_traffic_only_when_no_weighted_deployment_is_healthy() {
        let u = Upstreams::new().unwrap();
        for _ in 0..200 {
            let order = u.order(vec![target("standby", 0), target("a", 1), target("b", 1)]);
            assert_eq!(order[2].provider, "standby");
        }
        u.mark_failed(&target("a", 1));
        u.mark_failed(&target("b", 1));
        let order = u.order(vec![target("standby", 0), target("a", 1), target("b", 1)]);
        assert_eq!(order[0].provider, "standby");
    }

    #[test]
    fn urls_and_debug() {
        let mut t = target("h", 1);
        assert_eq!(t.url("chat/completions"), "http://h/v1/chat/completions");
        t.dialect = Dialect::Azure;
        t.base_url = "https://r.openai.azure.com/".into();
        t.api_version = Some("2024-10-21".into());
        assert_eq!(
            t.url("embeddings"),
            "https://r.openai.azure.com/openai/deployments/m/embeddings?api-version=2024-10-21"
        );
        assert!(!format!("{t:?}").contains("sk-test"));
    }
}
