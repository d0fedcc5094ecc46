//! The axum application: routes, the per-request pipeline (authenticate → decide → limits →
//! injection screen → scan → handle PHI → route → rewrite the answer → ledger), metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use ledger::{Action, Decision as LDecision, Hmac256, Record};
use phi::Category;
use policy::{Handling, Identity};
use serde_json::Value;
use sha2::Sha256;
use tracing::Instrument as _;

use crate::error::{ApiError, ErrorCode};
use crate::output::{self, NewPhi, OutputRules, SseParser, StreamRewriter};
use crate::phiops::{self, Act, Kind};
use crate::state::AppState;
use crate::telemetry::stage;
use crate::upstream::{self, Dialect, Target};

/// The conversation header.
pub const CONVERSATION_HEADER: &str = "x-phigate-conversation";
/// The use-case header.
pub const USE_CASE_HEADER: &str = "x-phigate-use-case";
/// The tightening header.
pub const TIGHTEN_HEADER: &str = "x-phigate-phi-handling";

/// The router. Tests drive it with `tower::ServiceExt::oneshot`; `serve` binds it.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/v1/deidentify", post(deidentify))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(track))
        .with_state(state)
}

/// Counts requests by route and code, and their latency.
async fn track(req: Request, next: Next) -> Response {
    let route = route_label(req.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
    let started = Instant::now();
    // The request's trace span (exported only when traces are on): the route, never the path
    // a client sent, and codes.
    let span = tracing::info_span!(
        "request",
        otel.name = %&*route,
        otel.kind = "server",
        http.route = %&*route,
        http.request.method = method_label(req.method()),
        http.response.status_code = tracing::field::Empty,
        phigate.code = tracing::field::Empty,
    );
    crate::telemetry::adopt_parent(&span, req.headers());
    let resp = next.run(req).instrument(span.clone()).await;
    let status = status_label(resp.status());
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0).unwrap_or("ok");
    span.record("http.response.status_code", resp.status().as_u16());
    span.record("phigate.code", code);
    metrics::counter!("phigate_requests_total", "route" => route.clone(), "status" => status, "code" => code)
        .increment(1);
    metrics::histogram!("phigate_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// The routes, as metric labels (no allocation per request).
const ROUTES: [&str; 7] = [
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/deidentify",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// A request's method for its span: a standard one, or `_OTHER` (as OpenTelemetry's
/// conventions say; a method is any token a caller likes, and could be a patient's name).
fn method_label(m: &axum::http::Method) -> &'static str {
    const KNOWN: [&str; 9] =
        ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT"];
    KNOWN.into_iter().find(|k| *k == m.as_str()).unwrap_or("_OTHER")
}

/// A request's route label: its route (allocated only for one missing from [`ROUTES`]), or
/// `unmatched`.
fn route_label(matched: Option<&str>) -> metrics::SharedString {
    match matched {
        None => metrics::SharedString::const_str("unmatched"),
        Some(m) => match ROUTES.iter().find(|r| **r == m) {
            Some(r) => metrics::SharedString::const_str(r),
            None => metrics::SharedString::from(m.to_string()),
        },
    }
}

/// A status code as a metric label, without an allocation for the codes phigate answers with.
fn status_label(s: StatusCode) -> metrics::SharedString {
    const KNOWN: [(u16, &str); 14] = [
        (200, "200"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    match KNOWN.iter().find(|(c, _)| *c == s.as_u16()) {
        Some((_, l)) => metrics::SharedString::const_str(l),
        None => metrics::SharedString::from(s.as_u16().to_string()),
    }
}

// ---- shared steps ----------------------------------------------------------------------------

/// Authenticates the caller from the headers, then reads the body under the policy's size
/// limit: nobody who has not authenticated gets a body read (held in memory) or a refusal
/// recorded outside the failed-authentication budget.
async fn authenticated_body(
    state: &AppState,
    req: Request,
    audit: &mut Audit,
) -> Result<(Identity, HeaderMap, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let who = authenticate(state, &parts.headers).await?;
    audit.actor = who.id.clone();
    let raw = read_body(state, &parts, body).await?;
    audit.raw = Some(raw.clone());
    Ok((who, parts.headers, raw))
}

/// Reads the body under the policy's size limit.
async fn read_body(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<Bytes, ApiError> {
    let policy = state.policy();
    let server = &policy.config().server;
    let limit = usize::try_from(server.max_body_bytes).unwrap_or(usize::MAX);
    let deadline = std::time::Duration::from_secs(server.read_timeout_secs.max(1));
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(ApiError::RequestTooLarge);
        }
    }
    // A client that trickles its body holds a connection and up to the limit in memory: it has
    // `server.read_timeout_secs` to send it all. Past the limit the body is too large; any
    // other failure of the read is a body cut off or badly framed (a client that hangs up
    // never sees the answer anyway).
    let bytes = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::InvalidRequest("the body did not arrive within server.read_timeout_secs")
        })?
        .map_err(|e| {
            if e.into_inner().is::<http_body_util::LengthLimitError>() {
                ApiError::RequestTooLarge
            } else {
                ApiError::InvalidRequest("the body was cut off or badly framed")
            }
        })?;
    Ok(bytes)
}

fn denial(d: policy::Denial) -> ApiError {
    match d {
        policy::Denial::MissingKey => ApiError::MissingApiKey,
        policy::Denial::InvalidKey | policy::Denial::InvalidToken => ApiError::InvalidApiKey,
        policy::Denial::TokenExpired => ApiError::TokenExpired,
        policy::Denial::ModelNotAllowed => ApiError::ModelNotAllowed,
        policy::Denial::RoleNotAllowed => ApiError::RoleNotAllowed,
        policy::Denial::UseCaseNotAllowed => ApiError::UseCaseNotAllowed,
        policy::Denial::NoEligibleProvider => ApiError::NoEligibleProvider,
        policy::Denial::StoreUnavailable => ApiError::StoreUnavailable,
        policy::Denial::AuthUnavailable => ApiError::AuthUnavailable,
        // Anything else (issuer keys unavailable, ...) is a check that could not run.
        #[allow(unreachable_patterns)]
        _ => ApiError::InvalidApiKey,
    }
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Identity, ApiError> {
    let started = Instant::now();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(ApiError::MissingApiKey)?;
    let bearer =
        bearer.strip_prefix("Bearer ").or_else(|| bearer.strip_prefix("bearer ")).unwrap_or(bearer);
    let r = state.policy().authenticate(&state.inner.store, bearer).await.map_err(denial);
    stage("auth", started);
    r
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// Refuses a phigate header given more than once (which one counts would otherwise depend on
/// order: a proxy that appends `X-Phigate-Phi-Handling: block` after the client's own value
/// would be overridden by it), or not in visible ASCII.
fn single_phigate_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    for h in [USE_CASE_HEADER, TIGHTEN_HEADER, CONVERSATION_HEADER] {
        if headers.get_all(h).iter().nth(1).is_some() {
            return Err(ApiError::InvalidRequest("an X-Phigate-* header was given more than once"));
        }
        // One that is not visible ASCII would read as absent: a tightening dropped, or the
        // key's default use case instead of the one named.
        if headers.get(h).is_some_and(|v| v.to_str().is_err()) {
            return Err(ApiError::InvalidRequest("an X-Phigate-* header is not visible ASCII"));
        }
    }
    Ok(())
}

fn act_of(h: Handling) -> Act {
    match h {
        Handling::Tokenize => Act::Tokenize,
        Handling::PrivateOnly => Act::PrivateOnly,
        Handling::Redact => Act::Redact,
        // Block, and anything stricter added later.
        #[allow(unreachable_patterns)]
        _ => Act::Block,
    }
}

fn targets(deps: Vec<policy::Deployment>) -> Vec<Target> {
    deps.into_iter()
        .map(|d| Target {
            provider: d.provider,
            dialect: match d.kind {
                policy::ProviderKind::Azure => Dialect::Azure,
                #[allow(unreachable_patterns)]
                _ => Dialect::OpenAi,
            },
            base_url: d.base_url,
            model: d.model,
            api_key: d.api_key.map(|s| s.expose().to_string()),
            api_version: d.api_version,
            timeout: d.timeout,
            retries: d.retries,
            weight: d.weight,
            private: d.private,
        })
        .collect()
}

/// A ledger-safe slug of a free string (model names such as `meta-llama/Llama-3.1-8B`), or
/// `None` when none can be made.
fn slug(s: &str) -> Option<String> {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || ".:_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert(0, 'm');
        out.truncate(64);
    }
    ledger::Slug::check(&out).ok().map(|_| out)
}

/// What the ledger record of one request gets.
/// The ledger's actor for a request whose caller is not (yet) authenticated.
const ANONYMOUS: &str = "anonymous";

#[derive(Clone)]
struct Audit {
    action: Action,
    actor: String,
    use_case: Option<String>,
    purpose: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    upstream_model: Option<String>,
    policy_version: Option<String>,
    categories: BTreeMap<Category, u32>,
    /// The raw request body, digested (keyed) into the record; never stored.
    raw: Option<Bytes>,
    started: Instant,
}

impl Audit {
    fn new(action: Action, started: Instant) -> Audit {
        Audit {
            action,
            actor: ANONYMOUS.into(),
            use_case: None,
            purpose: None,
            model: None,
            provider: None,
            upstream_model: None,
            policy_version: None,
            categories: BTreeMap::new(),
            raw: None,
            started,
        }
    }

    fn record(
        &self,
        key: &ledger::HmacKey,
        decision: LDecision,
        reason: &str,
    ) -> Result<Record, ledger::Error> {
        let actor = ledger::actor_name(key, &self.actor);
        let mut b = Record::builder(&actor, self.action, decision).reason(reason);
        for (field, v) in [
            ("use_case", &self.use_case),
            ("purpose", &self.purpose),
            ("model", &self.model),
            ("provider", &self.provider),
            ("model_version", &self.upstream_model),
            ("policy_version", &self.policy_version),
        ] {
            if let Some(s) = v.as_deref().and_then(slug) {
                b = match field {
                    "use_case" => b.use_case(&s),
                    "purpose" => b.purpose(&s),
                    "model" => b.model(&s),
                    "provider" => b.provider(&s),
                    "model_version" => b.model_version(&s),
                    _ => b.policy_version(&s),
                };
            }
        }
        for (c, n) in &self.categories {
            b = b.category(*c, *n);
        }
        if let Some(raw) = &self.raw {
            b = b.request_hmac(Hmac256::compute(key, raw));
        }
        let ms = u32::try_from(self.started.elapsed().as_millis()).unwrap_or(u32::MAX);
        // Latency bucket, not the exact figure.
        let bucket = [10u32, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]
            .into_iter()
            .find(|b| ms <= *b)
            .unwrap_or(60000);
        b.latency_ms(bucket).build()
    }

    /// Appends the record; an append that fails makes the request fail (fail closed).
    async fn write(
        &self,
        state: &AppState,
        decision: LDecision,
        reason: &str,
    ) -> Result<(), ApiError> {
        let r = self.record(&state.inner.hmac, decision, reason)?;
        state.inner.ledger.record(r).await?;
        Ok(())
    }

    /// Counts the request's outcome in the metrics and logs its one line (once per request).
    fn account(&self, decision: LDecision, reason: &'static str) {
        metrics::counter!("phigate_decisions_total", "decision" => decision.as_str(), "reason" => reason)
            .increment(1);
        for (c, n) in &self.categories {
            crate::telemetry::findings(*c, u64::from(*n));
        }
        tracing::info!(
            action = self.action.as_str(),
            decision = decision.as_str(),
            reason,
            use_case = self.use_case.as_deref().unwrap_or("-"),
            provider = self.provider.as_deref().unwrap_or("-"),
            latency_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "request"
        );
    }

    /// Records a refusal (best effort: the request is refused either way) and returns it. A
    /// refusal after a disclosure (the upstream failed, or its answer was refused) is a second
    /// record beside the disclosure's.
    async fn refuse(&self, state: &AppState, e: ApiError) -> ApiError {
        let decision = match e.status().as_u16() {
            500..=599 => LDecision::Error,
            _ => LDecision::Deny,
        };
        let action = match &e {
            ApiError::MissingApiKey | ApiError::InvalidApiKey | ApiError::TokenExpired => {
                Action::AuthFailure
            }
            ApiError::RateLimited { .. } => Action::RateLimited,
            _ => self.action,
        };
        let mut rec = self.clone();
        rec.action = action;
        rec.account(decision, e.code());
        // Failed authentications, and any refusal of a caller not yet authenticated (the
        // issuer's keys or the store unavailable, a wrong method), are recorded up to a budget:
        // anyone can send them.
        let budgeted = action == Action::AuthFailure || self.actor == ANONYMOUS;
        let reason = if budgeted {
            match state.inner.failures.decide(Instant::now()) {
                crate::limits::FailureRecord::Write => Some(e.code()),
                crate::limits::FailureRecord::Mark => Some("auth_failures_throttled"),
                crate::limits::FailureRecord::Skip => None,
            }
        } else {
            Some(e.code())
        };
        if let Some(reason) = reason {
            if let Err(le) = rec.write(state, decision, reason).await {
                tracing::error!(code = le.code(), "could not record a refusal in the ledger");
            }
        }
        tracing::info!(
            code = e.code(),
            use_case = self.use_case.as_deref().unwrap_or("-"),
            "request refused"
        );
        e
    }
}

/// Records each disclosure before it is made: the request's record names the deployment and is
/// appended, durable, before anything is sent to it, so no disclosure is ever made that the
/// ledger does not hold, even if the process dies while the upstream answers, and nothing
/// leaves when the ledger cannot write. Each deployment tried gets its own record.
///
/// A stream whose caller may see values (`reveal`) has every token of the request revealed with
/// the first record, in the same commit (the vault's reveal record and the request's): a
/// stream's answer cannot be checked for which tokens it uses before it is relayed, so all of
/// them are revealed, and one commit before the send saves a second one after the answer's
/// head. A reveal that fails (a shredded scope, the vault down) stops the request before
/// anything leaves. A whole answer reveals only the tokens it holds, after it came.
struct Disclosure<'a> {
    audit: &'a mut Audit,
    state: &'a AppState,
    decision: LDecision,
    reason: &'static str,
    prepared: &'a Prepared,
    reveal: Option<&'a Prepared>,
    restore: HashMap<String, String>,
}

