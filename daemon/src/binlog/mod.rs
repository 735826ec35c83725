//! The binlog streamer: one per daemon, when `[binlog] enabled = true` (with
//! `[source] backup_mysql`). It reads the server's binary log as it is written, as a
//! replica does (a supervised `mariadb-binlog --raw --stop-never`, spool.rs), and
//! stores it in segments of at most `max_lag` of events or `segment_size` bytes
//! (stream.rs, segment.rs), each recorded as a binlog copy with its place in its file.
//!
//! The supervisor here restarts a session that ends (the server restarted, the
//! connection dropped, the destination failed) with a growing delay, each time from the
//! last recorded position (start.rs): nothing is stored twice, nothing skipped. A
//! stored position the server no longer has is a gap: warned about, counted
//! (`twindb_binlog_gap`) and notified, and the stream goes on from what the server has.
//!
//! Beside the stream, a task of its own turns each file the stream stored whole into
//! one closed-file copy and retires its segments (consolidate.rs).

mod consolidate;
mod event;
mod segment;
mod spool;
mod start;
mod stream;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::backup::BackupError;
use crate::engine::{Current, Engine};
use crate::mysql::{ClientOptions, MysqlError, Server};
use crate::pipeline::Cancel;

pub use self::segment::FileId;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
    #[error("storing a segment: {0}")]
    Store(#[from] BackupError),
    #[error("binary logging is off on the server (log_bin): nothing to stream")]
    NoBinlog,
    #[error("replication stream: {0}")]
    Replication(String),
    #[error("no binlog reader is installed (mariadb-binlog for MariaDB, mysqlbinlog for MySQL): binlog streaming runs one")]
    NoReader,
    #[error("starting the binlog reader: {0}")]
    Spawn(std::io::Error),
    #[error(
        "{file}: the server sent an event at offset {got}, the stored bytes end at {expected}"
    )]
    Hole {
        file: String,
        expected: u64,
        got: u64,
    },
    #[error("the server's {} is another file than the one streamed (it began at another time)", .0.name)]
    OtherFile(FileId),
}

/// What `twindbctl status` and the metrics show of the streamer.
#[derive(Debug, Clone, Default)]
pub struct StreamerState {
    pub running: bool,
    pub file: Option<String>,
    pub pos: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// When the oldest event not stored yet arrived; None when all are stored.
    pub unstored_since: Option<Instant>,
    /// The last gap found since twindbd started, and when (`twindbctl status`).
    pub last_gap: Option<String>,
    pub last_gap_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct Shared(Mutex<StreamerState>);

impl Shared {
    pub fn get(&self) -> StreamerState {
        self.0.lock().expect("streamer state").clone()
    }

    /// Age of the oldest event read and not yet stored: 0 when caught up.
    pub fn lag(&self) -> Duration {
        self.get()
            .unstored_since
            .map(|t| t.elapsed())
            .unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut StreamerState)) {
        f(&mut self.0.lock().expect("streamer state"))
    }

    fn at(&self, file: &str, pos: u64) {
        self.update(|s| {
            s.file = Some(file.to_string());
            s.pos = pos;
        })
    }

    fn lag_since(&self, since: Option<Instant>) {
        self.update(|s| s.unstored_since = since)
    }
}

/// The running streamer: stop it with [`Streamer::stop`].
pub struct Streamer {
    stop: Cancel,
    task: tokio::task::JoinHandle<()>,
    pub shared: Arc<Shared>,
}

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(30);

impl Streamer {
    /// Starts the streamer when the config asks for it.
    pub fn start(current: Arc<Current>, shared: Arc<Shared>) -> Option<Streamer> {
        let engine = current.get();
        if !engine.config.binlog.enabled || engine.config.mysql.is_none() {
            return None;
        }
        let stop = Cancel::default();
        let task = tokio::spawn(supervise(current, shared.clone(), stop.clone()));
        Some(Streamer { stop, task, shared })
    }

    /// Stores what was read and returns; gives up after `limit`.
    pub async fn stop(self, limit: Duration) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            tracing::warn!(
                "the binlog streamer did not stop within {limit:?}; the next start resumes"
            );
            task.abort();
        }
    }
}

