//! What a conditional write that came back as a conflict means when requests are
//! retried: the first attempt may have landed with its answer lost, and the retry then
//! finds its own write. A conflict counts as done when the object holds our bytes.

use bytes::Bytes;

use crate::destination::{Destination, DestinationError, ErrorKind};

/// `written` as it should count: a conflict while `key` already holds `data` is ours.
pub async fn unless_ours<D: Destination + ?Sized>(
    dest: &D,
    key: &str,
    data: &Bytes,
    written: Result<(), DestinationError>,
) -> Result<(), DestinationError> {
    match written {
        Err(e) if e.kind == ErrorKind::Conflict => match dest.read_small_versioned(key).await? {
            Some((now, _)) if now == *data => Ok(()),
            _ => Err(e),
        },
        other => other,
    }
}
