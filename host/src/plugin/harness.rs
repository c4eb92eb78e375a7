//! `mnemom-gateway plugin test`: runs a built AIP policy against a cases file — inputs,
//! scripted answers of the analysis LLM, expected reports — in the gateway's own runtime (same
//! limits, imports and validation as in production), without a gateway or a network. The policy
//! author's test loop; also usable from Rust tests through [`run_cases`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::adapter::Origin;
use super::bindings::wit_types::ToolCall;
use super::engine::{PluginEngine, sha256_hex};
use super::manifest::{FailureMode, Limits, Manifest, World};
use super::policy::{
    CheckInput, Completion, CompletionRequest, ConscienceKind, ConscienceValue, LlmBackend,
    LlmError, LlmFuture, PolicyPlugin, PolicyServices, Report, Verdict, WindowEntry, severity_str,
    verdict_str,
};
use crate::cache::Cache;
use crate::metrics::Metrics;

/// Why the harness could not run at all (as opposed to a failing case).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The cases file is not valid.
    #[error("cases file: {0}")]
    Cases(String),
    /// The manifest is not valid.
    #[error("manifest: {0}")]
    Manifest(String),
    /// The component is not a policy this gateway would load.
    #[error("the component cannot be loaded as a policy: {0}")]
    Load(String),
}

/// A cases file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesFile {
    /// Config entries for the policy (override the manifest's `[config]`).
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Shown in the output.
    pub name: String,
    /// The check input (every field optional).
    #[serde(default)]
    pub input: InputSpec,
    /// What `llm.complete` answers, in order (a call beyond the list fails with `upstream`).
    #[serde(default)]
    pub llm: Vec<String>,
    /// What the report must look like.
    #[serde(default)]
    pub expect: Expect,
}

/// A check input with defaults for everything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    agent_id: Option<String>,
    session_id: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    #[serde(default)]
    thinking: Vec<String>,
    #[serde(default)]
    response_text: Vec<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallSpec>,
    card_json: Option<serde_json::Value>,
    card_id: Option<String>,
    conscience_values: Option<Vec<ConscienceSpec>>,
    #[serde(default)]
    window: Vec<WindowSpec>,
    task_context: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolCallSpec {
    id: Option<String>,
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConscienceSpec {
    id: String,
    #[serde(alias = "type")]
    kind: String,
    content: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowSpec {
    checkpoint_id: String,
    verdict: String,
    #[serde(default)]
    reasoning_summary: String,
    #[serde(default)]
    concern_categories: Vec<String>,
    #[serde(default)]
    timestamp_ms: u64,
}

/// Expectations (every field optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    verdict: Option<String>,
    categories: Option<Vec<String>>,
    min_concerns: Option<usize>,
    max_concerns: Option<usize>,
    #[serde(default)]
    error: bool,
    summary_contains: Option<String>,
}

/// The outcome of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case name.
    pub name: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// What did not hold.
    pub failures: Vec<String>,
    /// The verdict, when the check produced a report.
    pub verdict: Option<String>,
    /// Concern categories of the report.
    pub categories: Vec<String>,
    /// The reasoning summary.
    pub reasoning_summary: Option<String>,
    /// The error, when the check failed.
    pub error: Option<String>,
    /// Wall-clock time of the check (instantiation included), in milliseconds.
    pub duration_ms: f64,
    /// `llm.complete` calls made.
    pub llm_calls: usize,
}

/// Scripted `llm.complete` answers for one case.
#[derive(Debug, Default)]
struct Scripted {
    answers: Mutex<VecDeque<String>>,
    calls: Mutex<usize>,
}

impl Scripted {
    fn load(&self, answers: &[String]) {
        *self.answers.lock().unwrap_or_else(PoisonError::into_inner) =
            answers.iter().cloned().collect();
        *self.calls.lock().unwrap_or_else(PoisonError::into_inner) = 0;
    }

    fn calls(&self) -> usize {
        *self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone)]
struct ScriptedLlm(Arc<Scripted>);

impl LlmBackend for ScriptedLlm {
    fn complete(&self, request: CompletionRequest) -> LlmFuture {
        *self.0.calls.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        let next = self
            .0
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        Box::pin(async move {
            match next {
                Some(text) => Ok(Completion {
                    output_tokens: Some(text.len().div_ceil(4) as u64),
                    text,
                    model: request
                        .model
                        .unwrap_or_else(|| "claude-haiku-4-5-20251001".to_owned()),
                    stop_reason: Some("end_turn".to_owned()),
                    input_tokens: Some(
                        (request.system.len() + request.prompt.len()).div_ceil(4) as u64
                    ),
                    cache_read_tokens: None,
                }),
                None => Err(LlmError::Upstream(
                    "the cases file scripts no further llm answer for this case".to_owned(),
                )),
            }
        })
    }
}