impl<'a> Disclosure<'a> {
    /// Records before each send; a `stream` whose caller may see values also reveals them then.
    fn new(
        audit: &'a mut Audit,
        state: &'a AppState,
        (decision, reason): (LDecision, &'static str),
        p: &'a Prepared,
        stream: bool,
    ) -> Disclosure<'a> {
        let reveal = (stream && p.decision.reidentify && !p.applied.tokens.is_empty()).then_some(p);
        Disclosure { audit, state, decision, reason, prepared: p, reveal, restore: HashMap::new() }
    }
}

impl upstream::BeforeSend for Disclosure<'_> {
    fn may_send(&self, to: &Target) -> bool {
        let p = self.prepared;
        self.state.policy().still_eligible(
            &p.decision,
            &p.applied.present,
            &to.provider,
            &to.model,
            &to.base_url,
            time::OffsetDateTime::now_utc(),
        )
    }

    async fn before_send(&mut self, to: &Target) -> Result<(), ApiError> {
        self.audit.provider = Some(to.provider.clone());
        self.audit.upstream_model = Some(to.model.clone());
        let started = Instant::now();
        let r = match self.reveal.take() {
            Some(p) => {
                let record =
                    self.audit.record(&self.state.inner.hmac, self.decision, self.reason)?;
                let tokens: Vec<String> = p.applied.tokens.keys().cloned().collect();
                reveal(self.state, p, tokens, vec![record]).await.map(|m| self.restore = m)
            }
            None => self.audit.write(self.state, self.decision, self.reason).await,
        };
        stage("ledger", started);
        r
    }
}

