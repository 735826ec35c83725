//! Bounded byte pipes between pipeline stages.
//!
//! A copy flows source -> modifiers -> hash tap -> destination, each stage on its own
//! thread, joined by channels that hold at most `DEPTH` chunks of `CHUNK` bytes. Memory
//! therefore stays flat whatever the size of the copy, and stages overlap on separate
//! cores. The end of a stream is explicit: a writer's [`ChunkWriter::finish`] sends an
//! end marker, and a reader sees a clean end only after that marker. A stage that stops
//! without finishing (error, panic, cancel) closes the pipe without it, and its reader
//! fails: nothing has to be delivered on the way out (a full pipe cannot take a last
//! message), so a truncated stream can never be committed as a copy.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Size of one chunk passed between stages. Small enough that a chunk is still in the
/// CPU cache when the next stage reads it: with 1 MiB chunks (12 MiB in flight) the
/// kernel's copy of the output into the page cache read it from memory, and a MySQL
/// backup took 30 % more CPU than `mariabackup | zstd` (docs/benchmarks.md).
pub const CHUNK: usize = 128 << 10;
/// Chunks a pipe holds before its writer blocks.
pub const DEPTH: usize = 4;

/// The stream type every destination reads and writes.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Shared cancel flag, checked by every pipe on every chunk, and awaitable by async
/// code ([`Cancel::cancelled`] wakes as soon as it is set, no polling).
#[derive(Debug, Clone, Default)]
pub struct Cancel(CancellationToken);

impl Cancel {
    pub fn cancel(&self) {
        self.0.cancel();
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
    /// A flag set when this one is, that can also be set alone (one step of a longer
    /// task stopped without stopping the task).
    pub fn child(&self) -> Cancel {
        Cancel(self.0.child_token())
    }
    /// Resolves once the flag is set (at once if it is already).
    pub async fn cancelled(&self) {
        self.0.cancelled().await
    }
    pub(crate) fn check(&self) -> io::Result<()> {
        if self.is_cancelled() {
            // Not ErrorKind::Interrupted: io::copy and write_all retry those forever.
            Err(io::Error::other(Propagated("cancelled")))
        } else {
            Ok(())
        }
    }
}

/// Marks an error that only repeats another stage's failure, so that
/// [`Stages::join`] reports the stage where things went wrong first.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Propagated(&'static str);

fn propagated(msg: &'static str) -> io::Error {
    io::Error::other(Propagated(msg))
}

pub fn is_propagated(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Propagated>())
}

/// What travels through a pipe.
enum Msg {
    Chunk(Bytes),
    /// The writer failed; the reader returns this error.
    Failed(io::Error),
    /// The writer finished: the only clean end of a stream.
    End,
}

fn unfinished() -> io::Error {
    propagated("a previous stage stopped before the end of the stream")
}

/// Creates a bounded pipe.
pub fn pipe(cancel: &Cancel) -> (ChunkWriter, ChunkReader) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (
        ChunkWriter {
            tx: Some(tx),
            buf: BytesMut::new(),
            cancel: cancel.clone(),
            counter: None,
            limit: None,
        },
        ChunkReader::new(rx, cancel),
    )
}

/// Writing end of a pipe, for a stage running on its own (non-async) thread.
pub struct ChunkWriter {
    tx: Option<mpsc::Sender<Msg>>,
    buf: BytesMut,
    cancel: Cancel,
    counter: Option<Arc<AtomicU64>>,
    limit: Option<Limit>,
}

/// Called with each chunk's size before it is sent; blocks to hold a bandwidth limit
/// (throttle.rs), fails to stop the stage.
pub type Limit = Box<dyn FnMut(usize) -> io::Result<()> + Send>;

impl ChunkWriter {
    /// Counts every byte written into `counter` (progress reporting).
    pub fn with_counter(mut self, counter: Arc<AtomicU64>) -> Self {
        self.counter = Some(counter);
        self
    }

