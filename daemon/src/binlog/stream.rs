//! One connection's worth of streaming: the events the reader child spools (spool.rs),
//! each put at its place in its file and cut into segments (closed by age, size or the
//! end of the file).
//!
//! An event's place is its header's `log_pos` (the offset just after it) minus its
//! size; events in no file (the format description resent on a resume, heartbeats)
//! have none and are not stored. An event that would not follow the stored bytes
//! exactly is refused: a duplicate is skipped, a hole ends the session.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{sleep, sleep_until, Instant};

use super::event::{self, Header, MAGIC};
use super::segment::{FileId, Segment};
use super::spool::Spool;
use super::start::{ServerIdentity, Start};
use super::{Shared, StreamError};
use crate::engine::Engine;
use crate::modifier::ModifierSpec;
use crate::mysql::{ClientOptions, Server};
use crate::pipeline::Cancel;

/// How often the spool is looked at when it has nothing new.
const POLL: Duration = Duration::from_millis(50);
/// How long the reader may take to connect and send the first event.
const FIRST_EVENT: Duration = Duration::from_secs(20);
/// How often the server's own list of binlogs is compared with where the stream is.
const WATCH: Duration = Duration::from_secs(5);

struct Cursor {
    file: String,
    /// Bytes of `file` stored or in the open segment; 0 before the magic.
    pos: u64,
    file_id: Option<FileId>,
    gtid: event::GtidState,
    segment: Option<Segment>,
}

pub struct Session<'a> {
    pub engine: &'a Arc<Engine>,
    pub shared: &'a Shared,
    pub id: &'a ServerIdentity,
    pub chain: Vec<ModifierSpec>,
    /// For the watch's own connection.
    pub client: &'a ClientOptions,
    /// Told when a file ends: it can be consolidated (consolidate.rs).
    pub consolidate: &'a tokio::sync::Notify,
}

