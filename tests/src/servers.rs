//! Object-store servers for the tests, on 127.0.0.1 with free ports and temp dirs,
//! killed on drop:
//!
//! - [`S3Server`]: s3s-fs (crates.io), which checks SigV4 signatures, so wrong
//!   credentials really fail. Objects are plain files under `root()/BUCKET/`.
//! - [`GcsServer`]: gcp-storage-emulator (PyPI), the JSON API incl. resumable uploads,
//!   stored on disk so a restart keeps what was finalized.
//! - [`TokenServer`]: an OAuth token endpoint for service-account keys that verifies
//!   each signed grant.
//! - [`S3Harness`], [`GcsHarness`], [`LocalHarness`], [`SshHarness`]: each backend as
//!   a [`TestServer`] of the conformance suite's faults (stop, restart, leftovers).
//!
//! scripts/test.sh installs both servers. When one is missing a test fails under
//! `CI=true` and says "skipped" otherwise (see [`require`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use twindb::destination::{Backoff, Destination, Local};

use crate::conformance::{Behaviour, TestServer};
use crate::in_ci;
use crate::sshd::Sshd;

pub const S3_ACCESS_KEY: &str = "twindb-test-key";
pub const S3_SECRET_KEY: &str = "twindb-test-secret-Kq9w";
pub const BUCKET: &str = "twindb-test";

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The path of `program` (PATH, then ~/.cargo/bin). `None` means the test should
/// stop: it panics under CI=true, prints "skipped" otherwise.
pub fn require(program: &str, install: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    if let Some(found) = dirs.iter().map(|d| d.join(program)).find(|p| p.is_file()) {
        return Some(found);
    }
    let msg = format!("{program} is missing: install it with `{install}` (scripts/test.sh does)");
    assert!(!in_ci(), "{msg}");
    eprintln!("skipped: {msg}");
    None
}

fn wait_listening(port: u16, child: &mut Child, log: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before listening:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within 30 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn stop_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// s3s-fs serving one bucket, [`BUCKET`], with [`S3_ACCESS_KEY`]/[`S3_SECRET_KEY`].
pub struct S3Server {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl S3Server {
    /// `None` when s3s-fs is missing outside CI.
    pub fn start() -> Option<S3Server> {
        let bin = require(
            "s3s-fs",
            "cargo install s3s-fs --version 0.14.1 --features binary --locked",
        )?;
        let dir = crate::scratch();
        std::fs::create_dir_all(dir.path().join("data").join(BUCKET)).expect("bucket dir");
        let mut s = S3Server {
            bin,
            dir,
            port: free_port(),
            child: None,
        };
        s.restart();
        Some(s)
    }

    /// The folder s3s-fs serves: `root()/BUCKET/KEY` are the objects; multipart
    /// parts in progress are `root()/.upload_id-*` files.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    /// Starts it again on the same port and folder.
    pub fn restart(&mut self) {
        self.stop();
        let log = self.dir.path().join("s3s-fs.log");
        let mut child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(self.root())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn s3s-fs");
        wait_listening(self.port, &mut child, &log, "s3s-fs");
        self.child = Some(child);
    }

    /// Multipart uploads whose parts are still stored (neither completed nor aborted).
    pub fn pending_parts(&self) -> Vec<String> {
        std::fs::read_dir(self.root())
            .expect("s3s-fs root")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(".upload_id-"))
            .collect()
    }

    /// An `[s3]` section for this server; `extra` is appended.
    pub fn config_section(&self, extra: &str) -> String {
        format!(
            "[s3]\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\naws_access_key_id = \"{S3_ACCESS_KEY}\"\n\
             aws_secret_access_key = \"{S3_SECRET_KEY}\"\n{extra}\n",
            self.endpoint()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// gcp-storage-emulator with the bucket [`BUCKET`], storing on disk.
pub struct GcsServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl GcsServer {
    /// `None` when the emulator is missing outside CI.
    pub fn start() -> Option<GcsServer> {
        let bin = require(
            "gcp-storage-emulator",
            "pip install gcp-storage-emulator==2026.7.19",
        )?;
        let mut s = GcsServer {
            bin,
            dir: crate::scratch(),
            port: free_port(),
            child: None,
        };
        s.restart();
        Some(s)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The folder the emulator stores objects and resumable uploads in.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join(".cloudstorage")
    }

    /// Bytes the emulator holds of resumable uploads not yet finalized: how far an
    /// upload has got, as the server sees it.
    pub fn resumable_bytes(&self) -> u64 {
        let Ok(dir) = std::fs::read_dir(self.storage().join("_resumable")) else {
            return 0;
        };
        dir.filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    /// Starts it again on the same port and storage folder.
    pub fn restart(&mut self) {
        self.stop();
        let log = self.dir.path().join("emulator.log");
        let mut child = Command::new(&self.bin)
            .args(["start", "--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--default-bucket", BUCKET, "-q"])
            .env("STORAGE_BASE", self.dir.path())
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn gcp-storage-emulator");
        wait_listening(self.port, &mut child, &log, "gcp-storage-emulator");
        self.child = Some(child);
    }

    /// A `[gcs]` section for this emulator; `extra` is appended.
    pub fn config_section(&self, extra: &str) -> String {
        format!(
            "[gcs]\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\n{extra}\n",
            self.endpoint()
        )
    }
}

impl Drop for GcsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

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

/// The destination a config with `[destination] backup_destination = kind` and
/// `section` builds, exactly as twindbd would.
pub fn destination_from(
    kind: &str,
    section: &str,
) -> std::sync::Arc<dyn twindb::destination::Destination> {
    let text = format!(
        "[source]\nbackup_dirs = [\"/tmp\"]\n\n[destination]\nbackup_destination = \"{kind}\"\n\n{section}\n"
    );
    let config = twindb::config::parse(Path::new("/tmp/twindb-test.toml"), &text)
        .unwrap_or_else(|e| panic!("config:\n{e}\n{text}"));
    twindb::destination::build(&config.destination)
}

/// Files under `dir` (recursively) whose path `wanted` accepts, with their sizes.
fn files_where(dir: &Path, wanted: &dyn Fn(&Path) -> bool) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) if wanted(&path) => out.push((path.display().to_string(), m.len())),
                _ => {}
            }
        }
    }
    out
}

