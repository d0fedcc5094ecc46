//! Canary PHI through every path of a real `phigate serve` process (chat, streaming chat,
//! embeddings, de-identification, a blocked request, a bad key, an upstream that is down), then
//! a search of everything the process left behind: its logs (stdout and stderr at debug
//! level), its metrics, its request traces (exported over OTLP to a recording receiver), every
//! file of its data directory (the SQLite store, its WAL, the key files, the config) and what
//! the upstream received. No canary may be anywhere.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::http::{get, post, request};

const CANARIES: &[&str] = &[
    "Imogen Hargreaves",
    "Hargreaves",
    "4471902",
    "imogen.hargreaves@example.org",
    "617-555-0199",
    "03/14/1931",
    "078-05-1120",
];

const NOTE: &str =
    "Summarize for Mrs. Imogen Hargreaves (MRN: 4471902, DOB 03/14/1931), reachable at \
617-555-0199 or imogen.hargreaves@example.org.";

struct Server {
    child: Child,
    addr: String,
    out: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `phigate serve` in `dir` with debug logs; returns it and every line it has printed
/// so far (stdout and stderr together, in arrival order).
fn start(dir: &std::path::Path, env: &[(&str, String)]) -> (Server, Vec<String>) {
    let mut child = crate::run::command(&[("RUST_LOG", "debug")])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let mut seen = Vec::new();
    let mut addr = None;
    while addr.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no start: {seen:?}"));
        if let Some(rest) = line.strip_prefix("phigate: listening on http://") {
            addr = rest.split('/').next().map(str::to_string);
        }
        seen.push(line);
    }
    (Server { child, addr: addr.unwrap(), out: rx }, seen)
}

/// Collects lines until none came for `wait`, or for 10 s at most (a process that logs all the
/// time must not hold the test up).
fn drain(rx: &mpsc::Receiver<String>, into: &mut Vec<String>, wait: Duration) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < until {
        match rx.recv_timeout(wait) {
            Ok(l) => into.push(l),
            Err(_) => break,
        }
    }
}

/// A one-request-per-connection OpenAI-format upstream that records every body and echoes
/// the last message back (so placeholders come back in answers), as SSE when asked.
fn upstream(bodies: Arc<Mutex<Vec<String>>>, traceparents: Arc<Mutex<Vec<String>>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("traceparent:") {
                    traceparents.lock().unwrap().push(v.trim().to_string());
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let body = String::from_utf8_lossy(&body).to_string();
            bodies.lock().unwrap().push(body.clone());
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let echo = v["messages"]
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["content"].as_str())
                .unwrap_or("ok")
                .to_string();
            let resp = if v["stream"].as_bool() == Some(true) {
                let mut sse = String::new();
                for part in [&echo[..echo.len() / 2], &echo[echo.len() / 2..]] {
                    let chunk = serde_json::json!({"id":"c1","object":"chat.completion.chunk","created":1,
                        "model":"m","choices":[{"index":0,"delta":{"content":part},"finish_reason":null}]});
                    sse.push_str(&format!("data: {chunk}\n\n"));
                }
                sse.push_str("data: [DONE]\n\n");
                format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sse}", sse.len())
            } else if v.get("input").is_some() {
                let b = serde_json::json!({"object":"list","model":"m","data":[{"object":"embedding","index":0,
                    "embedding":[0.1,0.2]}],"usage":{"prompt_tokens":1,"total_tokens":1}})
                .to_string();
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len())
            } else {
                let b = serde_json::json!({"id":"c1","object":"chat.completion","created":1,"model":"m",
                    "choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":echo}}],
                    "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}})
                .to_string();
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len())
            };
            let _ = c.write_all(resp.as_bytes());
        }
    });
    addr
}

/// An OTLP/HTTP trace receiver: records every export request's raw (protobuf) body, answers
/// 200 with an empty (valid) export response, or, while `failing` is set, 503 with a body that
/// must never reach phigate's log.
fn otlp_receiver(exports: Arc<Mutex<Vec<Vec<u8>>>>, failing: Arc<AtomicBool>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let exports = exports.clone();
            let failing = failing.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                loop {
                    let mut len = 0usize;
                    let mut any = false;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" && any {
                            break;
                        }
                        any = true;
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    exports.lock().unwrap().push(body);
                    let answer: &[u8] = if failing.load(Ordering::SeqCst) {
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 22\r\n\r\n\
                          collector-secret-body!"
                    } else {
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
                    };
                    let _ = c.write_all(answer);
                }
            });
        }
    });
    addr
}

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn assert_no_canary(what: &str, haystack: &[u8]) {
    for c in CANARIES {
        let found = haystack.windows(c.len()).any(|w| w.eq_ignore_ascii_case(c.as_bytes()));
        assert!(!found, "canary {c:?} found in {what}");
    }
}

