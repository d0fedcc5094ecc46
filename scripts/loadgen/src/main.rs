//! A small HTTP/1.1 load generator for `scripts/bench_gateway.sh`.
//!
//! `--rate R` (open loop): a dispatcher schedules one request every 1/R s for the whole run and
//! `--connections` keep-alive connections take them in turn, so a slow server makes requests wait
//! in the queue instead of slowing the schedule down. Two latencies are kept per request: service
//! (from the moment a connection writes it to the last byte of the answer) and corrected (from the
//! moment it was scheduled, so queueing counts too). `--rate 0` (closed loop): every connection
//! sends back to back, for the maximum throughput.
//!
//! Loopback targets only; every run is bounded by `--duration` (plus `--warmup`), and a hard stop
//! 30 s later. Prints one human line on stderr and one JSON object on stdout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};

#[derive(Parser, Debug)]
#[command(
    about = "Open-loop (constant rate) or closed-loop HTTP/1.1 load generator, loopback only"
)]
struct Args {
    /// Target URL, e.g. http://127.0.0.1:8080/v1/chat/completions
    #[arg(long)]
    url: String,
    /// File holding the POST body (JSON). Without it: GET.
    #[arg(long)]
    body: Option<std::path::PathBuf>,
    /// Name of an environment variable holding a bearer token (sent as Authorization).
    #[arg(long)]
    auth_env: Option<String>,
    /// Requests per second; 0 = closed loop (as fast as the connections go).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds run first and not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Tokio worker threads of the generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Label copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Default)]
struct Tally {
    service_us: Vec<u32>,
    corrected_us: Vec<u32>,
    ok: u64,
    non_2xx: u64,
    io_errors: u64,
    /// Scheduled but never sent: the window closed while they waited for a free connection.
    unsent: u64,
    /// Answers (any status) whose last byte arrived inside the measured window.
    completed_in_window: u64,
    first_bad_status: Option<u16>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.service_us.extend(o.service_us);
        self.corrected_us.extend(o.corrected_us);
        self.ok += o.ok;
        self.non_2xx += o.non_2xx;
        self.io_errors += o.io_errors;
        self.unsent += o.unsent;
        self.completed_in_window += o.completed_in_window;
        self.first_bad_status = self.first_bad_status.or(o.first_bad_status);
    }
}

