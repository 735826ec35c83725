//! `POST /v1/cache/purge`: removes restore-cache entries, refused while a restore uses
//! the folder.

use std::path::Path;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use twindb_proto::CachePurgeRequest;

use super::{error, AppState};

pub(super) async fn purge(
    State(app): State<AppState>,
    Json(req): Json<CachePurgeRequest>,
) -> Response {
    let cache = Path::new(&req.cache);
    if !cache.is_absolute() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "cache must be an absolute path".into(),
        );
    }
    let users = app.queue.restores_using_cache(cache);
    if !users.is_empty() {
        let jobs: Vec<String> = users.iter().map(u64::to_string).collect();
        return error(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "restore job {} uses the cache {}: purge it when the job has ended",
                jobs.join(", "),
                cache.display()
            ),
        );
    }
    let (cache, older_than) = (
        cache.to_path_buf(),
        req.older_than_seconds.map(Duration::from_secs),
    );
    let purged = tokio::task::spawn_blocking(move || {
        crate::restore::purge_cache(&cache, older_than, SystemTime::now())
            .map_err(|e| format!("{}: {e}", cache.display()))
    })
    .await;
    match purged {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, "bad_request", e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}
