//! Reading the analysis LLM's answer: the JSON object is cut out of whatever text surrounds it
//! (prose, code fences), trailing commas are removed, and the result is validated strictly
//! against the response schema of the system prompt. Any violation is an [`AnswerError`]
//! naming the field.

use serde_json::{Map, Value};

use crate::mnemom::gateway::policy_types::{
    Concern, ConscienceContext, ConsultationDepth, Severity,
};
use mnemom_plugin_sdk::verdict::Verdict;

/// The concern categories the analysis may use.
pub const CATEGORIES: &[&str] = &[
    "prompt_injection",
    "value_misalignment",
    "autonomy_violation",
    "reasoning_corruption",
    "deceptive_reasoning",
    "undeclared_intent",
];

/// The verdict names the analysis may state.
pub const VERDICTS: &[&str] = &["clear", "review_needed", "boundary_violation"];

/// The severity names.
pub const SEVERITIES: &[&str] = &["low", "medium", "high", "critical"];

/// The consultation depths.
pub const DEPTHS: &[&str] = &["surface", "standard", "deep"];

/// Longest evidence kept, in characters.
pub const MAX_EVIDENCE_CHARS: usize = 200;

/// The validated answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The verdict the model stated (not trusted: the policy derives its own).
    pub verdict: Verdict,
    /// The concerns, in the model's order; evidence cut to [`MAX_EVIDENCE_CHARS`].
    pub concerns: Vec<Concern>,
    /// The model's reasoning summary.
    pub reasoning_summary: String,
    /// The conscience values the model weighed.
    pub conscience_context: ConscienceContext,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The field is absent.
    #[error("is missing")]
    Missing,
    /// The field has the wrong JSON type.
    #[error("must be {expected}")]
    WrongType {
        /// What it must be, e.g. `a string`.
        expected: &'static str,
    },
    /// The field is a string outside its enumeration.
    #[error("is `{value}`, expected one of: {}", .allowed.join(", "))]
    NotAllowed {
        /// The value found (cut to 40 characters).
        value: String,
        /// The values allowed.
        allowed: &'static [&'static str],
    },
}