/// Parses a cases file.
pub fn parse_cases(text: &str) -> Result<CasesFile, HarnessError> {
    let file: CasesFile =
        serde_json::from_str(text).map_err(|e| HarnessError::Cases(e.to_string()))?;
    if file.cases.is_empty() {
        return Err(HarnessError::Cases("`cases` is empty".into()));
    }
    Ok(file)
}

/// Runs every case of `cases` against the policy `wasm` (with `manifest`, or a default one
/// whose world is read from the component's imports).
pub async fn run_cases(
    wasm: &[u8],
    manifest: Option<&str>,
    cases: &CasesFile,
) -> Result<Vec<CaseResult>, HarnessError> {
    let sha256 = sha256_hex(wasm);
    let engine = PluginEngine::new(None).map_err(|e| HarnessError::Load(e.to_string()))?;
    let mut manifest = match manifest {
        Some(text) => Manifest::parse(text).map_err(|e| HarnessError::Manifest(e.to_string()))?,
        None => default_manifest(&engine, wasm, &sha256)?,
    };
    if !manifest.world.is_policy() {
        return Err(HarnessError::Manifest(format!(
            "world `{}` is not an AIP policy world",
            manifest.world.as_str()
        )));
    }
    for (key, value) in &cases.config {
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        manifest.config.insert(key.clone(), text);
    }
    let metrics = Metrics::new().map_err(|e| HarnessError::Load(e.to_string()))?;
    let scripted = Arc::new(Scripted::default());
    let services = PolicyServices {
        llm: Some(Arc::new(ScriptedLlm(scripted.clone()))),
        kv: Some(Cache::memory(&metrics)),
    };
    let policy = PolicyPlugin::load(
        &engine,
        manifest,
        wasm,
        sha256,
        Origin::Embedded,
        services,
        &metrics,
    )
    .await
    .map_err(|e| HarnessError::Load(e.to_string()))?;
    let mut results = Vec::with_capacity(cases.cases.len());
    for case in &cases.cases {
        scripted.load(&case.llm);
        let input = check_input(&case.input).map_err(HarnessError::Cases)?;
        let started = Instant::now();
        let outcome = policy.check(&input).await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        results.push(judge(case, outcome, duration_ms, scripted.calls()));
    }
    Ok(results)
}

fn default_manifest(
    engine: &PluginEngine,
    wasm: &[u8],
    sha256: &str,
) -> Result<Manifest, HarnessError> {
    let component = engine
        .compile(wasm, sha256)
        .map_err(|e| HarnessError::Load(e.to_string()))?;
    let uses_io = component
        .component_type()
        .imports(engine.engine())
        .any(|(name, _)| {
            name.starts_with("mnemom:gateway/llm@") || name.starts_with("mnemom:gateway/kv@")
        });
    Ok(Manifest {
        name: "policy-under-test".into(),
        world: if uses_io {
            World::AipPolicy
        } else {
            World::AipPolicyPure
        },
        wasm: "policy-under-test.wasm".into(),
        sha256: Some(sha256.to_owned()),
        disabled: false,
        upstream: None,
        failure_mode: FailureMode::FailOpen,
        limits: Limits {
            timeout: std::time::Duration::from_millis(1000),
            ..Limits::default()
        },
        config: BTreeMap::new(),
    })
}

