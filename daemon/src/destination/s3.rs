//! Amazon S3 and S3-compatible servers, with aws-sdk-s3.
//!
//! - `put` stores a stream smaller than one part with a single PutObject, anything
//!   larger as a multipart upload: parts are buffered up to the part size and several
//!   are uploaded at once, so memory stays at about (upload_concurrency + 1) parts.
//!   The part size doubles every [`PARTS_PER_DOUBLING`] parts, so a stream of unknown
//!   length can grow past 5 TiB within S3's 10,000 parts. A failed or cancelled upload
//!   is aborted: S3 shows an object only once CompleteMultipartUpload succeeded.
//! - `get` streams; when the connection breaks, reading resumes with a ranged GET
//!   pinned to the object's ETag, so a retry never restarts or corrupts the stream.
//! - Parts are sent with UNSIGNED-PAYLOAD: the signature covers the headers, not the
//!   bytes. Every part and single put carries a `Content-MD5` header (which the
//!   signature covers), so the server refuses bytes damaged on the way; the copy's own
//!   sha256 is checked again on restore.
//! - Every request is retried by [`retry`] (the SDK's own retries are off, so the
//!   bound is in one place).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::future as provider_future;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, ProvideCredentials, Region, RequestChecksumCalculation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as Body;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::task::JoinSet;

use super::retry::{retry_as as retry, ATTEMPTS};
use super::{validate_key, Destination, DestinationError, ErrorKind, ObjectMeta, Version};
use crate::config::{S3Config, S3Credentials};
use crate::pipeline::ByteStream;

const MAX_PARTS: i32 = 10_000;
/// With S3's 5 MiB minimum part size, doubling every 900 parts stores 9 TiB within
/// 10,000 parts (every 1000 would stop at 4.9 TiB).
pub const PARTS_PER_DOUBLING: i32 = 900;
const MAX_PART_SIZE: u64 = 5 << 30;

/// Size of part `number` (1-based) when the first parts are `base` bytes.
pub fn part_size(base: u64, number: i32) -> u64 {
    let doublings = ((number.max(1) - 1) / PARTS_PER_DOUBLING).min(30) as u32;
    base.saturating_mul(1 << doublings).min(MAX_PART_SIZE)
}

/// Parts uploaded at once: `concurrency`, fewer once parts outgrow the memory that
/// `concurrency` first-size parts take, never less than one.
fn in_flight_limit(concurrency: usize, base: u64, current: u64) -> usize {
    let budget = concurrency as u64 * base;
    ((budget / current.max(1)) as usize).clamp(1, concurrency)
}