struct Target {
    authority: String,
    uri: Uri,
    body: Option<Bytes>,
    auth: Option<String>,
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(t: &Target) -> std::io::Result<Sender> {
    let tcp = TcpStream::connect(&t.authority).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) =
        http1::handshake(TokioIo::new(tcp)).await.map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request on `sender`; Ok(status) once the whole body has arrived.
async fn one(t: &Target, sender: &mut Sender) -> Result<u16, hyper::Error> {
    let mut b =
        Request::builder().uri(t.uri.clone()).header(hyper::header::HOST, t.authority.as_str());
    let body = match &t.body {
        Some(body) => {
            b = b.method(Method::POST).header(hyper::header::CONTENT_TYPE, "application/json");
            Full::new(body.clone())
        }
        None => Full::new(Bytes::new()),
    };
    if let Some(a) = &t.auth {
        b = b.header(hyper::header::AUTHORIZATION, a.as_str());
    }
    let req = b.body(body).expect("request parts are valid");
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn record(
    tally: &mut Tally,
    r: Result<u16, hyper::Error>,
    service: Duration,
    corrected: Duration,
) -> bool {
    match r {
        Ok(s) => {
            if (200..300).contains(&s) {
                tally.ok += 1;
            } else {
                tally.non_2xx += 1;
                tally.first_bad_status.get_or_insert(s);
            }
            tally.service_us.push(micros(service));
            tally.corrected_us.push(micros(corrected));
            true
        }
        Err(_) => {
            tally.io_errors += 1;
            false
        }
    }
}

async fn worker_open(
    t: Arc<Target>,
    rx: Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>,
    measure_from: Instant,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut sender = None;
    loop {
        let scheduled = {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(s) => s,
                None => break,
            }
        };
        if Instant::now() >= until {
            // An overloaded target: what is still queued when the window closes is not sent.
            tally.unsent += 1;
            continue;
        }
        if sender.is_none() {
            sender = connect(&t).await.ok();
        }
        let Some(s) = sender.as_mut() else {
            tally.io_errors += 1;
            continue;
        };
        let sent = Instant::now();
        let r = one(&t, s).await;
        let done = Instant::now();
        if r.is_ok() && done >= measure_from && done < until {
            tally.completed_in_window += 1;
        }
        if scheduled >= measure_from {
            if !record(&mut tally, r, done - sent, done - scheduled) {
                sender = None;
            }
        } else if r.is_err() {
            sender = None;
        }
    }
    tally
}

async fn worker_closed(t: Arc<Target>, measure_from: Instant, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut sender = None;
    while Instant::now() < until {
        if sender.is_none() {
            sender = connect(&t).await.ok();
        }
        let Some(s) = sender.as_mut() else {
            tally.io_errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let sent = Instant::now();
        let r = one(&t, s).await;
        let done = Instant::now();
        if r.is_ok() && done >= measure_from && done < until {
            tally.completed_in_window += 1;
        }
        if sent >= measure_from && done <= until {
            if !record(&mut tally, r, done - sent, done - sent) {
                sender = None;
            }
        } else if r.is_err() {
            sender = None;
        }
    }
    tally
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[idx.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn summary(v: &mut [u32]) -> serde_json::Value {
    v.sort_unstable();
    let mean = if v.is_empty() {
        f64::NAN
    } else {
        v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64 / 1000.0
    };
    json!({
        "p50_ms": pct(v, 50.0), "p90_ms": pct(v, 90.0), "p99_ms": pct(v, 99.0),
        "p999_ms": pct(v, 99.9), "max_ms": pct(v, 100.0), "mean_ms": mean,
    })
}

fn main() {
    let args = Args::parse();
    let uri: Uri = args.url.parse().unwrap_or_else(|e| {
        eprintln!("loadgen: bad --url: {e}");
        std::process::exit(64)
    });
    let host = uri.host().unwrap_or("");
    if !(host == "127.0.0.1" || host == "localhost" || host == "[::1]" || host.starts_with("127."))
    {
        eprintln!("loadgen: only loopback targets are allowed");
        std::process::exit(64);
    }
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_else(|| host.to_string());
    let path_uri: Uri = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .expect("a path is a valid URI");
    let body = args.body.as_ref().map(|p| {
        Bytes::from(std::fs::read(p).unwrap_or_else(|e| {
            eprintln!("loadgen: cannot read {}: {e}", p.display());
            std::process::exit(66)
        }))
    });
    let auth = args.auth_env.as_ref().map(|name| {
        let v = std::env::var(name).unwrap_or_else(|_| {
            eprintln!("loadgen: environment variable {name} is not set");
            std::process::exit(64)
        });
        format!("Bearer {v}")
    });
    let target = Arc::new(Target { authority, uri: path_uri, body, auth });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let measured = Duration::from_secs_f64(args.duration.max(0.1));
    let rate = args.rate;
    let conns = args.connections.max(1);

    let (tally, wall) = rt.block_on(async move {
        let start = Instant::now();
        let measure_from = start + warmup;
        let until = measure_from + measured;
        let mut handles = Vec::new();
        if rate > 0.0 {
            let (tx, rx) = mpsc::unbounded_channel();
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..conns {
                handles.push(tokio::spawn(worker_open(
                    target.clone(),
                    rx.clone(),
                    measure_from,
                    until,
                )));
            }
            let total = ((warmup + measured).as_secs_f64() * rate).round() as u64;
            let period = 1.0 / rate;
            // A plain thread keeps the schedule: nanosleep wakes within tens of microseconds,
            // where the tokio timer rounds every wait up to the next millisecond.
            std::thread::spawn(move || {
                for k in 0..total {
                    let at = start + Duration::from_secs_f64(k as f64 * period);
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at - now);
                    }
                    if tx.send(at).is_err() {
                        break;
                    }
                }
            });
        } else {
            for _ in 0..conns {
                handles.push(tokio::spawn(worker_closed(target.clone(), measure_from, until)));
            }
        }
        let mut tally = Tally::default();
        let hard_stop = until + Duration::from_secs(30);
        for h in handles {
            match tokio::time::timeout_at(hard_stop.into(), h).await {
                Ok(Ok(t)) => tally.merge(t),
                _ => tally.io_errors += 1,
            }
        }
        (tally, measured)
    });

    let mut tally = tally;
    let n = tally.service_us.len();
    let secs = wall.as_secs_f64();
    let service = summary(&mut tally.service_us);
    let corrected = summary(&mut tally.corrected_us);
    let out = json!({
        "label": args.label,
        "url": args.url,
        "mode": if rate > 0.0 { "open" } else { "closed" },
        "target_rate": rate,
        "connections": conns,
        "duration_s": secs,
        "requests": n,
        "ok": tally.ok,
        "non_2xx": tally.non_2xx,
        "first_bad_status": tally.first_bad_status,
        "io_errors": tally.io_errors,
        "unsent": tally.unsent,
        "throughput_rps": n as f64 / secs,
        "completed_rps": tally.completed_in_window as f64 / secs,
        "service": service,
        "corrected": corrected,
    });
    eprintln!(
        "{:<28} {:>8.0} req/s  ok {:>8}  bad {:>5}  io-err {:>4}  unsent {:>6}  p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  (corrected p99 {:.3} ms)",
        args.label,
        n as f64 / secs,
        tally.ok,
        tally.non_2xx,
        tally.io_errors,
        tally.unsent,
        out["service"]["p50_ms"].as_f64().unwrap_or(f64::NAN),
        out["service"]["p99_ms"].as_f64().unwrap_or(f64::NAN),
        out["service"]["p999_ms"].as_f64().unwrap_or(f64::NAN),
        out["corrected"]["p99_ms"].as_f64().unwrap_or(f64::NAN),
    );
    println!("{out}");
}
