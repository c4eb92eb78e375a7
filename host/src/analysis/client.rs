//! The analysis LLM client behind the `llm.complete` host import: one Anthropic Messages call
//! per completion, against the configured endpoint, with a model allow-list, a token cap, a
//! deadline, a bounded answer and the process-wide circuit breaker. Never logs a prompt or a key.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Uri};
use serde::Deserialize;
use serde_json::json;

use super::breaker::{Breaker, BreakerState, Outcome};
use super::metrics::{AnalysisMetrics, CallResult};
use super::settings::{AnalysisSettings, Secret};
use super::transport::{self, TransportError, error_message, is_unhealthy, truncate};
use crate::proxy::upstream::{UpstreamClient, build_client};

/// The `anthropic-version` header sent.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// One completion request (the WIT `completion-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionRequest {
    /// The system prompt. Keep it identical across calls so the endpoint can cache it.
    pub system: String,
    /// The user message.
    pub prompt: String,
    /// Output token cap; lowered to the host's cap (and raised to at least 1).
    pub max_tokens: u32,
    /// Model, or `None` for the configured default. Must be on the allow-list.
    pub model: Option<String>,
    /// Ask the endpoint to cache the system prompt (`cache_control: ephemeral`).
    pub cache_system: bool,
}

/// The endpoint's answer (the WIT `completion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The first text block of the answer.
    pub text: String,
    /// The model that answered.
    pub model: String,
    /// Why generation stopped (`end_turn`, `max_tokens`, ...).
    pub stop_reason: Option<String>,
    /// Input tokens billed.
    pub input_tokens: Option<u64>,
    /// Output tokens billed.
    pub output_tokens: Option<u64>,
    /// Input tokens read from the endpoint's prompt cache.
    pub cache_read_tokens: Option<u64>,
}

/// Why a completion failed (the WIT `llm-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// No analysis endpoint is configured (no `ANTHROPIC_API_KEY`).
    #[error("no analysis LLM is configured")]
    NotConfigured,
    /// The model is not on the allow-list.
    #[error("model `{0}` is not on the analysis allow-list")]
    ModelNotAllowed(String),
    /// The circuit breaker is open.
    #[error("analysis LLM unavailable: {0}")]
    Unavailable(String),
    /// No answer within the timeout.
    #[error("analysis LLM timed out")]
    Timeout,
    /// The endpoint answered with an error, an unusable answer, or could not be reached.
    #[error("analysis LLM error: {0}")]
    Upstream(String),
}

/// The analysis LLM client. Cheap to clone; make one per process (the breaker is inside).
#[derive(Debug, Clone)]
pub struct AnalysisClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: UpstreamClient,
    /// `<base>/v1/messages`; `None` when unconfigured.
    endpoint: Option<Uri>,
    api_key: Option<Secret>,
    model: String,
    allowed_models: Vec<String>,
    max_tokens: u32,
    timeout: std::time::Duration,
    breaker: Breaker,
    metrics: AnalysisMetrics,
}

impl AnalysisClient {
    /// A client for `settings`, counting into `metrics`. Without an API key it is unconfigured
    /// and every call fails with [`LlmError::NotConfigured`].
    pub fn new(settings: &AnalysisSettings, metrics: &AnalysisMetrics) -> Self {
        let endpoint = settings.api_key.as_ref().and_then(|_| {
            settings
                .messages_url()
                .inspect_err(|e| tracing::error!(error = %e, "invalid analysis base URL"))
                .ok()
        });
        Self {
            inner: Arc::new(Inner {
                http: build_client(settings.timeout),
                endpoint,
                api_key: settings.api_key.clone(),
                model: settings.model.clone(),
                allowed_models: settings.allowed_models.clone(),
                max_tokens: settings.max_tokens,
                timeout: settings.timeout,
                breaker: Breaker::new(
                    "analysis",
                    settings.breaker,
                    Some(metrics.llm.breaker_state.clone()),
                ),
                metrics: metrics.clone(),
            }),
        }
    }

    /// Whether an analysis LLM is configured (`ANTHROPIC_API_KEY` set).
    pub fn is_configured(&self) -> bool {
        self.inner.endpoint.is_some() && self.inner.api_key.is_some()
    }

    /// The model used when a request names none.
    pub fn default_model(&self) -> &str {
        &self.inner.model
    }

    /// The models requests may name.
    pub fn allowed_models(&self) -> &[String] {
        &self.inner.allowed_models
    }

