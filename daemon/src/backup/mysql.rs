//! The MySQL part of a run: a full or an incremental physical copy.
//!
//! Full or incremental is decided as TwinDB did: runs of `full_backup`'s type and longer
//! are full; a shorter run is incremental when a full copy exists at its own or a longer
//! interval, and is taken against the newest such full (by LSN). The parent is recorded
//! and restore uses exactly that parent.

use std::time::Duration;

use chrono::Utc;
use tracing::Instrument;
use twindb_proto::{CopyKind, RunType};

use super::{local_record, store, BackupError};
use crate::engine::{Engine, JobCtx};
use crate::key::mysql_key;
use crate::mysql::{read_config_files, ClientOptions, Server, ServerInfo};
use crate::source::{MySqlSource, XtrabackupMeta};
use crate::status::{CopyMeta, MysqlMeta};

/// How long to wait for a desynced Galera node's receive queue to drain.
const GALERA_DRAIN_LIMIT: Duration = Duration::from_secs(900);

/// The full copy a new copy of `run_type` must be based on, or None for a full copy.
pub fn choose_parent(
    copies: &[CopyMeta],
    run_type: RunType,
    full_backup: RunType,
) -> Option<&CopyMeta> {
    if run_type >= full_backup {
        return None;
    }
    copies
        .iter()
        .filter(|c| c.kind == CopyKind::Mysql && c.backup_type.as_deref() == Some("full"))
        .filter(|c| c.run_type.is_some_and(|r| r >= run_type))
        .filter_map(|c| c.mysql.as_ref().map(|m| (c, m.to_lsn)))
        .max_by_key(|(c, lsn)| (*lsn, c.finished))
        .map(|(c, _)| c)
}

/// The server's current LSN, where it tells (MariaDB and Percona: `Innodb_lsn_current`).
async fn current_lsn(server: &mut Server) -> Option<u64> {
    let v = server.status_value("Innodb_lsn_current").await.ok()??;
    v.trim().parse().ok()
}

/// Whether `c` can be the parent of an incremental taken now: its checkpoint is not
/// ahead of the server's (a full from before the server was rebuilt, or another
/// server's, such as a TwinDB Backup copy of a host this one replaced, is not), and,
/// for a TwinDB Backup copy, its record was readable.
pub fn lsn_allows(c: &CopyMeta, current_lsn: Option<u64>) -> bool {
    if c.twindb.as_ref().is_some_and(|t| t.problem.is_some()) {
        return false;
    }
    match (c.mysql.as_ref(), current_lsn) {
        (Some(m), Some(now)) => m.to_lsn <= now,
        _ => true,
    }
}

