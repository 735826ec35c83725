//! Amazon S3 and S3-compatible servers, with aws-sdk-s3. Only its requests are here;
//! the upload driver, resumable download and paginator are [`super::client`]'s.
//!
//! - `put` stores a stream smaller than one part with a single PutObject, anything
//!   larger as a multipart upload: parts are buffered up to the part size and several
//!   are uploaded at once, so memory stays at about (upload_concurrency + 1) parts.
//!   The part size doubles every [`PARTS_PER_DOUBLING`] parts, so a stream of unknown
//!   length can grow past 5 TiB within S3's 10,000 parts. A failed or cancelled upload
//!   is aborted: S3 shows an object only once CompleteMultipartUpload succeeded.
//! - `get` streams, a large object as `download_ranges` ranged GETs at once; when a
//!   connection breaks, reading resumes with a ranged GET pinned to the object's ETag,
//!   so a retry never restarts or corrupts the stream.
//! - Parts are sent with UNSIGNED-PAYLOAD: the signature covers the headers, not the
//!   bytes. Every part and single put carries a `Content-MD5` header (which the
//!   signature covers), so the server refuses bytes damaged on the way; the copy's own
//!   sha256 is checked again on restore.
//! - Every request is retried by [`retry`] (the SDK's own retries are off, so the
//!   bound is in one place). SlowDown, 503 and 429 are [`ErrorKind::Throttled`].
//! - Errors keep the SDK error as their source, behind a secret-free message.

mod credentials;
mod errors;
mod multipart;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as Body;
use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::stream::BoxStream;

use self::credentials::EnvironmentCredentials;
use self::errors::classify;
use super::client;
use super::retry::retry_as as retry;
use super::{BackendError, Destination, DestinationError, ErrorKind, Key, ObjectMeta, Version};
use crate::config::{S3Config, S3Credentials};
use crate::pipeline::ByteStream;

const MAX_PARTS: u32 = 10_000;
/// With S3's 5 MiB minimum part size, doubling every 900 parts stores 9 TiB within
/// 10,000 parts (every 1000 would stop at 4.9 TiB).
pub const PARTS_PER_DOUBLING: u32 = 900;
const MAX_PART_SIZE: u64 = 5 << 30;

/// Size of part `number` (1-based) when the first parts are `base` bytes.
pub fn part_size(base: u64, number: u32) -> u64 {
    let doublings = ((number.max(1) - 1) / PARTS_PER_DOUBLING).min(30);
    base.saturating_mul(1 << doublings).min(MAX_PART_SIZE)
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

#[derive(Clone)]
pub struct S3 {
    client: Client,
    bucket: Arc<str>,
    name: Arc<str>,
    part_size: u64,
    concurrency: usize,
    /// How large objects are read: `[destination] download_ranges` at once.
    download: client::Parallel,
    sse: Option<ServerSideEncryption>,
    kms_key_id: Option<String>,
    storage_class: Option<StorageClass>,
    /// Multipart uploads (key, upload id) whose abort failed (the server was down):
    /// [`Destination::discard`] of the key aborts them once it is back. Servers that
    /// cannot list uploads would otherwise keep their parts for ever.
    unaborted: Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3").field("name", &self.name).finish()
    }
}

