//! The host's list of copies, kept on the destination at `{host}/twindb-status.json`.
//!
//! Format (documented in docs/status-format.md): a JSON object
//! `{"format":"twindb-status","version":1,"generation":N,"updated":...,"sha256":H,"copies":[...]}`
//! where H is the sha256 of the exact bytes of the `copies` array as stored. The
//! previous generation is kept at `{host}/twindb-status.json.prev`, so a torn or
//! corrupted write loses nothing. A copy is listed only after it is committed.
//!
//! Objects that may exist on the destination without being a copy are recorded in
//! `pending` before they can exist: a copy being stored (recorded before its first
//! byte is written) and a copy retention is deleting (recorded as it leaves `copies`,
//! before its objects go). Whatever stops the job (a failed delete, a failed status
//! write, kill -9), the object is known: [`StatusStore::sweep`] deletes it at start and
//! at every retention, and it is never taken for one of TwinDB Backup's copies.

pub mod twindb;

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use twindb_proto::{CopyInfo, CopyKind, RunType};

use crate::destination::{Destination, DestinationError, Local};
use crate::modifier::ModifierSpec;
use crate::mysql::{ConfigFile, Vendor};

pub const FORMAT: &str = "twindb-status";
pub const VERSION: u32 = 1;

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
}

impl CopyMeta {
    /// Whether this is a copy of the closed binlog file `name` that `id` describes:
    /// same name, same first event, same server, same size. TwinDB Backup recorded
    /// only a name and a time no earlier than the file's start (its copy's).
    pub fn is_binlog_file(&self, name: &str, id: &crate::source::BinlogIdentity) -> bool {
        let Some(b) = self
            .binlog
            .as_ref()
            .filter(|_| self.kind == CopyKind::Binlog)
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

    fn is_pending(&self, key: &str) -> bool {
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
            pending: self.pending.clone(),
            writer: self.writer.clone(),
        };
        let mut out = serde_json::to_vec(&doc).expect("status serializes");
        out.push(b'\n');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Status, StatusError> {
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
        Ok(Status {
            generation: doc.generation,
            copies,
            pending: doc.pending,
            writer: doc.writer,
            problems: vec![],
        })
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
    /// Outside the checksum: a twindb that predates it reads the copies as before
    /// (and drops the list when it writes, which loses no copy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<Pending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    writer: Option<Writer>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("status is corrupt: {0}")]
    Corrupt(String),
    /// Never overwritten: a downgrade must not lose the newer twindb's records.
    #[error("status was written by a newer twindb (format version {0}, this one reads {VERSION}); upgrade twindb")]
    Newer(u32),
    #[error("{0:?} is not a host name a copy key can start with")]
    BadHost(String),
    #[error(
        "another twindbd writes the copies of host {host} on {destination}: the status was last written \
         by the one on machine {other_machine} (pid {other_pid}, at {other_at}), and this one runs on \
         {machine}. Two daemons must not share a host name: set another [daemon] hostname on one of them. \
         If that daemon is gone for good (this host replaces it), take its copies over with \
         `twindbctl takeover`"
    )]
    OtherWriter {
        host: String,
        destination: String,
        machine: String,
        other_machine: String,
        other_pid: u32,
        other_at: DateTime<Utc>,
    },
    #[error(
        "the status of host {host} on {destination} changed while this twindbd updated it: another \
         twindbd writes the copies of host {host}. Two daemons must not share a host name: set another \
         [daemon] hostname on one of them"
    )]
    Concurrent { host: String, destination: String },
    #[error(transparent)]
    Destination(#[from] DestinationError),
}

