//! The job queue. Scheduler and API only enqueue; one worker per lane runs the jobs.
//!
//! - A lane is a [`JobKind`]: files, mysql and binlog backups and restores each have
//!   their own, so a binlog copy never waits behind a long backup of another kind,
//!   and two backups of the same kind never overlap.
//! - A backup of a run type that is already queued (not yet running) in its lane is
//!   coalesced: the caller gets the queued job.
//! - Each backup has a timeout of half its run type's period (as TwinDB meant it);
//!   binlog copies, which have no run type, get the hourly one (30 min);
//!   `[daemon] backup_timeout` replaces both. A job that times out is cancelled,
//!   cleans up and fails with "timed out".
//! - A backup that succeeds applies retention to the copies of its kind; one that
//!   fails does not.
//! - Every job start and end is published (see [`Queue::subscribe`]) for metrics,
//!   notifications and systemd's STATUS line.
//! - Cancel marks a queued job cancelled at once, and makes a running job stop at its
//!   next chunk and its programs stop (see [`crate::process`]); either way no partial
//!   copy is left.
//! - A cancelled (or timed out) job that has not ended [`STOP_LIMIT`] later is recorded
//!   as ended anyway and its lane freed: what it still runs (a thread blocked in a
//!   read of a hung mount) is left behind, and can commit nothing.
//! - At shutdown every queued and running job is cancelled and the workers are awaited,
//!   so shutdown takes at most about [`STOP_LIMIT`].
//!
//! Nothing here takes a file lock: lanes are in-memory channels, so the API and the
//! scheduler never block on a running job.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;
use twindb_proto::{
    CloneRequest, CopyKind, JobInfo, JobKind, JobState, Progress, RestoreRequest, RunType,
    VerifyRequest,
};

mod execute;

use self::execute::execute;
use crate::engine::{Current, Engine, JobCtx};
use crate::state::{copy_kind, StateStore, HISTORY};

/// What a job does.
#[derive(Debug, Clone)]
pub enum Work {
    Backup(RunType),
    /// Copy the closed binary logs; they belong to no run type.
    Binlog,
    Restore(RestoreRequest),
    Verify(VerifyRequest),
    Clone(CloneRequest),
}

impl Work {
    fn is_backup(&self) -> bool {
        matches!(self, Work::Backup(_) | Work::Binlog)
    }
}

/// A job that started or ended, as published to subscribers.
#[derive(Debug, Clone)]
pub struct JobUpdate {
    pub info: JobInfo,
    /// What the job backs up or restores.
    pub copy_kind: CopyKind,
}

pub struct Job {
    pub id: u64,
    pub kind: JobKind,
    pub work: Work,
    pub ctx: JobCtx,
    info: watch::Sender<JobInfo>,
    /// A restore's or verify's hold on the copies, from queued to finished: retention
    /// deletes nothing meanwhile.
    reading: Mutex<Option<crate::status::Reading>>,
    timed_out: AtomicBool,
}

impl Job {
    /// What the job backs up or restores.
    pub fn copy_kind(&self) -> CopyKind {
        match &self.work {
            Work::Restore(req) => req.kind,
            Work::Verify(_) | Work::Clone(_) => CopyKind::Mysql,
            _ => copy_kind(self.kind).unwrap_or(CopyKind::Files),
        }
    }

    pub fn info(&self) -> JobInfo {
        self.info.borrow().clone()
    }

    /// Every change of the job's state and progress.
    pub fn subscribe(&self) -> watch::Receiver<JobInfo> {
        self.info.subscribe()
    }

    fn update(&self, f: impl FnOnce(&mut JobInfo)) {
        self.info.send_modify(f);
    }