    /// The breaker's current state.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// Asks the analysis LLM for a completion.
    pub async fn complete(&self, request: CompletionRequest) -> Result<Completion, LlmError> {
        let inner = &*self.inner;
        let metrics = &inner.metrics.llm;
        let (Some(endpoint), Some(api_key)) = (&inner.endpoint, &inner.api_key) else {
            metrics.count(CallResult::Rejected);
            return Err(LlmError::NotConfigured);
        };
        let model = request.model.unwrap_or_else(|| inner.model.clone());
        if !inner.allowed_models.contains(&model) {
            metrics.count(CallResult::Rejected);
            return Err(LlmError::ModelNotAllowed(truncate(&model, 128)));
        }
        let permit = match inner.breaker.acquire(Instant::now()) {
            Ok(permit) => permit,
            Err(rejected) => {
                metrics.count(CallResult::Rejected);
                return Err(LlmError::Unavailable(format!(
                    "circuit breaker open, next attempt in {} ms",
                    rejected.retry_in.as_millis()
                )));
            }
        };

        let mut system = json!({"type": "text", "text": request.system});
        if request.cache_system {
            system["cache_control"] = json!({"type": "ephemeral"});
        }
        let body = json!({
            "model": model,
            "max_tokens": request.max_tokens.clamp(1, inner.max_tokens),
            "system": [system],
            "messages": [{"role": "user", "content": request.prompt}],
        });
        let body = serde_json::to_vec(&body)
            .map_err(|e| LlmError::Upstream(format!("cannot encode the request: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", api_key.header());
        headers.insert(
            "anthropic-version",
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );

        let started = Instant::now();
        let answer =
            transport::post_json(&inner.http, endpoint, headers, body, inner.timeout).await;
        metrics.duration.observe(started.elapsed().as_secs_f64());
        let (outcome, result) = match answer {
            Err(TransportError::Timeout) => (Outcome::Failure, Err(LlmError::Timeout)),
            Err(e) => (Outcome::Failure, Err(LlmError::Upstream(e.to_string()))),
            Ok(answer) if !answer.status.is_success() => {
                let outcome = if is_unhealthy(answer.status) {
                    Outcome::Failure
                } else {
                    Outcome::Neutral
                };
                let message = error_message(answer.status, &answer.body);
                (
                    outcome,
                    Err(LlmError::Upstream(format!(
                        "{}: {message}",
                        answer.status.as_u16()
                    ))),
                )
            }
            Ok(answer) => match parse_completion(&answer.body, &model) {
                Ok(completion) => (Outcome::Success, Ok(completion)),
                Err(reason) => (Outcome::Failure, Err(LlmError::Upstream(reason))),
            },
        };
        permit.record(outcome, Instant::now());

        match &result {
            Ok(completion) => {
                metrics.count(CallResult::Success);
                for (kind, tokens) in [
                    ("input", completion.input_tokens),
                    ("output", completion.output_tokens),
                    ("cache_read", completion.cache_read_tokens),
                ] {
                    if let Some(n) = tokens.filter(|n| *n > 0) {
                        inner
                            .metrics
                            .tokens_total
                            .with_label_values(&[kind])
                            .inc_by(n);
                    }
                }
                if completion.stop_reason.as_deref() == Some("max_tokens") {
                    tracing::warn!(
                        model = %completion.model,
                        output_tokens = completion.output_tokens,
                        "analysis LLM answer was cut at max_tokens"
                    );
                }
            }
            Err(LlmError::Timeout) => {
                metrics.count(CallResult::Timeout);
                tracing::debug!(
                    timeout_ms = inner.timeout.as_millis(),
                    "analysis LLM timed out"
                );
            }
            Err(e) => {
                metrics.count(CallResult::Error);
                tracing::debug!(error = %e, "analysis LLM call failed");
            }
        }
        result
    }
}

#[derive(Debug, Deserialize)]
struct MessagesResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<ContentBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

/// Reads a 2xx Messages answer: the first `text` block, which must not be empty.
fn parse_completion(body: &[u8], requested_model: &str) -> Result<Completion, String> {
    let response: MessagesResponse =
        serde_json::from_slice(body).map_err(|e| format!("invalid Messages answer: {e}"))?;
    let text = response
        .content
        .into_iter()
        .find(|block| block.kind == "text")
        .and_then(|block| block.text)
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| "the answer has no text".to_owned())?;
    let usage = response.usage;
    Ok(Completion {
        text,
        model: response
            .model
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| requested_model.to_owned()),
        stop_reason: response.stop_reason,
        input_tokens: usage.as_ref().and_then(|u| u.input_tokens),
        output_tokens: usage.as_ref().and_then(|u| u.output_tokens),
        cache_read_tokens: usage.as_ref().and_then(|u| u.cache_read_input_tokens),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_first_text_block() {
        let body = br#"{"model":"m-1","content":[{"type":"thinking","thinking":"x"},{"type":"text","text":"{\"verdict\":\"clear\"}"},{"type":"text","text":"second"}],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":7}}"#;
        let c = parse_completion(body, "requested").unwrap();
        assert_eq!(c.text, r#"{"verdict":"clear"}"#);
        assert_eq!(c.model, "m-1");
        assert_eq!(c.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(
            (c.input_tokens, c.output_tokens, c.cache_read_tokens),
            (Some(10), Some(5), Some(7))
        );
        let minimal =
            parse_completion(br#"{"content":[{"type":"text","text":"hi"}]}"#, "req").unwrap();
        assert_eq!(minimal.model, "req");
        assert_eq!(minimal.input_tokens, None);
    }

    #[test]
    fn rejects_answers_without_text() {
        for body in [
            &br#"{"content":[]}"#[..],
            br#"{"content":[{"type":"text","text":"  "}]}"#,
            br#"{"content":[{"type":"tool_use","id":"x"}]}"#,
            b"not json",
            br#"{"content":"text"}"#,
        ] {
            assert!(parse_completion(body, "m").is_err(), "{body:?}");
        }
    }
}
