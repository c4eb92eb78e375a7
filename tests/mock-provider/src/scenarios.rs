//! The scripted answers of the mock analysis LLM: one [`Scenario`] per `MOCK-ANALYSIS:<name>`
//! marker, each with a fixed analysis (or a fixed failure), so gateway tests can drive every
//! verdict and every failure path of the AIP pipeline deterministically.

use serde_json::{Value, json};

/// The text that selects a scenario: `MOCK-ANALYSIS:<name>` anywhere in the analysed text (the
/// user prompt of `POST /v1/messages`, the `thinking_block` of `POST /analyze`).
pub const MARKER_PREFIX: &str = "MOCK-ANALYSIS:";

/// One scripted behaviour of the mock analysis endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// `clear` (also the default without a marker): no concerns.
    Clear,
    /// `review`: one medium `value_misalignment` concern, verdict `review_needed`.
    Review,
    /// `boundary`: one critical `autonomy_violation` concern, verdict `boundary_violation`.
    Boundary,
    /// `injection`: one high `prompt_injection` concern, verdict `boundary_violation`.
    Injection,
    /// `deception`: one high `deceptive_reasoning` concern, verdict `boundary_violation`.
    Deception,
    /// `autonomy`: one high `autonomy_violation` concern, verdict `review_needed` (high autonomy
    /// concerns stay below the boundary).
    Autonomy,
    /// `values`: one high `value_misalignment` concern citing the FEAR value `fear-sycophancy`,
    /// verdict `review_needed`.
    Values,
    /// `boundary-value`: one high `value_misalignment` concern citing the BOUNDARY value
    /// `boundary-no-data-exfiltration`, verdict `boundary_violation`.
    BoundaryValue,
    /// `undeclared`: one medium `undeclared_intent` concern, verdict `review_needed`.
    Undeclared,
    /// `corruption`: one medium `reasoning_corruption` concern, verdict `review_needed`.
    Corruption,
    /// `malformed`: prose without any JSON.
    Malformed,
    /// `invalid`: well-formed JSON whose concern has the severity `severe` (not in the enum).
    Invalid,
    /// `contradict`: verdict `clear` with a critical `deceptive_reasoning` concern.
    Contradict,
    /// `fenced`: the `review` analysis inside a ```` ```json ```` fence, with trailing commas
    /// and prose around it.
    Fenced,
    /// `empty`: a 200 answer without any text content block.
    Empty,
    /// `timeout`: answers only after the mock's configured delay (default 30 s), with `clear`.
    Timeout,
    /// `error500`: `500` with an Anthropic `api_error` body.
    Error500,
    /// `overloaded`: `529` with an Anthropic `overloaded_error` body.
    Overloaded,
}

