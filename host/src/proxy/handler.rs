//! The provider proxy: identify the caller, let the adapter prepare the request, forward it to
//! the upstream, and stream the answer back byte for byte while a bounded copy feeds extraction.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};

use super::body::{BodyOutcome, Capture, GatewayBody, ReadError, TeeBody, read_limited};
use super::error::ProxyError;
use super::exchange::{Exchange, ExchangeObserver, InFlight, InFlightGuard};
use super::extract::{Extracted, StreamAccumulator};
use super::headers::{self, add_cors};
use super::identity::{AgentIdentity, KeyError, extract_key};
use super::pool::UpstreamPools;
use super::sse::Framer;
use crate::aip::{Aip, CheckRequest, NudgeClaim, Outcome, VerdictLabel};
use crate::config::Config;
use crate::metrics::{Metrics, ProviderSeries};
use crate::plugin::adapter::{PluginError, RequestInfo, SseEvent};
use crate::plugin::bindings::wit_types::Header;
use crate::plugin::manifest::FailureMode;
use crate::plugin::registry::RoutedAdapter;
use crate::store::{ContainmentStatus, EnforcementMode};

/// Bytes of a streamed response the extraction copy may lag behind the client before it is
/// abandoned (4 MiB: far more than any provider sends between two events, and it bounds memory
/// per stream).
const STREAM_COPY_LAG_BYTES: usize = 4 << 20;

/// Bytes of framed stream events held before they are handed to the adapter (see
/// `extract_stream`).
const STREAM_PARSE_BATCH_BYTES: usize = 64 << 10;

/// The largest whole response body read on the request worker that served it (64 KiB: tens of
/// microseconds of parsing); a larger one is read on the main runtime.
const WORKER_PARSE_MAX_BYTES: usize = 64 << 10;

/// Everything the proxy needs, shared by all requests.
#[derive(Debug)]
pub struct Proxy {
    /// Configuration.
    pub config: Arc<Config>,
    /// Metrics.
    pub metrics: Metrics,
    /// Upstream connection pools (one per request worker).
    pub upstream: UpstreamPools,
    /// Receives completed exchanges.
    pub observer: Arc<dyn ExchangeObserver>,
    /// The verified license (gates every proxied request).
    pub license: Arc<crate::license::License>,
    /// Exchanges not yet delivered to the observer.
    pub in_flight: InFlight,
    /// The AIP pipeline (absent in gateways built without it).
    pub aip: Option<Arc<Aip>>,
}

/// How long a request may wait for its agent's settings on a cold cache (loaded from the
/// database once, then cached for 300 s).
const SETTINGS_WAIT: Duration = Duration::from_millis(100);

/// The AIP state of one request.
#[derive(Debug, Clone)]
struct AipForward {
    settings: crate::store::AgentSettings,
    user_text: Option<String>,
    nudges_applied: usize,
    prefetch: Option<Arc<crate::aip::Prefetch>>,
    /// A policy or the hybrid service can judge this response (decided once per request).
    checks: bool,
}

/// What the request stage hands to the response stage.
struct Forwarded {
    provider: String,
    identity: AgentIdentity,
    method: String,
    path: String,
    streaming_requested: bool,
    request_model: Option<String>,
    thinking_injected: bool,
    started_at: SystemTime,
    arrived: Instant,
    /// Set when AIP applies to this request.
    aip: Option<AipForward>,
}

impl Proxy {
    /// Handles one request routed to `adapter`, with `rest` the path after its prefix.
    pub async fn handle(
        self: &Arc<Self>,
        adapter: &RoutedAdapter,
        rest: &str,
        request: Request<Incoming>,
    ) -> Response<GatewayBody> {
        let arrived = Instant::now();
        let provider = adapter.plugin.descriptor().name.clone();

        match self.forward(adapter, rest, request, arrived).await {
            Ok(response) => response,
            Err(error) => {
                let response = error.into_response(adapter).await;
                count_response(
                    &self.metrics,
                    &adapter.plugin.provider_series(),
                    &provider,
                    response.status(),
                    arrived.elapsed(),
                    None,
                );
                response
            }
        }
    }

