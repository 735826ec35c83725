//! Reading and writing one host's status on its destination: conditional writes (one
//! writer per host), the previous generation kept, the pending list and its sweep,
//! and the readers that hold retention back.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use tokio::sync::Mutex;

use super::{twindb, CopyMeta, Pending, Status, StatusError, Writer, WriterId};
use crate::destination::{Destination, DestinationError, Local};

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
