//! The policy chain: every configured policy checks the response concurrently, each under its
//! own deadline and failure mode, and the reports combine into one: the most severe verdict,
//! the concerns in chain order, and per-policy metadata.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::metrics::Metrics;
use crate::plugin::manifest::{FailureMode, World};
use crate::plugin::policy::{
    CheckInput, ConscienceContext, ConsultationDepth, PolicyPlugin, Report, Severity, Verdict,
    severity_str, verdict_rank, verdict_str,
};

/// Category of the concern a fail-closed policy's failure becomes.
pub const POLICY_FAILURE: &str = "policy_failure";

/// What one policy contributed.
#[derive(Debug, Clone)]
pub struct PolicyRun {
    /// Policy name.
    pub name: String,
    /// Its version (from `describe`).
    pub version: String,
    /// Wall-clock time of its check.
    pub duration: Duration,
    /// Its report, or why it has none.
    pub outcome: Result<Report, String>,
    /// Whether a failure counts (fail-closed) or is left out (fail-open).
    pub failure_mode: FailureMode,
}

/// The combined result of a chain.
#[derive(Debug, Clone)]
pub struct Combined {
    /// The most severe verdict.
    pub verdict: Verdict,
    /// Concerns of every policy, in chain order (JSON objects as stored).
    pub concerns: Vec<serde_json::Value>,
    /// Whether any concern is critical.
    pub any_critical: bool,
    /// Reasoning summaries (prefixed with the policy name when several policies reported).
    pub reasoning_summary: String,
    /// The first conscience context reported.
    pub conscience_context: Option<serde_json::Value>,
    /// `{policies: [...]}` plus the first policy's own metadata fields.
    pub analysis_metadata: serde_json::Value,
}

/// Runs every policy of `chain` on `input`, each bounded by `budget` wall-clock time (its
/// compute deadline is enforced inside the runtime).
pub async fn run(
    chain: &[Arc<PolicyPlugin>],
    input: &CheckInput,
    budget: Duration,
    metrics: &Metrics,
) -> Vec<PolicyRun> {
    let runs = chain.iter().map(|policy| async move {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(budget, policy.check(input)).await {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "policy `{}` did not answer within the {} ms budget",
                policy.name(),
                budget.as_millis()
            )),
        };
        if let Err(reason) = &outcome {
            metrics
                .plugin_fail_open_total
                .with_label_values(&[policy.name(), "check"])
                .inc();
            tracing::warn!(policy = %policy.name(), error = %reason, failure_mode = policy.failure_mode().as_str(), "policy check failed");
        }
        PolicyRun {
            name: policy.name().to_owned(),
            version: policy.descriptor().version.clone(),
            duration: started.elapsed(),
            outcome,
            failure_mode: policy.failure_mode(),
        }
    });
    join_all(runs).await
}

/// Combines the runs. `None` when no policy produced a usable result (every one failed open):
/// the check's verdict is then `error`.
pub fn combine(runs: &[PolicyRun]) -> Option<Combined> {
    let mut verdict = Verdict::Clear;
    let mut concerns = Vec::new();
    let mut summaries = Vec::new();
    let mut conscience_context = None;
    let mut policies = Vec::new();
    let mut first_metadata: Option<serde_json::Map<String, serde_json::Value>> = None;
    let mut any_critical = false;
    let mut counted = 0;
    for run in runs {
        let mut entry = serde_json::json!({
            "name": run.name,
            "version": run.version,
            "duration_ms": run.duration.as_millis() as u64,
        });
        match &run.outcome {
            Ok(report) => {
                counted += 1;
                if verdict_rank(report.verdict) > verdict_rank(verdict) {
                    verdict = report.verdict;
                }
                for c in &report.concerns {
                    any_critical |= c.severity == Severity::Critical;
                    concerns.push(serde_json::json!({
                        "category": c.category,
                        "severity": severity_str(c.severity),
                        "description": c.description,
                        "evidence": c.evidence,
                        "relevant_card_field": c.relevant_card_field,
                        "relevant_conscience_value": c.relevant_conscience_value,
                        "policy": run.name,
                    }));
                }
                if !report.reasoning_summary.trim().is_empty() {
                    summaries.push((run.name.clone(), report.reasoning_summary.trim().to_owned()));
                }
                if conscience_context.is_none() {
                    conscience_context = report.conscience_context.as_ref().map(context_json);
                }
                let metadata = report
                    .metadata_json
                    .as_deref()
                    .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok());
                if first_metadata.is_none()
                    && let Some(serde_json::Value::Object(map)) = &metadata
                {
                    first_metadata = Some(map.clone());
                }
                entry["verdict"] = verdict_str(report.verdict).into();
                entry["metadata"] = metadata.unwrap_or(serde_json::Value::Null);
            }
            Err(reason) => {
                entry["error"] = reason.clone().into();
                entry["failure_mode"] = run.failure_mode.as_str().into();
                if run.failure_mode == FailureMode::FailClosed {
                    counted += 1;
                    verdict = Verdict::BoundaryViolation;
                    any_critical = true;
                    concerns.push(serde_json::json!({
                        "category": POLICY_FAILURE,
                        "severity": "critical",
                        "description": format!("fail-closed policy `{}` could not check this response: {reason}", run.name),
                        "evidence": "",
                        "relevant_card_field": null,
                        "relevant_conscience_value": null,
                        "policy": run.name,
                    }));
                    summaries.push((
                        run.name.clone(),
                        "The policy failed and is fail-closed; the response is treated as a boundary violation.".to_owned(),
                    ));
                }
            }
        }
        policies.push(entry);
    }
    if counted == 0 {
        return None;
    }
    let reasoning_summary = match summaries.len() {
        0 => String::new(),
        1 => summaries.remove(0).1,
        _ => summaries
            .iter()
            .map(|(name, s)| format!("[{name}] {s}"))
            .collect::<Vec<_>>()
            .join(" "),
    };
    let mut metadata = first_metadata.unwrap_or_default();
    metadata.insert("policies".into(), serde_json::Value::Array(policies));
    Some(Combined {
        verdict,
        concerns,
        any_critical,
        reasoning_summary,
        conscience_context,
        analysis_metadata: serde_json::Value::Object(metadata),
    })
}

