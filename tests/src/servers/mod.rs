//! Object-store servers for the tests, on 127.0.0.1 with free ports and temp dirs,
//! killed on drop:
//!
//! - [`S3Server`]: s3s-fs (crates.io), which checks SigV4 signatures, so wrong
//!   credentials really fail. Objects are plain files under `root()/BUCKET/`.
//! - [`GcsServer`]: gcp-storage-emulator (PyPI), the JSON API incl. resumable uploads,
//!   stored on disk so a restart keeps what was finalized.
//! - [`AzServer`]: Azurite (npm), Azure Blob Storage's emulator; it checks SharedKey
//!   signatures, so a wrong account key really fails.
//! - [`TokenServer`]: an OAuth token endpoint for service-account keys that verifies
//!   each signed grant.
//! - [`S3Harness`], [`GcsHarness`], [`LocalHarness`], [`SshHarness`]: each backend as
//!   a [`TestServer`](crate::conformance::TestServer) of the conformance suite's faults (stop, restart, leftovers).
//!
//! scripts/test.sh installs the servers. When one is missing a test fails under
//! `CI=true` and says "skipped" otherwise (see [`require`]).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod azurite;
mod harness;
mod token;

pub use self::azurite::*;
pub use self::harness::*;
pub use self::token::TokenServer;
use crate::in_ci;

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
