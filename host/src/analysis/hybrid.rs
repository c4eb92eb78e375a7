//! The hybrid-mode client (REFERENCE.md §3.7): without an `ANTHROPIC_API_KEY`, the thinking is
//! sent to the hosted analyse service (`MNEMOM_ANALYZE_URL`, `X-Mnemom-Api-Key`), which analyses,
//! stores the checkpoint and answers with the signal. The answer is parsed strictly into typed
//! structs; anything else is a typed error (the caller fails open). Own circuit breaker and
//! `gateway_hybrid_*` metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Uri};
use serde::{Deserialize, Serialize};

use super::breaker::{Breaker, BreakerState, Outcome};
use super::metrics::{AnalysisMetrics, CallResult, EndpointMetrics};
use super::settings::{BreakerSettings, HybridSettings, Secret};
use super::transport::{self, TransportError, error_message, is_unhealthy, truncate};
use crate::proxy::upstream::{UpstreamClient, build_client};
use crate::store::Verdict;

/// Provider and model of the analysed response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThinkingMetadata {
    /// Provider (adapter name), e.g. `anthropic`.
    pub provider: String,
    /// Model that produced the thinking.
    pub model: String,
}

/// A conscience value as the analyse service expects it (the AIP SDK's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HybridConscienceValue {
    /// Upper-case kind: `BOUNDARY`, `FEAR`, `COMMITMENT`, `BELIEF` or `HOPE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What it says.
    pub content: String,
    /// Stable id, e.g. `boundary-no-deception`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// One earlier checkpoint of the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowContextEntry {
    /// `ic-...` id.
    pub checkpoint_id: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Its reasoning summary.
    pub reasoning_summary: String,
}

/// What is sent to the analyse service. `store_checkpoint: true` is added on the wire.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HybridRequest {
    /// The thinking to analyse.
    pub thinking_block: String,
    /// Provider and model.
    pub thinking_metadata: ThinkingMetadata,
    /// The agent (`smolt-...`).
    pub agent_id: String,
    /// The session.
    pub session_id: String,
    /// The AIP card (mapped from the agent's alignment card).
    pub card: serde_json::Value,
    /// Conscience values in effect (the defaults when the agent has none).
    pub conscience_values: Vec<HybridConscienceValue>,
    /// The task context (card description or role, at most 200 characters).
    pub task_context: String,
    /// Earlier checkpoints of the session, oldest first.
    pub window_context: Vec<WindowContextEntry>,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(flatten)]
    request: &'a HybridRequest,
    store_checkpoint: bool,
}

/// How serious a concern is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// `low`.
    Low,
    /// `medium`.
    Medium,
    /// `high`.
    High,
    /// `critical`.
    Critical,
}

/// One concern of a hybrid checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HybridConcern {
    /// Category (`prompt_injection`, `value_misalignment`, ...).
    pub category: String,
    /// Severity (strict enum).
    pub severity: Severity,
    /// What is wrong.
    pub description: String,
    /// Short evidence.
    #[serde(default)]
    pub evidence: Option<String>,
    /// Card field concerned.
    #[serde(default)]
    pub relevant_card_field: Option<String>,
    /// Conscience value concerned.
    #[serde(default)]
    pub relevant_conscience_value: Option<String>,
}

/// The checkpoint the service produced (and stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HybridCheckpoint {
    /// Its id (non-empty).
    pub checkpoint_id: String,
    /// The verdict (strict enum).
    pub verdict: Verdict,
    /// Concerns.
    pub concerns: Vec<HybridConcern>,
    /// Why.
    pub reasoning_summary: String,
    /// Every other field the service sent (`timestamp`, `conscience_context`,
    /// `window_position`, `analysis_metadata`, ...), kept as is.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What the caller should do, per the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommendedAction {
    /// `continue` (clear).
    Continue,
    /// `log_and_continue` (review needed).
    LogAndContinue,
    /// `pause_for_review` (violation without a critical concern).
    PauseForReview,
    /// `deny_and_escalate` (violation with a critical concern).
    DenyAndEscalate,
}

