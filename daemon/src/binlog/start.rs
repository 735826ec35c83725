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
    /// Where the files are, when on this machine (to tell stored closed files).
    pub dir: Option<PathBuf>,
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
        let mut names = server.binary_logs().await?;
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
            dir,
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

/// The newest segment stored of this server.
pub fn newest_segment<'a>(status: &'a Status, server_uuid: &str) -> Option<&'a CopyMeta> {
    status
        .copies
        .iter()
        .filter(|c| {
            c.segment()
                .is_some_and(|(_, s)| s.server_uuid == server_uuid)
        })
        .max_by_key(|c| {
            let (b, s) = c.segment().expect("filtered");
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
    let (b, s) = newest.segment().expect("a segment");
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
