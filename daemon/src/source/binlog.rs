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

/// Timestamp of the first event (the format description) of a binlog file: 4 magic
/// bytes `\xfebin`, then the event header whose first field is a u32 Unix time.
pub fn first_event_time(path: &std::path::Path) -> io::Result<DateTime<Utc>> {
    let mut head = [0u8; 8];
    File::open(path)?.read_exact(&mut head)?;
    if &head[..4] != b"\xfebin" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a binary log", path.display()),
        ));
    }
    let secs = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    Utc.timestamp_opt(i64::from(secs), 0)
        .single()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad event time"))
}
