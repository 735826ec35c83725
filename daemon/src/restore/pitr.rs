//! Point-in-time restore: restore the newest MySQL copy taken before the target, then
//! replay the backed-up binary logs from the copy's recorded position up to the target
//! into a throwaway server started on the restored datadir, and stop it cleanly.
//!
//! Binlogs stream from the destination through their reverse chain into
//! `mysqlbinlog -` (stdin), whose output goes straight into one `mysql` client: no
//! binlog is held in memory or staged on disk. A window the backed-up binlogs do not
//! cover is refused before anything is restored, naming the missing files and times.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use twindb_proto::{CopyKind, PitrTarget, PitrWindow};

use super::mysql::RemoveDir;
use super::{prepare_destination, restore_mysql, stream_copy, MysqlRestore, RestoreError};
use crate::engine::{Engine, JobCtx};
use crate::mysql::{binlog_sequence, find_program, Tool, Vendor};
use crate::status::{BinlogMeta, CopyMeta, Status};
use crate::verify::{mysqld_binary, Throwaway};

pub struct PitrRestore<'a> {
    pub target: &'a PitrTarget,
    /// The copy to start from; None picks the newest one before the target.
    pub copy: Option<&'a str>,
    pub dst: &'a Path,
    pub cache: Option<&'a Path>,
}

/// The target, parsed.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// The text as mysqlbinlog gets it, and the instant it means here.
    Time(String, DateTime<Utc>),
    Gtid(String, Gtids),
    Position(String, u64),
}

/// A MariaDB GTID list: domain -> (server, sequence number).
type Gtids = BTreeMap<u32, u64>;

fn parse_gtids(s: &str) -> Option<Gtids> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = part.split('-');
        let (Some(d), Some(_server), Some(n), None) = (it.next(), it.next(), it.next(), it.next())
        else {
            return None;
        };
        out.insert(d.parse().ok()?, n.parse().ok()?);
    }
    (!out.is_empty()).then_some(out)
}

impl Target {
    fn parse(t: &PitrTarget) -> Result<Target, RestoreError> {
        match t {
            PitrTarget::Time(s) => {
                let naive =
                    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").map_err(|e| {
                        RestoreError::Other(format!(
                            "--until {s:?}: expected \"YYYY-MM-DD HH:MM:SS\" ({e})"
                        ))
                    })?;
                let at = Local
                    .from_local_datetime(&naive)
                    .earliest()
                    .ok_or_else(|| {
                        RestoreError::Other(format!(
                            "--until {s:?} does not exist in the local time zone (DST change)"
                        ))
                    })?;
                Ok(Target::Time(
                    naive.format("%Y-%m-%d %H:%M:%S").to_string(),
                    at.with_timezone(&Utc),
                ))
            }
            PitrTarget::Gtid(g) => {
                let set = parse_gtids(g).ok_or_else(|| {
                    RestoreError::Other(format!(
                        "--until-gtid {g:?}: expected a MariaDB GTID list such as 0-1-1234"
                    ))
                })?;
                Ok(Target::Gtid(g.trim().to_string(), set))
            }
            PitrTarget::Position { file, position } => {
                if binlog_sequence(file).is_none() {
                    return Err(RestoreError::Other(format!(
                        "--until-position: {file:?} is not a binary log name such as mysql-bin.000012"
                    )));
                }
                Ok(Target::Position(file.clone(), *position))
            }
        }
    }

    /// Whether the target lies after `copy`, so that `copy` can be rolled forward to it.
    fn follows(&self, copy: &CopyMeta) -> bool {
        let Some(m) = &copy.mysql else { return false };
        // A copy taken while binary logging was off cannot be rolled forward.
        if m.binlog_file.is_none() || m.binlog_position.is_none() {
            return false;
        }
        match self {
            Target::Time(_, at) => copy.finished < *at,
            Target::Gtid(_, want) => m.gtid.as_deref().and_then(parse_gtids).is_some_and(|have| {
                have.iter()
                    .all(|(d, n)| want.get(d).is_some_and(|w| n <= w))
            }),
            Target::Position(file, pos) => match (m.binlog_file.as_deref(), m.binlog_position) {
                (Some(f), Some(p)) => (binlog_sequence(f), p) <= (binlog_sequence(file), *pos),
                _ => false,
            },
        }
    }
}

