//! One closed binary log file, copied as it is.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};

use super::{Source, SourceReport};

pub struct BinlogSource {
    pub path: PathBuf,
}

impl Source for BinlogSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn write_to(&mut self, out: &mut dyn Write) -> io::Result<SourceReport> {
        let mut f = File::open(&self.path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        crate::pipeline::copy(&mut f, out)?;
        Ok(SourceReport::default())
    }
}

/// Who wrote a binlog file and when it began: the header of its first event (the
/// format description), after 4 magic bytes `\xfebin`. The header starts with a u32
/// Unix time, a type byte and the u32 server_id of the server that wrote the file.
/// A name alone says nothing: after `RESET MASTER`, on a rebuilt server or after a
/// failover, `mysql-bin.000001` is another file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinlogIdentity {
    pub first_event: DateTime<Utc>,
    pub server_id: u32,
    /// The file's size when it was read (a closed binlog no longer grows).
    pub size: u64,
}

pub fn binlog_identity(path: &std::path::Path) -> io::Result<BinlogIdentity> {
    let mut head = [0u8; 13];
    let mut f = File::open(path)?;
    f.read_exact(&mut head)?;
    if &head[..4] != b"\xfebin" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a binary log", path.display()),
        ));
    }
    let secs = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let first_event = Utc
        .timestamp_opt(i64::from(secs), 0)
        .single()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad event time"))?;
    Ok(BinlogIdentity {
        first_event,
        server_id: u32::from_le_bytes([head[9], head[10], head[11], head[12]]),
        size: f.metadata()?.len(),
    })
}
