//! The socket side of `gateway::serve`: the read deadline, the connection cap and the shutdown
//! grace period, over real TCP connections.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{stack, Stack};

/// A stack whose `server:` section has `extra` added, serving on a local port until the
/// returned sender fires; the handle ends when `serve` returns.
async fn serving(
    extra: &str,
) -> (Stack, SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let s = stack().await;
    let path = s.dir.path().join("phigate.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("server:\n", &format!("server:\n{extra}"), 1);
    std::fs::write(&path, text).unwrap();
    gateway::reload(&s.state, &path).unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = s.state.clone();
    let task = tokio::spawn(async move {
        gateway::serve(state, listener, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (s, addr, tx, task)
}

/// Reads until the peer closes the connection or `within` passes; what was read, and whether
/// the connection was closed.
async fn read_to_close(c: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: phigate\r\n\r\n";

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (_s, addr, _tx, _task) = serving("  read_timeout_secs: 1\n").await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: phigate\r\nContent-Ty")
        .await
        .unwrap();
    let (_, closed) = read_to_close(&mut c, Duration::from_secs(10)).await;
    assert!(closed, "a connection with half its headers was held past the read deadline");

    // A kept-alive connection that sends no next request is closed in the same time.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(HEALTH).await.unwrap();
    let (got, closed) = read_to_close(&mut c, Duration::from_secs(10)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(closed, "an idle kept-alive connection was held past the read deadline");
}

#[tokio::test]
async fn a_body_that_trickles_is_refused_at_the_read_deadline() {
    let (s, addr, _tx, _task) = serving("  read_timeout_secs: 1\n").await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    // An authenticated caller: the body is read only after the headers authenticate.
    c.write_all(
        format!("POST /v1/chat/completions HTTP/1.1\r\nHost: phigate\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\":", s.clinician).as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
        .await
        .expect("no answer to a body that stopped arriving")
        .unwrap();
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(got.contains("read_timeout_secs"), "{got}");
    assert!(started.elapsed() >= Duration::from_millis(900), "answered before the deadline");
}

#[tokio::test]
async fn a_malformed_chunked_body_is_an_invalid_request_not_too_large() {
    let (s, addr, _tx, _task) = serving("").await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(
        format!("POST /v1/chat/completions HTTP/1.1\r\nHost: phigate\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{{}}\r\n", s.clinician).as_bytes(),
    )
    .await
    .unwrap();
    let (got, _) = read_to_close(&mut c, Duration::from_secs(10)).await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(got.contains("invalid_request") && !got.contains("request_too_large"), "{got}");
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_one_to_close() {
    let (_s, addr, _tx, _task) = serving("  max_connections: 1\n").await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(HEALTH).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // The first connection stays open (kept alive): the second is not served...
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(HEALTH).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(700), second.read(&mut buf)).await;
    assert!(early.is_err(), "a connection over server.max_connections was served");

    // ...until the first closes.
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buf))
        .await
        .expect("the waiting connection was not served after a slot freed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn shutdown_waits_for_requests_in_flight_only_for_the_grace_period() {
    let (s, addr, tx, task) = serving("  shutdown_grace_secs: 1\n  read_timeout_secs: 120\n").await;
    // An idle kept-alive connection, and a request whose body has not all arrived.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(HEALTH).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let _ = idle.read(&mut buf).await.unwrap();
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(
        format!("POST /v1/chat/completions HTTP/1.1\r\nHost: phigate\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\n\r\n{{", s.clinician).as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    tx.send(()).unwrap();
    // The idle connection is closed at once.
    let (_, closed) = read_to_close(&mut idle, Duration::from_millis(900)).await;
    assert!(closed, "an idle connection was kept open through a shutdown");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve did not return after the grace period")
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "serve returned before the grace period: {took:?}");
    let (_, closed) = read_to_close(&mut busy, Duration::from_secs(2)).await;
    assert!(closed, "a connection still open past the grace period was not closed");
}

/// A client that sends requests and never reads their answers holds its connection slot only
/// until its answers' writes have made no progress for the read deadline.
#[tokio::test]
async fn a_client_that_stops_reading_answers_loses_its_connection() {
    let (_s, addr, _tx, _task) = serving("  max_connections: 1\n  read_timeout_secs: 1\n").await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut greedy = sock.connect(addr).await.unwrap();
    // Thousands of pipelined requests for /metrics (some kilobytes each), never read: far more
    // than the sockets' buffers hold.
    let writer = tokio::spawn(async move {
        let many = b"GET /metrics HTTP/1.1\r\nHost: phigate\r\n\r\n".repeat(5000);
        let _ = greedy.write_all(&many).await;
        greedy
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The only slot was the greedy client's; it must have been taken back.
    let mut next = TcpStream::connect(addr).await.unwrap();
    next.write_all(HEALTH).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), next.read(&mut buf))
        .await
        .expect("a client that reads nothing still holds the only connection slot")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    writer.abort();
}

/// A stream whose client stops reading for longer than the deployment's timeout is cut: what
/// the client reads when it comes back ends in an aborted body (no `[DONE]`, no last chunk of
/// the chunked encoding), never a clean end that would make the part it got look whole.
#[tokio::test]
async fn a_stream_whose_client_stops_reading_ends_aborted_not_clean() {
    let (s, addr, _tx, _task) = serving("").await;
    // 16 MiB of answer in 16 KiB events: far more than the channel and the sockets hold.
    s.upstream.set_extra(&" plain words".repeat(16 * 1024 * 1024 / 12));
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut c = sock.connect(addr).await.unwrap();
    let body = serde_json::json!({"model": "clinical-chat", "stream": true, "x_chunk": 16384,
        "messages": [{"role": "user", "content": "hello"}]})
    .to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: phigate\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        s.clinician,
        body.len()
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The `local` deployment's timeout is 1 s: stop reading for 4.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection was neither ended nor cut"),
        }
    }
    let tail = String::from_utf8_lossy(&got[got.len().saturating_sub(64)..]).to_string();
    assert!(!String::from_utf8_lossy(&got).contains("data: [DONE]"), "ended with [DONE]");
    assert!(!tail.ends_with("0\r\n\r\n"), "a clean end of the chunked body: {tail:?}");
}