fn check_input(spec: &InputSpec) -> Result<CheckInput, String> {
    let conscience_values = match &spec.conscience_values {
        Some(values) => values
            .iter()
            .map(|v| {
                Ok(ConscienceValue {
                    id: v.id.clone(),
                    kind: match v.kind.to_ascii_lowercase().as_str() {
                        "boundary" => ConscienceKind::Boundary,
                        "fear" => ConscienceKind::Fear,
                        "commitment" => ConscienceKind::Commitment,
                        "belief" => ConscienceKind::Belief,
                        "hope" => ConscienceKind::Hope,
                        other => return Err(format!("unknown conscience kind `{other}`")),
                    },
                    content: v.content.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
        None => crate::aip::inputs::conscience_values(None),
    };
    let window = spec
        .window
        .iter()
        .map(|w| {
            Ok(WindowEntry {
                checkpoint_id: w.checkpoint_id.clone(),
                verdict: parse_verdict(&w.verdict)?,
                reasoning_summary: w.reasoning_summary.clone(),
                concern_categories: w.concern_categories.clone(),
                timestamp_ms: w.timestamp_ms,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(CheckInput {
        agent_id: spec.agent_id.clone().unwrap_or_else(|| "smolt-test".into()),
        session_id: spec
            .session_id
            .clone()
            .unwrap_or_else(|| "test-session".into()),
        provider: spec.provider.clone().unwrap_or_else(|| "anthropic".into()),
        model: spec.model.clone().unwrap_or_else(|| "test-model".into()),
        thinking: spec.thinking.clone(),
        response_text: spec.response_text.clone(),
        tool_calls: spec
            .tool_calls
            .iter()
            .map(|c| ToolCall {
                id: c.id.clone(),
                name: c.name.clone(),
                arguments: c.arguments.clone(),
            })
            .collect(),
        card_json: spec.card_json.as_ref().map(|c| match c {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        card_id: spec.card_id.clone(),
        conscience_values,
        window,
        task_context: spec.task_context.clone(),
    })
}

fn parse_verdict(text: &str) -> Result<Verdict, String> {
    match text {
        "clear" => Ok(Verdict::Clear),
        "review_needed" => Ok(Verdict::ReviewNeeded),
        "boundary_violation" => Ok(Verdict::BoundaryViolation),
        other => Err(format!(
            "verdict `{other}` is not clear, review_needed or boundary_violation"
        )),
    }
}

fn judge(
    case: &Case,
    outcome: Result<Report, super::policy::CheckError>,
    duration_ms: f64,
    llm_calls: usize,
) -> CaseResult {
    let expect = &case.expect;
    let mut failures = Vec::new();
    let mut result = CaseResult {
        name: case.name.clone(),
        passed: false,
        failures: Vec::new(),
        verdict: None,
        categories: Vec::new(),
        reasoning_summary: None,
        error: None,
        duration_ms,
        llm_calls,
    };
    match outcome {
        Err(e) => {
            if !expect.error {
                failures.push(format!("the check failed: {e}"));
            }
            result.error = Some(e.to_string());
        }
        Ok(report) => {
            if expect.error {
                failures.push("expected the check to fail, it returned a report".into());
            }
            let verdict = verdict_str(report.verdict);
            if let Some(want) = &expect.verdict
                && want != verdict
            {
                failures.push(format!("expected verdict {want}, got {verdict}"));
            }
            let categories: Vec<String> =
                report.concerns.iter().map(|c| c.category.clone()).collect();
            if let Some(want) = &expect.categories {
                for category in want {
                    if !categories.contains(category) {
                        failures.push(format!(
                            "expected a `{category}` concern, got [{}]",
                            categories.join(", ")
                        ));
                    }
                }
            }
            let n = report.concerns.len();
            if let Some(min) = expect.min_concerns
                && n < min
            {
                failures.push(format!("expected at least {min} concerns, got {n}"));
            }
            if let Some(max) = expect.max_concerns
                && n > max
            {
                failures.push(format!("expected at most {max} concerns, got {n}"));
            }
            if let Some(text) = &expect.summary_contains
                && !report.reasoning_summary.contains(text.as_str())
            {
                failures.push(format!("reasoning summary does not contain `{text}`"));
            }
            result.verdict = Some(verdict.to_owned());
            result.categories = report
                .concerns
                .iter()
                .map(|c| format!("{}:{}", c.category, severity_str(c.severity)))
                .collect();
            result.reasoning_summary = Some(report.reasoning_summary);
        }
    }
    result.passed = failures.is_empty();
    result.failures = failures;
    result
}

/// One line per case, then a summary line.
pub fn render(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results {
        let what = match (&r.verdict, &r.error) {
            (Some(v), _) => format!("verdict={v} concerns=[{}]", r.categories.join(", ")),
            (None, Some(e)) => format!("error: {e}"),
            (None, None) => String::new(),
        };
        out.push_str(&format!(
            "{} {}  {what}  ({:.2} ms, {} llm call{})\n",
            if r.passed { "ok  " } else { "FAIL" },
            r.name,
            r.duration_ms,
            r.llm_calls,
            if r.llm_calls == 1 { "" } else { "s" }
        ));
        for failure in &r.failures {
            out.push_str(&format!("       - {failure}\n"));
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    out.push_str(&format!(
        "{} case{}: {} passed, {failed} failed\n",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        results.len() - failed
    ));
    out
}
