//! Azure Blob Storage through object_store (Apache Arrow's, `azure-base` + `ring`), its
//! requests sent through our hyper 1 + rustls client ([`http`]). Only the Azure calls
//! are here; the upload driver, resumable download and paginator are
//! [`super::client`]'s, retries are [`super::retry`]'s (object_store's own are off).
//!
//! - `put`: a stream shorter than one block is one Put Blob; a longer one is Put Block
//!   per `block_size` block, `upload_concurrency` in flight, and one Put Block List at
//!   the end. The blob appears only with the block list: a failed or cancelled upload
//!   leaves uncommitted blocks that nothing lists and Azure deletes after 7 days.
//! - `get` streams, a large blob as `download_ranges` ranged GETs at once, each pinned
//!   to the first answer's ETag (If-Match), resumed where it broke.
//! - Conditional writes (status store) use If-None-Match: * and If-Match: ETag.
//! - `share` is a service SAS, read-only, for one blob, signed with the account key.
//! - Blob names are `remote_path/` + the key.

mod errors;
mod http;
mod tier;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};

use super::client::{self, ByteRange, Opened, PartInfo};
use super::retry::retry_as as retry;
use super::{BackendError, Destination, DestinationError, ErrorKind, Key, ObjectMeta, Version};
use crate::config::AzConfig;
use crate::pipeline::ByteStream;

/// Azure's limit on the blocks of one blob.
const MAX_BLOCKS: u32 = 50_000;
/// Blocks double every 10,000: 16 MiB blocks store 4.8 TiB within 50,000.
const BLOCKS_PER_DOUBLING: u32 = 10_000;
const MAX_BLOCK_SIZE: u64 = crate::config::AZ_MAX_BLOCK_SIZE;
/// Blobs asked for per listing request (Azure's largest page).
const PAGE: usize = 5000;

#[derive(Clone)]
pub struct Az {
    store: Arc<MicrosoftAzure>,
    name: Arc<str>,
    account: Arc<str>,
    container: Arc<str>,
    /// `remote_path/`, or empty.
    root: Arc<str>,
    block_size: u64,
    concurrency: usize,
    /// How large objects are read: `[destination] download_ranges` at once.
    download: client::Parallel,
    /// `[az] access_tier`: set on every copy once stored.
    tier: Option<Arc<tier::Tier>>,
}

impl fmt::Debug for Az {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Az").field("name", &self.name).finish()
    }
}

impl Az {
    pub fn new(c: &AzConfig) -> Self {
        let public = format!("https://{}.blob.core.windows.net", c.account);
        let mut name = format!("az://{}/{}", c.account, c.container);
        if !c.remote_path.is_empty() {
            name = format!("{name}/{}", c.remote_path);
        }
        if c.blob_endpoint != public {
            name = format!("{name} at {}", c.blob_endpoint);
        }
        let retry_off = RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        };
        let store = MicrosoftAzureBuilder::new()
            .with_account(&c.account)
            .with_access_key(c.account_key.expose())
            .with_container_name(&c.container)
            .with_endpoint(c.blob_endpoint.clone())
            .with_allow_http(true)
            .with_retry(retry_off)
            .with_http_connector(http::Connector)
            .build();
        // Every input was checked by the config; a failure here is a bug.
        let store = store.expect("the [az] config was validated");
        Az {
            store: Arc::new(store),
            name: name.into(),
            account: c.account.as_str().into(),
            container: c.container.as_str().into(),
            root: if c.remote_path.is_empty() {
                "".into()
            } else {
                format!("{}/", c.remote_path).into()
            },
            block_size: c.block_size,
            concurrency: c.upload_concurrency,
            download: client::Parallel::new(c.download_ranges),
            tier: c.access_tier.map(|t| {
                Arc::new(tier::Tier::new(
                    t,
                    &c.account,
                    c.account_key.expose(),
                    &c.blob_endpoint,
                    &c.container,
                ))
            }),
        }
    }

    /// The blob of `key`, its name as it is: `Path::parse` keeps '%', '#', '[', '~'...
    /// where `Path::from` would percent-encode them into another name than TwinDB's.
    fn path(&self, action: &'static str, key: &str) -> Result<Path, DestinationError> {
        Path::parse(format!("{}{key}", self.root)).map_err(|e| {
            let cause = BackendError::caused_by(format!("not a blob name: {e}"), e);
            DestinationError::with_cause(
                &self.name,
                action,
                Some(key),
                ErrorKind::Other,
                Box::new(cause),
            )
        })
    }

    /// `e` as a [`DestinationError`] of `action` on `key`.
    fn error(
        &self,
        action: &'static str,
        key: Option<&str>,
        e: object_store::Error,
    ) -> DestinationError {
        let kind = errors::classify(&e);
        let msg = match (kind, key) {
            (ErrorKind::NotFound, None) => format!(
                "the container {:?} does not exist in the storage account {:?}",
                self.container, self.account
            ),
            _ => errors::message(&e, kind, &self.account),
        };
        let cause = BackendError::caused_by(msg, e);
        DestinationError::with_cause(&self.name, action, key, kind, Box::new(cause))
    }

    async fn put_opts(
        &self,
        key: &str,
        data: Bytes,
        mode: PutMode,
    ) -> Result<(), DestinationError> {
        let path = self.path("storing", key)?;
        retry(&format!("storing {key}"), || async {
            let opts = PutOptions {
                mode: mode.clone(),
                ..PutOptions::default()
            };
            self.store
                .put_opts(&path, PutPayload::from_bytes(data.clone()), opts)
                .await
                .map(|_| ())
                .map_err(|e| self.error("storing", Some(key), e))
        })
        .await
    }
}

