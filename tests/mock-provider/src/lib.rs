//! A fake Anthropic / OpenAI / Gemini API on loopback that serves the recorded provider payloads in
//! `plugins/fixtures/`, byte for byte, for gateway tests and benchmarks.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mnemom_mock_provider::{MockOptions, MockProvider};
//!
//! let mock = MockProvider::start(MockOptions::default()).await?;
//! // Point the gateway's upstream for all three providers at `mock.base_url()`, send requests, then:
//! let seen = mock.requests();
//! # let _ = seen;
//! mock.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Default routes
//!
//! | request | response |
//! | --- | --- |
//! | `POST /v1/messages` | [`ANTHROPIC_MESSAGES`], or [`ANTHROPIC_MESSAGES_STREAM`] if the JSON body has `"stream": true` |
//! | `POST /v1/messages/count_tokens` | `{"input_tokens": 12}` |
//! | `POST /v1/chat/completions` | [`OPENAI_CHAT`] / [`OPENAI_CHAT_STREAM`] |
//! | `POST /v1/responses` | [`OPENAI_RESPONSES`] / [`OPENAI_RESPONSES_STREAM`] |
//! | `GET /v1/models` | a small model list (Anthropic's shape if the request has `anthropic-version`, else OpenAI's) |
//! | `POST /v1beta/models/{model}:generateContent` | [`GEMINI_GENERATE`] (also under `/v1/` and `/v1alpha/`) |
//! | `POST /v1beta/models/{model}:streamGenerateContent` | [`GEMINI_GENERATE_STREAM`] (whatever the `alt` query) |
//! | `POST /v1beta/models/{model}:countTokens` | `{"totalTokens": 12}` |
//! | `GET /__mock/requests` | the recorded requests as JSON (`DELETE` clears them); see [`REQUESTS_PATH`] |
//! | anything else | `404` with a JSON error body |
//!
//! Only the path selects the route; query strings (such as Anthropic's `?beta=true` or Gemini's
//! `?alt=sse`) are recorded but ignored. JSON bodies are served as `application/json` with
//! `content-length`; SSE bodies as `text/event-stream` with chunked transfer encoding, plus
//! `cache-control: no-cache` for Anthropic and OpenAI. Anthropic responses carry a `request-id` header and
//! OpenAI responses an `x-request-id` header (`req_mock_<serial>`).
//!
//! # Control headers
//!
//! Each request may carry these headers (see [`control`]); the [`MockOptions`] fields give the defaults.
//!
//! | header | effect |
//! | --- | --- |
//! | `x-mock-fixture: <provider>/<file>` | serve that fixture whatever the route; content type from the extension (`.json`, `.sse`) |
//! | `x-mock-status: <code>` | response status |
//! | `x-mock-delay-ms: N` | wait N ms before sending the response headers |
//! | `x-mock-chunk: event\|bytes:<N>\|whole` | body framing ([`ChunkMode`]; default `event` for SSE, `whole` for JSON) |
//! | `x-mock-chunk-delay-ms: N` | wait N ms between body frames |
//! | `x-mock-gzip: 1` | gzip the body (`content-encoding: gzip`) if the request's `accept-encoding` allows gzip |
//! | `x-mock-hang: 1` or `after:<N>` | send the headers (and N frames), then never finish the body |
//!
//! An invalid control header value gets a `400` JSON error from the mock itself
//! (`{"error":{"type":"mock_provider_error",...}}`); so does a fixture name that is not `<provider>/<file>`.
//! A fixture that cannot be read gets a `500`.
//!
//! With gzip, frame boundaries are kept: the encoder is sync-flushed after each frame, so each gzip frame
//! decodes to exactly one plain frame.
//!
//! # Mock analysis LLM
//!
//! [`MockAnalysis`] is a second, separate server: the analysis LLM (Anthropic Messages) and the
//! hybrid analyse endpoint, answering scripted [`Scenario`]s chosen by `MOCK-ANALYSIS:<name>`
//! markers in the analysed text. See the [`analysis`] module.

