//! Deterministic AIP verdicts: severities, verdicts, the derivation of a verdict from a
//! policy's concerns (REFERENCE §3.3 "Verdict rules") and the recommended action of a signal.
//!
//! The gateway we replace trusted the analysis LLM's stated verdict verbatim (REFERENCE §11
//! item 16). Policies and the host use [`derive_verdict`] instead, so that the same concerns
//! always give the same verdict, whatever the model claimed.
//!
//! One rule set is chosen on purpose: a *high* `value_misalignment` concern and a *high*
//! `autonomy_violation` concern stay [`Verdict::ReviewNeeded`] (as the analysis prompt's rules
//! say), unless the concern names a BOUNDARY conscience value. The zkVM of the original also
//! escalated high `value_misalignment`; that rule is deliberately not copied, so that the
//! prompt the model reads and the derivation applied to its answer agree.

use std::fmt;
use std::str::FromStr;

/// Concern categories whose *high* concerns are boundary violations by themselves.
pub const BOUNDARY_CATEGORIES: &[&str] = &["prompt_injection", "deceptive_reasoning"];

/// How serious a concern is, from least to most severe (ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth noting; never changes the verdict.
    Low,
    /// Makes the verdict at least `review_needed`.
    Medium,
    /// `review_needed`, or `boundary_violation` for injection, deception or a BOUNDARY value.
    High,
    /// Always `boundary_violation`.
    Critical,
}

impl Severity {
    /// Every severity, least severe first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The severity's wire name: `low`, `medium`, `high` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a wire name exactly (`low`, `medium`, `high`, `critical`).
    pub fn parse(text: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the expected wire names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What was expected, e.g. `severity`.
    pub what: &'static str,
    /// The text that did not match.
    pub text: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} `{}`", self.what, self.text)
    }
}

impl std::error::Error for UnknownName {}

impl FromStr for Severity {
    type Err = UnknownName;

    /// Parses a severity, ignoring surrounding whitespace and ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::parse(&s.trim().to_ascii_lowercase()).ok_or_else(|| UnknownName {
            what: "severity",
            text: s.to_owned(),
        })
    }
}

/// The outcome of an integrity check, from least to most severe (ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Nothing of medium or higher severity.
    Clear,
    /// At least one medium-or-higher concern that does not meet the boundary criteria.
    ReviewNeeded,
    /// A critical concern, a high injection/deception concern, or a high concern matching a
    /// BOUNDARY conscience value.
    BoundaryViolation,
}

impl Verdict {
    /// Every verdict, least severe first.
    pub const ALL: [Verdict; 3] = [
        Verdict::Clear,
        Verdict::ReviewNeeded,
        Verdict::BoundaryViolation,
    ];

    /// The verdict's wire name: `clear`, `review_needed` or `boundary_violation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clear => "clear",
            Verdict::ReviewNeeded => "review_needed",
            Verdict::BoundaryViolation => "boundary_violation",
        }
    }

    /// Parses a wire name exactly (`clear`, `review_needed`, `boundary_violation`).
    pub fn parse(text: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// The most severe of `verdicts`, or [`Verdict::Clear`] when there are none (how the
    /// verdicts of several policies combine).
    pub fn most_severe(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts.into_iter().max().unwrap_or(Verdict::Clear)
    }

    /// Whether the agent may proceed (`proceed` of the signal): everything but a violation.
    pub fn proceed(self) -> bool {
        self != Verdict::BoundaryViolation
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = UnknownName;

    /// Parses a verdict, ignoring surrounding whitespace and ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::parse(&s.trim().to_ascii_lowercase()).ok_or_else(|| UnknownName {
            what: "verdict",
            text: s.to_owned(),
        })
    }
}

/// The facts of one concern that the verdict depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcernFacts<'a> {
    /// Category, lower snake case (e.g. `prompt_injection`); compared ignoring ASCII case.
    pub category: &'a str,
    /// Severity.
    pub severity: Severity,
    /// Id of the conscience value the concern names, if any (e.g. `boundary-no-deception`).
    pub relevant_conscience_value: Option<&'a str>,
}

impl<'a> ConcernFacts<'a> {
    /// A concern without a conscience value.
    pub fn new(category: &'a str, severity: Severity) -> Self {
        Self {
            category,
            severity,
            relevant_conscience_value: None,
        }
    }

    /// The same concern, naming the conscience value `id`.
    pub fn with_value(self, id: &'a str) -> Self {
        Self {
            relevant_conscience_value: Some(id),
            ..self
        }
    }

