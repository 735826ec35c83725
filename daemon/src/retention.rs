//! Retention: which copies to delete, planned by a pure function, then applied.
//!
//! The rules (docs/operations.md, "Retention"):
//! - Per kind, run type and source (for files: per backed-up folder), the newest N
//!   copies are kept, N from `[retention]` (remote) or `[retention_local]` (local copies).
//! - Chains: a copy with a `parent` (a MySQL incremental) is useless without it. A copy
//!   whose parent is gone (not in the list, or itself unusable) is deleted, whatever N
//!   says. A kept copy keeps its parent, and so on up the chain, even past N.
//! - Binlogs have no run type. With `expire_log_days` set (not 0: as in MySQL, 0
//!   means never), a binlog copy is deleted when its first event is older than that,
//!   and never earlier, even when no kept MySQL copy needs it any more (DBAs read
//!   binlogs for more than restores). A binlog that a kept MySQL copy needs to be
//!   rolled forward (the one its copy ended in and every later one) is kept whatever
//!   its age: when MySQL copies fail for longer than `expire_log_days`, the binlogs
//!   after the last good one are all that a point-in-time restore has.
//! - Copies of a kind with no run type other than binlogs are never deleted.
//!
//! Retention runs after a successful backup (never after a failed one), over the
//! copies of the job's kind, and on demand (`twindbctl retention`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use twindb_proto::{CopyKind, RunType};

use crate::config::{Config, RetentionPolicy};
use crate::engine::Engine;
use crate::status::{CopyMeta, Pending, StatusError};

/// What a plan follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub keep: RetentionPolicy,
    /// `[mysql] expire_log_days`; `None` keeps every binlog.
    pub expire_log_days: Option<u32>,
}

/// The policy for copies on the destination.
pub fn remote_policy(config: &Config) -> Policy {
    Policy {
        keep: config.retention,
        expire_log_days: config.mysql.as_ref().map(|m| m.expire_log_days),
    }
}

/// The policy for keep_local_path copies.
pub fn local_policy(config: &Config) -> Policy {
    Policy {
        keep: config.retention_local,
        expire_log_days: None,
    }
}

/// One copy to delete, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Deletion {
    pub key: String,
    pub kind: CopyKind,
    pub run_type: Option<RunType>,
    pub reason: String,
}

