//! The HTTP API on the Unix socket. Versioned routes under `/v1`; the types are in
//! `twindb-proto`. Every connection's peer is checked with SO_PEERCRED: root, the
//! daemon's own user and members of `socket_group` only.

mod cache;
mod peer;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use twindb_proto::{
    ApiError, CheckResponse, CopyKind, DestinationCheck, EnqueuedJob, JobEvent, JobState,
    JobsResponse, LsQuery, LsResponse, PlannedDeletion, RestoreRequest, RetentionRequest,
    RetentionResponse, RunRequest, RunResponse, RunTypeStatus, ShareRequest, ShareResponse,
    StatusResponse, VerifyRequest,
};

pub use self::peer::Peer;
use crate::engine::{Current, Engine};
use crate::queue::{Queue, QueueError};
use crate::state::StateStore;

#[derive(Clone)]
pub struct AppState {
    /// The engine of the current config (a reload replaces it).
    pub current: Arc<Current>,
    pub queue: Arc<Queue>,
    pub state: Arc<StateStore>,
    pub started_at: DateTime<Utc>,
    /// The binlog streamer's state (idle when streaming is off).
    pub binlog: Arc<crate::binlog::Shared>,
}

impl AppState {
    pub fn engine(&self) -> Arc<Engine> {
        self.current.get()
    }
}

pub fn router(app: AppState) -> Router {
    let allowed = peer::Allowed::from_config(&app.engine().config);
    Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/retention", get(retention_plan).post(retention))
        .route("/v1/status", get(status))
        .route("/v1/run", post(run))
        .route("/v1/jobs", get(jobs))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/jobs/{id}/events", get(events))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/ls", get(ls))
        .route("/v1/restore", post(restore))
        .route("/v1/pitr", get(pitr))
        .route("/v1/clone", post(clone))
        .route("/v1/share", post(share))
        .route("/v1/verify", post(verify))
        .route("/v1/check", get(check))
        .route("/v1/takeover", post(takeover))
        .route("/v1/cache/purge", post(cache::purge))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(allowed, peer::check))
        .with_state(app)
}

pub fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(ApiError {
            code: code.into(),
            message,
        }),
    )
        .into_response()
}

fn queue_error(e: QueueError) -> Response {
    let status = match e {
        QueueError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        QueueError::NoSuchJob(_) => StatusCode::NOT_FOUND,
        QueueError::Finished(_) => StatusCode::CONFLICT,
    };
    error(status, "conflict", e.to_string())
}

/// Prometheus text; also served on `[daemon] metrics_listen`.
pub async fn metrics(State(app): State<AppState>) -> Response {
    let engine = app.engine();
    engine
        .metrics
        .refresh(&app.state.kind_records(), &app.queue.active());
    engine.metrics.refresh_throttle(&engine.throttle);
    engine.metrics.refresh_verified(&app.state.verified());
    engine
        .metrics
        .refresh_drill(app.state.last_drill().as_ref());
    engine.metrics.binlog_lag(app.binlog.lag());
    (
        [("content-type", crate::metrics::CONTENT_TYPE)],
        engine.metrics.render(),
    )
        .into_response()
}

/// The router of the TCP metrics listener: `/metrics` only, no peer check (the
/// numbers hold no secret; bind it to an address only Prometheus reaches).
pub fn metrics_router(app: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "only /metrics here".into(),
            )
        })
        .with_state(app)
}

async fn status(State(app): State<AppState>) -> Json<StatusResponse> {
    let engine = app.engine();
    let active = app.queue.active();
    let now = Utc::now();
    let next = crate::scheduler::next_runs(&engine.config, now);
    let run_types = twindb_proto::RunType::ALL
        .into_iter()
        .map(|rt| {
            let rec = app.state.run_record(rt);
            RunTypeStatus {
                run_type: rt,
                enabled: engine.config.enabled_run_types.contains(&rt),
                last_run: rec.last_run,
                last_state: rec.last_state,
                last_duration_seconds: rec.last_duration_seconds,
                last_size: rec.last_size,
                last_error: rec.last_error,
                next_run: next.iter().find(|(r, _)| *r == rt).map(|(_, t)| *t),
            }
        })
        .collect();
    Json(StatusResponse {
        version: env!("CARGO_PKG_VERSION").into(),
        host: engine.host().into(),
        started_at: app.started_at,
        uptime_seconds: (now - app.started_at).num_seconds().max(0) as u64,
        destination: engine.dest.name(),
        running: active
            .iter()
            .filter(|j| j.state == twindb_proto::JobState::Running)
            .cloned()
            .collect(),
        queued: active
            .into_iter()
            .filter(|j| j.state == twindb_proto::JobState::Queued)
            .collect(),
        run_types,
        last_drill: app.state.last_drill(),
        next_drill: engine
            .config
            .verify
            .schedule
            .as_ref()
            .and_then(|s| crate::scheduler::next_fire(&s.cron, now)),
        binlog_stream: engine.config.binlog.enabled.then(|| {
            let b = app.binlog.get();
            twindb_proto::BinlogStreamStatus {
                state: if b.running { "running" } else { "retrying" }.into(),
                file: b.file,
                position: b.pos,
                lag_seconds: app.binlog.lag().as_secs_f64(),
                last_error: b.last_error,
                last_error_at: b.last_error_at,
            }
        }),
    })
}