/// The vault scope of the conversation `conversation` (an `X-Phigate-Conversation` value) of
/// `identity`, under the gateway's audit HMAC key: what `phigate vault scope` prints so that an
/// operator can shred one conversation (a patient's request).
pub fn conversation_scope(audit_hmac: &[u8], identity: &str, conversation: &str) -> String {
    let mut key = b"phigate-conversation-scope\0".to_vec();
    key.extend_from_slice(audit_hmac);
    scope_under(&key, identity, conversation)
}

/// [`conversation_scope`] under the state's scope key (the same derivation).
fn scope_under(scope_key: &[u8], identity: &str, conversation: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(scope_key) else { return "c-invalid".into() };
    mac.update(identity.as_bytes());
    mac.update(b"\0conversation\0");
    mac.update(conversation.as_bytes());
    format!("c-{}", hex::encode(&mac.finalize().into_bytes()[..16]))
}

/// The request's vault scope, and the scope to fall back on when that one has expired.
///
/// With `X-Phigate-Conversation`, the conversation it names, and no fallback: a conversation
/// past its retention is refused (`conversation_expired`), and the client starts a new one.
/// Without it, a hash of the key and the first user message (empty for embeddings: then one
/// scope per retention period, replaced before it can expire). Many conversations may open
/// with the same message (a template, a greeting) and so share that scope; once it has
/// expired (or been shredded), refusing would lock every one of them out for good, so the
/// request falls back on the same hash with the retention period it falls in, a scope that
/// cannot expire before the period ends. A live scope is kept across periods, so a
/// conversation's numbering does not change while it lasts.
/// `conversation`: the scope of the conversation the request names, when it names one.
fn scope_of(
    state: &AppState,
    who: &Identity,
    conversation: Option<String>,
    first_user: &str,
) -> (String, Option<phiops::LazyScope>) {
    if let Some(scope) = conversation {
        return (scope, None);
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&state.inner.scope_key) else {
        return ("c-invalid".into(), None);
    };
    mac.update(who.id.as_bytes());
    mac.update(b"\0first-user\0");
    mac.update(who.key_id.as_deref().unwrap_or("").as_bytes());
    mac.update(b"\0");
    mac.update(first_user.as_bytes());
    // The vault's own retention (read at start, as the vault is), not a reload's: a period
    // must be as long as the keys made in it live.
    let retention = state.inner.vault.retention().map_or(u64::MAX, |r| r.as_secs()).max(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let period = move |mut m: Hmac<Sha256>| {
        m.update(b"\0period\0");
        m.update(&(now / retention).to_be_bytes());
        format!("c-{}", hex::encode(&m.finalize().into_bytes()[..16]))
    };
    if first_user.is_empty() {
        return (period(mac), None);
    }
    // Named only if it is needed (a hash less on every request).
    let fallback = mac.clone();
    let primary = format!("c-{}", hex::encode(&mac.finalize().into_bytes()[..16]));
    (primary, Some(phiops::LazyScope::new(move || period(fallback))))
}

/// The first user message's text (its JSON for content parts), borrowed when it is a string.
fn first_user_text(body: &Value) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let Some(msgs) = body.get("messages").and_then(Value::as_array) else {
        return Cow::Borrowed("");
    };
    for m in msgs {
        if m.get("role").and_then(Value::as_str) == Some("user") {
            return match m.get("content") {
                Some(Value::String(s)) => Cow::Borrowed(s),
                Some(v) => Cow::Owned(v.to_string()),
                None => Cow::Borrowed(""),
            };
        }
    }
    Cow::Borrowed("")
}

fn reveal_reason(purpose: &str) -> vault::RevealReason {
    match purpose {
        "treatment" => vault::RevealReason::Treatment,
        "payment" => vault::RevealReason::Payment,
        "operations" => vault::RevealReason::Operations,
        "research" => vault::RevealReason::ApprovedResearch,
        _ => vault::RevealReason::ResponseRestore,
    }
}

/// Largest answer budget (`max_completion_tokens`, `max_tokens`) a request may ask for.
const MAX_ANSWER_TOKENS: u64 = 10_000_000;
/// Most answers (`n`) one request may ask for.
const MAX_CHOICES: u64 = 128;

