//! Azurite (npm), Azure Blob Storage's emulator, with the container [`BUCKET`] of the
//! well-known development account; and its view for the conformance suite's faults.
//! Azurite checks SharedKey signatures, so a wrong account key really fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use twindb::destination::Destination;

use super::{destination_from, free_port, require, wait_listening, BUCKET};
use crate::conformance::{Behaviour, TestServer};

/// The development account every Azurite serves; its key is public (Azurite's docs).
pub const AZ_ACCOUNT: &str = "devstoreaccount1";
pub const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The npm package scripts/test.sh installs (3.36+ needs Node 21, Debian 12 has 20).
pub const AZURITE_INSTALL: &str = "npm install -g azurite@3.35.0";

/// 4 MiB blocks, 4 at once: the fault tests' uploads take many blocks.
pub const AZ_SMALL_BLOCKS: &str = "block_size = \"4MiB\"\nupload_concurrency = 4";

pub struct AzServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// When it last began to listen (see [`AzServer::stop`]).
    started: Instant,
}

impl AzServer {
    /// `None` when azurite is missing outside CI.
    pub fn start() -> Option<AzServer> {
        let bin = require("azurite-blob", AZURITE_INSTALL)?;
        let mut s = AzServer {
            bin,
            dir: crate::scratch(),
            port: free_port(),
            child: None,
            started: Instant::now(),
        };
        s.restart();
        s.create_container(BUCKET);
        Some(s)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZ_ACCOUNT}", self.port)
    }

    pub fn connection_string(&self, key: &str) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={key};\
             BlobEndpoint={};",
            self.endpoint()
        )
    }

    /// Where Azurite keeps block data (committed or not), as files.
    pub fn extents(&self) -> PathBuf {
        self.dir.path().join("data").join("__blobstorage__")
    }

    /// Bytes of block data Azurite holds, committed or not.
    pub fn stored_bytes(&self) -> u64 {
        let Ok(dir) = std::fs::read_dir(self.extents()) else {
            return 0;
        };
        dir.flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }

    /// Stops it with SIGTERM, which breaks the requests in flight as an outage would
    /// but lets it save its metadata (it keeps that in memory and saves it every 5 s):
    /// what was committed stays across the restart. SIGKILL after 10 s.
    ///
    /// Azurite handles SIGTERM only some time after it listens; one sent before that
    /// kills it unsaved (a container created just before was gone after the restart,
    /// 1 stop in 15 on a loaded machine), so it is sent at least 1 s after the start.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        std::thread::sleep(Duration::from_secs(1).saturating_sub(self.started.elapsed()));
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                use std::os::unix::process::ExitStatusExt;
                assert!(
                    status.signal().is_none() || std::thread::panicking(),
                    "azurite-blob was killed by SIGTERM before it handled it: it lost \
                     what it had not saved yet"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Starts it again on the same port and folder.
    pub fn restart(&mut self) {
        self.stop();
        let log = self.dir.path().join("azurite.log");
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).expect("azurite folder");
        let mut child = Command::new(&self.bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(self.port.to_string())
            .arg("--location")
            .arg(&data)
            // Telemetry would try the network this machine does not have.
            .args(["--skipApiVersionCheck", "--silent", "--disableTelemetry"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn azurite-blob");
        wait_listening(self.port, &mut child, &log, "azurite-blob");
        self.started = Instant::now();
        self.child = Some(child);
    }

    /// A request to Azurite signed with the account key (SharedKey), with no body and
    /// no headers but the date and version: `path` starts with the account (Azurite's
    /// path-style URLs), `query` is `name=value` or empty. Returns the raw answer.
    fn signed(&self, verb: &str, path: &str, query: &str) -> String {
        use std::io::{Read, Write};
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-12-02";
        // Path-style (emulator) URLs put the account in the path too.
        let mut to_sign = format!(
            "{verb}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZ_ACCOUNT}{path}"
        );
        let mut target = path.to_string();
        if let Some((name, value)) = query.split_once('=') {
            to_sign.push_str(&format!("\n{name}:{value}"));
            target.push_str(&format!("?{query}"));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &b64.decode(AZ_KEY).unwrap());
        let signature = b64.encode(ring::hmac::sign(&key, to_sign.as_bytes()));
        let request = format!(
            "{verb} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nx-ms-date: {date}\r\n\
             x-ms-version: {version}\r\nAuthorization: SharedKey {AZ_ACCOUNT}:{signature}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    }

    /// Create Container.
    pub fn create_container(&self, name: &str) {
        let answer = self.signed("PUT", &format!("/{AZ_ACCOUNT}/{name}"), "restype=container");
        assert!(
            answer.starts_with("HTTP/1.1 201"),
            "create container: {answer}"
        );
    }

    /// A blob's access tier as Get Blob Properties answers it (`x-ms-access-tier`);
    /// the name is plain (letters, digits, '/', '.', '_').
    pub fn blob_tier(&self, name: &str) -> Option<String> {
        let answer = self.signed("HEAD", &format!("/{AZ_ACCOUNT}/{BUCKET}/{name}"), "");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "Get Blob Properties: {answer}"
        );
        answer.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-ms-access-tier")
                .then(|| v.trim().to_string())
        })
    }

    /// An `[az]` section for this Azurite; `extra` is appended.
    pub fn config_section(&self, extra: &str) -> String {
        self.config_section_with_key(AZ_KEY, extra)
    }

    pub fn config_section_with_key(&self, key: &str, extra: &str) -> String {
        format!(
            "[az]\nconnection_string = \"{}\"\ncontainer_name = \"{BUCKET}\"\n{extra}\n",
            self.connection_string(key)
        )
    }
}

impl Drop for AzServer {
    /// Nothing needs saving once the test is done.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The fault suite's view of Azurite: uploads in progress are block data in its
/// extent files. Uncommitted blocks stay until Azure's 7-day expiry (Azurite's own
/// garbage collection), so nothing cleans them here.
pub struct AzHarness(pub AzServer);

impl AzHarness {
    pub fn start() -> Option<AzHarness> {
        AzServer::start().map(AzHarness)
    }
}

impl TestServer for AzHarness {
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
        destination_from("az", &self.0.config_section(AZ_SMALL_BLOCKS))
    }

    fn destination_without_root(&self) -> (Arc<dyn Destination>, String) {
        let missing = "no-such-container";
        let section = self.0.config_section("").replace(
            &format!("container_name = \"{BUCKET}\""),
            &format!("container_name = \"{missing}\""),
        );
        (destination_from("az", &section), missing.into())
    }

    fn stop(&mut self) {
        self.0.stop();
    }

    fn restart(&mut self) {
        self.0.restart();
    }

    /// Every extent file with its size: blocks committed or not (the suite's uploads
    /// start on an empty server, so their growth is the upload's).
    fn leftovers(&self) -> Vec<(String, u64)> {
        let Ok(dir) = std::fs::read_dir(self.0.extents()) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                m.is_file()
                    .then(|| (e.path().display().to_string(), m.len()))
            })
            .collect()
    }
}