/// The copies of `copies` that `policy` deletes at `now`, in a safe order: copies
/// that depend on others first, so that an interrupted run never leaves a copy
/// without its parent.
pub fn plan(copies: &[CopyMeta], policy: &Policy, now: DateTime<Utc>) -> Vec<Deletion> {
    let by_key: HashMap<&str, &CopyMeta> = copies.iter().map(|c| (c.key.as_str(), c)).collect();
    let mut reasons: HashMap<&str, String> = HashMap::new();

    // Copies whose chain is broken, transitively.
    let mut dead: HashSet<&str> = HashSet::new();
    loop {
        let before = dead.len();
        for c in copies {
            let Some(parent) = c.parent.as_deref() else {
                continue;
            };
            if dead.contains(c.key.as_str()) {
                continue;
            }
            if !by_key.contains_key(parent) || dead.contains(parent) {
                dead.insert(&c.key);
                reasons.insert(&c.key, format!("its parent {parent} is gone"));
            }
        }
        if dead.len() == before {
            break;
        }
    }

    // The newest N of each group.
    let mut groups: HashMap<(CopyKind, RunType, String), Vec<&CopyMeta>> = HashMap::new();
    let mut keep: HashSet<&str> = HashSet::new();
    for c in copies {
        match (c.kind, c.run_type) {
            (CopyKind::Binlog, _) => {}
            (kind, Some(rt)) => groups.entry((kind, rt, group_of(c))).or_default().push(c),
            // No run type: not ours to judge.
            (_, None) => {
                keep.insert(&c.key);
            }
        }
    }
    for ((kind, rt, _), mut group) in groups {
        group.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| b.key.cmp(&a.key)));
        // Named as the newest copy names it (twindb's records the real path).
        let source = group[0].source.clone();
        let n = policy.keep.copies(rt) as usize;
        for (i, c) in group.into_iter().enumerate() {
            if i < n {
                keep.insert(&c.key);
            } else {
                let what = if kind == CopyKind::Files {
                    format!("{rt} copies of {source}")
                } else {
                    format!("{rt} {kind} copies")
                };
                reasons.insert(&c.key, format!("not among the newest {n} {what}"));
            }
        }
    }
    keep.retain(|k| !dead.contains(k));

    // Kept copies keep their parents, up the chain.
    let mut stack: Vec<&str> = keep.iter().copied().collect();
    while let Some(k) = stack.pop() {
        if let Some(parent) = by_key.get(k).and_then(|c| c.parent.as_deref()) {
            if let Some(p) = by_key.get(parent) {
                if keep.insert(&p.key) {
                    stack.push(&p.key);
                }
            }
        }
    }

    // Binlogs.
    let born = |b: &CopyMeta| b.binlog.as_ref().map_or(b.started, |m| m.first_event);
    // What point-in-time restore from the oldest kept MySQL copy replays: the binlog
    // being written when that copy ended (the newest begun by then) and every later one.
    let needed_from = copies
        .iter()
        .filter(|c| c.kind == CopyKind::Mysql && keep.contains(c.key.as_str()))
        .map(|c| c.finished)
        .min()
        .map(|oldest| {
            copies
                .iter()
                .filter(|b| b.kind == CopyKind::Binlog)
                .map(born)
                .filter(|t| *t <= oldest)
                .max()
                .unwrap_or(oldest)
        });
    if let Some(days) = policy.expire_log_days.filter(|d| *d > 0) {
        let limit = now - Duration::days(i64::from(days));
        for b in copies.iter().filter(|c| c.kind == CopyKind::Binlog) {
            // The binlog's own first event dates it; the copy time is a fallback.
            if born(b) < limit && needed_from.is_none_or(|from| born(b) < from) {
                reasons.insert(&b.key, format!("older than expire_log_days = {days}"));
            } else {
                keep.insert(&b.key);
            }
        }
    } else {
        keep.extend(
            copies
                .iter()
                .filter(|c| c.kind == CopyKind::Binlog)
                .map(|c| c.key.as_str()),
        );
    }

    let mut out: Vec<&CopyMeta> = copies
        .iter()
        .filter(|c| !keep.contains(c.key.as_str()))
        .collect();
    // Deepest in a chain first (an incremental before its full), then oldest first.
    let depth = |c: &CopyMeta| {
        let mut d = 0;
        let mut at = c.parent.as_deref();
        while let Some(p) = at.filter(|_| d <= copies.len()) {
            d += 1;
            at = by_key.get(p).and_then(|p| p.parent.as_deref());
        }
        d
    };
    out.sort_by(|a, b| {
        depth(b)
            .cmp(&depth(a))
            .then_with(|| a.started.cmp(&b.started))
            .then_with(|| a.key.cmp(&b.key))
    });
    out.into_iter()
        .map(|c| Deletion {
            key: c.key.clone(),
            kind: c.kind,
            run_type: c.run_type,
            reason: reasons
                .get(c.key.as_str())
                .cloned()
                .unwrap_or_else(|| "not needed".into()),
        })
        .collect()
}

/// Files copies count per folder, named as in their keys (`/etc/app` -> `_etc_app`):
/// TwinDB Backup's copies record only that form, and count with twindb's.
fn group_of(c: &CopyMeta) -> String {
    if c.kind == CopyKind::Files {
        crate::key::dir_part(std::path::Path::new(&c.source))
    } else {
        c.source.clone()
    }
}

/// What applying a plan did.
#[derive(Debug, Default)]
pub struct Applied {
    pub deleted: Vec<Deletion>,
    /// One line per copy that could not be deleted; it stays in the status.
    pub errors: Vec<String>,
    /// Copies left.
    pub kept: usize,
}

