//! A real local upstream (axum on 127.0.0.1:0 that records every body and answers like OpenAI,
//! streaming too) and the real phigate stack (SQLite temp store, vault, ledger).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use tower::ServiceExt;

/// What the fake upstream does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers like OpenAI.
    Normal,
    /// 500 on everything.
    Down,
    /// Sleeps 3 s before answering.
    Slow,
    /// Answers `200` with a body that is not JSON.
    Garbage,
    /// Answers `307 Temporary Redirect` to the same path on this port of 127.0.0.1 (a 307
    /// asks the client to send the same body again there).
    Redirect(u16),
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub bodies: Arc<Mutex<Vec<String>>>,
    pub mode: Arc<Mutex<Mode>>,
    pub hits: Arc<AtomicUsize>,
    /// Extra text appended to every answer (to plant new PHI).
    pub extra: Arc<Mutex<String>>,
    /// `deployment|query|api-key` of every Azure-style call.
    pub azure: Arc<Mutex<Vec<String>>>,
    /// A canned answer instead of the echo: for a stream, an array of chunks (sent as they
    /// are, then `[DONE]`); else the whole body.
    pub canned: Arc<Mutex<Option<Value>>>,
}

impl Upstream {
    pub fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
    pub fn set_extra(&self, s: &str) {
        *self.extra.lock().unwrap() = s.to_string();
    }
    /// Answers `v` from now on (see [`Upstream::canned`]); `Value::Null`: the echo again.
    pub fn set_canned(&self, v: Value) {
        *self.canned.lock().unwrap() = (!v.is_null()).then_some(v);
    }
    pub fn all_bodies(&self) -> String {
        self.bodies.lock().unwrap().join("\n")
    }
    pub fn count(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }
}

/// The answer: "Noted: " + the last user message's text (with whatever placeholders it holds).
fn answer_text(body: &Value, extra: &str) -> String {
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => {
                parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(" ")
            }
            _ => String::new(),
        })
        .unwrap_or_default();
    format!("Noted: {last}{extra}")
}

async fn azure_chat(
    State(u): State<Upstream>,
    axum::extract::Path(dep): axum::extract::Path<String>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let key = headers.get("api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let bearer = headers.contains_key("authorization");
    u.azure.lock().unwrap().push(format!("{dep}|{}|{key}|bearer={bearer}", q.unwrap_or_default()));
    chat(State(u), body).await
}

async fn chat(State(u): State<Upstream>, body: String) -> Response {
    u.hits.fetch_add(1, Ordering::SeqCst);
    u.bodies.lock().unwrap().push(body.clone());
    let mode = *u.mode.lock().unwrap();
    match mode {
        Mode::Down => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded: secret detail")
                .into_response()
        }
        Mode::Slow => tokio::time::sleep(Duration::from_secs(3)).await,
        Mode::Garbage => return (StatusCode::OK, "<html>definitely not json").into_response(),
        Mode::Redirect(port) => {
            return Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header("location", format!("http://127.0.0.1:{port}/v1/chat/completions"))
                .body(Body::empty())
                .unwrap()
        }
        Mode::Normal => {}
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let canned = u.canned.lock().unwrap().clone();
    match canned {
        Some(Value::Array(chunks)) if v["stream"] == true => {
            let mut out = String::new();
            for c in chunks {
                out.push_str(&format!("data: {c}\n\n"));
            }
            out.push_str("data: [DONE]\n\n");
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(out))
                .unwrap();
        }
        Some(whole) if v["stream"] != true => return Json(whole).into_response(),
        _ => {}
    }
    let extra = u.extra.lock().unwrap().clone();
    let text = answer_text(&v, &extra);
    let model = v["model"].as_str().unwrap_or("m").to_string();
    if v["stream"] == true {
        // Chunking: `x_split` = one cut at that byte (two chunks), else `x_chunk` bytes a chunk.
        let mut pieces: Vec<String> = Vec::new();
        if let Some(at) = v["x_split"].as_u64() {
            let at = at as usize;
            pieces.push(text[..at].to_string());
            pieces.push(text[at..].to_string());
        } else {
            let n = v["x_chunk"].as_u64().unwrap_or(5) as usize;
            let mut i = 0;
            while i < text.len() {
                let mut j = (i + n).min(text.len());
                while !text.is_char_boundary(j) {
                    j += 1;
                }
                pieces.push(text[i..j].to_string());
                i = j;
            }
        }
        let mut out = String::new();
        let head = json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":model,
            "choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]});
        out.push_str(&format!("data: {head}\n\n"));
        for p in pieces {
            let c = json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":model,
                "choices":[{"index":0,"delta":{"content":p},"finish_reason":null}]});
            out.push_str(&format!("data: {c}\n\n"));
        }
        let end = json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":model,
            "choices":[{"index":0,"delta":{},"finish_reason":"stop"}]});
        out.push_str(&format!("data: {end}\n\ndata: [DONE]\n\n"));
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(out))
            .unwrap();
    }
    Json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        // `x_usage` in the request: the total the answer reports (else 2).
        "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                  "total_tokens": v["x_usage"].as_u64().unwrap_or(2)}
    }))
    .into_response()
}

