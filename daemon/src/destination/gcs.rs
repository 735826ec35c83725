//! Google Cloud Storage through its JSON API, over hyper 1 + rustls (ring): the same
//! HTTP and TLS stack as the S3 client. Only its requests are here; the upload driver,
//! resumable download and paginator are [`super::client`]'s.
//!
//! - `put`: a stream smaller than one chunk is one media upload; a larger one is a
//!   resumable upload sent chunk by chunk (multiples of 256 KiB), one chunk in flight
//!   while the next is read, so memory stays at two chunks. A transient failure asks
//!   the session how much it kept (308 + Range) and resends only the rest. The object
//!   appears only when the last chunk finalizes it; a failed or cancelled upload
//!   deletes its session.
//! - `get` streams and resumes a broken read with a ranged GET pinned to the object's
//!   generation.
//! - Tokens come from gcp_auth: the service account of `gc_credentials_file`, else
//!   Application Default Credentials. With `endpoint` and no credentials file there is
//!   no authentication at all (emulators).
//! - 429 and `rateLimitExceeded` are [`ErrorKind::Throttled`], retried with backoff.
//! - `gc_encryption_key` is sent as a customer-supplied encryption key on every request
//!   that writes or reads object data.

mod sign;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::{Buf, Bytes};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use gcp_auth::TokenProvider;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

pub use self::sign::sign_url;
use super::client::{self, ByteRange, Multipart, Opened, PartInfo, RangeRead};
use super::retry::retry_as as retry;
use super::{
    chain_text, BackendError, Destination, DestinationError, ErrorKind, Key, ObjectMeta, Version,
};
use crate::config::GcsConfig;
use crate::pipeline::ByteStream;

const PUBLIC_ENDPOINT: &str = "https://storage.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// Longest wait for an answer to one request (a chunk upload included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Everything but RFC 3986's unreserved characters is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Clone)]
pub struct Gcs {
    http: HttpClient,
    base: Arc<str>,
    bucket: Arc<str>,
    name: Arc<str>,
    credentials_file: Option<PathBuf>,
    /// No tokens at all: an emulator.
    anonymous: bool,
    tokens: Arc<OnceCell<Arc<dyn TokenProvider>>>,
    /// (key, sha256 of the key), both base64, for the x-goog-encryption-* headers.
    encryption: Option<Arc<(String, String)>>,
    chunk_size: usize,
}

impl fmt::Debug for Gcs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gcs").field("name", &self.name).finish()
    }
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// An HTTPS (or plain HTTP, for emulators) client; ring for crypto, the system's roots.
fn http_client() -> HttpClient {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("no CA certificates found ({e}): only http:// endpoints will work");
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(Duration::from_secs(10)));
    tcp.set_nodelay(true);
    let connector = tls.https_or_http().enable_http1().wrap_connector(tcp);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// What a resumable session says about an upload.
enum Persisted {
    /// Bytes `0..n` are stored.
    Upto(u64),
    /// The object is finalized.
    Complete,
}