/// Plans over the destination's status and deletes the planned copies of `kinds`.
///
/// The status changes first: the planned copies' objects become pending, then the
/// copies leave the list, and only then do the objects go. A crash or a failed delete
/// therefore leaves unlisted objects that the next sweep removes, never a listed copy
/// whose bytes are gone. Objects left pending by earlier jobs are swept first, and the
/// status index catches up with the records.
pub async fn apply(engine: &Engine, kinds: &[CopyKind]) -> Result<Applied, StatusError> {
    if let Err(e) = engine.status.sweep().await {
        tracing::warn!(error = %format!("{e:#}"), "could not sweep unrecorded objects");
    }
    if let Err(e) = engine.status.compact().await {
        tracing::warn!(error = %format!("{e:#}"), "could not rewrite the status index");
    }
    let status = engine.status.load().await?;
    let mut applied = Applied::default();
    let mut deletions: Vec<Deletion> =
        plan(&status.copies, &remote_policy(&engine.config), Utc::now())
            .into_iter()
            .filter(|d| kinds.contains(&d.kind))
            .collect();
    // [retention_local]: the copies in keep_local_path follow their own (usually
    // shorter) policy; a copy gone from the destination goes from there too.
    let mut local_only: Vec<Deletion> = Vec::new();
    if engine.keep_local.is_some() {
        let with_local: Vec<CopyMeta> = status
            .copies
            .iter()
            .filter(|c| c.local.is_some() && kinds.contains(&c.kind))
            .cloned()
            .collect();
        local_only = plan(&with_local, &local_policy(&engine.config), Utc::now())
            .into_iter()
            .filter(|d| !deletions.iter().any(|x| x.key == d.key))
            .collect();
    }
    // A restore or verify may read any copy (it chooses its chain when it runs):
    // nothing goes while one is queued or running; the next retention catches up.
    if engine.status.is_read() && !(deletions.is_empty() && local_only.is_empty()) {
        tracing::info!(
            copies = deletions.len() + local_only.len(),
            "retention deletes nothing while a restore or verify is queued or running"
        );
        deletions.clear();
        local_only.clear();
    }
    if deletions.is_empty() && local_only.is_empty() {
        engine
            .metrics
            .set_copies(&status.copies, engine.keep_local.is_some());
        applied.kept = status.copies.len();
        return Ok(applied);
    }

    // Every object to delete, remote and local, recorded before any goes.
    let copy_of = |key: &str| status.copies.iter().find(|c| c.key == key);
    let mut doomed: Vec<Pending> = Vec::new();
    for d in &deletions {
        let objects = copy_of(&d.key).map_or_else(
            || vec![d.key.clone()],
            crate::status::twindb::TwindbCopy::objects,
        );
        let local = copy_of(&d.key)
            .filter(|_| engine.keep_local.is_some())
            .and_then(|c| c.local.as_ref())
            .map(|l| l.key.clone());
        // Last first (TwinDB's GCS parts); the local twin goes with the first object.
        for (i, key) in objects.into_iter().rev().enumerate() {
            doomed.push(pending(key, if i == 0 { local.clone() } else { None }));
        }
    }
    let gone_keys: Vec<String> = deletions.iter().map(|d| d.key.clone()).collect();
    let gone: HashSet<&String> = gone_keys.iter().collect();
    let local_gone: Vec<String> = local_only.iter().map(|d| d.key.clone()).collect();
    let local_doomed: Vec<String> = local_only
        .iter()
        .filter_map(|d| copy_of(&d.key)?.local.as_ref().map(|l| l.key.clone()))
        .collect();
    engine
        .status
        .retire(&gone_keys, &local_gone, &doomed)
        .await?;

    crate::failpoint::point("retention.recorded");
    let mut done: Vec<String> = Vec::new();
    for p in &doomed {
        match delete_pending(engine, p).await {
            Ok(()) => {
                done.push(p.key.clone());
                crate::failpoint::point("retention.deleted-one");
            }
            Err(e) => {
                tracing::warn!(key = %p.key, error = %format!("{e:#}"), "retention could not delete an object; it is no longer listed and the next retention retries");
                applied.errors.push(format!("{:#}", anyhow::Error::from(e)));
            }
        }
    }
    for d in deletions {
        tracing::info!(key = %d.key, reason = %d.reason, "retention deleted a copy");
        engine.metrics.retention_deleted(d.kind, "remote");
        applied.deleted.push(d);
    }
    if let Some(local) = &engine.keep_local {
        for (d, key) in local_only.iter().zip(&local_doomed) {
            match crate::destination::Destination::delete(local, key).await {
                Ok(()) => {
                    tracing::info!(key = %key, reason = %d.reason, "retention deleted a local copy");
                    engine.metrics.retention_deleted(d.kind, "local");
                }
                Err(e) => applied.errors.push(format!("{:#}", anyhow::Error::from(e))),
            }
        }
    }
    engine.status.forget_pending(&done).await?;
    let copies: Vec<CopyMeta> = status
        .copies
        .iter()
        .filter(|c| !gone.contains(&c.key))
        .cloned()
        .map(|mut c| {
            if local_gone.contains(&c.key) {
                c.local = None;
            }
            c
        })
        .collect();
    engine
        .metrics
        .set_copies(&copies, engine.keep_local.is_some());
    applied.kept = copies.len();
    Ok(applied)
}

