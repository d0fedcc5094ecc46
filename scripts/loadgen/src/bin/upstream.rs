//! A fast OpenAI-compatible upstream for benchmarks and for checking the SDK scripts without a
//! gateway. `--mode fixed` answers every chat completion with the same small completion at once
//! (what a benchmark wants); `--mode echo` answers with the last user message, and streams it in
//! `--chunk` characters per SSE event when asked to (what a wiring check wants).
//!
//! Prints `listening http://ADDR` on its first stdout line. Listens on loopback only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use serde::Deserialize;
use serde_json::json;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Fixed,
    Echo,
}

#[derive(Parser, Debug)]
#[command(about = "OpenAI-compatible upstream for benchmarks (loopback only)")]
struct Args {
    /// Address to listen on (must be a loopback address).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// fixed: one canned completion; echo: the last user message back.
    #[arg(long, value_enum, default_value = "fixed")]
    mode: Mode,
    /// Characters per SSE content event in echo mode.
    #[arg(long, default_value_t = 4)]
    chunk: usize,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Model id reported by /v1/models and in answers.
    #[arg(long, default_value = "bench-model")]
    model: String,
}

struct App {
    mode: Mode,
    chunk: usize,
    model: String,
    fixed: Bytes,
    fixed_sse: Bytes,
    models: Bytes,
}

#[derive(Deserialize)]
struct ChatReq {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    messages: Vec<Msg>,
}

#[derive(Deserialize)]
struct Msg {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: serde_json::Value,
}

#[derive(Deserialize)]
struct EmbReq {
    #[serde(default)]
    model: Option<String>,
    input: serde_json::Value,
    #[serde(default)]
    encoding_format: Option<String>,
}

fn completion(model: &str, content: &str) -> serde_json::Value {
    json!({
        "id": "chatcmpl-bench0001",
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": model,
        "system_fingerprint": null,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 512, "completion_tokens": 24, "total_tokens": 536}
    })
}

fn chunk_event(model: &str, delta: serde_json::Value, finish: Option<&str>) -> String {
    let v = json!({
        "id": "chatcmpl-bench0001",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000u64,
        "model": model,
        "system_fingerprint": null,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
    });
    format!("data: {v}\n\n")
}

fn sse(model: &str, content: &str, chunk: usize) -> String {
    let mut out = chunk_event(model, json!({"role": "assistant", "content": ""}), None);
    let chars: Vec<char> = content.chars().collect();
    for piece in chars.chunks(chunk.max(1)) {
        let s: String = piece.iter().collect();
        out.push_str(&chunk_event(model, json!({"content": s}), None));
    }
    out.push_str(&chunk_event(model, json!({}), Some("stop")));
    out.push_str("data: [DONE]\n\n");
    out
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn respond(status: StatusCode, ctype: &'static str, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, ctype)
        .body(body.into())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn bad_request(msg: &str) -> Response {
    let v = json!({"error": {"message": msg, "type": "invalid_request_error", "code": "invalid_request", "param": null}});
    respond(StatusCode::BAD_REQUEST, "application/json", v.to_string())
}

async fn chat(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: ChatReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => return bad_request("body is not a chat completion request"),
    };
    let streaming = req.stream.unwrap_or(false);
    match app.mode {
        Mode::Fixed if streaming => {
            respond(StatusCode::OK, "text/event-stream", app.fixed_sse.clone())
        }
        Mode::Fixed => respond(StatusCode::OK, "application/json", app.fixed.clone()),
        Mode::Echo => {
            let model = req.model.unwrap_or_else(|| app.model.clone());
            let last = req
                .messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| text_of(&m.content))
                .unwrap_or_default();
            let content = format!("echo: {last}");
            if streaming {
                respond(StatusCode::OK, "text/event-stream", sse(&model, &content, app.chunk))
            } else {
                respond(
                    StatusCode::OK,
                    "application/json",
                    completion(&model, &content).to_string(),
                )
            }
        }
    }
}

async fn embeddings(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: EmbReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => return bad_request("body is not an embeddings request"),
    };
    let inputs: Vec<String> = match &req.input {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().map(|x| x.to_string()).collect(),
        _ => return bad_request("input must be a string or an array"),
    };
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let data: Vec<serde_json::Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            // Eight deterministic components from the input's bytes.
            let mut v = [0f32; 8];
            for (j, b) in text.bytes().enumerate() {
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
    let v = json!({
        "object": "list",
        "data": data,
        "model": req.model.unwrap_or_else(|| app.model.clone()),
        "usage": {"prompt_tokens": 8, "total_tokens": 8}
    });
    respond(StatusCode::OK, "application/json", v.to_string())
}

async fn models(State(app): State<Arc<App>>) -> Response {
    respond(StatusCode::OK, "application/json", app.models.clone())
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!("upstream: refusing to listen on a non-loopback address");
        std::process::exit(64);
    }
    let fixed_text =
        "The note describes a follow-up visit; vitals are stable and the plan is unchanged.";
    let app = Arc::new(App {
        mode: args.mode,
        chunk: args.chunk,
        fixed: Bytes::from(completion(&args.model, fixed_text).to_string()),
        fixed_sse: Bytes::from(sse(&args.model, fixed_text, 16)),
        models: Bytes::from(
            json!({"object": "list", "data": [{"id": args.model, "object": "model", "created": 1_700_000_000u64, "owned_by": "bench"}]})
                .to_string(),
        ),
        model: args.model,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let router = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/models", get(models))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(app);
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!("listening http://{}", listener.local_addr()?);
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
}