/// Size of block `number` (1-based) when the first blocks are `base` bytes.
fn block_size(base: u64, number: u32) -> u64 {
    let doublings = ((number.max(1) - 1) / BLOCKS_PER_DOUBLING).min(30);
    base.saturating_mul(1 << doublings).min(MAX_BLOCK_SIZE)
}

#[async_trait]
impl client::Multipart for Az {
    /// Azure has no upload id: the blocks wait, uncommitted, under the blob's name.
    type Upload = ();
    type Part = PartId;

    fn destination(&self) -> &str {
        &self.name
    }

    fn part_size(&self, number: u32) -> usize {
        block_size(self.block_size, number) as usize
    }

    fn in_flight(&self, number: u32) -> usize {
        client::in_flight_limit(
            self.concurrency,
            self.block_size,
            block_size(self.block_size, number),
        )
    }

    fn max_parts(&self) -> u32 {
        MAX_BLOCKS
    }

    fn too_many_parts(&self) -> String {
        format!(
            "the stream is larger than Azure's {MAX_BLOCKS} blocks allow with block_size = {} \
             bytes; raise block_size",
            self.block_size
        )
    }

    async fn put_whole(&self, key: &Key, data: Bytes) -> Result<(), DestinationError> {
        self.put_opts(key, data, PutMode::Overwrite).await
    }

    async fn start_upload(&self, _: &Key) -> Result<(), DestinationError> {
        Ok(())
    }

    /// Each attempt stores a block under a new id; only the ids returned are committed,
    /// so a retried block never doubles.
    async fn put_part(
        &self,
        key: &Key,
        _: &(),
        part: PartInfo,
        data: Bytes,
    ) -> Result<PartId, DestinationError> {
        let path = self.path("storing", key)?;
        let id = String::new();
        let index = part.number as usize - 1;
        retry(
            &format!("storing block {} of {key}", part.number),
            || async {
                self.store
                    .put_part(&path, &id, index, PutPayload::from_bytes(data.clone()))
                    .await
                    .map_err(|e| self.error("storing", Some(key), e))
            },
        )
        .await
    }

    async fn complete_upload(
        &self,
        key: &Key,
        _: &(),
        parts: Vec<PartId>,
    ) -> Result<(), DestinationError> {
        let path = self.path("storing", key)?;
        let id = String::new();
        retry(&format!("committing the blocks of {key}"), || async {
            self.store
                .complete_multipart(&path, &id, parts.clone())
                .await
                .map(|_| ())
                .map_err(|e| self.error("storing", Some(key), e))
        })
        .await
    }

    /// Uncommitted blocks cannot be deleted one by one: Azure drops them after 7 days,
    /// and they are never listed meanwhile.
    async fn abort_upload(&self, _: &Key, _: &()) -> Result<(), DestinationError> {
        Ok(())
    }
}

#[async_trait]
impl client::RangeRead for Az {
    async fn open_range(
        &self,
        key: &Key,
        range: ByteRange,
        version: Option<&str>,
    ) -> Result<Opened, DestinationError> {
        let range = match (range.start, range.end) {
            (0, None) => None,
            (s, None) => Some(GetRange::Offset(s)),
            (s, Some(e)) => Some(GetRange::Bounded(s..e)),
        };
        let opts = GetOptions {
            if_match: version.map(str::to_string),
            range,
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&self.path("reading", key)?, opts)
            .await
            .map_err(|e| self.error("reading", Some(key), e))?;
        let length = Some(got.range.end - got.range.start);
        let version = got.meta.e_tag.clone();
        let body = got
            .into_stream()
            .map_err(|e| Box::new(e) as super::BoxError)
            .boxed();
        Ok(Opened {
            body,
            length,
            version,
        })
    }
}

#[async_trait]
impl Destination for Az {
    fn name(&self) -> String {
        self.name.to_string()
    }

    /// One listing request of at most one blob: the container exists and the key is
    /// accepted.
    async fn check(&self) -> Result<(), DestinationError> {
        retry("checking the container", || async {
            let opts = PaginatedListOptions {
                max_keys: Some(1),
                ..PaginatedListOptions::default()
            };
            self.store
                .list_paginated(Some(&self.root), opts)
                .await
                .map(|_| ())
                .map_err(|e| self.error("checking", None, e))
        })
        .await
    }

