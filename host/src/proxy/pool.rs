//! The proxy's upstream connections: one pool per request worker, so a request and the
//! connection it reuses (and that connection's task) run on the same thread. HTTP/1.1, or HTTP/2
//! where TLS negotiates it (ALPN), over rustls with the Mozilla roots; plain HTTP where the base
//! URL says so.
//!
//! Per request this costs a mutex that only its own worker takes and a scan of one origin's few
//! connections: no hashing, no task per request. An HTTP/1.1 connection goes back to its pool
//! as soon as the response head arrives and is taken again only once hyper reports it ready
//! (its previous response fully read); an HTTP/2 connection is shared by every request of its
//! worker. A request that a reused connection closed before sending is retried once on a new
//! connection, as hyper-util's client does.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::poll_fn;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

/// How long an unused connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most connections kept per origin and pool (a worker's share of the gateway's).
const MAX_PER_ORIGIN: usize = 1024;

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made (DNS, TCP, TLS). The cause is the source, so an error
    /// chain reads "connect error: tcp connect error: Connection refused (os error 111)".
    #[error("connect error")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The connection failed during the exchange (the cause is the source).
    #[error("upstream request failed")]
    Http(#[from] hyper::Error),
    /// The URI has no scheme or authority (a base URL the configuration should have refused).
    #[error("upstream URI {0} is not absolute")]
    NotAbsolute(String),
}

impl UpstreamError {
    /// Whether no connection could be made (as opposed to one failing mid-exchange).
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::NotAbsolute(_))
    }
}

/// One pool per request worker plus one for everything else.
#[derive(Debug)]
pub struct UpstreamPools {
    per_worker: Vec<ConnectionPool>,
    shared: ConnectionPool,
}

impl UpstreamPools {
    /// Pools for `workers` request workers, connecting within `connect_timeout`.
    pub fn new(connect_timeout: Duration, workers: usize) -> Self {
        Self {
            per_worker: (0..workers)
                .map(|_| ConnectionPool::new(connect_timeout))
                .collect(),
            shared: ConnectionPool::new(connect_timeout),
        }
    }

    /// The calling worker's pool (the shared one off the workers).
    pub fn current(&self) -> &ConnectionPool {
        crate::workers::current()
            .and_then(|index| self.per_worker.get(index))
            .unwrap_or(&self.shared)
    }
}

/// The connections of one worker, by origin.
pub struct ConnectionPool {
    connector: HttpsConnector<HttpConnector>,
    origins: Mutex<Vec<Origin>>,
}

impl std::fmt::Debug for ConnectionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let connections = self
            .origins
            .lock()
            .map(|o| o.iter().map(|o| o.connections.len()).sum::<usize>())
            .unwrap_or(0);
        f.debug_struct("ConnectionPool")
            .field("connections", &connections)
            .finish_non_exhaustive()
    }
}

/// The kept connections to one scheme + authority.
struct Origin {
    scheme: Scheme,
    authority: Authority,
    connections: Vec<Kept>,
}

/// A kept connection: its sender, and when it was last seen in use.
struct Kept {
    sender: Sender,
    seen_busy: Instant,
}

enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Self::Http1(s) => s.is_closed(),
            Self::Http2(s) => s.is_closed(),
        }
    }
}

impl ConnectionPool {
    fn new(connect_timeout: Duration) -> Self {
        let connector = super::upstream::https_connector(connect_timeout);
        Self {
            connector,
            origins: Mutex::new(Vec::new()),
        }
    }

