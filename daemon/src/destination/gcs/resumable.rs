//! The gcs destination's resumable uploads and ranged reads, for the shared upload
//! driver and resumable download.

use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::{enc, Gcs};
use crate::destination::client::{ByteRange, Multipart, Opened, PartInfo, RangeRead};
use crate::destination::retry::retry_as as retry;
use crate::destination::{DestinationError, ErrorKind, Key};

/// What a resumable session says about an upload.
enum Persisted {
    /// Bytes `0..n` are stored.
    Upto(u64),
    /// The object is finalized.
    Complete,
}

impl Gcs {
    pub(super) async fn start_session(&self, key: &str) -> Result<String, DestinationError> {
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
    pub(super) async fn open(
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
