//! Destination errors: what a caller can act on ([`ErrorKind`]), where it happened
//! (destination, action, key), and the error it came from, kept whole.
//!
//! - Display is one secret-free line: `local:/b: storing k: No space left on device`.
//! - The cause is the backend's own error (an `io::Error`, or a [`BackendError`] whose
//!   message is secret-free and whose `source()` is the SDK or HTTP error), so a caller
//!   can downcast it. It is deliberately not also exposed as `source()` of the
//!   [`DestinationError`], so `{:#}` chains (anyhow) don't print it twice.
//! - [`ErrorKind::Unreachable`] and [`ErrorKind::Throttled`] are retryable
//!   ([`DestinationError::is_retryable`]); nothing else is.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// Any error a backend may keep as the cause.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    PermissionDenied,
    /// Network or service down; worth retrying.
    Unreachable,
    /// The service asks us to slow down (HTTP 429, S3 SlowDown or 503, GCS
    /// rateLimitExceeded); worth retrying after a pause.
    Throttled,
    /// No space left on the destination.
    Full,
    /// A conditional write found the object changed by someone else.
    Conflict,
    /// The stream being stored failed (source or modifier error, cancel).
    Input,
    Other,
}

/// Displays as one line with its cause (`local:/b: storing k: No space left`); the cause
/// is deliberately not also exposed as `source()`, so `{:#}` chains don't repeat it.
#[derive(Debug, thiserror::Error)]
#[error("{destination}: {action}{}: {cause}", key.as_ref().map(|k| format!(" {k}")).unwrap_or_default())]
pub struct DestinationError {
    pub kind: ErrorKind,
    pub destination: String,
    pub action: &'static str,
    pub key: Option<String>,
    /// The backend's own error: an `io::Error`, or a [`BackendError`].
    pub cause: BoxError,
}

impl DestinationError {
    pub fn io(destination: &str, key: &str, cause: io::Error) -> Self {
        Self::new(destination, "reading", Some(key), cause)
    }

    /// An error whose kind follows from the `io::Error`'s kind.
    pub fn new(
        destination: &str,
        action: &'static str,
        key: Option<&str>,
        cause: io::Error,
    ) -> Self {
        let kind = match cause.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            io::ErrorKind::StorageFull => ErrorKind::Full,
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::TimedOut
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable => ErrorKind::Unreachable,
            _ => ErrorKind::Other,
        };
        Self::with_cause(destination, action, key, kind, Box::new(cause))
    }

    /// An error of `kind` keeping `cause` as it is.
    pub fn with_cause(
        destination: &str,
        action: &'static str,
        key: Option<&str>,
        kind: ErrorKind,
        cause: BoxError,
    ) -> Self {
        DestinationError {
            kind,
            destination: destination.to_string(),
            action,
            key: key.map(str::to_string),
            cause,
        }
    }

    /// The same error with `kind` set, for backends whose errors are not `io::Error`s.
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unreachable | ErrorKind::Throttled)
    }
}

/// A backend's error: a secret-free one-line message for people, and the error it came
/// from (an SDK or HTTP client error) for code. Its Debug shows the same text as its
/// Display, so no field of an SDK error (a request, a response) is ever printed.
pub struct BackendError {
    message: String,
    source: Option<BoxError>,
}

impl BackendError {
    pub fn new(message: impl Into<String>) -> Self {
        BackendError {
            message: message.into(),
            source: None,
        }
    }

    /// `message` explains `source`, which is kept for [`StdError::source`].
    pub fn caused_by(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        BackendError {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BackendError").field(&self.message).finish()
    }
}

impl StdError for BackendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// An error and its causes on one line, each cause once (SDK errors often repeat their
/// source in their own text).
pub fn chain_text(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_kept_and_displayed_once() {
        let sdk = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        let e = DestinationError::with_cause(
            "s3://b",
            "reading",
            Some("k"),
            ErrorKind::Unreachable,
            Box::new(BackendError::caused_by("connection broke", sdk)),
        );
        assert_eq!(e.to_string(), "s3://b: reading k: connection broke");
        assert!(
            StdError::source(&e).is_none(),
            "not repeated in {{:#}} chains"
        );
        let inner = e.cause.source().expect("the SDK error is kept");
        let io = inner.downcast_ref::<io::Error>().expect("of its own type");
        assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(
            format!("{:?}", e.cause),
            "BackendError(\"connection broke\")"
        );
    }

    #[test]
    fn io_errors_keep_their_kind_and_text() {
        let e = DestinationError::new(
            "local:/b",
            "storing",
            Some("k"),
            io::Error::from(io::ErrorKind::StorageFull),
        );
        assert_eq!(e.kind, ErrorKind::Full);
        assert!(e.cause.downcast_ref::<io::Error>().is_some());
        assert!(!e.is_retryable());
        assert!(e.with_kind(ErrorKind::Throttled).is_retryable());
    }

    #[test]
    fn chains_are_flattened_without_repeats() {
        let inner = io::Error::other("refused");
        let outer = BackendError::caused_by("dispatch failure: refused", inner);
        assert_eq!(chain_text(&outer), "dispatch failure: refused");
        let outer = BackendError::caused_by("dispatch failure", io::Error::other("refused"));
        assert_eq!(chain_text(&outer), "dispatch failure: refused");
    }
}
