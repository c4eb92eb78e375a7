//! Conversions between the WIT policy types and the SDK's plain-Rust equivalents
//! ([`crate::verdict`], [`crate::conscience`]), and wire names for the WIT enums.

use std::fmt;

use super::{ConscienceKind, ConscienceValue, Severity, Verdict};
use crate::{conscience, verdict};

impl From<Severity> for verdict::Severity {
    fn from(severity: Severity) -> Self {
        match severity {
            Severity::Low => verdict::Severity::Low,
            Severity::Medium => verdict::Severity::Medium,
            Severity::High => verdict::Severity::High,
            Severity::Critical => verdict::Severity::Critical,
        }
    }
}

impl From<verdict::Severity> for Severity {
    fn from(severity: verdict::Severity) -> Self {
        match severity {
            verdict::Severity::Low => Severity::Low,
            verdict::Severity::Medium => Severity::Medium,
            verdict::Severity::High => Severity::High,
            verdict::Severity::Critical => Severity::Critical,
        }
    }
}

impl From<Verdict> for verdict::Verdict {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Clear => verdict::Verdict::Clear,
            Verdict::ReviewNeeded => verdict::Verdict::ReviewNeeded,
            Verdict::BoundaryViolation => verdict::Verdict::BoundaryViolation,
        }
    }
}

impl From<verdict::Verdict> for Verdict {
    fn from(v: verdict::Verdict) -> Self {
        match v {
            verdict::Verdict::Clear => Verdict::Clear,
            verdict::Verdict::ReviewNeeded => Verdict::ReviewNeeded,
            verdict::Verdict::BoundaryViolation => Verdict::BoundaryViolation,
        }
    }
}

impl From<ConscienceKind> for conscience::ConscienceKind {
    fn from(kind: ConscienceKind) -> Self {
        match kind {
            ConscienceKind::Boundary => conscience::ConscienceKind::Boundary,
            ConscienceKind::Fear => conscience::ConscienceKind::Fear,
            ConscienceKind::Commitment => conscience::ConscienceKind::Commitment,
            ConscienceKind::Belief => conscience::ConscienceKind::Belief,
            ConscienceKind::Hope => conscience::ConscienceKind::Hope,
        }
    }
}

impl From<conscience::ConscienceKind> for ConscienceKind {
    fn from(kind: conscience::ConscienceKind) -> Self {
        match kind {
            conscience::ConscienceKind::Boundary => ConscienceKind::Boundary,
            conscience::ConscienceKind::Fear => ConscienceKind::Fear,
            conscience::ConscienceKind::Commitment => ConscienceKind::Commitment,
            conscience::ConscienceKind::Belief => ConscienceKind::Belief,
            conscience::ConscienceKind::Hope => ConscienceKind::Hope,
        }
    }
}

impl From<&conscience::ConscienceValue> for ConscienceValue {
    fn from(value: &conscience::ConscienceValue) -> Self {
        ConscienceValue {
            id: value.id.to_string(),
            kind: value.kind.into(),
            content: value.content.to_string(),
        }
    }
}

impl From<&ConscienceValue> for conscience::ConscienceValue {
    fn from(value: &ConscienceValue) -> Self {
        conscience::ConscienceValue::new(value.id.clone(), value.kind.into(), value.content.clone())
    }
}

impl Severity {
    /// The wire name: `low`, `medium`, `high` or `critical`.
    pub fn as_str(self) -> &'static str {
        verdict::Severity::from(self).as_str()
    }

    /// Parses a severity, ignoring surrounding whitespace and ASCII case.
    pub fn parse(text: &str) -> Option<Severity> {
        text.parse::<verdict::Severity>().ok().map(Severity::from)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Verdict {
    /// The wire name: `clear`, `review_needed` or `boundary_violation` (the value of the
    /// `X-AIP-Verdict` header and of stored checkpoints).
    pub fn as_str(self) -> &'static str {
        verdict::Verdict::from(self).as_str()
    }

    /// Parses a verdict, ignoring surrounding whitespace and ASCII case.
    pub fn parse(text: &str) -> Option<Verdict> {
        text.parse::<verdict::Verdict>().ok().map(Verdict::from)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default conscience values (four BOUNDARY, five FEAR) as WIT records: what the host
/// passes when neither the organisation nor the agent defines any, and what
/// [`CheckInput::sample`](super::CheckInput::sample) uses.
pub fn default_conscience_values() -> Vec<ConscienceValue> {
    conscience::DEFAULT_VALUES
        .iter()
        .map(ConscienceValue::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_the_plain_types() {
        for s in [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ] {
            assert_eq!(Severity::from(verdict::Severity::from(s)), s);
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        for v in [
            Verdict::Clear,
            Verdict::ReviewNeeded,
            Verdict::BoundaryViolation,
        ] {
            assert_eq!(Verdict::from(verdict::Verdict::from(v)), v);
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
        }
        assert_eq!(Severity::parse(" HIGH "), Some(Severity::High));
        assert_eq!(Severity::parse("severe"), None);
        assert_eq!(Verdict::BoundaryViolation.as_str(), "boundary_violation");
        // The WIT enums are ordered like the plain ones.
        assert!(Severity::High < Severity::Critical);
        assert!(Verdict::ReviewNeeded < Verdict::BoundaryViolation);
    }

    #[test]
    fn default_values_convert() {
        let values = default_conscience_values();
        assert_eq!(values.len(), conscience::DEFAULT_VALUES.len());
        assert_eq!(values[0].id, "boundary-no-deception");
        assert_eq!(values[0].kind, ConscienceKind::Boundary);
        let back: Vec<conscience::ConscienceValue> = values
            .iter()
            .map(conscience::ConscienceValue::from)
            .collect();
        assert_eq!(back, conscience::DEFAULT_VALUES);
    }
}
