//! An OAuth token endpoint for the GCS service-account tests, verifying each signed
//! grant as Google's does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A fake OAuth token endpoint that checks grants as Google's does. For the key made by
/// [`TokenServer::service_account_key`] it verifies each JWT grant: RS256 signature
/// (openssl, with the key's public half), `iss` = the key's `client_email`, `aud` =
/// this endpoint, a devstorage scope, `iat` about now and `exp` at most an hour on.
/// A good grant gets [`TokenServer::token`]; anything else, or every grant when built
/// with `accept = false` (a revoked key), gets 400 `invalid_grant`. Every verdict is
/// kept for the test to assert ([`TokenServer::grants`]).
pub struct TokenServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<TokenState>>,
    token: String,
    /// The registered key's public half and the grant being checked.
    dir: tempfile::TempDir,
}

#[derive(Default)]
struct TokenState {
    /// The registered key: the folder holding its `pub.pem`, and its `client_email`.
    key: Option<(PathBuf, String)>,
    grants: Vec<Result<serde_json::Value, String>>,
}

/// The scope prefix every Cloud Storage scope has.
const DEVSTORAGE: &str = "https://www.googleapis.com/auth/devstorage.";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl TokenServer {
    pub fn start(accept: bool) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(TokenState::default()));
        // Unique per server, so a test can tell this token from any other.
        let token = format!("ya29.twindb-test-{port}-{}", std::process::id());
        let (flag, st, tok) = (stop.clone(), state.clone(), token.clone());
        let uri = format!("http://127.0.0.1:{port}/token");
        std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = answer_token(s, accept, &uri, &tok, &st);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenServer {
            port,
            stop,
            state,
            token,
            dir: crate::scratch(),
        }
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The access token a good grant gets.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A service-account JSON key for this endpoint, in `dir`; from now on grants
    /// are verified against it. Returns its path.
    pub fn service_account_key(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("key dir");
        let path = service_account_key(dir, &self.uri());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("key")).expect("key json");
        let own = self.dir.path();
        let pem = json["private_key"].as_str().expect("private_key");
        std::fs::write(own.join("key.pem"), pem).expect("pem");
        openssl(
            own,
            &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"],
        )
        .expect("the public key");
        let email = json["client_email"].as_str().expect("client_email");
        self.state.lock().unwrap().key = Some((own.to_path_buf(), email.to_string()));
        path
    }

    /// Every grant received: its verified claims, or why it was refused.
    pub fn grants(&self) -> Vec<Result<serde_json::Value, String>> {
        self.state.lock().unwrap().grants.clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("run openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `application/x-www-form-urlencoded` value decoding.
fn form_value(body: &str, name: &str) -> Option<String> {
    let raw = body
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?;
    let mut out = Vec::new();
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).ok()?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// Checks a JWT-bearer grant the way Google's token endpoint does; the claims if good.
fn verify_grant(
    body: &str,
    uri: &str,
    key: Option<&(PathBuf, String)>,
) -> Result<serde_json::Value, String> {
    use base64::Engine as _;
    // gcp_auth pads its base64url parts (RFC 7515 says not to); Google takes both.
    let b64 = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let grant_type = form_value(body, "grant_type");
    if grant_type.as_deref() != Some(JWT_BEARER) {
        return Err(format!("grant_type is {grant_type:?}"));
    }
    let jwt = form_value(body, "assertion").ok_or("no assertion")?;
    let (signed, signature) = jwt.rsplit_once('.').ok_or("not a JWT")?;
    let (header, claims) = signed.split_once('.').ok_or("not a JWT")?;
    let json = |part: &str| -> Result<serde_json::Value, String> {
        let raw = b64.decode(part).map_err(|e| format!("base64: {e}"))?;
        serde_json::from_slice(&raw).map_err(|e| format!("json: {e}"))
    };
    let (header, claims) = (json(header)?, json(claims)?);
    if header["alg"] != "RS256" {
        return Err(format!("alg is {}", header["alg"]));
    }
    let (dir, email) = key.ok_or("no key registered with the token server")?;
    let signature = b64
        .decode(signature)
        .map_err(|e| format!("signature: {e}"))?;
    std::fs::write(dir.join("grant.sig"), signature).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("grant.signed"), signed).map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "grant.sig",
            "grant.signed",
        ],
    )
    .map_err(|e| format!("bad signature: {e}"))?;
    if claims["iss"] != email.as_str() {
        return Err(format!("iss is {}, not {email}", claims["iss"]));
    }
    if claims["aud"] != uri {
        return Err(format!("aud is {}, not {uri}", claims["aud"]));
    }
    let scope = claims["scope"].as_str().unwrap_or_default();
    if !scope.split(' ').any(|s| s.starts_with(DEVSTORAGE)) {
        return Err(format!("scope {scope:?} has no devstorage scope"));
    }
    let now = chrono::Utc::now().timestamp();
    let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
    let (Some(iat), Some(exp)) = (iat, exp) else {
        return Err(format!("iat {iat:?}, exp {exp:?}"));
    };
    if (iat - now).abs() > 60 || exp <= now || exp - iat > 3600 {
        return Err(format!("iat {iat}, exp {exp}, now {now}"));
    }
    Ok(claims)
}

fn answer_token(
    s: TcpStream,
    accept: bool,
    uri: &str,
    token: &str,
    state: &Mutex<TokenState>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let l = line.trim();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let key = state.lock().unwrap().key.clone();
    let verdict = verify_grant(&String::from_utf8_lossy(&body), uri, key.as_ref());
    let refusal = match &verdict {
        _ if !accept => Some("Invalid JWT Signature.".to_string()),
        Ok(_) => None,
        Err(why) => Some(why.clone()),
    };
    state.lock().unwrap().grants.push(verdict);
    let (status, json) = match refusal {
        None => (
            "200 OK",
            serde_json::json!({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}),
        ),
        Some(why) => (
            "400 Bad Request",
            serde_json::json!({"error": "invalid_grant", "error_description": why}),
        ),
    };
    let json = json.to_string();
    let mut s = s;
    write!(
        s,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
        json.len()
    )
}

/// A service-account JSON key with a fresh RSA key (openssl), whose token_uri is
/// `token_uri`; returns its path.
fn service_account_key(dir: &Path, token_uri: &str) -> PathBuf {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(out.status.success(), "openssl genpkey failed: {out:?}");
    let pem = String::from_utf8(out.stdout).expect("PEM");
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "twindb-test",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": "twindb@twindb-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    });
    let path = dir.join("service-account.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&json).expect("json")).expect("write key");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    path
}