    /// Sends `request` (an absolute URI) on a kept or new connection and returns the response
    /// head; the body streams from the connection.
    pub async fn request(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let uri = request.uri().clone();
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(UpstreamError::NotAbsolute(uri.to_string()));
        };
        // One retry, and only for a request a kept connection refused unsent: a new
        // connection that fails has told the truth about the upstream.
        let mut may_retry = true;
        loop {
            let sender = match self.checkout(scheme, authority) {
                Some(sender) => sender,
                None => {
                    may_retry = false;
                    self.connect(&uri, scheme, authority).await?
                }
            };
            let sent = match sender {
                Sender::Http1(mut sender) => {
                    for_http1(&mut request, &uri, authority);
                    let sent = sender.try_send_request(request).await;
                    if sent.is_ok() {
                        self.keep(scheme, authority, Sender::Http1(sender));
                    }
                    sent
                }
                Sender::Http2(mut sender) => {
                    *request.version_mut() = Version::HTTP_2;
                    sender.try_send_request(request).await
                }
            };
            match sent {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    // Closed before it was sent (the server dropped a kept connection): once
                    // more, on a new connection.
                    Some(unsent) if may_retry => {
                        request = unsent;
                        *request.uri_mut() = uri.clone();
                        may_retry = false;
                        self.forget_closed(scheme, authority);
                    }
                    _ => return Err(UpstreamError::Http(error.into_error())),
                },
            }
        }
    }

    /// A ready connection to the origin, if one is kept: an idle HTTP/1.1 connection (taken
    /// out until its response head arrives) or a shared HTTP/2 one. Closed and expired ones are
    /// dropped on the way.
    fn checkout(&self, scheme: &Scheme, authority: &Authority) -> Option<Sender> {
        let mut origins = self.origins.lock().ok()?;
        let origin = find_origin(&mut origins, scheme, authority)?;
        // Read the clock only when a connection's age matters.
        let mut now = None;
        let mut index = origin.connections.len();
        // Most recently kept first: the warmest connection.
        while index > 0 {
            index -= 1;
            let kept = &mut origin.connections[index];
            if kept.sender.is_closed() {
                origin.connections.swap_remove(index);
                continue;
            }
            match &kept.sender {
                Sender::Http2(sender) => return Some(Sender::Http2(sender.clone())),
                Sender::Http1(sender) if sender.is_ready() => {
                    let now = *now.get_or_insert_with(Instant::now);
                    if now.saturating_duration_since(kept.seen_busy) > IDLE_TIMEOUT {
                        // Idle too long: the server may close it any moment.
                        origin.connections.swap_remove(index);
                        continue;
                    }
                    return Some(origin.connections.swap_remove(index).sender);
                }
                // Still streaming a response: its idle time starts later.
                Sender::Http1(_) => kept.seen_busy = *now.get_or_insert_with(Instant::now),
            }
        }
        None
    }

    /// Keeps a connection for the origin's later requests (up to [`MAX_PER_ORIGIN`]).
    fn keep(&self, scheme: &Scheme, authority: &Authority, sender: Sender) {
        let Ok(mut origins) = self.origins.lock() else {
            return;
        };
        let kept = Kept {
            sender,
            seen_busy: Instant::now(),
        };
        match find_origin(&mut origins, scheme, authority) {
            Some(origin) if origin.connections.len() < MAX_PER_ORIGIN => {
                origin.connections.push(kept);
            }
            // Full: dropping the sender closes the connection once its response is read.
            Some(_) => {}
            None => origins.push(Origin {
                scheme: scheme.clone(),
                authority: authority.clone(),
                connections: vec![kept],
            }),
        }
    }

    /// Drops the origin's closed connections (after one failed a request).
    fn forget_closed(&self, scheme: &Scheme, authority: &Authority) {
        if let Ok(mut origins) = self.origins.lock()
            && let Some(origin) = find_origin(&mut origins, scheme, authority)
        {
            origin.connections.retain(|kept| !kept.sender.is_closed());
        }
    }

    /// Opens a connection (TCP, TLS with ALPN where the scheme is https) and starts its task on
    /// the current runtime. An HTTP/2 connection is kept at once, for every request to share.
    async fn connect(
        &self,
        uri: &Uri,
        scheme: &Scheme,
        authority: &Authority,
    ) -> Result<Sender, UpstreamError> {
        let mut connector = self.connector.clone();
        poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(UpstreamError::Connect)?;
        let io = connector
            .call(uri.clone())
            .await
            .map_err(UpstreamError::Connect)?;
        if io.connected().is_negotiated_h2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                }
            });
            self.keep(scheme, authority, Sender::Http2(sender.clone()));
            Ok(Sender::Http2(sender))
        } else {
            let (sender, connection) = http1::handshake(io).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
                }
            });
            Ok(Sender::Http1(sender))
        }
    }
}

/// The kept connections to `scheme://authority`, if any were kept.
fn find_origin<'a>(
    origins: &'a mut [Origin],
    scheme: &Scheme,
    authority: &Authority,
) -> Option<&'a mut Origin> {
    origins
        .iter_mut()
        .find(|o| o.authority == *authority && o.scheme == *scheme)
}

/// An HTTP/1.1 request names its origin in `Host` and its target in origin form (`/path?q`)
/// (and is HTTP/1.1 even when an earlier attempt went out on an HTTP/2 connection).
fn for_http1(request: &mut Request<Full<Bytes>>, uri: &Uri, authority: &Authority) {
    *request.version_mut() = Version::HTTP_11;
    if !request.headers().contains_key(http::header::HOST)
        && let Ok(host) = HeaderValue::from_str(host_header(uri, authority))
    {
        request.headers_mut().insert(http::header::HOST, host);
    }
    let target = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(target);
}