impl Gcs {
    pub fn new(c: &GcsConfig) -> Self {
        let encryption = c.encryption_key.as_ref().and_then(|k| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(k.expose().trim())
                .ok()?;
            let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&raw));
            Some(Arc::new((k.expose().trim().to_string(), sha)))
        });
        let base = c.endpoint.as_deref().unwrap_or(PUBLIC_ENDPOINT);
        let name = match &c.endpoint {
            Some(ep) => format!("gs://{} at {ep}", c.bucket),
            None => format!("gs://{}", c.bucket),
        };
        Gcs {
            http: http_client(),
            base: base.into(),
            bucket: c.bucket.as_str().into(),
            name: name.into(),
            credentials_file: c.credentials_file.clone(),
            anonymous: c.endpoint.is_some() && c.credentials_file.is_none(),
            tokens: Arc::new(OnceCell::new()),
            encryption,
            chunk_size: c.chunk_size as usize,
        }
    }

    fn error(
        &self,
        action: &'static str,
        key: Option<&str>,
        kind: ErrorKind,
        msg: impl Into<String>,
    ) -> DestinationError {
        let cause = BackendError::new(msg);
        DestinationError::with_cause(&self.name, action, key, kind, Box::new(cause))
    }

    /// `err` behind `msg`, kept as the source.
    fn error_from(
        &self,
        action: &'static str,
        key: Option<&str>,
        kind: ErrorKind,
        msg: String,
        err: impl Into<super::BoxError>,
    ) -> DestinationError {
        let cause = BackendError::caused_by(msg, err);
        DestinationError::with_cause(&self.name, action, key, kind, Box::new(cause))
    }

    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            enc(&self.bucket),
            enc(key)
        )
    }

    async fn token(&self, action: &'static str) -> Result<Option<String>, DestinationError> {
        if self.anonymous {
            return Ok(None);
        }
        let auth_error = |e: gcp_auth::Error| {
            let kind = match &e {
                gcp_auth::Error::Other("HTTP request failed", _) | gcp_auth::Error::Http(..) => {
                    ErrorKind::Unreachable
                }
                _ => ErrorKind::PermissionDenied,
            };
            let msg = format!("getting an access token: {}", chain_text(&e));
            self.error_from(action, None, kind, msg, e)
        };
        let provider = self
            .tokens
            .get_or_try_init(|| async {
                let provider: Arc<dyn TokenProvider> = match &self.credentials_file {
                    Some(path) => Arc::new(
                        gcp_auth::CustomServiceAccount::from_file(path).map_err(auth_error)?,
                    ),
                    None => gcp_auth::provider().await.map_err(auth_error)?,
                };
                Ok::<_, DestinationError>(provider)
            })
            .await?;
        let token = provider.token(&[SCOPE]).await.map_err(auth_error)?;
        Ok(Some(token.as_str().to_string()))
    }

    /// Sends one request; `encrypted` adds the customer-supplied key headers.
    async fn send(
        &self,
        action: &'static str,
        key: Option<&str>,
        mut req: hyper::http::request::Builder,
        body: Bytes,
        encrypted: bool,
    ) -> Result<Response<Incoming>, DestinationError> {
        if let Some(token) = self.token(action).await? {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        if encrypted {
            if let Some(k) = &self.encryption {
                req = req
                    .header("x-goog-encryption-algorithm", "AES256")
                    .header("x-goog-encryption-key", &k.0)
                    .header("x-goog-encryption-key-sha256", &k.1);
            }
        }
        let req = req
            .header("content-length", body.len())
            .body(Full::new(body))
            .map_err(|e| self.error(action, key, ErrorKind::Other, e.to_string()))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                Err(self.error_from(action, key, ErrorKind::Unreachable, chain_text(&e), e))
            }
            Err(_) => Err(self.error(
                action,
                key,
                ErrorKind::Unreachable,
                format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            )),
        }
    }

    /// The error for a response that is not a success, with the server's message.
    async fn status_error(
        &self,
        action: &'static str,
        key: Option<&str>,
        resp: Response<Incoming>,
    ) -> DestinationError {
        let status = resp.status();
        let body = read_limited(resp.into_body(), 64 << 10).await;
        let (kind, message) = classify(status.as_u16(), &body);
        let msg = if message.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("{message} (HTTP {status})")
        };
        self.error(action, key, kind, msg)
    }

    /// One request that must succeed with 2xx; returns the body.
    async fn call(
        &self,
        action: &'static str,
        key: Option<&str>,
        method: Method,
        url: &str,
        body: Bytes,
        encrypted: bool,
    ) -> Result<Bytes, DestinationError> {
        let req = Request::builder().method(method).uri(url);
        let resp = self.send(action, key, req, body, encrypted).await?;
        if !resp.status().is_success() {
            return Err(self.status_error(action, key, resp).await);
        }
        resp.into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| self.error_from(action, key, ErrorKind::Unreachable, e.to_string(), e))
    }

    async fn put_media(&self, key: &str, data: Bytes) -> Result<(), DestinationError> {
        self.put_media_if(key, data, None).await
    }

    /// A single-request upload; with `generation`, only over that generation of the
    /// object (`0`: only when there is none), else HTTP 412.
    async fn put_media_if(
        &self,
        key: &str,
        data: Bytes,
        generation: Option<&str>,
    ) -> Result<(), DestinationError> {
        let mut url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.base,
            enc(&self.bucket),
            enc(key)
        );
        if let Some(g) = generation {
            url.push_str(&format!("&ifGenerationMatch={}", enc(g)));
        }
        retry(&format!("storing {key}"), || {
            self.call("storing", Some(key), Method::POST, &url, data.clone(), true)
        })
        .await
        .map(|_| ())
    }

    async fn start_session(&self, key: &str) -> Result<String, DestinationError> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&name={}",
            self.base,
            enc(&self.bucket),
            enc(key)
        );
        retry(&format!("starting the upload of {key}"), || async {
            let req = Request::builder()
                .method(Method::POST)
                .uri(&url)
                .header("x-upload-content-type", "application/octet-stream");
            let resp = self
                .send("storing", Some(key), req, Bytes::new(), true)
                .await?;
            if !resp.status().is_success() {
                return Err(self.status_error("storing", Some(key), resp).await);
            }
            resp.headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| {
                    self.error(
                        "storing",
                        Some(key),
                        ErrorKind::Other,
                        "the resumable upload has no session URI (Location header)",
                    )
                })
        })
        .await
    }

    /// Reads a 308's `Range: bytes=0-N` (none: nothing kept yet).
    fn kept(resp: &Response<Incoming>) -> u64 {
        resp.headers()
            .get("range")
            .and_then(|r| r.to_str().ok())
            .and_then(|r| r.rsplit('-').next())
            .and_then(|n| n.trim().parse::<u64>().ok())
            .map_or(0, |last| last + 1)
    }

    async fn persisted(&self, key: &str, session: &str) -> Result<Persisted, DestinationError> {
        let req = Request::builder()
            .method(Method::PUT)
            .uri(session)
            .header("content-range", "bytes */*");
        let resp = self
            .send("storing", Some(key), req, Bytes::new(), true)
            .await?;
        match resp.status().as_u16() {
            200 | 201 => Ok(Persisted::Complete),
            308 => Ok(Persisted::Upto(Self::kept(&resp))),
            _ => Err(self.status_error("storing", Some(key), resp).await),
        }
    }

    /// Sends `chunk`, which starts at byte `start` of the object; `last` finalizes.
    async fn send_chunk(
        &self,
        key: &str,
        session: &str,
        start: u64,
        chunk: Bytes,
        last: bool,
    ) -> Result<(), DestinationError> {
        let end = start + chunk.len() as u64;
        let attempts = AtomicU32::new(0);
        retry(
            &format!("uploading bytes {start}..{end} of {key}"),
            || async {
                let mut from = start;
                if attempts.fetch_add(1, Ordering::SeqCst) > 0 {
                    // The failed attempt may have stored part of the chunk, or all of it.
                    match self.persisted(key, session).await? {
                        Persisted::Complete if last => return Ok(()),
                        Persisted::Complete => {
                            return Err(self.error(
                                "storing",
                                Some(key),
                                ErrorKind::Other,
                                "the upload was finalized before its end",
                            ))
                        }
                        Persisted::Upto(n) => from = n.max(start),
                    }
                }
                loop {
                    if from > end || (from == end && !last) {
                        return Ok(());
                    }
                    let total = if last {
                        end.to_string()
                    } else {
                        "*".to_string()
                    };
                    let range = if from == end {
                        format!("bytes */{total}")
                    } else {
                        format!("bytes {from}-{}/{total}", end - 1)
                    };
                    let body = chunk.slice((from - start) as usize..);
                    let req = Request::builder()
                        .method(Method::PUT)
                        .uri(session)
                        .header("content-range", range);
                    let resp = self.send("storing", Some(key), req, body, true).await?;
                    match resp.status().as_u16() {
                        200 | 201 if last => return Ok(()),
                        308 if !(last && from == end) => {
                            let kept = Self::kept(&resp);
                            if kept <= from {
                                return Err(self.error(
                                    "storing",
                                    Some(key),
                                    ErrorKind::Unreachable,
                                    format!("the server kept nothing of bytes {from}..{end}"),
                                ));
                            }
                            // Usually all of it; otherwise send the rest.
                            from = kept;
                        }
                        _ => return Err(self.status_error("storing", Some(key), resp).await),
                    }
                }
            },
        )
        .await
    }
}