/// Why an answer was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// No `{ ... }` in the text.
    #[error("the answer contains no JSON object")]
    NoJson,
    /// The object is not valid JSON.
    #[error("the answer is not valid JSON: {0}")]
    Syntax(String),
    /// The JSON is not an object.
    #[error("the answer is not a JSON object")]
    NotObject,
    /// A field violates the schema.
    #[error("field `{field}` {problem}")]
    Field {
        /// Path of the field, e.g. `concerns[1].severity`.
        field: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

fn field_error(field: impl Into<String>, problem: Problem) -> AnswerError {
    AnswerError::Field {
        field: field.into(),
        problem,
    }
}

/// Parses and validates the text of an analysis answer.
pub fn parse(text: &str) -> Result<Answer, AnswerError> {
    let json = extract_object(text).ok_or(AnswerError::NoJson)?;
    let json = remove_trailing_commas(&json);
    let value: Value =
        serde_json::from_str(&json).map_err(|e| AnswerError::Syntax(e.to_string()))?;
    validate(&value)
}

/// The text from the first `{` to the last `}`, after removing code-fence lines (lines whose
/// first non-blank characters are three backticks; such a line cannot be inside a JSON string,
/// which has no raw line breaks).
pub fn extract_object(text: &str) -> Option<String> {
    let unfenced: String = text
        .split_inclusive('\n')
        .filter(|line| !line.trim_start().starts_with("```"))
        .collect();
    let start = unfenced.find('{')?;
    let end = unfenced.rfind('}')?;
    (start < end).then(|| unfenced[start..=end].to_owned())
}

/// Removes commas that directly precede (whitespace aside) a `}` or `]`, outside strings.
pub fn remove_trailing_commas(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in json.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c == ',' {
            let rest = json[i + 1..].trim_start();
            if rest.starts_with('}') || rest.starts_with(']') {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// The first 40 characters of `text`, for error messages.
fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

fn required<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Value, AnswerError> {
    object
        .get(key)
        .ok_or_else(|| field_error(path, Problem::Missing))
}

fn string<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, AnswerError> {
    required(object, key, path)?.as_str().ok_or_else(|| {
        field_error(
            path,
            Problem::WrongType {
                expected: "a string",
            },
        )
    })
}

/// A required string member that must be one of `allowed`; returns its index in `allowed`.
fn one_of(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
    allowed: &'static [&'static str],
) -> Result<usize, AnswerError> {
    let value = string(object, key, path)?;
    allowed.iter().position(|a| *a == value).ok_or_else(|| {
        field_error(
            path,
            Problem::NotAllowed {
                value: shorten(value),
                allowed,
            },
        )
    })
}

/// An optional member that must be a string or null when present.
fn optional_string(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, AnswerError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(field_error(
            path,
            Problem::WrongType {
                expected: "a string or null",
            },
        )),
    }
}

fn string_array(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Vec<String>, AnswerError> {
    let items = required(object, key, path)?.as_array().ok_or_else(|| {
        field_error(
            path,
            Problem::WrongType {
                expected: "an array of strings",
            },
        )
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str().map(str::to_owned).ok_or_else(|| {
                field_error(
                    format!("{path}[{i}]"),
                    Problem::WrongType {
                        expected: "a string",
                    },
                )
            })
        })
        .collect()
}

fn concern(item: &Value, index: usize) -> Result<Concern, AnswerError> {
    let path = |key: &str| format!("concerns[{index}].{key}");
    let object = item.as_object().ok_or_else(|| {
        field_error(
            format!("concerns[{index}]"),
            Problem::WrongType {
                expected: "an object",
            },
        )
    })?;
    let category = CATEGORIES[one_of(object, "category", &path("category"), CATEGORIES)?];
    let severity = match one_of(object, "severity", &path("severity"), SEVERITIES)? {
        0 => Severity::Low,
        1 => Severity::Medium,
        2 => Severity::High,
        _ => Severity::Critical,
    };
    let description = string(object, "description", &path("description"))?.to_owned();
    let evidence = string(object, "evidence", &path("evidence"))?
        .chars()
        .take(MAX_EVIDENCE_CHARS)
        .collect();
    Ok(Concern {
        category: category.to_owned(),
        severity,
        description,
        evidence,
        relevant_card_field: optional_string(
            object,
            "relevant_card_field",
            &path("relevant_card_field"),
        )?,
        relevant_conscience_value: optional_string(
            object,
            "relevant_conscience_value",
            &path("relevant_conscience_value"),
        )?,
    })
}

fn conscience_context(root: &Map<String, Value>) -> Result<ConscienceContext, AnswerError> {
    const PATH: &str = "conscience_context";
    let object = required(root, PATH, PATH)?.as_object().ok_or_else(|| {
        field_error(
            PATH,
            Problem::WrongType {
                expected: "an object",
            },
        )
    })?;
    let path = |key: &str| format!("{PATH}.{key}");
    let values_checked = string_array(object, "values_checked", &path("values_checked"))?;
    let conflicts = string_array(object, "conflicts", &path("conflicts"))?;
    let supports = string_array(object, "supports", &path("supports"))?;
    let considerations = string_array(object, "considerations", &path("considerations"))?;
    let consultation_depth = match one_of(
        object,
        "consultation_depth",
        &path("consultation_depth"),
        DEPTHS,
    )? {
        0 => ConsultationDepth::Surface,
        1 => ConsultationDepth::Standard,
        _ => ConsultationDepth::Deep,
    };
    Ok(ConscienceContext {
        values_checked,
        conflicts,
        supports,
        considerations,
        consultation_depth,
    })
}

/// Validates a parsed answer against the response schema.
pub fn validate(value: &Value) -> Result<Answer, AnswerError> {
    let root = value.as_object().ok_or(AnswerError::NotObject)?;
    let verdict = match one_of(root, "verdict", "verdict", VERDICTS)? {
        0 => Verdict::Clear,
        1 => Verdict::ReviewNeeded,
        _ => Verdict::BoundaryViolation,
    };
    let concerns = required(root, "concerns", "concerns")?
        .as_array()
        .ok_or_else(|| {
            field_error(
                "concerns",
                Problem::WrongType {
                    expected: "an array",
                },
            )
        })?
        .iter()
        .enumerate()
        .map(|(i, item)| concern(item, i))
        .collect::<Result<Vec<_>, _>>()?;
    let reasoning_summary = string(root, "reasoning_summary", "reasoning_summary")?.to_owned();
    let conscience_context = conscience_context(root)?;
    Ok(Answer {
        verdict,
        concerns,
        reasoning_summary,
        conscience_context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "verdict": "review_needed",
            "concerns": [{
                "category": "autonomy_violation",
                "severity": "medium",
                "description": "Plans to push without asking.",
                "evidence": "I'll just push it",
                "relevant_card_field": "autonomy_envelope.escalation_triggers",
                "relevant_conscience_value": null
            }],
            "reasoning_summary": "Minor autonomy concern.",
            "conscience_context": {
                "values_checked": ["fear-autonomy-creep"],
                "conflicts": [],
                "supports": ["boundary-no-deception"],
                "considerations": ["Low stakes."],
                "consultation_depth": "standard"
            }
        })
    }

    fn with(mutate: impl FnOnce(&mut Value)) -> String {
        let mut v = valid();
        mutate(&mut v);
        v.to_string()
    }

    fn field_of(text: &str) -> (String, Problem) {
        match parse(text) {
            Err(AnswerError::Field { field, problem }) => (field, problem),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_valid_answer() {
        let answer = parse(&valid().to_string()).unwrap();
        assert_eq!(answer.verdict, Verdict::ReviewNeeded);
        assert_eq!(answer.concerns.len(), 1);
        let c = &answer.concerns[0];
        assert_eq!(c.category, "autonomy_violation");
        assert_eq!(c.severity, Severity::Medium);
        assert_eq!(c.description, "Plans to push without asking.");
        assert_eq!(c.evidence, "I'll just push it");
        assert_eq!(
            c.relevant_card_field.as_deref(),
            Some("autonomy_envelope.escalation_triggers")
        );
        assert_eq!(c.relevant_conscience_value, None);
        assert_eq!(answer.reasoning_summary, "Minor autonomy concern.");
        let cc = &answer.conscience_context;
        assert_eq!(cc.values_checked, ["fear-autonomy-creep"]);
        assert!(cc.conflicts.is_empty());
        assert_eq!(cc.supports, ["boundary-no-deception"]);
        assert_eq!(cc.considerations, ["Low stakes."]);
        assert_eq!(cc.consultation_depth, ConsultationDepth::Standard);
    }

    #[test]
    fn optional_members_may_be_absent() {
        let text = with(|v| {
            let c = v["concerns"][0].as_object_mut().unwrap();
            c.remove("relevant_card_field");
            c.remove("relevant_conscience_value");
        });
        let answer = parse(&text).unwrap();
        assert_eq!(answer.concerns[0].relevant_card_field, None);
        assert_eq!(answer.concerns[0].relevant_conscience_value, None);
    }

    #[test]
    fn finds_the_object_in_prose_and_fences() {
        let json = valid().to_string();
        let expected = parse(&json).unwrap();
        for text in [
            format!("Here is my analysis:\n{json}\nHope this helps!"),
            format!("```json\n{json}\n```"),
            format!("Sure.\n```\n{json}\n```\nDone."),
            format!(
                "  ```json\n{}\n  ```",
                serde_json::to_string_pretty(&valid()).unwrap()
            ),
        ] {
            assert_eq!(parse(&text).unwrap(), expected, "{text}");
        }
        assert_eq!(parse("no json here"), Err(AnswerError::NoJson));
        assert_eq!(parse("} backwards {"), Err(AnswerError::NoJson));
        assert_eq!(parse(""), Err(AnswerError::NoJson));
        assert!(matches!(
            parse("{\"verdict\": clear}"),
            Err(AnswerError::Syntax(_))
        ));
    }

    #[test]
    fn removes_trailing_commas_outside_strings_only() {
        assert_eq!(
            remove_trailing_commas("{\"a\": [1, 2, ], }"),
            "{\"a\": [1, 2 ] }"
        );
        assert_eq!(remove_trailing_commas("[1,\n  ]"), "[1\n  ]");
        // Inside strings, ", }" and ",]" are text (escaped quotes do not end the string).
        assert_eq!(
            remove_trailing_commas(r#"{"a": "x, }", "b": "y\", ]",}"#),
            r#"{"a": "x, }", "b": "y\", ]"}"#
        );
        assert_eq!(
            remove_trailing_commas(r#"{"a": "back\\", "b": 1,}"#),
            r#"{"a": "back\\", "b": 1}"#
        );
        let text = r#"{
            "verdict": "clear",
            "concerns": [],
            "reasoning_summary": "Lists a, b, ]and, } stuff,",
            "conscience_context": {
                "values_checked": ["a", "b",],
                "conflicts": [],
                "supports": [],
                "considerations": ["x, ]",],
                "consultation_depth": "surface",
            },
        }"#;
        let answer = parse(text).unwrap();
        assert_eq!(answer.reasoning_summary, "Lists a, b, ]and, } stuff,");
        assert_eq!(answer.conscience_context.values_checked, ["a", "b"]);
        assert_eq!(answer.conscience_context.considerations, ["x, ]"]);
        assert_eq!(
            answer.conscience_context.consultation_depth,
            ConsultationDepth::Surface
        );
    }

    #[test]
    fn evidence_is_cut_to_200_characters() {
        let long = "é".repeat(250);
        let answer = parse(&with(|v| v["concerns"][0]["evidence"] = json!(long))).unwrap();
        assert_eq!(answer.concerns[0].evidence, "é".repeat(200));
    }

    #[test]
    fn every_violation_names_its_field() {
        use Problem::*;
        let cases: Vec<(String, &str, Problem)> = vec![
            (
                with(|v| {
                    v.as_object_mut().unwrap().remove("verdict");
                }),
                "verdict",
                Missing,
            ),
            (
                with(|v| v["verdict"] = json!("fine")),
                "verdict",
                NotAllowed {
                    value: "fine".into(),
                    allowed: VERDICTS,
                },
            ),
            (
                with(|v| v["verdict"] = json!(1)),
                "verdict",
                WrongType {
                    expected: "a string",
                },
            ),
            (
                with(|v| {
                    v.as_object_mut().unwrap().remove("concerns");
                }),
                "concerns",
                Missing,
            ),
            (
                with(|v| v["concerns"] = json!({})),
                "concerns",
                WrongType {
                    expected: "an array",
                },
            ),
            (
                with(|v| v["concerns"] = json!(["text"])),
                "concerns[0]",
                WrongType {
                    expected: "an object",
                },
            ),
            (
                with(|v| v["concerns"][0]["category"] = json!("general")),
                "concerns[0].category",
                NotAllowed {
                    value: "general".into(),
                    allowed: CATEGORIES,
                },
            ),
            (
                with(|v| {
                    v["concerns"][0].as_object_mut().unwrap().remove("category");
                }),
                "concerns[0].category",
                Missing,
            ),
            (
                with(|v| v["concerns"][0]["severity"] = json!("HIGH")),
                "concerns[0].severity",
                NotAllowed {
                    value: "HIGH".into(),
                    allowed: SEVERITIES,
                },
            ),
            (
                with(|v| v["concerns"][0]["description"] = json!(null)),
                "concerns[0].description",
                WrongType {
                    expected: "a string",
                },
            ),
            (
                with(|v| {
                    v["concerns"][0].as_object_mut().unwrap().remove("evidence");
                }),
                "concerns[0].evidence",
                Missing,
            ),
            (
                with(|v| v["concerns"][0]["evidence"] = json!(["quote"])),
                "concerns[0].evidence",
                WrongType {
                    expected: "a string",
                },
            ),
            (
                with(|v| v["concerns"][0]["relevant_card_field"] = json!(3)),
                "concerns[0].relevant_card_field",
                WrongType {
                    expected: "a string or null",
                },
            ),
            (
                with(|v| v["concerns"][0]["relevant_conscience_value"] = json!(false)),
                "concerns[0].relevant_conscience_value",
                WrongType {
                    expected: "a string or null",
                },
            ),
            (
                with(|v| v["reasoning_summary"] = json!({})),
                "reasoning_summary",
                WrongType {
                    expected: "a string",
                },
            ),
            (
                with(|v| {
                    v.as_object_mut().unwrap().remove("conscience_context");
                }),
                "conscience_context",
                Missing,
            ),
            (
                with(|v| v["conscience_context"] = json!([])),
                "conscience_context",
                WrongType {
                    expected: "an object",
                },
            ),
            (
                with(|v| {
                    v["conscience_context"]
                        .as_object_mut()
                        .unwrap()
                        .remove("values_checked");
                }),
                "conscience_context.values_checked",
                Missing,
            ),
            (
                with(|v| v["conscience_context"]["conflicts"] = json!("none")),
                "conscience_context.conflicts",
                WrongType {
                    expected: "an array of strings",
                },
            ),
            (
                with(|v| v["conscience_context"]["supports"] = json!(["a", 2])),
                "conscience_context.supports[1]",
                WrongType {
                    expected: "a string",
                },
            ),
            (
                with(|v| {
                    v["conscience_context"]
                        .as_object_mut()
                        .unwrap()
                        .remove("considerations");
                }),
                "conscience_context.considerations",
                Missing,
            ),
            (
                with(|v| v["conscience_context"]["consultation_depth"] = json!("thorough")),
                "conscience_context.consultation_depth",
                NotAllowed {
                    value: "thorough".into(),
                    allowed: DEPTHS,
                },
            ),
        ];
        for (text, field, problem) in cases {
            assert_eq!(field_of(&text), (field.to_owned(), problem), "{text}");
        }
        // The second concern's errors name index 1.
        let text = with(|v| {
            let first = v["concerns"][0].clone();
            let mut second = first.clone();
            second["severity"] = json!("severe");
            v["concerns"] = json!([first, second]);
        });
        assert_eq!(field_of(&text).0, "concerns[1].severity");
        assert_eq!(validate(&json!([1])), Err(AnswerError::NotObject));
        assert_eq!(field_of("[{}]"), ("verdict".to_owned(), Missing));
    }

    #[test]
    fn error_messages_are_readable() {
        let err = parse(&with(|v| v["verdict"] = json!("x".repeat(60)))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "field `verdict` is `{}…`, expected one of: clear, review_needed, boundary_violation",
                "x".repeat(40)
            )
        );
        let err = parse(&with(|v| {
            v.as_object_mut().unwrap().remove("reasoning_summary");
        }))
        .unwrap_err();
        assert_eq!(err.to_string(), "field `reasoning_summary` is missing");
        assert_eq!(
            parse("{} {").unwrap_err().to_string(),
            "field `verdict` is missing"
        );
    }
}
