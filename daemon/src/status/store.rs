//! Reading and writing one host's status on its destination: a record object per copy
//! and per pending object, written once (layout.rs), the index rebuilt from them in
//! the background, one writer per host, the pending list and its sweep, and the
//! readers that hold retention back.
//!
//! Recording a copy costs the same few requests whatever the host's history: read the
//! writer (is this daemon still the one?), write the copy's manifest, delete its
//! pending marker. Nothing is ever rewritten in place except the index, which is a
//! cache: reading takes the manifests as the truth.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Mutex;

use super::layout::{self, Layout, Record};
use super::{twindb, CopyMeta, Pending, Status, StatusError, Writer, WriterId};
use crate::destination::{Destination, DestinationError, ErrorKind, Local, Version};

/// A load that had to read this many manifests the index lacks (or found that many
/// index entries gone) rewrites the index in the background.
const COMPACT_AFTER: usize = 64;
/// Manifests read at once when the index lags.
const READ_AHEAD: usize = 16;

/// Reads and updates one host's status on one destination. Only one twindbd writes
/// a host's status (the writer object, see [`StatusStore::with_writer`]).
#[derive(Debug, Clone)]
pub struct StatusStore {
    dest: Arc<dyn Destination>,
    host: String,
    layout: Layout,
    /// Serializes this process's migration and compaction.
    lock: Arc<Mutex<()>>,
    /// Serializes this process's claims: two jobs starting together would otherwise
    /// both find the writer absent, and the second one's conditional write would take
    /// its own daemon for another.
    claim_lock: Arc<Mutex<()>>,
    /// Where TwinDB's keep-local twins of its copies may be.
    keep_local: Option<Local>,
    /// Set once a look for TwinDB Backup's copies found none: only one tool writes a
    /// host's copies at a time, so none appear while twindbd runs, and a host that
    /// never had TwinDB does not pay for the listing at every read.
    no_twindb: Arc<AtomicBool>,
    /// Keys being stored right now and not yet recorded, and keys the sweep is removing.
    puts: Arc<std::sync::Mutex<Puts>>,
    readers: Arc<std::sync::Mutex<Readers>>,
    /// This daemon, when it writes (another host's status is only read).
    writer: Option<WriterId>,
    /// The status is in version 2's layout (migrated, or never was version 1).
    current: Arc<AtomicBool>,
    /// A background compaction is running.
    compacting: Arc<AtomicBool>,
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

/// The keys this process is storing or sweeping; a key is in at most one set.
#[derive(Debug, Default)]
struct Puts {
    /// Stored and not yet recorded: a listing would otherwise show them as TwinDB's
    /// copies (same names), and the sweep would take them for unrecorded leftovers.
    writing: HashSet<String>,
    /// Being removed by the sweep: a put of one of them (a segment stored again under
    /// the key of one that failed) waits, or the sweep would delete the new object.
    sweeping: HashSet<String>,
}

/// A key being stored; forgotten when dropped (recorded, or the job failed).
pub struct Writing {
    puts: Arc<std::sync::Mutex<Puts>>,
    key: String,
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.puts
            .lock()
            .expect("puts lock")
            .writing
            .remove(&self.key);
    }
}

/// A key the sweep is removing; released when dropped.
struct Sweeping {
    puts: Arc<std::sync::Mutex<Puts>>,
    key: String,
}

impl Drop for Sweeping {
    fn drop(&mut self) {
        self.puts
            .lock()
            .expect("puts lock")
            .sweeping
            .remove(&self.key);
    }
}

/// What a load found besides the status: whether the index needs rewriting.
struct Loaded {
    status: Status,
    index: IndexState,
}

enum IndexState {
    /// A version 1 status file, not migrated yet: it holds everything.
    Legacy { bytes: Bytes, version: Version },
    /// Version 2: the index at `version` (`None`: absent), `stale` records behind.
    Current {
        version: Option<Version>,
        stale: usize,
    },
}

impl StatusStore {
    pub fn new(dest: Arc<dyn Destination>, host: &str) -> Self {
        StatusStore {
            dest,
            host: host.to_string(),
            layout: Layout::new(host),
            lock: Arc::new(Mutex::new(())),
            claim_lock: Arc::new(Mutex::new(())),
            keep_local: None,
            no_twindb: Arc::default(),
            puts: Arc::default(),
            readers: Arc::default(),
            writer: None,
            current: Arc::default(),
            compacting: Arc::default(),
        }
    }

