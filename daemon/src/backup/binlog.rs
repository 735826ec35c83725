//! Binary log copies: every closed binlog not copied yet, after `FLUSH BINARY LOGS`,
//! in sequence order. Expiry (`expire_log_days`) is retention's job (retention.rs).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use tracing::Instrument;
use twindb_proto::CopyKind;

use super::{local_record, store, BackupError};
use crate::engine::{Engine, JobCtx};
use crate::key::binlog_key;
use crate::mysql::{binlog_sequence, ClientOptions, Server};
use crate::source::{first_event_time, BinlogSource};
use crate::status::{BinlogMeta, CopyMeta};

/// "Binary logging is off" is said once per daemon life, not on every run.
static REPORTED_NO_BINLOG: AtomicBool = AtomicBool::new(false);

pub async fn backup_binlogs(engine: &Engine, ctx: &JobCtx) -> Result<Vec<String>, BackupError> {
    let cfg = engine.config.mysql.as_ref().ok_or_else(|| {
        BackupError::Other("MySQL backups are not configured ([source] backup_mysql)".into())
    })?;
    ctx.set_phase("listing binary logs");
    let client = ClientOptions::from_defaults_file(&cfg.defaults_file)?;
    let mut server = Server::connect(&client).await?;
    let info = server.info().await?;
    let (Some(basename), true) = (info.log_bin_basename.clone(), info.log_bin) else {
        if !REPORTED_NO_BINLOG.swap(true, Ordering::SeqCst) {
            ctx.warn(
                "binary logging is off on the server (log_bin); no binlog copies are made".into(),
            );
        }
        server.disconnect().await;
        return Ok(vec![]);
    };
    server.exec("FLUSH BINARY LOGS").await?;
    let mut names = server.binary_logs().await?;
    server.disconnect().await;
    names.sort_by_key(|n| binlog_sequence(n));
    // The newest is the one the server writes now: never copied.
    names.pop();

    let dir = Path::new(&basename)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let chain = super::backup_chain(engine).await?;
    let env = crate::modifier::ModifierEnv::from_config(&engine.config);
    let status = engine.status.load().await?;
    let copied = |name: &str| {
        status.copies.iter().any(|c| {
            c.kind == CopyKind::Binlog && c.binlog.as_ref().is_some_and(|b| b.name == name)
        })
    };
    let mut keys = Vec::new();
    for name in names.iter().filter(|n| !copied(n)) {
        let path = dir.join(name);
        ctx.set_phase(format!("copying binlog {name}"));
        let first_event = first_event_time(&path)
            .map_err(|e| BackupError::Other(format!("{}: {e}", path.display())))?;
        let key = binlog_key(engine.host(), name, &chain);
        let _writing = engine.status.writing(&key);
        let span = tracing::info_span!("copy", key = %key);
        let started = Utc::now();
        let read_before = ctx.bytes().0;
        let stored = store(
            engine.dest.as_ref(),
            engine.keep_local.as_ref(),
            Box::new(BinlogSource { path: path.clone() }),
            &chain,
            &env,
            &key,
            ctx,
        )
        .instrument(span)
        .await?;
        let meta = CopyMeta {
            key: key.clone(),
            kind: CopyKind::Binlog,
            run_type: None,
            backup_type: None,
            host: engine.host().to_string(),
            source: path.display().to_string(),
            started,
            finished: Utc::now(),
            source_size: ctx.bytes().0 - read_before,
            size: stored.digest.size,
            sha256: stored.digest.sha256.clone(),
            local: local_record(&stored, &key, &chain),
            twindb: None,
            modifiers: chain.clone(),
            parent: None,
            mysql: None,
            binlog: Some(BinlogMeta {
                name: name.clone(),
                first_event,
            }),
        };
        engine.status.update(|s| s.copies.push(meta)).await?;
        keys.push(key);
    }
    Ok(keys)
}
