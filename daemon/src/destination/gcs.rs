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
//! - `get` streams, a large object as `download_ranges` ranged GETs at once, and
//!   resumes a broken read with a ranged GET pinned to the object's generation.
//! - Tokens come from gcp_auth: the service account of `gc_credentials_file`, else
//!   Application Default Credentials. With `endpoint` and no credentials file there is
//!   no authentication at all (emulators).
//! - 429 and `rateLimitExceeded` are [`ErrorKind::Throttled`], retried with backoff.
//! - `gc_encryption_key` is sent as a customer-supplied encryption key on every request
//!   that writes or reads object data.

mod http;
mod resumable;
mod sign;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use futures::stream::BoxStream;
use gcp_auth::TokenProvider;
use http_body_util::Full;
use hyper::Method;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use self::http::http_client;
pub use self::sign::sign_url;
use super::client;
use super::retry::retry_as as retry;
use super::{BackendError, Destination, DestinationError, ErrorKind, Key, ObjectMeta, Version};
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
    /// How large objects are read: `[destination] download_ranges` at once.
    download: client::Parallel,
}

impl fmt::Debug for Gcs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gcs").field("name", &self.name).finish()
    }
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
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
            download: client::Parallel::new(c.download_ranges),
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
        let key = Key::checked(&self.name, "reading", key)?;
        client::read_versioned(self, &self.name, &key).await
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
        let written = self.put_media_if(key, data.clone(), Some(generation)).await;
        client::unless_ours(self, key, &data, written).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream, DestinationError> {
        let key = Key::checked(&self.name, "reading", key)?;
        client::download(self.clone(), &self.name, key, self.download).await
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
}