pub async fn backup_mysql(
    engine: &Engine,
    run_type: RunType,
    ctx: &JobCtx,
) -> Result<Vec<String>, BackupError> {
    let cfg = engine
        .config
        .mysql
        .as_ref()
        .ok_or_else(|| BackupError::MysqlNotConfigured)?;
    ctx.set_phase("connecting to MySQL");
    let client = ClientOptions::from_defaults_file(&cfg.defaults_file)?;
    let mut server = Server::connect(&client).await?;
    let info = server.info().await?;

    let status = engine.status.load().await?;
    let current_lsn = current_lsn(&mut server).await;
    let candidates: Vec<CopyMeta> = status
        .copies
        .iter()
        .filter(|c| lsn_allows(c, current_lsn))
        .cloned()
        .collect();
    let parent = choose_parent(&candidates, run_type, cfg.full_backup).cloned();
    let (default_tool, default_stream) = info.vendor.tools();
    let tool = cfg
        .xtrabackup_binary
        .clone()
        .unwrap_or_else(|| default_tool.to_string());
    let stream_tool = cfg
        .xbstream_binary
        .clone()
        .unwrap_or_else(|| default_stream.to_string());
    let chain = super::backup_chain(engine).await?;
    let env = engine.modifier_env();
    let started = Utc::now();
    let key = status.free_key(started, |t| mysql_key(engine.host(), run_type, t, &chain));
    let writing = super::begin_put(engine, &key).await?;
    let backup_type = if parent.is_some() {
        "incremental"
    } else {
        "full"
    };
    let span = tracing::info_span!("copy", key = %key);
    span.in_scope(|| {
        tracing::info!(backup_type, parent = parent.as_ref().map(|p| p.key.as_str()), tool = %tool, "MySQL backup started")
    });
    ctx.set_phase(format!("{backup_type} MySQL copy with {tool}"));

    let work = tempfile::Builder::new()
        .prefix("twindb-xtrabackup-")
        .tempdir_in(&engine.config.daemon.state_dir)
        .map_err(|cause| BackupError::Io {
            what: "creating a scratch folder in state_dir".into(),
            cause,
        })?;
    let source = MySqlSource {
        tool: tool.clone(),
        defaults_file: cfg.defaults_file.clone(),
        incremental_lsn: parent
            .as_ref()
            .and_then(|p| p.mysql.as_ref())
            .map(|m| m.to_lsn),
        galera: info.galera,
        vendor: info.vendor,
        work_dir: work.path().to_path_buf(),
        cancel: ctx.cancel.clone(),
    };
    let lsn_dir = source.lsn_dir();

    if info.galera {
        galera_desync(&mut server, true).await?;
    }
    let stored = store(
        engine.dest.as_ref(),
        engine.keep_local.as_ref(),
        Box::new(source),
        &chain,
        &env,
        &key,
        ctx,
    )
    .instrument(span.clone())
    .await;
    // Whatever happened to the copy, the node must rejoin the cluster.
    let resync = if info.galera {
        galera_resync(&mut server, ctx).await
    } else {
        Ok(())
    };
    server.disconnect().await;
    let stored = stored?;
    resync?;

    let xb = XtrabackupMeta::read(&lsn_dir).map_err(|cause| BackupError::Io {
        what: format!("reading {tool}'s metadata"),
        cause,
    });
    let xb = match xb {
        Ok(xb) => xb,
        Err(e) => {
            let _ = engine.dest.delete(&key).await;
            return Err(e);
        }
    };
    if let Some(p) = parent.as_ref().and_then(|p| p.mysql.as_ref()) {
        if xb.from_lsn != p.to_lsn {
            let _ = engine.dest.delete(&key).await;
            return Err(BackupError::LsnGap {
                from: xb.from_lsn,
                parent_to: p.to_lsn,
            });
        }
    }
    let meta = CopyMeta {
        key: key.clone(),
        kind: CopyKind::Mysql,
        run_type: Some(run_type),
        backup_type: Some(backup_type.into()),
        host: engine.host().to_string(),
        source: client.target(),
        started,
        finished: Utc::now(),
        source_size: ctx.bytes().0,
        size: stored.digest.size,
        sha256: stored.digest.sha256.clone(),
        local: local_record(&stored, &key, &chain),
        twindb: None,
        modifiers: chain,
        parent: parent.map(|p| p.key),
        mysql: Some(mysql_meta(&info, xb, tool, stream_tool, &cfg.config_files)),
        binlog: None,
    };
    engine.status.record(meta, writing).await?;
    span.in_scope(|| tracing::info!(size = stored.digest.size, "MySQL backup committed"));
    Ok(vec![key])
}

fn mysql_meta(
    info: &ServerInfo,
    xb: XtrabackupMeta,
    tool: String,
    stream_tool: String,
    config_files: &[std::path::PathBuf],
) -> MysqlMeta {
    MysqlMeta {
        from_lsn: xb.from_lsn,
        to_lsn: xb.to_lsn,
        last_lsn: xb.last_lsn,
        binlog_file: xb.binlog_file,
        binlog_position: xb.binlog_position,
        gtid: xb.gtid,
        vendor: info.vendor,
        version: info.version.clone(),
        tool,
        stream_tool,
        galera: info.galera,
        wsrep_provider_version: info.wsrep_provider_version.clone(),
        config: read_config_files(config_files),
    }
}

async fn galera_desync(server: &mut Server, on: bool) -> Result<(), BackupError> {
    let sql = if on {
        "SET GLOBAL wsrep_desync = ON"
    } else {
        "SET GLOBAL wsrep_desync = OFF"
    };
    tracing::info!("{sql}");
    server.exec(sql).await.map_err(BackupError::from)
}

