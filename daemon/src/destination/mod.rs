//! Where copies are stored. One object-store style trait; a module per backend.
//!
//! A destination knows keys and bytes, never what produced them.
//!
//! - [`Destination`] is the contract; [`DestinationError`] and [`ErrorKind`] its errors.
//! - [`Key`] is a key checked once, where an operation starts.
//! - [`retry`] is the one retry layer; [`guard::OnDrop`] the one cleanup-on-drop guard.
//! - `client` is the machinery the object stores (s3, gcs, az) share: chunker, upload
//!   driver, resumable download, paginator. A backend writes only its requests.

mod az;
mod client;
mod error;
mod gcs;
pub mod guard;
mod key;
mod local;
pub mod retry;
mod s3;
mod ssh;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

pub use self::az::Az;
/// Bytes of one ranged request when s3, gcs and az read a large object in parallel.
pub use self::client::RANGE_SIZE as DOWNLOAD_RANGE_SIZE;
pub use self::error::{chain_text, BackendError, BoxError, DestinationError, ErrorKind};
pub use self::gcs::Gcs;
pub use self::key::{validate_key, Key};
pub use self::local::Local;
pub use self::retry::Backoff;
pub use self::s3::S3;
pub use self::ssh::{Ssh, Tuning as SshTuning};
use crate::config::DestinationConfig;
use crate::pipeline::ByteStream;

/// The configured destination.
pub fn build(config: &DestinationConfig) -> Arc<dyn Destination> {
    match config {
        DestinationConfig::Local { path } => Arc::new(Local::new(path)),
        DestinationConfig::Ssh(ssh) => Arc::new(Ssh::new(ssh.clone())),
        DestinationConfig::S3(c) => Arc::new(S3::new(c)),
        DestinationConfig::Gcs(c) => Arc::new(Gcs::new(c)),
        DestinationConfig::Az(c) => Arc::new(Az::new(c)),
    }
}

/// An object stored on a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Relative to the destination root, '/'-separated.
    pub key: String,
    pub size: u64,
}

/// The storage contract every backend fulfils.
///
/// - `put` is all-or-nothing: the object appears under `key` only once the whole
///   stream has been stored and made durable. A stream that ends with an error, a
///   cancelled (dropped) future or a killed process leaves nothing that `list` shows.
/// - `get` and `list` stream; nothing is held whole in memory.
/// - `delete` of a missing key succeeds. `discard` also removes what a failed or
///   interrupted put of the key left (see [`Destination::discard`]).
/// - `read_small`/`write_small` move small objects (status files) whole; a write is as
///   atomic as `put`.
/// - `check` proves the destination usable (reachable, credentials valid, writable); the
///   daemon runs it at start-up and `twindbctl check` on demand.
/// - Errors are [`DestinationError`]s naming the destination and the key, never a secret;
///   their [`ErrorKind`] says what happened and [`DestinationError::is_retryable`]
///   whether trying again may help.
/// - Transient failures of idempotent operations (connect, `get` until the first byte,
///   `list`, `delete`, small objects, `check`) are retried inside the backend with
///   bounded exponential backoff ([`retry`]). A streamed `put` is not retried: its
///   input cannot be replayed, so it fails and leaves nothing behind instead.
#[async_trait]
pub trait Destination: Send + Sync + fmt::Debug {
    /// Human-readable, secret-free, e.g. `local:/var/backup`.
    fn name(&self) -> String;

    /// Is the destination reachable and writable with the configured credentials?
    async fn check(&self) -> Result<(), DestinationError>;

    /// Stores `data` under `key`; returns the stored size.
    async fn put(&self, key: &str, data: ByteStream) -> Result<u64, DestinationError>;

    async fn get(&self, key: &str) -> Result<ByteStream, DestinationError>;

    /// Objects whose key starts with `prefix`, in no particular order.
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta, DestinationError>>;

    async fn delete(&self, key: &str) -> Result<(), DestinationError>;

    /// Deletes `key` and whatever an interrupted put of `key` left behind (its temp
    /// file, the parts of its multipart upload), also when that put could not clean up
    /// because the destination was down or full at the time. Only call this when no
    /// put of `key` can be running: the status sweep does, for keys recorded as
    /// pending that no job of this process is storing.
    async fn discard(&self, key: &str) -> Result<(), DestinationError> {
        self.delete(key).await
    }

    /// Reads a small object whole (status files). `None` when it does not exist.
    async fn read_small(&self, key: &str) -> Result<Option<Bytes>, DestinationError> {
        let stream = match self.get(key).await {
            Ok(s) => s,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let chunks: Vec<Bytes> = stream
            .try_collect()
            .await
            .map_err(|e| DestinationError::io(&self.name(), key, e))?;
        Ok(Some(chunks.concat().into()))
    }

    /// A URL that lets whoever holds it download `key` until `expires` from now,
    /// without credentials of their own. Destinations that cannot sign say so.
    async fn share(&self, key: &str, expires: Duration) -> Result<String, DestinationError> {
        let _ = expires;
        Err(DestinationError::new(
            &self.name(),
            "sharing",
            Some(key),
            io::Error::other("this destination cannot make share links (s3, gcs and az can)"),
        )
        .with_kind(ErrorKind::Other))
    }

    /// Removes what interrupted uploads under `prefix` left behind (parts of multipart
    /// uploads, temp files) and returns how many. Only call this while no upload under
    /// `prefix` can be running (twindbd does at start, holding its state lock).
    async fn clean_partials(&self, prefix: &str) -> Result<usize, DestinationError> {
        let _ = prefix;
        Ok(0)
    }

    /// Writes a small object whole, atomically.
    async fn write_small(&self, key: &str, data: Bytes) -> Result<(), DestinationError> {
        self.put(key, futures::stream::once(async move { Ok(data) }).boxed())
            .await
            .map(|_| ())
    }

    /// Reads a small object whole with the version it was read at, for
    /// [`Destination::write_small_if`]. `None` when it does not exist.
    async fn read_small_versioned(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, Version)>, DestinationError> {
        Ok(self.read_small(key).await?.map(|b| (b, Version::Unknown)))
    }

    /// Writes a small object only if it is still what the caller read: absent for
    /// `expect = None`, else at that version. Fails with [`ErrorKind::Conflict`] when
    /// someone else wrote it meanwhile (the status of one host written by two daemons).
    /// A backend that cannot tell versions apart writes unconditionally.
    async fn write_small_if(
        &self,
        key: &str,
        data: Bytes,
        expect: Option<&Version>,
    ) -> Result<(), DestinationError> {
        let _ = expect;
        self.write_small(key, data).await
    }
}

/// The version of a small object as its backend tells writes apart: an S3 ETag, a
/// GCS generation, a local file's inode and change time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    Known(String),
    /// The backend cannot tell: a conditional write is unconditional.
    Unknown,
}
