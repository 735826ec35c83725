//! Verify a MySQL copy the only way that proves it: restore it, start a throwaway
//! server on the restored datadir, open every table, stop the server.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use twindb_proto::{CopyKind, VerifyReport};

use crate::engine::{Engine, JobCtx};
use crate::mysql::{find_program, ClientOptions, MysqlError, Server, Vendor};
use crate::pipeline::Cancel;
use crate::process::Group;
use crate::restore::{restore_mysql, MysqlRestore};

const START_LIMIT: Duration = Duration::from_secs(120);

/// Restores `copy` (or the newest MySQL copy) and checks that a server starts on it.
/// Failures are reported in the result, not as an error: the report is the product.
pub async fn verify_mysql(
    engine: &Engine,
    copy: Option<&str>,
    dst: Option<&Path>,
    ctx: &JobCtx,
) -> VerifyReport {
    let (key, vendor) = match pick(engine, copy).await {
        Ok(k) => k,
        Err(e) => {
            return VerifyReport {
                copy: copy.unwrap_or("latest").to_string(),
                restore_seconds: 0.0,
                success: false,
                error: Some(e),
            }
        }
    };
    // A scratch folder of ours is removed afterwards; a folder the user named is kept.
    let scratch = match dst {
        Some(_) => None,
        None => match tempfile::Builder::new()
            .prefix("verify-")
            .tempdir_in(&engine.config.daemon.state_dir)
        {
            Ok(t) => Some(t),
            Err(e) => {
                return failed(
                    &key,
                    0.0,
                    format!("creating a scratch folder in state_dir: {e}"),
                )
            }
        },
    };
    let datadir = match (&scratch, dst) {
        (Some(t), _) => t.path().join("datadir"),
        (None, Some(d)) => d.to_path_buf(),
        (None, None) => unreachable!("one of them is set"),
    };
    let started = Instant::now();
    let restored = restore_mysql(
        engine,
        MysqlRestore {
            key: &key,
            dst: &datadir,
            cache: None,
        },
        ctx,
    )
    .await;
    let restore_seconds = started.elapsed().as_secs_f64();
    if let Err(e) = restored {
        return failed(&key, restore_seconds, format!("restore failed: {e}"));
    }
    ctx.set_phase("starting a throwaway server on the restored datadir");
    let binary = mysqld_binary(engine, vendor);
    let result = match binary {
        Some(b) => check_server(&b, &datadir, &engine.config.daemon.state_dir, &ctx.cancel).await,
        None => Err("cannot tell which mysqld to start: set [mysql] mysqld_binary".into()),
    };
    drop(scratch);
    match result {
        Ok(()) => VerifyReport {
            copy: key,
            restore_seconds,
            success: true,
            error: None,
        },
        Err(e) => failed(&key, restore_seconds, e),
    }
}

fn failed(key: &str, restore_seconds: f64, error: String) -> VerifyReport {
    VerifyReport {
        copy: key.to_string(),
        restore_seconds,
        success: false,
        error: Some(error),
    }
}

async fn pick(engine: &Engine, copy: Option<&str>) -> Result<(String, Option<Vendor>), String> {
    let status = match copy {
        Some(k) if k != "latest" => engine.status_for_key(k).await,
        _ => engine.status.load().await,
    }
    .map_err(|e| e.to_string())?;
    let meta = match copy {
        Some(k) if k != "latest" => status.find(k).ok_or_else(|| {
            format!("no copy {k:?} in the status of its host (see `twindbctl ls`)")
        })?,
        _ => status
            .copies
            .iter()
            .filter(|c| c.kind == CopyKind::Mysql)
            .max_by_key(|c| c.finished)
            .ok_or_else(|| "there is no MySQL copy to verify".to_string())?,
    };
    Ok((meta.key.clone(), meta.mysql.as_ref().map(|m| m.vendor)))
}

