//! Where a stream starts: just after the last stored byte of this server's binlog, or,
//! on the first start, at the oldest file the server has that is not stored yet.

use std::path::{Path, PathBuf};

use crate::mysql::{binlog_sequence, Server};
use crate::status::{CopyMeta, Status};

use super::event::GtidState;
use super::segment::FileId;
use super::StreamError;

/// What the stream needs to know of the server.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    /// `@@server_uuid`, or `server-id-{N}` where there is none (MariaDB).
    pub server_uuid: String,
    pub server_id: u32,
    /// 4 when events carry a CRC32 (binlog_checksum), else 0.
    pub checksum_len: usize,
    /// SHOW BINARY LOGS, oldest first.
    pub names: Vec<String>,
    /// Their sizes, as SHOW BINARY LOGS gave them.
    pub sizes: std::collections::HashMap<String, u64>,
    /// Where the files are, when on this machine (to tell stored closed files).
    pub dir: Option<PathBuf>,
    pub vendor: crate::mysql::Vendor,
}

impl ServerIdentity {
    pub async fn read(server: &mut Server) -> Result<ServerIdentity, StreamError> {
        let info = server.info().await?;
        if !info.log_bin {
            return Err(StreamError::NoBinlog);
        }
        let server_id: u32 = server
            .query_opt_string("SELECT @@server_id")
            .await?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let server_uuid = server
            .query_opt_string("SELECT @@server_uuid")
            .await
            .ok()
            .flatten()
            .filter(|u| !u.is_empty() && u.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
            .unwrap_or_else(|| format!("server-id-{server_id}"));
        let checksum = server
            .query_opt_string("SELECT @@global.binlog_checksum")
            .await?
            .unwrap_or_default();
        let listed = server.binary_log_sizes().await?;
        let sizes = listed.iter().cloned().collect();
        let mut names: Vec<String> = listed.into_iter().map(|(n, _)| n).collect();
        names.sort_by_key(|n| binlog_sequence(n));
        let dir = info.log_bin_basename.as_deref().map(|b| {
            Path::new(b)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        });
        Ok(ServerIdentity {
            server_uuid,
            server_id,
            checksum_len: if checksum.eq_ignore_ascii_case("NONE") {
                0
            } else {
                4
            },
            names,
            sizes,
            dir,
            vendor: info.vendor,
        })
    }
}

/// Where to ask the server to start.
#[derive(Debug, Clone)]
pub struct Start {
    pub file: String,
    /// 4 for a file's start (the stream then stores the magic too).
    pub pos: u64,
    /// Known when resuming inside a file: the format description the server sends
    /// again must match it, else the file is another one of the same name.
    pub file_id: Option<FileId>,
    pub gtid: GtidState,
    /// Why the stored stream does not continue into what the server has.
    pub gap: Option<String>,
}

/// The newest part of this server's binlog the stream stored: a segment, or a file
/// consolidated from its segments (whose segments are gone then).
pub fn newest_segment<'a>(status: &'a Status, server_uuid: &str) -> Option<&'a CopyMeta> {
    status
        .copies
        .iter()
        .filter(|c| {
            c.streamed_part()
                .is_some_and(|(_, s)| s.server_uuid == server_uuid)
        })
        .max_by_key(|c| {
            let (b, s) = c.streamed_part().expect("filtered");
            (b.first_event, binlog_sequence(&b.name), s.end)
        })
}

pub fn start(status: &Status, id: &ServerIdentity, not_after: Option<&FileId>) -> Start {
    let fresh = |gap: Option<String>| Start {
        file: first_unstored(status, id),
        pos: 4,
        file_id: None,
        gtid: GtidState::default(),
        gap,
    };
    let Some(newest) = newest_segment(status, &id.server_uuid) else {
        return fresh(None);
    };
    let (b, s) = newest.streamed_part().expect("a stored part");
    let file_id = FileId {
        server_uuid: s.server_uuid.clone(),
        name: b.name.clone(),
        first_event: b.first_event,
        server_id: b.server_id.unwrap_or(id.server_id),
    };
    let gtid = GtidState::parse(s.gtid.as_deref().unwrap_or_default());
    if not_after == Some(&file_id) {
        // The server's file of that name began at another time: another history.
        return fresh(Some(format!(
            "the server's {} is not the file streamed until offset {} (it began at another time: \
             RESET MASTER, a rebuilt server)",
            b.name, s.end
        )));
    }
    if !s.last {
        // Shorter than what was stored: another file of that name (RESET MASTER).
        if id.sizes.get(&b.name).is_some_and(|size| *size < s.end) {
            return fresh(Some(format!(
                "the server's {} is shorter than what was streamed of it (offset {}): RESET MASTER, \
                 a rebuilt server or another server",
                b.name, s.end
            )));
        }
        if id.names.contains(&b.name) {
            return Start {
                file: b.name.clone(),
                pos: s.end,
                file_id: Some(file_id),
                gtid,
                gap: None,
            };
        }
        return fresh(Some(format!(
            "the server no longer has {} (streamed until offset {}): purged, RESET MASTER or another server",
            b.name, s.end
        )));
    }
    let next = binlog_sequence(&b.name).map(|n| n + 1);
    match id.names.iter().find(|n| binlog_sequence(n) == next) {
        Some(name) => Start {
            file: name.clone(),
            pos: 4,
            file_id: None,
            gtid,
            gap: None,
        },
        None => fresh(Some(format!(
            "the server no longer has the file after {} (streamed whole): purged, RESET MASTER or another server",
            b.name
        ))),
    }
}