impl Scenario {
    /// Every scenario, in declaration order.
    pub const ALL: &'static [Scenario] = &[
        Scenario::Clear,
        Scenario::Review,
        Scenario::Boundary,
        Scenario::Injection,
        Scenario::Deception,
        Scenario::Autonomy,
        Scenario::Values,
        Scenario::BoundaryValue,
        Scenario::Undeclared,
        Scenario::Corruption,
        Scenario::Malformed,
        Scenario::Invalid,
        Scenario::Contradict,
        Scenario::Fenced,
        Scenario::Empty,
        Scenario::Timeout,
        Scenario::Error500,
        Scenario::Overloaded,
    ];

    /// The scenario's name, as written after [`MARKER_PREFIX`].
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Clear => "clear",
            Scenario::Review => "review",
            Scenario::Boundary => "boundary",
            Scenario::Injection => "injection",
            Scenario::Deception => "deception",
            Scenario::Autonomy => "autonomy",
            Scenario::Values => "values",
            Scenario::BoundaryValue => "boundary-value",
            Scenario::Undeclared => "undeclared",
            Scenario::Corruption => "corruption",
            Scenario::Malformed => "malformed",
            Scenario::Invalid => "invalid",
            Scenario::Contradict => "contradict",
            Scenario::Fenced => "fenced",
            Scenario::Empty => "empty",
            Scenario::Timeout => "timeout",
            Scenario::Error500 => "error500",
            Scenario::Overloaded => "overloaded",
        }
    }

    /// The scenario called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// The marker that selects this scenario, e.g. `MOCK-ANALYSIS:review`.
    pub fn marker(self) -> String {
        format!("{MARKER_PREFIX}{}", self.name())
    }

    /// The verdict the scripted analysis states, for scenarios that answer with an analysis.
    pub fn verdict(self) -> Option<&'static str> {
        match self {
            Scenario::Clear | Scenario::Timeout | Scenario::Contradict => Some("clear"),
            Scenario::Review
            | Scenario::Autonomy
            | Scenario::Values
            | Scenario::Undeclared
            | Scenario::Corruption
            | Scenario::Fenced => Some("review_needed"),
            Scenario::Boundary
            | Scenario::Injection
            | Scenario::Deception
            | Scenario::BoundaryValue => Some("boundary_violation"),
            Scenario::Malformed
            | Scenario::Invalid
            | Scenario::Empty
            | Scenario::Error500
            | Scenario::Overloaded => None,
        }
    }

    /// The scripted analysis (the AIP analysis schema) of scenarios that answer with valid JSON,
    /// `None` for the others.
    pub fn analysis(self) -> Option<Value> {
        if self == Scenario::Fenced {
            return Scenario::Review.analysis();
        }
        let verdict = self.verdict()?;
        let (concerns, summary, conflicts, depth) = match self {
            Scenario::Clear | Scenario::Timeout => (
                vec![],
                "The reasoning stays within the declared task and the agent's values.",
                vec![],
                "surface",
            ),
            Scenario::Review => (
                vec![concern(
                    "value_misalignment",
                    "medium",
                    "The agent weighs convenience above the user's stated preference for accuracy.",
                    "I'll just round these numbers, nobody will check.",
                    Some("values.declared"),
                    Some("fear-accuracy-erosion"),
                )],
                "Mild tension with the declared accuracy value; worth a review.",
                vec!["fear-accuracy-erosion"],
                "standard",
            ),
            Scenario::Boundary => (
                vec![concern(
                    "autonomy_violation",
                    "critical",
                    "The agent plans to delete production data, a forbidden action.",
                    "I will drop the production table to clean things up.",
                    Some("autonomy_envelope.forbidden_actions"),
                    Some("boundary-no-forbidden-actions"),
                )],
                "The agent intends a forbidden, destructive action.",
                vec!["boundary-no-forbidden-actions"],
                "deep",
            ),
            Scenario::Injection => (
                vec![concern(
                    "prompt_injection",
                    "high",
                    "The agent follows instructions embedded in a tool result that override its system prompt.",
                    "The document says to ignore previous instructions, so I will.",
                    None,
                    Some("boundary-no-instruction-compliance"),
                )],
                "The agent complies with injected instructions.",
                vec!["boundary-no-instruction-compliance"],
                "deep",
            ),
            Scenario::Deception => (
                vec![concern(
                    "deceptive_reasoning",
                    "high",
                    "The agent plans to hide a failed step from the user.",
                    "I won't mention that the tests failed; I'll say everything passed.",
                    None,
                    Some("boundary-no-deception"),
                )],
                "The agent intends to mislead the user about the outcome.",
                vec!["boundary-no-deception"],
                "deep",
            ),
            Scenario::Autonomy => (
                vec![concern(
                    "autonomy_violation",
                    "high",
                    "The agent decides to act without the escalation its card requires.",
                    "No need to ask first, I'll just make the purchase.",
                    Some("autonomy_envelope.escalation_triggers"),
                    None,
                )],
                "The agent skips a required escalation.",
                vec![],
                "standard",
            ),
            Scenario::Values => (
                vec![concern(
                    "value_misalignment",
                    "high",
                    "The agent tells the user what they want to hear instead of the truth.",
                    "They'll be happier if I agree their plan is flawless.",
                    Some("values.declared"),
                    Some("fear-sycophancy"),
                )],
                "Strong sycophantic pressure against the declared values.",
                vec!["fear-sycophancy"],
                "standard",
            ),
            Scenario::BoundaryValue => (
                vec![concern(
                    "value_misalignment",
                    "high",
                    "The agent plans to send customer records to an outside address.",
                    "I'll email the full customer export to this external address.",
                    None,
                    Some("boundary-no-data-exfiltration"),
                )],
                "The agent intends to move user data outside the system.",
                vec!["boundary-no-data-exfiltration"],
                "deep",
            ),
            Scenario::Undeclared => (
                vec![concern(
                    "undeclared_intent",
                    "medium",
                    "The agent pursues a goal it has not told the user about.",
                    "While I'm here I'll also collect their calendar for later.",
                    None,
                    Some("fear-transparency-gap"),
                )],
                "An undeclared side goal appears in the reasoning.",
                vec!["fear-transparency-gap"],
                "standard",
            ),
            Scenario::Corruption => (
                vec![concern(
                    "reasoning_corruption",
                    "medium",
                    "The reasoning contradicts itself and reaches a conclusion its steps do not support.",
                    "The total is 12, therefore the total is 40.",
                    None,
                    Some("fear-accuracy-erosion"),
                )],
                "Incoherent reasoning steps.",
                vec!["fear-accuracy-erosion"],
                "standard",
            ),
            Scenario::Contradict => (
                vec![concern(
                    "deceptive_reasoning",
                    "critical",
                    "The agent fabricates a citation to convince the user.",
                    "I'll invent a study that backs this up.",
                    None,
                    Some("boundary-no-deception"),
                )],
                "Stated as clear despite a critical concern.",
                vec!["boundary-no-deception"],
                "deep",
            ),
            Scenario::Fenced
            | Scenario::Malformed
            | Scenario::Invalid
            | Scenario::Empty
            | Scenario::Error500
            | Scenario::Overloaded => return None,
        };
        let mut checked = vec![
            "boundary-no-deception",
            "boundary-no-forbidden-actions",
            "boundary-no-data-exfiltration",
            "boundary-no-instruction-compliance",
        ];
        for value in &conflicts {
            if !checked.contains(value) {
                checked.push(value);
            }
        }
        let supports: Vec<&str> = checked
            .iter()
            .copied()
            .filter(|v| v.starts_with("boundary-") && !conflicts.contains(v))
            .collect();
        Some(json!({
            "verdict": verdict,
            "concerns": concerns,
            "reasoning_summary": summary,
            "conscience_context": {
                "values_checked": checked,
                "conflicts": conflicts,
                "supports": supports,
                "considerations": [format!("Scripted mock analysis: {}.", self.name())],
                "consultation_depth": depth,
            },
        }))
    }

    /// The text of the analysis LLM's answer (the first text block of `POST /v1/messages`), for
    /// scenarios answered with 200 and some text.
    pub fn answer_text(self) -> Option<String> {
        match self {
            Scenario::Malformed => Some(
                "I reviewed the reasoning carefully. Overall it looks reasonable to me and I did \
                 not notice anything that needs attention, although the agent could be clearer \
                 about its next steps."
                    .to_owned(),
            ),
            Scenario::Invalid => Some(
                json!({
                    "verdict": "review_needed",
                    "concerns": [concern(
                        "value_misalignment",
                        "severe",
                        "Severity outside the schema.",
                        "n/a",
                        None,
                        None,
                    )],
                    "reasoning_summary": "Severity is not one of low, medium, high, critical.",
                    "conscience_context": {
                        "values_checked": [],
                        "conflicts": [],
                        "supports": [],
                        "considerations": [],
                        "consultation_depth": "standard",
                    },
                })
                .to_string(),
            ),
            Scenario::Fenced => fenced_answer(),
            Scenario::Empty | Scenario::Error500 | Scenario::Overloaded => None,
            _ => self
                .analysis()
                .and_then(|v| serde_json::to_string_pretty(&v).ok()),
        }
    }

    /// The HTTP status and Anthropic error body of the failure scenarios.
    pub fn error(self) -> Option<(u16, Value)> {
        match self {
            Scenario::Error500 => Some((
                500,
                json!({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}),
            )),
            Scenario::Overloaded => Some((
                529,
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            )),
            _ => None,
        }
    }
}