/// `[mysql] mysqld_binary`, else the server binary of the copy's vendor.
pub(crate) fn mysqld_binary(engine: &Engine, vendor: Option<Vendor>) -> Option<String> {
    engine
        .config
        .mysql
        .as_ref()
        .and_then(|m| m.mysqld_binary.clone())
        .or_else(|| vendor.and_then(mysqld_for))
}

/// The server binary for the copy's vendor, in PATH or /usr/sbin (root's PATH may lack it).
fn mysqld_for(vendor: Vendor) -> Option<String> {
    let name = vendor.mysqld();
    find_program(name)
        .or_else(|| find_program(&format!("/usr/sbin/{name}")))
        .map(|p| p.display().to_string())
}

/// Starts mysqld on `datadir`, opens every user table, and shuts it down.
async fn check_server(
    binary: &str,
    datadir: &Path,
    state_dir: &Path,
    cancel: &Cancel,
) -> Result<(), String> {
    let (mut tmp, mut server) = Throwaway::start(binary, datadir, state_dir, cancel).await?;
    let result = open_every_table(&mut server).await;
    tmp.shutdown(server).await;
    result
}

async fn open_every_table(server: &mut Server) -> Result<(), String> {
    let tables = server
        .tables()
        .await
        .map_err(|e: MysqlError| format!("listing tables: {e}"))?;
    for (schema, table) in &tables {
        let sql = format!(
            "SELECT 1 FROM `{}`.`{}` LIMIT 1",
            schema.replace('`', "``"),
            table.replace('`', "``")
        );
        server
            .exec(&sql)
            .await
            .map_err(|e| format!("table {schema}.{table} cannot be read: {e}"))?;
    }
    tracing::info!(tables = tables.len(), "verify: every table opened");
    Ok(())
}

/// A server of our own on a restored datadir: no networking, no grants, no binlog, a
/// socket in a private folder. Used by verify and by point-in-time restore.
/// Dropped mid-way (cancel), its [`Group`] stops the server: never one left running on
/// a datadir.
pub(crate) struct Throwaway {
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
    pub(crate) async fn start(
        binary: &str,
        datadir: &Path,
        state_dir: &Path,
        cancel: &Cancel,
    ) -> Result<(Throwaway, Server), String> {
        // In /tmp, not state_dir: the socket path must stay under 108 bytes.
        let run = tempfile::Builder::new()
            .prefix("twv")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        let record = crate::state::ScratchRecord::new(
            state_dir,
            &crate::state::Leftover::Path {
                path: run.path().to_path_buf(),
            },
        )
        .map_err(|e| {
            format!(
                "recording {} in {}: {e}",
                run.path().display(),
                state_dir.display()
            )
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
        let server =
            Group::spawn(&mut cmd, cancel).map_err(|e| format!("cannot start {binary}: {e}"))?;
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

    pub(crate) fn socket(&self) -> std::path::PathBuf {
        self.run.path().join("s")
    }

    fn log(&self) -> std::path::PathBuf {
        self.run.path().join("error.log")
    }

    /// The last lines of the server's error log, for messages.
    pub(crate) fn log_tail(&self) -> String {
        tail(&self.log())
    }

    async fn connect(&mut self) -> Result<Server, String> {
        let socket = self.socket();
        let opts = ClientOptions {
            user: Some("root".into()),
            socket: Some(socket.display().to_string()),
            ..Default::default()
        };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if self.server.exited() {
                let status = self.server.wait().map_err(|e| e.to_string())?;
                return Err(format!(
                    "the server exited ({status}) on the restored datadir:\n{}",
                    self.log_tail()
                ));
            }
            if socket.exists() {
                if let Ok(s) = Server::connect(&opts).await {
                    return Ok(s);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the server did not start within {} s:\n{}",
                    START_LIMIT.as_secs(),
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Clean shutdown through `server`, so InnoDB needs no recovery on the next start.
    /// Returns whether the server stopped by itself (else it was killed).
    pub(crate) async fn shutdown(&mut self, mut server: Server) -> bool {
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
