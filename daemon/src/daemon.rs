//! twindbd's life: lock the state dir, check the destination, serve the API, run jobs,
//! and on shutdown cancel what runs and leave no partial copy.
//!
//! The server takes its listener and a shutdown future as parameters (mini-redis
//! style), so tests run it in-process.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use std::sync::OnceLock;

use anyhow::Context;
use chrono::Utc;
use tokio::net::UnixListener;
use tracing_subscriber::{reload as log_reload, EnvFilter, Registry};

use crate::api::{self, AppState, Peer};
use crate::config::Config;
use crate::destination::Destination;
use crate::engine::{Current, Engine};
use crate::queue::Queue;
use crate::scheduler::Scheduler;
use crate::state::{StateLock, StateStore};
use crate::systemd;

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
        // First: the socket already answers, and a SIGHUP sent as soon as it does must
        // reload the config, not kill the daemon (the signal's default action).
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let config = self.config.clone();
        let mut engine = Engine::new(config.clone());
        let me = crate::state::daemon_id(&config.daemon.state_dir)
            .and_then(crate::status::WriterId::this_machine)
            .with_context(|| {
                format!(
                    "reading this daemon's id in {}",
                    config.daemon.state_dir.display()
                )
            })?;
        engine.status = engine.status.clone().with_writer(me);
        // We hold the state_dir lock and no job runs yet: what a killed twindbd's jobs
        // left (restore staging, verify datadirs, throwaway servers) is ours to remove.
        for path in crate::state::remove_leftovers(&config.daemon.state_dir) {
            tracing::info!(path = %path.display(), "removed what an earlier twindbd left");
        }
        engine
            .dest
            .check()
            .await
            .with_context(|| format!("destination {} is not usable", engine.dest.name()))?;
        if let Some(local) = &engine.keep_local {
            local
                .check()
                .await
                .with_context(|| format!("keep_local_path {} is not usable", local.name()))?;
        }
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        // Check the host's status is ours before touching anything under the host's
        // prefix: a second daemon with the same host name must not remove the first
        // one's uploads in progress (clean_partials) or copies being stored (the sweep).
        // A daemon with an upload in progress has written the status (begin_put).
        let claimed = match engine.status.check_writer().await {
            Ok(_) => true,
            Err(e @ crate::status::StatusError::OtherWriter { .. }) => {
                tracing::error!("{e}");
                false
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the status at start");
                false
            }
        };
        if claimed {
            clean_partials(&engine).await;
        }
        let metrics_listener = match config.daemon.metrics_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding metrics_listen {addr}"))?,
            ),
            None => None,
        };
        let current = Current::new(engine);
        let state = Arc::new(StateStore::open(&config.daemon.state_dir));
        let queue = Queue::start(current.clone(), state.clone());
        let binlog_state = Arc::new(crate::binlog::Shared::default());
        let streamer = if claimed {
            crate::binlog::Streamer::start(current.clone(), binlog_state.clone())
        } else {
            None
        };
        let app = AppState {
            current: current.clone(),
            queue: queue.clone(),
            state: state.clone(),
            started_at: Utc::now(),
            binlog: binlog_state,
        };
        // In the background: reading the status may list the destination (TwinDB's copies).
        let counted = current.get();
        let mut tasks = vec![
            tokio::spawn(async move { count_copies(&counted, claimed).await }),
            tokio::spawn(on_job_events(queue.clone())),
            tokio::spawn(systemd::follow_jobs(queue.clone())),
            tokio::spawn(systemd::watchdog(queue.clone())),
        ];
        let scheduler = Scheduler::start(queue.clone())
            .await
            .context("starting the scheduler")?;
        if config.daemon.run_at_start {
            crate::scheduler::run_catch_up(&queue, &state);
        }
        tasks.push(tokio::spawn(reload_on_sighup(
            hup,
            current.clone(),
            scheduler.clone(),
        )));

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut servers = Vec::new();
        if let Some(l) = metrics_listener {
            tracing::info!(listen = %config.daemon.metrics_listen.expect("set"), "serving /metrics over TCP");
            let server = axum::serve(l, api::metrics_router(app.clone()))
                .with_graceful_shutdown(stopped(stop_rx.clone()));
            servers.push(tokio::spawn(async move { server.await }));
        }
        let server = axum::serve(
            listener,
            api::router(app).into_make_service_with_connect_info::<Peer>(),
        )
        .with_graceful_shutdown(stopped(stop_rx));
        servers.push(tokio::spawn(async move { server.await }));

        systemd::ready("idle");
        tracing::info!(
            socket = %config.daemon.socket.display(),
            destination = %current.get().dest.name(),
            host = %config.daemon.hostname,
            "twindbd ready"
        );
        shutdown.await;
        tracing::info!("shutting down: cancelling queued and running jobs");
        systemd::stopping();
        scheduler.shutdown().await;
        // The streamer stores what it read before the destination goes.
        if let Some(streamer) = streamer {
            streamer.stop(std::time::Duration::from_secs(60)).await;
        }
        queue.shutdown().await;
        let _ = stop_tx.send(true);
        for t in tasks {
            t.abort();
        }
        // Event streams of finished jobs end on their own; don't wait on idle clients forever.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            futures::future::join_all(servers),
        )
        .await;
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