    async fn forward(
        self: &Arc<Self>,
        adapter: &RoutedAdapter,
        rest: &str,
        request: Request<Incoming>,
        arrived: Instant,
    ) -> Result<Response<GatewayBody>, ProxyError> {
        self.license.gate()?;
        let started_at = SystemTime::now();
        let descriptor = adapter.plugin.descriptor();
        let provider = descriptor.name.clone();
        let (mut parts, body) = request.into_parts();
        let query = parts.uri.query();

        let key = extract_key(&descriptor.credential_sources, &parts.headers, query).map_err(
            |e| match e {
                KeyError::Missing { expected } => ProxyError::MissingKey { expected },
                KeyError::Invalid { .. } => ProxyError::InvalidKey(format!("Invalid API key: {e}")),
            },
        )?;
        let identity = AgentIdentity::from_key(&key, started_at);
        drop(key);

        // Containment applies whatever the billing settings (the original only checked it with
        // billing enforcement on).
        let settings = match &self.aip {
            Some(aip) => Some(aip.agent_settings(&identity.agent_id, SETTINGS_WAIT).await),
            None => None,
        };
        if let Some(s) = &settings
            && s.containment_status != ContainmentStatus::Active
        {
            tracing::info!(agent = %identity.agent_id, status = %s.containment_status, "contained agent refused");
            return Err(ProxyError::Contained(s.containment_status));
        }
        let aip = match (&self.aip, settings) {
            (Some(aip), Some(settings))
                if self.config.aip_enabled
                    && self.license.allows("aip")
                    && settings.aip_enabled =>
            {
                Some((aip.clone(), settings))
            }
            _ => None,
        };

        let body = read_limited(
            body,
            self.config.max_request_bytes,
            self.config.idle_timeout,
        )
        .await
        .map_err(|e| match e {
            ReadError::TooLarge(limit) => ProxyError::BodyTooLarge { limit },
            other => ProxyError::BodyRead(other.to_string()),
        })?;

        let checks = aip.as_ref().is_some_and(|(aip, _)| aip.will_check());
        let mut claim: Option<NudgeClaim> = None;
        let mut user_text = None;
        if let Some((aip, settings)) = &aip {
            if matches!(
                settings.enforcement_mode,
                EnforcementMode::Nudge | EnforcementMode::Enforce
            ) && !body.is_empty()
            {
                claim = aip.claim_nudges(&identity.agent_id).await;
            }
            if aip.settings().task_context_user_text && checks {
                user_text = crate::aip::inputs::last_user_text(&body);
            }
        }
        let info = RequestInfo {
            method: parts.method.as_str().to_owned(),
            path: rest.to_owned(),
            query: query.unwrap_or("").to_owned(),
            headers: adapter_headers(&parts.headers),
            system_notes: claim.iter().map(|c| c.note.clone()).collect(),
        };
        let mut notes_applied = 0u32;
        let mut outbound_body = body.clone();
        let mut streaming_requested = false;
        let mut request_model = None;
        let mut thinking_injected = false;
        if !body.is_empty() {
            match adapter.plugin.transform_request(&info, &body).await {
                Ok(plan) => {
                    notes_applied = plan.notes_applied;
                    streaming_requested = plan.streaming;
                    request_model = plan.model;
                    thinking_injected = plan.thinking_injected;
                    if let Some(new_body) = plan.body {
                        outbound_body = Bytes::from(new_body);
                    }
                }
                // Not a body the adapter edits (e.g. malformed JSON): forward it untouched.
                Err(PluginError::Unsupported { message, .. }) => {
                    tracing::debug!(provider = %provider, reason = %message, "request forwarded unchanged");
                }
                Err(error) => match adapter.plugin.failure_mode() {
                    FailureMode::FailOpen => {
                        self.metrics
                            .plugin_fail_open_total
                            .with_label_values(&[adapter.plugin.name(), "transform-request"])
                            .inc();
                        tracing::warn!(plugin = %adapter.plugin.name(), error = %error, "adapter failed; request forwarded unchanged (fail-open)");
                    }
                    FailureMode::FailClosed => {
                        tracing::warn!(plugin = %adapter.plugin.name(), error = %error, "adapter failed; request refused (fail-closed)");
                        if let (Some(c), Some((aip, _))) = (claim.take(), &aip) {
                            aip.settle_nudges(c, false, &identity.session_id);
                        }
                        return Err(ProxyError::PluginFailClosed {
                            plugin: adapter.plugin.name().to_owned(),
                            source: error,
                        });
                    }
                },
            }
        }

        // Nudges the adapter did not place (a body it does not edit) stay pending.
        let claim = match (claim, &aip) {
            (Some(c), Some((aip, _))) if notes_applied == 0 => {
                aip.settle_nudges(c, false, &identity.session_id);
                None
            }
            (claim, _) => claim,
        };
        let settle = |accepted: bool| {
            if let (Some(c), Some((aip, _))) = (claim.clone(), &aip) {
                aip.settle_nudges(c, accepted, &identity.session_id);
            }
        };
        // A non-streaming response waits for its verdict: read the check's database inputs
        // while the request goes upstream. (A stream's check runs after the stream; it reads
        // them then.)
        let prefetch = match &aip {
            Some((aip, _)) if !streaming_requested && checks => Some(aip.prefetch(&identity)),
            _ => None,
        };
        let uri = match upstream_uri(&adapter.upstream, rest, query) {
            Ok(uri) => uri,
            Err(e) => {
                settle(false);
                return Err(e);
            }
        };
        let mut upstream_request = Request::new(Full::new(outbound_body.clone()));
        *upstream_request.method_mut() = parts.method.clone();
        *upstream_request.uri_mut() = uri;
        *upstream_request.headers_mut() =
            headers::upstream_request_headers(std::mem::take(&mut parts.headers));
        if !outbound_body.is_empty()
            || !matches!(parts.method, http::Method::GET | http::Method::HEAD)
        {
            upstream_request.headers_mut().insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(outbound_body.len()),
            );
        }

