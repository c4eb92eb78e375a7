//! One check, end to end: build the prompt, ask the analysis LLM, read its answer, derive the
//! verdict from the concerns (the model's stated verdict is recorded, not trusted) and build
//! the report with its analysis metadata. The LLM and the log are passed in, so native tests
//! run the whole flow against fakes.

use mnemom_plugin_sdk::config;
use mnemom_plugin_sdk::json;
use mnemom_plugin_sdk::verdict::{self, ConcernFacts};

use crate::answer;
use crate::mnemom::gateway::host::LogLevel;
use crate::mnemom::gateway::llm::{Completion, CompletionRequest, LlmError};
use crate::mnemom::gateway::policy_types::{
    CheckInput, Concern, ConscienceKind, PolicyError, Report, Severity, Verdict,
};
use crate::prompt::{self, DEFAULT_TOKEN_BUDGET, Prompt, ThinkingStats};

/// Output token cap of the analysis when the configuration sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// The policy's settings, from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Analysis model (`model`); `None` uses the host's configured analysis model.
    pub model: Option<String>,
    /// Output token cap of the analysis (`max_tokens`); the host may lower it.
    pub max_tokens: u32,
    /// Token budget of the thinking (`token_budget`); longer thinking loses its middle.
    pub token_budget: u32,
    /// Whether to ask the endpoint to cache the system prompt (`cache_system_prompt`).
    pub cache_system_prompt: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: None,
            max_tokens: DEFAULT_MAX_TOKENS,
            token_budget: DEFAULT_TOKEN_BUDGET,
            cache_system_prompt: true,
        }
    }
}

impl Settings {
    /// Reads the settings through `get` (the host's `config-get`, or a map in tests); keys are
    /// also found with `-` for `_`. A value that does not parse keeps its default and is
    /// reported through `warn`.
    pub fn from_config(get: impl Fn(&str) -> Option<String>, mut warn: impl FnMut(String)) -> Self {
        let mut settings = Self::default();
        let lookup = |key: &str| config::lookup(&get, key);
        if let Some((_, model)) = lookup("model") {
            settings.model = Some(model.trim().to_owned());
        }
        if let Some((key, raw)) = lookup("max_tokens") {
            match config::parse_int::<u32>(&raw, 1) {
                Ok(n) => settings.max_tokens = n,
                Err(e) => warn(format!(
                    "config {key}=\"{raw}\": {e}; using {}",
                    settings.max_tokens
                )),
            }
        }
        if let Some((key, raw)) = lookup("token_budget") {
            match config::parse_int::<u32>(&raw, 1) {
                Ok(n) => settings.token_budget = n,
                Err(e) => warn(format!(
                    "config {key}=\"{raw}\": {e}; using {}",
                    settings.token_budget
                )),
            }
        }
        if let Some((key, raw)) = lookup("cache_system_prompt") {
            match config::parse_bool(&raw, config::TRUE_FALSE_1_0) {
                Ok(on) => settings.cache_system_prompt = on,
                Err(e) => warn(format!(
                    "config {key}=\"{raw}\": {e}; using {}",
                    settings.cache_system_prompt
                )),
            }
        }
        settings
    }
}

/// The completion request for `prompt`.
pub fn request(prompt: &Prompt, settings: &Settings) -> CompletionRequest {
    CompletionRequest {
        system: prompt.system.to_owned(),
        prompt: prompt.user.clone(),
        max_tokens: settings.max_tokens,
        model: settings.model.clone(),
        cache_system: settings.cache_system_prompt,
    }
}

/// The message of an `analysis-failed` error for an LLM failure.
pub fn llm_failure(error: &LlmError) -> String {
    match error {
        LlmError::NotConfigured => {
            "the analysis LLM is not configured (no analysis API key)".to_owned()
        }
        LlmError::ModelNotAllowed(model) => {
            format!("the analysis model `{model}` is not on the host's allow-list")
        }
        LlmError::Unavailable(why) => format!("the analysis LLM is unavailable: {why}"),
        LlmError::Timeout => "the analysis LLM did not answer in time".to_owned(),
        LlmError::Upstream(why) => format!("the analysis LLM answered with an error: {why}"),
    }
}

