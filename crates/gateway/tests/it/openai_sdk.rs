//! The real `openai` Python SDK (pinned, installed from PyPI into a venv under the cargo target
//! dir) as the client of the gateway, which stands in front of an OpenAI-compatible upstream that
//! runs inside this test and records every body it receives.
//!
//! What is proven, with the SDK's own types on the client side:
//! - no PHI canary value reaches the upstream, in any body, for any call;
//! - the answer comes back re-identified for a role in `reidentify_roles`, and with placeholders
//!   only for a role that is not, both with and without `stream=True`;
//! - with the upstream's SSE content cut at every possible position (one cut per request, and one
//!   character per event), re-identification still holds;
//! - `embeddings.create` and `models.list` work through the gateway;
//! - refusals reach the SDK as its typed exceptions with the stable `code`, and nothing of a
//!   refused request reaches the upstream;
//! - the store's files hold no canary value after the run.
//!
//! The Python side lives in `tests/openai_sdk/phigate_sdk.py` at the repository root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::{json, Value};

/// The `openai` package version the tests pin.
const OPENAI_VERSION: &str = "3.51.0";

/// Values that must never reach the upstream (each is found by `phi` in the prompts below).
const CANARIES: &[&str] = &[
    "Margaret Okafor",
    "Okafor",
    "48213377",
    "03/14/1961",
    "(617) 555-0142",
    "555-0142",
    "m.okafor@example.org",
    "okafor@example",
    "512-44-7812",
];

/// The prompt every chat case sends (with a marker after it, to find its upstream body).
const PROMPT: &str =
    "Patient Margaret Okafor (MRN 48213377, DOB 03/14/1961) called from (617) 555-0142 \
and wrote from m.okafor@example.org: cough for 3 days, temp 38.5 °C. Please summarize the visit.";

// ---------------------------------------------------------------------------------------------
// The Python SDK

/// `python` of a venv with `openai==OPENAI_VERSION`, made once per target dir. Fails loudly with
/// pip's output when it cannot be made: never a silent skip.
fn venv_python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = tmp.join(format!("py-venv-openai-{OPENAI_VERSION}"));
        let python = dir.join("bin").join("python");
        let ready = dir.join(".openai-installed");
        // Tests in other processes (nextest runs each in its own) may want the venv at the same
        // moment: one makes it while the others wait, instead of one removing it under another.
        std::fs::create_dir_all(tmp).expect("create the target's temp dir");
        let lock = std::fs::File::create(tmp.join(format!("py-venv-openai-{OPENAI_VERSION}.lock")))
            .expect("create the venv's lock file");
        lock.lock().expect("lock the venv");
        if ready.exists() && python.exists() {
            return python;
        }
        let _ = std::fs::remove_dir_all(&dir);
        run_loud(Command::new("python3").arg("-m").arg("venv").arg(&dir), "python3 -m venv");
        run_loud(
            Command::new(&python)
                .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q"])
                .arg(format!("openai=={OPENAI_VERSION}")),
            "pip install openai",
        );
        let out = run_loud(
            Command::new(&python).args(["-c", "import openai; print(openai.__version__)"]),
            "import openai",
        );
        assert_eq!(out.trim(), OPENAI_VERSION, "the venv holds another openai version");
        std::fs::write(&ready, OPENAI_VERSION).expect("write the venv marker");
        python
    })
    .clone()
}

fn run_loud(cmd: &mut Command, what: &str) -> String {
    let out =
        cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn sdk_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/openai_sdk/phigate_sdk.py")
}

/// Runs a batch of cases through `phigate_sdk.py batch`, keys passed by environment.
async fn sdk_batch(base_url: &str, keys: &[(&str, &str)], cases: Value) -> Value {
    let python = venv_python();
    let base_url = base_url.to_string();
    let keys: Vec<(String, String)> =
        keys.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = Command::new(&python)
            .arg(sdk_script())
            .arg("batch")
            .env("OPENAI_BASE_URL", &base_url)
            .env_remove("OPENAI_API_KEY")
            .envs(keys)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the SDK script");
        let input = serde_json::to_vec(&cases).expect("cases serialize");
        child.stdin.take().expect("stdin").write_all(&input).expect("write cases");
        let out = child.wait_with_output().expect("SDK script output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "phigate_sdk.py failed ({}):\n{}\n{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<Value>(&stdout)
            .unwrap_or_else(|e| panic!("SDK output is not JSON ({e}): {stdout}"))
    })
    .await
    .expect("SDK task")
}

