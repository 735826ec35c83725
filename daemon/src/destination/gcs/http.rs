//! The gcs destination's HTTP: the client, tokens, one request, and what errors mean.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use gcp_auth::TokenProvider;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::{Gcs, HttpClient, REQUEST_TIMEOUT, SCOPE};
use crate::destination::{chain_text, DestinationError, ErrorKind};

/// An HTTPS (or plain HTTP, for emulators) client; ring for crypto, the system's roots.
pub(super) fn http_client() -> HttpClient {
    crate::destination::client::https_client()
}

impl Gcs {
    pub(super) async fn token(
        &self,
        action: &'static str,
    ) -> Result<Option<String>, DestinationError> {
        if self.anonymous {
            return Ok(None);
        }
        let auth_error = |e: gcp_auth::Error| {
            let kind = match &e {
                gcp_auth::Error::Other("HTTP request failed", _) | gcp_auth::Error::Http(..) => {
                    ErrorKind::Unreachable
                }
                _ => ErrorKind::PermissionDenied,
            };
            let msg = format!("getting an access token: {}", chain_text(&e));
            self.error_from(action, None, kind, msg, e)
        };
        let provider = self
            .tokens
            .get_or_try_init(|| async {
                let provider: Arc<dyn TokenProvider> = match &self.credentials_file {
                    Some(path) => Arc::new(
                        gcp_auth::CustomServiceAccount::from_file(path).map_err(auth_error)?,
                    ),
                    None => gcp_auth::provider().await.map_err(auth_error)?,
                };
                Ok::<_, DestinationError>(provider)
            })
            .await?;
        let token = provider.token(&[SCOPE]).await.map_err(auth_error)?;
        Ok(Some(token.as_str().to_string()))
    }

    /// Sends one request; `encrypted` adds the customer-supplied key headers.
    pub(super) async fn send(
        &self,
        action: &'static str,
        key: Option<&str>,
        mut req: hyper::http::request::Builder,
        body: Bytes,
        encrypted: bool,
    ) -> Result<Response<Incoming>, DestinationError> {
        if let Some(token) = self.token(action).await? {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        if encrypted {
            if let Some(k) = &self.encryption {
                req = req
                    .header("x-goog-encryption-algorithm", "AES256")
                    .header("x-goog-encryption-key", &k.0)
                    .header("x-goog-encryption-key-sha256", &k.1);
            }
        }
        let req = req
            .header("content-length", body.len())
            .body(Full::new(body))
            .map_err(|e| self.error(action, key, ErrorKind::Other, e.to_string()))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                Err(self.error_from(action, key, ErrorKind::Unreachable, chain_text(&e), e))
            }
            Err(_) => Err(self.error(
                action,
                key,
                ErrorKind::Unreachable,
                format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            )),
        }
    }

    /// The error for a response that is not a success, with the server's message.
    pub(super) async fn status_error(
        &self,
        action: &'static str,
        key: Option<&str>,
        resp: Response<Incoming>,
    ) -> DestinationError {
        let status = resp.status();
        let body = read_limited(resp.into_body(), 64 << 10).await;
        let (kind, message) = classify(status.as_u16(), &body);
        let msg = if message.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("{message} (HTTP {status})")
        };
        self.error(action, key, kind, msg)
    }

    /// One request that must succeed with 2xx; returns the body.
    pub(super) async fn call(
        &self,
        action: &'static str,
        key: Option<&str>,
        method: Method,
        url: &str,
        body: Bytes,
        encrypted: bool,
    ) -> Result<Bytes, DestinationError> {
        let req = Request::builder().method(method).uri(url);
        let resp = self.send(action, key, req, body, encrypted).await?;
        if !resp.status().is_success() {
            return Err(self.status_error(action, key, resp).await);
        }
        resp.into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| self.error_from(action, key, ErrorKind::Unreachable, e.to_string(), e))
    }
}

/// The error kind of a JSON API answer and the server's message (else the start of
/// its body). Rate limits come as 429, or as 403 with reason `rateLimitExceeded`.
pub(super) fn classify(status: u16, body: &[u8]) -> (ErrorKind, String) {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let error = json.as_ref().map(|v| &v["error"]);
    let reason = error.and_then(|e| e["errors"][0]["reason"].as_str());
    let kind = match (status, reason) {
        (_, Some("rateLimitExceeded" | "userRateLimitExceeded")) | (429, _) => ErrorKind::Throttled,
        (404, _) => ErrorKind::NotFound,
        (401 | 403, _) => ErrorKind::PermissionDenied,
        (412, _) => ErrorKind::Conflict,
        (408 | 500..=599, _) => ErrorKind::Unreachable,
        _ => ErrorKind::Other,
    };
    let message = error
        .and_then(|e| e["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(300)
                .collect()
        });
    (kind, message)
}

pub(super) async fn read_limited(mut body: Incoming, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(mut data) = frame.into_data() {
                    let n = data.remaining();
                    out.extend_from_slice(&data.copy_to_bytes(n));
                }
            }
            _ => break,
        }
    }
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_are_throttled_not_unreachable() {
        let reason =
            |r: &str| format!(r#"{{"error":{{"errors":[{{"reason":"{r}"}}],"message":"m"}}}}"#);
        for (status, body, want) in [
            (429, String::new(), ErrorKind::Throttled),
            (403, reason("rateLimitExceeded"), ErrorKind::Throttled),
            (403, reason("userRateLimitExceeded"), ErrorKind::Throttled),
            (403, reason("forbidden"), ErrorKind::PermissionDenied),
            (503, String::new(), ErrorKind::Unreachable),
            (408, String::new(), ErrorKind::Unreachable),
            (404, String::new(), ErrorKind::NotFound),
            (412, String::new(), ErrorKind::Conflict),
            (400, String::new(), ErrorKind::Other),
        ] {
            let (kind, _) = classify(status, body.as_bytes());
            assert_eq!(kind, want, "{status} {body}");
        }
        let (_, msg) = classify(429, reason("rateLimitExceeded").as_bytes());
        assert_eq!(msg, "m");
    }
}
