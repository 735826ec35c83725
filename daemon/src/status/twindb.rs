//! Copies written by TwinDB Backup 2.x/3.x on a destination twindb takes over.
//!
//! They are found by listing `{host}/` (TwinDB recorded no files copies at all) and
//! described from TwinDB's own status files, which twindb reads and never writes:
//! `{host}/status` (MySQL copies) and `{host}/binlog-status` (binlogs). Both are
//! "version 1" files, `{"md5": H, "status": B, "version": 1}` where B is the base64 of
//! a JSON body and H the md5 of the base64 text, or, from older releases, the bare
//! base64 text. A copy with no record gets its modifier chain from its key's
//! suffixes. Nothing here is stored in twindb's own status: the TwinDB copies are
//! merged in every time the status is read, so what TwinDB wrote stays the only truth
//! about them (see docs/migration.md).

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use futures::StreamExt;
use md5::Digest as _;
use serde::{Deserialize, Serialize};
use twindb_proto::{CopyKind, RunType};

use super::{BinlogMeta, CopyMeta, LocalCopy, MysqlMeta, Status, StatusError};
use crate::destination::{Destination, Local, ObjectMeta};
use crate::modifier::ModifierSpec;
use crate::mysql::{ConfigFile, Vendor};

/// What `ls --json` says in `origin` for a TwinDB copy.
pub const ORIGIN: &str = "twindb-backup";

/// Marks a [`CopyMeta`] as TwinDB's, with what reading it needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TwindbCopy {
    /// TwinDB's GCS layout: the copy is stored as these objects, to be read in this
    /// order (`{key}/part-NNNNNNNNNNNNNNNN`). Empty: one object at the copy's key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// Why this copy cannot be restored, when TwinDB's record of it is missing or
    /// unreadable (a MySQL copy needs its type, LSN and parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl TwindbCopy {
    /// The objects that hold `meta`'s bytes, in order.
    pub fn objects(meta: &CopyMeta) -> Vec<String> {
        match &meta.twindb {
            Some(t) if !t.parts.is_empty() => t.parts.clone(),
            _ => vec![meta.key.clone()],
        }
    }
}

/// How a TwinDB status file was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `{"md5": ..., "status": ..., "version": 1}`.
    Version1,
    /// The bare base64 of the body (TwinDB before the version field).
    Legacy,
}

/// Why a TwinDB status file cannot be read. A missing file is not an error (TwinDB
/// reads it as "no copies"); every other case is reported, never silently skipped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LegacyStatusError {
    #[error("TwinDB status file {key} is empty (TwinDB never writes an empty status: the file was truncated)")]
    Empty { key: String },
    #[error("TwinDB status file {key} is corrupt: its md5 says {stored} but its content hashes to {computed}")]
    Corrupt {
        key: String,
        stored: String,
        computed: String,
    },
    #[error("TwinDB status file {key} has format version {version}; twindb reads version 1")]
    Version { key: String, version: i64 },
    #[error("TwinDB status file {key} is unreadable: {detail}")]
    Unreadable { key: String, detail: String },
}

#[derive(Deserialize)]
struct Wrapper {
    md5: String,
    status: String,
    version: i64,
}

/// The JSON body of a TwinDB status file, checked.
pub fn decode_file(key: &str, bytes: &[u8]) -> Result<(Form, Vec<u8>), LegacyStatusError> {
    let text = std::str::from_utf8(bytes).map_err(|e| LegacyStatusError::Unreadable {
        key: key.into(),
        detail: format!("not text: {e}"),
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(LegacyStatusError::Empty { key: key.into() });
    }
    let unreadable = |detail: String| LegacyStatusError::Unreadable {
        key: key.into(),
        detail,
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    // As TwinDB does: a file that is not JSON is the legacy form.
    let (form, body) = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => {
            let w: Wrapper = serde_json::from_value(value)
                .map_err(|e| unreadable(format!("not a TwinDB status wrapper: {e}")))?;
            if w.version != 1 {
                return Err(LegacyStatusError::Version {
                    key: key.into(),
                    version: w.version,
                });
            }
            let computed = hex::encode(md5::Md5::digest(w.status.as_bytes()));
            if !computed.eq_ignore_ascii_case(w.md5.trim()) {
                return Err(LegacyStatusError::Corrupt {
                    key: key.into(),
                    stored: w.md5,
                    computed,
                });
            }
            let body = b64
                .decode(w.status.trim())
                .map_err(|e| unreadable(format!("the status field is not base64: {e}")))?;
            (Form::Version1, body)
        }
        Err(_) => {
            let body = b64
                .decode(text)
                .map_err(|e| unreadable(format!("neither JSON nor base64: {e}")))?;
            (Form::Legacy, body)
        }
    };
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
        return Err(unreadable(format!("the decoded body is not JSON: {e}")));
    }
    Ok((form, body))
}

