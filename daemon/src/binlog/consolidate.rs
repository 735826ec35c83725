//! Consolidation: a binlog file the stream stored whole becomes one closed-file copy,
//! and its segments go.
//!
//! A file is whole when its segments follow each other from offset 0 to one that
//! holds the file's ROTATE or STOP event (`SegmentMeta::last`, set by the streamer
//! when it read that event): the server never writes to a file after either. A file
//! with a hole, without its start, or that ended without either event (the server
//! crashed) stays as its segments; point-in-time restore reads those as they are.
//!
//! The segments are decoded one after the other (each through its own recorded chain
//! and checksum, as a restore reads them) into one put through today's chain, under
//! the key the periodic binlog job gives a closed file. Only once that copy is
//! recorded are the segments retired, as retention retires copies (recorded as
//! pending, unlisted, then deleted): a crash between leaves both, point-in-time
//! restore prefers the closed copy, and the next pass retires the segments. A pass
//! runs in a task of its own beside the stream (after each file the stream ends, at
//! each start, and every few minutes), so the live stream never waits for it.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, Notify};
use twindb_proto::CopyKind;

use crate::backup::{begin_put, local_record, store, BackupError};
use crate::engine::{Current, Engine, JobCtx};
use crate::key::binlog_key;
use crate::pipeline::Cancel;
use crate::restore::RestoreError;
use crate::source::{Source, SourceReport};
use crate::status::{BinlogMeta, CopyMeta, SegmentMeta, Status, StatusError};

/// Chunks in flight between the segments' reader and the new copy's pipeline.
const IN_FLIGHT: usize = 16;
const CHUNK: usize = 256 * 1024;
/// How often a pass runs with no file ended: it retries what failed, and retires
/// what a restore kept from being retired.
const EVERY: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ConsolidateError {
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("consolidating {file}: {cause}")]
    Store { file: String, cause: BackupError },
    #[error("consolidating {file}: reading segment {key}: {cause}")]
    Read {
        file: String,
        key: String,
        cause: RestoreError,
    },
}

/// One file the stream stored whole: its segments in order, and the closed-file copy
/// that holds it already, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Whole {
    pub segments: Vec<CopyMeta>,
    pub closed: Option<String>,
}

/// Which file a segment belongs to: server, name, first event.
type FileKey = (String, String, DateTime<Utc>);

/// The files the stream stored whole, oldest first.
pub fn plan(status: &Status) -> Vec<Whole> {
    let mut by_file: BTreeMap<(DateTime<Utc>, FileKey), Vec<&CopyMeta>> = BTreeMap::new();
    for c in &status.copies {
        if let Some((b, s)) = c.segment() {
            let file = (s.server_uuid.clone(), b.name.clone(), b.first_event);
            by_file.entry((b.first_event, file)).or_default().push(c);
        }
    }
    let mut out = Vec::new();
    for (_, mut segments) in by_file {
        segments.sort_by_key(|c| c.segment().map(|(_, s)| s.start));
        let mut end = 0;
        let follows = segments.iter().all(|c| {
            let (_, s) = c.segment().expect("segments only");
            let ok = s.start == end;
            end = s.end;
            ok
        });
        let last = segments.last().and_then(|c| c.segment()).map(|(_, s)| s);
        if !follows || !last.is_some_and(|s| s.last) {
            continue;
        }
        let (b, s) = segments[0].segment().expect("a segment");
        let closed = status
            .copies
            .iter()
            .find(|c| holds(c, b, &s.server_uuid, end))
            .map(|c| c.key.clone());
        out.push(Whole {
            segments: segments.into_iter().cloned().collect(),
            closed,
        });
    }
    out
}

