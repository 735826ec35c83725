//! One segment: the bytes [start, end) of a binlog file, streamed to the destination
//! as the events arrive (the put starts with the first event and ends when the
//! segment closes), through the same modifier chain as every copy, then recorded.
//!
//! Nothing is spooled: the events go through a small bounded channel into the copy
//! pipeline, so a slow destination slows the reading of the server's log (the lag
//! grows) and never loses an event.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use twindb_proto::CopyKind;

use crate::backup::{begin_put, local_record, store, BackupError, Stored};
use crate::engine::{Engine, JobCtx};
use crate::key::binlog_segment_key;
use crate::modifier::ModifierSpec;
use crate::source::{Source, SourceReport};
use crate::status::{BinlogMeta, CopyMeta, SegmentMeta, Writing};

/// Events in flight between the server connection and the pipeline: with the
/// pipeline's own bounded pipes, what a segment holds in memory is small and fixed.
const IN_FLIGHT: usize = 64;

/// Which file a segment belongs to, and whose it is.
#[derive(Debug, Clone, PartialEq)]
pub struct FileId {
    pub server_uuid: String,
    pub name: String,
    /// The time and server_id in the file's format description.
    pub first_event: DateTime<Utc>,
    pub server_id: u32,
}

pub struct Segment {
    pub file: FileId,
    pub start: u64,
    pub end: u64,
    pub first_event_time: DateTime<Utc>,
    pub last_event_time: DateTime<Utc>,
    /// When its first event arrived: the segment closes `max_lag` after.
    pub opened: tokio::time::Instant,
    key: String,
    started: DateTime<Utc>,
    chain: Vec<ModifierSpec>,
    tx: Option<mpsc::Sender<Bytes>>,
    ctx: Arc<JobCtx>,
    put: tokio::task::JoinHandle<Result<Stored, BackupError>>,
    writing: Writing,
}

/// Feeds the events of one segment into the copy pipeline.
struct ChannelSource {
    rx: mpsc::Receiver<Bytes>,
    what: String,
}

impl Source for ChannelSource {
    fn describe(&self) -> String {
        self.what.clone()
    }

    fn write_to(&mut self, out: &mut dyn Write) -> io::Result<SourceReport> {
        while let Some(bytes) = self.rx.blocking_recv() {
            out.write_all(&bytes)?;
        }
        Ok(SourceReport::default())
    }
}

impl Segment {
    /// Records the key as pending and starts its put.
    pub async fn open(
        engine: &Arc<Engine>,
        chain: &[ModifierSpec],
        file: FileId,
        start: u64,
        event_time: DateTime<Utc>,
    ) -> Result<Segment, BackupError> {
        let key = binlog_segment_key(
            engine.host(),
            &file.server_uuid,
            &file.name,
            file.first_event,
            start,
            chain,
        );
        let writing = begin_put(engine, &key).await?;
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let ctx = Arc::new(JobCtx::default());
        let source = ChannelSource {
            rx,
            what: format!("{}@{start}", file.name),
        };
        let put = {
            let (engine, ctx, chain, key) =
                (engine.clone(), ctx.clone(), chain.to_vec(), key.clone());
            tokio::spawn(async move {
                // One compression thread: a segment is small and closes within
                // max_lag, and libzstd's workers would each hold a job buffer of
                // several MiB (tens of MiB in all) for every segment the stream opens.
                let mut env = engine.modifier_env();
                env.threads = 1;
                store(
                    engine.dest.as_ref(),
                    engine.keep_local.as_ref(),
                    Box::new(source),
                    &chain,
                    &env,
                    &key,
                    &ctx,
                )
                .await
            })
        };
        Ok(Segment {
            file,
            start,
            end: start,
            first_event_time: event_time,
            last_event_time: event_time,
            opened: tokio::time::Instant::now(),
            key,
            started: Utc::now(),
            chain: chain.to_vec(),
            tx: Some(tx),
            ctx,
            put,
            writing,
        })
    }

    /// Appends bytes that follow `end` in the file. Waits while the destination is
    /// slower than the server: that is the back-pressure.
    pub async fn push(
        &mut self,
        bytes: Bytes,
        event_time: Option<DateTime<Utc>>,
    ) -> Result<(), BackupError> {
        let len = bytes.len() as u64;
        let sent = match &self.tx {
            Some(tx) => tx.send(bytes).await.is_ok(),
            None => false,
        };
        if !sent {
            // The pipeline stopped reading: its own error says why.
            self.tx = None;
            return Err(self.fail().await);
        }
        self.end += len;
        if let Some(t) = event_time {
            self.last_event_time = t;
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    async fn fail(&mut self) -> BackupError {
        self.ctx.cancel.cancel();
        match (&mut self.put).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => BackupError::Io {
                what: self.key.clone(),
                cause: io::Error::other("the segment's pipeline ended early"),
            },
            Err(e) => BackupError::Io {
                what: self.key.clone(),
                cause: io::Error::other(e),
            },
        }
    }

    /// Ends the put and records the segment. `last`: it ends the file.
    pub async fn commit(
        mut self,
        engine: &Engine,
        gtid: Option<String>,
        last: bool,
    ) -> Result<CopyMeta, BackupError> {
        self.tx = None;
        let stored = match (&mut self.put).await {
            Ok(r) => r?,
            Err(e) => {
                return Err(BackupError::Io {
                    what: self.key.clone(),
                    cause: io::Error::other(e),
                })
            }
        };
        let meta = CopyMeta {
            key: self.key.clone(),
            kind: CopyKind::Binlog,
            run_type: None,
            backup_type: None,
            host: engine.host().to_string(),
            source: format!(
                "binlog stream {} [{}, {})",
                self.file.name, self.start, self.end
            ),
            started: self.started,
            finished: Utc::now(),
            source_size: self.end - self.start,
            size: stored.digest.size,
            sha256: stored.digest.sha256.clone(),
            local: local_record(&stored, &self.key, &self.chain),
            twindb: None,
            modifiers: self.chain.clone(),
            parent: None,
            mysql: None,
            binlog: Some(BinlogMeta {
                name: self.file.name.clone(),
                first_event: self.file.first_event,
                server_id: Some(self.file.server_id),
                segment: Some(SegmentMeta {
                    server_uuid: self.file.server_uuid.clone(),
                    start: self.start,
                    end: self.end,
                    first_event_time: self.first_event_time,
                    last_event_time: self.last_event_time,
                    gtid,
                    last,
                }),
            }),
        };
        crate::failpoint::point("binlog.segment.before-record");
        let writing = self.writing;
        engine.status.record(meta.clone(), writing).await?;
        Ok(meta)
    }
}
