//! [`download`]: a streamed read that survives broken connections, in parallel ranges.
//!
//! The first request opens the object and learns its size and version (S3 ETag, GCS
//! generation). An object larger than one range, whose answer told both, is then read
//! as ranges of [`Parallel::range_size`] bytes, [`Parallel::ranges`] of them in flight
//! and delivered in order (see [`super::ranges`]); every range is pinned to the version
//! the first request saw, so an object replaced mid-read fails as
//! [`ErrorKind::Conflict`] instead of mixing two versions. Anything else (one range, or
//! a server that tells no size or no version) is read as one stream, as before.
//!
//! When a body breaks (an error, or the connection closing before the end of its
//! range), the read resumes from the byte it reached with a ranged request pinned to
//! the version, so a range is never restarted, never repeats a byte, and never mixes
//! two versions of an object. Each resume retries with
//! [`retry`](crate::destination::retry) backoff; [`ATTEMPTS`] breaks in a row without a
//! byte in between fail the read as [`ErrorKind::Unreachable`].
//!
//! A backend supplies [`RangeRead::open_range`]; [`Reader`] is the state machine over
//! one [`ByteRange`].

use std::io;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::destination::retry::{retry_as as retry, ATTEMPTS};
use crate::destination::{BackendError, BoxError, DestinationError, ErrorKind, Key, Version};
use crate::pipeline::ByteStream;

/// The bytes `start..end` of an object; `end: None` is "to its end".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

impl ByteRange {
    /// The whole object from `start` on.
    pub fn from(start: u64) -> Self {
        ByteRange { start, end: None }
    }

    /// The HTTP `Range` header value, `None` for the whole object.
    pub fn header(&self) -> Option<String> {
        match (self.start, self.end) {
            (0, None) => None,
            (s, None) => Some(format!("bytes={s}-")),
            (s, Some(e)) => Some(format!("bytes={s}-{}", e.saturating_sub(1))),
        }
    }
}

/// The body of an opened read; its errors are the HTTP client's own.
pub type Body = BoxStream<'static, Result<Bytes, BoxError>>;

/// An opened read, as the backend's answer told it.
pub struct Opened {
    pub body: Body,
    /// How many bytes the answer holds (Content-Length), when the server said.
    pub length: Option<u64>,
    /// The object's version (ETag, generation) when the server said.
    pub version: Option<String>,
}

/// How a backend reads part of an object.
#[async_trait]
pub trait RangeRead: Clone + Send + Sync + 'static {
    /// One request for `range` of `key`. With `version`, only that version of the object
    /// may answer (If-Match, ifGenerationMatch): a newer one fails the request.
    /// Not retried here: [`download`] does.
    async fn open_range(
        &self,
        key: &Key,
        range: ByteRange,
        version: Option<&str>,
    ) -> Result<Opened, DestinationError>;
}

/// How a large object is read: `ranges` requests of `range_size` bytes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallel {
    /// Ranges in flight; 1 reads every object as one stream.
    pub ranges: usize,
    pub range_size: u64,
}

/// 8 MiB: large enough that a request's round trip is small beside its transfer,
/// small enough that `ranges` of them held in memory stay modest.
pub const RANGE_SIZE: u64 = 8 << 20;

impl Parallel {
    /// `ranges` of [`RANGE_SIZE`].
    pub fn new(ranges: usize) -> Self {
        Parallel {
            ranges: ranges.max(1),
            range_size: RANGE_SIZE,
        }
    }
}

/// Streams the whole of `key` from `store` (named `destination` in errors), resuming
/// broken reads, in parallel ranges when the object is large. The first request is
/// retried like any idempotent operation.
pub async fn download<R: RangeRead>(
    store: R,
    destination: &str,
    key: Key,
    parallel: Parallel,
) -> Result<ByteStream, DestinationError> {
    let opened = retry(&format!("reading {key}"), || {
        store.open_range(&key, ByteRange::from(0), None)
    })
    .await?;
    let mut reader = Reader {
        store,
        destination: destination.to_string(),
        key,
        offset: 0,
        requested_end: None,
        end: opened.length,
        version: opened.version,
        body: Some(opened.body),
        resumes: 0,
    };
    match (opened.length, reader.version.is_some()) {
        (Some(size), true) if parallel.ranges > 1 && size > parallel.range_size => {
            // The first answer holds the whole object: its reader stops after the
            // first range, the others read theirs.
            reader.requested_end = Some(parallel.range_size);
            reader.end = Some(parallel.range_size);
            tracing::debug!(
                key = %reader.key,
                "reading {size} bytes in {} ranges, {} at once",
                size.div_ceil(parallel.range_size),
                parallel.ranges
            );
            Ok(super::ranges::in_order(reader, size, parallel))
        }
        _ => Ok(futures::stream::try_unfold(reader, |mut r| async move {
            Ok(r.next().await?.map(|b| (b, r)))
        })
        .boxed()),
    }
}

