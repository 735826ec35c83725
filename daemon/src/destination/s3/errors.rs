//! What S3 errors mean: their [`ErrorKind`] and a secret-free message.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::HttpResponse;
use crate::destination::{chain_text, ErrorKind};

/// The error kind of an S3 answer: its HTTP status and error code.
fn kind_of(status: u16, code: &str) -> ErrorKind {
    match (status, code) {
        (_, "NoSuchKey" | "NoSuchBucket" | "NoSuchUpload" | "NotFound") | (404, _) => {
            ErrorKind::NotFound
        }
        (
            _,
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "AllAccessDisabled",
        )
        | (401 | 403, _) => ErrorKind::PermissionDenied,
        (_, "PreconditionFailed" | "ConditionalRequestConflict") | (412, _) => ErrorKind::Conflict,
        // "Reduce your request rate": S3 answers SlowDown with 503, others 429.
        (_, "SlowDown" | "Throttling" | "ThrottlingException" | "TooManyRequests")
        | (429 | 503, _) => ErrorKind::Throttled,
        (_, "RequestTimeout" | "InternalError" | "ServiceUnavailable") | (500..=599, _) => {
            ErrorKind::Unreachable
        }
        _ => ErrorKind::Other,
    }
}

/// The error kind and a secret-free message for an SDK error.
pub(super) fn classify<E>(e: &SdkError<E, HttpResponse>) -> (ErrorKind, String)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::ServiceError(se) = e {
        let status = se.raw().status().as_u16();
        let code = se.err().code().unwrap_or_default();
        let kind = kind_of(status, code);
        let msg = match (code, se.err().message()) {
            ("", _) if kind == ErrorKind::PermissionDenied => {
                format!(
                    "access denied (HTTP {status}): check the credentials and the bucket policy"
                )
            }
            ("", _) => format!("HTTP {status}"),
            (code, Some(m)) if !m.is_empty() => format!("{code}: {m} (HTTP {status})"),
            (code, _) => format!("{code} (HTTP {status})"),
        };
        return (kind, msg);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<CredentialsError>() {
            return (ErrorKind::PermissionDenied, chain_text(s));
        }
        source = s.source();
    }
    let msg = chain_text(e);
    let kind = match e {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => ErrorKind::Unreachable,
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() || d.is_other() => {
            ErrorKind::Unreachable
        }
        _ => ErrorKind::Other,
    };
    (kind, msg)
}

#[cfg(test)]
pub(super) mod tests {
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    use super::*;

    pub(crate) fn service_error(status: u16, code: &str) -> SdkError<GetObjectError, HttpResponse> {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(GetObjectError::generic(meta), raw)
    }

    #[test]
    fn slow_down_and_429_are_throttled_not_unreachable() {
        for (status, code) in [(503, "SlowDown"), (429, ""), (503, ""), (400, "Throttling")] {
            let (kind, _) = classify(&service_error(status, code));
            assert_eq!(kind, ErrorKind::Throttled, "{status} {code}");
        }
        for (status, code, want) in [
            (500, "InternalError", ErrorKind::Unreachable),
            (400, "RequestTimeout", ErrorKind::Unreachable),
            (404, "NoSuchKey", ErrorKind::NotFound),
            (403, "SignatureDoesNotMatch", ErrorKind::PermissionDenied),
            (412, "PreconditionFailed", ErrorKind::Conflict),
            (400, "InvalidArgument", ErrorKind::Other),
        ] {
            assert_eq!(
                classify(&service_error(status, code)).0,
                want,
                "{status} {code}"
            );
        }
        let (_, msg) = classify(&service_error(503, "SlowDown"));
        assert_eq!(msg, "SlowDown: m (HTTP 503)");
    }
}
