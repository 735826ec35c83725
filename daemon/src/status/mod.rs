//! The host's list of copies, kept on the destination beside them.
//!
//! Format (documented in docs/status-format.md), version 2: every record is an object
//! of its own under `{host}/twindb-status.d/`, written once: a manifest per copy
//! (`copies/{key}.json`), a marker per pending object, a tombstone per deleted
//! keep-local twin, and the writer. `{host}/twindb-status.json` is an index of the
//! manifests (`{"format":"twindb-status","version":2,...,"sha256":H,"copies":[...]}`),
//! rewritten in the background and rebuilt from the manifests when missing or
//! damaged, so recording a copy costs the same few requests however long the history.
//! Version 1 (the whole list rewritten at every record) is read and migrated at the
//! first write. A copy is listed only after it is committed.
//!
//! Objects that may exist on the destination without being a copy are recorded as
//! pending before they can exist: a copy being stored (recorded before its first
//! byte is written) and a copy retention is deleting (recorded before it leaves the
//! list, before its objects go). Whatever stops the job (a failed delete, a failed
//! status write, kill -9), the object is known: [`StatusStore::sweep`] deletes it at
//! start and at every retention, and it is never taken for one of TwinDB Backup's
//! copies.

pub mod twindb;

pub mod layout;
mod record;
mod store;

use chrono::{DateTime, Utc};

use crate::destination::DestinationError;

pub use self::layout::RECORDS;
pub use self::record::*;
pub use self::store::*;

pub const FORMAT: &str = "twindb-status";
/// The index's format version: 2 since records are objects of their own. Version 1
/// (one document holding everything) is still read, and migrated at the first write.
pub const VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("status is corrupt: {0}")]
    Corrupt(String),
    /// Never overwritten: a downgrade must not lose the newer twindb's records.
    #[error("status was written by a newer twindb (format version {0}, this one reads {VERSION}); upgrade twindb")]
    Newer(u32),
    #[error("{0:?} is not a host name a copy key can start with")]
    BadHost(String),
    #[error(
        "another twindbd writes the copies of host {host} on {destination}: the status was last written \
         by the one on machine {other_machine} (pid {other_pid}, at {other_at}), and this one runs on \
         {machine}. Two daemons must not share a host name: set another [daemon] hostname on one of them. \
         If that daemon is gone for good (this host replaces it), take its copies over with \
         `twindbctl takeover`"
    )]
    OtherWriter {
        host: String,
        destination: String,
        machine: String,
        other_machine: String,
        other_pid: u32,
        other_at: DateTime<Utc>,
    },
    #[error(
        "the status of host {host} on {destination} changed while this twindbd updated it: another \
         twindbd writes the copies of host {host}. Two daemons must not share a host name: set another \
         [daemon] hostname on one of them"
    )]
    Concurrent { host: String, destination: String },
    #[error(transparent)]
    Destination(#[from] DestinationError),
}

#[cfg(test)]
mod tests;
