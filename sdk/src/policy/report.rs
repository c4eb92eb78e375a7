//! Building a policy's answer: constructors for [`Report`], [`Concern`] and
//! [`PolicyDescriptor`], and the deterministic verdict of a list of concerns
//! ([`derive_verdict`], the rules of [`crate::verdict::derive_verdict`] over the WIT types).

use super::{
    Concern, ConscienceContext, ConscienceKind, ConscienceValue, PolicyDescriptor, Report,
    Severity, Verdict,
};
use crate::evidence;
use crate::verdict::{self, ConcernFacts};

/// The ids of the BOUNDARY values among `values` (a high concern naming one of them is a
/// boundary violation).
pub fn boundary_value_ids(values: &[ConscienceValue]) -> Vec<&str> {
    values
        .iter()
        .filter(|v| v.kind == ConscienceKind::Boundary)
        .map(|v| v.id.as_str())
        .collect()
}

/// The verdict `concerns` call for, given the conscience values in effect (the input's
/// `conscience_values`):
///
/// - any `critical` concern → `boundary-violation`;
/// - a `high` concern in `prompt_injection` or `deceptive_reasoning`, or one whose
///   `relevant_conscience_value` is the id of a BOUNDARY value → `boundary-violation`;
/// - otherwise any `medium` or `high` concern → `review-needed`;
/// - otherwise (no concerns, only `low` ones) → `clear`.
///
/// These are the rules of the AIP analysis ([`crate::verdict::derive_verdict`] over the WIT
/// types). The host combines the verdicts the policies state, so build reports with
/// [`Report::from_concerns`] to keep a report's verdict and its concerns in agreement.
pub fn derive_verdict(concerns: &[Concern], conscience_values: &[ConscienceValue]) -> Verdict {
    let boundary = boundary_value_ids(conscience_values);
    verdict::derive_verdict(
        concerns.iter().map(|c| ConcernFacts {
            category: &c.category,
            severity: c.severity.into(),
            relevant_conscience_value: c.relevant_conscience_value.as_deref(),
        }),
        &boundary,
    )
    .into()
}

impl Report {
    /// A `clear` report without concerns.
    pub fn clear(reasoning_summary: impl Into<String>) -> Report {
        Report {
            verdict: Verdict::Clear,
            concerns: Vec::new(),
            reasoning_summary: reasoning_summary.into(),
            conscience_context: None,
            metadata_json: None,
        }
    }

    /// A report on `concerns`, sorted most severe first (stable), with the verdict derived by
    /// [`derive_verdict`] against `conscience_values` (pass the input's). No concerns give a
    /// `clear` report.
    pub fn from_concerns(
        mut concerns: Vec<Concern>,
        conscience_values: &[ConscienceValue],
        reasoning_summary: impl Into<String>,
    ) -> Report {
        concerns.sort_by_key(|c| std::cmp::Reverse(c.severity));
        Report {
            verdict: derive_verdict(&concerns, conscience_values),
            concerns,
            reasoning_summary: reasoning_summary.into(),
            conscience_context: None,
            metadata_json: None,
        }
    }

    /// The same report with `metadata` (a JSON object) for the checkpoint's
    /// `analysis_metadata`.
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Report {
        self.metadata_json = Some(metadata.to_string());
        self
    }

    /// The same report with the conscience values it weighed.
    pub fn with_conscience_context(mut self, context: ConscienceContext) -> Report {
        self.conscience_context = Some(context);
        self
    }

    /// The most severe concern's severity, or `None` without concerns.
    pub fn max_severity(&self) -> Option<Severity> {
        self.concerns.iter().map(|c| c.severity).max()
    }
}

impl Concern {
    /// A concern without evidence, card field or conscience value. `category` is lower snake
    /// case: one of [`super::AIP_CATEGORIES`] or the policy's own (documented) category.
    pub fn new(
        category: impl Into<String>,
        severity: Severity,
        description: impl Into<String>,
    ) -> Concern {
        Concern {
            category: category.into(),
            severity,
            description: description.into(),
            evidence: String::new(),
            relevant_card_field: None,
            relevant_conscience_value: None,
        }
    }

    /// The same concern quoting `evidence`, with whitespace collapsed and cut to
    /// [`evidence::MAX_CHARS`] characters on a character boundary (see
    /// [`evidence::evidence`]). Quote the smallest part that shows the problem; never paste
    /// whole thinking blocks.
    pub fn with_evidence(mut self, evidence: &str) -> Concern {
        self.evidence = evidence::evidence(evidence);
        self
    }

    /// The same concern pointing at a card field, e.g. `autonomy_envelope.forbidden_actions`.
    pub fn with_card_field(mut self, field: impl Into<String>) -> Concern {
        self.relevant_card_field = Some(field.into());
        self
    }