/// One MySQL copy as TwinDB recorded it. Unknown fields are ignored: releases added
/// some (`server_vendor` in 3.1) and readers must not break on the next one.
#[derive(Debug, Clone, Deserialize)]
pub struct MysqlRecord {
    #[serde(default)]
    pub binlog: Option<String>,
    #[serde(default)]
    pub position: Option<u64>,
    #[serde(default)]
    pub lsn: Option<u64>,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub galera: Option<bool>,
    #[serde(default)]
    pub wsrep_provider_version: Option<String>,
    #[serde(default)]
    pub config: Option<ConfigList>,
    #[serde(default)]
    pub backup_started: Option<f64>,
    #[serde(default)]
    pub backup_finished: Option<f64>,
    #[serde(default, rename = "type")]
    pub backup_type: Option<String>,
    #[serde(default)]
    pub server_vendor: Option<String>,
}

/// `[{path: base64}, ...]` as TwinDB writes it; a plain map is accepted too.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConfigList {
    List(Vec<BTreeMap<String, String>>),
    Map(BTreeMap<String, String>),
}

impl ConfigList {
    fn files(&self) -> Vec<ConfigFile> {
        let pairs: Vec<(&String, &String)> = match self {
            ConfigList::List(l) => l.iter().flat_map(|m| m.iter()).collect(),
            ConfigList::Map(m) => m.iter().collect(),
        };
        pairs
            .into_iter()
            .map(|(path, content)| ConfigFile {
                path: path.clone(),
                content_base64: content.clone(),
            })
            .collect()
    }
}

/// `{host}/status`'s body: copy key -> record, over every run type.
pub fn parse_mysql_status(body: &[u8]) -> Result<HashMap<String, MysqlRecord>, String> {
    let by_run: BTreeMap<String, BTreeMap<String, MysqlRecord>> =
        serde_json::from_slice(body).map_err(|e| format!("unexpected MySQL status body: {e}"))?;
    Ok(by_run.into_values().flatten().collect())
}

#[derive(Deserialize)]
struct BinlogRecord {
    #[serde(default)]
    time_created: Option<f64>,
    #[serde(default)]
    created_at: Option<f64>,
}

/// `{host}/binlog-status`'s body: key without suffixes -> first event's time.
pub fn parse_binlog_status(body: &[u8]) -> Result<HashMap<String, DateTime<Utc>>, String> {
    let map: BTreeMap<String, BinlogRecord> =
        serde_json::from_slice(body).map_err(|e| format!("unexpected binlog status body: {e}"))?;
    Ok(map
        .into_iter()
        .filter_map(|(k, r)| Some((k, epoch(r.time_created.or(r.created_at)?)?)))
        .collect())
}

fn epoch(secs: f64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(secs as i64, 0).single()
}

/// What a key says about a TwinDB copy.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    pub kind: CopyKind,
    pub run_type: Option<RunType>,
    /// Files: the folder as TwinDB encoded it (`_etc_mysql`); binlogs: the file name.
    pub source: String,
    /// From the name (TwinDB's local time, read as UTC).
    pub time: Option<DateTime<Utc>>,
    /// The key without its modifier suffixes.
    pub base: String,
}