/// Reads a small object whole (a status file) with the version it was read at; `None`
/// when it does not exist. The whole read is retried: a small object is read again
/// from its start rather than resumed.
pub async fn read_versioned<R: RangeRead>(
    store: &R,
    destination: &str,
    key: &Key,
) -> Result<Option<(Bytes, Version)>, DestinationError> {
    retry(&format!("reading {key}"), || async {
        let opened = match store.open_range(key, ByteRange::from(0), None).await {
            Ok(o) => o,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let version = opened.version.map_or(Version::Unknown, Version::Known);
        let chunks: Vec<Bytes> = opened.body.try_collect().await.map_err(|e| {
            let cause = BackendError::caused_by(crate::destination::chain_text(e.as_ref()), e);
            DestinationError::with_cause(
                destination,
                "reading",
                Some(key),
                ErrorKind::Unreachable,
                Box::new(cause),
            )
        })?;
        Ok(Some((chunks.concat().into(), version)))
    })
    .await
}

/// One range being read; resumes where it broke.
pub(super) struct Reader<R> {
    pub(super) store: R,
    pub(super) destination: String,
    pub(super) key: Key,
    /// The next byte to read.
    pub(super) offset: u64,
    /// Where the range asked for ends (`None`: at the object's end).
    pub(super) requested_end: Option<u64>,
    /// Where the range ends, when known: the first answer's length, or the range's end.
    pub(super) end: Option<u64>,
    pub(super) version: Option<String>,
    /// `None` until the range is opened (and after it broke).
    pub(super) body: Option<Body>,
    /// Breaks since the last byte received.
    pub(super) resumes: u32,
}

impl<R: RangeRead> Reader<R> {
    /// The next bytes of the range, `None` at its end.
    pub(super) async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if self.requested_end.is_some_and(|e| self.offset >= e) {
                return Ok(None);
            }
            let Some(body) = self.body.as_mut() else {
                let range = ByteRange {
                    start: self.offset,
                    end: self.requested_end,
                };
                let pinned = self.version.as_deref();
                let opened = open_pinned(&self.store, &self.destination, &self.key, range, pinned)
                    .await
                    .map_err(io::Error::other)?;
                self.body = Some(opened.body);
                continue;
            };
            let failure: BoxError = match body.next().await {
                Some(Ok(mut b)) => {
                    if b.is_empty() {
                        continue;
                    }
                    if let Some(end) = self.requested_end {
                        // An answer longer than the range (the first, whole-object one).
                        b.truncate((end - self.offset).min(b.len() as u64) as usize);
                    }
                    self.offset += b.len() as u64;
                    self.resumes = 0;
                    return Ok(Some(b));
                }
                Some(Err(e)) => e,
                None if self.end.is_none_or(|end| self.offset >= end) => return Ok(None),
                None => "the connection closed early".into(),
            };
            self.body = None;
            let text = crate::destination::chain_text(failure.as_ref());
            self.resumes += 1;
            if self.resumes > ATTEMPTS {
                return Err(io::Error::other(DestinationError::with_cause(
                    &self.destination,
                    "reading",
                    Some(&self.key),
                    ErrorKind::Unreachable,
                    Box::new(BackendError::caused_by(
                        format!("broke at byte {} {ATTEMPTS} times: {text}", self.offset),
                        failure,
                    )),
                )));
            }
            tracing::warn!(
                key = %self.key,
                "reading broke at byte {}: {text}; resuming from there",
                self.offset
            );
        }
    }
}