impl S3 {
    pub fn new(c: &S3Config) -> Self {
        use aws_smithy_http_client::tls;
        // Without the SDK's default features there is no default HTTP client: this one
        // is hyper 1 + rustls with ring, the same TLS stack as the GCS client.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut b = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(c.region.clone()))
            .force_path_style(c.force_path_style)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            )
            // twindb checks every copy with its own sha256; skip the SDK's CRC32 of
            // every part, which some S3-compatible servers reject.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        b = match &c.credentials {
            S3Credentials::Static {
                access_key_id,
                secret_access_key,
            } => b.credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key.expose(),
                None,
                None,
                "twindb config",
            )),
            S3Credentials::Environment => b.credentials_provider(EnvironmentCredentials),
        };
        if let Some(ep) = &c.endpoint {
            b = b.endpoint_url(ep);
        }
        let name = match &c.endpoint {
            Some(ep) => format!("s3://{} at {ep}", c.bucket),
            None => format!("s3://{}", c.bucket),
        };
        S3 {
            client: Client::from_conf(b.build()),
            bucket: c.bucket.as_str().into(),
            name: name.into(),
            part_size: c.part_size,
            concurrency: c.upload_concurrency,
            download: client::Parallel::new(c.download_ranges),
            sse: c
                .server_side_encryption
                .as_deref()
                .map(ServerSideEncryption::from),
            kms_key_id: c.sse_kms_key_id.clone(),
            storage_class: c.storage_class.as_deref().map(StorageClass::from),
            unaborted: Arc::default(),
        }
    }

    fn error(
        &self,
        action: &'static str,
        key: Option<&str>,
        kind: ErrorKind,
        msg: String,
    ) -> DestinationError {
        DestinationError::with_cause(
            &self.name,
            action,
            key,
            kind,
            Box::new(BackendError::new(msg)),
        )
    }

    /// The SDK error classified, behind a secret-free message, kept as the source.
    fn sdk_error<E>(
        &self,
        action: &'static str,
        key: Option<&str>,
        e: SdkError<E, HttpResponse>,
    ) -> DestinationError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (kind, msg) = classify(&e);
        let cause = BackendError::caused_by(msg, e);
        DestinationError::with_cause(&self.name, action, key, kind, Box::new(cause))
    }

    async fn put_single(
        &self,
        key: &str,
        body: Bytes,
        class: Option<StorageClass>,
    ) -> Result<(), DestinationError> {
        let md5 = content_md5(&body).await;
        retry(&format!("storing {key}"), || async {
            self.client
                .put_object()
                .bucket(&*self.bucket)
                .key(key)
                .content_length(body.len() as i64)
                .content_md5(&md5)
                .body(Body::from(body.clone()))
                .set_server_side_encryption(self.sse.clone())
                .set_ssekms_key_id(self.kms_key_id.clone())
                .set_storage_class(class.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.sdk_error("storing", Some(key), e))
        })
        .await
    }

    /// Aborts the multipart uploads under `prefix` whose key `wanted` accepts; returns
    /// how many. A server that cannot list uploads has none to abort.
    async fn abort_listed(
        &self,
        prefix: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<usize, DestinationError> {
        let mut aborted = 0;
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let out = match self
                .client
                .list_multipart_uploads()
                .bucket(&*self.bucket)
                .prefix(prefix)
                .set_key_marker(markers.0.clone())
                .set_upload_id_marker(markers.1.clone())
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 501) => {
                    tracing::debug!("{} cannot list multipart uploads", self.name);
                    return Ok(aborted);
                }
                Err(e) => return Err(self.sdk_error("listing uploads under", Some(prefix), e)),
            };
            for u in out.uploads() {
                if let (Some(key), Some(id)) = (u.key(), u.upload_id()) {
                    if wanted(key) {
                        self.abort(key, id).await?;
                        aborted += 1;
                    }
                }
            }
            if out.is_truncated() != Some(true) {
                return Ok(aborted);
            }
            markers = (
                out.next_key_marker().map(str::to_string),
                out.next_upload_id_marker().map(str::to_string),
            );
        }
    }

    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), DestinationError> {
        self.client
            .abort_multipart_upload()
            .bucket(&*self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.sdk_error("aborting the upload of", Some(key), e))
    }
}

/// The `Content-MD5` of a part or object: S3 (and MinIO, Ceph, GCS's XML API) refuse the
/// request when the bytes they received hash otherwise, so a part damaged on the way
/// (a proxy, a NIC, memory) is never stored. MD5 rather than the SDK's CRC32 trailers,
/// which some S3-compatible servers reject. Hashed off the async threads: parts are
/// large.
async fn content_md5(body: &Bytes) -> String {
    use base64::Engine as _;
    use md5::Digest as _;
    let body = body.clone();
    let digest = tokio::task::spawn_blocking(move || md5::Md5::digest(&body))
        .await
        .expect("md5 does not panic");
    base64::engine::general_purpose::STANDARD.encode(digest)
}