        let sent = Instant::now();
        let response = match tokio::time::timeout(
            self.config.first_byte_timeout,
            self.upstream.current().request(upstream_request),
        )
        .await
        {
            Err(_) => {
                settle(false);
                self.metrics
                    .upstream_errors_total
                    .with_label_values(&[&provider, "timeout"])
                    .inc();
                return Err(ProxyError::UpstreamTimeout {
                    provider,
                    seconds: self.config.first_byte_timeout.as_secs(),
                });
            }
            Ok(Err(e)) => {
                settle(false);
                let kind = if e.is_connect() {
                    "connect"
                } else {
                    "protocol"
                };
                self.metrics
                    .upstream_errors_total
                    .with_label_values(&[&provider, kind])
                    .inc();
                let message = error_chain(&e);
                tracing::warn!(provider = %provider, error = %message, "upstream request failed");
                return Err(ProxyError::UpstreamConnect { provider, message });
            }
            Ok(Ok(response)) => response,
        };
        let upstream_wait = sent.elapsed();
        settle(response.status().is_success());
        let nudges_applied = claim.as_ref().map_or(0, |c| c.count);

        let forwarded = Forwarded {
            provider,
            identity,
            method: parts.method.as_str().to_owned(),
            path: rest.to_owned(),
            streaming_requested,
            request_model,
            thinking_injected,
            started_at,
            arrived,
            aip: aip.map(|(_, settings)| AipForward {
                settings,
                user_text,
                nudges_applied,
                prefetch,
                checks,
            }),
        };
        self.respond(adapter, response, forwarded, upstream_wait)
            .await
    }

    async fn respond(
        self: &Arc<Self>,
        adapter: &RoutedAdapter,
        response: Response<Incoming>,
        forwarded: Forwarded,
        upstream_wait: Duration,
    ) -> Result<Response<GatewayBody>, ProxyError> {
        let (mut parts, body) = response.into_parts();
        let status = parts.status;
        let content_type = header_str(&parts.headers, header::CONTENT_TYPE).to_ascii_lowercase();
        let encoding = header_str(&parts.headers, header::CONTENT_ENCODING)
            .trim()
            .to_ascii_lowercase();
        let mut out_headers = headers::client_response_headers(std::mem::take(&mut parts.headers));
        if let Ok(v) = HeaderValue::from_str(&forwarded.identity.agent_id) {
            out_headers.insert(headers::AGENT.clone(), v);
        }
        if let Ok(v) = HeaderValue::from_str(&forwarded.identity.session_id) {
            out_headers.insert(headers::SESSION.clone(), v);
        }
        add_cors(&mut out_headers);

        let is_sse = content_type.starts_with("text/event-stream");
        if let Some(ctx) = &forwarded.aip
            && ctx.nudges_applied > 0
        {
            out_headers.insert(
                crate::aip::outcome::ENFORCEMENT.clone(),
                HeaderValue::from_static("nudge"),
            );
            out_headers.insert(
                crate::aip::outcome::NUDGE_COUNT.clone(),
                HeaderValue::from(ctx.nudges_applied),
            );
        }
        if let Some(aip) = &self.aip {
            let outcome = match &forwarded.aip {
                None => Outcome::label(VerdictLabel::Disabled),
                Some(_) if !status.is_success() => Outcome::label(VerdictLabel::Skipped),
                Some(_) if is_sse && !(encoding.is_empty() || encoding == "identity") => {
                    Outcome::because(VerdictLabel::Skipped, "compressed-stream")
                }
                Some(_) if is_sse => Outcome::label(VerdictLabel::Pending),
                // No policy and no hybrid endpoint can run: nothing will judge the response, so
                // it is not held; it streams through and is extracted in the background.
                Some(ctx) if !ctx.checks => {
                    Outcome::because(VerdictLabel::Skipped, "no-analysis-configured")
                }
                Some(_) => {
                    let held = HeldResponse {
                        parts,
                        headers: out_headers,
                        encoding,
                        upstream_wait,
                    };
                    return self.respond_held(aip, adapter, held, body, forwarded).await;
                }
            };
            aip.count(outcome.label);
            outcome.apply(&mut out_headers);
        }
        let extract = self.config.aip_enabled && self.license.allows("aip") && status.is_success();
        let abandoned = Arc::new(AtomicBool::new(false));
        let (capture, source) = if !extract {
            let note = if status.is_success() {
                "extraction disabled (AIP_ENABLED=false)"
            } else {
                "upstream status is not 2xx"
            };
            (Capture::None, CaptureSource::Skipped(note.to_owned()))
        } else if is_sse {
            if encoding.is_empty() || encoding == "identity" {
                let (tx, rx) = mpsc::unbounded_channel();
                let lag = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let capture = Capture::Stream {
                    tx,
                    lag: lag.clone(),
                    limit: STREAM_COPY_LAG_BYTES,
                };
                (capture, CaptureSource::Stream { rx, lag })
            } else {
                (
                    Capture::None,
                    CaptureSource::Skipped(format!("compressed event stream ({encoding})")),
                )
            }
        } else {
            let (tx, rx) = oneshot::channel();
            let capture = Capture::Whole {
                chunks: Vec::new(),
                size: 0,
                limit: self.config.max_capture_bytes,
                done: Some(tx),
            };
            (capture, CaptureSource::Whole { rx, encoding })
        };

        let arrived = forwarded.arrived;
        let task = ExtractionTask {
            proxy: self.clone(),
            adapter: adapter.clone(),
            forwarded,
            status: status.as_u16(),
            is_sse,
            abandoned: abandoned.clone(),
            _in_flight: self.in_flight.enter(),
        };
        let (end, spawned) = match source {
            CaptureSource::Skipped(note) => (BodyEnd::Inline(Box::new(task), note), None),
            source => {
                let (end_tx, end_rx) = oneshot::channel::<(BodyOutcome, Duration)>();
                (BodyEnd::Task(end_tx), Some((task, source, end_rx)))
            }
        };
        // One reference for the finisher (cloning `Metrics` would take one per metric family).
        let proxy = self.clone();
        let provider = adapter.plugin.descriptor().name.clone();
        let series = adapter.plugin.provider_series();
        let headers_ready = arrived.elapsed();
        // The gateway's own time: everything before the request left plus the time between the
        // upstream's headers and ours. Body streaming time belongs to the upstream.
        let overhead = headers_ready.saturating_sub(upstream_wait);
        self.metrics.active_streams.inc();
        let finisher: Box<dyn FnOnce(BodyOutcome) + Send> = Box::new(move |outcome| {
            let total = arrived.elapsed();
            let metrics = &proxy.metrics;
            metrics.active_streams.dec();
            count_response(metrics, &series, &provider, status, total, Some(overhead));
            if outcome == BodyOutcome::UpstreamError {
                metrics
                    .upstream_errors_total
                    .with_label_values(&[&provider, "body"])
                    .inc();
            }
            match end {
                BodyEnd::Task(end_tx) => {
                    let _ = end_tx.send((outcome, total));
                }
                // Nothing to extract: complete here, without a task of its own.
                BodyEnd::Inline(task, note) => task.complete(None, Some(note), outcome, total),
            }
        });
        let abandon_flag = abandoned.clone();
        let on_abandon: Box<dyn FnOnce() + Send> =
            Box::new(move || abandon_flag.store(true, Ordering::Relaxed));
        let body = TeeBody::new(
            body,
            capture,
            self.config.idle_timeout,
            finisher,
            on_abandon,
        );

        if let Some((task, source, end_rx)) = spawned {
            let run = task.run(source, end_rx);
            if is_sse {
                // Off the workers: parsing a finished stream must not delay the requests of the
                // worker it came from.
                drop(crate::workers::spawn_background(run));
            } else {
                // A whole body is read where it was served, after its last byte went out: a
                // few microseconds, cheaper than waking another thread for them (a large body
                // moves off the worker; see `ExtractionTask::run`).
                drop(tokio::spawn(run));
            }
        }

        let mut response = Response::new(BodyExt::boxed_unsync(body));
        *response.status_mut() = status;
        *response.headers_mut() = out_headers;
        Ok(response)
    }

    /// A non-streaming 2xx response with AIP on: held (bounded) until its verdict, which is
    /// given within the time budget; `enforce` mode answers a boundary violation with 403.
    async fn respond_held(
        self: &Arc<Self>,
        aip: &Arc<Aip>,
        adapter: &RoutedAdapter,
        held: HeldResponse,
        body: Incoming,
        forwarded: Forwarded,
    ) -> Result<Response<GatewayBody>, ProxyError> {
        let HeldResponse {
            parts,
            mut headers,
            encoding,
            upstream_wait,
        } = held;
        let provider = forwarded.provider.clone();
        let body_started = Instant::now();
        let held_body = super::body::hold(
            body,
            self.config.max_capture_bytes,
            self.config.idle_timeout,
        )
        .await;
        let body_time = body_started.elapsed();
        let (bytes, extracted, note, outcome) = match held_body {
            super::body::Held::Failed(message) => {
                self.metrics
                    .upstream_errors_total
                    .with_label_values(&[&provider, "body"])
                    .inc();
                return Err(ProxyError::UpstreamBody { provider, message });
            }
            super::body::Held::TooLarge(prefix, rest) => {
                let outcome = Outcome::because(VerdictLabel::Skipped, "response-too-large");
                aip.count(outcome.label);
                outcome.apply(&mut headers);
                self.finish_held(
                    adapter,
                    &forwarded,
                    parts.status,
                    None,
                    Some("response larger than the capture limit".to_owned()),
                    body_time,
                    upstream_wait,
                );
                let mut response = Response::new(super::body::prefixed(prefix, rest));
                *response.status_mut() = parts.status;
                *response.headers_mut() = headers;
                return Ok(response);
            }
            super::body::Held::Complete(chunks) => {
                let bytes = concat(chunks);
                let (extracted, note) =
                    match decode(bytes.clone(), &encoding, self.config.max_capture_bytes) {
                        Err(note) => (None, Some(note)),
                        Ok(plain) => match adapter.plugin.parse_response(&plain).await {
                            Ok(extraction) => (Some(Extracted::from(extraction)), None),
                            Err(e) => {
                                if !e.is_unsupported() {
                                    self.metrics
                                        .plugin_fail_open_total
                                        .with_label_values(&[
                                            adapter.plugin.name(),
                                            "parse-response",
                                        ])
                                        .inc();
                                }
                                (None, Some(format!("adapter failed: {e}")))
                            }
                        },
                    };
                let outcome = match (&extracted, &forwarded.aip) {
                    (Some(extracted), Some(ctx)) => {
                        let request = CheckRequest {
                            identity: forwarded.identity.clone(),
                            settings: ctx.settings.clone(),
                            provider: provider.clone(),
                            model: extracted
                                .model
                                .clone()
                                .or_else(|| forwarded.request_model.clone())
                                .unwrap_or_else(|| "unknown".to_owned()),
                            extracted: extracted.clone(),
                            user_text: ctx.user_text.clone(),
                            streaming: false,
                            prefetch: ctx.prefetch.clone(),
                        };
                        match tokio::time::timeout(aip.settings().budget, aip.check(request)).await
                        {
                            Ok(outcome) => outcome,
                            Err(_) => Outcome::because(VerdictLabel::Error, "timeout"),
                        }
                    }
                    _ => Outcome::because(VerdictLabel::Skipped, "nothing-extracted"),
                };
                (bytes, extracted, note, outcome)
            }
        };
        aip.count(outcome.label);
        let enforce = forwarded
            .aip
            .as_ref()
            .is_some_and(|ctx| ctx.settings.enforcement_mode == EnforcementMode::Enforce);
        let status = parts.status;
        self.finish_held(
            adapter,
            &forwarded,
            status,
            extracted,
            note,
            body_time,
            upstream_wait,
        );
        if enforce && outcome.is_violation() {
            tracing::warn!(agent = %forwarded.identity.agent_id, checkpoint = ?outcome.checkpoint.as_ref().map(|c| &c.checkpoint_id), "response blocked (enforce mode)");
            let body = Bytes::from(outcome.integrity_violation_body().to_string());
            let mut response = super::error::json_response(http::StatusCode::FORBIDDEN, body);
            let out = response.headers_mut();
            outcome.apply(out);
            for name in [&headers::AGENT, &headers::SESSION] {
                if let Some(v) = headers.get(name) {
                    out.insert(name.clone(), v.clone());
                }
            }
            return Ok(response);
        }
        outcome.apply(&mut headers);
        let mut response = Response::new(super::body::full(bytes));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }

    /// Metrics and the exchange record of a held response.
    #[expect(
        clippy::too_many_arguments,
        reason = "the held response's parts, each used once; a struct would only rename them"
    )]
    fn finish_held(
        &self,
        adapter: &RoutedAdapter,
        forwarded: &Forwarded,
        status: http::StatusCode,
        extracted: Option<Extracted>,
        note: Option<String>,
        body_time: Duration,
        upstream_wait: Duration,
    ) {
        let provider = &forwarded.provider;
        let total = forwarded.arrived.elapsed();
        let metrics = &self.metrics;
        let series = adapter.plugin.provider_series();
        count_response(
            metrics,
            &series,
            provider,
            status,
            total,
            Some(total.saturating_sub(upstream_wait + body_time)),
        );
        count_extraction(
            metrics,
            &series,
            provider,
            if extracted.is_some() {
                "success"
            } else {
                "skipped"
            },
        );
        self.observer.observe(Exchange {
            provider: provider.clone(),
            identity: forwarded.identity.clone(),
            method: forwarded.method.clone(),
            path: forwarded.path.clone(),
            status: status.as_u16(),
            streaming: false,
            request_model: forwarded.request_model.clone(),
            thinking_injected: forwarded.thinking_injected,
            extracted,
            extraction_note: note,
            started_at: forwarded.started_at,
            duration: total,
        });
    }
}