/// Waits (bounded) for the receive queue to drain, then turns desync off. Turning it
/// off is attempted even when the wait fails: a node left desynced is worse.
async fn galera_resync(server: &mut Server, ctx: &JobCtx) -> Result<(), BackupError> {
    ctx.set_phase("waiting for the Galera receive queue to drain");
    let deadline = tokio::time::Instant::now() + GALERA_DRAIN_LIMIT;
    loop {
        if ctx.cancel.is_cancelled() {
            // The job must end within its stop limit: rejoin now, drained or not.
            break;
        }
        match server.status_value("wsrep_local_recv_queue").await {
            Ok(Some(v)) if v.trim() == "0" => break,
            Ok(_) if tokio::time::Instant::now() >= deadline => {
                ctx.warn(format!(
                    "the Galera receive queue did not drain within {} s; turning wsrep_desync OFF anyway",
                    GALERA_DRAIN_LIMIT.as_secs()
                ));
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(e) => {
                ctx.warn(format!("cannot read wsrep_local_recv_queue: {e}"));
                break;
            }
        }
    }
    galera_desync(server, false).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::Vendor;

    fn copy(key: &str, run_type: RunType, backup_type: &str, to_lsn: u64) -> CopyMeta {
        CopyMeta {
            key: key.into(),
            kind: CopyKind::Mysql,
            run_type: Some(run_type),
            backup_type: Some(backup_type.into()),
            host: "h".into(),
            source: "s".into(),
            started: Utc::now(),
            finished: Utc::now(),
            source_size: 0,
            size: 0,
            sha256: String::new(),
            modifiers: vec![],
            parent: None,
            mysql: Some(MysqlMeta {
                from_lsn: 0,
                to_lsn,
                last_lsn: to_lsn,
                binlog_file: None,
                binlog_position: None,
                gtid: None,
                vendor: Vendor::Mariadb,
                version: String::new(),
                tool: "mariabackup".into(),
                stream_tool: "mbstream".into(),
                galera: false,
                wsrep_provider_version: None,
                config: vec![],
            }),
            binlog: None,
            local: None,
            twindb: None,
        }
    }

    #[test]
    fn a_full_ahead_of_the_server_or_with_an_unreadable_record_is_no_parent() {
        let full = copy("h/daily/mysql/a", RunType::Daily, "full", 500);
        assert!(lsn_allows(&full, Some(500)));
        assert!(lsn_allows(&full, Some(900)));
        assert!(
            lsn_allows(&full, None),
            "the server does not tell: as before"
        );
        // Another server's full, or one from before the server was rebuilt.
        assert!(!lsn_allows(&full, Some(499)));
        let mut theirs = full.clone();
        theirs.twindb = Some(crate::status::twindb::TwindbCopy::default());
        assert!(
            lsn_allows(&theirs, Some(900)),
            "a TwinDB Backup full is a parent"
        );
        theirs.twindb.as_mut().unwrap().problem = Some("corrupt".into());
        assert!(!lsn_allows(&theirs, Some(900)));
    }

    #[test]
    fn full_vs_incremental_as_twindb_decided() {
        let none: Vec<CopyMeta> = vec![];
        // At or above full_backup: always full.
        assert!(choose_parent(&none, RunType::Daily, RunType::Daily).is_none());
        // Below, with no full at this or a longer interval: full.
        assert!(choose_parent(&none, RunType::Hourly, RunType::Daily).is_none());
        let copies = vec![
            copy("old-daily", RunType::Daily, "full", 100),
            copy("new-weekly", RunType::Weekly, "full", 300),
            copy("newest-daily", RunType::Daily, "full", 200),
            copy("an-hourly-inc", RunType::Hourly, "incremental", 400),
        ];
        // The newest full by LSN at this or a longer interval, never an incremental.
        assert_eq!(
            choose_parent(&copies, RunType::Hourly, RunType::Daily)
                .unwrap()
                .key,
            "new-weekly"
        );
        // A weekly incremental (full_backup = monthly) only looks at weekly and longer.
        let copies = vec![copy("daily-full", RunType::Daily, "full", 900)];
        assert!(choose_parent(&copies, RunType::Weekly, RunType::Monthly).is_none());
    }
}
