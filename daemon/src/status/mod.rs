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

mod record;
mod store;

use chrono::{DateTime, Utc};

use crate::destination::DestinationError;

pub use self::record::*;
pub use self::store::*;

pub const FORMAT: &str = "twindb-status";
pub const VERSION: u32 = 1;

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use twindb_proto::{CopyKind, RunType};

    use crate::destination::{Destination, Local};
    use crate::modifier::ModifierSpec;

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