    /// Writes as `writer`, and refuses to write a status another daemon wrote.
    pub fn with_writer(mut self, writer: WriterId) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Also looks for TwinDB's local copies in `keep_local_path`.
    pub fn with_keep_local(mut self, keep_local: Option<Local>) -> Self {
        self.keep_local = keep_local;
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
        // marker without knowing that it is live.
        loop {
            {
                let mut puts = self.puts.lock().expect("puts lock");
                if !puts.sweeping.contains(key) {
                    puts.writing.insert(key.to_string());
                    break;
                }
            }
            // The sweep is deleting an earlier, failed put of this key: a few requests.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let guard = Writing {
            puts: self.puts.clone(),
            key: key.to_string(),
        };
        self.prepare(false).await?;
        let pending = Pending {
            key: key.to_string(),
            local: local.map(str::to_string),
            since: Utc::now(),
            reason: "storing".into(),
        };
        self.write_pending(&pending).await?;
        Ok(guard)
    }

    /// Lists the committed copy: its manifest is written, then its pending marker goes
    /// (a marker left beside a manifest is only forgotten by the sweep).
    pub async fn record(&self, meta: CopyMeta, _writing: Writing) -> Result<(), StatusError> {
        self.prepare(false).await?;
        let name = self.layout.record(Record::Copy, &meta.key)?;
        self.dest
            .write_small(&name, Bytes::from(layout::encode_manifest(&meta)))
            .await?;
        if let Err(e) = self.forget_pending(std::slice::from_ref(&meta.key)).await {
            tracing::warn!(key = %meta.key, error = %format!("{e:#}"), "recorded, but its pending marker stays until the next sweep");
        }
        Ok(())
    }

    /// Retention's first step, before any object goes: the objects of `doomed` become
    /// pending, the copies `gone` leave the list, and the copies of `local_gone` lose
    /// their keep-local twin. A crash after this leaves only pending objects, which the
    /// next sweep deletes.
    pub async fn retire(
        &self,
        gone: &[String],
        local_gone: &[String],
        doomed: &[Pending],
    ) -> Result<(), StatusError> {
        self.prepare(false).await?;
        for p in doomed {
            self.write_pending(p).await?;
        }
        for key in gone {
            // TwinDB's copies have no manifest: deleting a missing object succeeds.
            self.dest
                .delete(&self.layout.record(Record::Copy, key)?)
                .await?;
            self.dest
                .delete(&self.layout.record(Record::LocalGone, key)?)
                .await?;
        }
        for key in local_gone {
            let name = self.layout.record(Record::LocalGone, key)?;
            self.dest
                .write_small(&name, Bytes::from_static(b"{}\n"))
                .await?;
        }
        Ok(())
    }

