//! A mock analysis LLM (Anthropic Messages API) and a mock hybrid analyse endpoint on loopback,
//! answering with the scripted [`Scenario`]s selected by `MOCK-ANALYSIS:<name>` markers.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mnemom_mock_provider::{MockAnalysis, MockAnalysisOptions, Scenario};
//!
//! let mock = MockAnalysis::start(MockAnalysisOptions::default()).await?;
//! // Set MNEMOM_ANALYSIS_BASE_URL to `mock.base_url()` (or MNEMOM_ANALYZE_URL to
//! // `mock.analyze_url()`), and put `Scenario::Review.marker()` into the thinking text.
//! let seen = mock.requests();
//! # let _ = seen;
//! mock.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Routes
//!
//! | request | response |
//! | --- | --- |
//! | `POST /v1/messages` | an Anthropic Messages answer whose first text block is the scenario's analysis, chosen by the marker in the user messages |
//! | `POST /analyze` | the hybrid answer `{checkpoint, proceed, recommended_action, attestation?}`, chosen by the marker in `thinking_block` |
//! | anything else | `404` with an Anthropic error body |
//!
//! `POST /v1/messages` checks what the real API checks first: `x-api-key` (else `401`
//! `authentication_error`), `anthropic-version`, and a JSON body with `model`, a positive
//! `max_tokens` and non-empty `messages` (else `400` `invalid_request_error`). `POST /analyze`
//! requires `x-mnemom-api-key` (else `401`) and a string `thinking_block` (else `400`). A marker
//! naming no scenario gets a `400` on both routes, so typos show.
//!
//! # Usage accounting
//!
//! Tokens are counted as `ceil(chars / 4)`. A system prompt sent with `cache_control` is written
//! to the mock's cache the first time it is seen (`cache_creation_input_tokens`) and read from it
//! afterwards (`cache_read_input_tokens`); `input_tokens` counts the rest, as Anthropic does. An
//! answer longer than the request's `max_tokens` is cut to `max_tokens * 4` characters with
//! `stop_reason: "max_tokens"`.
//!
//! # Hybrid answers
//!
//! Scenarios with an analysis (including `fenced` and `contradict`, which the hosted service
//! cleans up or trusts as the original did) answer `200` with the checkpoint; `proceed` and
//! `recommended_action` follow the stated verdict like the original `buildSignal`. Every such
//! answer carries an `attestation` except `clear`, so both shapes are exercised. `malformed`
//! answers prose (`text/plain`), `invalid` a checkpoint whose concern has severity `severe`,
//! `empty` the body `{}`; `timeout`, `error500` (`500`) and `overloaded` (`529`) behave as on
//! `/v1/messages`.

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::body::MockBody;
use crate::scenarios::{Scenario, Selection, select};
use crate::{RecordedRequest, fixtures::CONTENT_TYPE_JSON};

/// Path of the Anthropic Messages route.
pub const MESSAGES_PATH: &str = "/v1/messages";
/// Path of the hybrid analyse route.
pub const ANALYZE_PATH: &str = "/analyze";
/// The model named in hybrid checkpoints' `analysis_metadata`.
const HYBRID_ANALYSIS_MODEL: &str = "claude-haiku-4-5-20251001";
/// The fixed `timestamp` of hybrid checkpoints (keeps answers deterministic).
const HYBRID_TIMESTAMP: &str = "2026-01-01T00:00:00.000Z";

/// Settings of a [`MockAnalysis`].
#[derive(Debug, Clone)]
pub struct MockAnalysisOptions {
    /// Address to bind. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// The scenario of requests without a marker. Default [`Scenario::Clear`].
    pub default_scenario: Scenario,
    /// How long the `timeout` scenario waits before answering. Default 30 s. The wait ends
    /// early when the client disconnects or the mock shuts down.
    pub timeout_delay: Duration,
    /// A delay before every answer (to measure latency handling). Default zero.
    pub latency: Duration,
}

impl Default for MockAnalysisOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            default_scenario: Scenario::Clear,
            timeout_delay: Duration::from_secs(30),
            latency: Duration::ZERO,
        }
    }
}

#[derive(Debug)]
struct State {
    options: MockAnalysisOptions,
    requests: Mutex<Vec<RecordedRequest>>,
    count: AtomicU64,
    serial: AtomicU64,
    in_flight: AtomicU64,
    /// Hashes of system prompts sent with `cache_control` (the mock's "prompt cache").
    cached_systems: Mutex<HashSet<u64>>,
    stopped: watch::Receiver<bool>,
}