#[derive(Clone)]
pub struct S3 {
    client: Client,
    bucket: Arc<str>,
    name: Arc<str>,
    part_size: u64,
    concurrency: usize,
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
        DestinationError::new(&self.name, action, key, io::Error::other(msg)).with_kind(kind)
    }

    fn sdk_error<E>(
        &self,
        action: &'static str,
        key: Option<&str>,
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> DestinationError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (kind, msg) = classify(&e);
        self.error(action, key, kind, msg)
    }

    fn input_error(&self, key: &str, e: io::Error) -> DestinationError {
        DestinationError::new(&self.name, "storing", Some(key), e).with_kind(ErrorKind::Input)
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

    async fn put_multipart(
        &self,
        key: &str,
        first: Bytes,
        input: &mut PartReader,
    ) -> Result<u64, DestinationError> {
        let upload_id = retry(&format!("starting the upload of {key}"), || async {
            let out = self
                .client
                .create_multipart_upload()
                .bucket(&*self.bucket)
                .key(key)
                .set_server_side_encryption(self.sse.clone())
                .set_ssekms_key_id(self.kms_key_id.clone())
                .set_storage_class(self.storage_class.clone())
                .send()
                .await
                .map_err(|e| self.sdk_error("storing", Some(key), e))?;
            out.upload_id.ok_or_else(|| {
                self.error(
                    "storing",
                    Some(key),
                    ErrorKind::Other,
                    "CreateMultipartUpload returned no upload id".into(),
                )
            })
        })
        .await?;
        let guard = AbortOnDrop {
            s3: self.clone(),
            key: key.to_string(),
            upload_id: Some(upload_id.clone()),
        };
        match self.upload_parts(key, &upload_id, first, input).await {
            Ok(size) => {
                guard.disarm();
                Ok(size)
            }
            Err(e) => {
                guard.abort().await;
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        first: Bytes,
        input: &mut PartReader,
    ) -> Result<u64, DestinationError> {
        // Dropping the set (error, cancel) aborts the part uploads still running.
        let mut running: JoinSet<Result<CompletedPart, DestinationError>> = JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::new();
        let mut total = 0u64;
        let mut number = 1;
        let mut body = first;
        loop {
            let size = part_size(self.part_size, number);
            let last = (body.len() as u64) < size;
            if body.is_empty() && number > 1 {
                break;
            }
            total += body.len() as u64;
            let limit = in_flight_limit(self.concurrency, self.part_size, size);
            while running.len() >= limit {
                done.push(joined(running.join_next().await)?);
            }
            running.spawn(upload_part(
                self.clone(),
                key.to_string(),
                upload_id.to_string(),
                number,
                body,
            ));
            // Fail early when a part failed while we were reading.
            while let Some(r) = running.try_join_next() {
                done.push(joined(Some(r))?);
            }
            if last {
                break;
            }
            if number == MAX_PARTS {
                return Err(self.error(
                    "storing",
                    Some(key),
                    ErrorKind::Other,
                    format!(
                        "the stream is larger than S3's {MAX_PARTS} parts allow with \
                         part_size = {} bytes; raise part_size",
                        self.part_size
                    ),
                ));
            }
            number += 1;
            body = input
                .read(part_size(self.part_size, number) as usize)
                .await
                .map_err(|e| self.input_error(key, e))?;
        }
        while let Some(r) = running.join_next().await {
            done.push(joined(Some(r))?);
        }
        done.sort_by_key(|p| p.part_number);
        let parts = CompletedMultipartUpload::builder()
            .set_parts(Some(done))
            .build();
        retry(&format!("completing the upload of {key}"), || async {
            self.client
                .complete_multipart_upload()
                .bucket(&*self.bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(parts.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.sdk_error("storing", Some(key), e))
        })
        .await?;
        Ok(total)
    }

    /// Remembers an upload whose abort failed, for the next discard of its key.
    fn abort_failed(&self, key: &str, upload_id: &str, e: &DestinationError) {
        tracing::warn!(
            "could not abort the multipart upload of {key}: {e}; its parts stay in the bucket \
             (invisible, but billed) until the next sweep (retention, start) or a lifecycle \
             rule removes them"
        );
        self.unaborted
            .lock()
            .expect("unaborted lock")
            .push((key.to_string(), upload_id.to_string()));
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

    async fn open(
        &self,
        key: &str,
        offset: u64,
        etag: Option<&str>,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, DestinationError> {
        self.client
            .get_object()
            .bucket(&*self.bucket)
            .key(key)
            .set_range((offset > 0).then(|| format!("bytes={offset}-")))
            // A resumed read must continue the same object, not a newer one.
            .set_if_match(etag.map(str::to_string))
            .send()
            .await
            .map_err(|e| self.sdk_error("reading", Some(key), e))
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

/// Uploads one part, retrying transient failures with the same buffered bytes.
async fn upload_part(
    s3: S3,
    key: String,
    upload_id: String,
    number: i32,
    body: Bytes,
) -> Result<CompletedPart, DestinationError> {
    let md5 = content_md5(&body).await;
    retry(&format!("uploading part {number} of {key}"), || async {
        let out = s3
            .client
            .upload_part()
            .bucket(&*s3.bucket)
            .key(&key)
            .upload_id(&upload_id)
            .part_number(number)
            .content_length(body.len() as i64)
            .content_md5(&md5)
            .body(Body::from(body.clone()))
            // Hashing every part for the signature costs a core at these speeds;
            // TLS protects it in transit and the copy's sha256 is checked on restore.
            // (botocore does the same over https.)
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| s3.sdk_error("storing", Some(&key), e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .build())
    })
    .await
}

fn joined(
    r: Option<Result<Result<CompletedPart, DestinationError>, tokio::task::JoinError>>,
) -> Result<CompletedPart, DestinationError> {
    match r {
        Some(Ok(part)) => part,
        Some(Err(e)) => Err(DestinationError::new(
            "s3",
            "storing",
            None,
            io::Error::other(format!("a part upload task failed: {e}")),
        )),
        None => unreachable!("joined only while uploads are running"),
    }
}

/// Aborts the multipart upload unless it was completed, also when `put` is cancelled
/// (its future dropped), so that no parts are left to pay for.
struct AbortOnDrop {
    s3: S3,
    key: String,
    upload_id: Option<String>,
}

impl AbortOnDrop {
    fn disarm(mut self) {
        self.upload_id = None;
    }

    /// One attempt now; if the server is unreachable, keep trying in the background
    /// so that the caller gets its error without waiting for a second retry bound.
    async fn abort(mut self) {
        let Some(id) = self.upload_id.clone() else {
            return;
        };
        // Still armed while we wait: if this future is dropped, Drop aborts.
        let result = self.s3.abort(&self.key, &id).await;
        self.upload_id = None;
        match result {
            Ok(()) => tracing::debug!(key = %self.key, "multipart upload aborted"),
            Err(e) if e.is_retryable() => spawn_abort(self.s3.clone(), self.key.clone(), id),
            Err(e) => self.s3.abort_failed(&self.key, &id, &e),
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.upload_id.take() {
            spawn_abort(self.s3.clone(), std::mem::take(&mut self.key), id);
        }
    }
}

fn spawn_abort(s3: S3, key: String, upload_id: String) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let what = format!("aborting the upload of {key}");
        match retry(&what, || s3.abort(&key, &upload_id)).await {
            Ok(()) => tracing::debug!(%key, "multipart upload aborted"),
            Err(e) => s3.abort_failed(&key, &upload_id, &e),
        }
    });
}

/// Cuts a byte stream into parts of a requested size.
struct PartReader {
    input: ByteStream,
    leftover: Bytes,
}

impl PartReader {
    /// The next `size` bytes; fewer only at the end of the stream.
    async fn read(&mut self, size: usize) -> io::Result<Bytes> {
        let mut part = BytesMut::new();
        loop {
            if !self.leftover.is_empty() {
                let want = size - part.len();
                if part.is_empty() && self.leftover.len() == want {
                    return Ok(std::mem::take(&mut self.leftover));
                }
                if part.capacity() == 0 {
                    part.reserve(size);
                }
                let n = want.min(self.leftover.len());
                part.extend_from_slice(&self.leftover.split_to(n));
                if part.len() == size {
                    return Ok(part.freeze());
                }
            }
            match self.input.next().await {
                Some(Ok(chunk)) => self.leftover = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(part.freeze()),
            }
        }
    }
}

/// An object being read; resumes where it broke.
struct Download {
    s3: S3,
    key: String,
    offset: u64,
    /// Size of the whole object, when the server said.
    length: Option<u64>,
    etag: Option<String>,
    body: Body,
    resumes: u32,
}

impl Download {
    async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let failure = match self.body.next().await {
                Some(Ok(b)) => {
                    if b.is_empty() {
                        continue;
                    }
                    self.offset += b.len() as u64;
                    self.resumes = 0;
                    return Ok(Some(b));
                }
                Some(Err(e)) => chain_text(&e),
                None if self.length.is_none_or(|l| self.offset >= l) => return Ok(None),
                None => "the connection closed early".to_string(),
            };
            self.resumes += 1;
            if self.resumes > ATTEMPTS {
                return Err(io::Error::other(self.s3.error(
                    "reading",
                    Some(&self.key),
                    ErrorKind::Unreachable,
                    format!("broke at byte {} {ATTEMPTS} times: {failure}", self.offset),
                )));
            }
            tracing::warn!(
                key = %self.key,
                "reading broke at byte {}: {failure}; resuming from there",
                self.offset
            );
            let what = format!("resuming {}", self.key);
            let out = retry(&what, || {
                self.s3.open(&self.key, self.offset, self.etag.as_deref())
            })
            .await
            .map_err(io::Error::other)?;
            self.body = out.body;
        }
    }
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
        validate_key(key)
            .map_err(|e| DestinationError::new(&self.name, "storing", Some(key), e))?;
        let mut input = PartReader {
            input: data,
            leftover: Bytes::new(),
        };
        let first_size = part_size(self.part_size, 1);
        let first = input
            .read(first_size as usize)
            .await
            .map_err(|e| self.input_error(key, e))?;
        if (first.len() as u64) < first_size {
            let size = first.len() as u64;
            self.put_single(key, first, self.storage_class.clone())
                .await?;
            return Ok(size);
        }
        self.put_multipart(key, first, &mut input).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream, DestinationError> {
        validate_key(key)
            .map_err(|e| DestinationError::new(&self.name, "reading", Some(key), e))?;
        let out = retry(&format!("reading {key}"), || self.open(key, 0, None)).await?;
        let download = Download {
            s3: self.clone(),
            key: key.to_string(),
            offset: 0,
            length: out.content_length.and_then(|l| u64::try_from(l).ok()),
            etag: out.e_tag,
            body: out.body,
            resumes: 0,
        };
        Ok(futures::stream::try_unfold(download, |mut d| async move {
            Ok(d.next().await?.map(|b| (b, d)))
        })
        .boxed())
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta, DestinationError>> {
        enum Page {
            First,
            Next(String),
            Done,
        }
        let s3 = self.clone();
        let prefix = prefix.to_string();
        futures::stream::try_unfold(Page::First, move |page| {
            let s3 = s3.clone();
            let prefix = prefix.clone();
            async move {
                let token = match page {
                    Page::Done => return Ok(None),
                    Page::First => None,
                    Page::Next(t) => Some(t),
                };
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
                    (Some(true), Some(t)) => Page::Next(t.to_string()),
                    _ => Page::Done,
                };
                Ok(Some((objects, next)))
            }
        })
        .map_ok(|objects| futures::stream::iter(objects.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        validate_key(key)
            .map_err(|e| DestinationError::new(&self.name, "deleting", Some(key), e))?;
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
        validate_key(key)
            .map_err(|e| DestinationError::new(&self.name, "storing", Some(key), e))?;
        // No storage class: status files must stay readable at once, also when copies
        // go to an archive class.
        self.put_single(key, data, None).await
    }

    async fn read_small_versioned(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, Version)>, DestinationError> {
        validate_key(key)
            .map_err(|e| DestinationError::new(&self.name, "reading", Some(key), e))?;
        retry(&format!("reading {key}"), || async {
            let out = match self
                .client
                .get_object()
                .bucket(&*self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    let e = self.sdk_error("reading", Some(key), e);
                    return if e.kind == ErrorKind::NotFound {
                        Ok(None)
                    } else {
                        Err(e)
                    };
                }
            };
            let version = out.e_tag.clone().map_or(Version::Unknown, Version::Known);
            let body = out.body.collect().await.map_err(|e| {
                self.error("reading", Some(key), ErrorKind::Unreachable, e.to_string())
            })?;
            Ok(Some((body.into_bytes(), version)))
        })
        .await
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
        validate_key(key)
            .map_err(|e| DestinationError::new(&self.name, "storing", Some(key), e))?;
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
        validate_key(key)
            .map_err(|e| DestinationError::new(&self.name, "sharing", Some(key), e))?;
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

/// The error kind and a secret-free message for an SDK error.
fn classify<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> (ErrorKind, String)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::ServiceError(se) = e {
        let status = se.raw().status().as_u16();
        let code = se.err().code().unwrap_or_default();
        let kind = match (status, code) {
            (_, "NoSuchKey" | "NoSuchBucket" | "NoSuchUpload" | "NotFound") | (404, _) => {
                ErrorKind::NotFound
            }
            (
                _,
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken"
                | "AllAccessDisabled",
            )
            | (401 | 403, _) => ErrorKind::PermissionDenied,
            (_, "PreconditionFailed" | "ConditionalRequestConflict") | (412, _) => {
                ErrorKind::Conflict
            }
            (_, "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable")
            | (429 | 500..=599, _) => ErrorKind::Unreachable,
            _ => ErrorKind::Other,
        };
        let msg = match (code, se.err().message()) {
            ("", _) if kind == ErrorKind::PermissionDenied => {
                format!(
                    "access denied (HTTP {status}): check the credentials and the bucket policy"
                )
            }
            ("", _) => format!("HTTP {status}"),
            (code, Some(m)) if !m.is_empty() => format!("{code}: {m} (HTTP {status})"),
            (code, _) => format!("{code} (HTTP {status})"),
        };
        return (kind, msg);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<CredentialsError>() {
            return (ErrorKind::PermissionDenied, chain_text(s));
        }
        source = s.source();
    }
    let msg = chain_text(e);
    let kind = match e {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => ErrorKind::Unreachable,
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() || d.is_other() => {
            ErrorKind::Unreachable
        }
        _ => ErrorKind::Other,
    };
    (kind, msg)
}

/// An error and its causes on one line, each cause once.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The credentials twindb takes when `[s3]` has none: AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) from the environment, else the
/// profile AWS_PROFILE (default "default") of the shared credentials file
/// (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials). Read at each request
/// the SDK signs without cached credentials, so rotated files are picked up.
#[derive(Debug)]
struct EnvironmentCredentials;

impl ProvideCredentials for EnvironmentCredentials {
    fn provide_credentials<'a>(&'a self) -> provider_future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider_future::ProvideCredentials::ready(environment_credentials())
    }
}

fn environment_credentials() -> Result<Credentials, CredentialsError> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials::new(
            id,
            secret,
            var("AWS_SESSION_TOKEN"),
            None,
            "environment",
        ));
    }
    let path = var("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| var("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials")));
    let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
    if let Some(path) = path {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let fields = profile_fields(&text, &profile);
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
            };
            if let (Some(id), Some(secret)) =
                (get("aws_access_key_id"), get("aws_secret_access_key"))
            {
                return Ok(Credentials::new(
                    id,
                    secret,
                    get("aws_session_token"),
                    None,
                    "shared credentials file",
                ));
            }
        }
    }
    Err(CredentialsError::not_loaded(format!(
        "no AWS credentials: set aws_access_key_id and aws_secret_access_key in [s3], or \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in twindbd's environment, or a \
         [{profile}] profile in the shared credentials file (SSO, assumed roles and \
         instance profiles are not supported)"
    )))
}