/// The `Host` value: the authority without user info, and without the scheme's default port.
fn host_header<'a>(uri: &Uri, authority: &'a Authority) -> &'a str {
    let text = authority.as_str();
    let text = text.rsplit_once('@').map_or(text, |(_, host)| host);
    let default_port = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    match (authority.port_u16(), default_port) {
        (Some(port), Some(default)) if port == default => {
            text.rsplit_once(':').map_or(text, |(host, _)| host)
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(uri: &str) -> String {
        let uri: Uri = uri.parse().unwrap();
        let authority = uri.authority().unwrap().clone();
        host_header(&uri, &authority).to_owned()
    }

    #[test]
    fn host_header_drops_default_ports_and_user_info() {
        assert_eq!(host_of("https://api.anthropic.com/v1"), "api.anthropic.com");
        assert_eq!(
            host_of("https://api.anthropic.com:443/v1"),
            "api.anthropic.com"
        );
        assert_eq!(host_of("http://127.0.0.1:80/"), "127.0.0.1");
        assert_eq!(host_of("http://127.0.0.1:8080/x"), "127.0.0.1:8080");
        assert_eq!(host_of("https://u:p@h.example:8443/"), "h.example:8443");
        assert_eq!(host_of("http://[::1]:9000/"), "[::1]:9000");
        assert_eq!(host_of("http://[::1]:80/"), "[::1]");
    }

    #[test]
    fn http1_requests_use_origin_form_and_keep_a_given_host() {
        let uri: Uri = "http://127.0.0.1:9000/v1/messages?beta=true"
            .parse()
            .unwrap();
        let authority = uri.authority().unwrap().clone();
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = uri.clone();
        *request.version_mut() = Version::HTTP_2;
        for_http1(&mut request, &uri, &authority);
        assert_eq!(request.uri().to_string(), "/v1/messages?beta=true");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["host"], "127.0.0.1:9000");

        let mut request = Request::new(Full::new(Bytes::new()));
        request
            .headers_mut()
            .insert(http::header::HOST, HeaderValue::from_static("other"));
        for_http1(&mut request, &uri, &authority);
        assert_eq!(request.headers()["host"], "other");
    }

    #[tokio::test]
    async fn connections_are_reused_and_unreachable_origins_are_connect_errors() {
        use http_body_util::BodyExt;
        use mnemom_mock_provider::{MockOptions, MockProvider};
        let upstream = MockProvider::start(MockOptions::default()).await.unwrap();
        let pool = ConnectionPool::new(Duration::from_secs(2));
        let base = upstream.base_url();
        for _ in 0..3 {
            let mut request = Request::new(Full::new(Bytes::from_static(b"{}")));
            *request.method_mut() = http::Method::POST;
            *request.uri_mut() = format!("{base}/v1/messages").parse().unwrap();
            let response = pool.request(request).await.unwrap();
            response.into_body().collect().await.unwrap();
        }
        // One connection served all three (each was ready again before the next), and it is
        // kept for the next request.
        assert_eq!(upstream.connection_count(), 1);
        assert_eq!(pool.origins.lock().unwrap()[0].connections.len(), 1);
        let recorded = upstream.requests();
        assert_eq!(recorded.len(), 3);
        assert_eq!(
            recorded[0].header("host"),
            Some(upstream.addr().to_string().as_str())
        );

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = format!("http://{address}/").parse().unwrap();
        let error = pool.request(request).await.unwrap_err();
        assert!(error.is_connect(), "{error}");
        // The cause is reachable through the chain, once: the refused TCP connect.
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            source = cause.source();
        }
        assert_eq!(error.to_string(), "connect error");
        assert!(causes.iter().any(|c| c.contains("refused")), "{causes:?}");

        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = Uri::from_static("/relative");
        assert!(pool.request(request).await.unwrap_err().is_connect());
    }

    /// A server that answers one request per connection and then closes it (without saying
    /// so): every next request finds its kept connection closed and gets a new one.
    #[tokio::test]
    async fn connections_the_server_closed_are_replaced() {
        use http_body_util::BodyExt;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buffer = vec![0u8; 4096];
                let mut read = 0;
                while !buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    read += socket.read(&mut buffer[read..]).await.unwrap();
                }
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                // Closed right after the answer, as an idle-timeout would.
                drop(socket);
            }
        });
        let pool = ConnectionPool::new(Duration::from_secs(2));
        for _ in 0..3 {
            let mut request = Request::new(Full::new(Bytes::new()));
            *request.uri_mut() = format!("http://{address}/x").parse().unwrap();
            let response = pool.request(request).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
            // Let the connection's task see the close.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