/// A running mock analysis endpoint. Dropping it stops the server.
#[derive(Debug)]
pub struct MockAnalysis {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl MockAnalysis {
    /// Binds `options.listen` and starts serving on the current tokio runtime.
    pub async fn start(options: MockAnalysisOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let state = Arc::new(State {
            options,
            requests: Mutex::new(Vec::new()),
            count: AtomicU64::new(0),
            serial: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            cached_systems: Mutex::new(HashSet::new()),
            stopped: stopped.clone(),
        });
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

    /// `http://127.0.0.1:PORT` (the analysis base URL; the client appends `/v1/messages`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base_url()` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The hybrid endpoint's full URL (`MNEMOM_ANALYZE_URL`).
    pub fn analyze_url(&self) -> String {
        self.url(ANALYZE_PATH)
    }

    /// Every request received since the last [`MockAnalysis::clear`], in arrival order (recorded
    /// once the body is read, before any delay).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests arrived since start or the last [`MockAnalysis::clear`].
    pub fn request_count(&self) -> u64 {
        self.state.count.load(Ordering::SeqCst)
    }

    /// Requests being answered right now (a `timeout` request whose client went away stops
    /// counting once the server notices the disconnect).
    pub fn in_flight(&self) -> u64 {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// Forgets the recorded requests, resets the counter and empties the prompt cache.
    pub fn clear(&self) {
        self.state
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.state.count.store(0, Ordering::SeqCst);
        self.state
            .cached_systems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Stops accepting, closes every connection and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockAnalysis {
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
                    connections.spawn(serve_connection(stream, Arc::clone(&state)));
                }
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
        async move { Ok::<_, Infallible>(handle(state, request).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Decrements the in-flight count when the request's future ends or is dropped (client gone).
struct InFlight(Arc<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response<MockBody> {
    state.in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight(Arc::clone(&state));
    let (parts, incoming) = request.into_parts();
    let body = match incoming.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            return anthropic_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("cannot read request body: {err}"),
            );
        }
    };
    let serial = state.serial.fetch_add(1, Ordering::SeqCst) + 1;
    state
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(RecordedRequest {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
    state.count.fetch_add(1, Ordering::SeqCst);
    if !state.options.latency.is_zero() {
        tokio::time::sleep(state.options.latency).await;
    }
    match (&parts.method, parts.uri.path()) {
        (&Method::POST, MESSAGES_PATH) => messages(&state, &parts.headers, &body, serial).await,
        (&Method::POST, ANALYZE_PATH) => analyze(&state, &parts.headers, &body, serial).await,
        _ => anthropic_error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!(
                "mock analysis: no route for {} {}",
                parts.method,
                parts.uri.path()
            ),
        ),
    }
}

/// Waits `state.options.timeout_delay`, or until the mock stops.
async fn slow(state: &State) {
    let mut stopped = state.stopped.clone();
    tokio::select! {
        _ = tokio::time::sleep(state.options.timeout_delay) => {}
        _ = stopped.wait_for(|stop| *stop) => {}
    }
}

/// Token estimate used for usage: `ceil(chars / 4)`.
fn tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The text of a `system` field (string or text blocks) and whether a block asks for caching.
fn system_of(body: &Value) -> (String, bool) {
    match body.get("system") {
        Some(Value::String(text)) => (text.clone(), false),
        Some(Value::Array(blocks)) => {
            let text = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n");
            let cached = blocks.iter().any(|b| {
                b.get("cache_control")
                    .and_then(|c| c.get("type"))
                    .and_then(Value::as_str)
                    == Some("ephemeral")
            });
            (text, cached)
        }
        _ => (String::new(), false),
    }
}

/// The concatenated text of the user messages (string content or text blocks).
fn user_text(messages: &[Value]) -> String {
    let mut out = Vec::new();
    for message in messages {
        if message.get("role").and_then(Value::as_str) != Some("user") {
            continue;
        }
        match message.get("content") {
            Some(Value::String(text)) => out.push(text.clone()),
            Some(Value::Array(blocks)) => out.extend(
                blocks
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .map(str::to_owned),
            ),
            _ => {}
        }
    }
    out.join("\n")
}

async fn messages(
    state: &State,
    headers: &HeaderMap,
    body: &Bytes,
    serial: u64,
) -> Response<MockBody> {
    let request_id = format!("req_mock_analysis_{serial:012}");
    if headers
        .get("x-api-key")
        .is_none_or(|v| v.as_bytes().is_empty())
    {
        return anthropic_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        );
    }
    if !headers.contains_key("anthropic-version") {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    let invalid =
        |message: &str| anthropic_error(StatusCode::BAD_REQUEST, "invalid_request_error", message);
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("the request body is not valid JSON");
    };
    let Some(model) = request.get("model").and_then(Value::as_str) else {
        return invalid("model: Field required");
    };
    let Some(max_tokens) = request
        .get("max_tokens")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
    else {
        return invalid("max_tokens: must be a positive integer");
    };
    let Some(messages) = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return invalid("messages: at least one message is required");
    };
    let prompt = user_text(messages);
    let scenario = match select(&prompt) {
        Selection::Default => state.options.default_scenario,
        Selection::Scenario(scenario) => scenario,
        Selection::Unknown(name) => return invalid(&format!("unknown mock scenario `{name}`")),
    };
    if scenario == Scenario::Timeout {
        slow(state).await;
    }
    if let Some((status, error)) = scenario.error() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return json_response(status, &error, Some(&request_id));
    }

    let (system, cache_system) = system_of(&request);
    let system_tokens = tokens(&system);
    let (mut input_tokens, mut cache_read, mut cache_creation) = (tokens(&prompt), 0, 0);
    if cache_system && system_tokens > 0 {
        let mut hasher = DefaultHasher::new();
        system.hash(&mut hasher);
        let fresh = state
            .cached_systems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hasher.finish());
        if fresh {
            cache_creation = system_tokens;
        } else {
            cache_read = system_tokens;
        }
    } else {
        input_tokens += system_tokens;
    }

    let (content, output_tokens, stop_reason) = match scenario.answer_text() {
        None => (json!([]), 0, "end_turn"),
        Some(text) => {
            let needed = tokens(&text);
            if needed > max_tokens {
                let keep = usize::try_from(max_tokens.saturating_mul(4)).unwrap_or(usize::MAX);
                let cut: String = text.chars().take(keep).collect();
                (
                    json!([{"type": "text", "text": cut}]),
                    max_tokens,
                    "max_tokens",
                )
            } else {
                (json!([{"type": "text", "text": text}]), needed, "end_turn")
            }
        }
    };
    let answer = json!({
        "id": format!("msg_mock_{serial:012}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": cache_creation,
            "cache_read_input_tokens": cache_read,
            "output_tokens": output_tokens,
        },
    });
    json_response(StatusCode::OK, &answer, Some(&request_id))
}

async fn analyze(
    state: &State,
    headers: &HeaderMap,
    body: &Bytes,
    serial: u64,
) -> Response<MockBody> {
    let plain_error = |status: StatusCode, message: &str| {
        json_response(status, &json!({ "error": message }), None)
    };
    if headers
        .get("x-mnemom-api-key")
        .is_none_or(|v| v.as_bytes().is_empty())
    {
        return plain_error(StatusCode::UNAUTHORIZED, "Missing API key");
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return plain_error(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let Some(thinking) = request.get("thinking_block").and_then(Value::as_str) else {
        return plain_error(StatusCode::BAD_REQUEST, "thinking_block is required");
    };
    let scenario = match select(thinking) {
        Selection::Default => state.options.default_scenario,
        Selection::Scenario(scenario) => scenario,
        Selection::Unknown(name) => {
            return plain_error(
                StatusCode::BAD_REQUEST,
                &format!("unknown mock scenario `{name}`"),
            );
        }
    };
    if scenario == Scenario::Timeout {
        slow(state).await;
    }
    match scenario {
        Scenario::Error500 => {
            return plain_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        }
        Scenario::Overloaded => {
            let status = StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return plain_error(status, "Overloaded");
        }
        Scenario::Empty => return json_response(StatusCode::OK, &json!({}), None),
        Scenario::Malformed => {
            let mut response = Response::new(MockBody::full(Bytes::from_static(
                b"The analysis service could not produce a result for this request.",
            )));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return response;
        }
        _ => {}
    }
    let analysis = match scenario {
        Scenario::Invalid => scenario
            .answer_text()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok()),
        _ => scenario.analysis(),
    };
    let Some(analysis) = analysis else {
        return plain_error(StatusCode::INTERNAL_SERVER_ERROR, "no scripted analysis");
    };
    json_response(
        StatusCode::OK,
        &hybrid_answer(&request, &analysis, scenario, serial),
        None,
    )
}

/// The hybrid answer for `analysis`, echoing the request's identifiers.
fn hybrid_answer(request: &Value, analysis: &Value, scenario: Scenario, serial: u64) -> Value {
    let verdict = analysis["verdict"].as_str().unwrap_or("clear");
    let concerns = analysis["concerns"].as_array().cloned().unwrap_or_default();
    let any_critical = concerns.iter().any(|c| c["severity"] == "critical");
    let recommended_action = match verdict {
        "boundary_violation" if any_critical => "deny_and_escalate",
        "boundary_violation" => "pause_for_review",
        "review_needed" => "log_and_continue",
        _ => "continue",
    };
    let window = request["window_context"]
        .as_array()
        .map_or(0, |w| w.len() as u64);
    let mut answer = json!({
        "checkpoint": {
            "checkpoint_id": format!("ic-mock-{serial:012}"),
            "agent_id": request["agent_id"],
            "session_id": request["session_id"],
            "card_id": request["card"]["card_id"],
            "timestamp": HYBRID_TIMESTAMP,
            "provider": request["thinking_metadata"]["provider"],
            "model": request["thinking_metadata"]["model"],
            "verdict": verdict,
            "concerns": concerns,
            "reasoning_summary": analysis["reasoning_summary"],
            "conscience_context": analysis["conscience_context"],
            "window_position": { "index": window, "window_size": window + 1 },
            "analysis_metadata": {
                "analysis_model": HYBRID_ANALYSIS_MODEL,
                "analysis_duration_ms": 0,
            },
            "linked_trace_id": null,
        },
        "proceed": verdict != "boundary_violation",
        "recommended_action": recommended_action,
    });
    if scenario != Scenario::Clear
        && let Some(object) = answer.as_object_mut()
    {
        object.insert(
            "attestation".to_owned(),
            json!({
                "certificate_id": format!("cert-mock-{serial:012}"),
                "chain_hash": format!("{serial:064x}"),
            }),
        );
    }
    answer
}

fn json_response(status: StatusCode, body: &Value, request_id: Option<&str>) -> Response<MockBody> {
    let mut response = Response::new(MockBody::full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_JSON),
    );
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        response.headers_mut().insert("request-id", id);
    }
    response
}

/// An Anthropic-shaped error: `{"type":"error","error":{"type":..,"message":..}}`.
fn anthropic_error(status: StatusCode, kind: &str, message: &str) -> Response<MockBody> {
    json_response(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_and_user_text() {
        let body = json!({
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "MOCK-ANALYSIS:boundary"},
                {"role": "user", "content": [{"type": "text", "text": "world"}]},
            ],
        });
        assert_eq!(system_of(&body), ("sys".to_owned(), true));
        assert_eq!(
            system_of(&json!({"system": "plain"})),
            ("plain".to_owned(), false)
        );
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        assert_eq!(user_text(&messages), "hello\nworld");
        assert_eq!(tokens("12345"), 2);
        assert_eq!(tokens(""), 0);
    }

    #[test]
    fn hybrid_signal_follows_the_verdict() {
        let request = json!({"agent_id": "smolt-1", "window_context": [{}, {}]});
        for (scenario, proceed, action) in [
            (Scenario::Clear, true, "continue"),
            (Scenario::Review, true, "log_and_continue"),
            (Scenario::Boundary, false, "deny_and_escalate"),
            (Scenario::Injection, false, "pause_for_review"),
        ] {
            let analysis = scenario.analysis().unwrap_or_default();
            let answer = hybrid_answer(&request, &analysis, scenario, 7);
            assert_eq!(answer["proceed"], proceed, "{scenario:?}");
            assert_eq!(answer["recommended_action"], action, "{scenario:?}");
            assert_eq!(answer["checkpoint"]["window_position"]["index"], 2);
            assert_eq!(answer["checkpoint"]["agent_id"], "smolt-1");
            assert_eq!(
                answer.get("attestation").is_some(),
                scenario != Scenario::Clear
            );
        }
    }
}