/// The parts of an upstream response held for its verdict.
struct HeldResponse {
    parts: http::response::Parts,
    headers: HeaderMap,
    encoding: String,
    upstream_wait: Duration,
}

/// How the end of a response body reaches the extraction.
enum BodyEnd {
    /// A spawned extraction task waits for it.
    Task(oneshot::Sender<(BodyOutcome, Duration)>),
    /// Nothing is extracted; the exchange completes when the body ends.
    Inline(Box<ExtractionTask>, String),
}

/// Where the extraction task reads the response copy from.
enum CaptureSource {
    Skipped(String),
    Stream {
        rx: mpsc::UnboundedReceiver<Bytes>,
        lag: Arc<std::sync::atomic::AtomicUsize>,
    },
    Whole {
        rx: oneshot::Receiver<Option<Vec<Bytes>>>,
        encoding: String,
    },
}

struct ExtractionTask {
    proxy: Arc<Proxy>,
    adapter: RoutedAdapter,
    forwarded: Forwarded,
    status: u16,
    is_sse: bool,
    abandoned: Arc<AtomicBool>,
    /// Held until the exchange is delivered (the task ends after `observe`).
    _in_flight: InFlightGuard,
}

impl ExtractionTask {
    async fn run(self, source: CaptureSource, end: oneshot::Receiver<(BodyOutcome, Duration)>) {
        let (extracted, note) = match source {
            CaptureSource::Skipped(note) => (None, Some(note)),
            CaptureSource::Stream { rx, lag } => self.extract_stream(rx, lag).await,
            CaptureSource::Whole { rx, encoding } => match rx.await {
                Ok(Some(chunks)) => {
                    let size: usize = chunks.iter().map(Bytes::len).sum();
                    if size > WORKER_PARSE_MAX_BYTES && crate::workers::home().is_some() {
                        // Too long to read on a request worker: its next requests would wait.
                        drop(crate::workers::spawn_background(
                            self.run_whole(chunks, encoding, end),
                        ));
                        return;
                    }
                    self.extract_whole(chunks, &encoding).await
                }
                Ok(None) | Err(_) => (
                    None,
                    Some("response body incomplete or larger than the capture limit".to_owned()),
                ),
            },
        };
        self.finish(extracted, note, end).await;
    }