#[cfg(unix)]
#[test]
fn no_canary_in_logs_metrics_store_or_upstream() {
    let dir = tempfile::tempdir().unwrap();
    // Request traces on, to a recording OTLP receiver, sent every 100 ms.
    let exports = Arc::new(Mutex::new(Vec::new()));
    let otlp = otlp_receiver(exports.clone(), Arc::new(AtomicBool::new(false)));
    let (server, mut lines) = start(
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("http://{otlp}/v1/traces")),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    );
    const KEY_LINE: &str = "phigate: admin API key (shown once; store it now): ";
    // The key goes to stdout before the listening line goes to stderr, but the two pipes are
    // read by two threads: the key line may come in after the listening line.
    while !lines.iter().any(|l| l.starts_with(KEY_LINE)) {
        let line = server
            .out
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no admin key printed: {lines:?}"));
        lines.push(line);
    }
    let key = lines
        .iter()
        .find_map(|l| l.strip_prefix(KEY_LINE))
        .expect("admin key printed")
        .trim()
        .to_string();

    // Point the default config at our recording upstream and reload.
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let traceparents = Arc::new(Mutex::new(Vec::new()));
    let up = upstream(bodies.clone(), traceparents.clone());
    let cfg_path = dir.path().join("phigate-data/phigate.yaml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, cfg.replace("http://127.0.0.1:8000/v1", &format!("http://{up}/v1")))
        .unwrap();
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let t0 = std::time::Instant::now();
    while !lines.iter().any(|l| l.contains("configuration reloaded")) {
        assert!(t0.elapsed() < Duration::from_secs(30), "no reload: {lines:?}");
        drain(&server.out, &mut lines, Duration::from_millis(100));
    }

    let chat = |stream: bool| {
        serde_json::json!({"model":"local-chat","stream":stream,"messages":[
            {"role":"system","content":format!("Context: patient Imogen Hargreaves, MRN 4471902.")},
            {"role":"user","content":NOTE}]})
        .to_string()
    };
    let a = &server.addr;
    let (s, body) = post(a, "/v1/chat/completions", &key, &chat(false));
    assert_eq!(s, 200, "{body}");
    // The admin role may see values: the answer is re-identified (so the value is in the HTTP
    // answer, and only there).
    assert!(body.contains("Imogen Hargreaves"), "{body}");
    let (s, body) = post(a, "/v1/chat/completions", &key, &chat(true));
    assert_eq!(s, 200, "{body}");
    let emb = serde_json::json!({"model":"local-chat","input":NOTE}).to_string();
    let (s, body) = post(a, "/v1/embeddings", &key, &emb);
    assert!(s == 200 || s == 404 || s == 403, "{s} {body}");
    let deid = serde_json::json!({"text":NOTE,"mode":"placeholder"}).to_string();
    let (s, body) = post(a, "/v1/deidentify", &key, &deid);
    assert_eq!(s, 200, "{body}");
    let blocked = serde_json::json!({"model":"local-chat","messages":[
        {"role":"user","content":"SSN 078-05-1120 for Imogen Hargreaves"}]})
    .to_string();
    let (s, body) = post(a, "/v1/chat/completions", &key, &blocked);
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("phi_blocked") && !body.contains("078-05-1120"), "{body}");
    let (s, body) = post(a, "/v1/chat/completions", "pg_not_a_key", &chat(false));
    assert_eq!(s, 401, "{body}");
    assert_no_canary("a refusal", body.as_bytes());

    let (_, metrics) = get(a, "/metrics", &key);
    assert!(metrics.contains("phigate_phi_findings_total"), "{metrics}");
    assert_no_canary("/metrics", metrics.as_bytes());

    // A caller's W3C trace context: the request joins that trace, and the upstream is called
    // within it.
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("traceparent: 00-{TRACE_ID}-00f067aa0ba902b7-01\r\n");
    let (s, body) = request(a, "POST", "/v1/chat/completions", &key, &tp, Some(&chat(false)));
    assert_eq!(s, 200, "{body}");
    let sent = traceparents.lock().unwrap().clone();
    assert!(
        sent.iter()
            .any(|t| t.starts_with(&format!("00-{TRACE_ID}-")) && !t.contains("00f067aa0ba902b7")),
        "the upstream got no traceparent of the caller's trace under a span of ours: {sent:?}"
    );
    // The spans reach the receiver within seconds: the request's and its stages'.
    let want: [&[u8]; 5] =
        [b"/v1/chat/completions", b"scan", b"vault", b"upstream", b"/v1/deidentify"];
    let trace_id: Vec<u8> =
        (0..16).map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).unwrap()).collect();
    let t0 = std::time::Instant::now();
    loop {
        let all: Vec<u8> = exports.lock().unwrap().concat();
        let has = |n: &[u8]| all.windows(n.len()).any(|w| w == n);
        if want.iter().all(|n| has(n)) && has(&trace_id) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "spans missing after 30 s ({} exports, {} bytes)",
            exports.lock().unwrap().len(),
            all.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Stop the process, collect all it printed, and search everything.
    let mut server = server;
    let _ = server.child.kill();
    let _ = server.child.wait();
    drain(&server.out, &mut lines, Duration::from_millis(300));
    assert!(lines.len() > 5, "too few log lines to mean anything: {lines:?}");
    assert_no_canary("the logs", lines.join("\n").as_bytes());

    for (i, e) in exports.lock().unwrap().iter().enumerate() {
        assert_no_canary(&format!("trace export {i}"), e);
    }

    let recorded = bodies.lock().unwrap().clone();
    assert!(recorded.len() >= 2, "the upstream saw {} requests", recorded.len());
    for b in &recorded {
        assert_no_canary("an upstream body", b.as_bytes());
    }

    let mut files = Vec::new();
    files_under(&dir.path().join("phigate-data"), &mut files);
    assert!(files.iter().any(|f| f.to_string_lossy().ends_with("phigate.db")));
    for f in files {
        assert_no_canary(&f.display().to_string(), &std::fs::read(&f).unwrap());
    }
}