fn chat_case(name: &str, key_env: &str, content: &str, stream: bool) -> Value {
    json!({"name": name, "op": "chat", "key_env": key_env, "model": "clinical-chat", "stream": stream,
           "messages": [{"role": "system", "content": "You are a careful clinical assistant."},
                        {"role": "user", "content": content}]})
}

// ---------------------------------------------------------------------------------------------
// The upstream: OpenAI's wire format, echoing the last user message, recording every body

/// How the upstream cuts its streamed content into SSE events.
#[derive(Clone, Copy, Debug)]
enum Split {
    /// Events of this many characters.
    Pieces(usize),
    /// Two events, cut after `k` characters, `k` taken from a counter that each stream bumps.
    CutEach,
}

struct Seen {
    path: String,
    authorization: Option<String>,
    body: String,
}

struct Upstream {
    seen: Mutex<Vec<Seen>>,
    split: Mutex<Split>,
    next_cut: AtomicUsize,
}

impl Upstream {
    fn count(&self) -> usize {
        self.seen.lock().expect("seen").len()
    }
    fn set_split(&self, s: Split) {
        *self.split.lock().expect("split") = s;
        self.next_cut.store(0, Ordering::SeqCst);
    }
    /// The last user message of the recorded chat body that contains `marker`.
    fn user_content_with(&self, marker: &str) -> String {
        let seen = self.seen.lock().expect("seen");
        let hits: Vec<&Seen> = seen.iter().filter(|s| s.body.contains(marker)).collect();
        assert_eq!(hits.len(), 1, "expected one upstream body with {marker}, got {}", hits.len());
        let v: Value = serde_json::from_str(&hits[0].body).expect("recorded body is JSON");
        last_user_text(&v)
    }
}

fn last_user_text(req: &Value) -> String {
    req["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
            _ => String::new(),
        })
        .unwrap_or_default()
}

