//! What a check means for the response: the `X-AIP-*` headers, the recommended action, and the
//! original's 403 `integrity_violation` body for `enforce` mode.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::store::Verdict;

/// `X-AIP-Verdict`.
pub static VERDICT: HeaderName = HeaderName::from_static("x-aip-verdict");
/// `X-AIP-Checkpoint-Id`.
pub static CHECKPOINT_ID: HeaderName = HeaderName::from_static("x-aip-checkpoint-id");
/// `X-AIP-Action`.
pub static ACTION: HeaderName = HeaderName::from_static("x-aip-action");
/// `X-AIP-Proceed`.
pub static PROCEED: HeaderName = HeaderName::from_static("x-aip-proceed");
/// `X-AIP-Synthetic`.
pub static SYNTHETIC: HeaderName = HeaderName::from_static("x-aip-synthetic");
/// `X-AIP-Reason`.
pub static REASON: HeaderName = HeaderName::from_static("x-aip-reason");
/// `X-AIP-Source`.
pub static SOURCE: HeaderName = HeaderName::from_static("x-aip-source");
/// `X-AIP-Enforcement`.
pub static ENFORCEMENT: HeaderName = HeaderName::from_static("x-aip-enforcement");
/// `X-AIP-Nudge-Count`.
pub static NUDGE_COUNT: HeaderName = HeaderName::from_static("x-aip-nudge-count");
/// `X-AIP-Certificate-Id` (hybrid attestation).
pub static CERTIFICATE_ID: HeaderName = HeaderName::from_static("x-aip-certificate-id");
/// `X-AIP-Chain-Hash` (hybrid attestation).
pub static CHAIN_HASH: HeaderName = HeaderName::from_static("x-aip-chain-hash");

/// Every value `X-AIP-Verdict` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictLabel {
    /// A verdict from analysis.
    Checked(Verdict),
    /// AIP is off globally or for the agent.
    Disabled,
    /// Not analysed (upstream non-2xx, nothing extracted, no analysis configured).
    Skipped,
    /// A stream: analysed in the background.
    Pending,
    /// The analysis failed (fail-open).
    Error,
}

impl VerdictLabel {
    /// The header value (also the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictLabel::Checked(v) => v.as_str(),
            VerdictLabel::Disabled => "disabled",
            VerdictLabel::Skipped => "skipped",
            VerdictLabel::Pending => "pending",
            VerdictLabel::Error => "error",
        }
    }
}

/// The checkpoint behind a verdict, as the client may see it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointSummary {
    /// `ic-…`.
    pub checkpoint_id: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Concerns (a JSON array).
    pub concerns: serde_json::Value,
    /// Reasoning summary.
    pub reasoning_summary: String,
    /// Whether any concern is critical.
    pub any_critical: bool,
}

impl CheckpointSummary {
    /// `continue`, `log_and_continue`, `pause_for_review` or `deny_and_escalate`.
    pub fn action(&self) -> &'static str {
        recommended_action(self.verdict, self.any_critical)
    }

    /// `false` only for a boundary violation.
    pub fn proceed(&self) -> bool {
        self.verdict != Verdict::BoundaryViolation
    }
}

/// The original's signal: clear → continue; review → log; violation → deny when a concern is
/// critical, else pause for review (the SDK's rule, shared with policies).
pub fn recommended_action(verdict: Verdict, any_critical: bool) -> &'static str {
    use mnemom_plugin_sdk::verdict::Verdict as Rule;
    let verdict = match verdict {
        Verdict::Clear => Rule::Clear,
        Verdict::ReviewNeeded => Rule::ReviewNeeded,
        Verdict::BoundaryViolation => Rule::BoundaryViolation,
    };
    mnemom_plugin_sdk::verdict::recommended_action(verdict, any_critical)
}

/// The result of the AIP stage for one response.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `X-AIP-Verdict`.
    pub label: VerdictLabel,
    /// The stored checkpoint, when there is one.
    pub checkpoint: Option<CheckpointSummary>,
    /// A `clear` that no analysis produced (nothing to analyse).
    pub synthetic: bool,
    /// `X-AIP-Reason`, when the verdict needs explaining.
    pub reason: Option<&'static str>,
    /// Analysed by the hosted service (hybrid mode).
    pub hybrid: bool,
    /// Hybrid attestation `(certificate_id, chain_hash)`.
    pub attestation: Option<(String, String)>,
}