/// A whole number field of the body in `0..=max` (`null` is absent), or the refusal.
fn whole(body: &Value, field: &str, max: u64, why: &'static str) -> Result<Option<u64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(ApiError::InvalidRequest(why)),
        },
    }
}

/// The request's texts' share of the estimate: bytes / 4.
fn prompt_estimate(texts: &[phiops::Text<'_>]) -> u64 {
    (texts.iter().map(|t| t.text.len() as u64).sum::<u64>()).div_ceil(4)
}

/// Token budget estimate of a request: text bytes / 4, plus the answer budget asked for times
/// the answers asked for. The fields the budget reads are checked: a float, a negative or a
/// huge value would otherwise be charged as nothing (or wrap a counter).
fn estimate_tokens(texts: &[phiops::Text<'_>], body: &Value) -> Result<u64, ApiError> {
    let chars: usize = texts.iter().map(|t| t.text.len()).sum();
    const WHY: &str = "max_tokens and max_completion_tokens must be whole numbers up to 10000000";
    let answer = match whole(body, "max_completion_tokens", MAX_ANSWER_TOKENS, WHY)? {
        Some(n) => n,
        None => whole(body, "max_tokens", MAX_ANSWER_TOKENS, WHY)?.unwrap_or(0),
    };
    let n = whole(body, "n", MAX_CHOICES, "n must be a whole number up to 128")?.unwrap_or(1);
    Ok((chars as u64).div_ceil(4).saturating_add(answer.saturating_mul(n.max(1))))
}

fn buckets(p: &policy::Policy, who: &Identity, use_case: &str) -> Vec<crate::limits::Bucket> {
    p.config()
        .limits
        .iter()
        .filter_map(|l| {
            let key = match (&l.role, &l.use_case) {
                // The identity's length first: an identity may hold `|` (`auth0|..`).
                (Some(r), _) if who.roles.contains(r) => {
                    format!("identity:{}:{}|role:{r}", who.id.len(), who.id)
                }
                (None, Some(u)) if u == use_case => format!("use_case:{u}"),
                _ => return None,
            };
            Some(crate::limits::Bucket {
                key,
                requests_per_minute: l.requests_per_minute,
                tokens_per_minute: l.tokens_per_minute,
            })
        })
        .collect()
}

/// Everything decided before the upstream call.
struct Prepared {
    who: Identity,
    decision: policy::Decision,
    body: Value,
    applied: phiops::Applied,
    targets: Vec<Target>,
    injection: Vec<&'static str>,
    budget: Budget,
}

/// A request's token budgets, to settle once its answer's size is known: the estimate charged
/// before the send covers the answer only up to `max_tokens`, and a request that set none was
/// charged for its prompt alone.
#[derive(Clone)]
struct Budget {
    /// The buckets with a token budget (none: nothing to settle).
    buckets: Vec<crate::limits::Bucket>,
    /// What was charged before the send.
    charged: u64,
    /// The request's own texts, estimated (bytes / 4).
    prompt: u64,
}

impl Budget {
    fn new(mut buckets: Vec<crate::limits::Bucket>, charged: u64, prompt: u64) -> Budget {
        buckets.retain(|b| b.tokens_per_minute.is_some());
        Budget { buckets, charged, prompt }
    }

    /// Charges what the answer used beyond what was charged before: the upstream's
    /// `usage.total_tokens` when it reported one, else the prompt's estimate plus the answer's
    /// text bytes / 4. Nothing is given back when it used less.
    async fn settle(&self, state: &AppState, usage: Option<u64>, answer_bytes: u64) {
        if self.buckets.is_empty() {
            return;
        }
        let used = usage.unwrap_or_else(|| self.prompt.saturating_add(answer_bytes.div_ceil(4)));
        // An upstream's usage is its word: bounded, so that no figure it sends can overflow a
        // counter (Redis refuses an INCRBY past i64).
        let extra = used.saturating_sub(self.charged).min(MAX_ANSWER_TOKENS * MAX_CHOICES);
        if extra == 0 {
            return;
        }
        if state.inner.limiter.uses_redis() {
            // Off the answer's path: a slow Redis must not hold the answer back.
            let (state, buckets) = (state.clone(), self.buckets.clone());
            tokio::spawn(async move { state.inner.limiter.charge(&buckets, extra).await });
        } else {
            state.inner.limiter.charge(&self.buckets, extra).await;
        }
    }
}

/// An answer's `usage.total_tokens` (or its prompt and completion tokens added).
fn usage_of(body: &Value) -> Option<u64> {
    let u = body.get("usage")?;
    u.get("total_tokens").and_then(Value::as_u64).or_else(|| {
        let p = u.get("prompt_tokens").and_then(Value::as_u64)?;
        Some(p.saturating_add(u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0)))
    })
}

/// Bytes of an answer's message texts (what the answer's tokens are estimated from when the
/// upstream reports no usage).
fn answer_bytes(body: &Value) -> u64 {
    let mut n = 0u64;
    if let Some(choices) = body.get("choices").and_then(Value::as_array) {
        for ch in choices {
            if let Some(m) = ch.get("message") {
                phiops::each_text(m, &mut |s| n = n.saturating_add(s.len() as u64));
            }
        }
    }
    n
}

async fn prepare(
    state: &AppState,
    (who, headers, raw): (Identity, &HeaderMap, &Bytes),
    kind: Kind,
    audit: &mut Audit,
) -> Result<Prepared, ApiError> {
    single_phigate_headers(headers)?;
    let mut body: Value = serde_json::from_slice(raw)
        .map_err(|_| ApiError::InvalidRequest("the body is not JSON"))?;
    if !body.is_object() {
        return Err(ApiError::InvalidRequest("the body must be a JSON object"));
    }
    if kind == Kind::Chat {
        phiops::trim_text_parts(&mut body);
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or(ApiError::InvalidRequest("model is required"))?
        .to_string();
    // The ledger names a model only when the configuration does: the field is the client's
    // free text, and a refused request's could hold anything (a patient's name among it).
    if state.policy().config().models.iter().any(|m| m.name == model) {
        audit.model = Some(model.clone());
    }
    let tighten = match header_str(headers, TIGHTEN_HEADER) {
        Some(h) => Some(
            h.parse::<Handling>()
                .map_err(|_| ApiError::InvalidRequest("unknown X-Phigate-Phi-Handling"))?,
        ),
        None => None,
    };
    let started = Instant::now();
    let pol = state.policy();
    let meta = policy::RequestMeta {
        model: model.clone(),
        use_case: header_str(headers, USE_CASE_HEADER).map(str::to_string),
        tighten,
    };
    let decision = pol.decide(&who, &meta, time::OffsetDateTime::now_utc()).map_err(denial);
    stage("policy", started);
    let decision = decision?;
    audit.use_case = Some(decision.use_case.clone());
    audit.purpose = Some(decision.purpose.clone());
    audit.policy_version = Some(decision.policy_version.clone());

    let texts = phiops::texts(&body, kind, &state.inner.texts)?;
    let estimate = estimate_tokens(&texts, &body)?;
    let limits = buckets(&pol, &who, &decision.use_case);
    state.inner.limiter.admit(&limits, estimate).await?;
    let budget = Budget::new(limits, estimate, prompt_estimate(&texts));
    let mut injection = Vec::new();
    if decision.prompt_injection != policy::InjectionMode::Off {
        for t in &texts {
            injection.extend(state.inner.texts.injection(t.text, t.digest));
        }
        injection.sort_unstable();
        injection.dedup();
        for rule in &injection {
            metrics::counter!("phigate_prompt_injection_total", "rule" => *rule).increment(1);
        }
        if !injection.is_empty() && decision.prompt_injection == policy::InjectionMode::Block {
            return Err(ApiError::PromptInjection);
        }
    }
    if kind == Kind::Chat
        && body.get("stream").and_then(Value::as_bool) == Some(true)
        && decision.stream_scan == policy::StreamScan::Block
    {
        return Err(ApiError::InvalidRequest("streaming is not allowed for this use case"));
    }

    let act = |c: Category| act_of(decision.handling[c.index()]);
    // A named conversation's earlier names, which a client that sends only its last turns does
    // not send again ("Smith's potassium is 3.1?" after "Patient Alan Smith, ..."): read from
    // its vault scope, in process. A conversation past its retention (or shredded) is refused
    // here (`conversation_expired`), whatever this turn holds.
    let conversation = header_str(headers, CONVERSATION_HEADER)
        .map(|conv| scope_under(&state.inner.scope_key, &who.id, conv));
    let earlier = match &conversation {
        Some(scope) if kind == Kind::Chat => {
            let started = std::time::Instant::now();
            let names =
                match state.inner.vault.values_of(scope, Category::Name).await {
                    Ok(names) => names,
                    Err(vault::Error::Invalid { .. }) => return Err(ApiError::InvalidRequest(
                        "this conversation holds more names than a request reads (4096): start \
                         a new one",
                    )),
                    Err(e) => return Err(e.into()),
                };
            stage("vault_read", started);
            phiops::name_parts_of(state.inner.detector.as_ref(), &names)?
        }
        _ => Vec::new(),
    };
    let scanned = phiops::scan_request(
        state.inner.detector.as_ref(),
        &state.inner.texts,
        &texts,
        &act,
        &earlier,
    )?;
    drop(earlier);
    drop(texts);
    audit.categories = scanned.counts.clone();
    // Object keys and numbers: found PHI there can only be refused, or sent as it is where its
    // handling allows (private_only).
    let in_structure = phiops::phi_in_keys_and_numbers(state.inner.detector.as_ref(), &body)?;
    for (c, _) in &in_structure {
        *audit.categories.entry(*c).or_insert(0) += 1;
    }
    let mut blocked = phiops::blocked(&scanned, &act);
    blocked.extend(in_structure.iter().map(|(c, _)| *c).filter(|c| act(*c) == Act::Block));
    blocked.sort();
    blocked.dedup();
    if !blocked.is_empty() {
        return Err(ApiError::PhiBlocked { categories: blocked, in_answer: false });
    }
    if in_structure.iter().any(|(c, _)| act(*c) != Act::PrivateOnly) {
        return Err(ApiError::Unscannable(
            "PHI in an object key or a JSON number cannot be replaced (send such values as strings)",
        ));
    }
    // An embeddings call has no conversation: its input is its own (documents embedded by
    // separate calls get apart numbering, so that a vendor cannot link them by their
    // placeholders; one call's documents share it), apart from any chat's.
    let first = match kind {
        Kind::Chat => first_user_text(&body),
        Kind::Embeddings => std::borrow::Cow::Owned(format!(
            "\0embeddings\0{}",
            body.get("input").map(Value::to_string).unwrap_or_default()
        )),
    };
    let scopes = scope_of(state, &who, conversation, &first);
    drop(first);
    let mut applied = phiops::apply(&mut body, scanned, &act, &state.inner.vault, scopes).await?;
    // Sent as they are (private_only): the request goes to private deployments only.
    if !in_structure.is_empty() {
        applied.phi_present = true;
        for (c, v) in in_structure {
            applied.present.push(c);
            applied.request_values.insert(v);
        }
        applied.present.sort();
        applied.present.dedup();
        applied.loosest = Some(Act::PrivateOnly);
    }
    let deps = pol.eligible_for(&decision, &applied.present, time::OffsetDateTime::now_utc());
    if deps.is_empty() {
        return Err(ApiError::NoEligibleProvider);
    }
    Ok(Prepared { who, decision, body, applied, targets: targets(deps), injection, budget })
}

/// The ledger's decision for a request sent: by the least protective handling applied
/// ([`phiops::Applied::loosest`]), so that `--reason phi_private_only` finds every request that
/// sent a value as it is, whatever else it redacted.
fn ledger_decision(applied: &phiops::Applied) -> (LDecision, &'static str) {
    match applied.loosest {
        Some(Act::Redact) => (LDecision::Redact, "phi_redacted"),
        Some(Act::Tokenize) => (LDecision::Tokenize, "phi_tokenized"),
        Some(Act::PrivateOnly) => (LDecision::Allow, "phi_private_only"),
        _ => (LDecision::Allow, "no_phi"),
    }
}

/// Reveals `tokens` for the caller: the vault's reveal record and `also` (the request's own
/// record, when it is still to be written) are appended in one ledger transaction, and no
/// value comes back unless all are durable. The tokens are the request's own, in the scope
/// its values went to.
async fn reveal(
    state: &AppState,
    p: &Prepared,
    tokens: Vec<String>,
    also: Vec<Record>,
) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    let scope = &p.applied.scope;
    let actor = vault::Actor::new(&ledger::actor_name(&state.inner.hmac, &p.who.id))
        .map_err(|_| ApiError::VaultUnavailable)?;
    let revealed = state
        .inner
        .vault
        .reveal_with(scope, &tokens, &actor, reveal_reason(&p.decision.purpose), also)
        .await?;
    for (t, v) in revealed.iter() {
        out.insert(t.to_string(), v.expose().to_string());
    }
    Ok(out)
}

// ---- routes ----------------------------------------------------------------------------------

async fn chat(State(state): State<AppState>, req: Request) -> Response {
    let started = Instant::now();
    let mut audit = Audit::new(Action::ChatCompletion, started);
    match chat_inner(&state, req, &mut audit).await {
        Ok(r) => r,
        Err(e) => audit.refuse(&state, e).await.into_response(),
    }
}

async fn chat_inner(
    state: &AppState,
    req: Request,
    audit: &mut Audit,
) -> Result<Response, ApiError> {
    let (who, headers, raw) = authenticated_body(state, req, audit).await?;
    let mut p = prepare(state, (who, &headers, &raw), Kind::Chat, audit).await?;
    let stream = p.body.get("stream").and_then(Value::as_bool) == Some(true);
    let (decision, mut reason) = ledger_decision(&p.applied);
    if !p.injection.is_empty() {
        reason = "prompt_injection_flagged";
    }
    let targets = std::mem::take(&mut p.targets);
    let mut disclosure = Disclosure::new(audit, state, (decision, reason), &p, stream);
    let answered =
        state.inner.upstreams.post(targets, "chat/completions", &p.body, &mut disclosure).await?;
    let restore = disclosure.restore;
    // The answer's rules own the request's values from here (nothing else reads them).
    let request_values = std::mem::take(&mut p.applied.request_values);
    let new_phi = match p.decision.new_phi {
        policy::NewPhi::Block => NewPhi::Block,
        #[allow(unreachable_patterns)]
        _ => NewPhi::Redact,
    };
    let client_model = p.decision.model.clone();
    // A JSON-mode answer's content is a JSON document: values go back into it escaped.
    let json_content = matches!(
        p.body.pointer("/response_format/type").and_then(Value::as_str),
        Some("json_object" | "json_schema")
    );
    if !stream {
        let mut body = upstream::read_json(answered.response, answered.target.timeout).await?;
        p.budget.settle(state, usage_of(&body), answer_bytes(&body)).await;
        let out_started = Instant::now();
        let rules = OutputRules {
            scanner: state.inner.detector.clone(),
            request_values,
            new_phi,
            restore: HashMap::new(),
            json_content,
        };
        // Check first (on placeholders), then restore for allowed roles.
        let no_restore = output::rewrite_completion(&rules, &mut body, &client_model)?;
        for c in &no_restore.new_phi {
            metrics::counter!("phigate_output_new_phi_total", "category" => c.as_str())
                .increment(1);
        }
        stage("output", out_started);
        if p.decision.reidentify && !p.applied.tokens.is_empty() {
            let used = phiops::tokens_in(&body.to_string(), p.applied.tokens.keys());
            if !used.is_empty() {
                let started = Instant::now();
                let restore = reveal(state, &p, used, Vec::new()).await?;
                stage("vault", started);
                output::restore_completion(&mut body, &restore, json_content);
            }
        }
        audit.account(decision, reason);
        return Ok((StatusCode::OK, Json(body)).into_response());
    }

    // Streaming: the upstream must answer with an event stream.
    let ct = answered
        .response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("text/event-stream") {
        return Err(ApiError::UpstreamInvalidResponse);
    }
    audit.account(decision, reason);
    let rules = OutputRules {
        scanner: state.inner.detector.clone(),
        request_values,
        new_phi,
        restore,
        json_content,
    };
    let rewriter = StreamRewriter::new(rules, &client_model);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let last_sent = Arc::new(AtomicBool::new(false));
    let to = ToClient { tx, ended: last_sent.clone() };
    let ended = (state.clone(), audit.clone(), p.budget.clone());
    tokio::spawn(pump(answered.response, rewriter, to, answered.target.timeout, ended));
    let body = client_body(rx, last_sent);
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// The stream's channel to the client's body, and whether its last frame went out.
struct ToClient {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    /// Set once `[DONE]` or the closing error event was taken. A body that ends without it
    /// (a frame not taken, the task gone for any reason) ends in an error, not a clean end.
    ended: Arc<AtomicBool>,
}

/// Sends one SSE frame to the client; false when it is gone or has not taken a frame for
/// `idle` (a client that stops reading must not hold the upstream's generation for ever).
async fn send(to: &ToClient, frame: Bytes, idle: std::time::Duration) -> bool {
    matches!(tokio::time::timeout(idle, to.tx.send(Ok(frame))).await, Ok(Ok(())))
}

/// Sends the stream's last frame (`[DONE]` or an error event), and marks the stream ended.
async fn send_last(to: &ToClient, frame: Bytes, idle: std::time::Duration) {
    if send(to, frame, idle).await {
        to.ended.store(true, Ordering::Release);
    }
}

/// The client's body: the frames, then, unless the last frame was taken, an error that makes
/// the server abort the response instead of ending it cleanly: what the client read of an
/// answer it missed part of never looks whole (a client reads to the end of the body,
/// `[DONE]` or not).
fn client_body(
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ended: Arc<AtomicBool>,
) -> Body {
    Body::from_stream(futures_util::stream::unfold(Some(rx), move |rx| {
        let ended = ended.clone();
        async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(item) => Some((item, Some(rx))),
                None if ended.load(Ordering::Acquire) => None,
                None => Some((
                    Err(std::io::Error::other("the stream was cut off before its end")),
                    None,
                )),
            }
        }
    }))
}