/// Reads and updates one host's status on one destination. Updates are serialized
/// within this process; only one twindbd runs per host (state_dir lock).
#[derive(Debug, Clone)]
pub struct StatusStore {
    dest: Arc<dyn Destination>,
    host: String,
    lock: Arc<Mutex<()>>,
    /// Where TwinDB's keep-local twins of its copies may be.
    keep_local: Option<Local>,
    /// Set once a look for TwinDB Backup's copies found none: only one tool writes a
    /// host's copies at a time, so none appear while twindbd runs, and a host that
    /// never had TwinDB does not pay for the listing at every read.
    no_twindb: Arc<std::sync::atomic::AtomicBool>,
    /// Keys being stored right now and not yet recorded: a listing would otherwise show
    /// them as TwinDB's copies (same names), and retention could count them.
    writing: Arc<std::sync::Mutex<HashSet<String>>>,
    readers: Arc<std::sync::Mutex<Readers>>,
    /// This daemon, when it writes (another host's status is only read).
    writer: Option<WriterId>,
}

/// Copies that running or queued restores and verifies read: retention never deletes
/// them (nor their parents). A job whose copies are not known yet (it has not
/// started) holds everything.
#[derive(Debug, Default)]
struct Readers {
    everything: usize,
}

/// Held by a restore or verify job from the moment it is queued until it ends.
pub struct Reading {
    readers: Arc<std::sync::Mutex<Readers>>,
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.readers.lock().expect("readers lock").everything -= 1;
    }
}

/// A key being stored; forgotten when dropped (recorded, or the job failed).
pub struct Writing {
    keys: Arc<std::sync::Mutex<HashSet<String>>>,
    key: String,
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.keys.lock().expect("writing lock").remove(&self.key);
    }
}

impl StatusStore {
    pub fn new(dest: Arc<dyn Destination>, host: &str) -> Self {
        StatusStore {
            dest,
            host: host.to_string(),
            lock: Arc::new(Mutex::new(())),
            keep_local: None,
            no_twindb: Arc::default(),
            writing: Arc::default(),
            readers: Arc::default(),
            writer: None,
        }
    }

    /// Writes as `writer`, and refuses to write a status another daemon wrote.
    pub fn with_writer(mut self, writer: WriterId) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Keeps retention from deleting any copy until the guard is dropped: a restore or
    /// verify holds it from when it is queued (its copies are chosen only when it runs).
    pub fn reading(&self) -> Reading {
        self.readers.lock().expect("readers lock").everything += 1;
        Reading {
            readers: self.readers.clone(),
        }
    }

    /// Whether a restore or verify is queued or running: retention deletes nothing then.
    pub fn is_read(&self) -> bool {
        self.readers.lock().expect("readers lock").everything > 0
    }

    /// Records `key` (and its keep-local twin `local`) as pending before any byte of
    /// it is stored, and marks it as being stored by this process until the guard is
    /// dropped. Hold the guard until [`StatusStore::record`] took the copy.
    pub async fn begin_put(&self, key: &str, local: Option<&str>) -> Result<Writing, StatusError> {
        // In memory first: a sweep running beside this job must never see the pending
        // entry without knowing that it is live.
        self.writing
            .lock()
            .expect("writing lock")
            .insert(key.to_string());
        let guard = Writing {
            keys: self.writing.clone(),
            key: key.to_string(),
        };
        let pending = Pending {
            key: key.to_string(),
            local: local.map(str::to_string),
            since: Utc::now(),
            reason: "storing".into(),
        };
        self.update(|s| s.pending.push(pending)).await?;
        Ok(guard)
    }

    /// Lists the committed copy: it joins `copies` and leaves `pending` in one write.
    pub async fn record(&self, meta: CopyMeta, _writing: Writing) -> Result<Status, StatusError> {
        self.update(|s| {
            s.pending.retain(|p| p.key != meta.key);
            s.copies.push(meta);
        })
        .await
    }

