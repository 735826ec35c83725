//! What twindbd remembers on this host, in `state_dir`: the lock that keeps a second
//! daemon out, the last run of each run type (for catch-up and `status`) and a bounded
//! job history.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use twindb_proto::{CopyKind, JobInfo, JobKind, JobState, RunType};

/// Jobs kept in the history file.
pub const HISTORY: usize = 200;

/// Held for the daemon's lifetime; the OS releases it if the process dies.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> anyhow::Result<StateLock> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| anyhow::anyhow!("cannot create state_dir {}: {e}", state_dir.display()))?;
        let path = state_dir.join("twindbd.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        if file.try_lock().is_err() {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "another twindbd (pid {}) is running with state_dir {}; stop it first",
                holder.trim(),
                state_dir.display()
            );
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(StateLock { _file: file })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub last_run: Option<DateTime<Utc>>,
    pub last_state: Option<JobState>,
    pub last_duration_seconds: Option<f64>,
    pub last_size: Option<u64>,
    pub last_error: Option<String>,
    /// Start and end of the last run that succeeded.
    #[serde(default)]
    pub last_success: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_success_finished: Option<DateTime<Utc>>,
    /// Bytes read from the source by the last run.
    #[serde(default)]
    pub last_read: Option<u64>,
}

impl RunRecord {
    fn record(&mut self, job: &JobInfo) {
        self.last_run = job.started_at.or(Some(job.queued_at));
        self.last_state = Some(job.state);
        self.last_duration_seconds = match (job.started_at, job.finished_at) {
            (Some(a), Some(b)) => Some((b - a).num_milliseconds() as f64 / 1000.0),
            _ => None,
        };
        self.last_size = Some(job.progress.bytes_out);
        self.last_read = Some(job.progress.bytes_in);
        self.last_error = job.error.clone();
        if job.state == JobState::Succeeded {
            self.last_success = self.last_run;
            self.last_success_finished = job.finished_at;
        }
    }
}

/// The last runs of one kind of copy and run type (binlogs have no run type); what
/// the metrics report per source kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindRecord {
    pub kind: CopyKind,
    pub run_type: Option<RunType>,
    #[serde(flatten)]
    pub record: RunRecord,
}

/// The kind of copy a backup job makes.
pub fn copy_kind(job: JobKind) -> Option<CopyKind> {
    match job {
        JobKind::BackupFiles => Some(CopyKind::Files),
        JobKind::BackupMysql => Some(CopyKind::Mysql),
        JobKind::BackupBinlog => Some(CopyKind::Binlog),
        JobKind::Restore | JobKind::Verify | JobKind::Clone => None,
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StateFile {
    #[serde(default)]
    run_types: BTreeMap<RunType, RunRecord>,
    #[serde(default)]
    kinds: Vec<KindRecord>,
    #[serde(default)]
    jobs: VecDeque<JobInfo>,
    /// The last restore drill that finished: kept apart from the bounded history, so
    /// that `status` shows it however many jobs ran since.
    #[serde(default)]
    last_drill: Option<JobInfo>,
    /// When a verify of a copy of each run type last succeeded.
    #[serde(default)]
    verified: Vec<Verified>,
}

/// The last successful verify of copies of one run type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    pub run_type: Option<RunType>,
    pub at: DateTime<Utc>,
}

#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    state: Mutex<StateFile>,
}

