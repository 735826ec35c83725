//! Binary log copies: every closed binlog not copied yet, after `FLUSH BINARY LOGS`,
//! in sequence order. Expiry (`expire_log_days`) is retention's job (retention.rs).
//!
//! A binlog is known by the server that wrote it and its place in that server's
//! history (name, first event time, server_id, size), never by its name alone: after
//! `RESET MASTER`, on a rebuilt server or after a failover the names start again, and
//! those files are new and are copied, under keys of their own.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use tracing::Instrument;
use twindb_proto::CopyKind;

use super::{local_record, store, BackupError};
use crate::engine::{Engine, JobCtx};
use crate::key::binlog_key;
use crate::mysql::{binlog_sequence, ClientOptions, Server};
use crate::source::{binlog_identity, BinlogSource};
use crate::status::{BinlogMeta, CopyMeta};

/// "Binary logging is off" is said once per daemon life, not on every run.
static REPORTED_NO_BINLOG: AtomicBool = AtomicBool::new(false);

pub async fn backup_binlogs(engine: &Engine, ctx: &JobCtx) -> Result<Vec<String>, BackupError> {
    let cfg = engine
        .config
        .mysql
        .as_ref()
        .ok_or_else(|| BackupError::MysqlNotConfigured)?;
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
    // With the streamer on, the open file is streamed: closing it early gains nothing.
    let streaming = engine.config.binlog.enabled;
    if !streaming {
        server.exec("FLUSH BINARY LOGS").await?;
    }
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
    let env = engine.modifier_env();
    let mut status = engine.status.load().await?;
    let mut files = Vec::new();
    for name in &names {
        let path = dir.join(name);
        let id = binlog_identity(&path).map_err(|cause| BackupError::Io {
            what: path.display().to_string(),
            cause,
        })?;
        files.push((name, path, id));
    }
    if let Some(warning) = history_restart(&status.copies, &files) {
        ctx.warn(warning);
    }
    let mut keys = Vec::new();
    for (name, path, id) in files {
        // Copied already, or the streamer stored it whole; with the streamer on, one
        // it is storing is left to it.
        if status.copies.iter().any(|c| c.is_binlog_file(name, &id))
            || CopyMeta::streamed(&status.copies, name, &id, !streaming)
        {
            continue;
        }
        ctx.set_phase(format!("copying binlog {name}"));
        let first_event = id.first_event;
        // Two files of one name starting in the same second (RESET MASTER right
        // after the server started) still get two keys.
        let key = status.free_key(first_event, |t| binlog_key(engine.host(), name, t, &chain));
        let writing = super::begin_put(engine, &key).await?;
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
                server_id: Some(id.server_id),
                segment: None,
                consolidated: None,
            }),
        };
        engine.status.record(meta.clone(), writing).await?;
        // The next file's key must not take this one's.
        status.copies.push(meta);
        keys.push(key);
    }
    Ok(keys)
}

/// A warning when the server's binary logs no longer continue the copied ones: its
/// oldest file has a lower number than the newest copy of the same log but began
/// later (`RESET MASTER`, a rebuilt server), or another server wrote it (a failover).
/// Point-in-time restore cannot replay across that point from an older copy.
fn history_restart(
    copies: &[CopyMeta],
    files: &[(&String, PathBuf, crate::source::BinlogIdentity)],
) -> Option<String> {
    let (name, _, id) = files.first()?;
    let newest = copies
        .iter()
        .filter(|c| c.twindb.is_none())
        .filter_map(|c| c.binlog.as_ref().filter(|_| c.kind == CopyKind::Binlog))
        .max_by_key(|b| (b.first_event, binlog_sequence(&b.name)))?;
    let restarted = binlog_sequence(name) < binlog_sequence(&newest.name)
        && id.first_event > newest.first_event;
    let other_server = newest.server_id.is_some_and(|s| s != id.server_id);
    if !restarted && !other_server {
        return None;
    }
    let why = if other_server {
        format!(
            "another server wrote them (server_id {} after {}: a failover or a new server)",
            id.server_id,
            newest.server_id.unwrap_or_default()
        )
    } else {
        "their numbering started again (RESET MASTER or a rebuilt server)".to_string()
    };
    Some(format!(
        "the server's binary logs do not continue the copied ones ({name}, begun {}, follows {}): {why}. \
         Point-in-time restore cannot replay across this point from an older copy: take a full MySQL copy now \
         (`twindbctl run daily`)",
        id.first_event.format("%Y-%m-%d %H:%M:%S UTC"),
        newest.name
    ))
}