async fn supervise(current: Arc<Current>, shared: Arc<Shared>, stop: Cancel) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let consolidator = tokio::spawn(consolidate::run(
        current.clone(),
        wake.clone(),
        stop.clone(),
    ));
    let mut delay = FIRST_RETRY;
    // A file found to be another one than streamed: not resumed again.
    let mut not_after: Option<FileId> = None;
    while !stop.is_cancelled() {
        let engine = current.get();
        shared.update(|s| s.running = true);
        let began = Instant::now();
        match session(&engine, &shared, &wake, &stop, not_after.as_ref()).await {
            Ok(()) => {}
            Err(e) => {
                if let StreamError::OtherFile(f) = &e {
                    not_after = Some(f.clone());
                }
                let text = format!("{e:#}");
                tracing::warn!(error = %text, retry_in = ?delay, "binlog stream stopped; retrying");
                // `unstored_since` stays: what was read and not stored is still not
                // stored, and the lag keeps growing until a session stores it again.
                shared.update(|s| {
                    s.running = false;
                    s.last_error = Some(text);
                    s.last_error_at = Some(Utc::now());
                });
            }
        }
        if stop.is_cancelled() {
            break;
        }
        // A session that ran a while starts the delays over.
        if began.elapsed() > LAST_RETRY {
            delay = FIRST_RETRY;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(LAST_RETRY);
    }
    shared.update(|s| {
        s.running = false;
        s.unstored_since = None;
    });
    engine_metrics_lag_zero(&current);
    // Cancelled with the stream: what it was storing is swept as any unrecorded put.
    let _ = consolidator.await;
}

fn engine_metrics_lag_zero(current: &Current) {
    current.get().metrics.binlog_lag(Duration::ZERO);
}

async fn session(
    engine: &Arc<Engine>,
    shared: &Shared,
    wake: &tokio::sync::Notify,
    stop: &Cancel,
    not_after: Option<&FileId>,
) -> Result<(), StreamError> {
    let cfg = engine
        .config
        .mysql
        .as_ref()
        .ok_or(StreamError::Store(BackupError::MysqlNotConfigured))?;
    let client = ClientOptions::from_defaults_file(&cfg.defaults_file)?;
    let mut server = Server::connect(&client).await?;
    let id = start::ServerIdentity::read(&mut server).await?;
    let status = engine.status.load().await?;
    let start = start::start(&status, &id, not_after);
    if let Some(gap) = &start.gap {
        report_gap(engine, shared, gap).await;
    }
    tracing::info!(file = %start.file, pos = start.pos, server = %id.server_uuid, "binlog stream starting");
    let chain = crate::backup::backup_chain(engine).await?;
    server.disconnect().await;
    // The vendor's own reader: each speaks its server's protocol and authentication.
    let readers: &[&str] = match id.vendor {
        crate::mysql::Vendor::Mariadb => &["mariadb-binlog", "mysqlbinlog"],
        _ => &["mysqlbinlog"],
    };
    let program = readers
        .iter()
        .find_map(|p| crate::process::find_program(p))
        .ok_or(StreamError::NoReader)?;
    let spool = spool::Spool::start(
        &program,
        &cfg.defaults_file,
        replica_id(engine.host(), id.server_id),
        &start.file,
        start.pos,
        &engine.config.daemon.state_dir.join("binlog-spool"),
    )
    .map_err(StreamError::Spawn)?;
    let session = stream::Session {
        engine,
        shared,
        id: &id,
        chain,
        client: &client,
        consolidate: wake,
    };
    let result = session.run(spool, start, stop).await;
    if result.is_ok() {
        shared.update(|s| s.last_error = None);
    }
    result
}

/// The server_id this daemon uses as a replica: from the host name, in a range
/// replicas rarely use (2^31 and up), and never the server's own.
fn replica_id(host: &str, server_id: u32) -> u32 {
    let h = host.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    let id = 0x8000_0000 | (h & 0x7fff_fff0);
    if id == server_id {
        id + 1
    } else {
        id
    }
}

async fn report_gap(engine: &Engine, shared: &Shared, gap: &str) {
    let text = format!(
        "binlog stream gap: {gap}. Point-in-time restore cannot replay across it: take a full \
         MySQL copy (`twindbctl run daily`)"
    );
    tracing::warn!("{text}");
    shared.update(|s| {
        s.last_gap = Some(format!("binlog stream gap: {gap}"));
        s.last_gap_at = Some(Utc::now());
    });
    engine.metrics.binlog_gap();
    if let Some(notify) = &engine.config.notify {
        crate::notify::notify_problem(notify, engine.host(), "binlog_gap", &text, &engine.metrics)
            .await;
    }
}
