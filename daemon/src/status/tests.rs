//! The status store against a real local destination: the write-once records, the
//! index rebuilt from them, version 1 read and migrated, one writer per host, and the
//! cost of recording a copy however long the history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use futures::stream::BoxStream;
use sha2::Digest;
use twindb_proto::{CopyKind, RunType};

use super::*;
use crate::destination::{Destination, DestinationError, Local, ObjectMeta, Version};
use crate::modifier::ModifierSpec;
use crate::pipeline::ByteStream;

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

fn local(dir: &tempfile::TempDir) -> Arc<dyn Destination> {
    Arc::new(Local::new(dir.path()))
}

/// Stores and records `key` as a backup does.
async fn store_copy(store: &StatusStore, dir: &std::path::Path, key: &str) {
    let w = store.begin_put(key, None).await.unwrap();
    let path = dir.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"bytes").unwrap();
    store.record(copy(key), w).await.unwrap();
}

fn keys(s: &Status) -> Vec<&str> {
    s.copies.iter().map(|c| c.key.as_str()).collect()
}

#[test]
fn encode_decode_round_trip_and_tamper_detection() {
    let s = Status {
        generation: 3,
        copies: vec![copy("h/daily/files/a.tar.zst")],
        ..Status::default()
    };
    let bytes = s.encode();
    let (back, version) = Status::decode_versioned(&bytes).unwrap();
    assert_eq!((back, version), (s, 2));
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
        ..Status::default()
    };
    assert_eq!(Status::decode(&s.encode()).unwrap(), s);

    // An entry as written before keep_local existed.
    let old = r#"[{"key":"h/daily/files/a.tar","kind":"files","run_type":"daily","host":"h","source":"/etc","started":"2026-01-01T00:00:00Z","finished":"2026-01-01T00:00:01Z","source_size":10,"size":5,"sha256":"ab","modifiers":[]}]"#;
    let copies: Vec<CopyMeta> = serde_json::from_str(old).unwrap();
    assert_eq!(copies[0].local, None);
}

/// Each copy is a manifest of its own; the index is only a cache of them: rewritten
/// when it lags, rebuilt when it is damaged or gone, and never trusted for a copy
/// whose manifest is gone.
#[tokio::test]
async fn the_manifests_are_the_truth_and_the_index_follows_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = StatusStore::new(local(&dir), "h");
    assert_eq!(store.load().await.unwrap(), Status::default());
    store_copy(&store, dir.path(), "h/daily/files/a.tar").await;
    store_copy(&store, dir.path(), "h/daily/files/b.tar").await;
    let manifest = dir
        .path()
        .join("h/twindb-status.d/copies/daily/files/a.tar.json");
    assert!(manifest.is_file());
    let index = dir.path().join("h/twindb-status.json");
    assert!(!index.exists(), "recording never writes the index");
    assert_eq!(
        keys(&store.load().await.unwrap()),
        ["h/daily/files/a.tar", "h/daily/files/b.tar"]
    );

    assert!(store.compact().await.unwrap());
    assert!(!store.compact().await.unwrap(), "nothing left to catch up");
    let (indexed, version) = Status::decode_versioned(&std::fs::read(&index).unwrap()).unwrap();
    assert_eq!((keys(&indexed).len(), version), (2, VERSION));

    // A manifest gone (retention) takes its copy off the list, index or not.
    store
        .retire(&["h/daily/files/a.tar".into()], &[], &[])
        .await
        .unwrap();
    assert_eq!(keys(&store.load().await.unwrap()), ["h/daily/files/b.tar"]);

    // A damaged or missing index is rebuilt from the manifests.
    std::fs::write(&index, b"{torn").unwrap();
    assert_eq!(keys(&store.load().await.unwrap()), ["h/daily/files/b.tar"]);
    assert!(store.compact().await.unwrap());
    std::fs::remove_file(&index).unwrap();
    assert_eq!(keys(&store.load().await.unwrap()), ["h/daily/files/b.tar"]);

    // A damaged manifest lists nothing, and says so.
    store_copy(&store, dir.path(), "h/daily/files/c.tar").await;
    let c = dir
        .path()
        .join("h/twindb-status.d/copies/daily/files/c.tar.json");
    let text = std::fs::read_to_string(&c).unwrap();
    std::fs::write(&c, text.replace("\"size\":5", "\"size\":6")).unwrap();
    let s = store.load().await.unwrap();
    assert_eq!(keys(&s), ["h/daily/files/b.tar"]);
    assert!(
        s.problems[0].contains("checksum mismatch"),
        "{:?}",
        s.problems
    );
}

