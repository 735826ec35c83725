//! [`https_client`]: the one HTTP client of the backends that speak HTTP themselves
//! (gcs, az): hyper 1 + rustls with ring, the system's roots; plain http for emulators.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client sending bodies of type `B`.
pub fn https_client<B>() -> Client<Https, B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("no CA certificates found ({e}): only http:// endpoints will work");
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(Duration::from_secs(10)));
    tcp.set_nodelay(true);
    let connector = tls.https_or_http().enable_http1().wrap_connector(tcp);
    Client::builder(TokioExecutor::new()).build(connector)
}
