//! Which backed-up binlogs continue a copy (one history per server and numbering), the
//! plan of binlogs to replay to a target, and the windows `ls --pitr` shows.

use std::collections::BTreeMap;

use chrono::{DateTime, Local, Utc};
use twindb_proto::{CopyKind, PitrWindow};

use super::target::Target;
use super::PitrError;
use crate::mysql::binlog_sequence;
use crate::status::{BinlogMeta, CopyMeta, Status};

/// The binlog copies of one history of one server's log, by sequence number.
pub(super) struct History {
    pub(super) logs: BTreeMap<u64, CopyMeta>,
    /// The first binlog of a later history (`RESET MASTER`, a rebuilt server, a
    /// failover): nothing can be replayed across it from this history's copies.
    restart: Option<CopyMeta>,
}

/// The file `start_file` that was being written at `at` (a copy's end), and the files
/// that followed it on the same server without a restart of the numbering. A file of
/// the same name from after `RESET MASTER`, a rebuilt server or another server is
/// another history and is never replayed after this one: names alone are reused.
pub(super) fn history(status: &Status, start_file: &str, at: DateTime<Utc>) -> History {
    let prefix = |name: &str| name.rsplit_once('.').map(|(p, _)| p.to_string());
    let files = super::streamed::binlog_files(status);
    let all: Vec<(u64, &BinlogMeta, &CopyMeta)> = files
        .iter()
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
pub(super) fn binlog_name(like: &str, n: u64) -> String {
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

pub(super) fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The binlogs to replay, from the copy's file to the one holding the target, or an
/// error naming what is missing.
pub(super) fn plan(
    status: &Status,
    base: &CopyMeta,
    start_file: &str,
    target: &Target,
) -> Result<Vec<CopyMeta>, PitrError> {
    let history = history(status, start_file, base.finished);
    let logs = &history.logs;
    let first = binlog_sequence(start_file).ok_or_else(|| PitrError::BadRecordedBinlog {
        copy: base.key.clone(),
        file: start_file.to_string(),
    })?;
    let gap = |from: u64, since: DateTime<Utc>| -> PitrError {
        let next = logs.range(from..).next();
        if let (None, Some(note)) = (next, history.restart_note(base)) {
            return PitrError::AcrossRestart {
                target: target.to_string(),
                note,
            };
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
        PitrError::NotBackedUp {
            target: target.to_string(),
            missing,
            since: local(since),
            until,
        }
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
                        return Err(PitrError::AcrossRestart {
                            target: target.to_string(),
                            note,
                        });
                    }
                    return Err(PitrError::NotBackedUpYet {
                        target: target.to_string(),
                        last: b.name.clone(),
                        closed: local(until),
                    });
                }
            }
            Target::Position(file, _) => {
                out.push(copy.clone());
                if b.name == *file {
                    return Ok(out);
                }
                if binlog_sequence(&b.name) > binlog_sequence(file) {
                    return Err(PitrError::PositionBeforeCopy {
                        file: file.clone(),
                        start_file: start_file.to_string(),
                    });
                }
            }
            Target::Gtid(..) => out.push(copy.clone()),
            Target::Latest => {
                out.push(copy.clone());
                if logs.range(n + 1..).next().is_none() {
                    return Ok(out);
                }
            }
        }
        since = covered_until(logs, n).expect("present");
        n += 1;
    }
}

/// "; binary log N is not backed up..." when backed-up binlogs follow a gap after the
/// run being replayed: a GTID target beyond it cannot be reached.
pub(super) fn gap_after(history: &History, start_file: &str, run: &[CopyMeta]) -> String {
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