/// Reads a key in TwinDB's layout. Only TwinDB's suffixes count (`.gz`, `.bz`, `.gpg`):
/// a `.zst` object is twindb's, never TwinDB's.
pub fn parse_key(host: &str, key: &str) -> Option<KeyInfo> {
    let rest = key.strip_prefix(host)?.strip_prefix('/')?;
    let chain = ModifierSpec::chain_from_key(rest);
    if chain.iter().any(|m| matches!(m, ModifierSpec::Zstd { .. })) {
        return None;
    }
    let suffixes: usize = chain.iter().map(|m| m.suffix().len()).sum();
    let bare = &rest[..rest.len() - suffixes];
    let base = format!("{host}/{bare}");
    let parts: Vec<&str> = bare.split('/').collect();
    let ts = |s: &str| {
        NaiveDateTime::parse_from_str(s, crate::key::TS_FORMAT)
            .ok()
            .map(|t| t.and_utc())
    };
    match parts.as_slice() {
        ["binlog", name] if !name.is_empty() => Some(KeyInfo {
            kind: CopyKind::Binlog,
            run_type: None,
            source: name.to_string(),
            time: None,
            base,
        }),
        [run, "files", name] => {
            let run_type = run.parse().ok()?;
            let stem = name.strip_suffix(".tar")?;
            // `{dir}-{%Y-%m-%d_%H_%M_%S}`: the timestamp is the last 19 characters.
            let at = stem.len().checked_sub(19)?;
            let dir = stem.get(..at)?.strip_suffix('-')?;
            let t = ts(stem.get(at..)?)?;
            Some(KeyInfo {
                kind: CopyKind::Files,
                run_type: Some(run_type),
                source: dir.to_string(),
                time: Some(t),
                base,
            })
        }
        [run, "mysql", name] => {
            let run_type = run.parse().ok()?;
            let t = name.strip_prefix("mysql-")?.strip_suffix(".xbstream")?;
            Some(KeyInfo {
                kind: CopyKind::Mysql,
                run_type: Some(run_type),
                source: "mysql".into(),
                time: ts(t),
                base,
            })
        }
        _ => None,
    }
}

/// A stored object, or an object stored as GCS parts.
struct Found {
    key: String,
    size: u64,
    parts: Vec<String>,
}

/// `KEY/part-NNNNNNNNNNNNNNNN` -> (KEY, N).
fn part_of(key: &str) -> Option<(&str, u64)> {
    let (copy, part) = key.rsplit_once('/')?;
    let n = part.strip_prefix("part-")?;
    if n.len() != 16 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((copy, n.parse().ok()?))
}

fn group_parts(objects: Vec<ObjectMeta>) -> Vec<Found> {
    let mut whole = Vec::new();
    let mut chunked: BTreeMap<String, Vec<(u64, ObjectMeta)>> = BTreeMap::new();
    for o in objects {
        match part_of(&o.key) {
            Some((copy, n)) => chunked.entry(copy.to_string()).or_default().push((n, o)),
            None => whole.push(Found {
                key: o.key.clone(),
                size: o.size,
                parts: vec![],
            }),
        }
    }
    for (key, mut parts) in chunked {
        parts.sort_by_key(|(n, _)| *n);
        whole.push(Found {
            key,
            size: parts.iter().map(|(_, o)| o.size).sum(),
            parts: parts.into_iter().map(|(_, o)| o.key).collect(),
        });
    }
    whole
}

async fn list_all(dest: &dyn Destination, prefix: &str) -> Result<Vec<ObjectMeta>, StatusError> {
    let mut out = Vec::new();
    let mut objects = dest.list(prefix);
    while let Some(o) = objects.next().await {
        out.push(o?);
    }
    Ok(out)
}

/// The status file `key`'s body, `None` when the file does not exist.
async fn read_status_file(
    dest: &dyn Destination,
    key: &str,
) -> Result<Option<Result<Vec<u8>, LegacyStatusError>>, StatusError> {
    Ok(dest
        .read_small(key)
        .await?
        .map(|bytes| decode_file(key, &bytes).map(|(_, body)| body)))
}

/// The records of `{host}/status`, or why there are none to trust.
async fn mysql_records(
    dest: &dyn Destination,
    key: &str,
) -> Result<Result<HashMap<String, MysqlRecord>, String>, StatusError> {
    Ok(match read_status_file(dest, key).await? {
        None => Ok(HashMap::new()),
        Some(Ok(body)) => {
            parse_mysql_status(&body).map_err(|e| format!("TwinDB status file {key}: {e}"))
        }
        Some(Err(e)) => Err(e.to_string()),
    })
}

/// The first-event times of `{host}/binlog-status`, or why there are none.
async fn binlog_times(
    dest: &dyn Destination,
    key: &str,
) -> Result<Result<HashMap<String, DateTime<Utc>>, String>, StatusError> {
    Ok(match read_status_file(dest, key).await? {
        None => Ok(HashMap::new()),
        Some(Ok(body)) => {
            parse_binlog_status(&body).map_err(|e| format!("TwinDB status file {key}: {e}"))
        }
        Some(Err(e)) => Err(e.to_string()),
    })
}