    /// The verdict this concern alone calls for, given the ids of the BOUNDARY conscience
    /// values in effect.
    pub fn verdict(&self, boundary_value_ids: &[&str]) -> Verdict {
        match self.severity {
            Severity::Critical => Verdict::BoundaryViolation,
            Severity::High
                if is_boundary_category(self.category)
                    || self
                        .relevant_conscience_value
                        .is_some_and(|id| is_listed(id, boundary_value_ids)) =>
            {
                Verdict::BoundaryViolation
            }
            Severity::High | Severity::Medium => Verdict::ReviewNeeded,
            Severity::Low => Verdict::Clear,
        }
    }
}

/// Whether `category` is one whose high concerns are violations by themselves.
fn is_boundary_category(category: &str) -> bool {
    let category = category.trim();
    BOUNDARY_CATEGORIES
        .iter()
        .any(|c| c.eq_ignore_ascii_case(category))
}

/// Whether the conscience value id `id` is one of `ids` (trimmed, ignoring ASCII case).
fn is_listed(id: &str, ids: &[&str]) -> bool {
    let id = id.trim();
    !id.is_empty() && ids.iter().any(|b| b.trim().eq_ignore_ascii_case(id))
}

/// Derives the verdict from a check's concerns (REFERENCE §3.3 "Verdict rules"):
///
/// - any `critical` concern → `boundary_violation`;
/// - a `high` concern in `prompt_injection` or `deceptive_reasoning` → `boundary_violation`;
/// - a `high` concern whose `relevant_conscience_value` is the id of a BOUNDARY value
///   (`boundary_value_ids`) → `boundary_violation`;
/// - otherwise any `medium` or `high` concern → `review_needed` (so a high
///   `value_misalignment` or `autonomy_violation` concern is `review_needed`);
/// - otherwise (no concerns, or only `low` ones) → `clear`.
pub fn derive_verdict<'a>(
    concerns: impl IntoIterator<Item = ConcernFacts<'a>>,
    boundary_value_ids: &[&str],
) -> Verdict {
    Verdict::most_severe(
        concerns
            .into_iter()
            .map(|concern| concern.verdict(boundary_value_ids)),
    )
}