    /// Deletes every pending object that no job of this process is storing (a copy
    /// whose job failed or was killed, a deletion that did not finish), with what its
    /// put left beside it ([`Destination::discard`]: a temp file or multipart parts a
    /// dead destination kept the job from removing), and forgets it.
    /// A key that is also a recorded copy is only forgotten, never deleted. Returns the
    /// keys removed; one that could not be deleted stays pending for the next sweep.
    pub async fn sweep(&self) -> Result<Vec<String>, StatusError> {
        let status = self.load_own().await?;
        let stale: Vec<Pending> = {
            let writing = self.writing.lock().expect("writing lock");
            status
                .pending
                .iter()
                .filter(|p| !writing.contains(&p.key))
                .cloned()
                .collect()
        };
        let mut done = Vec::new();
        for p in stale {
            let ours = p.key.starts_with(&format!("{}/", self.host));
            let recorded = status.find(&p.key).is_some();
            if ours && !recorded {
                if let Err(e) = self.delete_pending(&p).await {
                    tracing::warn!(key = %p.key, error = %format!("{e:#}"), "could not remove an unrecorded object; the next sweep retries");
                    continue;
                }
                tracing::info!(key = %p.key, reason = %p.reason, "removed an unrecorded object");
            }
            done.push(p.key);
        }
        if !done.is_empty() {
            self.update(|s| s.pending.retain(|p| !done.contains(&p.key)))
                .await?;
        }
        Ok(done)
    }

    /// Deletes a pending object and what its put may have left beside it: a put cut
    /// off by a destination that died or filled up could not clean up after itself.
    async fn delete_pending(&self, p: &Pending) -> Result<(), DestinationError> {
        if let (Some(local), Some(dir)) = (&p.local, &self.keep_local) {
            dir.discard(local).await?;
        }
        self.dest.discard(&p.key).await
    }

    /// Also looks for TwinDB's local copies in `keep_local_path`.
    pub fn with_keep_local(mut self, keep_local: Option<Local>) -> Self {
        self.keep_local = keep_local;
        self
    }

    fn key(&self) -> String {
        format!("{}/twindb-status.json", self.host)
    }

    fn prev_key(&self) -> String {
        format!("{}/twindb-status.json.prev", self.host)
    }

    /// The current status; falls back to the previous generation when the current one
    /// is damaged.
    /// TwinDB Backup's copies on the destination are included (marked `twindb`).
    pub async fn load(&self) -> Result<Status, StatusError> {
        use std::sync::atomic::Ordering;
        let mut status = self.load_raw().await?.0;
        if self.no_twindb.load(Ordering::Relaxed) {
            return Ok(status);
        }
        let (mut theirs, problems) = twindb::scan(
            self.dest.as_ref(),
            self.keep_local.as_ref(),
            &self.host,
            &status,
        )
        .await?;
        {
            // Ours, not TwinDB's: same names, but being stored or never recorded.
            let writing = self.writing.lock().expect("writing lock");
            theirs.retain(|c| !writing.contains(&c.key) && !status.is_pending(&c.key));
        }
        if theirs.is_empty() && problems.is_empty() {
            self.no_twindb.store(true, Ordering::Relaxed);
        }
        for p in &problems {
            tracing::error!(host = %self.host, "{p}");
        }
        status.copies.extend(theirs);
        status.problems = problems;
        Ok(status)
    }

    /// twindb's own copies only.
    pub async fn load_own(&self) -> Result<Status, StatusError> {
        Ok(self.load_raw().await?.0)
    }

    async fn load_raw(&self) -> Result<(Status, Current), StatusError> {
        let read = self.dest.read_small_versioned(&self.key()).await?;
        let version = read.as_ref().map(|(_, v)| v.clone());
        let damaged = match read {
            None => None,
            Some((bytes, _)) => match Status::decode(&bytes) {
                Ok(s) => {
                    let current = Current {
                        bytes: Some(bytes),
                        version,
                    };
                    return Ok((s, current));
                }
                Err(e @ StatusError::Newer(_)) => return Err(e),
                Err(e) => Some(e),
            },
        };
        let current = Current {
            bytes: None,
            version,
        };
        let prev = self.dest.read_small(&self.prev_key()).await?;
        match (damaged, prev) {
            (None, None) => Ok((Status::default(), current)),
            (None, Some(p)) => Ok((Status::decode(&p)?, current)),
            (Some(e), Some(p)) => match Status::decode(&p) {
                Ok(s) => {
                    tracing::error!(key = %self.key(), error = %e, "status damaged, using the previous generation");
                    Ok((s, current))
                }
                Err(_) => Err(e),
            },
            (Some(e), None) => Err(e),
        }
    }