/// The TwinDB copies of `host` on `dest` that `own` (twindb's status) does not hold,
/// plus one line per problem met (a corrupt status file, a record without its copy).
/// TwinDB's status files are read only when there is a TwinDB copy.
pub async fn scan(
    dest: &dyn Destination,
    keep_local: Option<&Local>,
    host: &str,
    own: &Status,
) -> Result<(Vec<CopyMeta>, Vec<String>), StatusError> {
    let prefix = format!("{host}/");
    let records = format!("{host}/{}/", super::RECORDS);
    let ours: HashSet<&str> = own.copies.iter().map(|c| c.key.as_str()).collect();
    let listed = list_all(dest, &prefix)
        .await?
        .into_iter()
        .filter(|o| !o.key.starts_with(&records))
        .collect();
    let found: Vec<(Found, KeyInfo)> = group_parts(listed)
        .into_iter()
        .filter(|f| !ours.contains(f.key.as_str()))
        .filter_map(|f| parse_key(host, &f.key).map(|k| (f, k)))
        .collect();
    if found.is_empty() {
        return Ok((vec![], vec![]));
    }
    let mut problems = Vec::new();
    let status_key = format!("{host}/status");
    let (records, mysql_problem) = match mysql_records(dest, &status_key).await? {
        Ok(r) => (r, None),
        Err(e) => (HashMap::new(), Some(e)),
    };
    problems.extend(mysql_problem.clone());
    let times = binlog_times(dest, &format!("{host}/binlog-status"))
        .await?
        .unwrap_or_else(|e| {
            problems.push(e);
            HashMap::new()
        });
    // keep_local_path is a help, not a requirement: unreadable, it is not used.
    let local_sizes: HashMap<String, u64> = match keep_local {
        Some(l) => list_all(l, &prefix)
            .await
            .map(|v| v.into_iter().map(|o| (o.key, o.size)).collect())
            .unwrap_or_default(),
        None => HashMap::new(),
    };

    let mut copies = Vec::new();
    for (f, info) in &found {
        let mut meta = describe(host, f, info);
        match info.kind {
            CopyKind::Mysql => match records.get(&f.key) {
                Some(r) => apply_record(&mut meta, r, &records),
                None => {
                    let why = mysql_problem.clone().unwrap_or_else(|| {
                        format!("it has no record in {status_key} (TwinDB's type, LSN and parent of the copy are unknown)")
                    });
                    meta.twindb.as_mut().expect("a TwinDB copy").problem = Some(why);
                }
            },
            CopyKind::Binlog => {
                // Undated (not in binlog-status): "now", so that expiry never deletes
                // what it cannot date. The name and this time keep twindb from copying
                // the binlog again (BinlogMeta::is_file).
                let t = times.get(&info.base).copied().unwrap_or(meta.started);
                meta.started = t;
                meta.finished = t;
                meta.binlog = Some(BinlogMeta {
                    name: info.source.clone(),
                    first_event: t,
                    server_id: None,
                    segment: None,
                    consolidated: None,
                });
            }
            CopyKind::Files => {}
        }
        // keep_local_path holds the stream before encryption, under the key without `.gpg`.
        let local_key = match meta.modifiers.last() {
            Some(ModifierSpec::Gpg { .. }) => f.key.strip_suffix(".gpg").unwrap_or(&f.key),
            _ => &f.key,
        };
        if let Some(size) = local_sizes.get(local_key) {
            meta.local = Some(LocalCopy {
                key: local_key.to_string(),
                size: *size,
                sha256: String::new(),
                modifiers: ModifierSpec::chain_from_key(local_key),
            });
        }
        copies.push(meta);
    }

    let mut missing: Vec<&String> = records
        .keys()
        .filter(|k| !found.iter().any(|(f, _)| &f.key == *k) && own.find(k).is_none())
        .collect();
    missing.sort();
    for k in missing {
        problems.push(format!(
            "{status_key} lists {k}, but {} has no such copy",
            dest.name()
        ));
    }
    Ok((copies, problems))
}

/// What the key and the listing say about a copy.
fn describe(host: &str, f: &Found, info: &KeyInfo) -> CopyMeta {
    let time = info.time.unwrap_or_else(Utc::now);
    CopyMeta {
        key: f.key.clone(),
        kind: info.kind,
        run_type: info.run_type,
        backup_type: None,
        parent: None,
        host: host.to_string(),
        source: info.source.clone(),
        started: time,
        finished: time,
        source_size: 0,
        size: f.size,
        // Unknown: TwinDB recorded no checksum.
        sha256: String::new(),
        modifiers: ModifierSpec::chain_from_key(&f.key),
        mysql: None,
        binlog: None,
        local: None,
        twindb: Some(TwindbCopy {
            parts: f.parts.clone(),
            problem: None,
        }),
    }
}

