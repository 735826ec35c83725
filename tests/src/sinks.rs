//! Small local receivers for what twindbd sends out: an HTTP server that records
//! requests (webhooks, the DataDog API), an SMTP server that records mails, a UDP
//! socket that records StatsD lines. Plus a Prometheus text parser and a plain HTTP
//! GET, to scrape `/metrics` the way Prometheus does.
//!
//! Each receiver speaks just enough of its protocol for real clients (hyper, lettre)
//! and runs on 127.0.0.1 on a free port, in a thread that lives as long as the test.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls `f` until it returns Some, or panics after `limit` with `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// Records every request and answers 202.
pub struct HttpSink {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<HttpRequest>>>,
}

impl HttpSink {
    pub fn start() -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let r = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if let Some(req) = read_request(conn) {
                    r.lock().unwrap().push(req);
                }
            }
        });
        HttpSink { addr, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<HttpRequest> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(mut conn: TcpStream) -> Option<HttpRequest> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    conn.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .ok()?;
    Some(HttpRequest {
        method,
        path,
        headers,
        body,
    })
}

#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body as sent (dot-unstuffed).
    pub data: String,
}

/// An SMTP server without TLS or auth that records every mail.
pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let m = mails.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let m = m.clone();
                std::thread::spawn(move || {
                    let _ = smtp_session(conn, &m);
                });
            }
        });
        SmtpSink { addr, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn smtp_session(mut conn: TcpStream, mails: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    conn.write_all(b"220 sink ESMTP\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            conn.write_all(b"250-sink\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            conn.write_all(b"250 ok\r\n")?;
        } else if upper.starts_with("RSET") {
            from.clear();
            to.clear();
            conn.write_all(b"250 ok\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().to_string();
            conn.write_all(b"250 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(cmd[8..].trim().to_string());
            conn.write_all(b"250 ok\r\n")?;
        } else if upper == "DATA" {
            conn.write_all(b"354 go on\r\n")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            mails.lock().unwrap().push(Mail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            conn.write_all(b"250 queued\r\n")?;
        } else if upper == "QUIT" {
            conn.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            conn.write_all(b"502 not implemented\r\n")?;
        }
    }
}

/// Records every UDP datagram as a line of text.
pub struct UdpSink {
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl UdpSink {
    pub fn start() -> UdpSink {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf) {
                l.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        UdpSink { addr, lines }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over HTTP/1.0 on TCP: (status code, content-type, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    let mut conn = TcpStream::connect(addr).expect("connect");
    raw_get(&mut conn, path)
}

/// GET over HTTP/1.0 on a Unix socket.
pub fn unix_get(socket: &std::path::Path, path: &str) -> (u16, String, String) {
    let mut conn = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    raw_get(&mut conn, path)
}

fn raw_get(conn: &mut (impl Read + Write), path: &str) -> (u16, String, String) {
    write!(conn, "GET {path} HTTP/1.0\r\nHost: twindb\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format (0.0.4) strictly: every line is a comment, a
/// HELP/TYPE line or a valid sample whose family has a TYPE line before it.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |m: &str| format!("line {}: {m}: {line}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| err("bad TYPE"))?;
            if !valid_name(name)
                || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
            {
                return Err(err("bad TYPE"));
            }
            typed.insert(name.into(), kind.into());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => return Err(err("no value")),
        };
        if !valid_name(name) {
            return Err(err("bad metric name"));
        }
        let mut labels = BTreeMap::new();
        let rest = if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let end;
            loop {
                let Some(&(i, c)) = chars.peek() else {
                    return Err(err("unterminated labels"));
                };
                if c == '}' {
                    end = i + 1;
                    break;
                }
                if c == ',' {
                    chars.next();
                    continue;
                }
                let start = i;
                while chars.peek().is_some_and(|&(_, c)| c != '=') {
                    chars.next();
                }
                let key_end = chars.next().ok_or_else(|| err("label without ="))?.0;
                let key = r[start..key_end].to_string();
                if !valid_name(&key) || chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(err("bad label"));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            _ => return Err(err("bad escape")),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => return Err(err("unterminated label value")),
                    }
                }
                labels.insert(key, value);
            }
            &r[end..]
        } else {
            rest
        };
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or_else(|| err("no value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| err("bad value"))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp"))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing text"));
        }
        let family_typed = typed.contains_key(name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.strip_suffix(s).is_some_and(|f| typed.contains_key(f)));
        if !family_typed {
            return Err(err("sample without a TYPE line"));
        }
        samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    Ok(samples)
}

/// The value of the sample `name` whose labels include `labels`.
pub fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_accepts_valid_text_and_rejects_broken_lines() {
        let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"q\",z=\"\"} 3\n# TYPE b gauge\nb 1.5e3 1700000000\n";
        let s = parse_prometheus(ok).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels["k"], "v\"q");
        assert_eq!(sample(&s, "b", &[]), Some(1500.0));
        for bad in [
            "c 1\n",
            "# TYPE c gauge\nc{k=v} 1\n",
            "# TYPE c gauge\nc x\n",
            "# TYPE 1c gauge\n",
            "# TYPE c gauge\nc 1 2 3\n",
        ] {
            assert!(parse_prometheus(bad).is_err(), "{bad}");
        }
    }
}