#[tokio::test]
async fn a_status_from_a_newer_twindb_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = StatusStore::new(local(&dir), "h");
    store_copy(&store, dir.path(), "h/daily/files/a.tar").await;
    store.compact().await.unwrap();
    let path = dir.path().join("h/twindb-status.json");
    let newer = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"version\":2", "\"version\":3");
    std::fs::write(&path, &newer).unwrap();
    let fresh = StatusStore::new(local(&dir), "h");
    let err = fresh
        .begin_put("h/daily/files/b.tar", None)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("newer twindb"), "{err}");
    assert!(fresh
        .load()
        .await
        .unwrap_err()
        .to_string()
        .contains("newer twindb"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), newer);
}

/// A copy stored but never recorded (its job failed, or twindbd was killed between
/// commit and record) is never listed, not even as one of TwinDB Backup's (same
/// names), and the next sweep removes it; a live one is left alone.
#[tokio::test]
async fn an_unrecorded_copy_is_never_listed_and_is_swept() {
    let dir = tempfile::tempdir().unwrap();
    let key = "h/daily/files/_etc-2026-11-25_10_00_00.tar.gz";
    let dest = local(&dir);
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

/// A recorded copy is never deleted by a sweep, whatever the pending markers say.
#[tokio::test]
async fn a_sweep_never_deletes_a_recorded_copy() {
    let dir = tempfile::tempdir().unwrap();
    let key = "h/daily/files/a.tar";
    let store = StatusStore::new(local(&dir), "h");
    store_copy(&store, dir.path(), key).await;
    // A marker left beside the manifest (killed between the two writes).
    drop(store.begin_put(key, None).await.unwrap());
    assert_eq!(store.sweep().await.unwrap(), vec![key.to_string()]);
    assert!(dir.path().join(key).exists());
    let s = store.load().await.unwrap();
    assert_eq!((s.copies.len(), s.pending.len()), (1, 0));
}

/// A copy recorded while a sweep runs (the sweep listed its pending marker but not yet
/// its manifest, and its put ended before the sweep looked at the puts in progress)
/// is never deleted: the binlog streamer records a segment every second, beside the
/// sweep of every retention run.
#[tokio::test]
async fn a_copy_recorded_during_a_sweep_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let key = "h/binlog/stream/u/mysql-bin.000001/00000000000000000000.zst";
    let probe = Arc::new(Probe::new(dir.path()));
    let store = StatusStore::new(probe.clone(), "h");
    let w = store.begin_put(key, None).await.unwrap();
    std::fs::create_dir_all(dir.path().join(key).parent().unwrap()).unwrap();
    std::fs::write(dir.path().join(key), b"segment").unwrap();

    // The sweep's load reads the writer after its listing.
    let writer = layout::Layout::new("h").writer();
    let (reached, release) = probe.pause("read_small_versioned", &writer);
    let sweeping = tokio::spawn({
        let store = store.clone();
        async move { store.sweep().await }
    });
    reached.notified().await;
    store.record(copy(key), w).await.unwrap();
    release.notify_one();
    sweeping.await.unwrap().unwrap();

    assert!(
        dir.path().join(key).exists(),
        "the sweep deleted a recorded copy"
    );
    let s = store.load().await.unwrap();
    assert_eq!((keys(&s), s.pending.len()), (vec![key], 0));
}

