//! A restore drill: `[verify]`'s scheduled proof that the latest copies restore.
//! It restores the latest MySQL copy (with its chain) and the latest files copy of
//! each configured folder, checks each, and reports each one's recovery time.

use twindb_proto::{CopyKind, VerifyReport};

use super::files::verify_files;
use super::{failed, verify_mysql, ServerChecks};
use crate::engine::{Engine, JobCtx};

/// Runs one drill; one report per copy (a configured item without a copy to restore
/// is a failed report, never a silent skip).
pub async fn run_drill(engine: &Engine, ctx: &JobCtx) -> Vec<VerifyReport> {
    let cfg = &engine.config.verify;
    let mut reports = Vec::new();
    if cfg.mysql {
        let checks = ServerChecks {
            roll_forward: cfg.roll_forward,
            check_schemas: cfg.check_schemas.clone(),
            probe_sql: cfg.probe_sql.clone(),
        };
        reports.push(verify_mysql(engine, None, None, &checks, ctx).await);
    }
    if cfg.files {
        let copies = match engine.status.load().await {
            Ok(s) => s.copies,
            Err(e) => {
                reports.push(failed(CopyKind::Files, "latest", 0.0, e.to_string()));
                return reports;
            }
        };
        for dir in &engine.config.source.backup_dirs {
            let source = dir.display().to_string();
            let latest = copies
                .iter()
                .filter(|c| c.kind == CopyKind::Files && c.source == source)
                .max_by_key(|c| c.finished);
            match latest {
                Some(c) => reports.push(verify_files(engine, &c.key, ctx).await),
                None => reports.push(failed(
                    CopyKind::Files,
                    &source,
                    0.0,
                    format!("there is no files copy of {source} to restore"),
                )),
            }
            if ctx.cancel.is_cancelled() {
                break;
            }
        }
    }
    reports
}
