//! Verify a copy the only way that proves it: restore it and check what came back.
//!
//! - MySQL (this file): restore the chain, start a throwaway server on the restored
//!   datadir, open every table (and run the drill's checks), stop the server.
//! - `files.rs`: restore a files copy, then compare every restored file with the
//!   copy's tar.
//! - `drill.rs`: a restore drill, `[verify]`'s scheduled run of the above over the
//!   latest copies, each with its measured recovery time.

mod drill;
mod files;

use std::path::{Path, PathBuf};
use std::time::Instant;

use twindb_proto::{CopyKind, VerifyReport};

pub use self::drill::run_drill;
use crate::engine::{Engine, JobCtx};
use crate::mysql::{mysqld_binary, MysqlError, Server, Throwaway, Vendor};
use crate::pipeline::Cancel;
use crate::restore::{restore_mysql, restore_pitr, MysqlRestore, PitrRestore};
use crate::state::{Leftover, ScratchRecord};

/// What to check on a restored server besides opening every table.
#[derive(Debug, Clone, Default)]
pub struct ServerChecks {
    /// Roll the copy forward with the backed-up binlogs to their end first.
    pub roll_forward: bool,
    /// `CHECK TABLE` every table of these schemas.
    pub check_schemas: Vec<String>,
    /// Must return at least one row.
    pub probe_sql: Option<String>,
}

/// Restores `copy` (or the newest MySQL copy) and checks that a server starts on it.
/// Failures are reported in the result, not as an error: the report is the product.
pub async fn verify_mysql(
    engine: &Engine,
    copy: Option<&str>,
    dst: Option<&Path>,
    checks: &ServerChecks,
    ctx: &JobCtx,
) -> VerifyReport {
    let (key, vendor) = match pick(engine, copy).await {
        Ok(k) => k,
        Err(e) => return failed(CopyKind::Mysql, copy.unwrap_or("latest"), 0.0, e),
    };
    let scratch = match Scratch::new(engine, dst, "datadir") {
        Ok(s) => s,
        Err(e) => return failed(CopyKind::Mysql, &key, 0.0, e),
    };
    let datadir = scratch.path.clone();
    let started = Instant::now();
    let restored = if checks.roll_forward {
        let latest = twindb_proto::PitrTarget::Time("latest".into());
        restore_pitr(
            engine,
            PitrRestore {
                target: &latest,
                copy: Some(&key),
                dst: &datadir,
                cache: None,
            },
            ctx,
        )
        .await
    } else {
        restore_mysql(
            engine,
            MysqlRestore {
                key: &key,
                dst: &datadir,
                cache: None,
            },
            ctx,
        )
        .await
    };
    let restore_seconds = started.elapsed().as_secs_f64();
    if let Err(e) = restored {
        return failed(
            CopyKind::Mysql,
            &key,
            restore_seconds,
            format!("restore failed: {e}"),
        );
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
        Some(b) => {
            check_server(
                &b,
                &datadir,
                &engine.config.daemon.state_dir,
                checks,
                started,
                &ctx.cancel,
            )
            .await
        }
        None => Err("cannot tell which mysqld to start: set [mysql] mysqld_binary".into()),
    };
    drop(scratch);
    match result {
        Ok((rto, mut lines)) => VerifyReport {
            copy: key,
            restore_seconds,
            success: true,
            error: None,
            kind: CopyKind::Mysql,
            rto_seconds: Some(rto),
            checks: {
                if checks.roll_forward {
                    lines.insert(
                        0,
                        "rolled forward to the latest backed-up binlog event".into(),
                    );
                }
                lines
            },
        },
        Err(e) => failed(CopyKind::Mysql, &key, restore_seconds, e),
    }
}

fn failed(kind: CopyKind, key: &str, restore_seconds: f64, error: String) -> VerifyReport {
    VerifyReport {
        copy: key.to_string(),
        restore_seconds,
        success: false,
        error: Some(error),
        kind,
        rto_seconds: None,
        checks: vec![],
    }
}