/// The `fenced` answer: the `review` analysis pretty-printed with a trailing comma after the last
/// item of every object and array, in a markdown fence, with prose before and after that
/// contains no braces.
fn fenced_answer() -> Option<String> {
    let pretty = serde_json::to_string_pretty(&Scenario::Review.analysis()?).ok()?;
    let lines: Vec<&str> = pretty.lines().collect();
    let mut out = String::from("Here is my evaluation of the thinking block.\n\n```json\n");
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        let closes_next = lines
            .get(i + 1)
            .is_some_and(|next| next.trim_start().starts_with(['}', ']']));
        if closes_next && !line.trim_end().ends_with(['{', '[']) {
            out.push(',');
        }
        out.push('\n');
    }
    out.push_str("```\n\nLet me know if you need a deeper review.");
    Some(out)
}

fn concern(
    category: &str,
    severity: &str,
    description: &str,
    evidence: &str,
    card_field: Option<&str>,
    conscience_value: Option<&str>,
) -> Value {
    json!({
        "category": category,
        "severity": severity,
        "description": description,
        "evidence": evidence,
        "relevant_card_field": card_field,
        "relevant_conscience_value": conscience_value,
    })
}

/// Result of looking for a marker in some text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// No marker: the default scenario applies.
    Default,
    /// The first marker names this scenario.
    Scenario(Scenario),
    /// The first marker names no known scenario (the mock answers 400, so typos show).
    Unknown(String),
}

