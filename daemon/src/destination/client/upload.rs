//! [`upload`]: stores a stream all-or-nothing through a backend's multipart requests.
//!
//! - A stream shorter than the first part is stored with one request
//!   ([`Multipart::put_whole`]); anything longer as a multipart upload: started, sent
//!   part by part, completed. The object appears only when the upload completes.
//! - Parts are read while earlier ones are sent. At most [`Multipart::in_flight`] parts
//!   are sent at once, so memory stays at about that many parts plus the one being
//!   read; an in-flight limit of 1 also keeps the parts in order (GCS needs that).
//! - A failed upload is aborted before the error is returned (one attempt; if the server
//!   is unreachable, the abort goes on in the background with backoff so the caller gets
//!   its error at once). A cancelled upload (its future dropped) is aborted in the
//!   background by an [`OnDrop`] guard. An abort that fails for good is handed to
//!   [`Multipart::abort_failed`].
//! - Input errors fail the put as [`ErrorKind::Input`]. Each backend method retries
//!   its own request (a part's bytes are in memory, so resending is safe); the driver
//!   retries nothing but the background abort.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::task::JoinSet;

use super::Chunker;
use crate::destination::guard::OnDrop;
use crate::destination::retry::retry_as as retry;
use crate::destination::{BackendError, DestinationError, ErrorKind, Key};
use crate::pipeline::ByteStream;

/// Where a part lies in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartInfo {
    /// 1-based.
    pub number: u32,
    /// Its first byte's offset in the object.
    pub offset: u64,
    /// The stream ends with this part.
    pub last: bool,
}

/// The requests of one backend's multipart (or resumable) upload.
#[async_trait]
pub trait Multipart: Clone + Send + Sync + 'static {
    /// An upload in progress: an S3 upload id, a GCS session URI.
    type Upload: Clone + Send + Sync + 'static;
    /// What completing the upload needs of each sent part (S3: number and ETag).
    type Part: Send + 'static;

    /// Whether the end of a stream that fills its last part exactly is sent as an empty
    /// last part (GCS finalizes with one); else the upload just completes.
    fn empty_last_part(&self) -> bool {
        false
    }

    /// The destination's name for errors.
    fn destination(&self) -> &str;

    /// Size of part `number` (1-based).
    fn part_size(&self, number: u32) -> usize;

    /// Parts sent at once while part `number` is due, at least 1.
    fn in_flight(&self, number: u32) -> usize;

    /// Whether a stream of `first` alone (shorter than a part) is stored with
    /// [`Multipart::put_whole`]; else it is a one-part upload.
    fn fits_one_request(&self, first: &Bytes) -> bool {
        let _ = first;
        true
    }

    /// Parts one upload may have; a longer stream fails with
    /// [`Multipart::too_many_parts`].
    fn max_parts(&self) -> u32 {
        u32::MAX
    }

    /// Why a stream longer than [`Multipart::max_parts`] parts cannot be stored.
    fn too_many_parts(&self) -> String {
        format!("the stream is larger than {} parts", self.max_parts())
    }

    async fn put_whole(&self, key: &Key, data: Bytes) -> Result<(), DestinationError>;

    async fn start_upload(&self, key: &Key) -> Result<Self::Upload, DestinationError>;

    async fn put_part(
        &self,
        key: &Key,
        upload: &Self::Upload,
        part: PartInfo,
        data: Bytes,
    ) -> Result<Self::Part, DestinationError>;

    /// Makes the object appear; `parts` in part order.
    async fn complete_upload(
        &self,
        key: &Key,
        upload: &Self::Upload,
        parts: Vec<Self::Part>,
    ) -> Result<(), DestinationError>;

    /// One attempt at removing what the upload stored.
    async fn abort_upload(&self, key: &Key, upload: &Self::Upload) -> Result<(), DestinationError>;

    /// The abort failed for good: what is left is the backend's to remember or report.
    fn abort_failed(&self, key: &Key, upload: &Self::Upload, e: &DestinationError) {
        let _ = upload;
        tracing::warn!("could not abort the upload of {key}: {e}");
    }
}

/// Parts uploaded at once: `concurrency`, fewer once parts outgrow the memory that
/// `concurrency` first-size parts take, never less than one.
pub fn in_flight_limit(concurrency: usize, base: u64, current: u64) -> usize {
    let budget = concurrency as u64 * base;
    ((budget / current.max(1)) as usize).clamp(1, concurrency)
}