fn record(up: &Upstream, path: &str, headers: &HeaderMap, body: &Bytes) {
    up.seen.lock().expect("seen").push(Seen {
        path: path.to_string(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: String::from_utf8_lossy(body).into_owned(),
    });
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .expect("response")
}

fn chunk_event(model: &str, delta: Value, finish: Value, usage: Option<Value>) -> Bytes {
    let mut v = json!({
        "id": "chatcmpl-upstream-test", "object": "chat.completion.chunk", "created": 1_700_000_000u64,
        "model": model, "service_tier": "default", "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
    });
    if let Some(u) = usage {
        v["usage"] = u;
    }
    Bytes::from(format!("data: {v}\n\n"))
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
           "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
               "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
}

async fn up_chat(State(up): State<Arc<Upstream>>, headers: HeaderMap, body: Bytes) -> Response {
    record(&up, "/v1/chat/completions", &headers, &body);
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {"message": "We could not parse the JSON body of your request.",
                              "type": "invalid_request_error", "param": null, "code": null}}),
        );
    };
    let model = req["model"].as_str().unwrap_or("unknown").to_string();
    let content = format!("echo: {}", last_user_text(&req));
    let n_prompt = body.len() / 4;
    let n_completion = content.len() / 4;
    if req["stream"] != json!(true) {
        return json_response(
            StatusCode::OK,
            &json!({
                "id": "chatcmpl-upstream-test", "object": "chat.completion", "created": 1_700_000_000u64,
                "model": model,
                "choices": [{"index": 0,
                             "message": {"role": "assistant", "content": content, "refusal": null, "annotations": []},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": usage(n_prompt, n_completion),
                "service_tier": "default", "system_fingerprint": "fp_test"
            }),
        );
    }
    let include_usage = req["stream_options"]["include_usage"] == json!(true);
    let u = |v: Option<Value>| if include_usage { Some(v.unwrap_or(Value::Null)) } else { None };
    let chars: Vec<char> = content.chars().collect();
    let pieces: Vec<String> = match *up.split.lock().expect("split") {
        Split::Pieces(n) => chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect(),
        Split::CutEach => {
            let k = up.next_cut.fetch_add(1, Ordering::SeqCst).min(chars.len());
            vec![chars[..k].iter().collect(), chars[k..].iter().collect()]
        }
    };
    let mut events = vec![chunk_event(
        &model,
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
        u(None),
    )];
    for p in pieces {
        events.push(chunk_event(&model, json!({"content": p}), Value::Null, u(None)));
    }
    events.push(chunk_event(&model, json!({}), json!("stop"), u(None)));
    if include_usage {
        let mut last = json!({"id": "chatcmpl-upstream-test", "object": "chat.completion.chunk",
                              "created": 1_700_000_000u64, "model": model, "service_tier": "default",
                              "system_fingerprint": "fp_test", "choices": []});
        last["usage"] = usage(n_prompt, n_completion);
        events.push(Bytes::from(format!("data: {last}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    // One body frame per event, each handed over on its own poll, as a real server streams.
    let stream = futures_util::stream::iter(events).then(|e| async move {
        tokio::task::yield_now().await;
        Ok::<_, std::convert::Infallible>(e)
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("response")
}

async fn up_embeddings(
    State(up): State<Arc<Upstream>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&up, "/v1/embeddings", &headers, &body);
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let inputs: Vec<String> = match &req["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
            .collect(),
        _ => Vec::new(),
    };
    // Floats, or their little-endian bytes in base64 when asked (the SDK asks by default).
    let base64 = req["encoding_format"] == json!("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut v = [0f32; 8];
            for (j, b) in t.bytes().enumerate() {
                v[j % 8] += f32::from(b) / 1000.0;
            }
            let embedding = if base64 {
                let raw: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(raw))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data, "model": req["model"], "usage": {"prompt_tokens": 8, "total_tokens": 8}}),
    )
}

async fn up_models(State(up): State<Arc<Upstream>>, headers: HeaderMap) -> Response {
    record(&up, "/v1/models", &headers, &Bytes::new());
    json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": [{"id": "upstream-model", "object": "model", "created": 1_700_000_000u64, "owned_by": "test"}]}),
    )
}

async fn start_upstream() -> (Arc<Upstream>, String) {
    let up = Arc::new(Upstream {
        seen: Mutex::new(Vec::new()),
        split: Mutex::new(Split::Pieces(4)),
        next_cut: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(up_chat))
        .route("/v1/embeddings", post(up_embeddings))
        .route("/v1/models", get(up_models))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (up, format!("http://{addr}/v1"))
}

// ---------------------------------------------------------------------------------------------
// Assertions

fn strings_of(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| strings_of(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings_of(x, out)),
        _ => {}
    }
}

/// No canary in any recorded body, raw or JSON-decoded (escapes undone).
fn assert_no_canary_upstream(up: &Upstream) {
    let seen = up.seen.lock().expect("seen");
    for (i, s) in seen.iter().enumerate() {
        let mut decoded = String::new();
        if let Ok(v) = serde_json::from_str::<Value>(&s.body) {
            strings_of(&v, &mut decoded);
        }
        for c in CANARIES {
            assert!(
                !s.body.contains(c) && !decoded.contains(c),
                "upstream body #{i} ({}) carries a PHI canary (#{} of CANARIES)",
                s.path,
                CANARIES.iter().position(|x| x == c).unwrap_or(0)
            );
        }
    }
}

fn has_canary(text: &str) -> bool {
    CANARIES.iter().any(|c| text.contains(c))
}

/// Placeholders of the `[CATEGORY_N]` shape in `text`.
fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) => {
                let inner = &after[..close];
                let ok = inner.rsplit_once('_').is_some_and(|(cat, n)| {
                    !cat.is_empty()
                        && cat.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                        && !n.is_empty()
                        && n.chars().all(|c| c.is_ascii_digit())
                });
                if ok {
                    out.push(format!("[{inner}]"));
                }
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    out
}

fn ok_content<'a>(results: &'a Value, name: &str) -> &'a str {
    let r = &results[name];
    assert_eq!(r["ok"], json!(true), "case {name} failed: {r}");
    r["content"].as_str().unwrap_or_else(|| panic!("case {name}: no content: {r}"))
}

