//! Each backend as a [`TestServer`] of the conformance suite's faults (stop, restart,
//! leftovers), and the destination a config section builds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use twindb::destination::{Backoff, Destination, Local};

use super::{GcsServer, S3Server, TokenServer, BUCKET};
use crate::conformance::{Behaviour, TestServer};
use crate::sshd::Sshd;

/// The destination a config with `[destination] backup_destination = kind` and
/// `section` builds, exactly as twindbd would.
pub fn destination_from(
    kind: &str,
    section: &str,
) -> std::sync::Arc<dyn twindb::destination::Destination> {
    destination_with(kind, "", section)
}

/// [`destination_from`] with more `[destination]` keys, e.g. `download_ranges = 3`.
pub fn destination_with(kind: &str, keys: &str, section: &str) -> Arc<dyn Destination> {
    let text = format!(
        "[source]\nbackup_dirs = [\"/tmp\"]\n\n[destination]\nbackup_destination = \"{kind}\"\n{keys}\n\n{section}\n"
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
