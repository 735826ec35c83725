//! A recording, optionally corrupting HTTP/1.1 proxy, to see exactly what a client sends
//! a server (the S3 destination's checksum headers) and to damage bytes on the way.
//!
//! One request per connection (it asks the server to close), `Content-Length` bodies
//! only: enough for the AWS SDK over plain HTTP.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The body as the client sent it (before any corruption).
    pub body: Vec<u8>,
    /// The status line the server answered.
    pub answer: String,
}

pub struct Proxy {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    corrupt: Arc<AtomicBool>,
}

impl Proxy {
    /// Forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let corrupt = Arc::new(AtomicBool::new(false));
        let (s, c) = (seen.clone(), corrupt.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s, c) = (s.clone(), c.clone());
                std::thread::spawn(move || {
                    if let Some(req) = forward(conn, upstream, c.load(Ordering::SeqCst)) {
                        s.lock().unwrap().push(req);
                    }
                });
            }
        });
        Proxy {
            port,
            seen,
            corrupt,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, flip one byte in the middle of every request body.
    pub fn corrupt(&self, on: bool) {
        self.corrupt.store(on, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn forward(conn: TcpStream, upstream: u16, corrupt: bool) -> Option<Seen> {
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut client = conn.try_clone().ok()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        let k = k.trim().to_ascii_lowercase();
        headers.insert(k.clone(), v.trim().to_string());
        match k.as_str() {
            "connection" => {}
            "transfer-encoding" => panic!("the test proxy does not forward chunked bodies"),
            "expect" => {
                // Answer it ourselves: the server must get the whole request at once.
                client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
            }
            _ => head.push_str(&format!("{h}\r\n")),
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let mut sent = body.clone();
    if corrupt && !sent.is_empty() {
        let mid = sent.len() / 2;
        sent[mid] ^= 0x01;
    }
    let mut server = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    server.write_all(head.as_bytes()).ok()?;
    server.write_all(&sent).ok()?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).ok()?;
    client.write_all(&answer).ok()?;
    let status = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    Some(Seen {
        method,
        target,
        headers,
        body,
        answer: status,
    })
}