fn context_json(c: &ConscienceContext) -> serde_json::Value {
    serde_json::json!({
        "values_checked": c.values_checked,
        "conflicts": c.conflicts,
        "supports": c.supports,
        "considerations": c.considerations,
        "consultation_depth": match c.consultation_depth {
            ConsultationDepth::Surface => "surface",
            ConsultationDepth::Standard => "standard",
            ConsultationDepth::Deep => "deep",
        },
    })
}

/// Whether a policy can run in this deployment: policies of the `aip-policy` world need the
/// analysis LLM (unless they only use `kv`, which the gateway cannot know: they are skipped when
/// no analysis endpoint is configured, and the skip is logged once at load).
pub fn runnable(policy: &PolicyPlugin, llm_configured: bool) -> bool {
    llm_configured || policy.manifest().world == World::AipPolicyPure
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::policy::Concern;

    fn run(name: &str, outcome: Result<Report, String>, mode: FailureMode) -> PolicyRun {
        PolicyRun {
            name: name.into(),
            version: "1".into(),
            duration: Duration::from_millis(3),
            outcome,
            failure_mode: mode,
        }
    }

    fn report(verdict: Verdict, severity: Severity) -> Report {
        Report {
            verdict,
            concerns: vec![Concern {
                category: "value_misalignment".into(),
                severity,
                description: "d".into(),
                evidence: "e".into(),
                relevant_card_field: None,
                relevant_conscience_value: None,
            }],
            reasoning_summary: "because".into(),
            conscience_context: None,
            metadata_json: Some(r#"{"analysis_model":"m"}"#.into()),
        }
    }

    #[test]
    fn most_severe_verdict_wins_and_concerns_keep_chain_order() {
        let runs = [
            run(
                "a",
                Ok(report(Verdict::ReviewNeeded, Severity::Medium)),
                FailureMode::FailOpen,
            ),
            run(
                "b",
                Ok(report(Verdict::BoundaryViolation, Severity::Critical)),
                FailureMode::FailOpen,
            ),
        ];
        let combined = combine(&runs).unwrap();
        assert_eq!(combined.verdict, Verdict::BoundaryViolation);
        assert!(combined.any_critical);
        assert_eq!(combined.concerns[0]["policy"], "a");
        assert_eq!(combined.reasoning_summary, "[a] because [b] because");
        assert_eq!(combined.analysis_metadata["analysis_model"], "m");
        assert_eq!(
            combined.analysis_metadata["policies"][1]["verdict"],
            "boundary_violation"
        );
    }

    #[test]
    fn failures_follow_the_failure_mode() {
        let open = [run("a", Err("trap".into()), FailureMode::FailOpen)];
        assert!(combine(&open).is_none(), "all failed open: error");
        let mixed = [
            run("a", Err("trap".into()), FailureMode::FailOpen),
            run(
                "b",
                Ok(report(Verdict::Clear, Severity::Low)),
                FailureMode::FailOpen,
            ),
        ];
        assert_eq!(combine(&mixed).unwrap().verdict, Verdict::Clear);
        let closed = [
            run("a", Err("timeout".into()), FailureMode::FailClosed),
            run(
                "b",
                Ok(report(Verdict::Clear, Severity::Low)),
                FailureMode::FailOpen,
            ),
        ];
        let combined = combine(&closed).unwrap();
        assert_eq!(combined.verdict, Verdict::BoundaryViolation);
        assert_eq!(combined.concerns[0]["category"], POLICY_FAILURE);
    }
}