    fn refresh_progress(&self, rate: f64) {
        let (bytes_in, bytes_out) = self.ctx.bytes();
        let phase = self.ctx.phase();
        self.update(|i| {
            i.progress = Progress {
                phase,
                bytes_in,
                bytes_out,
                rate,
            };
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("twindbd is shutting down")]
    ShuttingDown,
    #[error("no job {0}")]
    NoSuchJob(u64),
    #[error("job {0} has already finished")]
    Finished(u64),
}

pub struct Queue {
    engine: Arc<Current>,
    state: Arc<StateStore>,
    jobs: Mutex<Vec<Arc<Job>>>,
    lanes: Mutex<Option<HashMap<JobKind, mpsc::UnboundedSender<Arc<Job>>>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    next_id: AtomicU64,
    events: broadcast::Sender<JobUpdate>,
}

/// How long a cancelled job gets to clean up before it is recorded as ended anyway.
/// More than the pipeline's own limit ([`crate::pipeline::STOP_LIMIT`], twice: the
/// put, then the stages), so a backup normally cleans up (Galera resync included).
pub const STOP_LIMIT: Duration = Duration::from_secs(20);

/// A job that did not end within [`STOP_LIMIT`] of its cancel.
#[derive(Debug, thiserror::Error)]
#[error("it did not stop within {} s; what it still ran was left behind", STOP_LIMIT.as_secs())]
struct LeftBehind;

impl Queue {
    /// Creates the queue and starts one worker per lane.
    pub fn start(engine: Arc<Current>, state: Arc<StateStore>) -> Arc<Queue> {
        let next_id = state.max_job_id() + 1;
        let queue = Arc::new(Queue {
            engine,
            state,
            jobs: Mutex::new(Vec::new()),
            lanes: Mutex::new(None),
            workers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(next_id),
            events: broadcast::channel(1024).0,
        });
        let mut lanes = HashMap::new();
        let mut workers = Vec::new();
        for lane in JobKind::ALL {
            let (tx, rx) = mpsc::unbounded_channel();
            lanes.insert(lane, tx);
            workers.push(tokio::spawn(worker(queue.clone(), rx)));
        }
        *queue.lanes.lock().expect("lanes lock") = Some(lanes);
        *queue.workers.lock().expect("workers lock") = workers;
        queue
    }

    /// Job starts and ends, in order. A subscriber that falls more than 1024 events
    /// behind loses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<JobUpdate> {
        self.events.subscribe()
    }

    fn publish(&self, job: &Job) {
        let _ = self.events.send(JobUpdate {
            info: job.info(),
            copy_kind: job.copy_kind(),
        });
    }

    /// Whether every lane's worker is alive (for the systemd watchdog).
    pub fn healthy(&self) -> bool {
        self.workers
            .lock()
            .expect("workers lock")
            .iter()
            .all(|w| !w.is_finished())
    }

    /// The engine new jobs get.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.get()
    }

    /// Enqueues a backup of `run_type` of every configured source (one job per kind);
    /// what the scheduler and `twindbctl run` do.
    pub fn enqueue_run(&self, run_type: RunType) -> Result<Vec<(Arc<Job>, bool)>, QueueError> {
        let engine = self.engine.get();
        let mut kinds = Vec::new();
        if !engine.config.source.backup_dirs.is_empty() {
            kinds.push(JobKind::BackupFiles);
        }
        if engine.config.mysql.is_some() {
            kinds.push(JobKind::BackupMysql);
        }
        let mut jobs = kinds
            .into_iter()
            .map(|k| self.enqueue_backup(k, run_type))
            .collect::<Result<Vec<_>, _>>()?;
        // TwinDB copied binlogs on every run.
        if engine.config.mysql.is_some() {
            jobs.push(self.enqueue_binlog()?);
        }
        Ok(jobs)
    }

    pub fn enqueue_verify(&self, req: VerifyRequest) -> Result<Arc<Job>, QueueError> {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        let title = if req.drill {
            "restore drill".to_string()
        } else {
            format!("verify mysql {}", req.copy.as_deref().unwrap_or("latest"))
        };
        let job = self.new_job(JobKind::Verify, None, title, Work::Verify(req));
        self.submit(&mut jobs, job.clone())?;
        Ok(job)
    }

    /// Enqueues a restore drill, unless one is already queued or running.
    pub fn enqueue_drill(&self) -> Result<Arc<Job>, QueueError> {
        if let Some(job) =
            self.jobs.lock().expect("jobs lock").iter().find(|j| {
                matches!(&j.work, Work::Verify(r) if r.drill) && !j.info().state.is_final()
            })
        {
            return Ok(job.clone());
        }
        self.enqueue_verify(VerifyRequest {
            copy: None,
            dst: None,
            drill: true,
        })
    }

    /// Enqueues a binlog copy, or returns the one already queued.
    pub fn enqueue_binlog(&self) -> Result<(Arc<Job>, bool), QueueError> {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        if let Some(j) = jobs
            .iter()
            .find(|j| j.kind == JobKind::BackupBinlog && j.info().state == JobState::Queued)
        {
            return Ok((j.clone(), true));
        }
        let job = self.new_job(
            JobKind::BackupBinlog,
            None,
            JobKind::BackupBinlog.to_string(),
            Work::Binlog,
        );
        self.submit(&mut jobs, job.clone())?;
        Ok((job, false))
    }