impl RecommendedAction {
    /// The wire value (for `X-AIP-Action`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecommendedAction::Continue => "continue",
            RecommendedAction::LogAndContinue => "log_and_continue",
            RecommendedAction::PauseForReview => "pause_for_review",
            RecommendedAction::DenyAndEscalate => "deny_and_escalate",
        }
    }
}

/// The service's attestation of the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HybridAttestation {
    /// `X-AIP-Certificate-Id`.
    pub certificate_id: String,
    /// `X-AIP-Chain-Hash`.
    pub chain_hash: String,
}

/// The service's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HybridResponse {
    /// The checkpoint.
    pub checkpoint: HybridCheckpoint,
    /// Whether the agent may proceed (`X-AIP-Proceed`).
    pub proceed: bool,
    /// `X-AIP-Action`.
    pub recommended_action: RecommendedAction,
    /// Present when the service attested the checkpoint.
    #[serde(default)]
    pub attestation: Option<HybridAttestation>,
}

/// Why a hybrid analysis failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HybridError {
    /// The circuit breaker is open.
    #[error("hybrid analysis unavailable: {0}")]
    Unavailable(String),
    /// No answer within the timeout.
    #[error("hybrid analysis timed out")]
    Timeout,
    /// The service answered with an error status, or could not be reached.
    #[error("hybrid analysis error: {0}")]
    Upstream(String),
    /// A 2xx answer that is not a valid analysis.
    #[error("hybrid analysis answer invalid: {0}")]
    InvalidResponse(String),
}

/// The hybrid client. Cheap to clone; one per process.
#[derive(Debug, Clone)]
pub struct HybridClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: UpstreamClient,
    url: Uri,
    api_key: Secret,
    timeout: Duration,
    breaker: Breaker,
    metrics: EndpointMetrics,
}

