//! The pooled HTTP client of the gateway's own outbound calls (the analysis LLM, the hybrid
//! service): HTTP/1.1 and HTTP/2 (ALPN) over rustls with the Mozilla root set, connect timeout,
//! keep-alive pool. Proxied requests use the per-worker pools of [`super::pool`].

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
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(https_connector(connect_timeout))
}

/// The connector of every outbound connection: TCP (no delay, keep-alive probes, connect
/// timeout), then TLS with ALPN (HTTP/2 or HTTP/1.1) for `https`, or plain for `http`.
pub fn https_connector(connect_timeout: Duration) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http)
}