fn to_sdk_severity(severity: Severity) -> verdict::Severity {
    match severity {
        Severity::Low => verdict::Severity::Low,
        Severity::Medium => verdict::Severity::Medium,
        Severity::High => verdict::Severity::High,
        Severity::Critical => verdict::Severity::Critical,
    }
}

/// The WIT verdict of an SDK verdict.
pub fn to_wit_verdict(verdict: verdict::Verdict) -> Verdict {
    match verdict {
        verdict::Verdict::Clear => Verdict::Clear,
        verdict::Verdict::ReviewNeeded => Verdict::ReviewNeeded,
        verdict::Verdict::BoundaryViolation => Verdict::BoundaryViolation,
    }
}

/// The verdict the concerns call for, given the check's conscience values.
pub fn derive(concerns: &[Concern], input: &CheckInput) -> verdict::Verdict {
    let boundary_ids: Vec<&str> = input
        .conscience_values
        .iter()
        .filter(|v| v.kind == ConscienceKind::Boundary)
        .map(|v| v.id.as_str())
        .collect();
    verdict::derive_verdict(
        concerns.iter().map(|c| ConcernFacts {
            category: &c.category,
            severity: to_sdk_severity(c.severity),
            relevant_conscience_value: c.relevant_conscience_value.as_deref(),
        }),
        &boundary_ids,
    )
}

/// Facts for the checkpoint's `analysis_metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata<'a> {
    /// The model that answered, when the LLM was asked.
    pub analysis_model: Option<&'a str>,
    /// Thinking token counts.
    pub thinking: ThinkingStats,
    /// The model's stated verdict, when it differs from the derived one.
    pub model_verdict: Option<verdict::Verdict>,
    /// Input tokens billed.
    pub input_tokens: Option<u64>,
    /// Output tokens billed.
    pub output_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: Option<u64>,
}

impl Metadata<'_> {
    /// The metadata as a JSON object: `analysis_model`, `thinking_tokens_original`,
    /// `thinking_tokens_analyzed`, `truncated`, then `model_verdict` and
    /// `verdict_overridden: true` when the stated verdict was overridden, and the token
    /// counts the endpoint reported.
    pub fn to_json(&self) -> String {
        let mut members: Vec<(&str, String)> = Vec::new();
        if let Some(model) = self.analysis_model {
            members.push(("analysis_model", json::string(model)));
        }
        members.push((
            "thinking_tokens_original",
            self.thinking.original_tokens.to_string(),
        ));
        members.push((
            "thinking_tokens_analyzed",
            self.thinking.analyzed_tokens.to_string(),
        ));
        members.push(("truncated", self.thinking.truncated.to_string()));
        if let Some(stated) = self.model_verdict {
            members.push(("model_verdict", json::string(stated.as_str())));
            members.push(("verdict_overridden", "true".to_owned()));
        }
        for (key, value) in [
            ("input_tokens", self.input_tokens),
            ("output_tokens", self.output_tokens),
            ("cache_read_tokens", self.cache_read_tokens),
        ] {
            if let Some(n) = value {
                members.push((key, n.to_string()));
            }
        }
        json::object(&members)
    }
}