impl HybridClient {
    /// A client for `settings`, with a breaker from `breaker`, counting into `metrics.hybrid`.
    pub fn new(
        settings: &HybridSettings,
        breaker: BreakerSettings,
        metrics: &AnalysisMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                http: build_client(settings.timeout),
                url: settings.url.clone(),
                api_key: settings.api_key.clone(),
                timeout: settings.timeout,
                breaker: Breaker::new(
                    "hybrid",
                    breaker,
                    Some(metrics.hybrid.breaker_state.clone()),
                ),
                metrics: metrics.hybrid.clone(),
            }),
        }
    }

    /// The breaker's current state.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// Sends `request` to the analyse service and reads its answer.
    pub async fn analyze(&self, request: HybridRequest) -> Result<HybridResponse, HybridError> {
        let inner = &*self.inner;
        let metrics = &inner.metrics;
        let permit = match inner.breaker.acquire(Instant::now()) {
            Ok(permit) => permit,
            Err(rejected) => {
                metrics.count(CallResult::Rejected);
                return Err(HybridError::Unavailable(format!(
                    "circuit breaker open, next attempt in {} ms",
                    rejected.retry_in.as_millis()
                )));
            }
        };
        let body = serde_json::to_vec(&Wire {
            request: &request,
            store_checkpoint: true,
        })
        .map_err(|e| HybridError::Upstream(format!("cannot encode the request: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert("x-mnemom-api-key", inner.api_key.header());

        let started = Instant::now();
        let answer =
            transport::post_json(&inner.http, &inner.url, headers, body, inner.timeout).await;
        metrics.duration.observe(started.elapsed().as_secs_f64());
        let (outcome, result) = match answer {
            Err(TransportError::Timeout) => (Outcome::Failure, Err(HybridError::Timeout)),
            Err(e) => (Outcome::Failure, Err(HybridError::Upstream(e.to_string()))),
            Ok(answer) if !answer.status.is_success() => {
                let outcome = if is_unhealthy(answer.status) {
                    Outcome::Failure
                } else {
                    Outcome::Neutral
                };
                let message = error_message(answer.status, &answer.body);
                (
                    outcome,
                    Err(HybridError::Upstream(format!(
                        "{}: {message}",
                        answer.status.as_u16()
                    ))),
                )
            }
            Ok(answer) => match parse_response(&answer.body) {
                Ok(response) => (Outcome::Success, Ok(response)),
                Err(reason) => (Outcome::Failure, Err(HybridError::InvalidResponse(reason))),
            },
        };
        permit.record(outcome, Instant::now());
        match &result {
            Ok(_) => metrics.count(CallResult::Success),
            Err(HybridError::Timeout) => metrics.count(CallResult::Timeout),
            Err(e) => {
                metrics.count(CallResult::Error);
                tracing::debug!(error = %e, "hybrid analysis failed");
            }
        }
        result
    }
}

/// Parses and checks a 2xx answer.
fn parse_response(body: &[u8]) -> Result<HybridResponse, String> {
    let response: HybridResponse =
        serde_json::from_slice(body).map_err(|e| truncate(&e.to_string(), 300))?;
    if response.checkpoint.checkpoint_id.trim().is_empty() {
        return Err("checkpoint.checkpoint_id is empty".to_owned());
    }
    if let Some(a) = &response.attestation
        && (a.certificate_id.is_empty() || a.chain_hash.is_empty())
    {
        return Err("attestation has an empty field".to_owned());
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let request = HybridRequest {
            thinking_block: "t".to_owned(),
            thinking_metadata: ThinkingMetadata {
                provider: "anthropic".to_owned(),
                model: "claude-x".to_owned(),
            },
            agent_id: "smolt-1".to_owned(),
            session_id: "s-1".to_owned(),
            card: serde_json::json!({"card_id": "c-1"}),
            conscience_values: vec![HybridConscienceValue {
                kind: "BOUNDARY".to_owned(),
                content: "no deception".to_owned(),
                id: Some("boundary-no-deception".to_owned()),
            }],
            task_context: "Helper.".to_owned(),
            window_context: vec![WindowContextEntry {
                checkpoint_id: "ic-1".to_owned(),
                verdict: Verdict::ReviewNeeded,
                reasoning_summary: "r".to_owned(),
            }],
        };
        let wire = serde_json::to_value(Wire {
            request: &request,
            store_checkpoint: true,
        })
        .unwrap();
        assert_eq!(
            wire,
            serde_json::json!({
                "thinking_block": "t",
                "thinking_metadata": {"provider": "anthropic", "model": "claude-x"},
                "agent_id": "smolt-1",
                "session_id": "s-1",
                "card": {"card_id": "c-1"},
                "conscience_values": [{"type": "BOUNDARY", "content": "no deception", "id": "boundary-no-deception"}],
                "task_context": "Helper.",
                "window_context": [{"checkpoint_id": "ic-1", "verdict": "review_needed", "reasoning_summary": "r"}],
                "store_checkpoint": true,
            })
        );
    }

    #[test]
    fn strict_parsing() {
        let good = serde_json::json!({
            "checkpoint": {
                "checkpoint_id": "ic-1", "verdict": "boundary_violation",
                "concerns": [{"category": "prompt_injection", "severity": "high", "description": "d"}],
                "reasoning_summary": "r", "timestamp": "2026-01-01T00:00:00Z",
            },
            "proceed": false,
            "recommended_action": "pause_for_review",
        });
        let parsed = parse_response(good.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.checkpoint.verdict, Verdict::BoundaryViolation);
        assert_eq!(parsed.checkpoint.concerns[0].severity, Severity::High);
        assert_eq!(parsed.checkpoint.extra["timestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(parsed.recommended_action, RecommendedAction::PauseForReview);
        assert!(parsed.attestation.is_none());

        let broken = |pointer: &str, value: serde_json::Value| {
            let mut v = good.clone();
            *v.pointer_mut(pointer).unwrap() = value;
            parse_response(v.to_string().as_bytes())
        };
        assert!(broken("/checkpoint/verdict", "maybe".into()).is_err());
        assert!(broken("/checkpoint/concerns/0/severity", "severe".into()).is_err());
        assert!(broken("/checkpoint/checkpoint_id", "".into()).is_err());
        assert!(broken("/proceed", "yes".into()).is_err());
        assert!(broken("/recommended_action", "shrug".into()).is_err());
        assert!(broken("/checkpoint/reasoning_summary", serde_json::Value::Null).is_err());
        assert!(parse_response(b"{}").is_err());
        assert!(parse_response(b"prose").is_err());
    }
}