fn apply_record(meta: &mut CopyMeta, r: &MysqlRecord, all: &HashMap<String, MysqlRecord>) {
    if let Some(t) = r.backup_started.and_then(epoch) {
        meta.started = t;
    }
    meta.finished = r.backup_finished.and_then(epoch).unwrap_or(meta.started);
    meta.backup_type = r.backup_type.clone();
    meta.parent = r.parent.clone();
    let Some(lsn) = r.lsn else {
        meta.twindb.as_mut().expect("twindb copy").problem =
            Some("its TwinDB record has no LSN".into());
        return;
    };
    // An incremental holds the changes since its parent's checkpoint.
    let from_lsn = match &r.parent {
        Some(p) => all.get(p).and_then(|p| p.lsn).unwrap_or(0),
        None => 0,
    };
    let vendor = match r.server_vendor.as_deref() {
        Some("mariadb") => Vendor::Mariadb,
        Some("percona") => Vendor::Percona,
        _ => Vendor::Oracle,
    };
    let (tool, stream_tool) = vendor.tools();
    meta.mysql = Some(MysqlMeta {
        from_lsn,
        to_lsn: lsn,
        last_lsn: lsn,
        binlog_file: r.binlog.clone(),
        binlog_position: r.position,
        gtid: None,
        vendor,
        version: String::new(),
        tool: tool.into(),
        stream_tool: stream_tool.into(),
        galera: r.galera.unwrap_or(false),
        wsrep_provider_version: r.wsrep_provider_version.clone(),
        config: r.config.as_ref().map(ConfigList::files).unwrap_or_default(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/twindb-3.3/remote/fixture-db1"
    );

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURE}/{name}")).unwrap()
    }

    fn wrapper_of(body: &str) -> String {
        let b = base64::engine::general_purpose::STANDARD.encode(body);
        let md5 = hex::encode(md5::Md5::digest(b.as_bytes()));
        format!(r#"{{"md5": "{md5}", "status": "{b}", "version": 1}}"#)
    }

    #[test]
    fn the_fixture_status_files_read() {
        let (form, body) = decode_file("fixture-db1/status", &fixture("status")).unwrap();
        assert_eq!(form, Form::Version1);
        let records = parse_mysql_status(&body).unwrap();
        assert_eq!(records.len(), 2);
        let inc = &records["fixture-db1/hourly/mysql/mysql-2026-11-25_10_37_59.xbstream.gz"];
        assert_eq!(inc.lsn, Some(159694));
        assert_eq!(inc.backup_type.as_deref(), Some("incremental"));
        assert_eq!(
            inc.parent.as_deref(),
            Some("fixture-db1/daily/mysql/mysql-2026-11-25_10_37_51.xbstream.gz")
        );
        assert_eq!(inc.config.as_ref().unwrap().files().len(), 13);

        let (_, body) =
            decode_file("fixture-db1/binlog-status", &fixture("binlog-status")).unwrap();
        let times = parse_binlog_status(&body).unwrap();
        assert_eq!(
            times["fixture-db1/binlog/mysql-bin.000003"].timestamp(),
            1795603081
        );
    }

    #[test]
    fn a_broken_md5_is_corruption() {
        let good = String::from_utf8(fixture("status")).unwrap();
        // One base64 character changed: the body still decodes, the md5 no longer matches.
        let at = good.find("\"status\": \"").unwrap() + 20;
        let mut bad = good.clone().into_bytes();
        bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
        let err = decode_file("fixture-db1/status", &bad).unwrap_err();
        assert!(
            matches!(&err, LegacyStatusError::Corrupt { stored, .. } if stored == "feded6d497f701f249d63236403d31fe"),
            "{err:?}"
        );
        assert!(err.to_string().contains("is corrupt"), "{err}");
        // A wrong md5 field over an intact body is corruption too.
        let wrong = good.replace(
            "feded6d497f701f249d63236403d31fe",
            "00000000000000000000000000000000",
        );
        assert!(matches!(
            decode_file("k", wrong.as_bytes()),
            Err(LegacyStatusError::Corrupt { .. })
        ));
    }

    #[test]
    fn an_empty_file_is_its_own_error() {
        for empty in [&b""[..], b"\n", b"  "] {
            let err = decode_file("h/status", empty).unwrap_err();
            assert_eq!(
                err,
                LegacyStatusError::Empty {
                    key: "h/status".into()
                }
            );
            assert!(err.to_string().contains("is empty"), "{err}");
        }
    }

    #[test]
    fn the_legacy_bare_base64_form_reads() {
        let (_, body) = decode_file("fixture-db1/status", &fixture("status")).unwrap();
        let bare = base64::engine::general_purpose::STANDARD.encode(&body);
        let (form, legacy_body) = decode_file("fixture-db1/status", bare.as_bytes()).unwrap();
        assert_eq!(form, Form::Legacy);
        assert_eq!(legacy_body, body);
        assert_eq!(parse_mysql_status(&legacy_body).unwrap().len(), 2);
        // With a trailing newline too, as an editor would leave it.
        let (form, _) = decode_file("k", format!("{bare}\n").as_bytes()).unwrap();
        assert_eq!(form, Form::Legacy);
    }

    #[test]
    fn other_damage_is_reported_not_skipped() {
        assert!(matches!(
            decode_file("k", b"not base64 at all!"),
            Err(LegacyStatusError::Unreadable { .. })
        ));
        let v2 = wrapper_of("{}").replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            decode_file("k", v2.as_bytes()),
            Err(LegacyStatusError::Version { version: 2, .. })
        ));
        assert!(matches!(
            decode_file("k", wrapper_of("{torn").as_bytes()),
            Err(LegacyStatusError::Unreadable { .. })
        ));
        let (form, body) = decode_file("k", wrapper_of(r#"{"hourly": {}}"#).as_bytes()).unwrap();
        assert_eq!(form, Form::Version1);
        assert!(parse_mysql_status(&body).unwrap().is_empty());
    }

    #[test]
    fn keys_in_twindb_layout() {
        let k = parse_key(
            "db1",
            "db1/daily/files/_tmp_twfx_appfiles-2026-11-25_10_37_50.tar.gz",
        )
        .unwrap();
        assert_eq!(k.kind, CopyKind::Files);
        assert_eq!(k.run_type, Some(RunType::Daily));
        assert_eq!(k.source, "_tmp_twfx_appfiles");
        assert_eq!(k.time.unwrap().to_rfc3339(), "2026-11-25T10:37:50+00:00");
        let k = parse_key(
            "db1",
            "db1/monthly/files/_my-dir-2026-11-25_10_38_08.tar.gz.gpg",
        )
        .unwrap();
        assert_eq!(k.source, "_my-dir");
        let k = parse_key("db1", "db1/binlog/mysql-bin.000002.gz").unwrap();
        assert_eq!(
            (k.kind, k.base.as_str()),
            (CopyKind::Binlog, "db1/binlog/mysql-bin.000002")
        );
        let k = parse_key(
            "db1",
            "db1/hourly/mysql/mysql-2026-11-25_10_37_59.xbstream.bz",
        )
        .unwrap();
        assert_eq!(k.kind, CopyKind::Mysql);
        for not_a_copy in [
            "db1/status",
            "db1/binlog-status",
            "db1/twindb-status.json",
            "db1/daily/files/_etc-2026-11-25_10_37_50.tar.zst",
            "db1/often/files/_etc-2026-11-25_10_37_50.tar.gz",
            "db2/daily/files/_etc-2026-11-25_10_37_50.tar.gz",
            "db1/daily/files/notes.txt",
        ] {
            assert_eq!(parse_key("db1", not_a_copy), None, "{not_a_copy}");
        }
    }

    #[test]
    fn gcs_parts_make_one_copy_in_order() {
        let o = |key: &str, size| ObjectMeta {
            key: key.into(),
            size,
        };
        let found = group_parts(vec![
            o(
                "h/daily/mysql/mysql-2026-01-01_00_00_00.xbstream.gz/part-0000000000000001",
                5,
            ),
            o("h/status", 3),
            o(
                "h/daily/mysql/mysql-2026-01-01_00_00_00.xbstream.gz/part-0000000000000000",
                7,
            ),
        ]);
        let copy = found
            .iter()
            .find(|f| f.key == "h/daily/mysql/mysql-2026-01-01_00_00_00.xbstream.gz")
            .unwrap();
        assert_eq!(copy.size, 12);
        assert!(copy.parts[0].ends_with("part-0000000000000000"));
        assert!(copy.parts[1].ends_with("part-0000000000000001"));
    }
}