async fn run(State(app): State<AppState>, Json(req): Json<RunRequest>) -> Response {
    if req.binlogs_only {
        if app.engine().config.mysql.is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "--binlogs-only needs MySQL backups ([source] backup_mysql = true)".into(),
            );
        }
        return match app.queue.enqueue_binlog() {
            Ok((job, coalesced)) => (
                StatusCode::ACCEPTED,
                Json(RunResponse {
                    jobs: vec![EnqueuedJob {
                        job: job.info(),
                        coalesced,
                    }],
                }),
            )
                .into_response(),
            Err(e) => queue_error(e),
        };
    }
    if !app
        .engine()
        .config
        .enabled_run_types
        .contains(&req.run_type)
    {
        return error(
            StatusCode::CONFLICT,
            "disabled",
            format!(
                "{} runs are disabled by [intervals] run_{} = false",
                req.run_type, req.run_type
            ),
        );
    }
    match app.queue.enqueue_run(req.run_type) {
        Ok(enqueued) => {
            let jobs = enqueued
                .into_iter()
                .map(|(job, coalesced)| EnqueuedJob {
                    job: job.info(),
                    coalesced,
                })
                .collect();
            (StatusCode::ACCEPTED, Json(RunResponse { jobs })).into_response()
        }
        Err(e) => queue_error(e),
    }
}

async fn jobs(State(app): State<AppState>) -> Json<JobsResponse> {
    Json(JobsResponse {
        jobs: app.queue.list(),
    })
}

async fn job(State(app): State<AppState>, Path(id): Path<u64>) -> Response {
    match app.queue.info(id) {
        Some(info) => Json(info).into_response(),
        None => queue_error(QueueError::NoSuchJob(id)),
    }
}