impl Outcome {
    /// An outcome with only a label.
    pub fn label(label: VerdictLabel) -> Self {
        Self {
            label,
            checkpoint: None,
            synthetic: false,
            reason: None,
            hybrid: false,
            attestation: None,
        }
    }

    /// A label with a reason.
    pub fn because(label: VerdictLabel, reason: &'static str) -> Self {
        Self {
            reason: Some(reason),
            ..Self::label(label)
        }
    }

    /// A synthetic `clear` (nothing worth analysing).
    pub fn synthetic_clear(reason: &'static str) -> Self {
        Self {
            synthetic: true,
            reason: Some(reason),
            ..Self::label(VerdictLabel::Checked(Verdict::Clear))
        }
    }

    /// Whether `enforce` mode refuses this response.
    pub fn is_violation(&self) -> bool {
        self.label == VerdictLabel::Checked(Verdict::BoundaryViolation)
    }

    /// Writes the `X-AIP-*` headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(
            VERDICT.clone(),
            HeaderValue::from_static(self.label.as_str()),
        );
        if let Some(c) = &self.checkpoint {
            if let Ok(v) = HeaderValue::from_str(&c.checkpoint_id) {
                headers.insert(CHECKPOINT_ID.clone(), v);
            }
            headers.insert(ACTION.clone(), HeaderValue::from_static(c.action()));
            headers.insert(
                PROCEED.clone(),
                HeaderValue::from_static(if c.proceed() { "true" } else { "false" }),
            );
        }
        if self.synthetic {
            headers.insert(SYNTHETIC.clone(), HeaderValue::from_static("true"));
        }
        if let Some(reason) = self.reason {
            headers.insert(REASON.clone(), HeaderValue::from_static(reason));
        }
        if self.hybrid {
            headers.insert(SOURCE.clone(), HeaderValue::from_static("hybrid"));
        }
        if let Some((certificate, chain)) = &self.attestation {
            if let Ok(v) = HeaderValue::from_str(certificate) {
                headers.insert(CERTIFICATE_ID.clone(), v);
            }
            if let Ok(v) = HeaderValue::from_str(chain) {
                headers.insert(CHAIN_HASH.clone(), v);
            }
        }
    }

    /// The original's 403 body for a blocked violation.
    pub fn integrity_violation_body(&self) -> serde_json::Value {
        let checkpoint = self.checkpoint.as_ref().map(|c| {
            serde_json::json!({
                "checkpoint_id": c.checkpoint_id,
                "verdict": c.verdict.as_str(),
                "concerns": c.concerns,
                "reasoning_summary": c.reasoning_summary,
                "recommended_action": c.action(),
            })
        });
        serde_json::json!({
            "error": "Request blocked by integrity check",
            "type": "integrity_violation",
            "checkpoint": checkpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_a_violation() {
        let outcome = Outcome {
            checkpoint: Some(CheckpointSummary {
                checkpoint_id: "ic-1".into(),
                verdict: Verdict::BoundaryViolation,
                concerns: serde_json::json!([]),
                reasoning_summary: "r".into(),
                any_critical: true,
            }),
            ..Outcome::label(VerdictLabel::Checked(Verdict::BoundaryViolation))
        };
        let mut headers = HeaderMap::new();
        outcome.apply(&mut headers);
        assert_eq!(headers["x-aip-verdict"], "boundary_violation");
        assert_eq!(headers["x-aip-checkpoint-id"], "ic-1");
        assert_eq!(headers["x-aip-action"], "deny_and_escalate");
        assert_eq!(headers["x-aip-proceed"], "false");
        let body = outcome.integrity_violation_body();
        assert_eq!(body["type"], "integrity_violation");
        assert_eq!(
            body["checkpoint"]["recommended_action"],
            "deny_and_escalate"
        );
    }

    #[test]
    fn actions_follow_the_sdk_rule_and_reasons_are_headers() {
        assert_eq!(
            recommended_action(Verdict::BoundaryViolation, false),
            "pause_for_review"
        );
        let mut headers = HeaderMap::new();
        Outcome::because(VerdictLabel::Skipped, "no-analysis-configured").apply(&mut headers);
        assert_eq!(headers["x-aip-reason"], "no-analysis-configured");
        assert!(headers.get("x-aip-checkpoint-id").is_none());
    }
}
