//! Restore jobs. The reverse chain comes from the copy's recorded metadata.

mod files;

pub use self::files::restore_files;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("no copy {0:?} in the status of this host (see `twindbctl ls`)")]
    UnknownCopy(String),
    #[error("{key} is a {actual} copy, not a {wanted} copy")]
    WrongKind {
        key: String,
        actual: &'static str,
        wanted: &'static str,
    },
    #[error("refusing to restore into {0}: {1}")]
    BadDestination(String, String),
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Stage(#[from] crate::pipeline::StageError),
    #[error(transparent)]
    Destination(#[from] crate::destination::DestinationError),
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}
