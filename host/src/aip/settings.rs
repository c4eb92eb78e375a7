//! AIP pipeline settings, read once at start-up: the policy chain, the non-streaming time
//! budget, the minimum evidence size, privacy of the task context, and the thresholds of drift
//! detection and nudge delivery.

use std::time::Duration;

use crate::config::{ConfigError, ConfigSource, boolean, bounded};

/// The policy chain used when `MNEMOM_AIP_POLICIES` is unset.
pub const DEFAULT_POLICIES: &str = "aip-conscience";

/// Validated AIP settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AipSettings {
    /// Policy plugin names, run for every check and combined (most severe verdict wins)
    /// (`MNEMOM_AIP_POLICIES`, comma-separated, default `aip-conscience`).
    pub policies: Vec<String>,
    /// Hard budget for the verdict of a non-streaming response; past it the response is sent
    /// with `X-AIP-Verdict: error` (`MNEMOM_AIP_TIMEOUT_MS`, default 12 000).
    pub budget: Duration,
    /// Thinking shorter than this many estimated tokens (characters / 4) is not analysed and gets
    /// a synthetic `clear` (`MNEMOM_AIP_MIN_EVIDENCE_TOKENS`, default 50).
    pub min_evidence_tokens: usize,
    /// Whether the task context sent to policies may include the last user message (first 200
    /// characters) (`MNEMOM_AIP_TASK_CONTEXT_USER_TEXT`, default false: privacy).
    pub task_context_user_text: bool,
    /// Consecutive non-clear verdicts in a session that raise a drift alert
    /// (`MNEMOM_AIP_DRIFT_THRESHOLD`, default 3).
    pub drift_threshold: usize,
    /// How long database reads of the analysis path (card, window, streaks) may take before
    /// the pipeline goes on with what it has (`MNEMOM_AIP_DB_TIMEOUT_MS`, default 300).
    pub db_timeout: Duration,
    /// How long claiming pending nudges may delay a request (`MNEMOM_AIP_NUDGE_CLAIM_TIMEOUT_MS`,
    /// default 250); past it the request goes without them and they stay pending.
    pub nudge_claim_timeout: Duration,
}

impl Default for AipSettings {
    fn default() -> Self {
        Self {
            policies: vec![DEFAULT_POLICIES.to_owned()],
            budget: Duration::from_millis(12_000),
            min_evidence_tokens: 50,
            task_context_user_text: false,
            drift_threshold: 3,
            db_timeout: Duration::from_millis(300),
            nudge_claim_timeout: Duration::from_millis(250),
        }
    }
}

impl AipSettings {
    /// Reads and validates the settings; a bad value names its variable.
    pub fn from_source(source: &dyn ConfigSource) -> Result<Self, ConfigError> {
        let d = Self::default();
        let policies = match source.get("MNEMOM_AIP_POLICIES") {
            None => d.policies,
            Some(list) => {
                let mut names = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if crate::plugin::manifest::validate_name(name).is_err() {
                        return Err(error(
                            "MNEMOM_AIP_POLICIES",
                            format!(
                                "`{name}` is not a plugin name (lower-case letters, digits, `-`)"
                            ),
                        ));
                    }
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_owned());
                    }
                }
                names
            }
        };
        Ok(Self {
            policies,
            budget: millis(source, "MNEMOM_AIP_TIMEOUT_MS", d.budget, 100, 120_000)?,
            min_evidence_tokens: bounded(
                source,
                "MNEMOM_AIP_MIN_EVIDENCE_TOKENS",
                d.min_evidence_tokens as u64,
                0..=1_000_000,
            )? as usize,
            task_context_user_text: boolean(
                source,
                "MNEMOM_AIP_TASK_CONTEXT_USER_TEXT",
                d.task_context_user_text,
            )?,
            drift_threshold: bounded(
                source,
                "MNEMOM_AIP_DRIFT_THRESHOLD",
                d.drift_threshold as u64,
                2..=10,
            )? as usize,
            db_timeout: millis(source, "MNEMOM_AIP_DB_TIMEOUT_MS", d.db_timeout, 10, 10_000)?,
            nudge_claim_timeout: millis(
                source,
                "MNEMOM_AIP_NUDGE_CLAIM_TIMEOUT_MS",
                d.nudge_claim_timeout,
                10,
                10_000,
            )?,
        })
    }
}

fn error(variable: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        reason: reason.into(),
    }
}

fn millis(
    source: &dyn ConfigSource,
    key: &str,
    default: Duration,
    min: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    crate::config::bounded_millis(source, key, default, min..=max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapSource;

    #[test]
    fn defaults_and_overrides() {
        let s = AipSettings::from_source(&MapSource::default()).unwrap();
        assert_eq!(s, AipSettings::default());
        let s = AipSettings::from_source(&MapSource::from_pairs([
            (
                "MNEMOM_AIP_POLICIES",
                "shell-guard, aip-conscience,shell-guard",
            ),
            ("MNEMOM_AIP_TIMEOUT_MS", "500"),
            ("MNEMOM_AIP_TASK_CONTEXT_USER_TEXT", "yes"),
        ]))
        .unwrap();
        assert_eq!(s.policies, ["shell-guard", "aip-conscience"]);
        assert_eq!(s.budget, Duration::from_millis(500));
        assert!(s.task_context_user_text);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (key, value) in [
            ("MNEMOM_AIP_POLICIES", "Bad Name"),
            ("MNEMOM_AIP_TIMEOUT_MS", "soon"),
            ("MNEMOM_AIP_DRIFT_THRESHOLD", "1"),
            ("MNEMOM_AIP_TASK_CONTEXT_USER_TEXT", "maybe"),
        ] {
            let e = AipSettings::from_source(&MapSource::from_pairs([(key, value)])).unwrap_err();
            assert_eq!(e.variable, key);
        }
    }
}