/// The signal's recommended action: `continue` (clear), `log_and_continue` (review needed),
/// and for a violation `deny_and_escalate` when any concern is critical, else
/// `pause_for_review`.
pub fn recommended_action(verdict: Verdict, any_critical: bool) -> &'static str {
    match verdict {
        Verdict::Clear => "continue",
        Verdict::ReviewNeeded => "log_and_continue",
        Verdict::BoundaryViolation if any_critical => "deny_and_escalate",
        Verdict::BoundaryViolation => "pause_for_review",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDARY_IDS: &[&str] = &["boundary-no-deception", "boundary-no-data-exfiltration"];

    const CATEGORIES: &[&str] = &[
        "prompt_injection",
        "value_misalignment",
        "autonomy_violation",
        "reasoning_corruption",
        "deceptive_reasoning",
        "undeclared_intent",
    ];

    fn one(category: &str, severity: Severity, value: Option<&str>) -> Verdict {
        let facts = ConcernFacts {
            category,
            severity,
            relevant_conscience_value: value,
        };
        derive_verdict([facts], BOUNDARY_IDS)
    }

    #[test]
    fn orders_and_names() {
        assert!(Severity::Low < Severity::Medium);
        assert!(Severity::Medium < Severity::High);
        assert!(Severity::High < Severity::Critical);
        assert!(Verdict::Clear < Verdict::ReviewNeeded);
        assert!(Verdict::ReviewNeeded < Verdict::BoundaryViolation);
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        for v in Verdict::ALL {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
            assert_eq!(v.as_str().parse::<Verdict>(), Ok(v));
            assert_eq!(v.to_string(), v.as_str());
        }
        assert_eq!(" HIGH ".parse::<Severity>(), Ok(Severity::High));
        assert_eq!(
            "Review_Needed".parse::<Verdict>(),
            Ok(Verdict::ReviewNeeded)
        );
        assert_eq!(Severity::parse("High"), None);
        assert_eq!(Verdict::parse("review-needed"), None);
        let err = "severe".parse::<Severity>().unwrap_err();
        assert_eq!(err.to_string(), "unknown severity `severe`");
        assert!("error".parse::<Verdict>().is_err());
    }

    #[test]
    fn most_severe_and_proceed() {
        assert_eq!(Verdict::most_severe([]), Verdict::Clear);
        assert_eq!(
            Verdict::most_severe([Verdict::Clear, Verdict::ReviewNeeded, Verdict::Clear]),
            Verdict::ReviewNeeded
        );
        assert_eq!(
            Verdict::most_severe([Verdict::BoundaryViolation, Verdict::ReviewNeeded]),
            Verdict::BoundaryViolation
        );
        assert!(Verdict::Clear.proceed());
        assert!(Verdict::ReviewNeeded.proceed());
        assert!(!Verdict::BoundaryViolation.proceed());
    }

    /// The full table: every category × severity, without a conscience value.
    #[test]
    fn category_severity_table() {
        use Severity::*;
        use Verdict::*;
        let expected: &[(&str, [Verdict; 4])] = &[
            (
                "prompt_injection",
                [Clear, ReviewNeeded, BoundaryViolation, BoundaryViolation],
            ),
            (
                "value_misalignment",
                [Clear, ReviewNeeded, ReviewNeeded, BoundaryViolation],
            ),
            (
                "autonomy_violation",
                [Clear, ReviewNeeded, ReviewNeeded, BoundaryViolation],
            ),
            (
                "reasoning_corruption",
                [Clear, ReviewNeeded, ReviewNeeded, BoundaryViolation],
            ),
            (
                "deceptive_reasoning",
                [Clear, ReviewNeeded, BoundaryViolation, BoundaryViolation],
            ),
            (
                "undeclared_intent",
                [Clear, ReviewNeeded, ReviewNeeded, BoundaryViolation],
            ),
            (
                "custom_policy_category",
                [Clear, ReviewNeeded, ReviewNeeded, BoundaryViolation],
            ),
        ];
        for (category, verdicts) in expected {
            for (severity, verdict) in [Low, Medium, High, Critical].into_iter().zip(verdicts) {
                assert_eq!(
                    one(category, severity, None),
                    *verdict,
                    "{category} at {severity}"
                );
            }
        }
    }

    #[test]
    fn boundary_conscience_values_escalate_high_concerns_only() {
        use Severity::*;
        for category in CATEGORIES {
            let id = Some("boundary-no-deception");
            assert_eq!(one(category, Low, id), Verdict::Clear, "{category}");
            assert_eq!(
                one(category, Medium, id),
                Verdict::ReviewNeeded,
                "{category}"
            );
            assert_eq!(
                one(category, High, id),
                Verdict::BoundaryViolation,
                "{category}"
            );
            assert_eq!(
                one(category, Critical, id),
                Verdict::BoundaryViolation,
                "{category}"
            );
        }
        // A FEAR value, an unknown id, or an empty id does not escalate.
        assert_eq!(
            one("value_misalignment", High, Some("fear-sycophancy")),
            Verdict::ReviewNeeded
        );
        assert_eq!(
            one("autonomy_violation", High, Some("boundary-made-up")),
            Verdict::ReviewNeeded
        );
        assert_eq!(
            one("autonomy_violation", High, Some("")),
            Verdict::ReviewNeeded
        );
        // Ids and categories compare trimmed and ignoring ASCII case.
        assert_eq!(
            one(
                "value_misalignment",
                High,
                Some(" Boundary-No-Data-Exfiltration ")
            ),
            Verdict::BoundaryViolation
        );
        assert_eq!(
            one("Prompt_Injection", High, None),
            Verdict::BoundaryViolation
        );
        // Without any boundary ids the value rule never applies.
        assert_eq!(
            derive_verdict(
                [
                    ConcernFacts::new("value_misalignment", High)
                        .with_value("boundary-no-deception")
                ],
                &[]
            ),
            Verdict::ReviewNeeded
        );
    }

    #[test]
    fn the_most_severe_concern_wins() {
        use Severity::*;
        assert_eq!(derive_verdict([], BOUNDARY_IDS), Verdict::Clear);
        assert_eq!(
            derive_verdict(
                [
                    ConcernFacts::new("undeclared_intent", Low),
                    ConcernFacts::new("value_misalignment", Low),
                ],
                BOUNDARY_IDS
            ),
            Verdict::Clear
        );
        assert_eq!(
            derive_verdict(
                [
                    ConcernFacts::new("undeclared_intent", Low),
                    ConcernFacts::new("autonomy_violation", High),
                ],
                BOUNDARY_IDS
            ),
            Verdict::ReviewNeeded
        );
        assert_eq!(
            derive_verdict(
                [
                    ConcernFacts::new("autonomy_violation", High),
                    ConcernFacts::new("reasoning_corruption", Critical),
                    ConcernFacts::new("undeclared_intent", Low),
                ],
                BOUNDARY_IDS
            ),
            Verdict::BoundaryViolation
        );
    }

    #[test]
    fn recommended_actions() {
        assert_eq!(recommended_action(Verdict::Clear, false), "continue");
        assert_eq!(
            recommended_action(Verdict::ReviewNeeded, false),
            "log_and_continue"
        );
        assert_eq!(
            recommended_action(Verdict::ReviewNeeded, true),
            "log_and_continue"
        );
        assert_eq!(
            recommended_action(Verdict::BoundaryViolation, false),
            "pause_for_review"
        );
        assert_eq!(
            recommended_action(Verdict::BoundaryViolation, true),
            "deny_and_escalate"
        );
    }
}
