//! What every job needs: the validated config, the destination, the status store, and
//! a per-job context for progress, warnings and cancellation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::Config;
use crate::destination::{Destination, Local};
use crate::metrics::Metrics;
use crate::pipeline::Cancel;
use crate::status::{Status, StatusError, StatusStore};

pub struct Engine {
    pub config: Config,
    pub dest: Arc<dyn Destination>,
    /// `keep_local_path`: every copy is also kept here, written from the same stream.
    pub keep_local: Option<Local>,
    pub status: StatusStore,
    pub metrics: Arc<Metrics>,
    /// `[daemon] max_upload_rate` and `max_read_rate`: one pair for the daemon's life,
    /// its rates set by each reload (running jobs follow them).
    pub throttle: Arc<crate::throttle::Throttles>,
}

impl Engine {
    /// What building today's modifiers needs (`[compression] threads`, `[gpg]`).
    pub fn modifier_env(&self) -> crate::modifier::ModifierEnv {
        crate::modifier::ModifierEnv::new(self.config.compression.threads, self.config.gpg.clone())
    }

    pub fn new(config: Config) -> Self {
        let dest = crate::destination::build(&config.destination);
        let keep_local = config.keep_local_path.as_ref().map(Local::new);
        let status = StatusStore::new(dest.clone(), &config.daemon.hostname)
            .with_keep_local(keep_local.clone());
        let throttle = Arc::new(crate::throttle::Throttles::default());
        throttle.configure(&config.daemon);
        Engine {
            config,
            dest,
            keep_local,
            status,
            metrics: Arc::new(Metrics::new()),
            throttle,
        }
    }

    /// This engine with another config, as a reload makes it. The destination, and so
    /// the status store with its lock, stay the same objects: a job still running on
    /// the old engine and a new one must not write the status concurrently. The caller
    /// keeps restart-only settings (destination, host) as they were.
    pub fn reconfigured(&self, config: Config) -> Engine {
        self.throttle.configure(&config.daemon);
        Engine {
            config,
            dest: self.dest.clone(),
            keep_local: self.keep_local.clone(),
            status: self.status.clone(),
            metrics: self.metrics.clone(),
            throttle: self.throttle.clone(),
        }
    }

    pub fn host(&self) -> &str {
        &self.config.daemon.hostname
    }

    /// The status of `host`: this host's store, or a read-only view of another host's
    /// on the same destination. A DBA restores a lost host's copies on its replacement
    /// (TwinDB had no way to: its users asked for one in #128).
    pub async fn status_of(&self, host: &str) -> Result<Status, StatusError> {
        if host == self.host() {
            return self.status.load().await;
        }
        if !crate::config::is_valid_host(host) {
            return Err(StatusError::BadHost(host.to_string()));
        }
        StatusStore::new(self.dest.clone(), host)
            .with_keep_local(self.keep_local.clone())
            .load()
            .await
    }

    /// The status of the host a copy belongs to (the first part of its key).
    pub async fn status_for_key(&self, key: &str) -> Result<Status, StatusError> {
        self.status_of(key.split('/').next().unwrap_or_default())
            .await
    }
}

/// The engine that new jobs get. A config reload replaces it as a whole; a job keeps
/// the engine it started with until it ends.
pub struct Current {
    engine: RwLock<Arc<Engine>>,
}

impl Current {
    pub fn new(engine: Engine) -> Arc<Current> {
        Arc::new(Current {
            engine: RwLock::new(Arc::new(engine)),
        })
    }

    pub fn get(&self) -> Arc<Engine> {
        self.engine.read().expect("engine lock").clone()
    }

    pub fn replace(&self, engine: Engine) {
        *self.engine.write().expect("engine lock") = Arc::new(engine);
    }
}

/// Shared between a running job and whoever watches it.
#[derive(Debug, Default)]
pub struct JobCtx {
    pub cancel: Cancel,
    pub bytes_in: Arc<AtomicU64>,
    pub bytes_out: Arc<AtomicU64>,
    /// The daemon's bandwidth limits (the engine's), and the nanoseconds this job's
    /// stages waited for them.
    pub throttle: Arc<crate::throttle::Throttles>,
    pub throttled: Arc<AtomicU64>,
    phase: Mutex<String>,
    warnings: Mutex<Vec<String>>,
    /// Phases that finished, with their times (MySQL restores).
    timings: Mutex<Vec<twindb_proto::PhaseTime>>,
    excluded: Mutex<Vec<twindb_proto::ExcludedReport>>,
}

impl JobCtx {
    /// A job's context under the daemon's bandwidth limits.
    pub fn with_throttle(throttle: Arc<crate::throttle::Throttles>) -> JobCtx {
        JobCtx {
            throttle,
            ..JobCtx::default()
        }
    }

    /// How long this job waited for the bandwidth limits.
    pub fn throttled(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.throttled.load(Ordering::Relaxed))
    }

    pub fn set_phase(&self, phase: impl Into<String>) {
        *self.phase.lock().expect("phase lock") = phase.into();
    }

    pub fn phase(&self) -> String {
        self.phase.lock().expect("phase lock").clone()
    }

    pub fn warn(&self, warning: String) {
        tracing::warn!("{warning}");
        self.warnings.lock().expect("warnings lock").push(warning);
    }

    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().expect("warnings lock").clone()
    }

    /// Records that `phase` (of `copy`) ran from `since` until now.
    pub fn took(&self, phase: &str, copy: Option<&str>, since: std::time::Instant) {
        let seconds = since.elapsed().as_secs_f64();
        tracing::info!(phase, copy, "took {seconds:.1} s");
        self.timings
            .lock()
            .expect("timings lock")
            .push(twindb_proto::PhaseTime {
                phase: phase.to_string(),
                copy: copy.map(str::to_string),
                seconds,
            });
    }

    pub fn timings(&self) -> Vec<twindb_proto::PhaseTime> {
        self.timings.lock().expect("timings lock").clone()
    }

    /// Records what a files copy left out on purpose, for the job report.
    pub fn excluded(&self, report: twindb_proto::ExcludedReport) {
        self.excluded.lock().expect("excluded lock").push(report);
    }

    pub fn exclusions(&self) -> Vec<twindb_proto::ExcludedReport> {
        self.excluded.lock().expect("excluded lock").clone()
    }

    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }
}