    /// When the last backup of `run_type` (any kind) started: a live job's start (or
    /// queue time, while it waits), else the recorded last run.
    pub fn last_run_start(&self, run_type: RunType) -> Option<DateTime<Utc>> {
        self.last_start(
            |j| matches!(j.work, Work::Backup(r) if r == run_type),
            self.state.run_record(run_type).last_run,
        )
    }

    /// Same as [`Queue::last_run_start`] for binlog copies.
    pub fn last_binlog_start(&self) -> Option<DateTime<Utc>> {
        let recorded = self
            .state
            .kind_records()
            .into_iter()
            .find(|k| k.kind == CopyKind::Binlog)
            .and_then(|k| k.record.last_run);
        self.last_start(|j| matches!(j.work, Work::Binlog), recorded)
    }

    fn last_start(
        &self,
        matches: impl Fn(&Job) -> bool,
        recorded: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let jobs = self.jobs.lock().expect("jobs lock");
        jobs.iter()
            .filter(|j| matches(j))
            .map(|j| {
                let i = j.info();
                i.started_at.unwrap_or(i.queued_at)
            })
            .chain(recorded)
            .max()
    }

    /// Enqueues a backup of `kind` for `run_type`, or returns the identical queued job.
    pub fn enqueue_backup(
        &self,
        kind: JobKind,
        run_type: RunType,
    ) -> Result<(Arc<Job>, bool), QueueError> {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        if let Some(j) = jobs.iter().find(|j| {
            j.kind == kind
                && matches!(j.work, Work::Backup(r) if r == run_type)
                && j.info().state == JobState::Queued
        }) {
            return Ok((j.clone(), true));
        }
        let title = format!("{run_type} {}", kind);
        let job = self.new_job(kind, Some(run_type), title, Work::Backup(run_type));
        self.submit(&mut jobs, job.clone())?;
        Ok((job, false))
    }

    pub fn enqueue_clone(&self, req: CloneRequest) -> Result<Arc<Job>, QueueError> {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        let title = format!("clone mysql {} to {}", req.source, req.destination);
        let job = self.new_job(JobKind::Clone, None, title, Work::Clone(req));
        self.submit(&mut jobs, job.clone())?;
        Ok(job)
    }

    pub fn enqueue_restore(&self, req: RestoreRequest) -> Result<Arc<Job>, QueueError> {
        let mut jobs = self.jobs.lock().expect("jobs lock");
        let title = match &req.until {
            Some(t) => format!("restore {} to {t} into {}", req.kind, req.dst),
            None => format!("restore {} {} into {}", req.kind, req.copy, req.dst),
        };
        let job = self.new_job(JobKind::Restore, None, title, Work::Restore(req));
        self.submit(&mut jobs, job.clone())?;
        Ok(job)
    }