    /// Passes every chunk through `limit` before sending it.
    pub fn with_limit(mut self, limit: Limit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Sends a whole chunk without copying it.
    pub fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        self.cancel.check()?;
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(limit) = &mut self.limit {
            limit(chunk.len())?;
        }
        if let Some(c) = &self.counter {
            c.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| propagated("pipe already finished"))?;
        tx.blocking_send(Msg::Chunk(chunk))
            .map_err(|_| propagated("the next stage stopped"))
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.send(chunk)?;
        }
        Ok(())
    }

    /// Ends the stream cleanly: the reader sees end of file.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush_buf()?;
        self.cancel.check()?;
        let tx = self
            .tx
            .take()
            .ok_or_else(|| propagated("pipe already finished"))?;
        tx.blocking_send(Msg::End)
            .map_err(|_| propagated("the next stage stopped"))
    }

    /// Ends the stream with an error the reader will return.
    pub fn fail(mut self, e: io::Error) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.blocking_send(Msg::Failed(e));
        }
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve(CHUNK);
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.flush_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// A writer dropped unfinished (the stage failed, panicked or was cancelled) sends
// nothing: its reader sees the pipe close without the end marker, which is an error.

/// Reading end of a pipe.
pub struct ChunkReader {
    rx: mpsc::Receiver<Msg>,
    cur: Bytes,
    cancel: Cancel,
    /// The end marker or an error was read: nothing follows.
    done: bool,
}

impl ChunkReader {
    fn new(rx: mpsc::Receiver<Msg>, cancel: &Cancel) -> ChunkReader {
        ChunkReader {
            rx,
            cur: Bytes::new(),
            cancel: cancel.clone(),
            done: false,
        }
    }

    /// What the next message means: a chunk, the writer's error, `None` at the end
    /// marker, or an error when the writer went away without one.
    fn read_msg(msg: Option<Msg>, done: &mut bool) -> Option<io::Result<Bytes>> {
        if *done {
            return None;
        }
        match msg {
            Some(Msg::Chunk(b)) => Some(Ok(b)),
            Some(Msg::End) => {
                *done = true;
                None
            }
            Some(Msg::Failed(e)) => {
                *done = true;
                Some(Err(e))
            }
            None => {
                *done = true;
                Some(Err(unfinished()))
            }
        }
    }

    /// Next whole chunk; `None` at a clean end of stream.
    pub fn recv(&mut self) -> Option<io::Result<Bytes>> {
        if let Err(e) = self.cancel.check() {
            return Some(Err(e));
        }
        if !self.cur.is_empty() {
            return Some(Ok(std::mem::take(&mut self.cur)));
        }
        if self.done {
            return None;
        }
        let msg = self.rx.blocking_recv();
        Self::read_msg(msg, &mut self.done)
    }

