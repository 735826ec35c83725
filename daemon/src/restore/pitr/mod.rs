//! Point-in-time restore: restore the newest MySQL copy taken before the target, then
//! replay the backed-up binary logs from the copy's recorded position up to the target
//! into a throwaway server started on the restored datadir, and stop it cleanly.
//!
//! Binlogs stream from the destination through their reverse chain into
//! `mysqlbinlog -` (stdin), whose output goes straight into one `mysql` client: no
//! binlog is held in memory or staged on disk. A window the backed-up binlogs do not
//! cover is refused before anything is restored, naming the missing files and times.
//!
//! - `target.rs`: what `--until`, `--until-gtid` and `--until-position` mean.
//! - `history.rs`: which backed-up binlogs continue a copy, and the plan to replay.
//! - `replay.rs`: `mysqlbinlog | mysql` into the throwaway server.
//! - `error.rs`: every refusal, with the operator-facing text.

mod error;
mod history;
mod replay;
mod streamed;
mod target;

use std::path::Path;

use twindb_proto::{CopyKind, PitrTarget};

pub use self::error::PitrError;
pub use self::history::windows;
use self::history::{gap_after, history, plan};
use self::replay::{replay, ReplayTools};
use self::target::Target;
use super::mysql::RemoveDir;
use super::{prepare_destination, restore_mysql, MysqlRestore, RestoreError};
use crate::engine::{Engine, JobCtx};
use crate::mysql::{mysqld_binary, Throwaway, Vendor};
use crate::status::{CopyMeta, Status};

pub struct PitrRestore<'a> {
    pub target: &'a PitrTarget,
    /// The copy to start from; None picks the newest one before the target.
    pub copy: Option<&'a str>,
    pub dst: &'a Path,
    pub cache: Option<&'a Path>,
}

/// The newest MySQL copy before the target (by the finish time, or by the recorded
/// coordinates for GTID and position targets).
fn pick_base(
    status: &Status,
    target: &Target,
    named: Option<&str>,
) -> Result<CopyMeta, RestoreError> {
    if let Some(key) = named {
        let copy = super::find_copy(status, key, "mysql")?;
        if !target.follows(&copy) {
            return Err(PitrError::CopyAfterTarget {
                copy: key.to_string(),
                target: target.to_string(),
            }
            .into());
        }
        return Ok(copy);
    }
    status
        .copies
        .iter()
        .filter(|c| c.kind == CopyKind::Mysql && target.follows(c))
        .max_by_key(|c| c.finished)
        .cloned()
        .ok_or_else(|| RestoreError::from(PitrError::NoBaseCopy(target.to_string())))
}