/// Newline-delimited JSON: one [`JobEvent`] per change, the last one in a final state.
async fn events(State(app): State<AppState>, Path(id): Path<u64>) -> Response {
    let Some(job) = app.queue.get(id) else {
        // Finished in an earlier life of the daemon: one final event.
        return match app.queue.info(id) {
            Some(info) => ndjson_line(&JobEvent {
                at: Utc::now(),
                job: info,
            })
            .into_response(),
            None => queue_error(QueueError::NoSuchJob(id)),
        };
    };
    let rx = job.subscribe();
    let stream = futures::stream::unfold((rx, true, false), |(mut rx, first, done)| async move {
        if done {
            return None;
        }
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let info = rx.borrow_and_update().clone();
        let done = info.state.is_final();
        let line = ndjson_line(&JobEvent {
            at: Utc::now(),
            job: info,
        });
        Some((Ok::<_, std::io::Error>(line), (rx, false, done)))
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(stream.boxed()))
        .expect("valid response")
}

fn ndjson_line(event: &JobEvent) -> String {
    let mut s = serde_json::to_string(event).expect("event serializes");
    s.push('\n');
    s
}

async fn cancel(State(app): State<AppState>, Path(id): Path<u64>) -> Response {
    match app.queue.cancel(id) {
        Ok(info) => Json(info).into_response(),
        Err(e) => queue_error(e),
    }
}

async fn ls(State(app): State<AppState>, Query(q): Query<LsQuery>) -> Response {
    let engine = app.engine();
    let host = q.host.as_deref().unwrap_or(engine.host());
    match engine.status_of(host).await {
        Ok(status) => {
            let kept = kept_locally(&engine, host).await;
            let mut copies: Vec<_> = status
                .copies
                .iter()
                .filter(|c| q.kind.is_none_or(|k| k == c.kind))
                .filter(|c| q.run_type.is_none_or(|r| Some(r) == c.run_type))
                .flat_map(|c| {
                    // A local copy is shown when its file is there with the recorded size.
                    let local = c
                        .local
                        .as_ref()
                        .filter(|l| kept.get(&l.key) == Some(&l.size));
                    let local = local.map(|l| twindb_proto::CopyInfo {
                        key: l.key.clone(),
                        size: l.size,
                        modifiers: l.modifiers.iter().map(|m| m.name().to_string()).collect(),
                        ..c.to_info("local")
                    });
                    std::iter::once(c.to_info("remote")).chain(local)
                })
                .collect();
            copies.sort_by(|a, b| {
                a.started
                    .cmp(&b.started)
                    .then_with(|| a.key.cmp(&b.key))
                    .then_with(|| b.location.cmp(&a.location))
            });
            Json(LsResponse {
                copies,
                problems: status.problems.clone(),
            })
            .into_response()
        }
        Err(e @ crate::status::StatusError::BadHost(_)) => {
            error(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, "destination", format!("{e:#}")),
    }
}

/// Keys and sizes of the files in keep_local_path for `host`.
async fn kept_locally(engine: &Engine, host: &str) -> std::collections::HashMap<String, u64> {
    use crate::destination::Destination;
    let Some(local) = &engine.keep_local else {
        return Default::default();
    };
    let mut kept = std::collections::HashMap::new();
    let mut objects = local.list(&format!("{host}/"));
    while let Some(o) = objects.next().await {
        match o {
            Ok(o) => {
                kept.insert(o.key, o.size);
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot list keep_local_path");
                break;
            }
        }
    }
    kept
}

/// Runs `check()` on the destination and on keep_local_path, at the same time.
async fn check(State(app): State<AppState>) -> Json<CheckResponse> {
    use crate::destination::Destination;
    async fn one(role: &str, d: &dyn Destination) -> DestinationCheck {
        let started = std::time::Instant::now();
        let result = d.check().await;
        DestinationCheck {
            role: role.into(),
            name: d.name(),
            ok: result.is_ok(),
            error: result.err().map(|e| format!("{e:#}")),
            seconds: started.elapsed().as_secs_f64(),
        }
    }
    let engine = app.engine();
    let remote = one("destination", engine.dest.as_ref());
    let local = async {
        match &engine.keep_local {
            Some(l) => Some(one("keep_local", l).await),
            None => None,
        }
    };
    let (remote, local) = tokio::join!(remote, local);
    let checks: Vec<_> = std::iter::once(remote).chain(local).collect();
    for c in checks.iter().filter(|c| !c.ok) {
        tracing::error!(destination = %c.name, error = c.error.as_deref().unwrap_or(""), "health check failed");
    }
    Json(CheckResponse {
        healthy: checks.iter().all(|c| c.ok),
        checks,
    })
}

async fn restore(State(app): State<AppState>, Json(mut req): Json<RestoreRequest>) -> Response {
    if !std::path::Path::new(&req.dst).is_absolute() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "dst must be an absolute path".into(),
        );
    }
    if req.kind == CopyKind::Binlog {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "binlog copies are restored by point-in-time restore, not on their own".into(),
        );
    }
    if req.until.is_some() && req.kind != CopyKind::Mysql {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "point-in-time restore is for MySQL copies".into(),
        );
    }
    if req.until.is_none() && req.copy.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "name the copy to restore (see `twindbctl ls`)".into(),
        );
    }
    if !req.copy.is_empty() {
        match resolve_copy(&app, &req.copy).await {
            Ok(key) => req.copy = key,
            Err(r) => return r,
        }
    }
    accepted(app.queue.enqueue_restore(req))
}

/// The key a `COPY` argument names (a key, a tail of one, TwinDB's URLs and paths),
/// or the error response: one resolver for restore, verify and share.
async fn resolve_copy(app: &AppState, given: &str) -> Result<String, Response> {
    use crate::copy_path::CopyPathError;
    crate::copy_path::resolve(&app.engine(), given)
        .await
        .map_err(|e| match e {
            CopyPathError::NoMatch(_) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            CopyPathError::Status(_) => {
                error(StatusCode::BAD_GATEWAY, "destination", format!("{e:#}"))
            }
            _ => error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
        })
}

/// `202 Accepted` with a new (never coalesced) job, or the queue's refusal.
fn accepted(job: Result<Arc<crate::queue::Job>, QueueError>) -> Response {
    match job {
        Ok(job) => (
            StatusCode::ACCEPTED,
            Json(EnqueuedJob {
                job: job.info(),
                coalesced: false,
            }),
        )
            .into_response(),
        Err(e) => queue_error(e),
    }
}

/// `POST /v1/clone`: a clone job (it checks the hosts itself, as its first step).
async fn clone(
    State(app): State<AppState>,
    Json(req): Json<twindb_proto::CloneRequest>,
) -> Response {
    if req.source.is_empty() || req.destination.is_empty() || req.replication_user.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "source, destination and replication user are required".into(),
        );
    }
    accepted(app.queue.enqueue_clone(req))
}

/// `GET /v1/pitr`: the times a point-in-time restore can reach.
async fn pitr(State(app): State<AppState>) -> Response {
    match app.engine().status.load().await {
        Ok(status) => Json(twindb_proto::PitrResponse {
            windows: crate::restore::pitr_windows(&status),
        })
        .into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, "destination", format!("{e:#}")),
    }
}

