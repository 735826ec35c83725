//! What the status records, and its encoding: the copy records (files, mysql, binlog,
//! their local twins), the `pending` list, the writer, and the checksummed document.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use twindb_proto::{CopyInfo, CopyKind, RunType};

use super::{twindb, StatusError, FORMAT, VERSION};
use crate::modifier::ModifierSpec;
use crate::mysql::{ConfigFile, Vendor};

/// Everything twindb knows about one copy. Restore is driven by this, never by config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyMeta {
    pub key: String,
    pub kind: CopyKind,
    /// None for binlogs, which belong to no run type.
    pub run_type: Option<RunType>,
    /// "full" or "incremental", MySQL only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_type: Option<String>,
    /// Key of the copy this one needs to be restored (an incremental's full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub host: String,
    /// What was copied: the folder for files.
    pub source: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// Bytes read from the source.
    pub source_size: u64,
    /// Bytes stored, and their sha256.
    pub size: u64,
    pub sha256: String,
    /// Applied in this order on backup; restore reverses it.
    pub modifiers: Vec<ModifierSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<MysqlMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog: Option<BinlogMeta>,
    /// The copy kept in `keep_local_path`, when there was one. Absent in status files
    /// written before keep_local existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalCopy>,
    /// Set on copies TwinDB Backup wrote (never stored in twindb's own status: they
    /// are read from TwinDB's files each time, see [`twindb`]). Their `sha256` is
    /// empty: TwinDB recorded none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twindb: Option<twindb::TwindbCopy>,
}

/// What a MySQL copy needs to be restored, verified and rolled forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MysqlMeta {
    /// xtrabackup_checkpoints: the copy holds changes from `from_lsn` to `to_lsn`.
    pub from_lsn: u64,
    pub to_lsn: u64,
    pub last_lsn: u64,
    /// Binary log coordinates of the copy, from xtrabackup_info.
    pub binlog_file: Option<String>,
    pub binlog_position: Option<u64>,
    /// MySQL gtid_executed / MariaDB gtid_binlog_pos at the copy.
    pub gtid: Option<String>,
    pub vendor: Vendor,
    pub version: String,
    /// The program that took the copy and the stream extractor that reads it.
    pub tool: String,
    pub stream_tool: String,
    pub galera: bool,
    pub wsrep_provider_version: Option<String>,
    /// The server's my.cnf files at backup time.
    #[serde(default)]
    pub config: Vec<ConfigFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinlogMeta {
    /// e.g. `mysql-bin.000012`.
    pub name: String,
    /// Timestamp of the file's first event (expiry and point-in-time windows use it).
    pub first_event: DateTime<Utc>,
    /// The server_id in the file's first event: with the name and `first_event` it
    /// tells this file from another of the same name (after `RESET MASTER`, on a
    /// rebuilt server, after a failover). Absent in records written before twindb
    /// recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<u32>,
    /// Set on a segment the binlog streamer stored (daemon/src/binlog/): the bytes
    /// [start, end) of the file `name`, not the whole file. Absent on closed-file copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<SegmentMeta>,
    /// Set on a closed-file copy the streamer made of a file's segments once the file
    /// was complete (daemon/src/binlog/consolidate.rs): what they said of the whole
    /// file (`start` 0, `end` its size, `last`), so the stream resumes after it and
    /// point-in-time restore knows until when it holds every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidated: Option<SegmentMeta>,
}

/// Where a streamed segment sits in its binlog file, and what it holds. A file's
/// segments, in `start` order, concatenate to the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// The server's `@@server_uuid`, or `server-id-{N}` when it has none (MariaDB):
    /// with `name` and `BinlogMeta::first_event` it says whose history this is.
    pub server_uuid: String,
    /// Byte offsets in the file: the first segment of a file starts at 0 (the magic).
    pub start: u64,
    pub end: u64,
    /// Timestamps of the first and last event the segment holds.
    pub first_event_time: DateTime<Utc>,
    pub last_event_time: DateTime<Utc>,
    /// MariaDB `gtid_binlog_pos` after the segment's last event, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    /// The segment ends the file (its ROTATE or STOP event): `end` is the file's size.
    #[serde(default)]
    pub last: bool,
}

