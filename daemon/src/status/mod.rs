//! The host's list of copies, kept on the destination at `{host}/twindb-status.json`.
//!
//! Format (documented in docs/status-format.md): a JSON object
//! `{"format":"twindb-status","version":1,"generation":N,"updated":...,"sha256":H,"copies":[...]}`
//! where H is the sha256 of the exact bytes of the `copies` array as stored. The
//! previous generation is kept at `{host}/twindb-status.json.prev`, so a torn or
//! corrupted write loses nothing. The status changes only after a copy is committed.

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

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub generation: u64,
    pub copies: Vec<CopyMeta>,
    /// What reading TwinDB's copies met (a corrupt TwinDB status file...), one line
    /// each; shown by `twindbctl ls`. Never stored.
    pub problems: Vec<String>,
}

impl Status {
    pub fn find(&self, key: &str) -> Option<&CopyMeta> {
        self.copies.iter().find(|c| c.key == key)
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
            if self.find(&k).is_none() {
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
        }
    }

    /// Marks `key` as being stored until the returned guard is dropped: hold it from
    /// before the copy is stored until after it is recorded.
    pub fn writing(&self, key: &str) -> Writing {
        self.writing
            .lock()
            .expect("writing lock")
            .insert(key.to_string());
        Writing {
            keys: self.writing.clone(),
            key: key.to_string(),
        }
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
            let writing = self.writing.lock().expect("writing lock");
            theirs.retain(|c| !writing.contains(&c.key));
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

    async fn load_raw(&self) -> Result<(Status, Option<Bytes>), StatusError> {
        let current = self.dest.read_small(&self.key()).await?;
        let damaged = match &current {
            None => None,
            Some(bytes) => match Status::decode(bytes) {
                Ok(s) => return Ok((s, current)),
                Err(e @ StatusError::Newer(_)) => return Err(e),
                Err(e) => Some(e),
            },
        };
        let prev = self.dest.read_small(&self.prev_key()).await?;
        match (damaged, prev) {
            (None, None) => Ok((Status::default(), None)),
            (None, Some(p)) => Ok((Status::decode(&p)?, None)),
            (Some(e), Some(p)) => match Status::decode(&p) {
                Ok(s) => {
                    tracing::error!(key = %self.key(), error = %e, "status damaged, using the previous generation");
                    Ok((s, None))
                }
                Err(_) => Err(e),
            },
            (Some(e), None) => Err(e),
        }
    }

    /// Applies `f` to the status and stores the result, keeping the old one as `.prev`.
    pub async fn update<F: FnOnce(&mut Status)>(&self, f: F) -> Result<Status, StatusError> {
        let _guard = self.lock.lock().await;
        let (mut status, current) = self.load_raw().await?;
        f(&mut status);
        status.generation += 1;
        if let Some(old) = current {
            self.dest.write_small(&self.prev_key(), old).await?;
        }
        self.dest
            .write_small(&self.key(), Bytes::from(status.encode()))
            .await?;
        Ok(status)
    }
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

    #[tokio::test]
    async fn a_copy_being_stored_is_not_taken_for_a_twindb_backup_copy() {
        let dir = tempfile::tempdir().unwrap();
        let key = "h/daily/files/_etc-2026-11-25_10_00_00.tar.gz";
        std::fs::create_dir_all(dir.path().join("h/daily/files")).unwrap();
        std::fs::write(dir.path().join(key), b"gzip bytes").unwrap();
        let dest: Arc<dyn Destination> = Arc::new(Local::new(dir.path()));
        let store = StatusStore::new(dest.clone(), "h");
        let writing = store.writing(key);
        assert!(store.load().await.unwrap().copies.is_empty());
        drop(writing);
        // Never recorded (the job failed after storing it): a fresh read lists it.
        let listed = StatusStore::new(dest, "h").load().await.unwrap();
        assert_eq!(listed.copies.len(), 1);
        assert!(listed.copies[0].twindb.is_some());
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
}
