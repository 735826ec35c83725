//! A recording, optionally corrupting HTTP/1.1 proxy, to see exactly what a client sends
//! a server and to damage or refuse requests on the way. The servers the tests use
//! ignore some headers (s3s-fs: `Content-MD5` on parts, SSE and storage class;
//! gcp-storage-emulator: customer-supplied keys and tokens): the proxy's record is the
//! proof that the client sent them.
//!
//! One request per connection (it asks the server to close), `Content-Length` bodies
//! only: enough for the AWS SDK and the GCS client over plain HTTP. Absolute URLs a
//! server hands out (GCS resumable session URIs) are built from the `Host` header,
//! which the proxy passes on unchanged, so they lead back through it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy saw of one request.
#[derive(Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The body as the client sent it (before any corruption).
    pub body: Vec<u8>,
    /// The status line the server answered (or the proxy, for a refused request).
    pub answer: String,
}

/// Without the body, which may be megabytes: its length only.
impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seen")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("headers", &self.headers)
            .field("body", &format_args!("{} bytes", self.body.len()))
            .field("answer", &self.answer)
            .finish()
    }
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

type Matcher = Box<dyn Fn(&Seen) -> bool + Send>;

pub struct Proxy {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    corrupt: Arc<AtomicBool>,
    refuse: Arc<Mutex<Option<Matcher>>>,
}

impl Proxy {
    /// Forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let corrupt = Arc::new(AtomicBool::new(false));
        let refuse: Arc<Mutex<Option<Matcher>>> = Arc::default();
        let (s, c, r) = (seen.clone(), corrupt.clone(), refuse.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s, c, r) = (s.clone(), c.clone(), r.clone());
                std::thread::spawn(move || {
                    forward(conn, upstream, &s, &c, &r);
                });
            }
        });
        Proxy {
            port,
            seen,
            corrupt,
            refuse,
        }
    }

    /// Forwards to the server at `endpoint` (`http://127.0.0.1:PORT`).
    pub fn in_front_of(endpoint: &str) -> Proxy {
        let port = endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {endpoint}"));
        Proxy::start(port)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, flip one byte in the middle of every request body.
    pub fn corrupt(&self, on: bool) {
        self.corrupt.store(on, Ordering::SeqCst);
    }

    /// Answers the next request that `matches` with 503 itself, as an overloaded
    /// server would, without forwarding it: the client's retry path runs.
    pub fn refuse_once(&self, matches: impl Fn(&Seen) -> bool + Send + 'static) {
        *self.refuse.lock().unwrap() = Some(Box::new(matches));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

const REFUSED: &str = "HTTP/1.1 503 Service Unavailable";

/// Forwards one request and records it, before the client has the answer: when a
/// client call returns, its requests are all in the record.
fn forward(
    conn: TcpStream,
    upstream: u16,
    record: &Mutex<Vec<Seen>>,
    corrupt: &AtomicBool,
    refuse: &Mutex<Option<Matcher>>,
) -> Option<()> {
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
    let mut seen = Seen {
        method,
        target,
        headers,
        body,
        answer: String::new(),
    };

    let refused = {
        let mut r = refuse.lock().unwrap();
        let hit = r.as_ref().is_some_and(|m| m(&seen));
        if hit {
            *r = None;
        }
        hit
    };
    if refused {
        seen.answer = REFUSED.to_string();
        record.lock().unwrap().push(seen);
        let answer = format!("{REFUSED}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return client.write_all(answer.as_bytes()).ok();
    }

    let mut sent = seen.body.clone();
    if corrupt.load(Ordering::SeqCst) && !sent.is_empty() {
        let mid = sent.len() / 2;
        sent[mid] ^= 0x01;
    }
    let mut server = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    server.write_all(head.as_bytes()).ok()?;
    server.write_all(&sent).ok()?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).ok()?;
    let status_line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
    seen.answer = String::from_utf8_lossy(status_line).to_string();
    record.lock().unwrap().push(seen);
    client.write_all(&answer).ok()
}