fn pending(key: String, local: Option<String>) -> Pending {
    Pending {
        key,
        local,
        since: Utc::now(),
        reason: "deleting".into(),
    }
}

/// Deletes one pending object and its local twin.
async fn delete_pending(
    engine: &Engine,
    p: &Pending,
) -> Result<(), crate::destination::DestinationError> {
    if let (Some(local), Some(key)) = (&engine.keep_local, &p.local) {
        crate::destination::Destination::delete(local, key).await?;
    }
    engine.dest.delete(&p.key).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    struct C {
        key: &'static str,
        kind: CopyKind,
        rt: Option<RunType>,
        source: &'static str,
        hours_ago: i64,
        parent: Option<&'static str>,
    }

    fn files(key: &'static str, rt: RunType, source: &'static str, hours_ago: i64) -> C {
        C {
            key,
            kind: CopyKind::Files,
            rt: Some(rt),
            source,
            hours_ago,
            parent: None,
        }
    }

    fn mysql(key: &'static str, rt: RunType, hours_ago: i64, parent: Option<&'static str>) -> C {
        C {
            key,
            kind: CopyKind::Mysql,
            rt: Some(rt),
            source: "mysql",
            hours_ago,
            parent,
        }
    }

    fn binlog(key: &'static str, hours_ago: i64) -> C {
        C {
            key,
            kind: CopyKind::Binlog,
            rt: None,
            source: "binlog",
            hours_ago,
            parent: None,
        }
    }

    fn metas(cs: &[C]) -> Vec<CopyMeta> {
        cs.iter()
            .map(|c| CopyMeta {
                key: c.key.into(),
                kind: c.kind,
                run_type: c.rt,
                backup_type: match (c.kind, c.parent) {
                    (CopyKind::Mysql, Some(_)) => Some("incremental".into()),
                    (CopyKind::Mysql, None) => Some("full".into()),
                    _ => None,
                },
                mysql: None,
                binlog: None,
                local: None,
                twindb: None,
                parent: c.parent.map(Into::into),
                host: "db1".into(),
                source: c.source.into(),
                started: t0() - Duration::hours(c.hours_ago),
                finished: t0() - Duration::hours(c.hours_ago) + Duration::minutes(5),
                source_size: 10,
                size: 5,
                sha256: String::new(),
                modifiers: vec![],
            })
            .collect()
    }

    fn policy(h: u32, d: u32, w: u32, m: u32, y: u32, days: Option<u32>) -> Policy {
        Policy {
            keep: RetentionPolicy {
                hourly: h,
                daily: d,
                weekly: w,
                monthly: m,
                yearly: y,
            },
            expire_log_days: days,
        }
    }

    fn deleted(cs: &[C], p: &Policy) -> Vec<String> {
        plan(&metas(cs), p, t0())
            .into_iter()
            .map(|d| d.key)
            .collect()
    }

    use RunType::*;

    /// TwinDB Backup's copies (recorded folder `_srv_app`, as in their keys) count in
    /// the same group as twindb's (`/srv/app`), and a TwinDB full keeps a twindb
    /// incremental's chain.
    #[test]
    fn twindb_backup_copies_count_by_run_type_with_twindb_copies() {
        let mut copies = metas(&[
            files("old-twindb-backup", Daily, "_srv_app", 96),
            files("newer-twindb-backup", Daily, "_srv_app", 72),
            files("twindb", Daily, "/srv/app/", 24),
            files("other-folder", Daily, "/srv/other", 100),
            mysql("twindb-backup-full", Daily, 100, None),
            mysql("twindb-inc", Hourly, 1, Some("twindb-backup-full")),
            mysql("twindb-full", Daily, 50, None),
        ]);
        for c in copies.iter_mut().filter(|c| {
            c.key.starts_with("old") || c.key.starts_with("newer") || c.key == "twindb-backup-full"
        }) {
            c.twindb = Some(crate::status::twindb::TwindbCopy::default());
        }
        let keys = |p: &Policy| -> Vec<String> {
            plan(&copies, p, t0()).into_iter().map(|d| d.key).collect()
        };
        assert_eq!(
            keys(&policy(5, 2, 4, 12, 3, None)),
            vec!["old-twindb-backup"]
        );
        // One daily: the newest daily full is twindb's, but the incremental needs TwinDB's.
        assert_eq!(
            keys(&policy(5, 1, 4, 12, 3, None)),
            vec!["old-twindb-backup", "newer-twindb-backup"]
        );
    }

    #[test]
    fn table() {
        let remote = Policy {
            keep: RetentionPolicy::REMOTE,
            expire_log_days: Some(7),
        };
        let local = Policy {
            keep: RetentionPolicy::LOCAL,
            expire_log_days: Some(7),
        };
        let one_of_each = || {
            vec![
                files("h1", Hourly, "/etc", 3),
                files("h2", Hourly, "/etc", 2),
                files("d1", Daily, "/etc", 30),
                files("d2", Daily, "/etc", 6),
                files("w1", Weekly, "/etc", 100),
                files("m1", Monthly, "/etc", 500),
            ]
        };
        let cases: Vec<(&str, Vec<C>, Policy, Vec<&str>)> = vec![
            ("nothing to do", vec![], remote, vec![]),
            (
                "newest N per run type, oldest go first",
                vec![
                    files("d1", Daily, "/etc", 72),
                    files("d2", Daily, "/etc", 48),
                    files("d3", Daily, "/etc", 24),
                    files("h1", Hourly, "/etc", 2),
                    files("h2", Hourly, "/etc", 1),
                ],
                policy(1, 2, 4, 12, 3, None),
                vec!["d1", "h1"],
            ),
            (
                "files are kept per backed-up folder",
                vec![
                    files("etc1", Daily, "/etc", 48),
                    files("etc2", Daily, "/etc", 24),
                    files("home1", Daily, "/home", 47),
                ],
                policy(24, 1, 4, 12, 3, None),
                vec!["etc1"],
            ),
            (
                "0 copies deletes all of that run type",
                vec![
                    files("w1", Weekly, "/etc", 1),
                    files("d1", Daily, "/etc", 1),
                ],
                policy(24, 7, 0, 12, 3, None),
                vec!["w1"],
            ),
            (
                "an incremental keeps its full past N",
                vec![
                    mysql("full-old", Daily, 30, None),
                    mysql("full-new", Daily, 6, None),
                    mysql("inc-a", Hourly, 29, Some("full-old")),
                    mysql("inc-b", Hourly, 5, Some("full-new")),
                ],
                // One daily: full-old would go, but the kept inc-a needs it.
                policy(2, 1, 4, 12, 3, None),
                vec![],
            ),
            (
                "the full goes once its last incremental goes, dependents first",
                vec![
                    mysql("full-old", Daily, 30, None),
                    mysql("full-new", Daily, 6, None),
                    mysql("inc-a", Hourly, 29, Some("full-old")),
                    mysql("inc-b", Hourly, 5, Some("full-new")),
                ],
                policy(1, 1, 4, 12, 3, None),
                vec!["inc-a", "full-old"],
            ),
            (
                "an incremental whose full is gone is removed, even within N",
                vec![
                    mysql("inc-orphan", Hourly, 2, Some("missing-full")),
                    mysql("inc-of-orphan", Hourly, 1, Some("inc-orphan")),
                    mysql("full", Daily, 3, None),
                ],
                remote,
                vec!["inc-of-orphan", "inc-orphan"],
            ),
            (
                "binlogs: only expired ones go, even those no kept MySQL copy needs stay",
                vec![
                    mysql("full", Daily, 48, None),
                    binlog("b-old", 24 * 8),
                    binlog("b-before-full", 50),
                    binlog("b-after-full", 47),
                    binlog("b-new", 1),
                ],
                remote,
                vec!["b-old"],
            ),
            (
                "binlogs a kept copy needs stay past expire_log_days",
                vec![
                    mysql("full", Daily, 24 * 10, None),
                    binlog("b-before-full", 24 * 11),
                    binlog("b-during-full", 24 * 10 + 1),
                    binlog("b-needed-but-old", 24 * 9),
                    binlog("b-needed", 24 * 6),
                ],
                remote,
                vec!["b-before-full"],
            ),
            (
                "MySQL copies failing longer than expire_log_days: the binlogs after the last good one stay",
                vec![
                    mysql("full-old", Daily, 24 * 30, None),
                    mysql("last-good", Daily, 24 * 20, None),
                    binlog("b-before", 24 * 25),
                    binlog("b-at-last-good", 24 * 20 + 2),
                    binlog("b-after", 24 * 19),
                    binlog("b-new", 1),
                ],
                policy(24, 1, 4, 12, 3, Some(7)),
                vec!["full-old", "b-before"],
            ),
            (
                "expire_log_days = 0 never expires a binlog (as in MySQL)",
                vec![binlog("b-old", 24 * 400), binlog("b-new", 1)],
                policy(1, 1, 1, 1, 1, Some(0)),
                vec![],
            ),
            (
                "without expire_log_days binlogs stay",
                vec![binlog("b-old", 24 * 400)],
                policy(1, 1, 1, 1, 1, None),
                vec![],
            ),
            (
                "without any MySQL copy only age counts",
                vec![binlog("b-old", 24 * 8), binlog("b-new", 24)],
                remote,
                vec!["b-old"],
            ),
            (
                "local defaults keep far less than remote ones",
                one_of_each(),
                local,
                vec!["m1", "w1", "d1", "h1"],
            ),
            (
                "the same copies under the remote defaults",
                one_of_each(),
                remote,
                vec![],
            ),
            (
                "a local policy keeps a full its incremental needs",
                vec![
                    mysql("full-1", Daily, 30, None),
                    mysql("full-2", Daily, 6, None),
                    mysql("inc-1", Hourly, 5, Some("full-1")),
                ],
                local,
                vec![],
            ),
        ];
        for (name, copies, p, want) in cases {
            assert_eq!(deleted(&copies, &p), want, "{name}");
        }
    }

    #[test]
    fn reasons_say_why() {
        let copies = metas(&[
            files("d1", Daily, "/etc", 48),
            files("d2", Daily, "/etc", 24),
            mysql("inc", Hourly, 1, Some("gone")),
        ]);
        let p = plan(&copies, &policy(24, 1, 4, 12, 3, None), t0());
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].reason, "its parent gone is gone");
        assert_eq!(p[1].reason, "not among the newest 1 daily copies of /etc");
    }

    #[test]
    fn a_plan_is_stable_applied_twice() {
        let copies = metas(&[
            mysql("full-old", Daily, 30, None),
            mysql("full-new", Daily, 6, None),
            mysql("inc-a", Hourly, 29, Some("full-old")),
            mysql("inc-b", Hourly, 5, Some("full-new")),
            files("d1", Daily, "/etc", 48),
            files("d2", Daily, "/etc", 24),
        ]);
        let p = policy(1, 1, 4, 12, 3, Some(7));
        let first = plan(&copies, &p, t0());
        let left: Vec<CopyMeta> = copies
            .into_iter()
            .filter(|c| !first.iter().any(|d| d.key == c.key))
            .collect();
        assert!(plan(&left, &p, t0()).is_empty());
    }

    /// Streamed segments go with their file: each is dated by the file's first event,
    /// not by when it was stored, so a file the kept copy needs keeps all its segments
    /// and an expired file loses all of them.
    #[test]
    fn streamed_segments_are_kept_or_expired_with_their_file() {
        use crate::status::{BinlogMeta, SegmentMeta};
        let mut copies = metas(&[
            mysql("full", Daily, 24 * 10, None),
            binlog("old-0", 24 * 12),
            binlog("old-1", 24 * 11),
            binlog("during-0", 24 * 10 + 1),
            binlog("during-1", 24 * 8),
            binlog("during-2", 1),
        ]);
        for c in copies.iter_mut().filter(|c| c.kind == CopyKind::Binlog) {
            let (name, born) = if c.key.starts_with("old") {
                ("mysql-bin.000001", 24 * 12)
            } else {
                ("mysql-bin.000002", 24 * 10 + 1)
            };
            c.binlog = Some(BinlogMeta {
                name: name.into(),
                first_event: t0() - Duration::hours(born),
                server_id: Some(1),
                segment: Some(SegmentMeta {
                    server_uuid: "server-id-1".into(),
                    start: 0,
                    end: 1,
                    first_event_time: c.started,
                    last_event_time: c.started,
                    gtid: None,
                    last: false,
                }),
            });
        }
        let keys: Vec<String> = plan(&copies, &policy(0, 1, 0, 0, 0, Some(7)), t0())
            .into_iter()
            .map(|d| d.key)
            .collect();
        assert_eq!(keys, ["old-0", "old-1"]);
    }
}
