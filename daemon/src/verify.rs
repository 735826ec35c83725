//! Verify a MySQL copy the only way that proves it: restore it, start a throwaway
//! server on the restored datadir, open every table, stop the server.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use twindb_proto::{CopyKind, VerifyReport};

use crate::engine::{Engine, JobCtx};
use crate::mysql::{find_program, ClientOptions, MysqlError, Server, Vendor};
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
    let binary = engine
        .config
        .mysql
        .as_ref()
        .and_then(|m| m.mysqld_binary.clone())
        .or_else(|| vendor.and_then(mysqld_for));
    let result = match binary {
        Some(b) => check_server(&b, &datadir).await,
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

/// The server binary for the copy's vendor, in PATH or /usr/sbin (root's PATH may lack it).
fn mysqld_for(vendor: Vendor) -> Option<String> {
    let name = vendor.mysqld();
    find_program(name)
        .or_else(|| find_program(&format!("/usr/sbin/{name}")))
        .map(|p| p.display().to_string())
}

/// Starts mysqld on `datadir` (no networking, no grants, no binlog), opens every user
/// table, and shuts it down.
async fn check_server(binary: &str, datadir: &Path) -> Result<(), String> {
    let run = tempfile::Builder::new()
        .prefix("twv")
        .tempdir_in("/tmp")
        .map_err(|e| e.to_string())?;
    let socket = run.path().join("s");
    let log = run.path().join("error.log");
    let mut cmd = Command::new(binary);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--pid-file={}", run.path().join("pid").display()))
        .arg(format!("--log-error={}", log.display()))
        .args([
            "--skip-networking",
            "--skip-grant-tables",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=128M",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if nix::unistd::geteuid().is_root() {
        cmd.arg("--user=root");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {binary}: {e}"))?;
    let result = query(&mut child, &socket, &log).await;
    stop(&mut child, &socket).await;
    result
}

async fn query(child: &mut Child, socket: &Path, log: &Path) -> Result<(), String> {
    let opts = ClientOptions {
        user: Some("root".into()),
        socket: Some(socket.display().to_string()),
        ..Default::default()
    };
    let deadline = Instant::now() + START_LIMIT;
    let mut server = loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the server exited ({status}) on the restored datadir:\n{}",
                tail(log)
            ));
        }
        if socket.exists() {
            if let Ok(s) = Server::connect(&opts).await {
                break s;
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the server did not start within {} s:\n{}",
                START_LIMIT.as_secs(),
                tail(log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
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
    let _ = server.exec("SHUTDOWN").await;
    server.disconnect().await;
    Ok(())
}

async fn stop(child: &mut Child, socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if Instant::now() > deadline {
            tracing::warn!(socket = %socket.display(), "verify server did not stop; killing it");
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