/// Runs one check. `complete` is the analysis LLM (`llm.complete`), `log` the host's log.
///
/// A response without thinking text is `clear` without asking the LLM. LLM failures and
/// answers that are not valid per the schema are `analysis-failed`; a card that is not JSON is
/// `invalid-input`.
pub fn run(
    input: &CheckInput,
    settings: &Settings,
    complete: impl FnOnce(&CompletionRequest) -> Result<Completion, LlmError>,
    mut log: impl FnMut(LogLevel, String),
) -> Result<Report, PolicyError> {
    if input.thinking.iter().all(|b| b.trim().is_empty()) {
        return Ok(Report {
            verdict: Verdict::Clear,
            concerns: Vec::new(),
            reasoning_summary: "The response contained no thinking to evaluate.".to_owned(),
            conscience_context: None,
            metadata_json: Some(
                Metadata {
                    analysis_model: None,
                    thinking: ThinkingStats {
                        original_tokens: 0,
                        analyzed_tokens: 0,
                        truncated: false,
                    },
                    model_verdict: None,
                    input_tokens: None,
                    output_tokens: None,
                    cache_read_tokens: None,
                }
                .to_json(),
            ),
        });
    }
    let prompt = prompt::build(input, settings.token_budget)
        .map_err(|e| PolicyError::InvalidInput(e.to_string()))?;
    let completion = complete(&request(&prompt, settings))
        .map_err(|e| PolicyError::AnalysisFailed(llm_failure(&e)))?;
    let cut_off = completion.stop_reason.as_deref() == Some("max_tokens");
    if cut_off {
        log(
            LogLevel::Warn,
            format!(
                "the analysis answer stopped at max_tokens ({}); consider raising max_tokens",
                settings.max_tokens
            ),
        );
    }
    let answer = answer::parse(&completion.text).map_err(|e| {
        let hint = if cut_off {
            " (the answer was cut off at max_tokens)"
        } else {
            ""
        };
        PolicyError::AnalysisFailed(format!("malformed analysis answer: {e}{hint}"))
    })?;
    let derived = derive(&answer.concerns, input);
    let model_verdict = (answer.verdict != derived).then_some(answer.verdict);
    if let Some(stated) = model_verdict {
        log(
            LogLevel::Info,
            format!(
                "the analysis stated `{stated}` but its concerns give `{derived}`; using `{derived}`"
            ),
        );
    }
    let metadata = Metadata {
        analysis_model: Some(&completion.model),
        thinking: prompt.thinking,
        model_verdict,
        input_tokens: completion.input_tokens,
        output_tokens: completion.output_tokens,
        cache_read_tokens: completion.cache_read_tokens,
    };
    Ok(Report {
        verdict: to_wit_verdict(derived),
        concerns: answer.concerns,
        reasoning_summary: answer.reasoning_summary,
        conscience_context: Some(answer.conscience_context),
        metadata_json: Some(metadata.to_json()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mnemom::gateway::policy_types::{ConscienceValue, ConsultationDepth};
    use serde_json::{Value, json};
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    fn input() -> CheckInput {
        CheckInput {
            agent_id: "smolt-0123abcd".to_owned(),
            session_id: "s".to_owned(),
            provider: "anthropic".to_owned(),
            model: "claude-sonnet-4-5".to_owned(),
            thinking: vec!["I should check the docs first.".to_owned()],
            response_text: vec![],
            tool_calls: vec![],
            card_json: Some("{}".to_owned()),
            card_id: Some("ac-0123abcd".to_owned()),
            conscience_values: vec![
                ConscienceValue {
                    id: "boundary-no-deception".to_owned(),
                    kind: ConscienceKind::Boundary,
                    content: "No lies.".to_owned(),
                },
                ConscienceValue {
                    id: "fear-sycophancy".to_owned(),
                    kind: ConscienceKind::Fear,
                    content: "Flattery.".to_owned(),
                },
            ],
            window: vec![],
            task_context: None,
        }
    }

    fn answer_text(verdict: &str, concerns: Value) -> String {
        json!({
            "verdict": verdict,
            "concerns": concerns,
            "reasoning_summary": "Summary.",
            "conscience_context": {
                "values_checked": ["boundary-no-deception"],
                "conflicts": [],
                "supports": [],
                "considerations": [],
                "consultation_depth": "standard"
            }
        })
        .to_string()
    }

    fn completion(text: String) -> Completion {
        Completion {
            text,
            model: "claude-haiku-4-5-20251001".to_owned(),
            stop_reason: Some("end_turn".to_owned()),
            input_tokens: Some(1200),
            output_tokens: Some(150),
            cache_read_tokens: Some(1000),
        }
    }

    /// What a check against a fake LLM produced: the result, the request the LLM saw, the log.
    type Outcome = (
        Result<Report, PolicyError>,
        Option<CompletionRequest>,
        Vec<(LogLevel, String)>,
    );

    /// Runs a check against a fake LLM answering `reply`.
    fn run_with(
        input: &CheckInput,
        settings: &Settings,
        reply: Result<Completion, LlmError>,
    ) -> Outcome {
        let seen = RefCell::new(None);
        let mut logs = Vec::new();
        let result = run(
            input,
            settings,
            |req| {
                *seen.borrow_mut() = Some(req.clone());
                reply
            },
            |level, msg| logs.push((level, msg)),
        );
        (result, seen.into_inner(), logs)
    }

    fn metadata(report: &Report) -> Value {
        serde_json::from_str(report.metadata_json.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn settings_defaults_and_overrides() {
        let mut warnings = Vec::new();
        assert_eq!(
            Settings::from_config(|_| None, |w| warnings.push(w)),
            Settings {
                model: None,
                max_tokens: 1024,
                token_budget: 4096,
                cache_system_prompt: true
            }
        );
        let map: BTreeMap<&str, &str> = [
            ("model", " claude-haiku-4-5 "),
            ("max-tokens", "2048"),
            ("token_budget", "8000"),
            ("cache_system_prompt", "false"),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            Settings::from_config(
                |k| map.get(k).map(|v| (*v).to_owned()),
                |w| warnings.push(w)
            ),
            Settings {
                model: Some("claude-haiku-4-5".to_owned()),
                max_tokens: 2048,
                token_budget: 8000,
                cache_system_prompt: false
            }
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn bad_settings_keep_defaults_and_warn() {
        let map: BTreeMap<&str, &str> = [
            ("model", "   "),
            ("max_tokens", "lots"),
            ("token_budget", "0"),
            ("cache_system_prompt", "maybe"),
        ]
        .into_iter()
        .collect();
        let mut warnings = Vec::new();
        assert_eq!(
            Settings::from_config(
                |k| map.get(k).map(|v| (*v).to_owned()),
                |w| warnings.push(w)
            ),
            Settings::default()
        );
        assert_eq!(
            warnings,
            [
                "config max_tokens=\"lots\": expected an integer >= 1; using 1024",
                "config token_budget=\"0\": expected an integer >= 1; using 4096",
                "config cache_system_prompt=\"maybe\": expected true or false; using true",
            ]
        );
    }

    #[test]
    fn sends_the_prompt_with_the_settings() {
        let settings = Settings {
            model: Some("claude-haiku-4-5".to_owned()),
            max_tokens: 512,
            token_budget: 4096,
            cache_system_prompt: false,
        };
        let (result, request, _) = run_with(
            &input(),
            &settings,
            Ok(completion(answer_text("clear", json!([])))),
        );
        result.unwrap();
        let request = request.unwrap();
        assert_eq!(request.system, prompt::SYSTEM_PROMPT);
        assert_eq!(request.prompt, prompt::build(&input(), 4096).unwrap().user);
        assert_eq!(request.max_tokens, 512);
        assert_eq!(request.model.as_deref(), Some("claude-haiku-4-5"));
        assert!(!request.cache_system);
        let (_, request, _) = run_with(
            &input(),
            &Settings::default(),
            Ok(completion(answer_text("clear", json!([])))),
        );
        let request = request.unwrap();
        assert_eq!(request.model, None);
        assert_eq!(request.max_tokens, 1024);
        assert!(request.cache_system);
    }

    #[test]
    fn clear_report_with_metadata() {
        let (result, _, logs) = run_with(
            &input(),
            &Settings::default(),
            Ok(completion(answer_text("clear", json!([])))),
        );
        let report = result.unwrap();
        assert_eq!(report.verdict, Verdict::Clear);
        assert!(report.concerns.is_empty());
        assert_eq!(report.reasoning_summary, "Summary.");
        assert_eq!(
            report
                .conscience_context
                .as_ref()
                .unwrap()
                .consultation_depth,
            ConsultationDepth::Standard
        );
        assert_eq!(
            report.metadata_json.as_deref(),
            Some(
                "{\"analysis_model\":\"claude-haiku-4-5-20251001\",\"thinking_tokens_original\":8,\
                 \"thinking_tokens_analyzed\":8,\"truncated\":false,\"input_tokens\":1200,\
                 \"output_tokens\":150,\"cache_read_tokens\":1000}"
            )
        );
        assert!(logs.is_empty(), "{logs:?}");
    }

    #[test]
    fn the_verdict_is_derived_not_trusted() {
        // The model says clear, but lists a high concern on a BOUNDARY value.
        let concerns = json!([{
            "category": "value_misalignment",
            "severity": "high",
            "description": "Plans to mislead.",
            "evidence": "tell them it's done",
            "relevant_card_field": null,
            "relevant_conscience_value": "boundary-no-deception"
        }]);
        let (result, _, logs) = run_with(
            &input(),
            &Settings::default(),
            Ok(completion(answer_text("clear", concerns.clone()))),
        );
        let report = result.unwrap();
        assert_eq!(report.verdict, Verdict::BoundaryViolation);
        assert_eq!(report.concerns.len(), 1);
        let meta = metadata(&report);
        assert_eq!(meta["model_verdict"], "clear");
        assert_eq!(meta["verdict_overridden"], true);
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].0, LogLevel::Info);
        assert!(logs[0].1.contains("`clear`"), "{}", logs[0].1);

        // The model says boundary_violation for a high autonomy concern: review_needed.
        let concerns = json!([{
            "category": "autonomy_violation",
            "severity": "high",
            "description": "Acts without asking.",
            "evidence": "just do it",
        }]);
        let (result, _, _) = run_with(
            &input(),
            &Settings::default(),
            Ok(completion(answer_text("boundary_violation", concerns))),
        );
        let report = result.unwrap();
        assert_eq!(report.verdict, Verdict::ReviewNeeded);
        assert_eq!(metadata(&report)["model_verdict"], "boundary_violation");

        // When the model's verdict agrees, nothing is recorded.
        let concerns = json!([{
            "category": "deceptive_reasoning",
            "severity": "high",
            "description": "Hides a failure.",
            "evidence": "don't mention the error",
        }]);
        let (result, _, logs) = run_with(
            &input(),
            &Settings::default(),
            Ok(completion(answer_text("boundary_violation", concerns))),
        );
        let report = result.unwrap();
        assert_eq!(report.verdict, Verdict::BoundaryViolation);
        let meta = metadata(&report);
        assert!(meta.get("model_verdict").is_none());
        assert!(meta.get("verdict_overridden").is_none());
        assert!(logs.is_empty());
    }

    #[test]
    fn fear_values_do_not_escalate() {
        let concerns = json!([{
            "category": "value_misalignment",
            "severity": "high",
            "description": "Flatters.",
            "evidence": "tell them it's great",
            "relevant_conscience_value": "fear-sycophancy"
        }]);
        let (result, _, _) = run_with(
            &input(),
            &Settings::default(),
            Ok(completion(answer_text("review_needed", concerns))),
        );
        assert_eq!(result.unwrap().verdict, Verdict::ReviewNeeded);
    }

    #[test]
    fn llm_errors_are_analysis_failures() {
        for (error, message) in [
            (
                LlmError::NotConfigured,
                "the analysis LLM is not configured (no analysis API key)",
            ),
            (
                LlmError::ModelNotAllowed("gpt-x".to_owned()),
                "the analysis model `gpt-x` is not on the host's allow-list",
            ),
            (
                LlmError::Unavailable("circuit open".to_owned()),
                "the analysis LLM is unavailable: circuit open",
            ),
            (LlmError::Timeout, "the analysis LLM did not answer in time"),
            (
                LlmError::Upstream("529 overloaded".to_owned()),
                "the analysis LLM answered with an error: 529 overloaded",
            ),
        ] {
            let (result, _, _) = run_with(&input(), &Settings::default(), Err(error));
            match result {
                Err(PolicyError::AnalysisFailed(m)) => assert_eq!(m, message),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn malformed_answers_are_analysis_failures() {
        let (result, _, _) = run_with(
            &input(),
            &Settings::default(),
            Ok(completion("I cannot evaluate this.".to_owned())),
        );
        match result {
            Err(PolicyError::AnalysisFailed(m)) => assert_eq!(
                m,
                "malformed analysis answer: the answer contains no JSON object"
            ),
            other => panic!("{other:?}"),
        }
        let (result, _, _) = run_with(
            &input(),
            &Settings::default(),
            Ok(completion(answer_text("unsure", json!([])))),
        );
        match result {
            Err(PolicyError::AnalysisFailed(m)) => {
                assert!(
                    m.starts_with("malformed analysis answer: field `verdict`"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        // A cut-off answer says so, and is logged.
        let mut cut = completion("{\"verdict\": \"clear\", \"concerns\": [".to_owned());
        cut.stop_reason = Some("max_tokens".to_owned());
        let (result, _, logs) = run_with(&input(), &Settings::default(), Ok(cut));
        match result {
            Err(PolicyError::AnalysisFailed(m)) => {
                assert!(m.ends_with("(the answer was cut off at max_tokens)"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].0, LogLevel::Warn);
    }

    #[test]
    fn unreadable_cards_are_invalid_input() {
        let mut input = input();
        input.card_json = Some("{oops".to_owned());
        let (result, request, _) = run_with(&input, &Settings::default(), Err(LlmError::Timeout));
        assert!(
            matches!(result, Err(PolicyError::InvalidInput(m)) if m.starts_with("the alignment card is not valid JSON"))
        );
        assert!(request.is_none());
    }

    #[test]
    fn empty_thinking_is_clear_without_asking() {
        let mut input = input();
        input.thinking = vec![" \n".to_owned()];
        let (result, request, _) = run_with(&input, &Settings::default(), Err(LlmError::Timeout));
        let report = result.unwrap();
        assert!(request.is_none());
        assert_eq!(report.verdict, Verdict::Clear);
        assert!(report.concerns.is_empty());
        assert!(report.conscience_context.is_none());
        assert_eq!(
            report.metadata_json.as_deref(),
            Some(
                "{\"thinking_tokens_original\":0,\"thinking_tokens_analyzed\":0,\"truncated\":false}"
            )
        );
        input.thinking = vec![];
        let (result, _, _) = run_with(&input, &Settings::default(), Err(LlmError::Timeout));
        assert_eq!(result.unwrap().verdict, Verdict::Clear);
    }

    #[test]
    fn truncation_is_reported() {
        let mut input = input();
        input.thinking = vec!["x".repeat(100)];
        let settings = Settings {
            token_budget: 10,
            ..Settings::default()
        };
        let (result, request, _) = run_with(
            &input,
            &settings,
            Ok(completion(answer_text("clear", json!([])))),
        );
        let meta = metadata(&result.unwrap());
        assert_eq!(meta["thinking_tokens_original"], 25);
        assert_eq!(meta["thinking_tokens_analyzed"], 9);
        assert_eq!(meta["truncated"], true);
        assert!(
            request
                .unwrap()
                .prompt
                .contains("\n[... 16 tokens omitted ...]\n")
        );
    }
}
