//! twindbd's life: lock the state dir, check the destination, serve the API, run jobs,
//! and on shutdown cancel what runs and leave no partial copy.
//!
//! The server takes its listener and a shutdown future as parameters (mini-redis
//! style), so tests run it in-process.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use tokio::net::UnixListener;

use crate::api::{self, AppState, Peer};
use crate::config::Config;
use crate::engine::Engine;
use crate::queue::Queue;
use crate::state::{StateLock, StateStore};

pub struct Daemon {
    config: Config,
    _lock: StateLock,
}

impl Daemon {
    /// Takes the state_dir lock: a second twindbd on the same state_dir stops here.
    pub fn new(config: Config) -> anyhow::Result<Daemon> {
        let lock = StateLock::acquire(&config.daemon.state_dir)?;
        Ok(Daemon {
            config,
            _lock: lock,
        })
    }

    /// Binds the API socket with mode 0660 (group `socket_group` when set).
    pub fn bind(&self) -> anyhow::Result<UnixListener> {
        bind_socket(&self.config)
    }

    pub async fn serve(
        self,
        listener: UnixListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let config = self.config.clone();
        let engine = Arc::new(Engine::new(config.clone()));
        engine
            .dest
            .check()
            .await
            .with_context(|| format!("destination {} is not usable", engine.dest.name()))?;
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        clean_partials(&engine).await;
        let state = Arc::new(StateStore::open(&config.daemon.state_dir));
        let queue = Queue::start(engine.clone(), state.clone());
        let app = AppState {
            engine: engine.clone(),
            queue: queue.clone(),
            state: state.clone(),
            started_at: Utc::now(),
        };
        if config.daemon.run_at_start {
            catch_up(&config, &state, &queue);
        }

        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        tracing::info!(
            socket = %config.daemon.socket.display(),
            destination = %engine.dest.name(),
            host = %config.daemon.hostname,
            "twindbd ready"
        );
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(
            listener,
            api::router(app).into_make_service_with_connect_info::<Peer>(),
        )
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        });
        let server = tokio::spawn(async move { server.await });
        shutdown.await;
        tracing::info!("shutting down: cancelling queued and running jobs");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        queue.shutdown().await;
        let _ = stop_tx.send(());
        // Event streams of finished jobs end on their own; don't wait on idle clients forever.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
        let _ = std::fs::remove_file(&config.daemon.socket);
        tracing::info!("twindbd stopped");
        Ok(())
    }
}

/// In-process entry point: lock, serve on `listener` until `shutdown` resolves.
pub async fn run(
    listener: UnixListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    Daemon::new(config)?.serve(listener, shutdown).await
}

fn bind_socket(config: &Config) -> anyhow::Result<UnixListener> {
    let path = &config.daemon.socket;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the socket folder {}", dir.display()))?;
    }
    if path.exists() {
        // A live socket means another daemon; a dead one is left over from a crash.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another twindbd is already listening on {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    if let Some((name, gid)) = &config.daemon.socket_group {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(*gid)))
            .with_context(|| format!("giving {} to group {name}", path.display()))?;
    }
    Ok(listener)
}

/// Removes upload leftovers of a twindbd that was killed. Safe: we hold the state_dir
/// lock, so no upload of ours is running.
async fn clean_partials(engine: &Engine) {
    match engine
        .dest
        .clean_partials(&format!("{}/", engine.host()))
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            count = n,
            "removed partial uploads left by an interrupted twindbd"
        ),
        Err(e) => tracing::warn!("could not clean partial uploads: {e:#}"),
    }
}

/// On start, the most frequent enabled run type runs now if it never ran or is overdue,
/// so that a fresh install produces its first copy within seconds.
fn catch_up(config: &Config, state: &StateStore, queue: &Queue) {
    let Some(&rt) = config.enabled_run_types.first() else {
        return;
    };
    let due = match state.run_record(rt).last_run {
        None => true,
        Some(t) => (Utc::now() - t).num_seconds() >= rt.period_seconds() as i64,
    };
    if due {
        tracing::info!(run_type = %rt, "run type is due at start");
        if let Err(e) = queue.enqueue_run(rt, false) {
            tracing::error!(error = %e, "could not enqueue the start-up run");
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Logs to journald when running under systemd with a journal, else to stderr.
pub fn init_logging(filter: &str) {
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let env_filter =
        tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into());
    let under_systemd =
        std::env::var_os("INVOCATION_ID").is_some() || std::env::var_os("JOURNAL_STREAM").is_some();
    let journald = if under_systemd && Path::new("/run/systemd/journal/socket").exists() {
        tracing_journald::layer().ok()
    } else {
        None
    };
    let registry = tracing_subscriber::registry().with(env_filter);
    match journald {
        Some(j) => registry
            .with(j.with_syslog_identifier("twindbd".into()))
            .init(),
        None => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
}
