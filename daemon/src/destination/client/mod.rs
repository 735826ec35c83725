//! The machinery every object-store backend shares; a backend writes only its requests.
//!
//! - [`Chunker`]: cuts the stream being stored into parts.
//! - [`upload()`] over [`Multipart`]: one request for a short stream, else a multipart
//!   (resumable) upload with an in-flight limit, aborted on error and on drop.
//! - [`download()`] over [`RangeRead`]: a streamed read in parallel ranges
//!   ([`Parallel`]) that resumes where it broke, pinned to the object's version;
//!   [`read_versioned`] reads a small object whole.
//! - [`unless_ours`]: a conditional write's conflict that is our own retried write.
//! - [`paginate`]: a listing of several requests as one stream.
//! - [`https_client`]: hyper + rustls (ring) for the backends that speak HTTP themselves.
//!
//! Errors come from [`crate::destination::error`], keys are
//! [`Key`](crate::destination::Key)s, retries go through [`crate::destination::retry`]
//! and cleanups through [`crate::destination::guard::OnDrop`].

mod chunker;
mod conditional;
mod download;
mod https;
mod paginate;
mod ranges;
mod upload;

pub use chunker::Chunker;
pub use conditional::unless_ours;
pub use download::{download, read_versioned, ByteRange, Opened, Parallel, RangeRead, RANGE_SIZE};
pub use https::{https_client, Https};
pub use paginate::paginate;
pub use upload::{in_flight_limit, upload, Multipart, PartInfo};