/// A resumable upload: the chunks go in order, one in flight while the next is read;
/// the last one (empty when the stream is a whole number of chunks) finalizes it.
#[async_trait]
impl Multipart for Gcs {
    /// The session URI.
    type Upload = String;
    type Part = ();

    fn destination(&self) -> &str {
        &self.name
    }

    fn part_size(&self, _number: u32) -> usize {
        self.chunk_size
    }

    fn in_flight(&self, _number: u32) -> usize {
        1
    }

    /// An empty object goes the resumable way (`bytes */0`): gcp-storage-emulator
    /// fails an empty media upload, real GCS takes both.
    fn fits_one_request(&self, first: &Bytes) -> bool {
        !first.is_empty()
    }

    fn empty_last_part(&self) -> bool {
        true
    }

    async fn put_whole(&self, key: &Key, data: Bytes) -> Result<(), DestinationError> {
        self.put_media(key, data).await
    }

    async fn start_upload(&self, key: &Key) -> Result<String, DestinationError> {
        self.start_session(key).await
    }

    async fn put_part(
        &self,
        key: &Key,
        session: &String,
        part: PartInfo,
        data: Bytes,
    ) -> Result<(), DestinationError> {
        self.send_chunk(key, session, part.offset, data, part.last)
            .await
    }