impl CopyMeta {
    /// The segment record, when this is a streamed segment.
    pub fn segment(&self) -> Option<(&BinlogMeta, &SegmentMeta)> {
        let b = self.binlog.as_ref()?;
        Some((b, b.segment.as_ref()?))
    }

    /// What the streamer stored of this server's file: a segment, or a whole file it
    /// consolidated from its segments.
    pub fn streamed_part(&self) -> Option<(&BinlogMeta, &SegmentMeta)> {
        let b = self
            .binlog
            .as_ref()
            .filter(|_| self.kind == CopyKind::Binlog)?;
        Some((b, b.segment.as_ref().or(b.consolidated.as_ref())?))
    }

    /// Whether the streamer stored (some of) the closed file `id` describes. With
    /// `whole`, only when its segments reach the file's end (they start at 0 and
    /// follow each other: the streamer stores no hole inside a file).
    pub fn streamed(
        copies: &[CopyMeta],
        name: &str,
        id: &crate::source::BinlogIdentity,
        whole: bool,
    ) -> bool {
        copies.iter().filter_map(CopyMeta::segment).any(|(b, s)| {
            b.name == name
                && b.first_event == id.first_event
                && b.server_id.is_none_or(|sid| sid == id.server_id)
                && (!whole || s.end == id.size)
        })
    }

    /// Whether this is a copy of the closed binlog file `name` that `id` describes:
    /// same name, same first event, same server, same size. TwinDB Backup recorded
    /// only a name and a time no earlier than the file's start (its copy's).
    pub fn is_binlog_file(&self, name: &str, id: &crate::source::BinlogIdentity) -> bool {
        let Some(b) = self
            .binlog
            .as_ref()
            .filter(|b| self.kind == CopyKind::Binlog && b.segment.is_none())
        else {
            return false;
        };
        if b.name != name {
            return false;
        }
        if self.twindb.is_some() {
            return b.first_event >= id.first_event;
        }
        b.first_event == id.first_event
            && b.server_id.is_none_or(|s| s == id.server_id)
            && self.source_size == id.size
    }
}

/// A copy written to `keep_local_path` from the same stream as the remote one, at the
/// point of the chain where TwinDB made it: after compression, before encryption. Its
/// bytes can therefore differ from the remote copy's, so it has its own record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalCopy {
    /// Relative to `keep_local_path`.
    pub key: String,
    pub size: u64,
    pub sha256: String,
    /// The modifiers applied to the local bytes, in order.
    pub modifiers: Vec<ModifierSpec>,
}

impl CopyMeta {
    pub fn to_info(&self, location: &str) -> CopyInfo {
        CopyInfo {
            key: self.key.clone(),
            kind: self.kind,
            run_type: self.run_type,
            backup_type: self.backup_type.clone(),
            host: self.host.clone(),
            started: self.started,
            finished: self.finished,
            size: self.size,
            modifiers: self
                .modifiers
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
            location: location.to_string(),
            origin: self.twindb.as_ref().map(|_| twindb::ORIGIN.to_string()),
        }
    }
}

/// Objects that may be on the destination and are no copy (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub key: String,
    /// Its twin in `keep_local_path`, relative to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    pub since: DateTime<Utc>,
    /// "storing" or "deleting".
    pub reason: String,
}

/// The twindbd that writes a host's status. One host's copies have one writer: two
/// daemons with the same `[daemon] hostname` on one destination (a cloned VM, a copied
/// config) would delete each other's uploads at start and sweep each other's copies
/// being stored. The second one to write is refused ([`StatusError::OtherWriter`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterId {
    /// Random, made once per `state_dir` (`state_dir/daemon-id`).
    pub id: String,
    /// The operating system's host name (a clone with a copied state_dir has its own).
    pub machine: String,
}

