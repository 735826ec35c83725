//! Verify a MySQL copy the only way that proves it: restore it, start a throwaway
//! server on the restored datadir, open every table, stop the server.

use std::path::Path;
use std::time::Instant;

use twindb_proto::{CopyKind, VerifyReport};

use crate::engine::{Engine, JobCtx};
use crate::mysql::{mysqld_binary, MysqlError, Server, Throwaway, Vendor};
use crate::pipeline::Cancel;
use crate::restore::{restore_mysql, MysqlRestore};

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
    let binary = mysqld_binary(
        engine
            .config
            .mysql
            .as_ref()
            .and_then(|m| m.mysqld_binary.as_deref()),
        vendor,
    );
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

/// Starts mysqld on `datadir`, opens every user table, and shuts it down.
async fn check_server(
    binary: &str,
    datadir: &Path,
    state_dir: &Path,
    cancel: &Cancel,
) -> Result<(), String> {
    let (mut tmp, mut server) = Throwaway::start(binary, datadir, state_dir, cancel)
        .await
        .map_err(|e| e.to_string())?;
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