/// The destination of `section` with its bucket replaced by one that does not exist.
fn without_bucket(kind: &str, section: &str) -> (Arc<dyn Destination>, String) {
    let missing = "no-such-bucket";
    let section = section.replace(
        &format!("bucket = \"{BUCKET}\""),
        &format!("bucket = \"{missing}\""),
    );
    (destination_from(kind, &section), missing.into())
}

/// 5 MiB parts (S3's minimum), 4 at once: the fault tests' uploads take many parts.
pub const S3_SMALL_PARTS: &str = "part_size = \"5MiB\"\nupload_concurrency = 4";

/// The fault suite's view of s3s-fs: uploads in progress are its `.upload_id-*` parts.
pub struct S3Harness(pub S3Server);

impl S3Harness {
    pub fn start() -> Option<S3Harness> {
        S3Server::start().map(S3Harness)
    }
}

impl TestServer for S3Harness {
    fn behaviour(&self) -> Behaviour {
        Behaviour {
            stoppable: true,
            resumes_reads: true,
            missing_root_fails: true,
            cancel_cleans_server: true,
            outage_cleans_server: true,
            // ListMultipartUploads is not in s3s-fs (501): nothing to find here.
            cleans_partials: false,
            signs: true,
        }
    }

    fn destination(&self) -> Arc<dyn Destination> {
        destination_from("s3", &self.0.config_section(S3_SMALL_PARTS))
    }

    fn destination_without_root(&self) -> (Arc<dyn Destination>, String) {
        without_bucket("s3", &self.0.config_section(""))
    }

    fn stop(&mut self) {
        self.0.stop();
    }

    fn restart(&mut self) {
        self.0.restart();
    }

    fn leftovers(&self) -> Vec<(String, u64)> {
        files_where(&self.0.root(), &|p| {
            p.to_string_lossy().contains("/.upload_id-")
        })
    }
}

/// 8 MiB chunks: the fault tests' uploads take many resumable-upload requests.
pub const GCS_SMALL_CHUNKS: &str = "chunk_size = \"8MiB\"";