/// A put of a key the sweep is removing (the streamer retries a segment that failed
/// under the same key) waits until the sweep is done with it: the sweep never deletes
/// the retry's object nor forgets its marker.
#[tokio::test]
async fn a_put_of_a_key_being_swept_waits_for_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let key = "h/binlog/stream/u/mysql-bin.000001/00000000000000000000.zst";
    let probe = Arc::new(Probe::new(dir.path()));
    let store = StatusStore::new(probe.clone(), "h");
    // A put that failed: its marker stays, part of the object too.
    drop(store.begin_put(key, None).await.unwrap());
    std::fs::create_dir_all(dir.path().join(key).parent().unwrap()).unwrap();
    std::fs::write(dir.path().join(key), b"partial").unwrap();

    let (reached, release) = probe.pause("delete", key);
    let sweeping = tokio::spawn({
        let store = store.clone();
        async move { store.sweep().await }
    });
    reached.notified().await;
    let retry = tokio::spawn({
        let store = store.clone();
        let root = dir.path().to_path_buf();
        async move {
            let w = store.begin_put(key, None).await.unwrap();
            std::fs::write(root.join(key), b"segment").unwrap();
            store.record(copy(key), w).await.unwrap();
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    release.notify_one();
    assert_eq!(sweeping.await.unwrap().unwrap(), vec![key.to_string()]);
    retry.await.unwrap();

    assert_eq!(std::fs::read(dir.path().join(key)).unwrap(), b"segment");
    let s = store.load().await.unwrap();
    assert_eq!((keys(&s), s.pending.len()), (vec![key], 0));
}

/// A status written by twindb before version 2 (one document) reads as it was, and
/// the first write turns it into records without losing a copy, a pending object or
/// the writer; the old document stays as `.prev`.
#[tokio::test]
async fn a_version_1_status_is_read_and_migrated_at_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let who = |id: &str| WriterId {
        id: id.into(),
        machine: "m".into(),
    };
    let old_copies = vec![copy("h/daily/files/a.tar"), copy("h/daily/files/b.tar")];
    // Exactly as version 1 wrote it: the checksum is over the stored bytes of `copies`.
    let copies = serde_json::to_string(&old_copies).unwrap();
    let v1 = format!(
        r#"{{"format":"twindb-status","version":1,"generation":7,"updated":"2026-11-01T00:00:00Z","sha256":"{}","copies":{copies},"pending":[{{"key":"h/daily/files/orphan.tar","since":"2026-11-01T00:00:00Z","reason":"storing"}}],"writer":{{"id":"a","machine":"m","pid":1,"at":"2026-11-01T00:00:00Z"}}}}"#,
        hex::encode(sha2::Sha256::digest(copies.as_bytes()))
    );
    std::fs::create_dir_all(dir.path().join("h/daily/files")).unwrap();
    let v1_bytes = v1.into_bytes();
    std::fs::write(dir.path().join("h/twindb-status.json"), &v1_bytes).unwrap();
    std::fs::write(dir.path().join("h/daily/files/orphan.tar"), b"x").unwrap();

    let other = StatusStore::new(local(&dir), "h").with_writer(who("b"));
    let err = other
        .begin_put("h/daily/files/c.tar", None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StatusError::OtherWriter { .. }), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("h/twindb-status.json")).unwrap(),
        v1_bytes,
        "a refused writer migrates nothing"
    );

    let store = StatusStore::new(local(&dir), "h").with_writer(who("a"));
    let before = store.load().await.unwrap();
    assert_eq!(
        keys(&before),
        ["h/daily/files/a.tar", "h/daily/files/b.tar"]
    );
    assert_eq!(before.pending.len(), 1);
    store_copy(&store, dir.path(), "h/daily/files/c.tar").await;
    let (index, version) =
        Status::decode_versioned(&std::fs::read(dir.path().join("h/twindb-status.json")).unwrap())
            .unwrap();
    assert_eq!((version, index.generation, index.copies.len()), (2, 8, 2));
    assert_eq!(
        std::fs::read(dir.path().join("h/twindb-status.json.prev")).unwrap(),
        v1_bytes
    );
    let after = store.load().await.unwrap();
    let mut listed = keys(&after);
    listed.sort();
    assert_eq!(
        listed,
        [
            "h/daily/files/a.tar",
            "h/daily/files/b.tar",
            "h/daily/files/c.tar"
        ]
    );
    assert_eq!(after.writer.unwrap().who, who("a"));
    assert_eq!(store.sweep().await.unwrap(), ["h/daily/files/orphan.tar"]);
    assert!(!dir.path().join("h/daily/files/orphan.tar").exists());
}

