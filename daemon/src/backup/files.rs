//! The files part of a run: one copy per `backup_dirs` entry.

use chrono::Utc;
use tracing::Instrument;
use twindb_proto::{CopyKind, ExcludedReport, RunType};

use super::{backup_chain, local_record, store, BackupError};
use crate::engine::{Engine, JobCtx};
use crate::key::files_key;
use crate::source::FileSource;
use crate::status::CopyMeta;

/// Backs up every configured folder; returns the keys of the new copies.
/// Stops at the first failure: copies already committed stay recorded.
pub async fn backup_files(
    engine: &Engine,
    run_type: RunType,
    ctx: &JobCtx,
) -> Result<Vec<String>, BackupError> {
    let chain = backup_chain(engine).await?;
    let env = engine.modifier_env();
    let mut keys = Vec::new();
    for dir in &engine.config.source.backup_dirs {
        ctx.set_phase(format!("backing up {}", dir.display()));
        let started = Utc::now();
        let key = engine.status.load().await?.free_key(started, |t| {
            files_key(engine.host(), run_type, dir, t, &chain)
        });
        let writing = super::begin_put(engine, &key).await?;
        let span = tracing::info_span!("copy", key = %key);
        span.in_scope(|| tracing::info!(dir = %dir.display(), "backup started"));
        let read_before = ctx.bytes().0;
        let stored = store(
            engine.dest.as_ref(),
            engine.keep_local.as_ref(),
            Box::new(FileSource::new(dir).with_excludes(engine.config.source.excludes.clone())),
            &chain,
            &env,
            &key,
            ctx,
        )
        .instrument(span.clone())
        .await?;
        for w in stored.report.warnings.clone() {
            ctx.warn(w);
        }
        let x = stored.report.excluded;
        if !x.is_empty() {
            span.in_scope(|| {
                tracing::info!(
                    entries = x.entries,
                    cache_dirs = x.cache_dirs,
                    mount_points = x.mount_points,
                    "left out on purpose: {} entries matched by exclude, {} cache folders, {} mount points",
                    x.entries,
                    x.cache_dirs,
                    x.mount_points
                )
            });
            ctx.excluded(ExcludedReport {
                dir: dir.display().to_string(),
                entries: x.entries,
                cache_dirs: x.cache_dirs,
                mount_points: x.mount_points,
            });
        }
        let meta = CopyMeta {
            key: key.clone(),
            kind: CopyKind::Files,
            run_type: Some(run_type),
            backup_type: None,
            parent: None,
            host: engine.host().to_string(),
            source: dir.display().to_string(),
            started,
            finished: Utc::now(),
            source_size: ctx.bytes().0 - read_before,
            size: stored.digest.size,
            sha256: stored.digest.sha256.clone(),
            modifiers: chain.clone(),
            mysql: None,
            binlog: None,
            local: local_record(&stored, &key, &chain),
            twindb: None,
        };
        engine.status.record(meta, writing).await?;
        span.in_scope(|| tracing::info!(size = stored.digest.size, "backup committed"));
        keys.push(key);
    }
    Ok(keys)
}