/// Stores `data` under `key`; returns the stored size.
pub async fn upload<M: Multipart>(
    store: &M,
    key: &Key,
    data: ByteStream,
) -> Result<u64, DestinationError> {
    let mut input = Chunker::new(data);
    let first_size = store.part_size(1);
    let first = input
        .read(first_size)
        .await
        .map_err(|e| input_error(store, key, e))?;
    if first.len() < first_size && store.fits_one_request(&first) {
        let size = first.len() as u64;
        store.put_whole(key, first).await?;
        return Ok(size);
    }
    let upload = store.start_upload(key).await?;
    let guard = {
        let (store, key, upload) = (store.clone(), key.clone(), upload.clone());
        OnDrop::new(move || spawn_abort(store, key, upload))
    };
    match put_parts(store, key, &upload, first, &mut input).await {
        Ok(size) => {
            guard.disarm();
            Ok(size)
        }
        Err(e) => {
            // Still armed while we wait: if this future is dropped, the guard aborts.
            let aborted = store.abort_upload(key, &upload).await;
            guard.disarm();
            match aborted {
                Ok(()) => tracing::debug!(%key, "upload aborted"),
                Err(a) if a.is_retryable() => spawn_abort(store.clone(), key.clone(), upload),
                Err(a) => store.abort_failed(key, &upload, &a),
            }
            Err(e)
        }
    }
}

async fn put_parts<M: Multipart>(
    store: &M,
    key: &Key,
    upload: &M::Upload,
    first: Bytes,
    input: &mut Chunker,
) -> Result<u64, DestinationError> {
    // Dropping the set (error, cancel) aborts the part uploads still running.
    let mut running: JoinSet<Result<(u32, M::Part), DestinationError>> = JoinSet::new();
    let mut done: Vec<(u32, M::Part)> = Vec::new();
    let mut total = 0u64;
    let mut number = 1;
    let mut body = first;
    loop {
        let size = store.part_size(number);
        let last = body.len() < size;
        if body.is_empty() && number > 1 && !store.empty_last_part() {
            break;
        }
        let limit = store.in_flight(number).max(1);
        while running.len() >= limit {
            done.push(joined(store, key, running.join_next().await)?);
        }
        let part = PartInfo {
            number,
            offset: total,
            last,
        };
        total += body.len() as u64;
        let (s, k, u) = (store.clone(), key.clone(), upload.clone());
        running.spawn(async move { s.put_part(&k, &u, part, body).await.map(|p| (number, p)) });
        // Fail early when a part failed while we were reading.
        while let Some(r) = running.try_join_next() {
            done.push(joined(store, key, Some(r))?);
        }
        if last {
            break;
        }
        if number >= store.max_parts() {
            return Err(DestinationError::with_cause(
                store.destination(),
                "storing",
                Some(key),
                ErrorKind::Other,
                Box::new(BackendError::new(store.too_many_parts())),
            ));
        }
        number += 1;
        body = input
            .read(store.part_size(number))
            .await
            .map_err(|e| input_error(store, key, e))?;
    }
    while let Some(r) = running.join_next().await {
        done.push(joined(store, key, Some(r))?);
    }
    done.sort_by_key(|(n, _)| *n);
    let parts = done.into_iter().map(|(_, p)| p).collect();
    store.complete_upload(key, upload, parts).await?;
    Ok(total)
}

type Joined<P> = Option<Result<Result<(u32, P), DestinationError>, tokio::task::JoinError>>;

fn joined<M: Multipart>(
    store: &M,
    key: &Key,
    r: Joined<M::Part>,
) -> Result<(u32, M::Part), DestinationError> {
    match r {
        Some(Ok(part)) => part,
        Some(Err(e)) => Err(DestinationError::with_cause(
            store.destination(),
            "storing",
            Some(key),
            ErrorKind::Other,
            Box::new(BackendError::caused_by(
                format!("a part upload task failed: {e}"),
                e,
            )),
        )),
        None => unreachable!("joined only while uploads are running"),
    }
}

fn input_error<M: Multipart>(store: &M, key: &Key, e: std::io::Error) -> DestinationError {
    DestinationError::new(store.destination(), "storing", Some(key), e).with_kind(ErrorKind::Input)
}