pub mod analysis;
mod body;
mod fixtures;
mod handler;
mod scenarios;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use analysis::{MockAnalysis, MockAnalysisOptions};
pub use body::{ChunkMode, MockBody};
pub use fixtures::split_sse_events;
pub use handler::{
    ANTHROPIC_COUNT_TOKENS_BODY, ANTHROPIC_MESSAGES, ANTHROPIC_MESSAGES_STREAM,
    ANTHROPIC_MODELS_BODY, GEMINI_COUNT_TOKENS_BODY, GEMINI_GENERATE, GEMINI_GENERATE_STREAM,
    OPENAI_CHAT, OPENAI_CHAT_STREAM, OPENAI_MODELS_BODY, OPENAI_RESPONSES, OPENAI_RESPONSES_STREAM,
    REQUESTS_PATH, control,
};
pub use scenarios::{MARKER_PREFIX, Scenario, Selection, select};

/// The repository's `plugins/fixtures` directory, located from this crate's manifest directory at build
/// time. Fixture names (`<provider>/<file>`) are relative to it.
pub const DEFAULT_FIXTURES_DIR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/fixtures");

/// Settings for a [`MockProvider`]. Every knob except `listen`, `fixtures_dir` and `record_requests` is a
/// default that the matching `x-mock-*` request header overrides.
///
/// ```
/// use std::time::Duration;
/// use mnemom_mock_provider::MockOptions;
///
/// let options = MockOptions { chunk_delay: Duration::from_millis(5), ..MockOptions::default() };
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Address to bind. Default `127.0.0.1:0` (a free port; see [`MockProvider::addr`]).
    pub listen: SocketAddr,
    /// Directory holding `<provider>/<file>` fixtures. Default [`DEFAULT_FIXTURES_DIR`].
    pub fixtures_dir: PathBuf,
    /// Delay before the response headers (`x-mock-delay-ms`). Default zero.
    pub latency: Duration,
    /// Body framing (`x-mock-chunk`). `None` (default): [`ChunkMode::Event`] for SSE, whole for JSON.
    pub chunk: Option<ChunkMode>,
    /// Delay between body frames (`x-mock-chunk-delay-ms`). Default zero.
    pub chunk_delay: Duration,
    /// Gzip bodies when the client accepts gzip (`x-mock-gzip`). Default `false`.
    pub gzip: bool,
    /// Hang after this many body frames (`x-mock-hang`). Default `None`.
    pub hang_after: Option<usize>,
    /// Keep every request for [`MockProvider::requests`]. Default `true`; turn off for long benchmarks.
    pub record_requests: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            fixtures_dir: PathBuf::from(DEFAULT_FIXTURES_DIR),
            latency: Duration::ZERO,
            chunk: None,
            chunk_delay: Duration::ZERO,
            gzip: false,
            hang_after: None,
            record_requests: true,
        }
    }
}

/// A request as the mock received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Request method.
    pub method: Method,
    /// Path, without the query string.
    pub path: String,
    /// Raw query string (after `?`), if any.
    pub query: Option<String>,
    /// All request headers.
    pub headers: HeaderMap,
    /// The complete request body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// The header `name` as a string, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// State shared by all connections of one mock server.
#[derive(Debug)]
struct State {
    options: MockOptions,
    fixtures: fixtures::FixtureCache,
    requests: Mutex<Vec<RecordedRequest>>,
    request_serial: AtomicU64,
    connections: AtomicU64,
}

/// A running mock provider. Dropping it stops the server (listener and open connections); use
/// [`MockProvider::shutdown`] to wait until that is done.
#[derive(Debug)]
pub struct MockProvider {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl MockProvider {
    /// Binds `options.listen` and starts serving on the current tokio runtime (HTTP/1.1 with keep-alive;
    /// HTTP/2 prior-knowledge also works). Fails only if the address cannot be bound.
    pub async fn start(options: MockOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            fixtures: fixtures::FixtureCache::new(options.fixtures_dir.clone()),
            options,
            requests: Mutex::new(Vec::new()),
            request_serial: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), stopped));
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base_url()` followed by `path` (which should start with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The requests received so far (since the last [`MockProvider::clear`]), in arrival order. A request
    /// is recorded once its body has been read, before the response (and any delay) starts.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many TCP connections the server has accepted (to check connection reuse).
    pub fn connection_count(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// Where fixtures are read from.
    pub fn fixtures_dir(&self) -> &std::path::Path {
        &self.state.options.fixtures_dir
    }

    /// Stops accepting, closes every open connection (including hanging responses) and waits until the
    /// server task has finished.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    state.connections.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(serve_connection(stream, Arc::clone(&state)));
                }
                // For example out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handler::handle(state, request).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A connection error (client reset, malformed request) only ends this connection.
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