    /// Extracts a whole body and completes the exchange.
    async fn run_whole(
        self,
        chunks: Vec<Bytes>,
        encoding: String,
        end: oneshot::Receiver<(BodyOutcome, Duration)>,
    ) {
        let (extracted, note) = self.extract_whole(chunks, &encoding).await;
        self.finish(extracted, note, end).await;
    }

    /// Waits for the body's end and completes the exchange.
    async fn finish(
        self,
        extracted: Option<Extracted>,
        note: Option<String>,
        end: oneshot::Receiver<(BodyOutcome, Duration)>,
    ) {
        let (outcome, duration) = end
            .await
            .unwrap_or((BodyOutcome::ClientGone, self.forwarded.arrived.elapsed()));
        self.complete(extracted, note, outcome, duration);
    }

    /// Counts the extraction and hands the exchange to the observer. Synchronous, so a response
    /// with nothing to extract completes from its body's end without a task of its own.
    fn complete(
        self,
        extracted: Option<Extracted>,
        note: Option<String>,
        outcome: BodyOutcome,
        duration: Duration,
    ) {
        let provider = self.forwarded.provider.clone();
        let (extracted, note) = if self.abandoned.load(Ordering::Relaxed) {
            (
                None,
                Some("extraction abandoned: the copy fell behind the client stream".to_owned()),
            )
        } else if outcome != BodyOutcome::Complete && extracted.is_some() {
            (
                extracted,
                Some(format!("response ended early ({outcome:?})")),
            )
        } else {
            (extracted, note)
        };
        let result = if self.abandoned.load(Ordering::Relaxed) {
            "abandoned"
        } else if extracted.is_some() {
            "success"
        } else if note.as_deref().is_some_and(|n| n.starts_with("adapter")) {
            "error"
        } else {
            "skipped"
        };
        let metrics = &self.proxy.metrics;
        let series = self.adapter.plugin.provider_series();
        count_extraction(metrics, &series, &provider, result);
        series.extraction_task.inc();
        if let (Some(aip), Some(ctx), Some(extracted)) =
            (&self.proxy.aip, &self.forwarded.aip, &extracted)
            && self.is_sse
        {
            let request = CheckRequest {
                identity: self.forwarded.identity.clone(),
                settings: ctx.settings.clone(),
                provider: provider.clone(),
                model: extracted
                    .model
                    .clone()
                    .or_else(|| self.forwarded.request_model.clone())
                    .unwrap_or_else(|| "unknown".to_owned()),
                extracted: extracted.clone(),
                user_text: ctx.user_text.clone(),
                streaming: true,
                prefetch: ctx.prefetch.clone(),
            };
            let aip = aip.clone();
            let guard = self.proxy.in_flight.enter();
            tokio::spawn(async move {
                let outcome = aip.check(request).await;
                aip.count(outcome.label);
                drop(guard);
            });
        }
        let exchange = Exchange {
            provider,
            identity: self.forwarded.identity,
            method: self.forwarded.method,
            path: self.forwarded.path,
            status: self.status,
            streaming: self.is_sse || self.forwarded.streaming_requested,
            request_model: self.forwarded.request_model,
            thinking_injected: self.forwarded.thinking_injected,
            extracted,
            extraction_note: note,
            started_at: self.forwarded.started_at,
            duration,
        };
        self.proxy.observer.observe(exchange);
    }