impl Session<'_> {
    pub async fn run(
        &self,
        mut spool: Spool,
        start: Start,
        stop: &Cancel,
    ) -> Result<(), StreamError> {
        let mut c = Cursor {
            file: start.file,
            pos: if start.pos <= 4 { 0 } else { start.pos },
            file_id: start.file_id,
            gtid: start.gtid,
            segment: None,
        };
        self.shared.at(&c.file, c.pos);
        let result = self.follow(&mut spool, &mut c, stop).await;
        // Whatever ended the session, the events read are whole: store them, and
        // those the child wrote before it stopped.
        spool.stop();
        let mut drained = Ok(());
        if result.is_ok() {
            while let Some(ev) = spool.next_event(&c.file).map_err(spool_error)? {
                if let Err(e) = self.on_event(&mut c, ev, &spool).await {
                    drained = Err(e);
                    break;
                }
            }
        }
        let committed = self.commit(&mut c, false, &spool).await;
        result.and(drained).and(committed)
    }

    async fn follow(
        &self,
        spool: &mut Spool,
        c: &mut Cursor,
        stop: &Cancel,
    ) -> Result<(), StreamError> {
        let max_lag = self.engine.config.binlog.max_lag;
        let began = Instant::now();
        let mut read_any = false;
        let mut next_watch = Instant::now() + WATCH;
        let mut behind_at: Option<(String, u64)> = None;
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            if Instant::now() >= next_watch {
                next_watch = Instant::now() + WATCH;
                self.watch(c, &mut behind_at).await?;
            }
            // The server sends the file's format description at once: a reader that
            // shows nothing is stuck (connecting, or a hung server) and is restarted.
            if !read_any && began.elapsed() > FIRST_EVENT {
                return Err(StreamError::Replication(format!(
                    "the binlog reader received nothing within {FIRST_EVENT:?}"
                )));
            }
            if c.segment
                .as_ref()
                .is_some_and(|s| s.opened + max_lag <= Instant::now())
            {
                self.commit(c, false, spool).await?;
            }
            // Listed before reading: if a next file exists now, the current one is whole.
            let next = spool.next_file_after(&c.file);
            if let Some(ev) = spool.next_event(&c.file).map_err(spool_error)? {
                read_any = true;
                self.on_event(c, ev, spool).await?;
                continue;
            }
            if let Some(next) = next {
                // The file ended without a ROTATE (the server stopped or crashed).
                self.commit(c, false, spool).await?;
                c.file = next;
                c.pos = 0;
                c.file_id = None;
                self.shared.at(&c.file, c.pos);
                continue;
            }
            if let Some(why) = spool.ended() {
                return Err(StreamError::Replication(why));
            }
            let deadline = c.segment.as_ref().map(|s| s.opened + max_lag);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
                _ = sleep(POLL) => {}
            }
        }
    }

    /// Compares the server's binlogs with the stream, on a connection of its own: a
    /// reader keeps waiting on a file `RESET MASTER` deleted, or on a connection that
    /// died without closing, and would never say so. The file being read shorter than
    /// what was read of it, or gone, ends the session (the next start finds the gap);
    /// the server ahead of the stream twice with no progress between ends it too.
    async fn watch(
        &self,
        c: &Cursor,
        behind_at: &mut Option<(String, u64)>,
    ) -> Result<(), StreamError> {
        if c.pos == 0 {
            return Ok(());
        }
        // A server that cannot be asked now is the reader's to notice.
        let Ok(Ok(mut server)) = tokio::time::timeout(WATCH, Server::connect(self.client)).await
        else {
            return Ok(());
        };
        let listed = tokio::time::timeout(WATCH, server.binary_log_sizes()).await;
        server.disconnect().await;
        let Ok(Ok(listed)) = listed else {
            return Ok(());
        };
        let size = listed.iter().find(|(n, _)| *n == c.file).map(|(_, s)| *s);
        match size {
            None => Err(StreamError::Replication(format!(
                "the server no longer has {} (purged or RESET MASTER)",
                c.file
            ))),
            Some(size) if size < c.pos => Err(StreamError::Replication(format!(
                "the server's {} is shorter than what was read of it ({size} < {}): RESET MASTER",
                c.file, c.pos
            ))),
            Some(size) if size > c.pos => {
                let here = (c.file.clone(), c.pos);
                if behind_at.as_ref() == Some(&here) {
                    return Err(StreamError::Replication(format!(
                        "the reader is stuck at {}:{} while the server wrote up to {size}",
                        c.file, c.pos
                    )));
                }
                *behind_at = Some(here);
                Ok(())
            }
            Some(_) => {
                *behind_at = None;
                Ok(())
            }
        }
    }

    async fn on_event(
        &self,
        c: &mut Cursor,
        mut bytes: Vec<u8>,
        spool: &Spool,
    ) -> Result<(), StreamError> {
        let h = Header::parse(&bytes).ok_or(StreamError::Replication("a short event".into()))?;
        let place = h.place();
        if h.kind == event::FORMAT_DESCRIPTION_EVENT {
            let seen = FileId {
                server_uuid: self.id.server_uuid.clone(),
                name: c.file.clone(),
                first_event: h.time(),
                server_id: h.server_id,
            };
            if let Some(expected) = &c.file_id {
                if expected.first_event != seen.first_event || expected.server_id != seen.server_id
                {
                    return Err(StreamError::OtherFile(expected.clone()));
                }
            }
            c.file_id = Some(seen);
        }
        let Some((start, end)) = place else {
            return Ok(());
        };
        let expected = c.pos.max(4);
        if start < expected {
            tracing::debug!(file = %c.file, start, "an event already stored; skipped");
            return Ok(());
        }
        if start > expected {
            return Err(StreamError::Hole {
                file: c.file.clone(),
                expected,
                got: start,
            });
        }
        c.gtid.observe(&bytes);
        event::as_closed(&mut bytes);
        if c.segment.is_none() {
            let file = c.file_id.clone().ok_or_else(|| {
                StreamError::Replication("an event before the file's format description".into())
            })?;
            let mut seg = Segment::open(self.engine, &self.chain, file, c.pos, h.time()).await?;
            if c.pos == 0 {
                seg.push(Bytes::from_static(MAGIC), None).await?;
                c.pos = 4;
            }
            self.shared.lag_since(Some(seg.opened));
            c.segment = Some(seg);
        }
        let rotate_to = (h.kind == event::ROTATE_EVENT)
            .then(|| event::rotate_target(&bytes, self.id.checksum_len))
            .flatten();
        let seg = c.segment.as_mut().expect("opened above");
        seg.push(Bytes::from(bytes), Some(h.time())).await?;
        c.pos = end;
        self.shared.at(&c.file, c.pos);
        if h.kind == event::ROTATE_EVENT || h.kind == event::STOP_EVENT {
            self.commit(c, true, spool).await?;
            if let Some((name, _)) = rotate_to {
                c.file = name;
                c.pos = 0;
                c.file_id = None;
                self.shared.at(&c.file, c.pos);
            }
        } else if seg.len() >= self.engine.config.binlog.segment_size {
            self.commit(c, false, spool).await?;
        }
        Ok(())
    }

    async fn commit(&self, c: &mut Cursor, last: bool, spool: &Spool) -> Result<(), StreamError> {
        let Some(seg) = c.segment.take() else {
            return Ok(());
        };
        let bytes = seg.len();
        seg.commit(self.engine, c.gtid.render(), last).await?;
        if last {
            self.consolidate.notify_one();
        }
        spool.release();
        self.shared.lag_since(None);
        self.shared.update(|s| s.last_error = None);
        self.engine.metrics.binlog_segment_stored(bytes);
        Ok(())
    }
}

fn spool_error(e: std::io::Error) -> StreamError {
    StreamError::Replication(format!("reading the spool: {e}"))
}
