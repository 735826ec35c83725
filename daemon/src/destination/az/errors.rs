//! What object_store's errors mean for twindb: an [`ErrorKind`] and a secret-free line.

use object_store::client::{HttpError, HttpErrorKind};

use crate::destination::{chain_text, ErrorKind};

/// The kind of `e`, from its variant, else the HTTP status or transport failure found
/// in its chain of causes. object_store keeps the status in a private type: what it
/// says of it ("non-2xx status code: 503 ...") is read instead.
pub(super) fn classify(e: &object_store::Error) -> ErrorKind {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => return ErrorKind::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => return ErrorKind::Conflict,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            return ErrorKind::PermissionDenied
        }
        _ => {}
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(status) = status_in(&c.to_string()) {
            return by_status(status);
        }
        if let Some(h) = c.downcast_ref::<HttpError>() {
            return match h.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted => ErrorKind::Unreachable,
                _ => ErrorKind::Other,
            };
        }
        cause = c.source();
    }
    ErrorKind::Other
}

/// The status of object_store's "Server returned non-2xx status code: 503 ...".
fn status_in(text: &str) -> Option<u16> {
    let (_, rest) = text.split_once("non-2xx status code: ")?;
    rest.get(..3)?.parse().ok()
}

/// Azure's statuses: 503 ServerBusy and 429 are throttling; other 5xx and 408 are
/// worth retrying; 409 and 412 are a conditional write that lost.
pub(super) fn by_status(status: u16) -> ErrorKind {
    match status {
        404 => ErrorKind::NotFound,
        401 | 403 => ErrorKind::PermissionDenied,
        409 | 412 => ErrorKind::Conflict,
        429 | 503 => ErrorKind::Throttled,
        408 | 500..=599 => ErrorKind::Unreachable,
        _ => ErrorKind::Other,
    }
}

/// One line for people. A refused key gets its own words: Azure's answer to a bad
/// signature quotes the string it signed, which helps no one reading a log.
pub(super) fn message(e: &object_store::Error, kind: ErrorKind, account: &str) -> String {
    match kind {
        ErrorKind::PermissionDenied => format!(
            "the storage account {account:?} refused the request (HTTP 403): check the \
             AccountKey of [az] connection_string and the account's network rules"
        ),
        _ => chain_text(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_read_from_object_stores_words() {
        let text = "Error performing PUT http://h/c/b in 1ms - Server returned non-2xx \
                    status code: 503 Service Unavailable: busy";
        assert_eq!(status_in(text), Some(503));
        assert_eq!(status_in("Server returned error response: x"), None);
    }

    #[test]
    fn statuses_map_to_kinds() {
        for (status, kind) in [
            (404, ErrorKind::NotFound),
            (403, ErrorKind::PermissionDenied),
            (409, ErrorKind::Conflict),
            (412, ErrorKind::Conflict),
            (429, ErrorKind::Throttled),
            (503, ErrorKind::Throttled),
            (500, ErrorKind::Unreachable),
            (408, ErrorKind::Unreachable),
            (400, ErrorKind::Other),
        ] {
            assert_eq!(by_status(status), kind, "{status}");
        }
    }
}
