//! Binlog files as point-in-time restore sees them: each closed-file copy, and each
//! file the streamer stored in segments, as one entry (the segments from offset 0 that
//! follow each other). Replay then streams a streamed file's segments in order, each
//! through its own recorded chain, into one `mysqlbinlog`.

use std::collections::BTreeMap;

use crate::status::{CopyMeta, SegmentMeta, Status};

/// Which file a segment belongs to: server, name, first event.
type FileKey = (String, String, chrono::DateTime<chrono::Utc>);

fn file_key(c: &CopyMeta) -> Option<FileKey> {
    let (b, s) = c.segment()?;
    Some((s.server_uuid.clone(), b.name.clone(), b.first_event))
}

/// The segments of one streamed file in order, as far as they follow each other from
/// offset 0.
fn contiguous(mut segments: Vec<&CopyMeta>) -> Vec<&CopyMeta> {
    segments.sort_by_key(|c| c.segment().map(|(_, s)| s.start));
    let mut end = 0;
    let mut out = Vec::new();
    for c in segments {
        let (_, s) = c.segment().expect("segments only");
        if s.start != end {
            break;
        }
        end = s.end;
        out.push(c);
    }
    out
}

/// Every binlog file a restore can replay: closed-file copies, and streamed files
/// (one synthesized entry each, keyed by its first segment) that no closed-file copy
/// holds already.
pub(super) fn binlog_files(status: &Status) -> Vec<CopyMeta> {
    let mut out: Vec<CopyMeta> = status
        .copies
        .iter()
        .filter(|c| c.kind == twindb_proto::CopyKind::Binlog && c.segment().is_none())
        .cloned()
        .map(|mut c| {
            // A file consolidated from its segments covers, as they did, until its
            // last event; not until it was consolidated (later events are in the next
            // file, maybe not stored yet).
            if let Some(s) = c.binlog.as_ref().and_then(|b| b.consolidated.as_ref()) {
                c.started = s.last_event_time;
            }
            c
        })
        .collect();
    let mut by_file: BTreeMap<FileKey, Vec<&CopyMeta>> = BTreeMap::new();
    for c in &status.copies {
        if let Some(k) = file_key(c) {
            by_file.entry(k).or_default().push(c);
        }
    }
    for segments in by_file.into_values() {
        let run = contiguous(segments);
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        let (fb, fs) = first.segment().expect("a segment");
        let (_, ls) = last.segment().expect("a segment");
        let closed = out.iter().any(|c| {
            c.binlog.as_ref().is_some_and(|b| {
                b.name == fb.name
                    && b.first_event == fb.first_event
                    && (b.server_id.is_none() || b.server_id == fb.server_id)
            })
        });
        if closed {
            continue;
        }
        let mut file = (*first).clone();
        let mut binlog = fb.clone();
        binlog.segment = Some(SegmentMeta {
            server_uuid: fs.server_uuid.clone(),
            start: 0,
            end: ls.end,
            first_event_time: fs.first_event_time,
            last_event_time: ls.last_event_time,
            gtid: ls.gtid.clone(),
            last: ls.last,
        });
        file.binlog = Some(binlog);
        // What the file covers: until its last stored event.
        file.started = ls.last_event_time;
        file.finished = last.finished;
        file.size = run.iter().map(|c| c.size).sum();
        file.source_size = ls.end;
        out.push(file);
    }
    out
}

/// The copies to stream for one entry of [`binlog_files`]: the entry itself, or a
/// streamed file's segments in order.
pub(super) fn parts(status: &Status, file: &CopyMeta) -> Vec<CopyMeta> {
    let Some(want) = file_key(file) else {
        return vec![file.clone()];
    };
    let end = file.segment().map_or(0, |(_, s)| s.end);
    let segments = status
        .copies
        .iter()
        .filter(|c| file_key(c).as_ref() == Some(&want))
        .collect();
    contiguous(segments)
        .into_iter()
        .filter(|c| c.segment().is_some_and(|(_, s)| s.end <= end))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use twindb_proto::CopyKind;

    use super::*;
    use crate::status::BinlogMeta;

    fn seg(name: &str, start: u64, end: u64) -> CopyMeta {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        CopyMeta {
            key: format!("h/binlog/stream/u/{name}/{start:020}"),
            kind: CopyKind::Binlog,
            run_type: None,
            backup_type: None,
            parent: None,
            host: "h".into(),
            source: String::new(),
            started: t,
            finished: t,
            source_size: end - start,
            size: 1,
            sha256: String::new(),
            modifiers: vec![],
            mysql: None,
            binlog: Some(BinlogMeta {
                name: name.into(),
                first_event: t,
                server_id: Some(1),
                segment: Some(SegmentMeta {
                    server_uuid: "u".into(),
                    start,
                    end,
                    first_event_time: t,
                    last_event_time: t + chrono::Duration::seconds(end as i64),
                    gtid: None,
                    last: false,
                }),
                consolidated: None,
            }),
            local: None,
            twindb: None,
        }
    }

    #[test]
    fn a_streamed_file_is_its_segments_that_follow_each_other_from_zero() {
        let status = Status {
            // Out of order, and one after a hole (never replayed).
            copies: vec![
                seg("b.000002", 10, 20),
                seg("b.000002", 0, 10),
                seg("b.000002", 30, 40),
            ],
            ..Status::default()
        };
        let files = binlog_files(&status);
        assert_eq!(files.len(), 1);
        let (_, s) = files[0].segment().unwrap();
        assert_eq!((s.start, s.end), (0, 20));
        let starts: Vec<u64> = parts(&status, &files[0])
            .iter()
            .map(|c| c.segment().unwrap().1.start)
            .collect();
        assert_eq!(starts, [0, 10]);
    }

    #[test]
    fn a_closed_file_copy_wins_over_the_stream_of_the_same_file() {
        let mut closed = seg("b.000002", 0, 20);
        closed.key = "h/binlog/b.000002-2026-11-25_10_00_00".into();
        closed.binlog.as_mut().unwrap().segment = None;
        let status = Status {
            copies: vec![seg("b.000002", 0, 10), closed.clone()],
            ..Status::default()
        };
        assert_eq!(binlog_files(&status), vec![closed.clone()]);
        assert_eq!(parts(&status, &closed), vec![closed]);
    }
}