/// Aborts in the background with backoff (Drop cannot wait, and a caller with an
/// error should not wait for a second retry bound).
fn spawn_abort<M: Multipart>(store: M, key: Key, upload: M::Upload) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let what = format!("aborting the upload of {key}");
        match retry(&what, || store.abort_upload(&key, &upload)).await {
            Ok(()) => tracing::debug!(%key, "upload aborted"),
            Err(e) => store.abort_failed(&key, &upload, &e),
        }
    });
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;

    /// Records the requests; fails `put_part` of part `fail_part`.
    #[derive(Clone, Default)]
    struct Recorder {
        log: Arc<Mutex<Vec<String>>>,
        fail_part: Option<u32>,
        in_flight: Arc<AtomicUsize>,
        max_seen: Arc<AtomicUsize>,
        limit: usize,
        empty_last: bool,
    }

    impl Recorder {
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Multipart for Recorder {
        type Upload = String;
        type Part = u32;

        fn destination(&self) -> &str {
            "test:d"
        }
        fn part_size(&self, _number: u32) -> usize {
            4
        }
        fn in_flight(&self, _number: u32) -> usize {
            self.limit
        }
        fn fits_one_request(&self, first: &Bytes) -> bool {
            !(self.empty_last && first.is_empty())
        }
        fn empty_last_part(&self) -> bool {
            self.empty_last
        }
        async fn put_whole(&self, key: &Key, data: Bytes) -> Result<(), DestinationError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("whole {key} {}", data.len()));
            Ok(())
        }
        async fn start_upload(&self, _key: &Key) -> Result<String, DestinationError> {
            self.log.lock().unwrap().push("start".into());
            Ok("u1".into())
        }
        async fn put_part(
            &self,
            _key: &Key,
            upload: &String,
            part: PartInfo,
            data: Bytes,
        ) -> Result<u32, DestinationError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_seen.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if Some(part.number) == self.fail_part {
                return Err(DestinationError::new(
                    "test:d",
                    "storing",
                    None,
                    io::Error::from(io::ErrorKind::PermissionDenied),
                ));
            }
            self.log.lock().unwrap().push(format!(
                "part {upload} {} @{} {}{}",
                part.number,
                part.offset,
                data.len(),
                if part.last { " last" } else { "" }
            ));
            Ok(part.number)
        }
        async fn complete_upload(
            &self,
            _key: &Key,
            _upload: &String,
            parts: Vec<u32>,
        ) -> Result<(), DestinationError> {
            self.log.lock().unwrap().push(format!("complete {parts:?}"));
            Ok(())
        }
        async fn abort_upload(&self, _key: &Key, upload: &String) -> Result<(), DestinationError> {
            self.log.lock().unwrap().push(format!("abort {upload}"));
            Ok(())
        }
    }

    fn stream(len: usize) -> ByteStream {
        let chunks: Vec<io::Result<Bytes>> =
            (0..len).map(|_| Ok(Bytes::from_static(b"x"))).collect();
        futures::stream::iter(chunks).boxed()
    }

    fn key() -> Key {
        Key::new("h/k").unwrap()
    }

    #[tokio::test]
    async fn short_streams_are_one_request() {
        let r = Recorder {
            limit: 2,
            ..Recorder::default()
        };
        assert_eq!(upload(&r, &key(), stream(3)).await.unwrap(), 3);
        assert_eq!(upload(&r, &key(), stream(0)).await.unwrap(), 0);
        assert_eq!(r.log(), ["whole h/k 3", "whole h/k 0"]);
    }

    #[tokio::test]
    async fn long_streams_go_in_parts_completed_in_order() {
        let r = Recorder {
            limit: 2,
            ..Recorder::default()
        };
        assert_eq!(upload(&r, &key(), stream(10)).await.unwrap(), 10);
        let log = r.log();
        assert_eq!(log[0], "start");
        assert_eq!(log.last().unwrap(), "complete [1, 2, 3]");
        assert!(log.contains(&"part u1 3 @8 2 last".to_string()), "{log:?}");
        assert!(r.max_seen.load(Ordering::SeqCst) <= 2);
    }

    #[tokio::test]
    async fn an_exact_multiple_ends_with_an_empty_part_only_where_asked() {
        let r = Recorder {
            limit: 1,
            ..Recorder::default()
        };
        upload(&r, &key(), stream(8)).await.unwrap();
        assert_eq!(
            r.log(),
            [
                "start",
                "part u1 1 @0 4",
                "part u1 2 @4 4",
                "complete [1, 2]"
            ]
        );
        let r = Recorder {
            limit: 1,
            empty_last: true,
            ..Recorder::default()
        };
        upload(&r, &key(), stream(8)).await.unwrap();
        upload(&r, &key(), stream(0)).await.unwrap();
        assert_eq!(
            r.log(),
            [
                "start",
                "part u1 1 @0 4",
                "part u1 2 @4 4",
                "part u1 3 @8 0 last",
                "complete [1, 2, 3]",
                "start",
                "part u1 1 @0 0 last",
                "complete [1]"
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_part_aborts_the_upload() {
        let r = Recorder {
            limit: 2,
            fail_part: Some(2),
            ..Recorder::default()
        };
        let e = upload(&r, &key(), stream(20)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        let log = r.log();
        assert_eq!(log.last().unwrap(), "abort u1", "{log:?}");
        assert!(!log.iter().any(|l| l.starts_with("complete")), "{log:?}");
    }

    #[tokio::test]
    async fn a_failed_input_is_an_input_error_and_aborts() {
        let r = Recorder {
            limit: 2,
            ..Recorder::default()
        };
        let failing = stream(6)
            .chain(futures::stream::once(async {
                Err(io::Error::other("source failed"))
            }))
            .boxed();
        let e = upload(&r, &key(), failing).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Input);
        assert_eq!(r.log().last().unwrap(), "abort u1");
    }

    #[tokio::test]
    async fn a_cancelled_upload_is_aborted_in_the_background() {
        let r = Recorder {
            limit: 1,
            ..Recorder::default()
        };
        let endless = futures::stream::repeat_with(|| Ok(Bytes::from_static(b"x"))).boxed();
        let put = {
            let r = r.clone();
            tokio::spawn(async move { upload(&r, &key(), endless).await })
        };
        while r.log().len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        put.abort();
        let _ = put.await;
        for _ in 0..100 {
            if r.log().last().is_some_and(|l| l == "abort u1") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("not aborted: {:?}", r.log());
    }
}