/// The binlog copies of one history of one server's log, by sequence number.
struct History {
    logs: BTreeMap<u64, CopyMeta>,
    /// The first binlog of a later history (`RESET MASTER`, a rebuilt server, a
    /// failover): nothing can be replayed across it from this history's copies.
    restart: Option<CopyMeta>,
}

/// The file `start_file` that was being written at `at` (a copy's end), and the files
/// that followed it on the same server without a restart of the numbering. A file of
/// the same name from after `RESET MASTER`, a rebuilt server or another server is
/// another history and is never replayed after this one: names alone are reused.
fn history(status: &Status, start_file: &str, at: DateTime<Utc>) -> History {
    let prefix = |name: &str| name.rsplit_once('.').map(|(p, _)| p.to_string());
    let all: Vec<(u64, &BinlogMeta, &CopyMeta)> = status
        .copies
        .iter()
        .filter(|c| c.kind == CopyKind::Binlog)
        .filter_map(|c| {
            let b = c.binlog.as_ref()?;
            (prefix(&b.name) == prefix(start_file)).then_some(())?;
            Some((binlog_sequence(&b.name)?, b, c))
        })
        .collect();
    let same_server = |a: &BinlogMeta, b: &BinlogMeta| match (a.server_id, b.server_id) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    // TwinDB Backup recorded the copy's time, not the file's first event.
    let start = all
        .iter()
        .filter(|(_, b, _)| b.name == start_file && b.first_event <= at)
        .max_by_key(|(_, b, _)| b.first_event)
        .or_else(|| {
            all.iter()
                .filter(|(_, b, c)| b.name == start_file && c.twindb.is_some())
                .min_by_key(|(_, b, _)| b.first_event)
        });
    let mut logs = BTreeMap::new();
    let Some(&(mut n, mut prev, first)) = start else {
        return History {
            logs,
            restart: None,
        };
    };
    logs.insert(n, first.clone());
    // In the order the files began: each later file of a higher number on the same
    // server continues the history (a gap in the numbers is kept, and reported by the
    // plan); a lower or equal number, or another server, begun later is a restart.
    let mut in_time: Vec<&(u64, &BinlogMeta, &CopyMeta)> = all
        .iter()
        .filter(|(_, b, _)| b.first_event >= prev.first_event)
        .collect();
    in_time.sort_by_key(|(m, b, _)| (b.first_event, *m));
    for &&(m, b, c) in &in_time {
        if m > n && same_server(b, prev) {
            logs.insert(m, c.clone());
            (n, prev) = (m, b);
        } else if b.first_event > prev.first_event {
            break;
        }
    }
    let restart = status
        .copies
        .iter()
        .filter(|c| c.kind == CopyKind::Binlog)
        .filter(|c| {
            c.binlog.as_ref().is_some_and(|b| {
                b.first_event > prev.first_event
                    && (binlog_sequence(&b.name) <= Some(n) || !same_server(b, prev))
            })
        })
        .min_by_key(|c| c.binlog.as_ref().map(|b| b.first_event))
        .cloned();
    History { logs, restart }
}

impl History {
    /// Why nothing can be replayed past the end of this history, if a later one began.
    fn restart_note(&self, base: &CopyMeta) -> Option<String> {
        let r = self.restart.as_ref()?;
        let b = r.binlog.as_ref()?;
        Some(format!(
            "the binary logs started again with {} at {} local time (RESET MASTER, a rebuilt server or a failover), \
             and {} cannot be rolled forward across that point: restore a MySQL copy taken after it",
            b.name,
            local(b.first_event),
            base.key
        ))
    }
}

/// The name of binlog number `n` of the log `like` belongs to (same zero padding).
fn binlog_name(like: &str, n: u64) -> String {
    match like.rsplit_once('.') {
        Some((prefix, digits)) => format!("{prefix}.{n:0width$}", width = digits.len()),
        None => format!("{like}.{n:06}"),
    }
}