/// A collector that refuses exports: one warning names the HTTP status and how many spans were
/// lost, never the collector's URL (its credentials) or its answer; `/metrics` counts the
/// failures; when the collector takes exports again, one line says so.
#[cfg(unix)]
#[test]
fn trace_export_failures_are_logged_without_the_collectors_url_or_answer() {
    let dir = tempfile::tempdir().unwrap();
    let exports = Arc::new(Mutex::new(Vec::new()));
    let failing = Arc::new(AtomicBool::new(true));
    let otlp = otlp_receiver(exports.clone(), failing.clone());
    let (server, mut lines) = start(
        dir.path(),
        &[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("http://tracer:pw-s3cr3t@{otlp}/v1/traces"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    );
    let a = server.addr.clone();
    let until = |lines: &mut Vec<String>, what: &str| {
        let t0 = std::time::Instant::now();
        loop {
            let (s, _) = get(&a, "/healthz", "");
            assert_eq!(s, 200);
            drain(&server.out, lines, Duration::from_millis(200));
            if let Some(l) = lines.iter().find(|l| l.contains(what)) {
                return l.clone();
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no {what:?} after 30 s: {lines:?}");
        }
    };
    let warned = until(&mut lines, "request traces could not be exported");
    assert!(warned.contains("WARN"), "{warned}");
    assert!(warned.contains("the collector answered HTTP 503"), "{warned}");
    assert!(warned.contains("spans_lost="), "{warned}");
    assert!(!exports.lock().unwrap().is_empty(), "the collector was asked");
    // More exports fail while requests go on (batches every 100 ms): counted in /metrics,
    // not logged one by one.
    let failed = |m: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix("phigate_trace_exports_total{result=\"failed\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    let t0 = std::time::Instant::now();
    let metrics = loop {
        let (s, _) = get(&a, "/healthz", "");
        assert_eq!(s, 200);
        let (_, m) = get(&a, "/metrics", "");
        if failed(&m) >= 3 {
            break m;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "fewer than 3 failed exports: {m}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(metrics.contains("phigate_trace_spans_lost_total"), "{metrics}");

    failing.store(false, Ordering::SeqCst);
    until(&mut lines, "request traces reach the collector again");

    let all = lines.join("\n");
    // Failures go on while the collector refuses: one line, not one per export.
    let warnings = lines.iter().filter(|l| l.contains("could not be exported")).count();
    assert_eq!(warnings, 1, "{all}");
    for secret in ["pw-s3cr3t", "collector-secret-body"] {
        assert!(!all.contains(secret), "{secret:?} reached the log: {all}");
    }
}
