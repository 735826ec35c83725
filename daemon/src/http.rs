//! Outgoing HTTP(S) POSTs of small JSON bodies: webhooks and the DataDog API.
//!
//! hyper's HTTP/1 client on a TCP stream, wrapped in rustls (ring, the system's CA
//! certificates) for https. One request per connection: these are rare events.
//! Errors name the scheme, host and port only: webhook URLs often carry a token in
//! their path, and that must not reach a log.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("not an http:// or https:// URL")]
    BadUrl,
    #[error("{0}: cannot connect")]
    Connect(String, #[source] std::io::Error),
    #[error("{0}: TLS handshake failed")]
    Tls(String, #[source] std::io::Error),
    #[error("{0}: request failed")]
    Request(String, #[source] hyper::Error),
    #[error("{0}: answered HTTP {1}: {2}")]
    Status(String, u16, String),
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
}

/// POSTs `body` as JSON to `url` with extra `headers`; Ok when the answer is 2xx.
pub async fn post_json(
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), HttpError> {
    let uri: Uri = url.parse().map_err(|_| HttpError::BadUrl)?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(HttpError::BadUrl),
    };
    let host = uri.host().ok_or(HttpError::BadUrl)?.to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let origin = format!("{}://{host}:{port}", if tls { "https" } else { "http" });
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(
            "host",
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .header("content-type", "application/json")
        .header("user-agent", concat!("twindb/", env!("CARGO_PKG_VERSION")));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| HttpError::BadUrl)?;

    let work = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| HttpError::Connect(origin.clone(), e))?;
        if tls {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| HttpError::BadUrl)?;
            let stream = tokio_rustls::TlsConnector::from(client_config())
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Tls(origin.clone(), e))?;
            send(stream, req, &origin).await
        } else {
            send(tcp, req, &origin).await
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| HttpError::Timeout(origin.clone(), timeout))?
}

async fn send<S>(io: S, req: Request<Full<Bytes>>, origin: &str) -> Result<(), HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let err = |e| HttpError::Request(origin.to_string(), e);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(err)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(err)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
    Err(HttpError::Status(
        origin.to_string(),
        status.as_u16(),
        text.trim().to_string(),
    ))
}

/// rustls with ring and the system's CA certificates, built once.
fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                tracing::warn!("no CA certificates found on this host: https notifications will fail (install ca-certificates)");
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}