    /// Applies `f` to the status and stores the result, keeping the old one as `.prev`.
    /// Refused when another daemon wrote the status ([`StatusError::OtherWriter`]).
    pub async fn update<F: FnOnce(&mut Status)>(&self, f: F) -> Result<Status, StatusError> {
        self.write(f, false).await
    }

    /// Makes this daemon the status's writer even though another one wrote it last:
    /// `twindbctl takeover`, when that daemon is gone for good.
    pub async fn take_over(&self) -> Result<Option<Writer>, StatusError> {
        let before = self.load_own().await?.writer;
        self.write(|_| {}, true).await?;
        Ok(before)
    }

    /// Whether this daemon may write the status: no other daemon wrote it last. Reads
    /// only: a daemon that never stores anything never writes the status.
    pub async fn check_writer(&self) -> Result<(), StatusError> {
        self.refuse_other(&self.load_own().await?)
    }

    fn refuse_other(&self, status: &Status) -> Result<(), StatusError> {
        match (&self.writer, &status.writer) {
            (Some(me), Some(w)) if w.who != *me => Err(StatusError::OtherWriter {
                host: self.host.clone(),
                destination: self.dest.name(),
                machine: me.machine.clone(),
                other_machine: w.who.machine.clone(),
                other_pid: w.pid,
                other_at: w.at,
            }),
            _ => Ok(()),
        }
    }