    /// The same concern naming a conscience value by id, e.g. `boundary-no-deception`. A
    /// `high` concern naming a BOUNDARY value is a boundary violation.
    pub fn with_conscience_value(mut self, id: impl Into<String>) -> Concern {
        self.relevant_conscience_value = Some(id.into());
        self
    }
}

impl PolicyDescriptor {
    /// A descriptor. `name` must be lower-case ASCII letters, digits and `-`, starting with a
    /// letter (the host refuses the policy otherwise); it should equal the manifest's `name`.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
    ) -> PolicyDescriptor {
        PolicyDescriptor {
            name: name.into(),
            version: version.into(),
            description: description.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ConsultationDepth, default_conscience_values};

    fn concern(category: &str, severity: Severity) -> Concern {
        Concern::new(category, severity, "d")
    }

    #[test]
    fn verdicts_follow_the_rules() {
        let values = default_conscience_values();
        assert_eq!(derive_verdict(&[], &values), Verdict::Clear);
        assert_eq!(
            derive_verdict(&[concern("x", Severity::Low)], &values),
            Verdict::Clear
        );
        assert_eq!(
            derive_verdict(&[concern("x", Severity::Medium)], &values),
            Verdict::ReviewNeeded
        );
        assert_eq!(
            derive_verdict(&[concern("destructive_command", Severity::High)], &values),
            Verdict::ReviewNeeded
        );
        assert_eq!(
            derive_verdict(&[concern("x", Severity::Critical)], &values),
            Verdict::BoundaryViolation
        );
        assert_eq!(
            derive_verdict(&[concern("prompt_injection", Severity::High)], &values),
            Verdict::BoundaryViolation
        );
        // A high concern naming a BOUNDARY value escalates; a FEAR value does not.
        let boundary = concern("x", Severity::High).with_conscience_value("boundary-no-deception");
        assert_eq!(
            derive_verdict(std::slice::from_ref(&boundary), &values),
            Verdict::BoundaryViolation
        );
        assert_eq!(derive_verdict(&[boundary], &[]), Verdict::ReviewNeeded);
        let fear = concern("x", Severity::High).with_conscience_value("fear-sycophancy");
        assert_eq!(derive_verdict(&[fear], &values), Verdict::ReviewNeeded);
    }

    #[test]
    fn boundary_ids_come_from_boundary_values_only() {
        let values = default_conscience_values();
        let ids = boundary_value_ids(&values);
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|id| id.starts_with("boundary-")));
    }

    #[test]
    fn reports_are_sorted_and_derived() {
        let values = default_conscience_values();
        let report = Report::from_concerns(
            vec![
                concern("a", Severity::Low),
                concern("b", Severity::Critical),
                concern("c", Severity::High),
                concern("d", Severity::Critical),
            ],
            &values,
            "summary",
        );
        let order: Vec<&str> = report
            .concerns
            .iter()
            .map(|c| c.category.as_str())
            .collect();
        assert_eq!(order, ["b", "d", "c", "a"]);
        assert_eq!(report.verdict, Verdict::BoundaryViolation);
        assert_eq!(report.max_severity(), Some(Severity::Critical));
        assert_eq!(report.reasoning_summary, "summary");

        let clear = Report::clear("nothing found");
        assert_eq!(clear.verdict, Verdict::Clear);
        assert!(clear.concerns.is_empty());
        assert_eq!(clear.max_severity(), None);
        assert_eq!(
            Report::from_concerns(vec![], &values, "nothing found"),
            clear
        );

        let with = clear
            .with_metadata(serde_json::json!({"rules": 3}))
            .with_conscience_context(ConscienceContext {
                values_checked: vec!["boundary-no-deception".into()],
                conflicts: vec![],
                supports: vec![],
                considerations: vec![],
                consultation_depth: ConsultationDepth::Surface,
            });
        assert_eq!(with.metadata_json.as_deref(), Some(r#"{"rules":3}"#));
        assert!(with.conscience_context.is_some());
    }

    #[test]
    fn concern_builders() {
        let c = Concern::new("destructive_command", Severity::Critical, "wipes the disk")
            .with_evidence(&format!("dd if=/dev/zero  of=/dev/sda {}", "x".repeat(300)))
            .with_card_field("autonomy_envelope.forbidden_actions")
            .with_conscience_value("boundary-no-forbidden-actions");
        assert!(c.evidence.starts_with("dd if=/dev/zero of=/dev/sda x"));
        assert_eq!(c.evidence.chars().count(), crate::evidence::MAX_CHARS);
        assert_eq!(
            c.relevant_card_field.as_deref(),
            Some("autonomy_envelope.forbidden_actions")
        );
        assert_eq!(
            c.relevant_conscience_value.as_deref(),
            Some("boundary-no-forbidden-actions")
        );
        let d = PolicyDescriptor::new("shell-guard", "0.1.0", "flags destructive commands");
        assert_eq!(d.name, "shell-guard");
    }
}