/// Whether a rewritten event has anything for the client: choices or usage (an event of
/// another shape rewrites to an empty envelope, not worth a frame).
fn relayed(v: &Value) -> bool {
    v.get("choices").is_some() || v.get("usage").is_some()
}

/// Reads the upstream stream, rewrites each event, sends SSE frames; ends with `[DONE]` or
/// with an error event (OpenAI's SDK raises it) when the upstream fails or the answer must be
/// refused mid-way.
async fn pump(
    mut resp: reqwest::Response,
    mut rw: StreamRewriter,
    tx: ToClient,
    idle: std::time::Duration,
    (state, audit, budget): (AppState, Audit, Budget),
) {
    let mut parser = SseParser::default();
    // Ok(false): the client went away or stopped reading; nothing more is sent, `[DONE]`
    // least of all (what it missed would look like a whole answer).
    let result: Result<bool, ApiError> = async {
        let mut done = false;
        'read: loop {
            let chunk = match tokio::time::timeout(idle, resp.chunk()).await {
                Err(_) => return Err(ApiError::UpstreamTimeout),
                Ok(Err(_)) => return Err(ApiError::UpstreamUnavailable),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            for data in parser.push(&chunk)? {
                if data.trim() == "[DONE]" {
                    done = true;
                    break 'read;
                }
                let v = rw.event(&data)?;
                if relayed(&v) && !send(&tx, sse(&v), idle).await {
                    return Ok(false);
                }
            }
        }
        if !done {
            if let Some(data) = parser.finish() {
                if data.trim() == "[DONE]" {
                    done = true;
                } else {
                    let v = rw.event(&data)?;
                    if relayed(&v) && !send(&tx, sse(&v), idle).await {
                        return Ok(false);
                    }
                }
            }
        }
        // A stream that closed before `[DONE]` and before every choice finished was cut off:
        // its end is an error, never a truncated answer presented as whole.
        if !done && !rw.complete() {
            return Err(ApiError::UpstreamUnavailable);
        }
        Ok(true)
    }
    .await;
    let result = match result {
        Ok(true) => rw.finish().map(Some),
        Ok(false) => Ok(None),
        Err(e) => Err(e),
    };
    // Whatever was generated counts, whether or not it all reached the client.
    budget.settle(&state, rw.usage, rw.text_bytes).await;
    for c in &rw.report.new_phi {
        metrics::counter!("phigate_output_new_phi_total", "category" => c.as_str()).increment(1);
    }
    match result {
        Ok(Some(tail)) => {
            for v in tail {
                if !send(&tx, sse(&v), idle).await {
                    return;
                }
            }
            send_last(&tx, Bytes::from_static(b"data: [DONE]\n\n"), idle).await;
        }
        Ok(None) => {
            tracing::info!("stream ended: the client went away or stopped reading");
            metrics::counter!("phigate_stream_errors_total", "code" => "client_gone").increment(1);
        }
        Err(e) => {
            tracing::warn!(code = e.code(), "stream ended with an error");
            metrics::counter!("phigate_stream_errors_total", "code" => e.code()).increment(1);
            send_last(&tx, sse(&e.body()), idle).await;
            // The answer was cut off: recorded beside the send's record (best effort, the
            // answer has ended either way).
            let decision =
                if e.status().is_server_error() { LDecision::Error } else { LDecision::Deny };
            if let Err(le) = audit.write(&state, decision, e.code()).await {
                tracing::error!(
                    code = le.code(),
                    "could not record a cut-off stream in the ledger"
                );
            }
        }
    }
}