/// Two daemons, one host name, one destination: the one that did not write last is
/// refused (naming the host and what to change); the same daemon after a restart
/// is not; a takeover hands the status over.
#[tokio::test]
async fn a_second_writer_is_refused_until_it_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let dest = local(&dir);
    let who = |id: &str| WriterId {
        id: id.into(),
        machine: "m".into(),
    };
    let a = StatusStore::new(dest.clone(), "h").with_writer(who("a"));
    let b = StatusStore::new(dest.clone(), "h").with_writer(who("b"));
    store_copy(&a, dir.path(), "h/daily/files/a.tar").await;
    let err = b
        .begin_put("h/daily/files/b.tar", None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StatusError::OtherWriter { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("host h on local:"), "{text}");
    assert!(text.contains("set another [daemon] hostname"), "{text}");
    assert!(b.check_writer().await.is_err());
    assert_eq!(a.load().await.unwrap().copies.len(), 1, "nothing lost");
    let retire = b.retire(&["h/daily/files/a.tar".into()], &[], &[]).await;
    assert!(matches!(retire, Err(StatusError::OtherWriter { .. })));
    assert_eq!(a.load().await.unwrap().copies.len(), 1, "nothing retired");

    // a, restarted: the same writer.
    let a2 = StatusStore::new(dest.clone(), "h").with_writer(who("a"));
    a2.check_writer().await.unwrap();
    store_copy(&a2, dir.path(), "h/daily/files/a2.tar").await;

    let before = b.take_over().await.unwrap().unwrap();
    assert_eq!(before.who, who("a"));
    store_copy(&b, dir.path(), "h/daily/files/b.tar").await;
    assert!(a.begin_put("h/daily/files/x.tar", None).await.is_err());
    assert_eq!(b.load().await.unwrap().copies.len(), 3);
}

/// Another daemon's claim lands between this one's read of the writer and its write.
#[tokio::test]
async fn a_claim_racing_another_daemon_is_refused_and_theirs_stays() {
    let dir = tempfile::tempdir().unwrap();
    let theirs = br#"{"id":"b","machine":"m2","pid":7,"at":"2026-11-01T00:00:00Z"}"#;
    let dest = Arc::new(Probe::new(dir.path()));
    *dest.other_writer.lock().unwrap() = Some(Bytes::from_static(theirs));
    let a = StatusStore::new(dest, "h").with_writer(WriterId {
        id: "a".into(),
        machine: "m".into(),
    });
    let err = a
        .begin_put("h/daily/files/a.tar", None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StatusError::Concurrent { .. }), "{err}");
    assert!(err.to_string().contains("[daemon] hostname"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("h/twindb-status.d/writer.json")).unwrap(),
        theirs
    );
    assert!(!dir
        .path()
        .join("h/twindb-status.d/pending/daily/files/a.tar.json")
        .exists());
}

/// A local destination that counts the requests a store makes, by operation, and can
/// let another daemon claim the host between this one's read of the writer and its
/// write (the race two daemons starting at once would run).
#[derive(Debug)]
struct Probe {
    inner: Local,
    calls: Mutex<BTreeMap<&'static str, usize>>,
    total: AtomicUsize,
    /// Written to writer.json just before the next conditional write of it.
    other_writer: Mutex<Option<Bytes>>,
    /// Holds the next request of one kind for one key (see [`Probe::pause`]).
    paused: Mutex<Option<Pause>>,
}