    async fn extract_stream(
        &self,
        mut rx: mpsc::UnboundedReceiver<Bytes>,
        lag: Arc<std::sync::atomic::AtomicUsize>,
    ) -> (Option<Extracted>, Option<String>) {
        let mut framer = Framer::new();
        let mut accumulator = StreamAccumulator::default();
        let mut events = Vec::new();
        let mut failure: Option<String> = None;
        let process = async |events: &mut Vec<crate::proxy::sse::Event>,
                             failure: &mut Option<String>,
                             acc: &mut StreamAccumulator| {
            for event in events.drain(..) {
                if failure.is_some() {
                    continue;
                }
                let event = SseEvent {
                    event: event.event,
                    data: event.data,
                };
                match self.adapter.plugin.parse_event(&event).await {
                    Ok(delta) => acc.apply(delta),
                    Err(e) if e.is_unsupported() => {}
                    Err(e) => {
                        self.proxy
                            .metrics
                            .plugin_fail_open_total
                            .with_label_values(&[self.adapter.plugin.name(), "parse-event"])
                            .inc();
                        tracing::warn!(plugin = %self.adapter.plugin.name(), error = %e, "stream extraction stopped; the client stream is unaffected");
                        *failure = Some(format!("adapter failed: {e}"));
                    }
                }
            }
        };
        // Events are framed as they arrive (cheap, native) but handed to the adapter in
        // batches: a typical stream is parsed once it has ended, so the adapter's work never
        // competes with delivering the stream's first bytes; a long one every 64 KiB, which
        // bounds what is held.
        let mut pending = 0usize;
        while let Some(chunk) = rx.recv().await {
            lag.fetch_sub(chunk.len(), Ordering::AcqRel);
            pending += chunk.len();
            framer.push(&chunk, &mut events);
            if pending >= STREAM_PARSE_BATCH_BYTES {
                process(&mut events, &mut failure, &mut accumulator).await;
                pending = 0;
            }
        }
        framer.finish(&mut events);
        process(&mut events, &mut failure, &mut accumulator).await;
        match failure {
            Some(note) => (None, Some(note)),
            None => (Some(accumulator.finish()), None),
        }
    }