    async fn write<F: FnOnce(&mut Status)>(
        &self,
        f: F,
        take_over: bool,
    ) -> Result<Status, StatusError> {
        let _guard = self.lock.lock().await;
        let (mut status, current) = self.load_raw().await?;
        if !take_over {
            self.refuse_other(&status)?;
        }
        if let Some(me) = &self.writer {
            status.writer = Some(Writer {
                who: me.clone(),
                pid: std::process::id(),
                at: Utc::now(),
            });
        }
        f(&mut status);
        status.generation += 1;
        if let Some(old) = current.bytes {
            self.dest.write_small(&self.prev_key(), old).await?;
        }
        // Only over what was read: two daemons updating at the same moment would
        // otherwise lose one's records (the writer check above only sees the writes
        // that landed before this read).
        match self
            .dest
            .write_small_if(
                &self.key(),
                Bytes::from(status.encode()),
                current.version.as_ref(),
            )
            .await
        {
            Ok(()) => Ok(status),
            Err(e) if e.kind == crate::destination::ErrorKind::Conflict => {
                Err(StatusError::Concurrent {
                    host: self.host.clone(),
                    destination: self.dest.name(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The status object as read for an update: its bytes when valid (kept as `.prev`),
/// and its version (`None`: absent), which the write must still find.
struct Current {
    bytes: Option<Bytes>,
    version: Option<crate::destination::Version>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::Local;

    fn copy(key: &str) -> CopyMeta {
        CopyMeta {
            key: key.into(),
            kind: CopyKind::Files,
            run_type: Some(RunType::Daily),
            backup_type: None,
            parent: None,
            host: "h".into(),
            source: "/etc".into(),
            started: Utc::now(),
            finished: Utc::now(),
            source_size: 10,
            size: 5,
            sha256: "ab".into(),
            modifiers: vec![ModifierSpec::Zstd { level: 3 }],
            mysql: None,
            binlog: None,
            local: None,
            twindb: None,
        }
    }

    #[test]
    fn encode_decode_round_trip_and_tamper_detection() {
        let s = Status {
            generation: 3,
            copies: vec![copy("h/daily/files/a.tar.zst")],
            pending: vec![Pending {
                key: "h/daily/files/b.tar.zst".into(),
                local: None,
                since: Utc::now(),
                reason: "storing".into(),
            }],
            writer: None,
            problems: vec![],
        };
        let bytes = s.encode();
        assert_eq!(Status::decode(&bytes).unwrap(), s);
        assert!(
            !String::from_utf8_lossy(&bytes).contains("\"local\""),
            "no local field without a local copy"
        );
        let tampered = String::from_utf8(bytes)
            .unwrap()
            .replace("\"size\":5", "\"size\":6");
        let err = Status::decode(tampered.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn a_local_copy_round_trips_and_old_entries_without_one_still_read() {
        let mut c = copy("h/daily/files/a.tar.zst");
        c.local = Some(LocalCopy {
            key: c.key.clone(),
            size: 5,
            sha256: "cd".into(),
            modifiers: c.modifiers.clone(),
        });
        let s = Status {
            generation: 1,
            copies: vec![c],
            pending: vec![],
            writer: None,
            problems: vec![],
        };
        assert_eq!(Status::decode(&s.encode()).unwrap(), s);

        // An entry as written before keep_local existed.
        let old = r#"[{"key":"h/daily/files/a.tar","kind":"files","run_type":"daily","host":"h","source":"/etc","started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:00:01Z","source_size":10,"size":5,"sha256":"ab","modifiers":[]}]"#;
        let copies: Vec<CopyMeta> = serde_json::from_str(old).unwrap();
        assert_eq!(copies[0].local, None);
    }

    #[tokio::test]
    async fn a_status_from_a_newer_twindb_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let dest: Arc<dyn Destination> = Arc::new(Local::new(dir.path()));
        let store = StatusStore::new(dest, "h");
        store
            .update(|s| s.copies.push(copy("h/daily/files/a.tar")))
            .await
            .unwrap();
        store
            .update(|s| s.copies.push(copy("h/daily/files/b.tar")))
            .await
            .unwrap();
        let path = dir.path().join("h/twindb-status.json");
        let newer = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"version\":1", "\"version\":2");
        std::fs::write(&path, &newer).unwrap();
        let err = store.update(|s| s.copies.clear()).await.unwrap_err();
        assert!(err.to_string().contains("newer twindb"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), newer);
    }

    /// A copy stored but never recorded (its job failed, or twindbd was killed between
    /// commit and record) is never listed, not even as one of TwinDB Backup's (same
    /// names), and the next sweep removes it; a live one is left alone.
    #[tokio::test]
    async fn an_unrecorded_copy_is_never_listed_and_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let key = "h/daily/files/_etc-2026-11-25_10_00_00.tar.gz";
        let dest: Arc<dyn Destination> = Arc::new(Local::new(dir.path()));
        let store = StatusStore::new(dest.clone(), "h");
        let writing = store.begin_put(key, None).await.unwrap();
        std::fs::create_dir_all(dir.path().join("h/daily/files")).unwrap();
        std::fs::write(dir.path().join(key), b"gzip bytes").unwrap();
        assert!(store.load().await.unwrap().copies.is_empty());
        assert!(
            store.sweep().await.unwrap().is_empty(),
            "a live put is never swept"
        );
        assert!(dir.path().join(key).exists());
        drop(writing);
        // As after a restart: a fresh store, the job's guard gone.
        let fresh = StatusStore::new(dest, "h");
        assert!(fresh.load().await.unwrap().copies.is_empty());
        assert_eq!(fresh.sweep().await.unwrap(), vec![key.to_string()]);
        assert!(!dir.path().join(key).exists());
        assert!(fresh.load().await.unwrap().pending.is_empty());
    }

    /// A recorded copy is never deleted by a sweep, whatever `pending` says.
    #[tokio::test]
    async fn a_sweep_never_deletes_a_recorded_copy() {
        let dir = tempfile::tempdir().unwrap();
        let key = "h/daily/files/a.tar";
        let dest: Arc<dyn Destination> = Arc::new(Local::new(dir.path()));
        let store = StatusStore::new(dest, "h");
        let w = store.begin_put(key, None).await.unwrap();
        std::fs::create_dir_all(dir.path().join("h/daily/files")).unwrap();
        std::fs::write(dir.path().join(key), b"tar").unwrap();
        store.record(copy(key), w).await.unwrap();
        store
            .update(|s| {
                s.pending.push(Pending {
                    key: key.into(),
                    local: None,
                    since: Utc::now(),
                    reason: "storing".into(),
                })
            })
            .await
            .unwrap();
        assert_eq!(store.sweep().await.unwrap(), vec![key.to_string()]);
        assert!(dir.path().join(key).exists());
        assert_eq!(store.load().await.unwrap().copies.len(), 1);
    }

    #[tokio::test]
    async fn update_keeps_previous_generation_and_recovers_from_damage() {
        let dir = tempfile::tempdir().unwrap();
        let dest: Arc<dyn Destination> = Arc::new(Local::new(dir.path()));
        let store = StatusStore::new(dest, "h");
        assert_eq!(store.load().await.unwrap(), Status::default());
        store
            .update(|s| s.copies.push(copy("h/daily/files/a.tar")))
            .await
            .unwrap();
        store
            .update(|s| s.copies.push(copy("h/daily/files/b.tar")))
            .await
            .unwrap();
        assert_eq!(store.load().await.unwrap().copies.len(), 2);
        std::fs::write(dir.path().join("h/twindb-status.json"), b"{torn").unwrap();
        let recovered = store.load().await.unwrap();
        assert_eq!(recovered.copies.len(), 1);
        assert_eq!(recovered.generation, 1);
    }

    /// Two daemons, one host name, one destination: the one that did not write last is
    /// refused (naming the host and what to change); the same daemon after a restart
    /// is not; a takeover hands the status over.
    #[tokio::test]
    async fn a_second_writer_is_refused_until_it_takes_over() {
        let dir = tempfile::tempdir().unwrap();
        let dest: Arc<dyn Destination> = Arc::new(Local::new(dir.path()));
        let who = |id: &str| WriterId {
            id: id.into(),
            machine: "m".into(),
        };
        let a = StatusStore::new(dest.clone(), "h").with_writer(who("a"));
        let b = StatusStore::new(dest.clone(), "h").with_writer(who("b"));
        a.update(|s| s.copies.push(copy("h/daily/files/a.tar")))
            .await
            .unwrap();
        let err = b.update(|s| s.copies.clear()).await.unwrap_err();
        assert!(matches!(err, StatusError::OtherWriter { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("host h on local:"), "{text}");
        assert!(text.contains("set another [daemon] hostname"), "{text}");
        assert_eq!(a.load().await.unwrap().copies.len(), 1, "nothing lost");

        // a, restarted: the same writer.
        let a2 = StatusStore::new(dest.clone(), "h").with_writer(who("a"));
        a2.update(|_| {}).await.unwrap();

        let before = b.take_over().await.unwrap().unwrap();
        assert_eq!(before.who, who("a"));
        b.update(|_| {}).await.unwrap();
        assert!(a.update(|_| {}).await.is_err());
        assert_eq!(b.load().await.unwrap().copies.len(), 1);
    }

    /// Another daemon's write landing between this one's read and write (same host name,
    /// same moment) is not overwritten: the conditional write refuses, and that write's
    /// records stay.
    #[tokio::test]
    async fn a_write_between_read_and_write_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let dest: Arc<dyn Destination> = Arc::new(Local::new(dir.path()));
        let a = StatusStore::new(dest.clone(), "h");
        a.update(|s| s.copies.push(copy("h/daily/files/a.tar")))
            .await
            .unwrap();
        let path = dir.path().join("h/twindb-status.json");
        let theirs = Status {
            generation: 9,
            copies: vec![copy("h/daily/files/theirs.tar")],
            ..Status::default()
        };
        let err = a
            .update(|s| {
                // The other daemon's write, as a new file renamed into place.
                let tmp = path.with_extension("other");
                std::fs::write(&tmp, theirs.encode()).unwrap();
                std::fs::rename(&tmp, &path).unwrap();
                s.copies.push(copy("h/daily/files/mine.tar"));
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StatusError::Concurrent { .. }), "{err}");
        assert!(err.to_string().contains("[daemon] hostname"), "{err}");
        let now = a.load().await.unwrap();
        assert_eq!(now.copies, theirs.copies, "their write stays whole");
    }
}