/// A request held until the test releases it.
#[derive(Debug)]
struct Pause {
    op: &'static str,
    key: String,
    reached: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl Probe {
    fn new(root: &std::path::Path) -> Probe {
        Probe {
            inner: Local::new(root),
            calls: Mutex::default(),
            total: AtomicUsize::new(0),
            other_writer: Mutex::default(),
            paused: Mutex::default(),
        }
    }
    /// The next `op` request for `key` waits: returns (reached, release).
    fn pause(
        &self,
        op: &'static str,
        key: &str,
    ) -> (Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>) {
        let pause = Pause {
            op,
            key: key.to_string(),
            reached: Arc::default(),
            release: Arc::default(),
        };
        let handles = (pause.reached.clone(), pause.release.clone());
        *self.paused.lock().unwrap() = Some(pause);
        handles
    }
    async fn held(&self, op: &'static str, key: &str) {
        let pause = {
            let mut paused = self.paused.lock().unwrap();
            match &*paused {
                Some(p) if p.op == op && p.key == key => paused.take(),
                _ => None,
            }
        };
        if let Some(p) = pause {
            p.reached.notify_one();
            p.release.notified().await;
        }
    }
    fn count(&self, op: &'static str) {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
    }
    fn take(&self) -> BTreeMap<&'static str, usize> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[async_trait]
impl Destination for Probe {
    fn name(&self) -> String {
        self.inner.name()
    }
    async fn check(&self) -> Result<(), DestinationError> {
        self.count("check");
        self.inner.check().await
    }
    async fn put(&self, key: &str, data: ByteStream) -> Result<u64, DestinationError> {
        self.count("put");
        self.inner.put(key, data).await
    }
    async fn get(&self, key: &str) -> Result<ByteStream, DestinationError> {
        self.count("get");
        self.inner.get(key).await
    }
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta, DestinationError>> {
        self.count("list");
        self.inner.list(prefix)
    }
    async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        self.count("delete");
        self.held("delete", key).await;
        self.inner.delete(key).await
    }
    async fn read_small(&self, key: &str) -> Result<Option<Bytes>, DestinationError> {
        self.count("read_small");
        self.inner.read_small(key).await
    }
    async fn write_small(&self, key: &str, data: Bytes) -> Result<(), DestinationError> {
        self.count("write_small");
        self.inner.write_small(key, data).await
    }
    async fn read_small_versioned(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, Version)>, DestinationError> {
        self.count("read_small_versioned");
        self.held("read_small_versioned", key).await;
        self.inner.read_small_versioned(key).await
    }
    async fn write_small_if(
        &self,
        key: &str,
        data: Bytes,
        expect: Option<&Version>,
    ) -> Result<(), DestinationError> {
        self.count("write_small_if");
        if key.ends_with("writer.json") {
            let theirs = self.other_writer.lock().unwrap().take();
            if let Some(theirs) = theirs {
                self.inner.write_small(key, theirs).await?;
            }
        }
        self.inner.write_small_if(key, data, expect).await
    }
}

/// Writes `n` copies' manifests straight to the folder (as `n` records would) and
/// brings the index up to date, the way a long-lived host's status looks.
async fn history(store: &StatusStore, root: &std::path::Path, n: usize) {
    for i in 0..n {
        let mut c = copy(&format!("h/binlog/stream/u/mysql-bin.000001/{i:020}.zst"));
        c.kind = CopyKind::Binlog;
        c.run_type = None;
        let path = root.join(format!(
            "h/{}/copies/binlog/stream/u/mysql-bin.000001/{i:020}.zst.json",
            RECORDS
        ));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, layout::encode_manifest(&c)).unwrap();
    }
    store.compact().await.unwrap();
}

/// Recording a copy costs the same requests with 20,000 copies recorded as with 10,
/// and reading the whole list a fixed few (one listing, the index, the writer): no
/// request per copy. Times are printed, not asserted (docs/benchmarks.md has them).
#[tokio::test]
async fn recording_costs_the_same_whatever_the_history() {
    let mut per_record = Vec::new();
    let mut per_load = Vec::new();
    for n in [10, 20_000] {
        let dir = tempfile::tempdir().unwrap();
        let counting = Arc::new(Probe::new(dir.path()));
        let store = StatusStore::new(counting.clone(), "h").with_writer(WriterId {
            id: "a".into(),
            machine: "m".into(),
        });
        history(&store, dir.path(), n).await;
        // The first record of a daemon's life claims the writer: not the steady cost.
        store_copy(&store, dir.path(), "h/daily/files/first.tar").await;
        store.compact().await.unwrap();
        // The first load also looks for TwinDB Backup's copies, once per daemon life.
        store.load().await.unwrap();
        counting.take();
        let t = Instant::now();
        store_copy(&store, dir.path(), "h/daily/files/one-more.tar").await;
        let record = t.elapsed();
        per_record.push(counting.take());

        let t = Instant::now();
        let s = store.load().await.unwrap();
        let load = t.elapsed();
        per_load.push(counting.take());
        assert_eq!(s.copies.len(), n + 2);
        println!("{n} copies: one more recorded in {record:?}, the list read in {load:?}");
    }
    assert_eq!(per_record[0], per_record[1], "requests per record");
    let total: usize = per_record[0].values().sum();
    assert!(total <= 5, "{:?}", per_record[0]);
    // One manifest the index lacks (the new copy) is read on its own.
    assert_eq!(per_load[0], per_load[1], "requests per load");
}

/// Jobs of one daemon starting together (files and MySQL of one run) claim the host
/// once between them: neither takes the other for a second daemon.
#[tokio::test]
async fn jobs_starting_together_claim_the_host_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = StatusStore::new(local(&dir), "h").with_writer(WriterId {
        id: "a".into(),
        machine: "m".into(),
    });
    let (a, b) = tokio::join!(
        store.begin_put("h/daily/files/a.tar", None),
        store.begin_put("h/daily/mysql/b.xbstream", None)
    );
    a.unwrap();
    b.unwrap();
}
