//! One HTTP/1.1 request on a new connection to a `phigate serve` under test, read to the end:
//! what the tests need of a client, without hiding the bytes they check.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `method path` with the bearer `key`, the header lines in `extra` (each ending in
/// CRLF) and, when `body` is given, a JSON body. Returns the status and the whole response
/// (head and body).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    key: &str,
    extra: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = match body {
        Some(b) => format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()),
        None => String::new(),
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n{extra}{head}\
         Connection: close\r\n\r\n{}",
        body.unwrap_or("")
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, resp)
}

pub fn get(addr: &str, path: &str, key: &str) -> (u16, String) {
    request(addr, "GET", path, key, "", None)
}

pub fn post(addr: &str, path: &str, key: &str, body: &str) -> (u16, String) {
    request(addr, "POST", path, key, "", Some(body))
}