    async fn complete_upload(
        &self,
        _key: &Key,
        _session: &String,
        _parts: Vec<()>,
    ) -> Result<(), DestinationError> {
        Ok(())
    }

    async fn abort_upload(&self, key: &Key, session: &String) -> Result<(), DestinationError> {
        let req = Request::builder().method(Method::DELETE).uri(session);
        // GCS answers 499 to a cancelled session.
        let resp = self
            .send("cancelling an upload", Some(key), req, Bytes::new(), false)
            .await?;
        tracing::debug!(status = %resp.status(), "resumable upload cancelled");
        Ok(())
    }

    fn abort_failed(&self, _key: &Key, _session: &String, e: &DestinationError) {
        tracing::debug!("could not cancel a resumable upload ({e}); GCS drops it after a week");
    }
}

/// The error kind of a JSON API answer and the server's message (else the start of
/// its body). Rate limits come as 429, or as 403 with reason `rateLimitExceeded`.
fn classify(status: u16, body: &[u8]) -> (ErrorKind, String) {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let error = json.as_ref().map(|v| &v["error"]);
    let reason = error.and_then(|e| e["errors"][0]["reason"].as_str());
    let kind = match (status, reason) {
        (_, Some("rateLimitExceeded" | "userRateLimitExceeded")) | (429, _) => ErrorKind::Throttled,
        (404, _) => ErrorKind::NotFound,
        (401 | 403, _) => ErrorKind::PermissionDenied,
        (412, _) => ErrorKind::Conflict,
        (408 | 500..=599, _) => ErrorKind::Unreachable,
        _ => ErrorKind::Other,
    };
    let message = error
        .and_then(|e| e["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(300)
                .collect()
        });
    (kind, message)
}

async fn read_limited(mut body: Incoming, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(mut data) = frame.into_data() {
                    let n = data.remaining();
                    out.extend_from_slice(&data.copy_to_bytes(n));
                }
            }
            _ => break,
        }
    }
    out.truncate(limit);
    out
}

#[async_trait]
impl RangeRead for Gcs {
    async fn open_range(
        &self,
        key: &Key,
        range: ByteRange,
        generation: Option<&str>,
    ) -> Result<Opened, DestinationError> {
        let resp = self.open(key, range, generation).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(Opened {
            length: header("content-length").and_then(|l| l.parse().ok()),
            version: header("x-goog-generation"),
            body: resp
                .into_body()
                .into_data_stream()
                .map_err(Into::into)
                .boxed(),
        })
    }
}