impl StateStore {
    /// Loads `state.json`; a damaged file is kept aside and replaced, since it only
    /// holds history. Jobs recorded as queued or running belong to a twindbd that
    /// stopped without ending them (killed, crashed, the host lost power): they are
    /// recorded as failed, or cancelled when they never started.
    pub fn open(state_dir: &Path) -> StateStore {
        let path = state_dir.join("state.json");
        let state: StateFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "state file damaged, starting a new one");
                let _ = std::fs::rename(&path, path.with_extension("json.damaged"));
                StateFile::default()
            }),
            Err(_) => StateFile::default(),
        };
        let unfinished: Vec<JobInfo> = state
            .jobs
            .iter()
            .filter(|j| !j.state.is_final())
            .cloned()
            .collect();
        let store = StateStore {
            path,
            state: Mutex::new(state),
        };
        for mut job in unfinished {
            let started = job.state == JobState::Running;
            job.state = if started {
                JobState::Failed
            } else {
                JobState::Cancelled
            };
            job.error = Some(if started {
                "twindbd stopped while it ran".into()
            } else {
                "twindbd stopped before it ran".into()
            });
            job.finished_at = Some(Utc::now());
            tracing::warn!(job = job.id, title = %job.title, "{}", job.error.as_deref().unwrap_or_default());
            store.record_job(&job, started && copy_kind(job.kind).is_some());
        }
        store
    }

    pub fn run_record(&self, run_type: RunType) -> RunRecord {
        self.lock()
            .run_types
            .get(&run_type)
            .cloned()
            .unwrap_or_default()
    }

    pub fn kind_records(&self) -> Vec<KindRecord> {
        self.lock().kinds.clone()
    }

    pub fn jobs(&self) -> Vec<JobInfo> {
        self.lock().jobs.iter().cloned().collect()
    }

    pub fn verified(&self) -> Vec<Verified> {
        self.lock().verified.clone()
    }

    pub fn last_drill(&self) -> Option<JobInfo> {
        self.lock().last_drill.clone()
    }

    pub fn max_job_id(&self) -> u64 {
        self.lock().jobs.iter().map(|j| j.id).max().unwrap_or(0)
    }

    /// Records a finished job; backups also update their run type's record.
    pub fn record_job(&self, job: &JobInfo, backup: bool) {
        let mut s = self.lock();
        if backup {
            if let Some(rt) = job.run_type {
                s.run_types.entry(rt).or_default().record(job);
            }
            if let Some(kind) = copy_kind(job.kind) {
                let i = match s
                    .kinds
                    .iter()
                    .position(|k| k.kind == kind && k.run_type == job.run_type)
                {
                    Some(i) => i,
                    None => {
                        s.kinds.push(KindRecord {
                            kind,
                            run_type: job.run_type,
                            record: RunRecord::default(),
                        });
                        s.kinds.len() - 1
                    }
                };
                s.kinds[i].record.record(job);
            }
        }
        if job.kind == JobKind::Verify && job.drill.is_empty() && job.state == JobState::Succeeded {
            let v = Verified {
                run_type: job.run_type,
                at: job.finished_at.unwrap_or_else(Utc::now),
            };
            match s.verified.iter_mut().find(|v| v.run_type == job.run_type) {
                Some(old) => *old = v,
                None => s.verified.push(v),
            }
        }
        if !job.drill.is_empty() && job.state.is_final() {
            s.last_drill = Some(job.clone());
        }
        s.jobs.retain(|j| j.id != job.id);
        s.jobs.push_back(job.clone());
        while s.jobs.len() > HISTORY {
            s.jobs.pop_front();
        }
        if let Err(e) = write_atomically(
            &self.path,
            &serde_json::to_vec_pretty(&*s).expect("state serializes"),
        ) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot save the job history");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StateFile> {
        self.state.lock().expect("state lock")
    }
}

/// What a job makes outside its copies and removes when it ends: restore staging
/// beside `--dst`, a throwaway server's folder. Recorded in `state_dir/scratch/` before
/// it is made and forgotten once it is gone, so that the start after a crash (kill -9,
/// power loss) removes what the job could not. Folders inside state_dir itself
/// (backup tool work folders, verify datadirs) need no record: see
/// [`remove_leftovers`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Leftover {
    /// One folder.
    Path { path: PathBuf },
    /// Every entry of `dir` whose name starts with `prefix` and ends with `suffix`:
    /// a restore's staging folder and its sibling scratch folders.
    Siblings {
        dir: PathBuf,
        prefix: String,
        suffix: String,
    },
}