    /// The pipe as an async stream, for a destination.
    pub fn into_stream(self) -> ByteStream {
        let ChunkReader {
            rx,
            cur,
            cancel,
            done,
        } = self;
        let first = futures::stream::iter((!cur.is_empty()).then(|| Ok(cur)));
        let rest = futures::stream::unfold((rx, done), |(mut rx, mut done)| async move {
            if done {
                return None;
            }
            let msg = rx.recv().await;
            ChunkReader::read_msg(msg, &mut done).map(|item| (item, (rx, done)))
        });
        first
            .chain(rest)
            .map(move |item| {
                cancel.check()?;
                item
            })
            .boxed()
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.cur.is_empty() {
            match self.recv() {
                Some(Ok(chunk)) => self.cur = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// `io::copy` with a buffer of one chunk. std's copy moves 8 KiB at a time, which costs
/// a syscall or a compressor call per 8 KiB: measurable on a multi-GiB copy.
pub fn copy(
    input: &mut (impl Read + ?Sized),
    output: &mut (impl Write + ?Sized),
) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        output.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Feeds an async stream (a destination's `get`) into a pipe, from a tokio task.
pub fn from_stream(mut stream: ByteStream, cancel: &Cancel) -> ChunkReader {
    let (tx, rx) = mpsc::channel(DEPTH);
    tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let (msg, failed) = match item {
                Ok(b) => (Msg::Chunk(b), false),
                Err(e) => (Msg::Failed(e), true),
            };
            if tx.send(msg).await.is_err() || failed {
                return;
            }
        }
        let _ = tx.send(Msg::End).await;
    });
    ChunkReader::new(rx, cancel)
}

/// sha256 and length of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    pub sha256: String,
    pub size: u64,
}

/// Forwards chunks from `input` to `output`, hashing them on the way.
/// When `expect` is given, a mismatch at the end fails the stream instead of ending it.
pub fn hash_tap(
    mut input: ChunkReader,
    mut output: ChunkWriter,
    expect: Option<Digested>,
) -> io::Result<Digested> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = input.recv() {
        let chunk = chunk?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        output.send(chunk)?;
    }
    let got = Digested {
        sha256: hex::encode(hasher.finalize()),
        size,
    };
    if let Some(want) = expect {
        if want != got {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "checksum mismatch: the copy is corrupt (expected sha256 {} and {} bytes, read sha256 {} and {} bytes)",
                    want.sha256, want.size, got.sha256, got.size
                ),
            );
            let msg = e.to_string();
            output.fail(e);
            return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
        }
    }
    output.finish()?;
    Ok(got)
}

/// The threads of one pipeline.
pub struct Stages<T = ()> {
    handles: Vec<(String, JoinHandle<io::Result<T>>)>,
}

impl<T> Default for Stages<T> {
    fn default() -> Self {
        Stages {
            handles: Vec::new(),
        }
    }
}

impl<T: Send + 'static> Stages<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) {
        let name = name.into();
        let handle = std::thread::Builder::new()
            .name(format!("twindb-{name}"))
            .spawn(f)
            .expect("spawning a pipeline thread");
        self.handles.push((name, handle));
    }

    /// Waits for every stage. Returns their results in order, or the first
    /// error that is not merely a consequence of another stage's failure.
    pub fn join(self) -> Result<Vec<T>, StageError> {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (name, h) in self.handles {
            match h.join() {
                Ok(Ok(v)) => results.push(v),
                Ok(Err(e)) => errors.push(StageError {
                    stage: name,
                    cause: e,
                }),
                Err(_) => errors.push(StageError {
                    stage: name,
                    cause: io::Error::other("the stage panicked"),
                }),
            }
        }
        if errors.is_empty() {
            return Ok(results);
        }
        let root = errors
            .iter()
            .position(|e| !is_propagated(&e.cause))
            .unwrap_or(0);
        Err(errors.swap_remove(root))
    }
}

/// How long a cancelled pipeline gets to stop before its stuck stages are left behind.
/// More than [`crate::process::GRACE`], so that a program that ignores SIGTERM is
/// killed and its stage ends normally within it.
pub const STOP_LIMIT: Duration = Duration::from_secs(8);

/// Runs `fut` to its end, or, once `cancel` is set, for at most [`STOP_LIMIT`] more:
/// `None` then. A stage blocked in a read that nothing can interrupt (a hung NFS or
/// FUSE mount) must not hold its job forever: its thread is left behind, detached,
/// and the job ends without it.
pub async fn until_stopped<F: std::future::Future>(cancel: &Cancel, fut: F) -> Option<F::Output> {
    let stopped = async {
        cancel.cancelled().await;
        tokio::time::sleep(STOP_LIMIT).await;
    };
    tokio::select! {
        out = fut => Some(out),
        _ = stopped => None,
    }
}

/// The error of a pipeline that did not stop within [`STOP_LIMIT`] of its cancel.
pub fn left_behind() -> StageError {
    StageError {
        stage: "pipeline".into(),
        cause: io::Error::other(format!(
            "cancelled; a stage did not stop within {} s (a read blocked in the kernel?) and was left behind",
            STOP_LIMIT.as_secs()
        )),
    }
}