/// The oldest file the server has that no closed-file copy holds yet; the server's
/// current file when all are stored.
fn first_unstored(status: &Status, id: &ServerIdentity) -> String {
    let stored = |name: &String| {
        let Some(dir) = &id.dir else { return false };
        match crate::source::binlog_identity(&dir.join(name)) {
            Ok(bi) => status.copies.iter().any(|c| c.is_binlog_file(name, &bi)),
            Err(_) => false,
        }
    };
    let last = id.names.len().saturating_sub(1);
    id.names
        .iter()
        .enumerate()
        .find(|(i, n)| *i == last || !stored(n))
        .map(|(_, n)| n.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};
    use twindb_proto::CopyKind;

    use super::*;
    use crate::status::{BinlogMeta, SegmentMeta};

    fn t0() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
    }

    fn segment(name: &str, born_min: i64, start: u64, end: u64, last: bool) -> CopyMeta {
        CopyMeta {
            key: format!("h/binlog/stream/u/{name}/{start:020}"),
            kind: CopyKind::Binlog,
            run_type: None,
            backup_type: None,
            parent: None,
            host: "h".into(),
            source: String::new(),
            started: t0(),
            finished: t0(),
            source_size: end - start,
            size: end - start,
            sha256: String::new(),
            modifiers: vec![],
            mysql: None,
            binlog: Some(BinlogMeta {
                name: name.into(),
                first_event: t0() + Duration::minutes(born_min),
                server_id: Some(1),
                segment: Some(SegmentMeta {
                    server_uuid: "u".into(),
                    start,
                    end,
                    first_event_time: t0(),
                    last_event_time: t0(),
                    gtid: Some("0-1-7".into()),
                    last,
                }),
                consolidated: None,
            }),
            local: None,
            twindb: None,
        }
    }

    fn server(names: &[&str]) -> ServerIdentity {
        ServerIdentity {
            server_uuid: "u".into(),
            server_id: 1,
            checksum_len: 4,
            names: names.iter().map(|n| n.to_string()).collect(),
            sizes: names.iter().map(|n| (n.to_string(), 1000)).collect(),
            dir: None,
            vendor: crate::mysql::Vendor::Mariadb,
        }
    }

    fn status(copies: Vec<CopyMeta>) -> Status {
        Status {
            copies,
            ..Status::default()
        }
    }

    #[test]
    fn first_start_begins_at_the_oldest_file() {
        let s = start(&status(vec![]), &server(&["b.000002", "b.000003"]), None);
        assert_eq!((s.file.as_str(), s.pos, s.gap), ("b.000002", 4, None));
    }

    #[test]
    fn resumes_after_the_newest_stored_byte_of_this_server() {
        let st = status(vec![
            segment("b.000002", 0, 0, 100, false),
            segment("b.000002", 0, 100, 250, false),
        ]);
        let s = start(&st, &server(&["b.000002"]), None);
        assert_eq!((s.file.as_str(), s.pos), ("b.000002", 250));
        assert_eq!(s.file_id.unwrap().first_event, t0());
        assert_eq!(s.gtid.render().as_deref(), Some("0-1-7"));
        assert!(s.gap.is_none());
        // Another server's segments are not this one's history.
        let mut other = server(&["b.000002"]);
        other.server_uuid = "v".into();
        assert_eq!(start(&st, &other, None).pos, 4);
    }

    #[test]
    fn a_file_stored_whole_goes_on_with_the_next() {
        let st = status(vec![segment("b.000002", 0, 0, 300, true)]);
        let s = start(&st, &server(&["b.000002", "b.000003"]), None);
        assert_eq!((s.file.as_str(), s.pos, s.gap), ("b.000003", 4, None));
    }

    #[test]
    fn a_file_consolidated_from_its_segments_goes_on_with_the_next() {
        let mut whole = segment("b.000002", 0, 0, 300, true);
        whole.key = "h/binlog/b.000002-2026-11-25_10_00_00".into();
        let b = whole.binlog.as_mut().unwrap();
        b.consolidated = b.segment.take();
        let st = status(vec![segment("b.000001", -5, 0, 100, true), whole]);
        let s = start(&st, &server(&["b.000002", "b.000003"]), None);
        assert_eq!((s.file.as_str(), s.pos, s.gap), ("b.000003", 4, None));
        assert_eq!(s.gtid.render().as_deref(), Some("0-1-7"));
    }

    #[test]
    fn a_position_the_server_no_longer_has_is_a_gap() {
        let st = status(vec![segment("b.000002", 0, 0, 100, false)]);
        let s = start(&st, &server(&["b.000005", "b.000006"]), None);
        assert_eq!((s.file.as_str(), s.pos), ("b.000005", 4));
        assert!(s.gap.unwrap().contains("no longer has b.000002"));
        // The next file purged too, after a whole one.
        let st = status(vec![segment("b.000002", 0, 0, 300, true)]);
        let s = start(&st, &server(&["b.000004"]), None);
        assert!(s.gap.is_some());
        // A file of the same name that began at another time (RESET MASTER).
        let st = status(vec![segment("b.000002", 0, 0, 100, false)]);
        let other = start(&st, &server(&["b.000002"]), None).file_id.unwrap();
        let s = start(&st, &server(&["b.000001", "b.000002"]), Some(&other));
        assert_eq!((s.file.as_str(), s.pos), ("b.000001", 4));
        assert!(s.gap.unwrap().contains("began at another time"));
        // A file of the same name, shorter than what was stored of the old one.
        let st = status(vec![segment("b.000001", 0, 0, 5000, false)]);
        let s = start(&st, &server(&["b.000001"]), None);
        assert_eq!((s.file.as_str(), s.pos), ("b.000001", 4));
        assert!(s.gap.unwrap().contains("shorter than what was streamed"));
    }
}