    fn new_job(
        &self,
        kind: JobKind,
        run_type: Option<RunType>,
        title: String,
        work: Work,
    ) -> Arc<Job> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let info = JobInfo {
            id,
            kind,
            run_type,
            title,
            state: JobState::Queued,
            queued_at: Utc::now(),
            started_at: None,
            finished_at: None,
            progress: Progress::default(),
            error: None,
            warnings: vec![],
            copies: vec![],
            message: None,
            verify: None,
            phases: Vec::new(),
            drill: vec![],
            excluded: vec![],
        };
        Arc::new(Job {
            id,
            kind,
            ctx: JobCtx::with_throttle(self.engine.get().throttle.clone()),
            info: watch::Sender::new(info),
            reading: Mutex::new(
                matches!(work, Work::Restore(_) | Work::Verify(_))
                    .then(|| self.engine.get().status.reading()),
            ),
            work,
            timed_out: AtomicBool::new(false),
        })
    }

    fn submit(&self, jobs: &mut Vec<Arc<Job>>, job: Arc<Job>) -> Result<(), QueueError> {
        let lanes = self.lanes.lock().expect("lanes lock");
        let lane = lanes
            .as_ref()
            .and_then(|l| l.get(&job.kind))
            .ok_or(QueueError::ShuttingDown)?;
        lane.send(job.clone())
            .map_err(|_| QueueError::ShuttingDown)?;
        tracing::info!(job = job.id, title = %job.info().title, "job queued");
        // Recorded now, not only at its end: its id is never given again, and a crash
        // before it ends leaves a record that the next start marks failed.
        self.state.record_job(&job.info(), false);
        jobs.push(job);
        // Keep every unfinished job and the most recent finished ones.
        let finished = jobs.iter().filter(|j| j.info().state.is_final()).count();
        if finished > HISTORY {
            let mut drop = finished - HISTORY;
            jobs.retain(|j| {
                if drop > 0 && j.info().state.is_final() {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        Ok(())
    }

    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .iter()
            .find(|j| j.id == id)
            .cloned()
    }

    /// A job's info, from memory or from the persisted history.
    pub fn info(&self, id: u64) -> Option<JobInfo> {
        self.get(id)
            .map(|j| j.info())
            .or_else(|| self.state.jobs().into_iter().find(|j| j.id == id))
    }

    /// Jobs of this daemon's life and the persisted history, newest last.
    pub fn list(&self) -> Vec<JobInfo> {
        let live: Vec<JobInfo> = self
            .jobs
            .lock()
            .expect("jobs lock")
            .iter()
            .map(|j| j.info())
            .collect();
        let mut all: Vec<JobInfo> = self
            .state
            .jobs()
            .into_iter()
            .filter(|h| !live.iter().any(|l| l.id == h.id))
            .collect();
        all.extend(live);
        all.sort_by_key(|j| j.id);
        all
    }

    pub fn active(&self) -> Vec<JobInfo> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .iter()
            .map(|j| j.info())
            .filter(|i| !i.state.is_final())
            .collect()
    }

    /// Queued and running restores that use the restore cache `cache`.
    pub fn restores_using_cache(&self, cache: &std::path::Path) -> Vec<u64> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .iter()
            .filter(|j| match &j.work {
                Work::Restore(r) => r
                    .cache
                    .as_deref()
                    .is_some_and(|c| std::path::Path::new(c) == cache),
                _ => false,
            })
            .filter(|j| !j.info().state.is_final())
            .map(|j| j.id)
            .collect()
    }

    pub fn cancel(&self, id: u64) -> Result<JobInfo, QueueError> {
        let job = self.get(id).ok_or(QueueError::NoSuchJob(id))?;
        let info = job.info();
        if info.state.is_final() {
            return Err(QueueError::Finished(id));
        }
        job.ctx.cancel.cancel();
        if info.state == JobState::Queued {
            self.finish(
                &job,
                JobState::Cancelled,
                Some("cancelled before it started".into()),
            );
        }
        tracing::info!(job = id, "cancel requested");
        Ok(job.info())
    }

    /// Cancels everything and waits for the workers to clean up.
    pub async fn shutdown(&self) {
        self.lanes.lock().expect("lanes lock").take();
        let jobs: Vec<Arc<Job>> = self.jobs.lock().expect("jobs lock").clone();
        for job in jobs {
            if !job.info().state.is_final() {
                let _ = self.cancel(job.id);
            }
        }
        let workers: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.workers.lock().expect("workers lock"));
        for w in workers {
            let _ = w.await;
        }
    }

    fn finish(&self, job: &Job, state: JobState, error: Option<String>) {
        if job.info().state.is_final() {
            return;
        }
        let mut warnings = job.ctx.warnings();
        let waited = job.ctx.throttled();
        if !waited.is_zero() {
            // Not a problem, but why the job took longer than its bytes needed.
            warnings.push(format!(
                "throttled: waited {:.1} s in all for the [daemon] max_upload_rate / max_read_rate limits",
                waited.as_secs_f64()
            ));
        }
        let phases = job.ctx.timings();
        let excluded = job.ctx.exclusions();
        job.update(|i| {
            i.state = state;
            i.finished_at = Some(Utc::now());
            i.error = error;
            i.warnings = warnings;
            i.phases = phases;
            i.excluded = excluded;
        });
        job.reading.lock().expect("reading lock").take();
        let info = job.info();
        self.state.record_job(&info, job.work.is_backup());
        // After the record: a metrics scrape that sees the event sees the record too.
        self.publish(job);
        match state {
            JobState::Succeeded => {
                tracing::info!(job = job.id, title = %info.title, "job succeeded")
            }
            _ => {
                tracing::error!(job = job.id, title = %info.title, error = info.error.as_deref().unwrap_or(""), "job {state}")
            }
        }
    }

    async fn run(&self, job: &Arc<Job>) {
        if job.ctx.cancel.is_cancelled() {
            self.finish(
                job,
                JobState::Cancelled,
                Some("cancelled before it started".into()),
            );
            return;
        }
        job.update(|i| {
            i.state = JobState::Running;
            i.started_at = Some(Utc::now());
        });
        self.state.record_job(&job.info(), false);
        self.publish(job);
        let ticker = tokio::spawn(tick_progress(job.clone()));
        // A reload between now and the job's end does not change what this job does.
        let engine = self.engine.get();
        let configured = engine.config.schedule.backup_timeout;
        let timeout = match job.work {
            Work::Backup(rt) => {
                Some(configured.unwrap_or(Duration::from_secs(rt.period_seconds() / 2)))
            }
            Work::Binlog => Some(
                configured.unwrap_or(Duration::from_secs(RunType::Hourly.period_seconds() / 2)),
            ),
            Work::Restore(_) | Work::Verify(_) | Work::Clone(_) => None,
        };
        let span = tracing::info_span!("job", id = job.id, kind = ?job.kind, run_type = ?job.info().run_type);
        let result = with_timeout(execute(&engine, job).instrument(span), timeout, job).await;
        ticker.abort();
        let (bytes_in, bytes_out) = job.ctx.bytes();
        job.update(|i| {
            i.progress.bytes_in = bytes_in;
            i.progress.bytes_out = bytes_out;
        });
        match result {
            Ok(outcome) => {
                job.update(|i| {
                    i.copies = outcome.copies;
                    i.message = outcome.message;
                    i.verify = outcome.verify;
                });
                self.finish(job, JobState::Succeeded, None);
            }
            Err(e) if job.timed_out.load(Ordering::SeqCst) => {
                let limit = timeout.unwrap_or_default().as_secs();
                self.finish(
                    job,
                    JobState::Failed,
                    Some(format!(
                        "timed out after {limit} s and was cancelled{}",
                        left_behind(&e)
                    )),
                );
            }
            Err(e) if job.ctx.cancel.is_cancelled() => {
                let why = match job.work {
                    Work::Clone(_) => {
                        "cancelled; the destination's datadir may hold part of the clone: empty it before trying again"
                    }
                    _ => "cancelled; no partial copy was kept",
                };
                self.finish(
                    job,
                    JobState::Cancelled,
                    Some(format!("{why}{}", left_behind(&e))),
                );
            }
            Err(e) => self.finish(job, JobState::Failed, Some(format!("{e:#}"))),
        }
    }
}