/// `key = value` pairs of `[profile]` in an AWS INI file; keys lowercased.
fn profile_fields(text: &str, profile: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
        assert_eq!(in_flight_limit(4, 16 << 20, 16 << 20), 4);
        assert_eq!(in_flight_limit(4, 16 << 20, 32 << 20), 2);
        assert_eq!(in_flight_limit(4, 16 << 20, 1 << 30), 1);
    }

    #[tokio::test]
    async fn part_reader_cuts_exact_parts() {
        let chunks: Vec<io::Result<Bytes>> = vec![
            Ok(Bytes::from(vec![1u8; 7])),
            Ok(Bytes::from(vec![2u8; 3])),
            Ok(Bytes::from(vec![3u8; 5])),
        ];
        let mut r = PartReader {
            input: futures::stream::iter(chunks).boxed(),
            leftover: Bytes::new(),
        };
        assert_eq!(r.read(4).await.unwrap().len(), 4);
        let b = r.read(4).await.unwrap();
        assert_eq!(&b[..], &[1, 1, 1, 2]);
        assert_eq!(r.read(10).await.unwrap().len(), 7);
        assert!(r.read(4).await.unwrap().is_empty());
    }

    #[test]
    fn profiles_are_read_from_the_shared_credentials_file() {
        let text = "[other]\naws_access_key_id = X\n\n[default]\n# c\nAWS_ACCESS_KEY_ID=AK\naws_secret_access_key = SK \n";
        let f = profile_fields(text, "default");
        assert_eq!(
            f,
            vec![
                ("aws_access_key_id".to_string(), "AK".to_string()),
                ("aws_secret_access_key".to_string(), "SK".to_string())
            ]
        );
    }
}