/// An embeddings answer rebuilt from what the API defines, and nothing else: vectors of numbers
/// (or `encoding_format: base64` strings of whole f32s), their indexes, the model the client
/// named, and numeric usage. An upstream's other fields, and text anywhere, are not relayed:
/// nothing of this answer is scanned, so nothing in it may be text. Every component must be
/// finite and within ±[`MAX_COMPONENT`]: bytes of text read as f32s are mostly far outside
/// (`"Patient Maria"` in base64 is 10^25 and up), and an identifier written as a number is too
/// (`[536228741]`). A sanity check on a misbehaving upstream, not a defence against one that
/// hides data in a vector's low bits, which nothing that relays vectors can see.
fn embeddings_answer(body: &Value, model: &str) -> Result<Value, ApiError> {
    use base64::Engine as _;
    let bad = || ApiError::UpstreamInvalidResponse;
    let items = body.get("data").and_then(Value::as_array).ok_or_else(bad)?;
    let mut data = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let index = item.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
        let embedding = match item.get("embedding") {
            Some(Value::Array(v))
                if v.iter().all(|x| x.as_f64().is_some_and(|x| x.abs() <= MAX_COMPONENT)) =>
            {
                Value::Array(v.clone())
            }
            Some(Value::String(b64)) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|_| bad())?;
                if raw.len() % 4 != 0
                    || !raw.chunks_exact(4).all(|c| {
                        let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        x.is_finite() && f64::from(x.abs()) <= MAX_COMPONENT
                    })
                {
                    return Err(bad());
                }
                Value::String(b64.clone())
            }
            _ => return Err(bad()),
        };
        data.push(
            serde_json::json!({"object": "embedding", "index": index, "embedding": embedding}),
        );
    }
    let mut out = serde_json::json!({"object": "list", "data": data, "model": model});
    if let Some(u) = body.get("usage").and_then(Value::as_object) {
        let mut usage = serde_json::Map::new();
        for k in ["prompt_tokens", "total_tokens"] {
            if let Some(n) = u.get(k).and_then(Value::as_u64) {
                usage.insert(k.into(), n.into());
            }
        }
        out["usage"] = Value::Object(usage);
    }
    Ok(out)
}

