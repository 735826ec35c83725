//! object_store's requests sent through our own hyper 1 + rustls (ring) client, so the
//! az destination brings no second HTTP or TLS stack (no reqwest, no aws-lc-rs).

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest,
    HttpRequestBody, HttpResponse, HttpResponseBody, HttpService,
};

use crate::destination::client::{https_client, Https};

/// Longest wait for the answer's headers to one request (a block upload included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
pub(super) struct Connector;

impl HttpConnector for Connector {
    fn connect(&self, _: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Service(https_client())))
    }
}

struct Service(Client<Https, HttpRequestBody>);

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("az http client")
    }
}

#[async_trait]
impl HttpService for Service {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, self.0.request(req))
            .await
            .map_err(|_| {
                let e = io::Error::new(io::ErrorKind::TimedOut, "no answer within 300 s");
                HttpError::new(HttpErrorKind::Timeout, e)
            })?
            .map_err(|e| {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                HttpError::new(kind, e)
            })?;
        let (parts, body) = answer.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}