/// Removes what jobs of an earlier life left unrecorded (killed between storing and
/// recording a copy, or mid-retention), then sets the copy counts of the metrics from
/// the status, once at start (later, every retention run keeps them current).
async fn count_copies(engine: &Engine, claimed: bool) {
    match if claimed {
        engine.status.sweep().await
    } else {
        Ok(vec![])
    } {
        Ok(swept) if !swept.is_empty() => {
            tracing::info!(
                objects = swept.len(),
                "removed objects an earlier twindbd left unrecorded"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot sweep unrecorded objects"),
    }
    match engine.status.load().await {
        Ok(status) => engine
            .metrics
            .set_copies(&status.copies, engine.keep_local.is_some()),
        Err(e) => tracing::warn!(error = %e, "cannot read the status to count copies"),
    }
}

/// What happens when a job ends besides its record: counters, notices, exports.
/// Notices and exports run in their own tasks: a slow mail server delays nothing.
async fn on_job_events(queue: Arc<Queue>) {
    use tokio::sync::broadcast::error::RecvError;
    let mut events = queue.subscribe();
    loop {
        let update = match events.recv().await {
            Ok(u) => u,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "job events were missed: metrics and notices may lack some jobs"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if !update.info.state.is_final() {
            continue;
        }
        let engine = queue.engine();
        engine.metrics.job_finished(&update.info, update.copy_kind);
        if let Some(notify) = engine.config.notify.clone() {
            let (engine, job) = (engine.clone(), update.info.clone());
            tokio::spawn(async move {
                crate::notify::notify(&notify, engine.host(), &job, &engine.metrics).await;
            });
        }
        if let Some(export) = engine.config.export.clone() {
            let (engine, job, kind) = (engine.clone(), update.info.clone(), update.copy_kind);
            tokio::spawn(async move {
                crate::metrics::export(&export, engine.host(), &job, kind, &engine.metrics).await;
            });
        }
    }
}

/// SIGHUP: re-read the config file. A config that does not validate is rejected with
/// its errors and the running one stays. A valid one applies to the jobs that start
/// from now on (schedules, intervals, sources, compression, retention, notify,
/// export, log filter); settings that need a restart keep their running values, with
/// a warning naming them.
async fn reload_on_sighup(
    hup: std::io::Result<tokio::signal::unix::Signal>,
    current: Arc<Current>,
    scheduler: Arc<Scheduler>,
) {
    let mut hup = match hup {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot handle SIGHUP: config reload is off");
            return;
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the config");
        reload(&current, &scheduler).await;
    }
}

pub async fn reload(current: &Current, scheduler: &Arc<Scheduler>) {
    let old = current.get();
    let new = match crate::config::load(&old.config.file) {
        Ok(c) => c,
        Err(errors) => {
            tracing::error!("config reload rejected, the running config stays:\n{errors}");
            systemd::status("config reload rejected: the running config stays (see the log)");
            return;
        }
    };
    let (config, kept) = keep_restart_only(&old.config, new);
    if !kept.is_empty() {
        tracing::warn!(
            keys = %kept.join(", "),
            "these settings changed but need a restart (systemctl restart twindbd); their running values stay"
        );
    }
    set_log_filter(&config.daemon.log);
    if let Err(e) = scheduler.apply(&config).await {
        tracing::error!(error = %e, "applying the new schedules");
    }
    current.replace(old.reconfigured(config));
    tracing::info!("config reloaded");
}

/// `new` with the settings that cannot change while running taken from `old`, and
/// the names of those that differed.
pub fn keep_restart_only(old: &Config, mut new: Config) -> (Config, Vec<&'static str>) {
    let mut kept = Vec::new();
    let (o, n) = (&old.daemon, &mut new.daemon);
    if o.socket != n.socket {
        kept.push("[daemon] socket");
        n.socket = o.socket.clone();
    }
    if o.socket_group != n.socket_group {
        kept.push("[daemon] socket_group");
        n.socket_group = o.socket_group.clone();
    }
    if o.state_dir != n.state_dir {
        kept.push("[daemon] state_dir");
        n.state_dir = o.state_dir.clone();
    }
    if o.hostname != n.hostname {
        kept.push("[daemon] hostname");
        n.hostname = o.hostname.clone();
    }
    if o.metrics_listen != n.metrics_listen {
        kept.push("[daemon] metrics_listen");
        n.metrics_listen = o.metrics_listen;
    }
    // Compared, never printed: destination settings may hold secrets.
    if format!("{:?}", old.destination) != format!("{:?}", new.destination) {
        kept.push("[destination] and its section");
        new.destination = old.destination.clone();
    }
    // The engine keeps the keep-local destination it started with: applying only the
    // config's value would show one folder and write to another.
    if old.keep_local_path != new.keep_local_path {
        kept.push("[destination] keep_local_path");
        new.keep_local_path = old.keep_local_path.clone();
    }
    // The streamer is started (or not) with the daemon; the binlog job's choices follow
    // whether it runs.
    if old.binlog.enabled != new.binlog.enabled {
        kept.push("[binlog] enabled");
        new.binlog.enabled = old.binlog.enabled;
    }
    (new, kept)
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

/// Removes upload leftovers of a twindbd that was killed, from the destination and from
/// `keep_local_path` alike. Safe: we hold the state_dir lock, so no upload of ours is
/// running.
async fn clean_partials(engine: &Engine) {
    let prefix = format!("{}/", engine.host());
    let mut targets: Vec<&dyn Destination> = vec![engine.dest.as_ref()];
    if let Some(local) = &engine.keep_local {
        targets.push(local);
    }
    let mut results = Vec::new();
    for dest in targets {
        results.push((dest.name(), dest.clean_partials(&prefix).await));
    }
    for (destination, result) in results {
        match result {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                %destination,
                count = n,
                "removed partial uploads left by an interrupted twindbd"
            ),
            Err(e) => {
                tracing::warn!(%destination, error = %format!("{e:#}"), "could not clean partial uploads")
            }
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

static LOG_FILTER: OnceLock<log_reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Logs to journald when running under systemd with a journal, else to stderr. The
/// filter is `[daemon] log` unless RUST_LOG is set; a reload can change it.
pub fn init_logging(filter: &str) {
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let env_filter = EnvFilter::try_new(quiet_scheduler(&filter)).unwrap_or_else(|_| "info".into());
    let (env_filter, handle) = log_reload::Layer::new(env_filter);
    let _ = LOG_FILTER.set(handle);
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

/// tokio-cron-scheduler logs each job it creates at INFO; our own scheduler lines say
/// what matters. Unless the filter names it, keep it to warnings.
fn quiet_scheduler(filter: &str) -> String {
    if filter.contains("tokio_cron_scheduler") {
        filter.to_string()
    } else {
        format!("{filter},tokio_cron_scheduler=warn")
    }
}

/// Applies a new `[daemon] log` filter (a reload), unless RUST_LOG overrides it.
fn set_log_filter(filter: &str) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    let (Some(handle), Ok(f)) = (
        LOG_FILTER.get(),
        EnvFilter::try_new(quiet_scheduler(filter)),
    ) else {
        return;
    };
    if let Err(e) = handle.reload(f) {
        tracing::warn!(error = %e, "cannot change the log filter");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse(Path::new("/etc/twindb/t.toml"), text).unwrap()
    }

    const BASE: &str = "[daemon]\nsocket = \"/run/a.sock\"\nhostname = \"db1\"\n\n[source]\nbackup_dirs = [\"/tmp\"]\n\n[destination]\nbackup_destination = \"local\"\n\n[local]\npath = \"/b\"\n";

    #[test]
    fn a_reload_keeps_restart_only_settings_and_takes_the_rest() {
        let old = config(BASE);
        let new = config(
            &BASE
                .replace("/run/a.sock", "/run/b.sock")
                .replace("path = \"/b\"", "path = \"/c\"")
                .replace(
                    "hostname = \"db1\"",
                    "hostname = \"db1\"\nschedule_daily = \"0 3 * * *\"\nlog = \"debug\"",
                ),
        );
        let (merged, kept) = keep_restart_only(&old, new);
        assert_eq!(
            kept,
            vec!["[daemon] socket", "[destination] and its section"]
        );
        assert_eq!(merged.daemon.socket, Path::new("/run/a.sock"));
        assert_eq!(
            format!("{:?}", merged.destination),
            format!("{:?}", old.destination)
        );
        assert_eq!(merged.daemon.log, "debug");
        assert_eq!(
            merged.schedule.spec(twindb_proto::RunType::Daily).expr,
            "0 0 3 * * *"
        );
        let (_, kept) = keep_restart_only(&old, config(BASE));
        assert!(kept.is_empty());
    }

    #[test]
    fn a_reload_that_changes_keep_local_path_keeps_the_running_folder() {
        let old = config(BASE);
        let new = config(&BASE.replace(
            "backup_destination = \"local\"",
            "backup_destination = \"local\"\nkeep_local_path = \"/k\"",
        ));
        assert_eq!(new.keep_local_path.as_deref(), Some(Path::new("/k")));
        let (merged, kept) = keep_restart_only(&old, new);
        assert_eq!(kept, vec!["[destination] keep_local_path"]);
        assert_eq!(merged.keep_local_path, None);
    }

    #[test]
    fn the_scheduler_crate_is_quiet_unless_named() {
        assert_eq!(quiet_scheduler("info"), "info,tokio_cron_scheduler=warn");
        assert_eq!(
            quiet_scheduler("tokio_cron_scheduler=debug"),
            "tokio_cron_scheduler=debug"
        );
    }
}
