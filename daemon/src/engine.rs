//! What every job needs: the validated config, the destination, the status store, and
//! a per-job context for progress, warnings and cancellation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::destination::{Destination, Local};
use crate::pipeline::Cancel;
use crate::status::StatusStore;

pub struct Engine {
    pub config: Config,
    pub dest: Arc<dyn Destination>,
    /// `keep_local_path`: every copy is also kept here, written from the same stream.
    pub keep_local: Option<Local>,
    pub status: StatusStore,
}

impl Engine {
    pub fn new(config: Config) -> Self {
        let dest = crate::destination::build(&config.destination);
        let status = StatusStore::new(dest.clone(), &config.daemon.hostname);
        let keep_local = config.keep_local_path.as_ref().map(Local::new);
        Engine {
            config,
            dest,
            keep_local,
            status,
        }
    }

    pub fn host(&self) -> &str {
        &self.config.daemon.hostname
    }
}

/// Shared between a running job and whoever watches it.
#[derive(Debug, Default)]
pub struct JobCtx {
    pub cancel: Cancel,
    pub bytes_in: Arc<AtomicU64>,
    pub bytes_out: Arc<AtomicU64>,
    phase: Mutex<String>,
    warnings: Mutex<Vec<String>>,
}

impl JobCtx {
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

    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }
}