    async fn put(&self, key: &str, data: ByteStream) -> Result<u64, DestinationError> {
        let key = Key::checked(&self.name, "storing", key)?;
        let size = client::upload(self, &key, data).await?;
        if let Some(t) = &self.tier {
            // After the commit: the blob exists only once its block list is. Status
            // files are written by put_if and keep the account's default tier.
            let name = format!("{}{key}", self.root);
            retry(&format!("setting the tier of {key}"), || {
                t.set(&self.name, &key, &name)
            })
            .await?;
        }
        Ok(size)
    }

    async fn get(&self, key: &str) -> Result<ByteStream, DestinationError> {
        let key = Key::checked(&self.name, "reading", key)?;
        client::download(self.clone(), &self.name, key, self.download).await
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<ObjectMeta, DestinationError>> {
        let az = self.clone();
        let prefix = prefix.to_string();
        client::paginate(move |token: Option<String>| {
            let (az, prefix) = (az.clone(), prefix.clone());
            async move {
                let full = format!("{}{prefix}", az.root);
                // object_store drops a blob named exactly the prefix asked for: ask for
                // one character less, keep what starts with the whole prefix.
                let mut asked = full.clone();
                asked.pop();
                let page = retry(&format!("listing {prefix}"), || async {
                    let opts = PaginatedListOptions {
                        max_keys: Some(PAGE),
                        page_token: token.clone(),
                        ..PaginatedListOptions::default()
                    };
                    az.store
                        .list_paginated(Some(&asked), opts)
                        .await
                        .map_err(|e| az.error("listing", Some(&prefix), e))
                })
                .await?;
                let objects = page
                    .result
                    .objects
                    .into_iter()
                    .filter(|o| o.location.as_ref().starts_with(&full))
                    .filter_map(|o| {
                        let key = o.location.as_ref().strip_prefix(&*az.root)?.to_string();
                        Some(ObjectMeta { key, size: o.size })
                    })
                    .collect();
                Ok((objects, page.page_token.filter(|t| !t.is_empty())))
            }
        })
    }

    async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        Key::checked(&self.name, "deleting", key)?;
        let path = self.path("deleting", key)?;
        retry(&format!("deleting {key}"), || async {
            match self.store.delete(&path).await {
                Ok(()) => Ok(()),
                Err(e) => match self.error("deleting", Some(key), e) {
                    e if e.kind == ErrorKind::NotFound => Ok(()),
                    e => Err(e),
                },
            }
        })
        .await
    }

    async fn write_small(&self, key: &str, data: Bytes) -> Result<(), DestinationError> {
        Key::checked(&self.name, "storing", key)?;
        self.put_opts(key, data, PutMode::Overwrite).await
    }

    async fn read_small_versioned(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, Version)>, DestinationError> {
        let key = Key::checked(&self.name, "reading", key)?;
        client::read_versioned(self, &self.name, &key).await
    }

    /// If-None-Match: * for a new blob, If-Match: ETag over the one read. A conflict
    /// after a retry may be our own first attempt, which landed: told apart by the bytes.
    async fn write_small_if(
        &self,
        key: &str,
        data: Bytes,
        expect: Option<&Version>,
    ) -> Result<(), DestinationError> {
        Key::checked(&self.name, "storing", key)?;
        let mode = match expect {
            Some(Version::Unknown) => PutMode::Overwrite,
            Some(Version::Known(etag)) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag.clone()),
                version: None,
            }),
            None => PutMode::Create,
        };
        let written = self.put_opts(key, data.clone(), mode).await;
        client::unless_ours(self, key, &data, written).await
    }

    async fn share(&self, key: &str, expires: Duration) -> Result<String, DestinationError> {
        Key::checked(&self.name, "sharing", key)?;
        let path = self.path("sharing", key)?;
        // A link to nothing helps no one: make sure the blob is there.
        retry(&format!("sharing {key}"), || async {
            self.store
                .head(&path)
                .await
                .map(|_| ())
                .map_err(|e| self.error("sharing", Some(key), e))
        })
        .await?;
        let url = self
            .store
            .signed_url(hyper::Method::GET, &path, expires)
            .await
            .map_err(|e| self.error("sharing", Some(key), e))?;
        // object_store signs the name as the URL escapes it, Azure checks it unescaped:
        // a name with a space, '#', '%'... would get a link Azure refuses (403).
        let decoded = percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy();
        if decoded != url.path() {
            return Err(DestinationError::with_cause(
                &self.name,
                "sharing",
                Some(key),
                ErrorKind::Other,
                Box::new(BackendError::new(
                    "Azure refuses share links for blob names with characters a URL \
                     escapes (space, '#', '%'...): restore the copy with twindbctl instead",
                )),
            ));
        }
        Ok(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_grow_so_that_50000_hold_terabytes() {
        assert_eq!(block_size(16 << 20, 1), 16 << 20);
        assert_eq!(block_size(16 << 20, 10_000), 16 << 20);
        assert_eq!(block_size(16 << 20, 10_001), 32 << 20);
        let total: u64 = (1..=MAX_BLOCKS).map(|n| block_size(1 << 20, n)).sum();
        assert!(total > 300 << 30, "{total}");
        assert!(block_size(4000 << 20, MAX_BLOCKS) <= MAX_BLOCK_SIZE);
    }
}