/// The largest magnitude of an embedding's component relayed ([`embeddings_answer`]): far
/// above what embedding models give (normalized ones stay within ±1).
const MAX_COMPONENT: f64 = 1e4;

async fn embeddings(State(state): State<AppState>, req: Request) -> Response {
    let started = Instant::now();
    let mut audit = Audit::new(Action::Embedding, started);
    let r = async {
        let (who, headers, raw) = authenticated_body(&state, req, &mut audit).await?;
        let p = prepare(&state, (who, &headers, &raw), Kind::Embeddings, &mut audit).await?;
        let (d, reason) = ledger_decision(&p.applied);
        let mut disclosure = Disclosure::new(&mut audit, &state, (d, reason), &p, false);
        let answered = state
            .inner
            .upstreams
            .post(p.targets.clone(), "embeddings", &p.body, &mut disclosure)
            .await?;
        let body = upstream::read_json(answered.response, answered.target.timeout).await?;
        p.budget.settle(&state, usage_of(&body), 0).await;
        let body = embeddings_answer(&body, &p.decision.model)?;
        audit.account(d, reason);
        Ok::<_, ApiError>((StatusCode::OK, Json(body)).into_response())
    }
    .await;
    match r {
        Ok(r) => r,
        Err(e) => audit.refuse(&state, e).await.into_response(),
    }
}

async fn models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let audit = Audit::new(Action::ModelList, Instant::now());
    let r = async {
        let who = authenticate(&state, &headers).await?;
        let pol = state.policy();
        let mut names: Vec<&str> = Vec::new();
        for uc in pol.use_cases_for(&who) {
            for m in &uc.models {
                if !names.contains(&m.as_str()) {
                    names.push(m);
                }
            }
        }
        names.sort_unstable();
        let data: Vec<Value> = names
            .iter()
            .map(|n| serde_json::json!({"id": n, "object": "model", "created": 0, "owned_by": "phigate"}))
            .collect();
        Ok::<_, ApiError>(Json(serde_json::json!({"object": "list", "data": data})).into_response())
    };
    match r.await {
        Ok(r) => r,
        // A refusal (a missing or wrong key) is recorded like any other: a listing is the
        // cheapest way to test stolen keys.
        Err(e) => audit.refuse(&state, e).await.into_response(),
    }
}