impl WriterId {
    /// This daemon (`id` from [`crate::state::daemon_id`]) on this machine.
    pub fn this_machine(id: String) -> std::io::Result<WriterId> {
        let machine = nix::unistd::gethostname()
            .map_err(std::io::Error::from)?
            .to_string_lossy()
            .into_owned();
        Ok(WriterId { id, machine })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Writer {
    #[serde(flatten)]
    pub who: WriterId,
    pub pid: u32,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub generation: u64,
    pub copies: Vec<CopyMeta>,
    pub pending: Vec<Pending>,
    /// Who wrote this generation; absent in status files written before twindb
    /// recorded it (the next writer claims them).
    pub writer: Option<Writer>,
    /// What reading TwinDB's copies met (a corrupt TwinDB status file...), one line
    /// each; shown by `twindbctl ls`. Never stored.
    pub problems: Vec<String>,
}

impl Status {
    pub fn find(&self, key: &str) -> Option<&CopyMeta> {
        self.copies.iter().find(|c| c.key == key)
    }

    pub(super) fn is_pending(&self, key: &str) -> bool {
        self.pending.iter().any(|p| p.key == key)
    }

    /// The key `key_at(t)` for the first second from `start` that no copy uses yet:
    /// two runs within one second would otherwise share a name and overwrite a copy.
    pub fn free_key(
        &self,
        start: DateTime<Utc>,
        key_at: impl Fn(DateTime<Utc>) -> String,
    ) -> String {
        let mut t = start;
        loop {
            let k = key_at(t);
            if self.find(&k).is_none() && !self.is_pending(&k) {
                return k;
            }
            t += chrono::Duration::seconds(1);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let copies = serde_json::to_string(&self.copies).expect("copies serialize");
        let doc = Document {
            format: FORMAT.into(),
            version: VERSION,
            generation: self.generation,
            updated: Utc::now(),
            sha256: hex::encode(Sha256::digest(copies.as_bytes())),
            copies: RawValue::from_string(copies).expect("valid json"),
            // Version 2 keeps these in objects of their own (see layout.rs).
            pending: vec![],
            writer: None,
        };
        let mut out = serde_json::to_vec(&doc).expect("status serializes");
        out.push(b'\n');
        out
    }

    /// The index's copies; pending and writer only from a version 1 file (version 2
    /// keeps them in objects of their own).
    pub fn decode(bytes: &[u8]) -> Result<Status, StatusError> {
        Self::decode_versioned(bytes).map(|(s, _)| s)
    }

    pub fn decode_versioned(bytes: &[u8]) -> Result<(Status, u32), StatusError> {
        let doc: Document = serde_json::from_slice(bytes)
            .map_err(|e| StatusError::Corrupt(format!("not a status document: {e}")))?;
        if doc.format != FORMAT {
            return Err(StatusError::Corrupt(format!(
                "unexpected format {:?}",
                doc.format
            )));
        }
        if doc.version > VERSION {
            return Err(StatusError::Newer(doc.version));
        }
        let got = hex::encode(Sha256::digest(doc.copies.get().as_bytes()));
        if got != doc.sha256 {
            return Err(StatusError::Corrupt(format!(
                "checksum mismatch (stored {}, computed {got})",
                doc.sha256
            )));
        }
        let copies = serde_json::from_str(doc.copies.get())
            .map_err(|e| StatusError::Corrupt(format!("bad copy entry: {e}")))?;
        let status = Status {
            generation: doc.generation,
            copies,
            pending: doc.pending,
            writer: doc.writer,
            problems: vec![],
        };
        Ok((status, doc.version))
    }
}

#[derive(Serialize, Deserialize)]
struct Document {
    format: String,
    version: u32,
    generation: u64,
    updated: DateTime<Utc>,
    sha256: String,
    copies: Box<RawValue>,
    /// Version 1 only. Outside the checksum: a twindb that predates it reads the
    /// copies as before (and drops the list when it writes, which loses no copy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<Pending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    writer: Option<Writer>,
}