// ---------------------------------------------------------------------------------------------
// The gateway under test

/// `gateway::app` over a real socket on 127.0.0.1:0, with a temp SQLite store, vault and ledger.
struct Gateway {
    base_url: String,
    key_clinician: String,
    key_researcher: String,
    key_limited: String,
    dir: tempfile::TempDir,
}

impl Gateway {
    /// No canary in any file under the data directory (store, WAL, keys).
    fn assert_no_canary_at_rest(&self) {
        let mut stack = vec![self.dir.path().to_path_buf()];
        let mut files = 0;
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let bytes = std::fs::read(&p).unwrap_or_default();
                files += 1;
                for c in CANARIES {
                    let hit = bytes.windows(c.len()).any(|w| w == c.as_bytes());
                    assert!(!hit, "{} holds a PHI canary in the clear", p.display());
                }
            }
        }
        assert!(files > 0, "no store files to check");
    }
}

fn gateway_config(up_url: &str) -> String {
    format!(
        r#"
server:
  max_body_bytes: 1048576
audit:
  hmac_key: file:hmac.key
  signing_key: file:ledger.key
vault:
  kek: file:vault.kek
organization:
  blocked_categories: [SSN]
providers:
  - name: test-upstream
    kind: openai
    base_url: {up_url}
    api_key: file:upstream.key
    hosting: private
    timeout_ms: 10000
    retries: 0
models:
  - name: clinical-chat
    deployments:
      - {{ provider: test-upstream, model: upstream-chat }}
  - name: clinical-embed
    deployments:
      - {{ provider: test-upstream, model: upstream-embed }}
  - name: research-only
    deployments:
      - {{ provider: test-upstream, model: upstream-chat }}
roles: [clinician, researcher, service]
use_cases:
  - name: clinical-notes
    purpose: treatment
    roles: [clinician, researcher]
    models: [clinical-chat, clinical-embed]
    phi:
      default: tokenize
    output:
      reidentify_roles: [clinician]
      new_phi: redact
      stream_scan: holdback
    prompt_injection: flag
  - name: quota
    purpose: operations
    roles: [service]
    models: [clinical-chat]
    phi:
      default: tokenize
  - name: research
    purpose: research
    roles: [researcher]
    models: [research-only]
    phi:
      default: redact
limits:
  - {{ use_case: quota, requests_per_minute: 3 }}
"#
    )
}