    /// Forgets pending objects that are gone (deleted, or recorded as copies).
    pub async fn forget_pending(&self, keys: &[String]) -> Result<(), StatusError> {
        for key in keys {
            self.dest
                .delete(&self.layout.record(Record::Pending, key)?)
                .await?;
        }
        Ok(())
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
            let puts = self.puts.lock().expect("puts lock");
            status
                .pending
                .iter()
                .filter(|p| !puts.writing.contains(&p.key))
                .cloned()
                .collect()
        };
        if stale.is_empty() {
            return Ok(vec![]);
        }
        // A version 1 status keeps its pending list inside: migrate before forgetting.
        self.prepare(false).await?;
        let mut done = Vec::new();
        for p in stale {
            let Some(_claim) = self.claim_for_sweep(&p.key) else {
                continue;
            };
            match self.sweep_one(&p, &status).await {
                Ok(()) => done.push(p.key),
                Err(e) => {
                    tracing::warn!(key = %p.key, error = %format!("{e:#}"), "could not remove an unrecorded object; the next sweep retries");
                }
            }
        }
        Ok(done)
    }

    /// Keeps puts of `key` from starting until the claim is dropped; `None` when one
    /// started since the sweep's load (it owns the key now).
    fn claim_for_sweep(&self, key: &str) -> Option<Sweeping> {
        let mut puts = self.puts.lock().expect("puts lock");
        if puts.writing.contains(key) {
            return None;
        }
        puts.sweeping.insert(key.to_string());
        Some(Sweeping {
            puts: self.puts.clone(),
            key: key.to_string(),
        })
    }

    /// Deletes one pending object unless it is recorded, and forgets its marker. The
    /// load is a snapshot: a put that ended after its listing recorded its copy since,
    /// so the manifest is read again (under the claim, no put of the key can start).
    async fn sweep_one(&self, p: &Pending, loaded: &Status) -> Result<(), StatusError> {
        let ours = p.key.starts_with(&format!("{}/", self.host));
        if ours && loaded.find(&p.key).is_none() && !self.is_recorded(&p.key).await? {
            self.delete_pending(p).await?;
            tracing::info!(key = %p.key, reason = %p.reason, "removed an unrecorded object");
        }
        self.forget_pending(std::slice::from_ref(&p.key)).await
    }

    async fn is_recorded(&self, key: &str) -> Result<bool, StatusError> {
        let manifest = self.layout.record(Record::Copy, key)?;
        Ok(self.dest.read_small(&manifest).await?.is_some())
    }

    /// Deletes a pending object and what its put may have left beside it: a put cut
    /// off by a destination that died or filled up could not clean up after itself.
    async fn delete_pending(&self, p: &Pending) -> Result<(), DestinationError> {
        if let (Some(local), Some(dir)) = (&p.local, &self.keep_local) {
            dir.discard(local).await?;
        }
        self.dest.discard(&p.key).await
    }

    async fn write_pending(&self, p: &Pending) -> Result<(), StatusError> {
        let name = self.layout.record(Record::Pending, &p.key)?;
        self.dest
            .write_small(&name, Bytes::from(layout::encode_pending(p)))
            .await?;
        Ok(())
    }

    /// The current status.
    /// TwinDB Backup's copies on the destination are included (marked `twindb`).
    pub async fn load(&self) -> Result<Status, StatusError> {
        let mut status = self.load_own().await?;
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
            let puts = self.puts.lock().expect("puts lock");
            theirs.retain(|c| !puts.writing.contains(&c.key) && !status.is_pending(&c.key));
        }
        if theirs.is_empty() && problems.is_empty() {
            self.no_twindb.store(true, Ordering::Relaxed);
        }
        for p in &problems {
            tracing::error!(host = %self.host, "{p}");
        }
        status.copies.extend(theirs);
        status.problems.extend(problems);
        Ok(status)
    }

    /// twindb's own copies only. A writer whose index lags rewrites it in the
    /// background.
    pub async fn load_own(&self) -> Result<Status, StatusError> {
        let loaded = self.load_raw().await?;
        if let IndexState::Current { stale, .. } = loaded.index {
            if stale >= COMPACT_AFTER
                && self.writer.is_some()
                && !self.compacting.swap(true, Ordering::SeqCst)
            {
                let this = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = this.compact().await {
                        tracing::warn!(host = %this.host, error = %format!("{e:#}"), "could not rewrite the status index; the next load retries");
                    }
                    this.compacting.store(false, Ordering::SeqCst);
                });
            }
        }
        Ok(loaded.status)
    }

    /// Rewrites the index from the records when it lags them. Returns whether it did.
    pub async fn compact(&self) -> Result<bool, StatusError> {
        let _guard = self.lock.lock().await;
        let loaded = self.load_raw().await?;
        let IndexState::Current { version, stale } = loaded.index else {
            return Ok(false);
        };
        if stale == 0 && version.is_some() {
            return Ok(false);
        }
        let index = Status {
            generation: loaded.status.generation + 1,
            copies: loaded.status.copies,
            ..Status::default()
        };
        self.write_index(&index, version.as_ref()).await?;
        tracing::debug!(host = %self.host, copies = index.copies.len(), "status index rewritten");
        Ok(true)
    }

    async fn write_index(
        &self,
        index: &Status,
        expect: Option<&Version>,
    ) -> Result<(), StatusError> {
        match self
            .dest
            .write_small_if(&self.layout.index(), Bytes::from(index.encode()), expect)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind == ErrorKind::Conflict => Err(self.concurrent()),
            Err(e) => Err(e.into()),
        }
    }

    async fn load_raw(&self) -> Result<Loaded, StatusError> {
        let read = self.dest.read_small_versioned(&self.layout.index()).await?;
        let (index, version, damaged) = match read {
            None => (None, None, None),
            Some((bytes, version)) => match Status::decode_versioned(&bytes) {
                Ok((s, 1)) => {
                    return Ok(Loaded {
                        status: s,
                        index: IndexState::Legacy { bytes, version },
                    })
                }
                Ok((s, _)) => (Some(s), Some(version), None),
                Err(e @ StatusError::Newer(_)) => return Err(e),
                Err(e) => (None, Some(version), Some(e)),
            },
        };
        let objects: Vec<String> = self
            .dest
            .list(&self.layout.records_prefix())
            .map_ok(|o| o.key)
            .try_collect()
            .await?;
        if index.is_none() && objects.is_empty() {
            // Never written in version 2's layout: version 1's previous generation,
            // if any (its current file damaged or gone), else a new host.
            return self.load_prev(damaged).await;
        }
        if let Some(e) = &damaged {
            tracing::error!(key = %self.layout.index(), error = %e, "status index damaged; rebuilding it from the copies' manifests");
        }
        let from_index = index.is_some();
        let generation = index.as_ref().map_or(0, |s| s.generation);
        let mut indexed: HashMap<String, CopyMeta> = index
            .map(|s| s.copies.into_iter().map(|c| (c.key.clone(), c)).collect())
            .unwrap_or_default();
        let mut copies = Vec::new();
        let mut unindexed = Vec::new();
        let mut pending_keys = Vec::new();
        let mut local_gone = HashSet::new();
        for object in &objects {
            match self.layout.parse(object) {
                Some((Record::Copy, key)) => match indexed.remove(&key) {
                    Some(c) => copies.push(c),
                    None => unindexed.push((object.clone(), key)),
                },
                Some((Record::Pending, key)) => pending_keys.push((object.clone(), key)),
                Some((Record::LocalGone, key)) => {
                    local_gone.insert(key);
                }
                None => {}
            }
        }
        // Index entries without a manifest: copies retention deleted since.
        let mut stale = indexed.len() + unindexed.len();
        if !from_index {
            stale = stale.max(1);
        }
        let mut problems = Vec::new();
        let read: Vec<(String, Result<CopyMeta, StatusError>)> =
            futures::stream::iter(unindexed.into_iter().map(|(object, key)| async move {
                let got = match self.dest.read_small(&object).await {
                    Ok(Some(b)) => layout::decode_manifest(&b, &key),
                    // Deleted between the listing and the read.
                    Ok(None) => return None,
                    Err(e) => Err(e.into()),
                };
                Some((object, got))
            }))
            .buffered(READ_AHEAD)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        for (object, got) in read {
            match got {
                Ok(c) => copies.push(c),
                Err(e @ (StatusError::Destination(_) | StatusError::Newer(_))) => return Err(e),
                Err(e) => {
                    tracing::error!(key = %object, error = %e, "a copy's manifest is damaged; the copy is not listed");
                    problems.push(format!("{object}: {e}; its copy is not listed"));
                }
            }
        }
        for c in &mut copies {
            if local_gone.contains(&c.key) {
                c.local = None;
            }
        }
        copies.sort_by(|a, b| a.finished.cmp(&b.finished).then(a.key.cmp(&b.key)));
        let mut pending = Vec::new();
        for (object, key) in pending_keys {
            if let Some(b) = self.dest.read_small(&object).await? {
                pending.push(layout::decode_pending(&b, &key));
            }
        }
        let writer = self.read_writer().await?.map(|(w, _)| w);
        Ok(Loaded {
            status: Status {
                generation,
                copies,
                pending,
                writer,
                problems,
            },
            index: IndexState::Current { version, stale },
        })
    }

    /// Version 1's fallback: its previous generation when the current file is damaged
    /// or gone.
    async fn load_prev(&self, damaged: Option<StatusError>) -> Result<Loaded, StatusError> {
        let new = |status| Loaded {
            status,
            index: IndexState::Current {
                version: None,
                stale: 0,
            },
        };
        let prev = self.dest.read_small(&self.layout.prev()).await?;
        match (damaged, prev) {
            (None, None) => Ok(new(Status::default())),
            (damaged, Some(p)) => match Status::decode(&p) {
                Ok(s) => {
                    if let Some(e) = damaged {
                        tracing::error!(key = %self.layout.index(), error = %e, "status damaged, using the previous generation");
                    }
                    // Read as version 1: the next write migrates it.
                    Ok(Loaded {
                        status: s,
                        index: IndexState::Legacy {
                            bytes: p,
                            version: Version::Unknown,
                        },
                    })
                }
                Err(e) => Err(e),
            },
            (Some(e), None) => Err(e),
        }
    }

    async fn read_writer(&self) -> Result<Option<(Writer, Version)>, StatusError> {
        let Some((bytes, version)) = self
            .dest
            .read_small_versioned(&self.layout.writer())
            .await?
        else {
            return Ok(None);
        };
        match serde_json::from_slice::<Writer>(&bytes) {
            Ok(w) => Ok(Some((w, version))),
            Err(e) => Err(StatusError::Corrupt(format!(
                "{} is damaged ({e}): `twindbctl takeover` writes it again",
                self.layout.writer()
            ))),
        }
    }

    /// Makes this daemon the status's writer even though another one wrote it last:
    /// `twindbctl takeover`, when that daemon is gone for good.
    pub async fn take_over(&self) -> Result<Option<Writer>, StatusError> {
        let before = self.load_own().await?.writer;
        self.prepare(true).await?;
        Ok(before)
    }

    /// Whether this daemon may write the status: no other daemon wrote it last. Reads
    /// only: a daemon that never stores anything never writes the status.
    pub async fn check_writer(&self) -> Result<(), StatusError> {
        let writer = match self.read_writer().await {
            Ok(Some((w, _))) => Some(w),
            Ok(None) => self.load_raw().await?.status.writer,
            Err(e) => return Err(e),
        };
        self.refuse_other(writer.as_ref())
    }

    fn refuse_other(&self, writer: Option<&Writer>) -> Result<(), StatusError> {
        match (&self.writer, writer) {
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

    fn concurrent(&self) -> StatusError {
        StatusError::Concurrent {
            host: self.host.clone(),
            destination: self.dest.name(),
        }
    }

    /// Before any write: the status in version 2's layout, and this daemon its writer.
    async fn prepare(&self, take_over: bool) -> Result<(), StatusError> {
        if !self.current.load(Ordering::SeqCst) {
            let _guard = self.lock.lock().await;
            if !self.current.load(Ordering::SeqCst) {
                self.migrate(take_over).await?;
                self.current.store(true, Ordering::SeqCst);
            }
        }
        self.claim(take_over).await
    }

    /// This daemon as the writer: refused when another one is (unless taking over);
    /// written when absent or when this daemon restarted (its pid changed). One read,
    /// and a write once per daemon life.
    async fn claim(&self, take_over: bool) -> Result<(), StatusError> {
        let Some(me) = &self.writer else {
            return Ok(());
        };
        let _guard = self.claim_lock.lock().await;
        let current = self.read_writer().await;
        let (expect, now) = match current {
            Ok(Some((w, v))) => (Some(v), Some(w)),
            Ok(None) => (None, None),
            // A damaged writer object is rewritten only by a takeover.
            Err(e) if !take_over => return Err(e),
            Err(_) => (Some(Version::Unknown), None),
        };
        if !take_over {
            self.refuse_other(now.as_ref())?;
        }
        if now
            .as_ref()
            .is_some_and(|w| w.who == *me && w.pid == std::process::id())
        {
            return Ok(());
        }
        let mine = Writer {
            who: me.clone(),
            pid: std::process::id(),
            at: Utc::now(),
        };
        let mut body = serde_json::to_vec(&mine).expect("a writer serializes");
        body.push(b'\n');
        match self
            .dest
            .write_small_if(&self.layout.writer(), Bytes::from(body), expect.as_ref())
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind == ErrorKind::Conflict => Err(self.concurrent()),
            Err(e) => Err(e.into()),
        }
    }

    /// A version 1 status (one document holding everything) becomes version 2's
    /// objects: the writer, a manifest per copy and a marker per pending object, then
    /// the index over the old document. Cut off half way, the old document still
    /// stands and the next write migrates again.
    async fn migrate(&self, take_over: bool) -> Result<(), StatusError> {
        let loaded = self.load_raw().await?;
        let IndexState::Legacy { bytes, version } = loaded.index else {
            return Ok(());
        };
        let old = loaded.status;
        if !take_over {
            self.refuse_other(old.writer.as_ref())?;
        }
        if let (Some(w), Ok(None)) = (&old.writer, self.read_writer().await) {
            let mut body = serde_json::to_vec(w).expect("a writer serializes");
            body.push(b'\n');
            self.dest
                .write_small(&self.layout.writer(), Bytes::from(body))
                .await?;
        }
        for c in &old.copies {
            let name = self.layout.record(Record::Copy, &c.key)?;
            self.dest
                .write_small(&name, Bytes::from(layout::encode_manifest(c)))
                .await?;
        }
        for p in &old.pending {
            // Another host's key was never ours to delete: nothing to keep.
            if p.key.starts_with(&format!("{}/", self.host)) {
                self.write_pending(p).await?;
            }
        }
        // Kept for a look by hand; a twindb that reads only version 1 finds version 2
        // in the index and refuses to write rather than lose records.
        self.dest.write_small(&self.layout.prev(), bytes).await?;
        let index = Status {
            generation: old.generation + 1,
            copies: old.copies,
            ..Status::default()
        };
        // Only over the document read (`Unknown` when it came from `.prev`, the
        // current file gone or damaged: then over whatever is there).
        self.write_index(&index, Some(&version)).await?;
        tracing::info!(host = %self.host, copies = index.copies.len(), "status migrated to format version 2 (a record per copy)");
        Ok(())
    }
}