async fn worker(queue: Arc<Queue>, mut rx: mpsc::UnboundedReceiver<Arc<Job>>) {
    while let Some(job) = rx.recv().await {
        queue.run(&job).await;
    }
}

/// Runs `fut`; past `timeout`, cancels the job. Once cancelled (by the timeout, the
/// API or shutdown) the job gets [`STOP_LIMIT`] to clean up; past it, `fut` is dropped
/// (nothing it had not committed is committed) and the job fails with [`LeftBehind`].
async fn with_timeout<T>(
    fut: impl Future<Output = anyhow::Result<T>>,
    timeout: Option<Duration>,
    job: &Job,
) -> anyhow::Result<T> {
    let mut fut = std::pin::pin!(fut);
    let expired = async {
        match timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = &mut fut => return r,
        _ = expired => {
            job.timed_out.store(true, Ordering::SeqCst);
            job.ctx.cancel.cancel();
        }
        _ = job.ctx.cancel.cancelled() => {}
    }
    match tokio::time::timeout(STOP_LIMIT, fut).await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(
                job = job.id,
                "the job did not stop within {} s of its cancel; leaving it behind",
                STOP_LIMIT.as_secs()
            );
            Err(LeftBehind.into())
        }
    }
}

/// "; it did not stop..." when the job was left behind, else nothing.
fn left_behind(e: &anyhow::Error) -> String {
    match e.downcast_ref::<LeftBehind>() {
        Some(l) => format!("; {l}"),
        None => String::new(),
    }
}

async fn tick_progress(job: Arc<Job>) {
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (bytes_in, _) = job.ctx.bytes();
        let elapsed = last.0.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            (bytes_in.saturating_sub(last.1)) as f64 / elapsed
        } else {
            0.0
        };
        last = (Instant::now(), bytes_in);
        job.refresh_progress(rate);
    }
}