/// Opens the rest of the range, pinned to the version: a newer object fails the
/// read as [`ErrorKind::Conflict`] (the server refuses, or answers with another
/// version where it ignores the condition).
async fn open_pinned<R: RangeRead>(
    store: &R,
    destination: &str,
    key: &Key,
    range: ByteRange,
    pinned: Option<&str>,
) -> Result<Opened, DestinationError> {
    let what = format!("reading {key} from byte {}", range.start);
    let replaced = |cause: Option<DestinationError>| {
        let msg = format!(
            "the object was replaced while it was read (version {} when the read started): \
             read it again",
            pinned.unwrap_or_default()
        );
        let cause = match cause {
            Some(e) => BackendError::caused_by(msg, e),
            None => BackendError::new(msg),
        };
        DestinationError::with_cause(
            destination,
            "reading",
            Some(key),
            ErrorKind::Conflict,
            Box::new(cause),
        )
    };
    match retry(&what, || store.open_range(key, range, pinned)).await {
        Ok(o) if pinned.is_some() && o.version.is_some() && o.version.as_deref() != pinned => {
            Err(replaced(None))
        }
        Ok(o) => Ok(o),
        Err(e) if e.kind == ErrorKind::Conflict && pinned.is_some() => Err(replaced(Some(e))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The requests a [`Flaky`] answered.
    type Seen = Arc<Mutex<Vec<(ByteRange, Option<String>)>>>;

    /// Serves `data` in 4-byte chunks, breaking after `break_after` chunks of each
    /// answer; records every request.
    #[derive(Clone)]
    struct Flaky {
        data: Bytes,
        break_after: usize,
        seen: Seen,
    }

    #[async_trait]
    impl RangeRead for Flaky {
        async fn open_range(
            &self,
            _key: &Key,
            range: ByteRange,
            version: Option<&str>,
        ) -> Result<Opened, DestinationError> {
            self.seen
                .lock()
                .unwrap()
                .push((range, version.map(str::to_string)));
            let rest = self.data.slice(range.start as usize..);
            let chunks: Vec<Result<Bytes, BoxError>> = rest
                .chunks(4)
                .take(self.break_after)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Ok(Opened {
                body: futures::stream::iter(chunks).boxed(),
                length: Some(rest.len() as u64),
                version: Some("v1".into()),
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_read_resumes_pinned_to_the_version() {
        let data = Bytes::from((0u8..40).collect::<Vec<_>>());
        let store = Flaky {
            data: data.clone(),
            break_after: 3,
            seen: Arc::default(),
        };
        let key = Key::new("h/k").unwrap();
        let got: Vec<Bytes> = download(store.clone(), "test:d", key, Parallel::new(4))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.concat(), data);
        let seen = store.seen.lock().unwrap().clone();
        assert_eq!(seen[0], (ByteRange::from(0), None));
        assert_eq!(seen[1], (ByteRange::from(12), Some("v1".into())));
        assert_eq!(seen.len(), 4, "12 bytes an answer: {seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_never_progresses_fails_as_unreachable() {
        let store = Flaky {
            data: Bytes::from_static(b"0123456789"),
            break_after: 0,
            seen: Arc::default(),
        };
        let key = Key::new("h/k").unwrap();
        let err = download(store, "test:d", key, Parallel::new(4))
            .await
            .unwrap()
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        let inner = err.into_inner().unwrap();
        let e = inner.downcast_ref::<DestinationError>().unwrap();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert!(e.to_string().contains("broke at byte 0 5 times"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn small_objects_are_read_whole_with_their_version() {
        let store = Flaky {
            data: Bytes::from_static(b"{\"copies\":[]}"),
            break_after: usize::MAX,
            seen: Arc::default(),
        };
        let key = Key::new("h/status").unwrap();
        let (bytes, version) = read_versioned(&store, "test:d", &key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&bytes[..], b"{\"copies\":[]}");
        assert_eq!(version, Version::Known("v1".into()));
    }

    #[test]
    fn ranges_are_http_ranges() {
        assert_eq!(ByteRange::from(0).header(), None);
        assert_eq!(ByteRange::from(5).header().unwrap(), "bytes=5-");
        let r = ByteRange {
            start: 5,
            end: Some(10),
        };
        assert_eq!(r.header().unwrap(), "bytes=5-9");
    }
}
