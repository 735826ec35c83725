//! Sources produce the byte stream of a copy.
//!
//! A source knows nothing of where its copy goes; it writes into the first pipe of the
//! pipeline, on its own thread.

mod binlog;
mod exclude;
mod files;
mod mysql;

use std::io::{self, Write};

pub use self::binlog::{binlog_identity, BinlogIdentity, BinlogSource};
pub use self::exclude::{Excludes, Pattern};
pub use self::files::FileSource;
pub use self::mysql::{MySqlSource, XtrabackupMeta};

/// What a source found worth telling the operator, without failing the copy.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SourceReport {
    pub warnings: Vec<String>,
    /// What a files source left out on purpose (`[source] exclude`...).
    pub excluded: Excluded,
}

/// Counts of what a files copy left out, for the job report and the log.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Excluded {
    /// Entries matched by an `exclude` pattern (a folder counts once, whatever it held).
    pub entries: u64,
    /// Folders holding a CACHEDIR.TAG, stored with their tag only.
    pub cache_dirs: u64,
    /// Folders on another file system, stored empty (`one_file_system`).
    pub mount_points: u64,
}

impl Excluded {
    pub fn is_empty(&self) -> bool {
        *self == Excluded::default()
    }
}

pub trait Source: Send {
    /// A short name for logs and progress, e.g. "/etc".
    fn describe(&self) -> String;

    /// Writes the whole stream into `out`. Runs on a pipeline thread.
    fn write_to(&mut self, out: &mut dyn Write) -> io::Result<SourceReport>;
}