async fn start_gateway(up_url: &str) -> Gateway {
    let dir = tempfile::tempdir().expect("temp dir");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let hmac: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
    let seed: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(53).wrapping_add(5)).collect();
    let kek: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(71).wrapping_add(3)).collect();
    for (name, text) in [
        ("hmac.key", b64(&hmac)),
        ("ledger.key", b64(&seed)),
        ("vault.kek", b64(&kek)),
        ("upstream.key", "sk-upstream-test".to_string()),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write key file");
    }
    let text = gateway_config(up_url);
    let cfg =
        policy::Config::from_yaml(&text, dir.path()).unwrap_or_else(|e| panic!("config: {e}"));
    let pol = policy::Policy::new(cfg).unwrap_or_else(|e| panic!("policy: {e}"));
    let db = dir.path().join("phigate.db").display().to_string();
    let store = store::Store::open(&db).await.expect("open store");
    let ledger =
        ledger::Ledger::open(store.clone(), ledger::LedgerConfig::new("test.example/phigate"))
            .await
            .expect("open ledger");
    let kek = Arc::new(vault::LocalKek::from_base64(&b64(&kek)).expect("kek"));
    let vault = vault::Vault::new(
        store.clone(),
        ledger.clone(),
        vault::Keyring::new(kek),
        vault::VaultConfig::default(),
    );
    let state =
        gateway::AppState::new(pol, store.clone(), ledger, vault, &hmac).expect("gateway state");
    let key = |id: &'static str, role: &'static str, uc: &'static str| {
        let store = store.clone();
        async move {
            policy::create_key(&store, id, &[role.to_string()], Some(uc), None)
                .await
                .expect("create key")
                .1
        }
    };
    let key_clinician = key("user:sdk-clinician", "clinician", "clinical-notes").await;
    let key_researcher = key("user:sdk-researcher", "researcher", "clinical-notes").await;
    let key_limited = key("svc:sdk-quota", "service", "quota").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
    let addr = listener.local_addr().expect("gateway addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, gateway::app(state)).await;
    });
    Gateway {
        base_url: format!("http://{addr}/v1"),
        key_clinician,
        key_researcher,
        key_limited,
        dir,
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

/// Env var names of the keys handed to the SDK script.
const KEY_REID: &str = "PHIGATE_KEY_CLINICIAN";
const KEY_NOREID: &str = "PHIGATE_KEY_RESEARCHER";
const KEY_LIMITED: &str = "PHIGATE_KEY_LIMITED";
const KEY_BOGUS: &str = "PHIGATE_KEY_BOGUS";

fn env_keys(gw: &Gateway) -> Vec<(&'static str, &str)> {
    vec![
        (KEY_REID, gw.key_clinician.as_str()),
        (KEY_NOREID, gw.key_researcher.as_str()),
        (KEY_LIMITED, gw.key_limited.as_str()),
        (KEY_BOGUS, "pg_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ]
}

/// The upstream's answer for a request whose last user message was `sent`.
fn echo(sent: &str) -> String {
    format!("echo: {sent}")
}

/// The researcher's answer must be exactly what the upstream answered: placeholders, no value.
fn assert_placeholder_only(answer: &str, upstream_saw: &str, what: &str) {
    assert!(!has_canary(answer), "{what}: a PHI value reached a role without re-identification");
    assert_eq!(
        answer,
        echo(upstream_saw),
        "{what}: the answer is not the upstream's, placeholders kept"
    );
    assert!(
        placeholders(answer).len() >= 5,
        "{what}: expected the five tokenized values as placeholders, got {:?}",
        placeholders(answer)
    );
}

/// The clinician's answer must be the upstream's with every placeholder put back.
fn assert_reidentified(answer: &str, prompt: &str, what: &str) {
    assert_eq!(answer, echo(prompt), "{what}: the answer was not fully re-identified");
    assert!(placeholders(answer).is_empty(), "{what}: placeholders left in a re-identified answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_chat_stream_embeddings_models_and_errors() {
    let (up, up_url) = start_upstream().await;
    let gw = start_gateway(&up_url).await;
    let keys = env_keys(&gw);

    // Chat, with and without streaming, for both roles. A marker per case finds its upstream body.
    let prompt = |m: &str| format!("{PROMPT} (ref {m})");
    let cases = json!([
        chat_case("reid_plain", KEY_REID, &prompt("case-reid-plain"), false),
        chat_case("reid_stream", KEY_REID, &prompt("case-reid-stream"), true),
        chat_case("noreid_plain", KEY_NOREID, &prompt("case-noreid-plain"), false),
        chat_case("noreid_stream", KEY_NOREID, &prompt("case-noreid-stream"), true),
        {"name": "reid_stream_usage", "op": "chat", "key_env": KEY_REID, "model": "clinical-chat", "stream": true,
         "stream_options": {"include_usage": true},
         "messages": [{"role": "user", "content": prompt("case-reid-usage")}]},
        {"name": "embeddings", "op": "embeddings", "key_env": KEY_REID, "model": "clinical-embed",
         "input": [prompt("case-embed-0"), "chest radiograph: right lower lobe opacity"]},
        {"name": "embeddings_float", "op": "embeddings", "key_env": KEY_NOREID, "model": "clinical-embed",
         "encoding_format": "float", "input": prompt("case-embed-float")},
        {"name": "models_clinician", "op": "models", "key_env": KEY_REID},
    ]);
    let r = sdk_batch(&gw.base_url, &keys, cases).await;

    for (name, marker) in [
        ("reid_plain", "case-reid-plain"),
        ("reid_stream", "case-reid-stream"),
        ("reid_stream_usage", "case-reid-usage"),
    ] {
        assert_reidentified(ok_content(&r, name), &prompt(marker), name);
    }
    for (name, marker) in
        [("noreid_plain", "case-noreid-plain"), ("noreid_stream", "case-noreid-stream")]
    {
        let saw = up.user_content_with(marker);
        assert_placeholder_only(ok_content(&r, name), &saw, name);
    }
    assert_eq!(r["reid_stream"]["finish_reason"], json!("stop"), "{}", r["reid_stream"]);
    assert_eq!(r["noreid_plain"]["role"], json!("assistant"));
    assert!(
        r["reid_stream_usage"]["usage"]["total_tokens"].as_u64().is_some(),
        "usage chunk lost: {}",
        r["reid_stream_usage"]
    );
    assert_eq!(r["embeddings"]["ok"], json!(true), "{}", r["embeddings"]);
    assert_eq!(r["embeddings"]["count"], json!(2));
    assert_eq!(r["embeddings"]["dims"], json!([8, 8]));
    assert_eq!(r["embeddings_float"]["ok"], json!(true), "{}", r["embeddings_float"]);
    assert_eq!(r["models_clinician"]["ok"], json!(true), "{}", r["models_clinician"]);
    assert_eq!(r["models_clinician"]["ids"], json!(["clinical-chat", "clinical-embed"]));
    assert!(
        up.seen.lock().expect("seen").iter().any(|s| s.path == "/v1/embeddings"),
        "no embeddings call reached the upstream"
    );

    // Refusals: typed SDK exceptions with the stable codes, and nothing reaches the upstream.
    let before = up.count();
    let cases = json!([
        {"name": "no_key", "op": "chat", "key_env": null, "model": "clinical-chat",
         "messages": [{"role": "user", "content": "hello"}]},
        {"name": "bad_key", "op": "chat", "key_env": KEY_BOGUS, "model": "clinical-chat",
         "messages": [{"role": "user", "content": "hello"}]},
        {"name": "model_not_allowed", "op": "chat", "key_env": KEY_REID, "model": "research-only",
         "messages": [{"role": "user", "content": "hello"}]},
        {"name": "phi_blocked", "op": "chat", "key_env": KEY_REID, "model": "clinical-chat",
         "messages": [{"role": "user", "content": "Patient SSN 512-44-7812, please file the claim."}]},
        {"name": "phi_blocked_stream", "op": "chat", "key_env": KEY_REID, "model": "clinical-chat", "stream": true,
         "messages": [{"role": "user", "content": "Patient SSN 512-44-7812, please file the claim."}]},
        {"name": "models_no_key", "op": "models", "key_env": null},
        {"name": "image_part", "op": "chat", "key_env": KEY_REID, "model": "clinical-chat",
         "messages": [{"role": "user", "content": [{"type": "text", "text": "What does it show?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]},
    ]);
    let e = sdk_batch(&gw.base_url, &keys, cases).await;
    let expect = [
        ("no_key", "AuthenticationError", 401, "missing_api_key"),
        ("bad_key", "AuthenticationError", 401, "invalid_api_key"),
        ("model_not_allowed", "PermissionDeniedError", 403, "model_not_allowed"),
        ("phi_blocked", "BadRequestError", 400, "phi_blocked"),
        ("phi_blocked_stream", "BadRequestError", 400, "phi_blocked"),
        ("models_no_key", "AuthenticationError", 401, "missing_api_key"),
        ("image_part", "BadRequestError", 400, "unscannable_content"),
    ];
    for (name, class, status, code) in expect {
        let x = &e[name];
        assert_eq!(x["ok"], json!(false), "{name} was not refused: {x}");
        assert_eq!(x["error"]["class"], json!(class), "{name}: {x}");
        assert_eq!(x["error"]["status"], json!(status), "{name}: {x}");
        assert_eq!(x["error"]["code"], json!(code), "{name}: {x}");
        assert!(!has_canary(&x.to_string()), "{name}: a PHI value in the error");
    }
    assert_eq!(up.count(), before, "a refused request reached the upstream");

    // Rate limit: the use case allows 3 requests a minute; the 4th is a RateLimitError. The
    // windows are fixed minutes: the requests start early in one, so that they all fall in it
    // (across a boundary a 4th would be admitted, by design).
    let into_minute =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
            % 60.0;
    if into_minute > 40.0 {
        tokio::time::sleep(std::time::Duration::from_secs_f64(60.2 - into_minute)).await;
    }
    let cases = json!([{"name": "limited", "op": "chat", "key_env": KEY_LIMITED, "model": "clinical-chat",
                        "messages": [{"role": "user", "content": "Summarize: stable, no complaints."}],
                        "repeat": 10, "stop_on_error": true}]);
    let l = sdk_batch(&gw.base_url, &keys, cases).await;
    let x = &l["limited"];
    assert_eq!(x["ok"], json!(false), "never rate limited: {x}");
    assert_eq!(x["ok_count"], json!(3), "{x}");
    assert_eq!(x["error"]["class"], json!("RateLimitError"), "{x}");
    assert_eq!(x["error"]["status"], json!(429), "{x}");
    assert_eq!(x["error"]["code"], json!("rate_limited"), "{x}");

    // The upstream's key is the provider's, never the caller's phigate key.
    for s in up.seen.lock().expect("seen").iter() {
        let auth = s.authorization.as_deref().unwrap_or("");
        assert!(!auth.contains("pg_"), "a phigate key was forwarded upstream");
    }
    assert_no_canary_upstream(&up);
    gw.assert_no_canary_at_rest();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_stream_reidentifies_placeholders_cut_anywhere() {
    let (up, up_url) = start_upstream().await;
    let gw = start_gateway(&up_url).await;
    let keys = env_keys(&gw);

    // The tokenized content's length, from one plain call per role.
    let cases = json!([
        chat_case("len_reid", KEY_REID, &format!("{PROMPT} (ref cut-len-reid)"), false),
        chat_case("len_noreid", KEY_NOREID, &format!("{PROMPT} (ref cut-len-noreid)"), false),
    ]);
    let r = sdk_batch(&gw.base_url, &keys, cases).await;
    assert_reidentified(
        ok_content(&r, "len_reid"),
        &format!("{PROMPT} (ref cut-len-reid)"),
        "len_reid",
    );
    let saw_reid = up.user_content_with("cut-len-reid");
    let saw_noreid = up.user_content_with("cut-len-noreid");

    // 1..=8 characters per SSE event (1 cuts every placeholder at every position at once).
    for n in 1..=8usize {
        up.set_split(Split::Pieces(n));
        let pr = format!("{PROMPT} (ref pieces-{n})");
        let cases = json!([
            chat_case("reid", KEY_REID, &pr, true),
            chat_case("noreid", KEY_NOREID, &pr, true)
        ]);
        let r = sdk_batch(&gw.base_url, &keys, cases).await;
        assert_reidentified(
            ok_content(&r, "reid"),
            &pr,
            &format!("{n} chars per event, clinician"),
        );
        let answer = ok_content(&r, "noreid");
        assert!(!has_canary(answer), "{n} chars per event: a value reached the researcher");
        assert!(
            placeholders(answer).len() >= 5,
            "{n} chars per event: placeholders lost: {answer}"
        );
    }

    // Two events, cut after k characters, for every k: one request per cut, per role. The same
    // prompt each time (same conversation, so the same placeholders and the same length).
    for (key, saw, reid) in [(KEY_REID, &saw_reid, true), (KEY_NOREID, &saw_noreid, false)] {
        let marker = if reid { "cut-len-reid" } else { "cut-len-noreid" };
        let pr = format!("{PROMPT} (ref {marker})");
        let len = echo(saw).chars().count();
        up.set_split(Split::CutEach);
        let cases: Vec<Value> =
            (0..=len).map(|k| chat_case(&format!("cut{k}"), key, &pr, true)).collect();
        let r = sdk_batch(&gw.base_url, &keys, Value::Array(cases)).await;
        for k in 0..=len {
            let name = format!("cut{k}");
            let answer = ok_content(&r, &name);
            if reid {
                assert_reidentified(answer, &pr, &format!("clinician, cut after {k} chars"));
            } else {
                assert_placeholder_only(answer, saw, &format!("researcher, cut after {k} chars"));
            }
        }
        assert_eq!(up.next_cut.load(Ordering::SeqCst), len + 1, "every cut was served");
    }
    assert_no_canary_upstream(&up);
    gw.assert_no_canary_at_rest();
}
