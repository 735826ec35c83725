//! What each kind of job does once its lane runs it: the backup, restore, verify or
//! clone it names, and retention after a successful backup.

use std::path::Path;

use twindb_proto::{CopyKind, JobKind, VerifyReport};

use super::{Job, Work};
use crate::engine::{Engine, JobCtx};

pub(super) struct Outcome {
    pub(super) copies: Vec<String>,
    pub(super) message: Option<String>,
    pub(super) verify: Option<VerifyReport>,
}

pub(super) async fn execute(engine: &Engine, job: &Job) -> anyhow::Result<Outcome> {
    let done = |copies: Vec<String>, message: Option<String>| Outcome {
        copies,
        message,
        verify: None,
    };
    // Retention runs after a successful backup only: `?` returns before it otherwise.
    let with_retention = |message: String, retention: Option<String>| match retention {
        Some(m) => Some(format!("{message}; {m}")),
        None => Some(message),
    };
    match (&job.work, job.kind) {
        (Work::Backup(rt), JobKind::BackupFiles) => {
            let copies = crate::backup::backup_files(engine, *rt, &job.ctx).await?;
            let message = match copies.len() {
                1 => "stored 1 copy".to_string(),
                n => format!("stored {n} copies"),
            };
            let retention = retention_after_backup(engine, CopyKind::Files, &job.ctx).await;
            Ok(done(copies, with_retention(message, retention)))
        }
        (Work::Backup(rt), JobKind::BackupMysql) => {
            let copies = crate::backup::backup_mysql(engine, *rt, &job.ctx).await?;
            let retention = retention_after_backup(engine, CopyKind::Mysql, &job.ctx).await;
            Ok(done(
                copies,
                with_retention("stored 1 copy".into(), retention),
            ))
        }
        (Work::Backup(_), kind) => anyhow::bail!("{kind} is not a backup of a run type"),
        (Work::Binlog, _) => {
            let copies = crate::backup::backup_binlogs(engine, &job.ctx).await?;
            let message = format!("copied {} binary logs", copies.len());
            let retention = retention_after_backup(engine, CopyKind::Binlog, &job.ctx).await;
            Ok(done(copies, with_retention(message, retention)))
        }
        (Work::Restore(req), _) => {
            let dst = Path::new(&req.dst);
            let message = match req.kind {
                CopyKind::Files => {
                    crate::restore::restore_files(engine, &req.copy, dst, &job.ctx).await?
                }
                CopyKind::Mysql if req.until.is_some() => {
                    let r = crate::restore::PitrRestore {
                        target: req.until.as_ref().expect("checked"),
                        copy: Some(req.copy.as_str()).filter(|c| !c.is_empty()),
                        dst,
                        cache: req.cache.as_deref().map(Path::new),
                    };
                    crate::restore::restore_pitr(engine, r, &job.ctx).await?
                }
                CopyKind::Mysql => {
                    let r = crate::restore::MysqlRestore {
                        key: &req.copy,
                        dst,
                        cache: req.cache.as_deref().map(Path::new),
                    };
                    crate::restore::restore_mysql(engine, r, &job.ctx).await?
                }
                CopyKind::Binlog => {
                    anyhow::bail!(
                        "a binlog copy is not restored on its own: use point-in-time restore"
                    )
                }
            };
            Ok(done(vec![req.copy.clone()], Some(message)))
        }
        (Work::Clone(req), _) => {
            let message = crate::clone::clone_mysql(engine, req, &job.ctx).await?;
            Ok(done(vec![], Some(message)))
        }
        (Work::Verify(req), _) if req.drill => {
            let reports = crate::verify::run_drill(engine, &job.ctx).await;
            for r in &reports {
                engine.metrics.verify_finished(r);
            }
            let failures: Vec<String> = reports
                .iter()
                .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.copy)))
                .collect();
            let copies = reports.iter().map(|r| r.copy.clone()).collect();
            let summary = reports
                .iter()
                .filter_map(|r| {
                    r.rto_seconds
                        .map(|s| format!("{} restored in {s:.1} s", r.kind.as_str()))
                })
                .collect::<Vec<_>>()
                .join(", ");
            job.update(|i| i.drill = reports);
            if !failures.is_empty() {
                return Err(anyhow::anyhow!(
                    "restore drill failed: {}",
                    failures.join("; ")
                ));
            }
            Ok(done(
                copies,
                Some(format!("restore drill passed: {summary}")),
            ))
        }
        (Work::Verify(req), _) => {
            let report = crate::verify::verify_mysql(
                engine,
                req.copy.as_deref(),
                req.dst.as_deref().map(Path::new),
                &crate::verify::ServerChecks::default(),
                &job.ctx,
            )
            .await;
            engine.metrics.verify_finished(&report);
            if let Some(e) = report.error.clone() {
                // The job fails, and its info still carries the report.
                job.update(|i| i.verify = Some(report));
                return Err(anyhow::anyhow!(e));
            }
            let run_type = engine
                .status
                .load()
                .await
                .ok()
                .and_then(|s| s.find(&report.copy).and_then(|c| c.run_type));
            // The copy's run type names the verify in the history and the
            // `twindb_last_verify_success_timestamp_seconds` gauge (kept in state.json).
            job.update(|i| i.run_type = run_type);
            Ok(Outcome {
                copies: vec![report.copy.clone()],
                message: None,
                verify: Some(report),
            })
        }
    }
}

/// Applies retention to the copies of `kind` after a successful backup. Its problems
/// become job warnings: the backup itself worked.
async fn retention_after_backup(engine: &Engine, kind: CopyKind, ctx: &JobCtx) -> Option<String> {
    ctx.set_phase("applying retention");
    match crate::retention::apply(engine, &[kind]).await {
        Ok(applied) => {
            for e in applied.errors {
                ctx.warn(format!("retention: {e}"));
            }
            match applied.deleted.len() {
                0 => None,
                1 => Some("retention deleted 1 copy".into()),
                n => Some(format!("retention deleted {n} copies")),
            }
        }
        Err(e) => {
            ctx.warn(format!(
                "retention was not applied: {:#}",
                anyhow::Error::from(e)
            ));
            None
        }
    }
}