#[async_trait]
impl Destination for S3 {
    fn name(&self) -> String {
        self.name.to_string()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        retry("checking the bucket", || async {
            self.client
                .head_bucket()
                .bucket(&*self.bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    let mut err = self.sdk_error("checking", None, e);
                    if err.kind == ErrorKind::NotFound {
                        err = self.error(
                            "checking",
                            None,
                            ErrorKind::NotFound,
                            format!("the bucket {} does not exist", self.bucket),
                        );
                    }
                    err
                })
        })
        .await
    }

    async fn put(&self, key: &str, data: ByteStream) -> Result<u64, DestinationError> {
        let key = Key::checked(&self.name, "storing", key)?;
        client::upload(self, &key, data).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream, DestinationError> {
        let key = Key::checked(&self.name, "reading", key)?;
        client::download(self.clone(), &self.name, key, self.download).await
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta, DestinationError>> {
        let s3 = self.clone();
        let prefix = prefix.to_string();
        client::paginate(move |token: Option<String>| {
            let (s3, prefix) = (s3.clone(), prefix.clone());
            async move {
                let out = retry(&format!("listing {prefix}"), || async {
                    s3.client
                        .list_objects_v2()
                        .bucket(&*s3.bucket)
                        .prefix(&prefix)
                        .set_continuation_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| s3.sdk_error("listing", Some(&prefix), e))
                })
                .await?;
                let objects: Vec<ObjectMeta> = out
                    .contents()
                    .iter()
                    .filter_map(|o| {
                        Some(ObjectMeta {
                            key: o.key()?.to_string(),
                            size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                        })
                    })
                    .collect();
                let next = match (out.is_truncated(), out.next_continuation_token()) {
                    (Some(true), Some(t)) => Some(t.to_string()),
                    _ => None,
                };
                Ok((objects, next))
            }
        })
    }

    async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        Key::checked(&self.name, "deleting", key)?;
        retry(&format!("deleting {key}"), || async {
            match self
                .client
                .delete_object()
                .bucket(&*self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => match self.sdk_error("deleting", Some(key), e) {
                    e if e.kind == ErrorKind::NotFound => Ok(()),
                    e => Err(e),
                },
            }
        })
        .await
    }

    async fn write_small(&self, key: &str, data: Bytes) -> Result<(), DestinationError> {
        Key::checked(&self.name, "storing", key)?;
        // No storage class: status files must stay readable at once, also when copies
        // go to an archive class.
        self.put_single(key, data, None).await
    }

    async fn read_small_versioned(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, Version)>, DestinationError> {
        let key = Key::checked(&self.name, "reading", key)?;
        client::read_versioned(self, &self.name, &key).await
    }

    /// A conditional PutObject: `If-Match` the ETag read, or `If-None-Match: *` for a
    /// new object. A retry after a lost reply may find our own write: the ETag of a
    /// single PUT is the MD5 of its bytes, so that case is told apart from another
    /// writer's.
    async fn write_small_if(
        &self,
        key: &str,
        data: Bytes,
        expect: Option<&Version>,
    ) -> Result<(), DestinationError> {
        Key::checked(&self.name, "storing", key)?;
        if expect == Some(&Version::Unknown) {
            return self.put_single(key, data, None).await;
        }
        let md5 = content_md5(&data).await;
        let ours = {
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&md5)
                .unwrap_or_default();
            format!("\"{}\"", hex::encode(raw))
        };
        let mut attempts = 0;
        retry(&format!("storing {key}"), || {
            attempts += 1;
            let (data, md5, ours) = (data.clone(), md5.clone(), ours.clone());
            let retried = attempts > 1;
            async move {
                let req = self
                    .client
                    .put_object()
                    .bucket(&*self.bucket)
                    .key(key)
                    .content_length(data.len() as i64)
                    .content_md5(&md5)
                    .body(Body::from(data))
                    .set_server_side_encryption(self.sse.clone())
                    .set_ssekms_key_id(self.kms_key_id.clone());
                let req = match expect {
                    Some(Version::Known(etag)) => req.if_match(etag),
                    _ => req.if_none_match("*"),
                };
                match req.send().await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let e = self.sdk_error("storing", Some(key), e);
                        if e.kind == ErrorKind::Conflict && retried {
                            let now = self.read_small_versioned(key).await?;
                            if now.is_some_and(|(_, v)| v == Version::Known(ours)) {
                                return Ok(());
                            }
                        }
                        Err(e)
                    }
                }
            }
        })
        .await
    }

    async fn share(&self, key: &str, expires: Duration) -> Result<String, DestinationError> {
        Key::checked(&self.name, "sharing", key)?;
        // A link to nothing helps no one: make sure the object is there.
        retry(&format!("sharing {key}"), || async {
            self.client
                .head_object()
                .bucket(&*self.bucket)
                .key(key)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.sdk_error("sharing", Some(key), e))
        })
        .await?;
        let presigning = PresigningConfig::expires_in(expires)
            .map_err(|e| self.error("sharing", Some(key), ErrorKind::Other, e.to_string()))?;
        let request = self
            .client
            .get_object()
            .bucket(&*self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| self.sdk_error("sharing", Some(key), e))?;
        Ok(request.uri().to_string())
    }

    async fn clean_partials(&self, prefix: &str) -> Result<usize, DestinationError> {
        self.abort_listed(prefix, |_| true).await
    }

    async fn discard(&self, key: &str) -> Result<(), DestinationError> {
        let remembered: Vec<String> = {
            let mut unaborted = self.unaborted.lock().expect("unaborted lock");
            let (mine, others) = std::mem::take(&mut *unaborted)
                .into_iter()
                .partition(|(k, _)| k == key);
            *unaborted = others;
            mine.into_iter().map(|(_, id)| id).collect()
        };
        for (i, id) in remembered.iter().enumerate() {
            let what = format!("aborting the upload of {key}");
            if let Err(e) = retry(&what, || self.abort(key, id)).await {
                if e.kind != ErrorKind::NotFound {
                    // Kept for the next discard, this one and those not tried yet.
                    let mut unaborted = self.unaborted.lock().expect("unaborted lock");
                    unaborted.extend(
                        remembered[i..]
                            .iter()
                            .map(|id| (key.to_string(), id.clone())),
                    );
                    return Err(e);
                }
            }
        }
        // Uploads of an earlier twindbd (or of this one before a config reload).
        self.abort_listed(key, |k| k == key).await?;
        self.delete(key).await
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::operation::get_object::GetObjectError;

    use super::errors::tests::service_error;
    use super::*;

    #[test]
    fn parts_grow_so_an_unknown_stream_reaches_5_tib() {
        let min = 5 << 20;
        let total: u64 = (1..=MAX_PARTS).map(|n| part_size(min, n)).sum();
        assert!(total >= 5 << 40, "only {} GiB", total >> 30);
        assert_eq!(part_size(16 << 20, 1), 16 << 20);
        assert_eq!(part_size(16 << 20, 900), 16 << 20);
        assert_eq!(part_size(16 << 20, 901), 32 << 20);
        assert!(part_size(5 << 30, 10_000) <= MAX_PART_SIZE);
    }

    #[test]
    fn in_flight_parts_shrink_as_parts_grow() {
        use crate::destination::client::in_flight_limit;
        assert_eq!(in_flight_limit(4, 16 << 20, 16 << 20), 4);
        assert_eq!(in_flight_limit(4, 16 << 20, 32 << 20), 2);
        assert_eq!(in_flight_limit(4, 16 << 20, 1 << 30), 1);
    }

    #[test]
    fn sdk_errors_are_kept_as_the_source() {
        let s3 = S3::new(&S3Config {
            bucket: "b".into(),
            region: "us-east-1".into(),
            endpoint: None,
            force_path_style: false,
            credentials: S3Credentials::Environment,
            part_size: 5 << 20,
            upload_concurrency: 1,
            download_ranges: 4,
            server_side_encryption: None,
            sse_kms_key_id: None,
            storage_class: None,
        });
        let e = s3.sdk_error("reading", Some("k"), service_error(503, "SlowDown"));
        assert_eq!(e.to_string(), "s3://b: reading k: SlowDown: m (HTTP 503)");
        assert!(e.is_retryable());
        let source = e.cause.source().expect("the SDK error");
        assert!(source.is::<SdkError<GetObjectError, HttpResponse>>());
    }
}