pub async fn restore_pitr(
    engine: &Engine,
    req: PitrRestore<'_>,
    ctx: &JobCtx,
) -> Result<String, RestoreError> {
    let target = Target::parse(req.target)?;
    let status = engine.status.load().await?;
    let base = pick_base(&status, &target, req.copy)?;
    let m = base
        .mysql
        .as_ref()
        .expect("picked copies have MySQL metadata");
    let (Some(start_file), Some(start_pos)) = (m.binlog_file.clone(), m.binlog_position) else {
        return Err(PitrError::NoCoordinates(base.key.clone()).into());
    };
    if matches!(target, Target::Gtid(..)) && m.vendor != Vendor::Mariadb {
        return Err(PitrError::GtidOnMysql.into());
    }
    let binlogs = plan(&status, &base, &start_file, &target)?;
    let tools = ReplayTools::find(m.vendor)?;
    let configured = engine
        .config
        .mysql
        .as_ref()
        .and_then(|c| c.mysqld_binary.as_deref());
    let binary = mysqld_binary(configured, Some(m.vendor)).ok_or(PitrError::NoMysqld)?;

    let staging = prepare_destination(req.dst, &engine.config.daemon.state_dir)?;
    let work = staging.scratch("pitr");
    let _cleanup = RemoveDir(work.clone());
    restore_mysql(
        engine,
        MysqlRestore {
            key: &base.key,
            dst: &work,
            cache: req.cache,
        },
        ctx,
    )
    .await?;

    ctx.set_phase("starting a temporary server on the restored copy");
    let (mut server, conn) =
        Throwaway::start(&binary, &work, &engine.config.daemon.state_dir, &ctx.cancel)
            .await
            .map_err(PitrError::from)?;
    let t = std::time::Instant::now();
    let replayed = replay(
        engine,
        &tools,
        &server.socket(),
        &status,
        &binlogs,
        start_pos,
        &target,
        m.vendor,
        &gap_after(
            &history(&status, &start_file, base.finished),
            &start_file,
            &binlogs,
        ),
        ctx,
    )
    .await;
    ctx.set_phase("stopping the temporary server");
    let log = server.log_tail();
    let clean = server.shutdown(conn).await;
    let last = replayed?;
    ctx.took("binlog replay", None, t);
    if !clean {
        return Err(PitrError::UncleanStop { log }.into());
    }
    std::fs::remove_dir(staging.path())
        .map_err(|e| RestoreError::Io(staging.path().display().to_string(), e))?;
    std::fs::rename(&work, staging.path())
        .map_err(|e| RestoreError::Io(work.display().to_string(), e))?;
    staging.commit()?;
    Ok(format!(
        "restored {} and replayed binary logs {} ({start_pos}) to {last} up to {} into {dst}; the server was \
         stopped cleanly. Next steps: stop mysqld; move {dst}/_config (the server's my.cnf files at backup time) \
         out of the datadir; `chown -R mysql:mysql {dst}`; point datadir at {dst}; start mysqld.",
        base.key,
        start_file,
        target,
        dst = req.dst.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::history::{binlog_name, local};
    use super::*;
    use crate::status::{BinlogMeta, MysqlMeta};
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use twindb_proto::RunType;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
    }

    fn copy(key: &str, kind: CopyKind, at: i64) -> CopyMeta {
        CopyMeta {
            key: key.into(),
            kind,
            run_type: Some(RunType::Daily),
            backup_type: Some("full".into()),
            parent: None,
            host: "h".into(),
            source: String::new(),
            started: t0() + Duration::minutes(at),
            finished: t0() + Duration::minutes(at),
            source_size: 0,
            size: 0,
            sha256: String::new(),
            modifiers: vec![],
            mysql: None,
            binlog: None,
            local: None,
            twindb: None,
        }
    }

    fn mysql(key: &str, at: i64, file: &str, gtid: &str) -> CopyMeta {
        let mut c = copy(key, CopyKind::Mysql, at);
        c.mysql = Some(MysqlMeta {
            from_lsn: 0,
            to_lsn: 1,
            last_lsn: 1,
            binlog_file: Some(file.into()),
            binlog_position: Some(400),
            gtid: Some(gtid.into()),
            vendor: Vendor::Mariadb,
            version: "10.11".into(),
            tool: "mariabackup".into(),
            stream_tool: "mbstream".into(),
            galera: false,
            wsrep_provider_version: None,
            config: vec![],
        });
        c
    }

    /// Binlog `n`, first event at minute `first`, copied at minute `copied`.
    fn binlog(n: u64, first: i64, copied: i64) -> CopyMeta {
        let name = format!("mysql-bin.{n:06}");
        let mut c = copy(
            &format!("h/binlog/{name}-{first}"),
            CopyKind::Binlog,
            copied,
        );
        c.binlog = Some(BinlogMeta {
            name,
            first_event: t0() + Duration::minutes(first),
            server_id: Some(1),
            segment: None,
            consolidated: None,
        });
        c
    }

    fn at(min: i64) -> Target {
        let utc = t0() + Duration::minutes(min);
        Target::Time(local(utc), utc)
    }

    fn status() -> Status {
        Status {
            generation: 1,
            copies: vec![
                mysql("full", 5, "mysql-bin.000001", "0-1-5"),
                binlog(1, 0, 10),
                mysql("inc", 15, "mysql-bin.000002", "0-1-9"),
                binlog(2, 10, 20),
                binlog(3, 20, 30),
                // 4 was purged before it was copied
                binlog(5, 40, 50),
            ],
            pending: vec![],
            writer: None,
            problems: vec![],
        }
    }

    #[test]
    fn the_newest_copy_before_the_target_and_the_binlogs_to_its_file() {
        let mut s = status();
        // Newer, but taken with binary logging off: it cannot be rolled forward.
        let mut off = mysql("binlog-off", 21, "x", "");
        if let Some(m) = off.mysql.as_mut() {
            m.binlog_file = None;
            m.binlog_position = None;
        }
        s.copies.push(off);
        let base = pick_base(&s, &at(25), None).unwrap();
        assert_eq!(base.key, "inc");
        let names: Vec<String> = plan(&s, &base, "mysql-bin.000002", &at(25))
            .unwrap()
            .iter()
            .map(|c| c.binlog.as_ref().unwrap().name.clone())
            .collect();
        assert_eq!(names, ["mysql-bin.000002", "mysql-bin.000003"]);
        assert_eq!(pick_base(&s, &at(12), None).unwrap().key, "full");
        assert!(pick_base(&s, &at(2), None).is_err());
    }

    #[test]
    fn a_missing_binlog_in_the_window_is_named() {
        let s = status();
        let base = pick_base(&s, &at(45), None).unwrap();
        let err = plan(&s, &base, "mysql-bin.000002", &at(45))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("binary log mysql-bin.000004 is not backed up"),
            "{err}"
        );
        assert!(err.contains(&local(t0() + Duration::minutes(30))), "{err}");
        assert!(err.contains(&local(t0() + Duration::minutes(40))), "{err}");
        // Past the last backed-up binlog.
        let late = mysql("late", 45, "mysql-bin.000005", "0-1-20");
        let err = plan(&s, &late, "mysql-bin.000005", &at(55))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not backed up yet"), "{err}");
    }

    #[test]
    fn gtid_and_position_targets_pick_by_coordinates() {
        let s = status();
        let g = Target::parse(&PitrTarget::Gtid("0-1-7".into())).unwrap();
        assert_eq!(pick_base(&s, &g, None).unwrap().key, "full");
        let g = Target::parse(&PitrTarget::Gtid("0-1-12".into())).unwrap();
        assert_eq!(pick_base(&s, &g, None).unwrap().key, "inc");
        let p = Target::parse(&PitrTarget::Position {
            file: "mysql-bin.000003".into(),
            position: 100,
        })
        .unwrap();
        let base = pick_base(&s, &p, None).unwrap();
        assert_eq!(base.key, "inc");
        assert_eq!(plan(&s, &base, "mysql-bin.000002", &p).unwrap().len(), 2);
        assert!(Target::parse(&PitrTarget::Gtid("nonsense".into())).is_err());
        assert!(Target::parse(&PitrTarget::Time("yesterday".into())).is_err());
    }

    #[test]
    fn a_gtid_beyond_a_gap_is_explained() {
        let s = status();
        let g = Target::parse(&PitrTarget::Gtid("0-1-99".into())).unwrap();
        let base = pick_base(&s, &g, None).unwrap();
        let run = plan(&s, &base, "mysql-bin.000002", &g).unwrap();
        assert_eq!(run.len(), 2, "the unbroken run 2-3 is tried");
        let h = history(&s, "mysql-bin.000002", base.finished);
        let note = gap_after(&h, "mysql-bin.000002", &run);
        assert!(
            note.contains("binary log mysql-bin.000004 is not backed up"),
            "{note}"
        );
        assert_eq!(gap_after(&h, "mysql-bin.000005", &run[..0]), "");
    }

    #[test]
    fn windows_stop_at_gaps() {
        let w = windows(&status());
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].from, t0() + Duration::minutes(5));
        assert_eq!(w[0].to, t0() + Duration::minutes(30));
        assert_eq!(w[0].first_copy, "full");
        assert_eq!(w[0].last_binlog, "mysql-bin.000003");
        assert_eq!(binlog_name("mysql-bin.000009", 10), "mysql-bin.000010");
    }

    /// Names restart after RESET MASTER: the new mysql-bin.000001 and .000002 are
    /// another history. A copy from before it rolls forward through its own files
    /// only, a copy from after it through the new ones, and crossing is refused.
    #[test]
    fn a_reset_master_starts_a_new_history() {
        let s = Status {
            generation: 1,
            copies: vec![
                mysql("full-before", 5, "mysql-bin.000001", "0-1-5"),
                binlog(1, 0, 10),
                binlog(2, 10, 20),
                // RESET MASTER at minute 25.
                binlog(1, 25, 30),
                mysql("full-after", 32, "mysql-bin.000002", "0-1-2"),
                binlog(2, 30, 40),
                binlog(3, 40, 50),
            ],
            pending: vec![],
            writer: None,
            problems: vec![],
        };
        let keys = |s: &Status, base: &str, to: i64| -> Result<Vec<String>, String> {
            let base = s.find(base).unwrap().clone();
            let file = base.mysql.as_ref().unwrap().binlog_file.clone().unwrap();
            plan(s, &base, &file, &at(to))
                .map(|v| v.into_iter().map(|c| c.key).collect())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            keys(&s, "full-before", 15).unwrap(),
            [
                "h/binlog/mysql-bin.000001-0",
                "h/binlog/mysql-bin.000002-10"
            ]
        );
        assert_eq!(
            keys(&s, "full-after", 45).unwrap(),
            [
                "h/binlog/mysql-bin.000002-30",
                "h/binlog/mysql-bin.000003-40"
            ]
        );
        assert_eq!(pick_base(&s, &at(45), None).unwrap().key, "full-after");
        let err = keys(&s, "full-before", 45).unwrap_err();
        assert!(err.contains("started again with mysql-bin.000001"), "{err}");
        assert!(
            err.contains("full-before cannot be rolled forward"),
            "{err}"
        );
        // The new .000003 follows the old .000002 by number, not in history.
        let w = windows(&s);
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(w[0].first_copy, "full-before");
        assert_eq!(w[0].last_binlog, "mysql-bin.000002");
        assert_eq!(w[1].first_copy, "full-after");
        assert_eq!(w[1].last_binlog, "mysql-bin.000003");
    }

    /// After a failover the new server's files carry its own server_id: never replayed
    /// as the old server's successors, even with the next number.
    #[test]
    fn another_servers_binlogs_are_another_history() {
        let mut next = binlog(3, 30, 35);
        next.binlog.as_mut().unwrap().server_id = Some(2);
        let s = Status {
            generation: 1,
            copies: vec![
                mysql("full", 5, "mysql-bin.000001", "0-1-5"),
                binlog(1, 0, 10),
                binlog(2, 10, 20),
                next,
            ],
            pending: vec![],
            writer: None,
            problems: vec![],
        };
        let base = s.find("full").unwrap().clone();
        let err = plan(&s, &base, "mysql-bin.000001", &at(33))
            .unwrap_err()
            .to_string();
        assert!(err.contains("started again with mysql-bin.000003"), "{err}");
    }
}
