//! A server of our own on a restored datadir, for verify, point-in-time restore and
//! restore drills: started with no networking, no grants and no binlog, on a socket in
//! a private folder, and always stopped (a cancel or a drop stops it too).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{find_program, ClientOptions, Server, Vendor};
use crate::pipeline::Cancel;
use crate::process::Group;

const START_LIMIT: Duration = Duration::from_secs(120);

/// Why the server could not be started; the messages carry its error log's end.
#[derive(Debug, thiserror::Error)]
pub enum ThrowawayError {
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error("cannot start {binary}: {cause}")]
    Spawn {
        binary: String,
        cause: std::io::Error,
    },
    #[error("the server exited ({status}) on the restored datadir:\n{log}")]
    Exited { status: String, log: String },
    #[error("the server did not start within {} s:\n{log}", START_LIMIT.as_secs())]
    NotStarted { log: String },
}

/// `configured` (`[mysql] mysqld_binary`), else the server binary of the copy's vendor.
pub fn mysqld_binary(configured: Option<&str>, vendor: Option<Vendor>) -> Option<String> {
    configured
        .map(str::to_string)
        .or_else(|| vendor.and_then(mysqld_for))
}

/// The server binary for the copy's vendor, in PATH or /usr/sbin (root's PATH may lack it).
fn mysqld_for(vendor: Vendor) -> Option<String> {
    let name = vendor.mysqld();
    find_program(name)
        .or_else(|| find_program(&format!("/usr/sbin/{name}")))
        .map(|p| p.display().to_string())
}

/// A server of our own on a restored datadir: no networking, no grants, no binlog, a
/// socket in a private folder. Used by verify and by point-in-time restore.
/// Dropped mid-way (cancel), its [`Group`] stops the server: never one left running on
/// a datadir.
pub struct Throwaway {
    server: Group,
    run: tempfile::TempDir,
    /// Forgotten after `run` is removed (fields drop in order): a start after a crash
    /// stops a server left running and removes its folder.
    _record: crate::state::ScratchRecord,
}

impl Throwaway {
    /// Starts it and returns a root connection (made while grants are skipped, so it
    /// keeps every privilege even after a `FLUSH PRIVILEGES` loads the grant tables).
    /// Setting `cancel` stops it.
    pub async fn start(
        binary: &str,
        datadir: &Path,
        state_dir: &Path,
        cancel: &Cancel,
    ) -> Result<(Throwaway, Server), ThrowawayError> {
        // In /tmp, not state_dir: the socket path must stay under 108 bytes.
        let run = tempfile::Builder::new()
            .prefix("twv")
            .tempdir_in("/tmp")
            .map_err(|cause| ThrowawayError::Io {
                what: "making a folder in /tmp".into(),
                cause,
            })?;
        let record = crate::state::ScratchRecord::new(
            state_dir,
            &crate::state::Leftover::Path {
                path: run.path().to_path_buf(),
            },
        )
        .map_err(|cause| ThrowawayError::Io {
            what: format!(
                "recording {} in {}",
                run.path().display(),
                state_dir.display()
            ),
            cause,
        })?;
        let socket = run.path().join("s");
        let log = run.path().join("error.log");
        let mut cmd = Command::new(binary);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", run.path().join("pid").display()))
            .arg(format!("--log-error={}", log.display()))
            // Not /tmp: a server there may delete the temp files of another one on the
            // host (the production server's, when verifying on the database host).
            .arg(format!("--tmpdir={}", run.path().display()))
            .args([
                "--skip-networking",
                "--skip-grant-tables",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=128M",
                "--max-allowed-packet=1G",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if nix::unistd::geteuid().is_root() {
            cmd.arg("--user=root");
        }
        let server = Group::spawn(&mut cmd, cancel).map_err(|cause| ThrowawayError::Spawn {
            binary: binary.to_string(),
            cause,
        })?;
        let mut tmp = Throwaway {
            server,
            run,
            _record: record,
        };
        match tmp.connect().await {
            Ok(server) => Ok((tmp, server)),
            Err(e) => {
                tmp.stop().await;
                Err(e)
            }
        }
    }

    pub fn socket(&self) -> std::path::PathBuf {
        self.run.path().join("s")
    }

    fn log(&self) -> std::path::PathBuf {
        self.run.path().join("error.log")
    }

    /// The last lines of the server's error log, for messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log())
    }

    async fn connect(&mut self) -> Result<Server, ThrowawayError> {
        let socket = self.socket();
        let opts = ClientOptions {
            user: Some("root".into()),
            socket: Some(socket.display().to_string()),
            ..Default::default()
        };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if self.server.exited() {
                let status = match self.server.wait() {
                    Ok(status) => status.to_string(),
                    Err(e) => e.to_string(),
                };
                return Err(ThrowawayError::Exited {
                    status,
                    log: self.log_tail(),
                });
            }
            if socket.exists() {
                if let Ok(s) = Server::connect(&opts).await {
                    return Ok(s);
                }
            }
            if Instant::now() > deadline {
                return Err(ThrowawayError::NotStarted {
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Clean shutdown through `server`, so InnoDB needs no recovery on the next start.
    /// Returns whether the server stopped by itself (else it was killed).
    pub async fn shutdown(&mut self, mut server: Server) -> bool {
        let _ = server.exec("SHUTDOWN").await;
        server.disconnect().await;
        self.stop().await
    }

    async fn stop(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.server.exited() {
                let _ = self.server.wait();
                return true;
            }
            if Instant::now() > deadline {
                tracing::warn!(socket = %self.socket().display(), "throwaway server did not stop; killing it");
                let _ = self.server.stop();
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