/// Whether `c` is twindb's closed-file copy of the file `b` of `server_uuid`, `size`
/// bytes long. TwinDB Backup's copies are never taken for one: they record no size.
fn holds(c: &CopyMeta, b: &BinlogMeta, server_uuid: &str, size: u64) -> bool {
    let Some(cb) = c.binlog.as_ref() else {
        return false;
    };
    c.kind == CopyKind::Binlog
        && c.twindb.is_none()
        && cb.segment.is_none()
        && cb.name == b.name
        && cb.first_event == b.first_event
        && cb.server_id.is_none_or(|id| Some(id) == b.server_id)
        && cb
            .consolidated
            .as_ref()
            .is_none_or(|s| s.server_uuid == server_uuid)
        && c.source_size == size
}

/// Runs passes until `stop`: at once, whenever `wake` is notified, and every
/// [`EVERY`].
pub async fn run(current: Arc<Current>, wake: Arc<Notify>, stop: Cancel) {
    while !stop.is_cancelled() {
        let engine = current.get();
        if let Err(e) = pass(&engine, &stop).await {
            if !stop.is_cancelled() {
                tracing::warn!(error = %format!("{e:#}"), "binlog consolidation failed; the next pass retries");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Consolidates every file stored whole and not consolidated yet, and retires the
/// segments of every file a closed-file copy holds. A file that fails is left as it
/// is (its segments serve point-in-time restore) and the others go on.
pub async fn pass(engine: &Arc<Engine>, stop: &Cancel) -> Result<(), ConsolidateError> {
    let mut status = engine.status.load().await?;
    for whole in plan(&status) {
        if stop.is_cancelled() {
            break;
        }
        if let Err(e) = one(engine, &mut status, &whole, stop).await {
            if stop.is_cancelled() {
                break;
            }
            tracing::warn!(error = %format!("{e:#}"), "a binlog file stays as its segments; the next pass retries");
        }
    }
    Ok(())
}

async fn one(
    engine: &Arc<Engine>,
    status: &mut Status,
    whole: &Whole,
    stop: &Cancel,
) -> Result<(), ConsolidateError> {
    if whole.closed.is_none() {
        let meta = consolidate(engine, status, &whole.segments, stop).await?;
        tracing::info!(key = %meta.key, segments = whole.segments.len(), "binlog file consolidated");
        engine.metrics.binlog_consolidated();
        // The next file's key must not take this one's.
        status.copies.push(meta);
        crate::failpoint::point("binlog.consolidated.before-retire");
    }
    retire(engine, &whole.segments).await
}

/// Stores the file `segments` hold as one copy and records it.
async fn consolidate(
    engine: &Arc<Engine>,
    status: &Status,
    segments: &[CopyMeta],
    stop: &Cancel,
) -> Result<CopyMeta, ConsolidateError> {
    let (b, first) = segments[0].segment().expect("a segment");
    let (_, last) = segments[segments.len() - 1].segment().expect("a segment");
    let file = b.name.clone();
    let size = last.end;
    let store_error = |cause| ConsolidateError::Store {
        file: file.clone(),
        cause,
    };
    let chain = crate::backup::backup_chain(engine)
        .await
        .map_err(store_error)?;
    let key = status.free_key(b.first_event, |t| {
        binlog_key(engine.host(), &b.name, t, &chain)
    });
    let writing = begin_put(engine, &key).await.map_err(store_error)?;
    let started = Utc::now();
    let mut ctx = JobCtx::with_throttle(engine.throttle.clone());
    ctx.cancel = stop.child();
    let ctx = Arc::new(ctx);
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let source = Concat {
        rx,
        file: file.clone(),
        expected: size,
        cancel: ctx.cancel.clone(),
    };
    let put = {
        let (engine, ctx, chain, key) = (engine.clone(), ctx.clone(), chain.clone(), key.clone());
        tokio::spawn(async move {
            // One compression thread, as for the segments: libzstd's workers would hold
            // tens of MiB of job buffers, and this runs beside the live stream, which
            // must keep its CPU.
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
    let mut read = Ok(());
    let mut read_ctx = JobCtx::default();
    read_ctx.cancel = ctx.cancel.clone();
    for seg in segments {
        let tx = tx.clone();
        let streamed =
            crate::restore::stream_copy(engine, seg, &read_ctx, move |r| forward(r, &tx)).await;
        if let Err(cause) = streamed {
            read = Err(ConsolidateError::Read {
                file: file.clone(),
                key: seg.key.clone(),
                cause,
            });
            break;
        }
    }
    // A read that failed must not end the new copy's stream cleanly: stop it first.
    if read.is_err() {
        ctx.cancel.cancel();
    }
    drop(tx);
    let stored = match put.await {
        Ok(r) => r,
        Err(e) => Err(BackupError::Io {
            what: key.clone(),
            cause: io::Error::other(e),
        }),
    };
    read?;
    let stored = stored.map_err(store_error)?;
    let meta = CopyMeta {
        key: key.clone(),
        kind: CopyKind::Binlog,
        run_type: None,
        backup_type: None,
        host: engine.host().to_string(),
        source: format!("binlog stream {file}, {} segments", segments.len()),
        started,
        finished: Utc::now(),
        source_size: size,
        size: stored.digest.size,
        sha256: stored.digest.sha256.clone(),
        local: local_record(&stored, &key, &chain),
        twindb: None,
        modifiers: chain,
        parent: None,
        mysql: None,
        binlog: Some(BinlogMeta {
            name: b.name.clone(),
            first_event: b.first_event,
            server_id: b.server_id,
            segment: None,
            consolidated: Some(SegmentMeta {
                server_uuid: first.server_uuid.clone(),
                start: 0,
                end: size,
                first_event_time: first.first_event_time,
                last_event_time: last.last_event_time,
                gtid: last.gtid.clone(),
                last: true,
            }),
        }),
    };
    engine.status.record(meta.clone(), writing).await?;
    Ok(meta)
}

/// Removes the segments of a file a closed-file copy now holds, as retention removes
/// copies: pending and unlisted first, then deleted. Not while a restore or verify is
/// queued or running (it may have chosen them); a later pass does it then.
async fn retire(engine: &Engine, segments: &[CopyMeta]) -> Result<(), ConsolidateError> {
    if engine.status.is_read() {
        tracing::info!("the segments of a consolidated binlog stay while a restore or verify is queued or running");
        return Ok(());
    }
    let gone: Vec<String> = segments.iter().map(|c| c.key.clone()).collect();
    let doomed: Vec<_> = segments
        .iter()
        .map(|c| {
            let local = c
                .local
                .as_ref()
                .filter(|_| engine.keep_local.is_some())
                .map(|l| l.key.clone());
            crate::retention::pending(c.key.clone(), local)
        })
        .collect();
    engine.status.retire(&gone, &[], &doomed).await?;
    let mut done = Vec::new();
    for p in &doomed {
        match crate::retention::delete_pending(engine, p).await {
            Ok(()) => done.push(p.key.clone()),
            Err(e) => {
                tracing::warn!(key = %p.key, error = %format!("{e:#}"), "could not delete a consolidated segment; it is no longer listed and the next sweep retries");
            }
        }
    }
    engine.status.forget_pending(&done).await?;
    Ok(())
}

/// Sends what a segment decodes to into the new copy's pipeline.
fn forward(r: &mut dyn Read, tx: &mpsc::Sender<Bytes>) -> io::Result<()> {
    loop {
        let mut buf = vec![0; CHUNK];
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        tx.blocking_send(Bytes::from(buf))
            .map_err(|_| io::Error::other("the consolidated copy's pipeline stopped"))?;
    }
}

/// The decoded segments, one after the other: the whole file, and exactly its size
/// (anything else fails the put before it commits).
struct Concat {
    rx: mpsc::Receiver<Bytes>,
    file: String,
    expected: u64,
    /// Set before the channel closes when a segment failed to read (its checksum is
    /// known only after its last byte was sent).
    cancel: Cancel,
}

impl Source for Concat {
    fn describe(&self) -> String {
        format!("the streamed segments of {}", self.file)
    }

    fn write_to(&mut self, out: &mut dyn Write) -> io::Result<SourceReport> {
        let mut n = 0u64;
        while let Some(bytes) = self.rx.blocking_recv() {
            n += bytes.len() as u64;
            out.write_all(&bytes)?;
        }
        self.cancel.check()?;
        if n != self.expected {
            return Err(io::Error::other(format!(
                "the segments of {} hold {n} bytes, the file {}",
                self.file, self.expected
            )));
        }
        Ok(SourceReport::default())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
    }

    fn seg(name: &str, start: u64, end: u64, last: bool) -> CopyMeta {
        CopyMeta {
            key: format!("h/binlog/stream/u/{name}-x/{start:020}"),
            kind: CopyKind::Binlog,
            run_type: None,
            backup_type: None,
            parent: None,
            host: "h".into(),
            source: String::new(),
            started: t0(),
            finished: t0(),
            source_size: end - start,
            size: 1,
            sha256: String::new(),
            modifiers: vec![],
            mysql: None,
            binlog: Some(BinlogMeta {
                name: name.into(),
                first_event: t0(),
                server_id: Some(1),
                segment: Some(SegmentMeta {
                    server_uuid: "u".into(),
                    start,
                    end,
                    first_event_time: t0(),
                    last_event_time: t0(),
                    gtid: None,
                    last,
                }),
                consolidated: None,
            }),
            local: None,
            twindb: None,
        }
    }

    fn closed(name: &str, size: u64) -> CopyMeta {
        let mut c = seg(name, 0, size, true);
        c.key = format!("h/binlog/{name}-2026-11-25_10_00_00");
        let b = c.binlog.as_mut().unwrap();
        b.consolidated = b.segment.take();
        c
    }

    fn status(copies: Vec<CopyMeta>) -> Status {
        Status {
            copies,
            ..Status::default()
        }
    }

    fn starts(w: &Whole) -> Vec<u64> {
        w.segments
            .iter()
            .map(|c| c.segment().unwrap().1.start)
            .collect()
    }

    #[test]
    fn a_file_is_whole_when_its_segments_run_from_zero_to_its_rotate() {
        let st = status(vec![
            seg("b.000002", 10, 20, true),
            seg("b.000002", 0, 10, false),
            // Still being written.
            seg("b.000003", 0, 10, false),
        ]);
        let plan = plan(&st);
        assert_eq!(plan.len(), 1);
        assert_eq!(starts(&plan[0]), [0, 10]);
        assert_eq!(plan[0].closed, None);
    }

    #[test]
    fn a_hole_or_a_missing_start_is_never_consolidated() {
        let hole = status(vec![
            seg("b.000002", 0, 10, false),
            seg("b.000002", 15, 20, true),
        ]);
        assert!(plan(&hole).is_empty());
        let no_start = status(vec![
            seg("b.000002", 10, 20, false),
            seg("b.000002", 20, 30, true),
        ]);
        assert!(plan(&no_start).is_empty());
    }

    #[test]
    fn a_file_consolidated_already_only_has_its_segments_retired() {
        let st = status(vec![
            seg("b.000002", 0, 10, false),
            seg("b.000002", 10, 20, true),
            closed("b.000002", 20),
        ]);
        let plan = plan(&st);
        assert_eq!(plan.len(), 1);
        assert_eq!(
            plan[0].closed.as_deref(),
            Some("h/binlog/b.000002-2026-11-25_10_00_00")
        );
        // A closed copy of another size, or TwinDB's, is another file.
        let mut theirs = closed("b.000002", 20);
        theirs.twindb = Some(Default::default());
        for other in [closed("b.000002", 30), theirs] {
            let st = status(vec![seg("b.000002", 0, 20, true), other]);
            assert_eq!(super::plan(&st)[0].closed, None);
        }
    }
}