fn planned(d: crate::retention::Deletion, location: &str) -> PlannedDeletion {
    PlannedDeletion {
        key: d.key,
        kind: d.kind,
        run_type: d.run_type,
        location: location.into(),
        reason: d.reason,
    }
}

/// `GET /v1/retention`: the plan, deleting nothing.
async fn retention_plan(State(app): State<AppState>) -> Response {
    retention(State(app), Json(RetentionRequest { dry_run: true })).await
}

/// `POST /v1/retention`: plans, and unless `dry_run`, deletes now. Refused while a
/// backup runs: it applies retention itself when it succeeds, and deleting under
/// it could take the full a running incremental is based on.
async fn retention(State(app): State<AppState>, Json(req): Json<RetentionRequest>) -> Response {
    let engine = app.engine();
    if req.dry_run {
        return match engine.status.load().await {
            Ok(status) => {
                let deletions: Vec<PlannedDeletion> = crate::retention::plan(
                    &status.copies,
                    &crate::retention::remote_policy(&engine.config),
                    Utc::now(),
                )
                .into_iter()
                .map(|d| planned(d, "remote"))
                .collect();
                Json(RetentionResponse {
                    dry_run: true,
                    kept: status.copies.len() - deletions.len(),
                    deletions,
                    errors: vec![],
                })
                .into_response()
            }
            Err(e) => error(StatusCode::BAD_GATEWAY, "destination", format!("{e:#}")),
        };
    }
    let busy = app
        .queue
        .active()
        .into_iter()
        .find(|j| j.state == JobState::Running && j.kind != twindb_proto::JobKind::Restore);
    if let Some(j) = busy {
        return error(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "job {} ({}) is running; retention runs after it succeeds, or try again then",
                j.id, j.title
            ),
        );
    }
    let kinds = [CopyKind::Files, CopyKind::Mysql, CopyKind::Binlog];
    match crate::retention::apply(&engine, &kinds).await {
        Ok(applied) => Json(RetentionResponse {
            dry_run: false,
            deletions: applied
                .deleted
                .into_iter()
                .map(|d| planned(d, "remote"))
                .collect(),
            kept: applied.kept,
            errors: applied.errors,
        })
        .into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, "destination", format!("{e:#}")),
    }
}

async fn verify(State(app): State<AppState>, Json(mut req): Json<VerifyRequest>) -> Response {
    if req
        .dst
        .as_deref()
        .is_some_and(|d| !std::path::Path::new(d).is_absolute())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "dst must be an absolute path".into(),
        );
    }
    if req.drill {
        let v = &app.engine().config.verify;
        if !v.mysql && !v.files {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "a drill with nothing to restore: set [verify] mysql or files".into(),
            );
        }
        return accepted(app.queue.enqueue_drill());
    }
    if app.engine().config.mysql.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "verify needs MySQL backups configured ([source] backup_mysql = true)".into(),
        );
    }
    if let Some(copy) = req.copy.as_deref().filter(|c| *c != "latest") {
        match resolve_copy(&app, copy).await {
            Ok(key) => req.copy = Some(key),
            Err(r) => return r,
        }
    }
    accepted(app.queue.enqueue_verify(req))
}

/// Makes this daemon the writer of its host's status after the one that wrote it is
/// gone for good (this host replaces it): see `StatusError::OtherWriter`.
async fn takeover(State(app): State<AppState>) -> Response {
    let engine = app.engine();
    match engine.status.take_over().await {
        Ok(previous) => {
            let previous =
                previous.map(|w| format!("{} (pid {}, at {})", w.who.machine, w.pid, w.at));
            tracing::warn!(
                host = engine.host(),
                previous = previous.as_deref().unwrap_or("none"),
                "this twindbd took over the host's status"
            );
            Json(twindb_proto::TakeoverResponse {
                host: engine.host().to_string(),
                previous,
            })
            .into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, "destination", format!("{e:#}")),
    }
}

async fn share(State(app): State<AppState>, Json(mut req): Json<ShareRequest>) -> Response {
    use crate::share::ShareError;
    match resolve_copy(&app, &req.copy).await {
        Ok(key) => req.copy = key,
        Err(r) => return r,
    }
    match crate::share::share(&app.engine(), &req.copy, req.expires_seconds).await {
        Ok((url, expires_at)) => Json(ShareResponse {
            copy: req.copy,
            url,
            expires_at,
        })
        .into_response(),
        Err(e @ ShareError::UnknownCopy(_)) => {
            error(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        Err(e @ ShareError::BadExpiry(_)) => {
            error(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, "destination", format!("{e:#}")),
    }
}