impl Gcs {
    async fn open(
        &self,
        key: &str,
        range: ByteRange,
        generation: Option<&str>,
    ) -> Result<Response<Incoming>, DestinationError> {
        let mut url = format!("{}?alt=media", self.object_url(key));
        if let Some(g) = generation {
            // A resumed read must continue the same object, not a newer one.
            url.push_str(&format!("&ifGenerationMatch={g}"));
        }
        let mut req = Request::builder().method(Method::GET).uri(url);
        if let Some(range) = range.header() {
            req = req.header("range", range);
        }
        let resp = self
            .send("reading", Some(key), req, Bytes::new(), true)
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error("reading", Some(key), resp).await);
        }
        Ok(resp)
    }
}

#[derive(serde::Deserialize)]
struct ListPage {
    #[serde(default)]
    items: Vec<ListItem>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
}

#[derive(serde::Deserialize)]
struct ListItem {
    name: String,
    /// A decimal string in the JSON API.
    #[serde(default)]
    size: Option<serde_json::Value>,
}

#[async_trait]
impl Destination for Gcs {
    fn name(&self) -> String {
        self.name.to_string()
    }

    async fn check(&self) -> Result<(), DestinationError> {
        // Listing needs storage.objects.list, which every role that can back up has;
        // reading the bucket's own metadata would need storage.buckets.get, which
        // roles/storage.objectAdmin lacks.
        let url = format!(
            "{}/storage/v1/b/{}/o?maxResults=1&fields=nextPageToken",
            self.base,
            enc(&self.bucket)
        );
        retry("checking the bucket", || async {
            match self
                .call("checking", None, Method::GET, &url, Bytes::new(), false)
                .await
            {
                Err(e) if e.kind == ErrorKind::NotFound => Err(self.error(
                    "checking",
                    None,
                    ErrorKind::NotFound,
                    format!("the bucket {} does not exist", self.bucket),
                )),
                other => other.map(|_| ()),
            }
        })
        .await
    }

    async fn put(&self, key: &str, data: ByteStream) -> Result<u64, DestinationError> {
        let key = Key::checked(&self.name, "storing", key)?;
        client::upload(self, &key, data).await
    }

    async fn read_small_versioned(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, Version)>, DestinationError> {
        Key::checked(&self.name, "reading", key)?;
        retry(&format!("reading {key}"), || async {
            let resp = match self.open(key, ByteRange::from(0), None).await {
                Ok(r) => r,
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let version = resp
                .headers()
                .get("x-goog-generation")
                .and_then(|v| v.to_str().ok())
                .map_or(Version::Unknown, |g| Version::Known(g.to_string()));
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| {
                    self.error("reading", Some(key), ErrorKind::Unreachable, e.to_string())
                })?;
            Ok(Some((body, version)))
        })
        .await
    }

