//! Sources produce the byte stream of a copy.
//!
//! A source knows nothing of where its copy goes; it writes into the first pipe of the
//! pipeline, on its own thread.

mod binlog;
mod files;
mod mysql;

use std::io::{self, Write};

pub use self::binlog::{binlog_identity, BinlogIdentity, BinlogSource};
pub use self::files::FileSource;
pub use self::mysql::{MySqlSource, XtrabackupMeta};

/// What a source found worth telling the operator, without failing the copy.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SourceReport {
    pub warnings: Vec<String>,
}

pub trait Source: Send {
    /// A short name for logs and progress, e.g. "/etc".
    fn describe(&self) -> String;

    /// Writes the whole stream into `out`. Runs on a pipeline thread.
    fn write_to(&mut self, out: &mut dyn Write) -> io::Result<SourceReport>;
}