/// Until when a backed-up binlog is known to hold every event: the next file's first
/// event when that one is backed up too, else the moment its copy started (the binlog
/// job flushes the logs before copying, so the newest copied file was closed then).
fn covered_until(logs: &BTreeMap<u64, CopyMeta>, n: u64) -> Option<DateTime<Utc>> {
    let this = logs.get(&n)?;
    Some(match logs.get(&(n + 1)).and_then(|c| c.binlog.as_ref()) {
        Some(next) => next.first_event,
        None => this.started,
    })
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The binlogs to replay, from the copy's file to the one holding the target, or an
/// error naming what is missing.
fn plan(
    status: &Status,
    base: &CopyMeta,
    start_file: &str,
    target: &Target,
) -> Result<Vec<CopyMeta>, RestoreError> {
    let history = history(status, start_file, base.finished);
    let logs = &history.logs;
    let first = binlog_sequence(start_file).ok_or_else(|| {
        RestoreError::Other(format!(
            "{} records binlog file {start_file:?}, which is not a binary log name",
            base.key
        ))
    })?;
    let gap = |from: u64, since: DateTime<Utc>| -> RestoreError {
        let next = logs.range(from..).next();
        if let (None, Some(note)) = (next, history.restart_note(base)) {
            return RestoreError::Other(format!(
                "cannot restore to {}: {note}",
                target_text(target)
            ));
        }
        let missing = match next {
            Some((n, _)) if *n > from + 1 => format!(
                "{} to {}",
                binlog_name(start_file, from),
                binlog_name(start_file, n - 1)
            ),
            Some(_) => binlog_name(start_file, from),
            None => format!("{} and later", binlog_name(start_file, from)),
        };
        let until = match next.and_then(|(_, c)| c.binlog.as_ref()) {
            Some(b) => local(b.first_event),
            None => "now".into(),
        };
        RestoreError::Other(format!(
            "cannot restore to {}: binary log {missing} is not backed up, so the events from {} to {until} \
             (local time) cannot be replayed (see `twindbctl ls --pitr` for the times that can be restored)",
            target_text(target),
            local(since)
        ))
    };
    let mut out: Vec<CopyMeta> = Vec::new();
    let mut n = first;
    let mut since = base.finished;
    loop {
        let Some(copy) = logs.get(&n) else {
            if let Target::Gtid(..) = target {
                // Where the GTID is is known only by replaying: the contiguous run
                // is tried, and a GTID not found in it is reported then.
                if !out.is_empty() {
                    return Ok(out);
                }
            }
            return Err(gap(n, since));
        };
        let b = copy
            .binlog
            .as_ref()
            .expect("binlog copies have binlog metadata");
        match target {
            Target::Time(_, at) => {
                out.push(copy.clone());
                let until = covered_until(logs, n).expect("present");
                if until >= *at {
                    return Ok(out);
                }
                if logs.range(n + 1..).next().is_none() {
                    if let Some(note) = history.restart_note(base) {
                        return Err(RestoreError::Other(format!(
                            "cannot restore to {}: {note}",
                            target_text(target)
                        )));
                    }
                    return Err(RestoreError::Other(format!(
                        "cannot restore to {}: the backed-up binary logs end with {} (closed at {} local time); \
                         the events after it are not backed up yet: run `twindbctl run hourly --binlogs-only` and retry",
                        target_text(target),
                        b.name,
                        local(until)
                    )));
                }
            }
            Target::Position(file, _) => {
                out.push(copy.clone());
                if b.name == *file {
                    return Ok(out);
                }
                if binlog_sequence(&b.name) > binlog_sequence(file) {
                    return Err(RestoreError::Other(format!(
                        "{file} is not at or after the copy's binlog {start_file}"
                    )));
                }
            }
            Target::Gtid(..) => out.push(copy.clone()),
        }
        since = covered_until(logs, n).expect("present");
        n += 1;
    }
}

fn target_text(t: &Target) -> String {
    match t {
        Target::Time(s, _) => s.clone(),
        Target::Gtid(g, _) => format!("GTID {g}"),
        Target::Position(f, p) => format!("{f}:{p}"),
    }
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
            return Err(RestoreError::Other(format!(
                "{key} was not taken before {}; name an older copy or leave it out",
                target_text(target)
            )));
        }
        return Ok(copy);
    }
    status
        .copies
        .iter()
        .filter(|c| c.kind == CopyKind::Mysql && target.follows(c))
        .max_by_key(|c| c.finished)
        .cloned()
        .ok_or_else(|| {
            RestoreError::Other(format!(
                "no MySQL copy with recorded binlog coordinates was taken before {} (see `twindbctl ls --pitr`)",
                target_text(target)
            ))
        })
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
        return Err(RestoreError::Other(format!(
            "{} records no binlog coordinates (binary logging was off?); it cannot be rolled forward",
            base.key
        )));
    };
    if matches!(target, Target::Gtid(..)) && m.vendor != Vendor::Mariadb {
        return Err(RestoreError::Other(
            "--until-gtid is supported for MariaDB; on MySQL use --until or --until-position"
                .into(),
        ));
    }
    let binlogs = plan(&status, &base, &start_file, &target)?;
    let tools = ReplayTools::find(m.vendor)?;
    let binary = mysqld_binary(engine, Some(m.vendor)).ok_or_else(|| {
        RestoreError::Other("cannot tell which mysqld to start: set [mysql] mysqld_binary".into())
    })?;

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
            .map_err(RestoreError::Other)?;
    let replayed = replay(
        engine,
        &tools,
        &server.socket(),
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
    if !clean {
        return Err(RestoreError::Other(format!(
            "the temporary server did not stop cleanly after the replay:\n{log}"
        )));
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
        target_text(&target),
        dst = req.dst.display()
    ))
}

