//! Share links: a time-limited signed URL to download one copy, in place of TwinDB's
//! public-read ACL (which made a copy public forever). The copy must be in this host's
//! status; the destination signs (S3 presigned GET, GCS V4 signed URL).

use std::time::Duration;

use chrono::{DateTime, Utc};
use twindb_proto::MAX_SHARE_SECONDS;

use crate::destination::DestinationError;
use crate::engine::Engine;
use crate::status::StatusError;

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("no copy {0:?} in the status of this host (see `twindbctl ls`)")]
    UnknownCopy(String),
    #[error("a share link lasts 1 s to 7 days ({MAX_SHARE_SECONDS} s), not {0} s")]
    BadExpiry(u64),
    #[error("{0} is stored in TwinDB Backup's GCS layout, as several objects ({0}/part-...); one link cannot download it")]
    Parts(String),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Destination(#[from] DestinationError),
}

/// A URL that downloads `copy` until the returned time.
pub async fn share(
    engine: &Engine,
    copy: &str,
    expires_seconds: u64,
) -> Result<(String, DateTime<Utc>), ShareError> {
    if !(1..=MAX_SHARE_SECONDS).contains(&expires_seconds) {
        return Err(ShareError::BadExpiry(expires_seconds));
    }
    let status = engine.status_for_key(copy).await?;
    let meta = status
        .find(copy)
        .ok_or_else(|| ShareError::UnknownCopy(copy.to_string()))?;
    if meta.twindb.as_ref().is_some_and(|t| !t.parts.is_empty()) {
        return Err(ShareError::Parts(copy.to_string()));
    }
    let expires = Duration::from_secs(expires_seconds);
    let now = Utc::now();
    let url = engine.dest.share(copy, expires).await?;
    tracing::info!(copy, expires_seconds, "share link made");
    Ok((url, now + chrono::Duration::seconds(expires_seconds as i64)))
}