/// Displays as `stage: cause` (the cause is not repeated as `source()`).
#[derive(Debug, thiserror::Error)]
#[error("{stage}: {cause}")]
pub struct StageError {
    pub stage: String,
    pub cause: io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancelled_wakes_as_soon_as_the_flag_is_set() {
        let cancel = Cancel::default();
        let waiting = cancel.cancelled();
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        cancel.cancel();
        // Ready on the very next poll: no timer between the cancel and the wake-up.
        assert!(futures::poll!(&mut waiting).is_ready());
        // A clone sees it too, and an already cancelled flag resolves at once.
        assert!(futures::poll!(Box::pin(cancel.clone().cancelled())).is_ready());
    }

    #[test]
    fn bytes_flow_and_a_clean_finish_is_eof() {
        let cancel = Cancel::default();
        let (mut w, mut r) = pipe(&cancel);
        let t = std::thread::spawn(move || {
            for i in 0..3000u32 {
                w.write_all(&i.to_le_bytes()).unwrap();
            }
            w.finish().unwrap();
        });
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        t.join().unwrap();
        assert_eq!(out.len(), 12000);
        assert_eq!(&out[4..8], &1u32.to_le_bytes());
    }

    #[test]
    fn a_dropped_writer_is_an_error_not_eof() {
        let cancel = Cancel::default();
        let (mut w, mut r) = pipe(&cancel);
        let t = std::thread::spawn(move || {
            w.write_all(b"partial").unwrap();
            w.send(Bytes::from_static(b"x")).unwrap();
            drop(w);
        });
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        t.join().unwrap();
        assert!(is_propagated(&err));
    }

    /// A writer that dies with the pipe full cannot hand over a last message; its
    /// reader must still fail once it has drained what was sent, never see a clean end.
    #[test]
    fn a_writer_dropped_with_the_pipe_full_is_an_error_not_eof() {
        let cancel = Cancel::default();
        let (mut w, mut r) = pipe(&cancel);
        for _ in 0..DEPTH {
            w.send(Bytes::from_static(b"chunk")).unwrap();
        }
        drop(w);
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert!(is_propagated(&err), "{err}");
        assert_eq!(out.len(), DEPTH * 5);
    }

    /// The same seen by a destination, through the async stream.
    #[tokio::test]
    async fn a_destination_sees_an_unfinished_stream_fail() {
        let cancel = Cancel::default();
        let (mut w, r) = pipe(&cancel);
        std::thread::spawn(move || {
            for _ in 0..DEPTH {
                w.send(Bytes::from_static(b"chunk")).unwrap();
            }
        })
        .join()
        .unwrap();
        let items: Vec<io::Result<Bytes>> = r.into_stream().collect().await;
        assert_eq!(items.len(), DEPTH + 1);
        assert!(items[DEPTH].is_err(), "the stream must end with an error");

        let (mut w, r) = pipe(&cancel);
        std::thread::spawn(move || {
            w.send(Bytes::from_static(b"chunk")).unwrap();
            w.finish().unwrap();
        });
        let items: Vec<io::Result<Bytes>> = r.into_stream().collect().await;
        assert_eq!(items.len(), 1);
        assert!(items[0].is_ok());
    }

    #[test]
    fn hash_tap_rejects_a_mismatch() {
        let cancel = Cancel::default();
        let (mut w1, r1) = pipe(&cancel);
        let (w2, mut r2) = pipe(&cancel);
        let feeder = std::thread::spawn(move || {
            w1.write_all(b"hello").unwrap();
            w1.finish().unwrap();
        });
        let want = Digested {
            sha256: "00".repeat(32),
            size: 5,
        };
        let tap = std::thread::spawn(move || hash_tap(r1, w2, Some(want)));
        let mut out = Vec::new();
        let err = r2.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        feeder.join().unwrap();
        assert!(tap.join().unwrap().is_err());
    }
}