    async fn extract_whole(
        &self,
        chunks: Vec<Bytes>,
        encoding: &str,
    ) -> (Option<Extracted>, Option<String>) {
        let body = match decode(
            concat(chunks),
            encoding,
            self.proxy.config.max_capture_bytes,
        ) {
            Ok(body) => body,
            Err(note) => return (None, Some(note)),
        };
        // A whole body reaches this task only when no check holds it for a verdict, so its
        // content is read only if an observer wants it; otherwise the summary is enough.
        let plugin = &self.adapter.plugin;
        let (function, result) = if !self.proxy.observer.needs_content() {
            // `summarize-response`, or `parse-response` reduced to the summary when the adapter
            // does not export it.
            let summary = plugin.summarize_response(&body).await;
            let function = if plugin.summarizes() {
                "summarize-response"
            } else {
                "parse-response"
            };
            (function, summary.map(Extracted::from))
        } else {
            let extraction = plugin.parse_response(&body).await;
            ("parse-response", extraction.map(Extracted::from))
        };
        match result {
            Ok(extracted) => (Some(extracted), None),
            Err(e) if e.is_unsupported() => (None, Some(format!("response not understood: {e}"))),
            Err(e) => {
                self.proxy
                    .metrics
                    .plugin_fail_open_total
                    .with_label_values(&[plugin.name(), function])
                    .inc();
                tracing::warn!(plugin = %self.adapter.plugin.name(), error = %e, "response extraction failed; the response was delivered unchanged");
                (None, Some(format!("adapter failed: {e}")))
            }
        }
    }
}