struct ReplayTools {
    binlog: String,
    client: String,
}

impl ReplayTools {
    fn find(vendor: Vendor) -> Result<ReplayTools, RestoreError> {
        let pick = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| find_program(n).map(|p| p.display().to_string()))
        };
        let (binlog, client) = match vendor {
            Vendor::Mariadb => (
                pick(&["mariadb-binlog", "mysqlbinlog"]),
                pick(&["mariadb", "mysql"]),
            ),
            Vendor::Percona | Vendor::Oracle => (pick(&["mysqlbinlog"]), pick(&["mysql"])),
        };
        match (binlog, client) {
            (Some(binlog), Some(client)) => Ok(ReplayTools { binlog, client }),
            _ => Err(RestoreError::Other(
                "point-in-time restore needs mysqlbinlog (mariadb-binlog) and the mysql (mariadb) client \
                 (Debian: mariadb-client or mysql-client)"
                    .into(),
            )),
        }
    }
}

/// Replays `binlogs` into the server on `socket`; returns the last binlog replayed.
#[allow(clippy::too_many_arguments)]
async fn replay(
    engine: &Engine,
    tools: &ReplayTools,
    socket: &Path,
    binlogs: &[CopyMeta],
    start_pos: u64,
    target: &Target,
    vendor: Vendor,
    gap: &str,
    ctx: &JobCtx,
) -> Result<String, RestoreError> {
    let mut cmd = Command::new(&tools.client);
    cmd.arg("--no-defaults")
        .arg("--binary-mode")
        .arg(format!("--socket={}", socket.display()))
        .args(["--user=root", "--max-allowed-packet=1G"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut client = Tool::spawn(cmd, &ctx.cancel)?;
    let mut stdin = client.take_stdin();
    // The server skips grant checks; loading the grant tables lets replayed
    // GRANT/CREATE USER statements run (this session keeps its privileges).
    stdin
        .write_all(b"FLUSH PRIVILEGES;\n")
        .map_err(|e| RestoreError::Io(tools.client.clone(), e))?;
    let input: OwnedFd = stdin.into();
    let mut last = String::new();
    let mut failure = None;
    let mut reached = !matches!(target, Target::Gtid(..));
    for (i, copy) in binlogs.iter().enumerate() {
        if ctx.cancel.is_cancelled() {
            failure = Some(RestoreError::Cancelled);
            break;
        }
        let name = copy
            .binlog
            .as_ref()
            .map(|b| b.name.clone())
            .unwrap_or_default();
        ctx.set_phase(format!("replaying binlog {name}"));
        let mut cmd = Command::new(&tools.binlog);
        // The host's my.cnf could change the output (base64-output=decode-rows...).
        cmd.arg("--no-defaults");
        if i == 0 {
            cmd.arg(format!("--start-position={start_pos}"));
        }
        match target {
            Target::Time(s, _) => {
                cmd.arg(format!("--stop-datetime={s}"));
            }
            Target::Gtid(g, _) => {
                cmd.arg(format!("--stop-position={g}"));
            }
            Target::Position(file, pos) if *file == name => {
                cmd.arg(format!("--stop-position={pos}"));
            }
            Target::Position(..) => {}
        }
        if vendor != Vendor::Mariadb {
            // The temporary server runs without GTID mode: SET GTID_NEXT would fail.
            cmd.arg("--skip-gtids");
        }
        let out = match input.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                failure = Some(RestoreError::Io(tools.client.clone(), e));
                break;
            }
        };
        cmd.arg("-").stdin(Stdio::piped()).stdout(Stdio::from(out));
        let tail = Arc::new(Mutex::new(String::new()));
        let tail_out = tail.clone();
        let cancel = ctx.cancel.clone();
        let streamed = stream_copy(engine, copy, ctx, move |bytes| {
            let mut tool = Tool::spawn(cmd, &cancel)?;
            let mut stdin = tool.take_stdin();
            let copied = io::copy(bytes, &mut stdin).and_then(|_| stdin.flush());
            drop(stdin);
            match copied {
                Ok(()) => {}
                // mysqlbinlog stops reading at the stop point; the rest is drained
                // (and checksummed) by stream_copy.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
                Err(e) => {
                    tool.kill();
                    return Err(e);
                }
            }
            let text = tool.wait_with_tail()?;
            if let Some(line) = text.lines().find(|l| l.starts_with("ERROR")) {
                return Err(io::Error::other(format!("mysqlbinlog: {line}")));
            }
            *tail_out.lock().expect("tail lock") = text;
            Ok(())
        })
        .await;
        if let Err(e) = streamed {
            failure = Some(e);
            break;
        }
        last = name;
        if !reached
            && !tail
                .lock()
                .expect("tail lock")
                .contains("Did not reach stop position")
        {
            reached = true;
            break;
        }
    }
    drop(input);
    // The client's failure (an SQL error) is the cause of a binlog tool's broken pipe.
    let client_done = tokio::task::spawn_blocking(move || client.wait())
        .await
        .map_err(|e| RestoreError::Other(e.to_string()))?;
    match (client_done, failure) {
        (Err(e), _) => Err(RestoreError::Other(format!(
            "replaying binlog {}: {e}",
            if last.is_empty() {
                "the first binlog"
            } else {
                &last
            }
        ))),
        (Ok(()), Some(e)) => Err(e),
        (Ok(()), None) if !reached => Err(RestoreError::Other(format!(
            "{} is not in the backed-up binary logs from {} to {last}{gap}; nothing was restored",
            target_text(target),
            binlogs
                .first()
                .and_then(|b| b.binlog.as_ref())
                .map(|b| b.name.as_str())
                .unwrap_or("")
        ))),
        (Ok(()), None) => Ok(last),
    }
}