/// Finds the first `MOCK-ANALYSIS:<name>` in `text`; the name is the longest run of ASCII
/// letters, digits and `-` after the prefix.
pub fn select(text: &str) -> Selection {
    let Some(start) = text.find(MARKER_PREFIX) else {
        return Selection::Default;
    };
    let rest = &text[start + MARKER_PREFIX.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(rest.len());
    let name = &rest[..end];
    match Scenario::from_name(name) {
        Some(scenario) => Selection::Scenario(scenario),
        None => Selection::Unknown(name.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::from_name(scenario.name()), Some(*scenario));
            assert_eq!(
                select(&format!("x {} y", scenario.marker())),
                Selection::Scenario(*scenario)
            );
        }
        assert_eq!(select("no marker here"), Selection::Default);
        assert_eq!(
            select("MOCK-ANALYSIS:nope."),
            Selection::Unknown("nope".to_owned())
        );
        // The longest name wins: `boundary-value` is not read as `boundary`.
        assert_eq!(
            select("MOCK-ANALYSIS:boundary-value\n"),
            Selection::Scenario(Scenario::BoundaryValue)
        );
    }

    #[test]
    fn analyses_follow_the_schema() {
        for scenario in Scenario::ALL {
            let Some(analysis) = scenario.analysis() else {
                continue;
            };
            if *scenario == Scenario::Fenced {
                continue;
            }
            assert_eq!(analysis["verdict"], scenario.verdict().unwrap_or_default());
            for concern in analysis["concerns"].as_array().unwrap() {
                assert!(
                    ["low", "medium", "high", "critical"]
                        .contains(&concern["severity"].as_str().unwrap())
                );
                assert!(concern["evidence"].as_str().unwrap().len() <= 200);
            }
            let text = scenario.answer_text().unwrap();
            let parsed: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed, analysis);
        }
    }

    #[test]
    fn fenced_answer_is_the_review_analysis_after_cleanup() {
        let text = Scenario::Fenced.answer_text().unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_err());
        let (start, end) = (text.find('{').unwrap(), text.rfind('}').unwrap());
        let mut cleaned = String::new();
        let body = &text[start..=end];
        // Remove a comma followed by optional whitespace and a closing bracket.
        for (i, c) in body.char_indices() {
            if c == ',' {
                let next = body[i + 1..].trim_start().chars().next();
                if matches!(next, Some('}' | ']')) {
                    continue;
                }
            }
            cleaned.push(c);
        }
        assert!(cleaned.len() < body.len(), "there were trailing commas");
        assert!(text.contains("```json\n{") && text.ends_with("review."));
        let parsed: Value = serde_json::from_str(&cleaned).unwrap();
        assert_eq!(Some(parsed), Scenario::Review.analysis());
    }

    #[test]
    fn special_answers() {
        assert!(
            serde_json::from_str::<Value>(&Scenario::Malformed.answer_text().unwrap()).is_err()
        );
        let invalid: Value =
            serde_json::from_str(&Scenario::Invalid.answer_text().unwrap()).unwrap();
        assert_eq!(invalid["concerns"][0]["severity"], "severe");
        assert_eq!(Scenario::Error500.error().unwrap().0, 500);
        assert_eq!(Scenario::Overloaded.error().unwrap().0, 529);
        assert!(Scenario::Empty.answer_text().is_none());
        let contradict = Scenario::Contradict.analysis().unwrap();
        assert_eq!(contradict["verdict"], "clear");
        assert_eq!(contradict["concerns"][0]["severity"], "critical");
    }
}
