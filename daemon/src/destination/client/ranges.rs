//! A large object read as ranges in parallel, delivered in order.
//!
//! Each range is read whole into memory by a task of its own, so the ranges in flight
//! keep downloading while the caller consumes the one before them. At most
//! `ranges` tasks exist at once, plus the range being handed out: memory stays at
//! about (`ranges` + 1) × `range_size`, whatever the object's size. Each range resumes
//! on its own where it broke ([`Reader`]); all are pinned to the version the first
//! request saw. Dropping the stream aborts the tasks.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::task::JoinHandle;

use super::download::{Parallel, RangeRead, Reader};
use crate::pipeline::ByteStream;

/// The object of `size` bytes, `first` reading its first range (already opened), the
/// others opened as their turn comes.
pub(super) fn in_order<R: RangeRead>(first: Reader<R>, size: u64, p: Parallel) -> ByteStream {
    let count = size.div_ceil(p.range_size);
    let template = (
        first.store.clone(),
        first.destination.clone(),
        first.key.clone(),
        first.version.clone(),
    );
    let rest = (1..count).map(move |i| {
        let (store, destination, key, version) = template.clone();
        let start = i * p.range_size;
        let end = (start + p.range_size).min(size);
        Reader {
            store,
            destination,
            key,
            offset: start,
            requested_end: Some(end),
            end: Some(end),
            version,
            body: None,
            resumes: 0,
        }
    });
    futures::stream::iter(std::iter::once(first).chain(rest))
        .map(|reader| Task(tokio::spawn(read_whole(reader))))
        .buffered(p.ranges)
        .map_ok(|chunks| futures::stream::iter(chunks.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}

/// Every byte of one range.
async fn read_whole<R: RangeRead>(mut reader: Reader<R>) -> io::Result<Vec<Bytes>> {
    let mut chunks = Vec::new();
    while let Some(b) = reader.next().await? {
        chunks.push(b);
    }
    Ok(chunks)
}

/// A range's task, aborted when dropped (the stream was dropped, or failed).
struct Task(JoinHandle<io::Result<Vec<Bytes>>>);

impl Future for Task {
    type Output = io::Result<Vec<Bytes>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|joined| joined.unwrap_or_else(|e| Err(io::Error::other(e))))
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use futures::TryStreamExt;

    use super::*;
    use crate::destination::client::{download, ByteRange, Opened};
    use crate::destination::{BoxError, DestinationError, ErrorKind, Key};

    /// The requests a [`Store`] answered.
    type Seen = Arc<Mutex<Vec<(ByteRange, Option<String>)>>>;

    /// Serves `data` in 4-byte chunks, breaking after `break_after` chunks of each
    /// answer, at version `current` (If-Match refused with a 412 unless `ignores_pin`);
    /// records every request.
    #[derive(Clone)]
    struct Store {
        data: Bytes,
        break_after: usize,
        current: Arc<Mutex<String>>,
        ignores_pin: bool,
        seen: Seen,
    }

    impl Store {
        fn new(data: Bytes, break_after: usize) -> Self {
            Store {
                data,
                break_after,
                current: Arc::new(Mutex::new("v1".into())),
                ignores_pin: false,
                seen: Arc::default(),
            }
        }
    }

    #[async_trait]
    impl RangeRead for Store {
        async fn open_range(
            &self,
            key: &Key,
            range: ByteRange,
            version: Option<&str>,
        ) -> Result<Opened, DestinationError> {
            let current = self.current.lock().unwrap().clone();
            self.seen
                .lock()
                .unwrap()
                .push((range, version.map(str::to_string)));
            if version.is_some_and(|v| v != current) && !self.ignores_pin {
                return Err(DestinationError::with_cause(
                    "test:d",
                    "reading",
                    Some(key),
                    ErrorKind::Conflict,
                    "PreconditionFailed (HTTP 412)".into(),
                ));
            }
            let end = range.end.map_or(self.data.len(), |e| e as usize);
            let rest = self.data.slice(range.start as usize..end);
            let chunks: Vec<Result<Bytes, BoxError>> = rest
                .chunks(4)
                .take(self.break_after)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            Ok(Opened {
                body: futures::stream::iter(chunks).boxed(),
                length: Some(rest.len() as u64),
                version: Some(current),
            })
        }
    }

    /// 18-byte ranges: the 4-byte chunks of the first, whole-object answer straddle
    /// the end of the first range.
    const SMALL: Parallel = Parallel {
        ranges: 3,
        range_size: 18,
    };

    async fn read(store: &Store, p: Parallel) -> io::Result<Bytes> {
        let key = Key::new("h/k").unwrap();
        let chunks: Vec<Bytes> = download(store.clone(), "test:d", key, p)
            .await
            .map_err(io::Error::other)?
            .try_collect()
            .await?;
        Ok(chunks.concat().into())
    }

    #[tokio::test(start_paused = true)]
    async fn ranges_are_byte_exact_and_pinned_whatever_the_size() {
        for len in [0usize, 1, 17, 18, 19, 54, 101] {
            for break_after in [usize::MAX, 3] {
                let data = Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<_>>());
                let store = Store::new(data.clone(), break_after);
                let got = read(&store, SMALL).await.unwrap();
                assert_eq!(got, data, "{len} bytes, breaking after {break_after}");
                let seen = store.seen.lock().unwrap().clone();
                assert_eq!(seen[0], (ByteRange::from(0), None), "{seen:?}");
                assert!(
                    seen[1..].iter().all(|(_, v)| v.as_deref() == Some("v1")),
                    "{seen:?}"
                );
                if break_after == usize::MAX {
                    // One request per range, each for its own bytes.
                    assert_eq!(seen.len(), len.div_ceil(18).max(1), "{len}: {seen:?}");
                    for (i, (r, _)) in seen.iter().enumerate().skip(1) {
                        let start = i as u64 * 18;
                        assert_eq!(r.start, start);
                        assert_eq!(r.end, Some((start + 18).min(len as u64)));
                    }
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_range_at_a_time_reads_one_stream() {
        let data = Bytes::from(vec![9u8; 100]);
        let store = Store::new(data.clone(), usize::MAX);
        let one = Parallel {
            ranges: 1,
            range_size: 16,
        };
        assert_eq!(read(&store, one).await.unwrap(), data);
        assert_eq!(store.seen.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_object_replaced_mid_read_fails_as_a_conflict() {
        for ignores_pin in [false, true] {
            let data = Bytes::from(vec![1u8; 100]);
            let mut store = Store::new(data, usize::MAX);
            store.ignores_pin = ignores_pin;
            let key = Key::new("h/k").unwrap();
            let stream = download(store.clone(), "test:d", key, SMALL).await.unwrap();
            *store.current.lock().unwrap() = "v2".into();
            let err = stream.try_collect::<Vec<_>>().await.unwrap_err();
            let inner = err.into_inner().unwrap();
            let e = inner.downcast_ref::<DestinationError>().unwrap();
            assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
            let text = e.to_string();
            assert!(text.starts_with("test:d: reading h/k: "), "{text}");
            assert!(
                text.contains("replaced while it was read (version v1"),
                "{text}"
            );
        }
    }
}