/// A [`Leftover`]'s record; dropped (the record removed) after the folder is gone.
#[derive(Debug)]
pub struct ScratchRecord {
    file: PathBuf,
}

impl ScratchRecord {
    pub fn new(state_dir: &Path, what: &Leftover) -> io::Result<ScratchRecord> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = state_dir.join("scratch");
        std::fs::create_dir_all(&dir)?;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = dir.join(format!("{}-{n}.json", std::process::id()));
        write_atomically(
            &file,
            &serde_json::to_vec(what).expect("leftover serializes"),
        )?;
        Ok(ScratchRecord { file })
    }
}

impl Drop for ScratchRecord {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Names of the folders jobs make inside state_dir (MySQL backup tool work folders,
/// verify scratch datadirs).
pub const STATE_DIR_SCRATCH: &[&str] = &["twindb-xtrabackup-", "verify-"];

/// Removes what jobs of an earlier life left: the recorded [`Leftover`]s and the
/// scratch folders inside state_dir. Call at start, holding the state_dir lock and
/// before any job runs. Returns what was removed.
pub fn remove_leftovers(state_dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let mut remove = |p: PathBuf| {
        let gone = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(_) => return,
        };
        match gone {
            Ok(()) => removed.push(p),
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove what an earlier twindbd left")
            }
        }
    };
    let entries = |dir: &Path| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (name, path) in entries(state_dir) {
        if STATE_DIR_SCRATCH.iter().any(|p| name.starts_with(p)) {
            remove(path);
        }
    }
    for (_, record) in entries(&state_dir.join("scratch")) {
        let what: Option<Leftover> = std::fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match what {
            Some(Leftover::Path { path }) if path.parent().is_some() => {
                stop_server_in(&path);
                remove(path);
            }
            // Only twindb's own names: a record never widens into someone else's files.
            Some(Leftover::Siblings {
                dir,
                prefix,
                suffix,
            }) if prefix.contains(".twindb-") => {
                for (name, path) in entries(&dir) {
                    if name.starts_with(&prefix) && name.ends_with(&suffix) {
                        remove(path);
                    }
                }
            }
            _ => {}
        }
        let _ = std::fs::remove_file(&record);
    }
    removed
}