async fn deidentify(State(state): State<AppState>, req: Request) -> Response {
    let started = Instant::now();
    let mut audit = Audit::new(Action::Deidentify, started);
    let r = async {
        let (who, _, raw) = authenticated_body(&state, req, &mut audit).await?;
        // A caller none of whose roles the configuration gives a use case uses nothing.
        let pol = state.policy();
        let use_cases = pol.use_cases_for(&who);
        if use_cases.is_empty() {
            return Err(ApiError::RoleNotAllowed);
        }
        // The keyed modes answer with the gateway's one deidentify key: whoever may query them
        // can test guesses (a name's hash, a known date's shift), which is re-identification.
        // Only roles that may re-identify in one of their use cases get them.
        let may_reidentify = use_cases
            .iter()
            .any(|u| u.output.reidentify_roles.iter().any(|r| who.roles.contains(r)));
        let body: Value = serde_json::from_slice(&raw)
            .map_err(|_| ApiError::InvalidRequest("the body is not JSON"))?;
        let text = body
            .get("text")
            .and_then(Value::as_str)
            .ok_or(ApiError::InvalidRequest("text is required"))?;
        let mode = body.get("mode").and_then(Value::as_str).unwrap_or("scan");
        let transform = match mode {
            "scan" => None,
            other => {
                let m: phi::transform::Mode =
                    other.parse().map_err(|_| ApiError::InvalidRequest("unknown mode"))?;
                let keyed =
                    matches!(m, phi::transform::Mode::Hash | phi::transform::Mode::Surrogate);
                if keyed && !may_reidentify {
                    return Err(ApiError::RoleNotAllowed);
                }
                Some(m)
            }
        };
        // The caller's limits apply here too (a role's, and its key's use case's): the keyed
        // modes answer guesses, and each answer is a scan and a durable record. Counted once
        // the request is known to be one that is answered.
        let limits = buckets(&pol, &who, who.default_use_case.as_deref().unwrap_or(""));
        state.inner.limiter.admit(&limits, (text.len() as u64).div_ceil(4)).await?;
        let findings = phiops::scan(state.inner.detector.as_ref(), text)?;
        for f in &findings {
            *audit.categories.entry(f.category).or_insert(0) += 1;
        }
        let out = match transform {
            None => {
                let idx = phi::text::CharIndex::new(text);
                let list: Vec<Value> = findings
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "start": idx.char_offset(f.start), "end": idx.char_offset(f.end),
                            "category": f.category.as_str(), "subtype": f.subtype,
                            // Two decimals, as `phigate scan` prints them: 0.85, not the f32's
                            // 0.8500000238418579 widened to f64.
                            "score": (f64::from(f.score) * 100.0).round() / 100.0,
                        })
                    })
                    .collect();
                serde_json::json!({ "findings": list })
            }
            Some(m) => {
                let mut key = state.inner.scope_key.clone();
                key.extend_from_slice(b"\0deidentify");
                let t = phi::transform::Transformer::new(m).with_key(&key);
                let mut ctx = phi::transform::Context::new();
                let text =
                    t.apply(text, &findings, &mut ctx).map_err(|_| ApiError::ScannerUnavailable)?;
                let cats: Vec<&str> = findings.iter().map(|f| f.category.as_str()).collect();
                serde_json::json!({ "text": text, "mode": m.as_str(), "categories": cats })
            }
        };
        let decision = if findings.is_empty() { LDecision::Allow } else { LDecision::Redact };
        audit.write(&state, decision, "deidentify").await?;
        audit.account(decision, "deidentify");
        Ok::<_, ApiError>(Json(out).into_response())
    }
    .await;
    match r {
        Ok(r) => r,
        Err(e) => audit.refuse(&state, e).await.into_response(),
    }
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let mut checks = serde_json::Map::new();
    let store_ok = state.inner.store.ping().await.is_ok();
    checks.insert("store".into(), Value::Bool(store_ok));
    let vault_ok = state.inner.vault.scope_key("phigate-readyz").await.is_ok();
    checks.insert("vault".into(), Value::Bool(vault_ok));
    // A ledger that refuses appends (its journal's writer stopped after a failed write, or the
    // store cannot take its records) refuses every request.
    let ledger_ok = state.inner.ledger.health().is_ok();
    checks.insert("ledger".into(), Value::Bool(ledger_ok));
    let mut ok = store_ok && vault_ok && ledger_ok;
    if state.inner.limiter.uses_redis() {
        let r = state.inner.limiter.ping().await.is_ok();
        checks.insert("redis".into(), Value::Bool(r));
        // With the per-replica fallback opted in, requests are served without Redis.
        ok &= r || state.inner.limiter.falls_back_locally();
    }
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body =
        serde_json::json!({"status": if ok { "ready" } else { "unavailable" }, "checks": checks});
    (status, Json(body)).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let mut resp = state.render_metrics().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_method_is_a_standard_one_or_other() {
        let odd = axum::http::Method::from_bytes(b"ALANSMITH4471902").unwrap();
        assert_eq!(method_label(&odd), "_OTHER");
        assert_eq!(method_label(&axum::http::Method::POST), "POST");
    }

    #[test]
    fn a_phigate_header_that_does_not_decode_is_refused_not_ignored() {
        let mut h = HeaderMap::new();
        h.insert(TIGHTEN_HEADER, HeaderValue::from_static("block"));
        assert!(single_phigate_headers(&h).is_ok());
        for name in [USE_CASE_HEADER, TIGHTEN_HEADER, CONVERSATION_HEADER] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_bytes(b"bl\xf6ck").unwrap());
            assert!(header_str(&h, name).is_none());
            assert!(
                matches!(single_phigate_headers(&h), Err(ApiError::InvalidRequest(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn an_embeddings_answer_keeps_vectors_and_numbers_only() {
        let up = serde_json::json!({"object": "list", "model": "up-model", "note": "Alan Smith",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -2.0],
                      "text": "Alan Smith"}],
            "usage": {"prompt_tokens": 3, "total_tokens": 3, "detail": "Alan Smith"}});
        let out = embeddings_answer(&up, "client-model").unwrap();
        assert!(!out.to_string().contains("Alan"), "{out}");
        assert_eq!(out["model"], "client-model");
        assert_eq!(out["data"][0]["embedding"], serde_json::json!([0.1, -2.0]));
        assert_eq!(out["usage"]["total_tokens"], 3);
        // base64 of whole f32s passes; text in a vector, or base64 of other lengths, does not.
        let b64 = serde_json::json!({"data": [{"index": 0, "embedding": "AACAPwAAAEA="}]});
        assert!(embeddings_answer(&b64, "m").is_ok());
        for bad in [
            serde_json::json!({"data": [{"embedding": [0.1, "Alan Smith"]}]}),
            serde_json::json!({"data": [{"embedding": "QWxhbiBTbWl0aA=="}]}),
            serde_json::json!({"data": [{"embedding": "not base64!"}]}),
            // Text whose length is a multiple of 4, and an identifier as a number.
            serde_json::json!({"data": [{"embedding": "UGF0aWVudCBNYXJpYSBHYXJjaWEgU1NOIDUzNi0yMi04NzQx"}]}),
            serde_json::json!({"data": [{"embedding": [0.1, 536228741]}]}),
            serde_json::json!({"object": "list"}),
        ] {
            assert!(embeddings_answer(&bad, "m").is_err(), "{bad}");
        }
    }
}