    /// `ifGenerationMatch` with the generation read (`0` for a new object). A 412 after
    /// a retry may be our own first attempt, which landed: told apart by the bytes.
    async fn write_small_if(
        &self,
        key: &str,
        data: Bytes,
        expect: Option<&Version>,
    ) -> Result<(), DestinationError> {
        Key::checked(&self.name, "storing", key)?;
        let generation = match expect {
            Some(Version::Unknown) => return self.put_media(key, data).await,
            Some(Version::Known(g)) => g.as_str(),
            None => "0",
        };
        match self.put_media_if(key, data.clone(), Some(generation)).await {
            Err(e) if e.kind == ErrorKind::Conflict => {
                match self.read_small_versioned(key).await? {
                    Some((now, _)) if now == data => Ok(()),
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    async fn get(&self, key: &str) -> Result<ByteStream, DestinationError> {
        let key = Key::checked(&self.name, "reading", key)?;
        client::download(self.clone(), &self.name, key).await
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta, DestinationError>> {
        let gcs = self.clone();
        let prefix = prefix.to_string();
        client::paginate(move |token: Option<String>| {
            let (gcs, prefix) = (gcs.clone(), prefix.clone());
            async move {
                let mut url = format!(
                    "{}/storage/v1/b/{}/o?prefix={}&fields=items(name,size),nextPageToken",
                    gcs.base,
                    enc(&gcs.bucket),
                    enc(&prefix)
                );
                if let Some(t) = token {
                    url.push_str(&format!("&pageToken={}", enc(&t)));
                }
                let body = retry(&format!("listing {prefix}"), || {
                    gcs.call(
                        "listing",
                        Some(&prefix),
                        Method::GET,
                        &url,
                        Bytes::new(),
                        false,
                    )
                })
                .await?;
                let page: ListPage = serde_json::from_slice(&body).map_err(|e| {
                    gcs.error(
                        "listing",
                        Some(&prefix),
                        ErrorKind::Other,
                        format!("unexpected answer: {e}"),
                    )
                })?;
                let objects: Vec<ObjectMeta> = page
                    .items
                    .into_iter()
                    .map(|i| ObjectMeta {
                        key: i.name,
                        size: match i.size {
                            Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
                            Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
                            _ => 0,
                        },
                    })
                    .collect();
                let next = page.next_page_token.filter(|t| !t.is_empty());
                Ok((objects, next))
            }
        })
    }

    async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        Key::checked(&self.name, "deleting", key)?;
        let url = self.object_url(key);
        retry(&format!("deleting {key}"), || async {
            match self
                .call(
                    "deleting",
                    Some(key),
                    Method::DELETE,
                    &url,
                    Bytes::new(),
                    false,
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn share(&self, key: &str, expires: Duration) -> Result<String, DestinationError> {
        Key::checked(&self.name, "sharing", key)?;
        if self.encryption.is_some() {
            return Err(self.error(
                "sharing",
                Some(key),
                ErrorKind::Other,
                "copies encrypted with gc_encryption_key cannot be shared by URL: whoever \
                 downloads them would need the key",
            ));
        }
        let Some(path) = &self.credentials_file else {
            return Err(self.error(
                "sharing",
                Some(key),
                ErrorKind::Other,
                "signing a URL needs a service account key: set gc_credentials_file",
            ));
        };
        // A link to nothing helps no one: make sure the object is there.
        let url = self.object_url(key);
        retry(&format!("sharing {key}"), || {
            self.call("sharing", Some(key), Method::GET, &url, Bytes::new(), false)
        })
        .await?;
        let json = std::fs::read_to_string(path)
            .map_err(|e| DestinationError::new(&self.name, "sharing", Some(key), e))?;
        let email = serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v["client_email"].as_str().map(str::to_string))
            .ok_or_else(|| {
                self.error(
                    "sharing",
                    Some(key),
                    ErrorKind::Other,
                    format!("{} has no client_email", path.display()),
                )
            })?;
        let account = gcp_auth::CustomServiceAccount::from_json(&json).map_err(|e| {
            self.error(
                "sharing",
                Some(key),
                ErrorKind::PermissionDenied,
                e.to_string(),
            )
        })?;
        sign_url(
            &self.base,
            &self.bucket,
            key,
            &email,
            expires,
            chrono::Utc::now(),
            |data| account.signer().sign(data),
        )
        .map_err(|e| self.error("sharing", Some(key), ErrorKind::Other, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_escaped_whole() {
        assert_eq!(enc("a/b c+d"), "a%2Fb%20c%2Bd");
    }

    #[test]
    fn rate_limits_are_throttled_not_unreachable() {
        let reason =
            |r: &str| format!(r#"{{"error":{{"errors":[{{"reason":"{r}"}}],"message":"m"}}}}"#);
        for (status, body, want) in [
            (429, String::new(), ErrorKind::Throttled),
            (403, reason("rateLimitExceeded"), ErrorKind::Throttled),
            (403, reason("userRateLimitExceeded"), ErrorKind::Throttled),
            (403, reason("forbidden"), ErrorKind::PermissionDenied),
            (503, String::new(), ErrorKind::Unreachable),
            (408, String::new(), ErrorKind::Unreachable),
            (404, String::new(), ErrorKind::NotFound),
            (412, String::new(), ErrorKind::Conflict),
            (400, String::new(), ErrorKind::Other),
        ] {
            let (kind, _) = classify(status, body.as_bytes());
            assert_eq!(kind, want, "{status} {body}");
        }
        let (_, msg) = classify(429, reason("rateLimitExceeded").as_bytes());
        assert_eq!(msg, "m");
    }
}
