//! The pooled HTTP client the gateway uses to reach providers: HTTP/1.1 and HTTP/2 (ALPN) over
//! rustls with the Mozilla root set, connect timeout, keep-alive pool.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The client type.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the upstream client.
pub fn build_client(connect_timeout: Duration) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(https)
}

/// One upstream client per request worker plus one for everything else: a worker's requests
/// reuse connections whose tasks run on the same worker, so no request crosses threads.
#[derive(Debug)]
pub struct UpstreamClients {
    per_worker: Vec<UpstreamClient>,
    shared: UpstreamClient,
}

impl UpstreamClients {
    /// Clients for `workers` request workers.
    pub fn new(connect_timeout: Duration, workers: usize) -> Self {
        Self {
            per_worker: (0..workers)
                .map(|_| build_client(connect_timeout))
                .collect(),
            shared: build_client(connect_timeout),
        }
    }

    /// The calling worker's client (the shared one off the workers).
    pub fn current(&self) -> &UpstreamClient {
        crate::workers::current()
            .and_then(|index| self.per_worker.get(index))
            .unwrap_or(&self.shared)
    }
}