/// Where a verify restores: a folder the user named (kept), or a scratch folder of
/// ours in `[verify] scratch_dir` or `state_dir` (removed when dropped; named
/// `verify-*`, so a scratch left by a crash is removed at the next start).
struct Scratch {
    // Dropped in this order: the folder goes, then its record.
    _dir: Option<tempfile::TempDir>,
    /// Outside state_dir, a crash's leftovers are found by this record at the next
    /// start (inside, by their `verify-` name).
    _record: Option<ScratchRecord>,
    path: PathBuf,
}

impl Scratch {
    fn new(engine: &Engine, dst: Option<&Path>, name: &str) -> Result<Scratch, String> {
        if let Some(d) = dst {
            return Ok(Scratch {
                _dir: None,
                _record: None,
                path: d.to_path_buf(),
            });
        }
        let state_dir = &engine.config.daemon.state_dir;
        let root = engine
            .config
            .verify
            .scratch_dir
            .as_deref()
            .unwrap_or(state_dir);
        let record = if root == state_dir.as_path() {
            None
        } else {
            let leftover = Leftover::Siblings {
                dir: root.to_path_buf(),
                prefix: "verify-".into(),
                suffix: String::new(),
            };
            Some(
                ScratchRecord::new(state_dir, &leftover)
                    .map_err(|e| format!("recording the scratch folder in state_dir: {e}"))?,
            )
        };
        let dir = tempfile::Builder::new()
            .prefix("verify-")
            .tempdir_in(root)
            .map_err(|e| format!("creating a scratch folder in {}: {e}", root.display()))?;
        Ok(Scratch {
            path: dir.path().join(name),
            _dir: Some(dir),
            _record: record,
        })
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

/// Starts mysqld on `datadir`, runs the checks, and shuts it down. Returns the
/// recovery time (from `started` until the server accepted queries) and what was
/// checked.
async fn check_server(
    binary: &str,
    datadir: &Path,
    state_dir: &Path,
    checks: &ServerChecks,
    started: Instant,
    cancel: &Cancel,
) -> Result<(f64, Vec<String>), String> {
    let (mut tmp, mut server) = Throwaway::start(binary, datadir, state_dir, cancel)
        .await
        .map_err(|e| e.to_string())?;
    let rto = started.elapsed().as_secs_f64();
    let result = run_checks(&mut server, checks).await;
    tmp.shutdown(server).await;
    result.map(|lines| (rto, lines))
}

async fn run_checks(server: &mut Server, checks: &ServerChecks) -> Result<Vec<String>, String> {
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
    let mut lines = vec![format!("{} tables opened", tables.len())];
    for schema in &checks.check_schemas {
        let mine: Vec<&String> = tables
            .iter()
            .filter(|(s, _)| s == schema)
            .map(|(_, t)| t)
            .collect();
        if mine.is_empty() {
            return Err(format!(
                "schema {schema} ([verify] check_schemas) has no table on the restored server"
            ));
        }
        for table in &mine {
            let verdict = server
                .check_table(schema, table)
                .await
                .map_err(|e| format!("CHECK TABLE {schema}.{table}: {e}"))?;
            let ok = verdict
                .iter()
                .any(|(t, m)| t.eq_ignore_ascii_case("status") && m.eq_ignore_ascii_case("OK"));
            if !ok {
                let said: Vec<String> = verdict.iter().map(|(t, m)| format!("{t}: {m}")).collect();
                return Err(format!(
                    "CHECK TABLE {schema}.{table} failed: {}",
                    said.join("; ")
                ));
            }
        }
        lines.push(format!("CHECK TABLE: {} tables of {schema} OK", mine.len()));
    }
    if let Some(sql) = &checks.probe_sql {
        let rows = server
            .count_rows(sql)
            .await
            .map_err(|e| format!("the probe query ([verify] probe_sql) failed: {e}"))?;
        if rows == 0 {
            return Err("the probe query ([verify] probe_sql) returned no row".into());
        }
        lines.push(format!("probe query: {rows} rows"));
    }
    Ok(lines)
}