/// The fault suite's view of gcp-storage-emulator: uploads in progress are its
/// resumable sessions. Share links are signed with a service account key of a
/// [`TokenServer`].
pub struct GcsHarness {
    pub server: GcsServer,
    tokens: TokenServer,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

impl GcsHarness {
    pub fn start() -> Option<GcsHarness> {
        let server = GcsServer::start()?;
        let dir = crate::scratch();
        let tokens = TokenServer::start(true);
        let key = tokens.service_account_key(dir.path());
        Some(GcsHarness {
            server,
            tokens,
            key,
            _dir: dir,
        })
    }
}

impl TestServer for GcsHarness {
    fn behaviour(&self) -> Behaviour {
        Behaviour {
            stoppable: true,
            resumes_reads: true,
            missing_root_fails: true,
            cancel_cleans_server: false,
            outage_cleans_server: false,
            cleans_partials: false,
            signs: true,
        }
    }

    fn destination(&self) -> Arc<dyn Destination> {
        destination_from("gcs", &self.server.config_section(GCS_SMALL_CHUNKS))
    }

    fn destination_without_root(&self) -> (Arc<dyn Destination>, String) {
        without_bucket("gcs", &self.server.config_section(""))
    }

    fn sharing_destination(&self) -> Arc<dyn Destination> {
        let _ = &self.tokens;
        let extra = format!("gc_credentials_file = \"{}\"", self.key.display());
        destination_from("gcs", &self.server.config_section(&extra))
    }

    fn stop(&mut self) {
        self.server.stop();
    }

    fn restart(&mut self) {
        self.server.restart();
    }

    fn leftovers(&self) -> Vec<(String, u64)> {
        files_where(&self.server.storage().join("_resumable"), &|_| true)
    }
}

/// Uploads in progress on a file store: its `.NAME.twindb-partial.*` temp files.
fn partial_files(root: &Path) -> Vec<(String, u64)> {
    files_where(root, &|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains(".twindb-partial"))
    })
}

/// The fault suite's view of a local destination: a folder, no server to stop.
pub struct LocalHarness {
    dir: tempfile::TempDir,
}

impl LocalHarness {
    pub fn start() -> Option<LocalHarness> {
        Some(LocalHarness {
            dir: crate::scratch(),
        })
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

impl TestServer for LocalHarness {
    fn behaviour(&self) -> Behaviour {
        Behaviour {
            stoppable: false,
            resumes_reads: false,
            missing_root_fails: false,
            cancel_cleans_server: true,
            outage_cleans_server: false,
            cleans_partials: true,
            signs: false,
        }
    }

    fn destination(&self) -> Arc<dyn Destination> {
        Arc::new(Local::new(self.root()))
    }

    fn destination_without_root(&self) -> (Arc<dyn Destination>, String) {
        let missing = self.dir.path().join("missing/folder");
        (
            Arc::new(Local::new(&missing)),
            missing.display().to_string(),
        )
    }

    fn stop(&mut self) {
        unreachable!("a local folder has no server to stop")
    }

    fn restart(&mut self) {
        unreachable!("a local folder has no server to restart")
    }

    fn leftovers(&self) -> Vec<(String, u64)> {
        partial_files(&self.root())
    }
}

/// Retries that give up fast: the fault tests wait for the whole retry bound.
pub fn quick_backoff() -> Backoff {
    Backoff {
        attempts: 3,
        initial: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
    }
}

/// The fault suite's view of an OpenSSH server: uploads in progress are temp files
/// under its backup_dir. The destination retries with [`quick_backoff`].
pub struct SshHarness(pub Sshd);

impl SshHarness {
    pub fn start(test: &str) -> Option<SshHarness> {
        Sshd::start_or_skip(test).map(SshHarness)
    }
}

impl TestServer for SshHarness {
    fn behaviour(&self) -> Behaviour {
        Behaviour {
            stoppable: true,
            resumes_reads: false,
            missing_root_fails: false,
            cancel_cleans_server: true,
            outage_cleans_server: false,
            cleans_partials: true,
            signs: false,
        }
    }

    fn destination(&self) -> Arc<dyn Destination> {
        Arc::new(self.0.destination_with(self.0.config(), quick_backoff()))
    }

    fn destination_without_root(&self) -> (Arc<dyn Destination>, String) {
        let mut config = self.0.config();
        config.backup_dir = self.0.root.join("missing/folder").display().to_string();
        let missing = config.backup_dir.clone();
        (
            Arc::new(self.0.destination_with(config, quick_backoff())),
            missing,
        )
    }

    fn stop(&mut self) {
        self.0.stop();
    }

    fn restart(&mut self) {
        self.0.restart();
    }

    fn leftovers(&self) -> Vec<(String, u64)> {
        partial_files(&self.0.root)
    }

    fn retry_wait(&self) -> Duration {
        quick_backoff().total_delay()
    }
}