/// A throwaway server whose twindbd was killed goes on running: its pid file is in its
/// folder. It is stopped (SIGKILL: its datadir is scratch) when that process still runs
/// with the folder in its command line, so a recycled pid is never hit.
fn stop_server_in(dir: &Path) {
    let Some(pid) = std::fs::read_to_string(dir.join("pid"))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
        tracing::warn!(pid, dir = %dir.display(), "stopping a throwaway server an earlier twindbd left running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// This daemon's id as the writer of its host's status: random, made at the first start
/// with this state_dir (`state_dir/daemon-id`).
pub fn daemon_id(state_dir: &Path) -> io::Result<String> {
    let path = state_dir.join("daemon-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
        _ => {
            let mut bytes = [0u8; 16];
            std::io::Read::read_exact(&mut File::open("/dev/urandom")?, &mut bytes)?;
            let id = hex::encode(bytes);
            write_atomically(&path, id.as_bytes())?;
            id
        }
    };
    Ok(id)
}

/// Temp file, fsync, rename: readers see the old or the new content, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, state: JobState) -> JobInfo {
        JobInfo {
            id,
            kind: JobKind::BackupFiles,
            run_type: Some(RunType::Daily),
            title: "daily backup files".into(),
            state,
            queued_at: Utc::now(),
            started_at: (state != JobState::Queued).then(Utc::now),
            finished_at: None,
            progress: Default::default(),
            error: None,
            warnings: vec![],
            copies: vec![],
            message: None,
            verify: None,
            phases: Vec::new(),
            drill: vec![],
            excluded: vec![],
        }
    }

    /// The last successful verify per run type is kept across a restart (it feeds
    /// `twindb_last_verify_success_timestamp_seconds`); a failed one or a drill does
    /// not move it.
    #[test]
    fn the_last_successful_verify_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let verify = |id, state, drill: bool| {
            let mut j = job(id, state);
            j.kind = JobKind::Verify;
            j.finished_at = Some(Utc::now());
            if drill {
                j.drill = vec![twindb_proto::VerifyReport {
                    copy: "k".into(),
                    restore_seconds: 1.0,
                    success: true,
                    error: None,
                    kind: CopyKind::Mysql,
                    rto_seconds: Some(1.0),
                    checks: vec![],
                }];
            }
            j
        };
        let first = verify(1, JobState::Succeeded, false);
        {
            let store = StateStore::open(dir.path());
            store.record_job(&first, false);
            store.record_job(&verify(2, JobState::Failed, false), false);
            store.record_job(&verify(3, JobState::Succeeded, true), false);
        }
        let store = StateStore::open(dir.path());
        assert_eq!(
            store.verified(),
            vec![Verified {
                run_type: Some(RunType::Daily),
                at: first.finished_at.unwrap()
            }]
        );
    }

    /// A job that was running when twindbd died is recorded as failed at the next
    /// start (a queued one as cancelled), and its id is never given again.
    #[test]
    fn jobs_a_crash_interrupted_are_recorded_and_their_ids_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StateStore::open(dir.path());
            store.record_job(&job(7, JobState::Running), false);
            store.record_job(&job(8, JobState::Queued), false);
        }
        let store = StateStore::open(dir.path());
        assert_eq!(store.max_job_id(), 8);
        let jobs = store.jobs();
        let by_id = |id| jobs.iter().find(|j| j.id == id).unwrap();
        assert_eq!(by_id(7).state, JobState::Failed);
        assert_eq!(
            by_id(7).error.as_deref(),
            Some("twindbd stopped while it ran")
        );
        assert_eq!(by_id(8).state, JobState::Cancelled);
        let rec = store.run_record(RunType::Daily);
        assert_eq!(rec.last_state, Some(JobState::Failed));
    }

    /// What a killed job left (a restore's staging and scratch folders, a throwaway
    /// server's folder, a backup tool's work folder) is removed at the next start, and
    /// nothing else is.
    #[test]
    fn leftovers_of_a_killed_job_are_removed_at_start() {
        let state = tempfile::tempdir().unwrap();
        let place = tempfile::tempdir().unwrap();
        let mk = |p: &Path| std::fs::create_dir_all(p.join("inside")).unwrap();
        let staging = place.path().join(".dst.twindb-partial.42");
        let scratch = place.path().join(".dst.twindb-incremental.42");
        let other_pid = place.path().join(".dst.twindb-partial.43");
        let unrelated = place.path().join("dst");
        let run = place.path().join("twv1234");
        let work = state.path().join("twindb-xtrabackup-abc");
        for p in [&staging, &scratch, &other_pid, &unrelated, &run, &work] {
            mk(p);
        }
        let siblings = Leftover::Siblings {
            dir: place.path().to_path_buf(),
            prefix: ".dst.twindb-".into(),
            suffix: ".42".into(),
        };
        std::mem::forget(ScratchRecord::new(state.path(), &siblings).unwrap());
        std::mem::forget(
            ScratchRecord::new(state.path(), &Leftover::Path { path: run.clone() }).unwrap(),
        );
        // A job that ended: its record is gone, nothing of its is touched.
        drop(
            ScratchRecord::new(
                state.path(),
                &Leftover::Path {
                    path: unrelated.clone(),
                },
            )
            .unwrap(),
        );

        let mut removed = remove_leftovers(state.path());
        removed.sort();
        let mut want = vec![staging, scratch, run, work];
        want.sort();
        assert_eq!(removed, want);
        assert!(other_pid.exists() && unrelated.exists());
        assert!(remove_leftovers(state.path()).is_empty());
    }

    #[test]
    fn a_second_lock_on_the_same_state_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another twindbd"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        StateLock::acquire(dir.path()).unwrap();
    }
}