async fn embeddings(State(u): State<Upstream>, body: String) -> Response {
    u.bodies.lock().unwrap().push(body);
    Json(json!({"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"e","usage":{"prompt_tokens":1,"total_tokens":1}})).into_response()
}

pub async fn upstream() -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let u = Upstream {
        addr: listener.local_addr().unwrap(),
        bodies: Arc::default(),
        mode: Arc::new(Mutex::new(Mode::Normal)),
        hits: Arc::default(),
        extra: Arc::default(),
        azure: Arc::default(),
        canned: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/openai/deployments/{dep}/chat/completions", post(azure_chat))
        .with_state(u.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    u
}

/// A port with nothing listening.
pub async fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    drop(l);
    p
}

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub state: gateway::AppState,
    pub store: store::Store,
    pub upstream: Upstream,
    /// clinician (may re-identify) and researcher (placeholders only) keys.
    pub clinician: String,
    pub researcher: String,
    pub blocker: String,
    pub limited: String,
    pub cloud: String,
}

pub const CANARY_NAME: &str = "Alan Smith";
pub const CANARY_DATE: &str = "03/14/2021";
pub const CANARY_MRN: &str = "4471902";
pub const NOTE: &str = "Seen by Dr. Alan Smith on 03/14/2021, MRN: 4471902.";

fn config(
    dir: &std::path::Path,
    up: &str,
    down_port: u16,
    extra: &str,
    extra_limits: &str,
) -> String {
    let b64 = |n: usize, seed: u8| base64::engine::general_purpose::STANDARD.encode(vec![seed; n]);
    std::fs::write(dir.join("hmac.key"), b64(32, 7)).unwrap();
    std::fs::write(dir.join("ledger.key"), b64(32, 8)).unwrap();
    std::fs::write(dir.join("vault.kek"), b64(32, 9)).unwrap();
    std::fs::write(dir.join("azure.key"), "azure-test-key").unwrap();
    let up_host = up.trim_start_matches("http://").trim_end_matches("/v1");
    format!(
        r#"
server:
  max_body_bytes: 65536
audit:
  hmac_key: file:hmac.key
  signing_key: file:ledger.key
vault:
  kek: file:vault.kek
organization:
  blocked_categories: [SSN]
providers:
  - name: local
    kind: openai
    base_url: {up}
    hosting: private
    timeout_ms: 1000
    retries: 1
  - name: cloud-nobaa
    kind: openai
    base_url: {up}
    hosting: cloud
    baa: {{ signed: false }}
  - name: azure-baa
    kind: azure
    base_url: http://{up_host}
    api_key: file:azure.key
    api_version: 2024-10-21
    hosting: cloud
    baa: {{ signed: true, expires: 2099-01-01 }}
  - name: dead
    kind: openai
    base_url: http://127.0.0.1:{down_port}/v1
    hosting: private
    timeout_ms: 1000
    retries: 1
models:
  - name: clinical-chat
    deployments:
      - {{ provider: local, model: upstream-llama, weight: 1 }}
  - name: cloud-chat
    deployments:
      - {{ provider: cloud-nobaa, model: gpt-x }}
  - name: azure-chat
    deployments:
      - {{ provider: azure-baa, model: gpt4o-deployment }}
  - name: dead-chat
    deployments:
      - {{ provider: dead, model: nothing }}
  - name: fallback-chat
    deployments:
      - {{ provider: dead, model: nothing, weight: 100 }}
      - {{ provider: local, model: upstream-llama, weight: 1 }}
roles: [clinician, researcher, service]
use_cases:
  - name: clinical-notes
    purpose: treatment
    roles: [clinician, researcher]
    models: [clinical-chat, cloud-chat, dead-chat, fallback-chat, azure-chat]
    phi:
      default: tokenize
    output:
      reidentify_roles: [clinician]
      new_phi: redact
      stream_scan: holdback
    prompt_injection: block
  - name: strict
    purpose: operations
    roles: [service]
    models: [clinical-chat]
    phi:
      default: block
    output:
      stream_scan: block
  - name: limited
    purpose: operations
    roles: [service]
    models: [clinical-chat]
    phi:
      default: redact
{extra}
limits:
  - {{ use_case: limited, requests_per_minute: 3 }}
{extra_limits}
"#
    )
}

pub async fn stack() -> Stack {
    stack_with(None, "", "").await
}

pub async fn stack_with(
    detector: Option<Arc<dyn gateway::Detector>>,
    extra_use_cases: &str,
    extra_limits: &str,
) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream().await;
    let down = closed_port().await;
    let text =
        config(dir.path(), &format!("http://{}/v1", up.addr), down, extra_use_cases, extra_limits);
    std::fs::write(dir.path().join("phigate.yaml"), &text).unwrap();
    let cfg = policy::Config::from_yaml(&text, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let pol = policy::Policy::new(cfg).unwrap_or_else(|e| panic!("{e}"));
    let store =
        store::Store::open(&dir.path().join("phigate.db").display().to_string()).await.unwrap();
    let ledger =
        ledger::Ledger::open(store.clone(), ledger::LedgerConfig::new("test.example/phigate"))
            .await
            .unwrap();
    let kek = Arc::new(
        vault::LocalKek::from_base64(&base64::engine::general_purpose::STANDARD.encode([9u8; 32]))
            .unwrap(),
    );
    let vault = vault::Vault::new(
        store.clone(),
        ledger.clone(),
        vault::Keyring::new(kek),
        vault::VaultConfig::default(),
    );
    let hmac = [7u8; 32];
    let state = match detector {
        Some(d) => gateway::AppState::with_detector(pol, store.clone(), ledger, vault, &hmac, d),
        None => gateway::AppState::new(pol, store.clone(), ledger, vault, &hmac),
    }
    .unwrap();
    Stack {
        clinician: new_key(&store, "user:dr-a", "clinician", "clinical-notes").await,
        researcher: new_key(&store, "user:res-b", "researcher", "clinical-notes").await,
        blocker: new_key(&store, "svc:strict-bot", "service", "strict").await,
        limited: new_key(&store, "svc:limited-bot", "service", "limited").await,
        cloud: new_key(&store, "user:dr-c", "clinician", "clinical-notes").await,
        dir,
        state,
        store,
        upstream: up,
    }
}

/// A new API key for identity `id` holding `role`, bound to use case `uc`.
pub async fn new_key(store: &store::Store, id: &str, role: &str, uc: &str) -> String {
    policy::create_key(store, id, &[role.to_string()], Some(uc), None).await.unwrap().1
}

/// A use case for the service role on `clinical-chat` that redacts PHI (YAML list item).
pub fn service_use_case(name: &str) -> String {
    format!(
        "  - name: {name}\n    purpose: operations\n    roles: [service]\n    models: [clinical-chat]\n    phi:\n      default: redact\n"
    )
}

/// The `redis:` section, to follow the extra use cases.
pub fn redis_section(url: &str, allow_local_fallback: bool) -> String {
    format!("redis:\n  url: {url}\n  allow_local_fallback: {allow_local_fallback}\n")
}

/// A use case name no other run shares (the Redis counters are keyed by it): `prefix`, a dash
/// and 16 lower-case letters.
pub fn unique_use_case(prefix: &str) -> String {
    use rand::Rng;
    let mut r = rand::thread_rng();
    let tail: String = (0..16).map(|_| char::from(b'a' + r.gen_range(0..26u8))).collect();
    format!("{prefix}-{tail}")
}

impl Stack {
    /// A new API key on this stack's store (see [`new_key`]).
    pub async fn key(&self, id: &str, role: &str, uc: &str) -> String {
        new_key(&self.store, id, role, uc).await
    }

    /// `POST /v1/chat/completions` with `key` and no extra header.
    pub async fn chat(&self, key: &str, body: Value) -> Answer {
        self.chat_with(Some(key), &[], body).await
    }

    /// `POST /v1/chat/completions` with an optional key and extra headers.
    pub async fn chat_with(
        &self,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Answer {
        call(&self.state, "POST", "/v1/chat/completions", key, headers, Some(body)).await
    }

    /// `POST path` of a JSON body with `key`.
    pub async fn post(&self, path: &str, key: &str, body: Value) -> Answer {
        call(&self.state, "POST", path, Some(key), &[], Some(body)).await
    }

    /// One chat request of a system message and the user message `text` to `model`.
    pub async fn ask(&self, key: &str, model: &str, text: &str) -> Answer {
        self.chat(key, chat_body(model, text)).await
    }

    /// `GET path`, with a key if given.
    pub async fn get(&self, path: &str, key: Option<&str>) -> Answer {
        call(&self.state, "GET", path, key, &[], None).await
    }

    /// Every ledger record, decoded, in order.
    pub async fn records(&self) -> Vec<ledger::Record> {
        let n = self.store.ledger_len().await.unwrap();
        self.store
            .ledger_read(0, n)
            .await
            .unwrap()
            .iter()
            .map(|e| ledger::Record::decode(&e.body).unwrap())
            .collect()
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_string()
    }
    /// A response header as text, if present (and visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn call(
    state: &gateway::AppState,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    for (h, v) in headers {
        b = b.header(*h, *v);
    }
    let req = match body {
        Some(v) => {
            b.header("content-type", "application/json").body(Body::from(v.to_string())).unwrap()
        }
        None => b.body(Body::empty()).unwrap(),
    };
    let resp = gateway::app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Answer { status, headers, body: String::from_utf8(bytes.to_vec()).unwrap() }
}

pub fn chat_body(model: &str, user: &str) -> Value {
    json!({"model": model, "messages": [
        {"role": "system", "content": "You are a clinical assistant."},
        {"role": "user", "content": user}
    ]})
}

/// [`chat_body`] with `"stream": true`.
pub fn stream_body(model: &str, user: &str) -> Value {
    let mut b = chat_body(model, user);
    b["stream"] = json!(true);
    b
}

/// Asserts `status` and the stable `code` in OpenAI's error shape
/// (`{"error":{"message","type","code","param":null}}`).
#[track_caller]
pub fn assert_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.body);
    assert_eq!(a.code(), code, "{}", a.body);
    let e = &a.json()["error"];
    assert!(
        e["message"].is_string() && e["type"].is_string() && e["param"].is_null(),
        "{}",
        a.body
    );
}

/// Asserts a `Retry-After` header of a whole number of seconds in `1..=max_secs` (a refusal
/// of a per-minute limit: at most until the window's end).
#[track_caller]
pub fn assert_retry_after(a: &Answer, max_secs: u64) {
    let Some(v) = a.header("retry-after") else {
        panic!("a {} without Retry-After: {:?}", a.status, a.headers)
    };
    let Ok(secs) = v.parse::<u64>() else { panic!("Retry-After is not whole seconds: {v:?}") };
    assert!((1..=max_secs).contains(&secs), "Retry-After {secs} not in 1..={max_secs}");
}

/// The text of an SSE answer: every `delta.content` joined; panics unless it ends with [DONE].
pub fn sse_text(body: &str) -> String {
    assert!(body.ends_with("data: [DONE]\n\n"), "stream did not end with [DONE]: {body}");
    let mut out = String::new();
    for ev in body.split("\n\n").filter(|e| !e.is_empty()) {
        let data =
            ev.strip_prefix("data: ").unwrap_or_else(|| panic!("not an SSE data line: {ev}"));
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        assert!(v.get("error").is_none(), "error event: {data}");
        for ch in v["choices"].as_array().unwrap() {
            if let Some(s) = ch["delta"]["content"].as_str() {
                out.push_str(s);
            }
        }
    }
    out
}