/// "; binary log N is not backed up..." when backed-up binlogs follow a gap after the
/// run being replayed: a GTID target beyond it cannot be reached.
fn gap_after(history: &History, start_file: &str, run: &[CopyMeta]) -> String {
    let last = run
        .last()
        .and_then(|c| c.binlog.as_ref())
        .and_then(|b| binlog_sequence(&b.name));
    match last {
        Some(n) if history.logs.range(n + 2..).next().is_some() => {
            format!(
                "; binary log {} is not backed up, so what follows it cannot be replayed",
                binlog_name(start_file, n + 1)
            )
        }
        _ => String::new(),
    }
}

/// When a point-in-time restore is possible: from each MySQL copy with binlog
/// coordinates to the end of the unbroken run of backed-up binlogs from its file.
pub fn windows(status: &Status) -> Vec<PitrWindow> {
    let mut found: Vec<PitrWindow> = Vec::new();
    let mut copies: Vec<&CopyMeta> = status
        .copies
        .iter()
        .filter(|c| c.kind == CopyKind::Mysql)
        .collect();
    copies.sort_by_key(|c| c.finished);
    for c in copies {
        let Some(file) = c.mysql.as_ref().and_then(|m| m.binlog_file.as_deref()) else {
            continue;
        };
        let (Some(first), History { logs, .. }) =
            (binlog_sequence(file), history(status, file, c.finished))
        else {
            continue;
        };
        if !logs.contains_key(&first) {
            continue;
        }
        let mut last = first;
        while logs.contains_key(&(last + 1)) {
            last += 1;
        }
        let to = covered_until(&logs, last).expect("present");
        if to <= c.finished {
            continue;
        }
        let name = |n: u64| logs[&n].binlog.as_ref().expect("binlog").name.clone();
        match found.last_mut() {
            Some(w) if c.finished <= w.to => {
                if to > w.to {
                    w.to = to;
                    w.last_binlog = name(last);
                }
            }
            _ => found.push(PitrWindow {
                from: c.finished,
                to,
                first_copy: c.key.clone(),
                first_binlog: name(first),
                last_binlog: name(last),
            }),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{BinlogMeta, MysqlMeta};
    use chrono::Duration;
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