/// Counts one answered request: `requests_total{provider,status}`, its duration, and the
/// gateway's own share of it (`overhead_seconds`) when known.
fn count_response(
    metrics: &Metrics,
    series: &ProviderSeries,
    provider: &str,
    status: http::StatusCode,
    total: Duration,
    overhead: Option<Duration>,
) {
    if status == http::StatusCode::OK {
        series.ok.inc();
    } else {
        metrics
            .requests_total
            .with_label_values(&[provider, status.as_str()])
            .inc();
    }
    series.duration.observe(total.as_secs_f64());
    if let Some(overhead) = overhead {
        series.overhead.observe(overhead.as_secs_f64());
    }
}

/// Counts one extraction result (`gateway_extractions_total`).
fn count_extraction(metrics: &Metrics, series: &ProviderSeries, provider: &str, result: &str) {
    match result {
        "success" => series.extraction_success.inc(),
        "skipped" => series.extraction_skipped.inc(),
        _ => metrics
            .extractions_total
            .with_label_values(&[provider, result])
            .inc(),
    }
}

/// One buffer from a body's chunks (no copy when there is a single chunk).
fn concat(chunks: Vec<Bytes>) -> Bytes {
    if chunks.len() <= 1 {
        return chunks.into_iter().next().unwrap_or_default();
    }
    let mut body = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
    for chunk in &chunks {
        body.extend_from_slice(chunk);
    }
    Bytes::from(body)
}

/// Decompresses a captured body for extraction (the client always gets the original bytes);
/// an uncompressed body is returned as is, without a copy.
fn decode(body: Bytes, encoding: &str, limit: usize) -> Result<Bytes, String> {
    let mut out = Vec::new();
    let read = match encoding {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(&body[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        "deflate" => {
            let zlib = flate2::read::ZlibDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out);
            if zlib.is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(&body[..])
                    .take(limit as u64 + 1)
                    .read_to_end(&mut out)
            } else {
                zlib
            }
        }
        "br" => brotli_decompressor::Decompressor::new(&body[..], 4096)
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        other => return Err(format!("unsupported content-encoding `{other}`")),
    };
    match read {
        Ok(n) if n > limit => Err("decompressed body exceeds the capture limit".to_owned()),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(format!("could not decompress ({encoding}): {e}")),
    }
}

/// Headers an adapter may need: content type and provider version/feature headers. Credentials,
/// cookies and everything else stay in the host.
fn adapter_headers(headers: &HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            n == "content-type"
                || n.starts_with("anthropic-")
                || n.starts_with("openai-")
                || (n.starts_with("x-goog-") && n != "x-goog-api-key")
        })
        .filter_map(|(name, value)| {
            Some(Header {
                name: name.as_str().to_owned(),
                value: value.to_str().ok()?.to_owned(),
            })
        })
        .collect()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `base` + `rest` + `?query`, keeping the base URL's own path (e.g. `https://host/openai`).
pub fn upstream_uri(base: &Uri, rest: &str, query: Option<&str>) -> Result<Uri, ProxyError> {
    let base_path = base.path().trim_end_matches('/');
    let mut path_and_query =
        String::with_capacity(base_path.len() + rest.len() + query.map_or(0, |q| q.len() + 1));
    path_and_query.push_str(base_path);
    path_and_query.push_str(rest);
    if let Some(q) = query {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = base.scheme().cloned();
    parts.authority = base.authority().cloned();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|e: http::uri::InvalidUri| ProxyError::BadPath(e.to_string()))?,
    );
    Uri::from_parts(parts).map_err(|e| ProxyError::BadPath(e.to_string()))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uri_keeps_base_path_and_query() {
        let base: Uri = "https://api.groq.com/openai/".parse().unwrap();
        let uri = upstream_uri(&base, "/v1/chat/completions", Some("a=1&b=%20")).unwrap();
        assert_eq!(
            uri.to_string(),
            "https://api.groq.com/openai/v1/chat/completions?a=1&b=%20"
        );
        let base: Uri = "http://127.0.0.1:9000".parse().unwrap();
        assert_eq!(
            upstream_uri(&base, "/", None).unwrap().to_string(),
            "http://127.0.0.1:9000/"
        );
    }

    #[test]
    fn decode_round_trips_gzip_and_refuses_bombs() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&vec![b'a'; 10_000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(
            decode(Bytes::from(gz.clone()), "gzip", 20_000)
                .unwrap()
                .len(),
            10_000
        );
        assert!(decode(Bytes::from(gz), "gzip", 1_000).is_err());
        assert!(decode(Bytes::from_static(b"x"), "zstd", 10).is_err());
    }
}
