//! Request preparation: recognises Chat Completions and Responses API calls, injects reasoning
//! settings for models that accept them, and places the gateway's system notes into the prompt.
//!
//! Only the fields the decision needs are decoded (borrowed, typed); edits are byte splices into
//! the caller's body, so everything else it sent reaches OpenAI unchanged. The rule that governs
//! every edit: never turn a request OpenAI would accept into one it rejects.

use crate::de::{Flag, Text, lenient_struct};
use crate::splice::{self, Edit, Member, string as json_string};
use crate::{AdapterError, RequestInfo, RequestPlan, Settings};
use mnemom_plugin_sdk::notes;

/// The two OpenAI APIs whose bodies the adapter edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/responses`.
    Responses,
}

impl Api {
    /// The API a request targets, or `None` for anything the adapter passes through untouched
    /// (other endpoints, other methods, `/v1/responses/{id}`, `/v1/responses/input_tokens`).
    /// The `/v1` prefix is optional: compatible providers are often configured with the version
    /// inside their upstream base URL.
    pub fn of(method: &str, path: &str) -> Option<Self> {
        if !method.eq_ignore_ascii_case("POST") {
            return None;
        }
        let path = path.strip_suffix('/').unwrap_or(path);
        let path = path.strip_prefix("/v1").unwrap_or(path);
        match path {
            "/chat/completions" => Some(Self::ChatCompletions),
            "/responses" => Some(Self::Responses),
            _ => None,
        }
    }
}

/// How far a model accepts reasoning settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningSupport {
    /// Not a reasoning model, or one that rejects reasoning parameters: inject nothing.
    None,
    /// A reasoning model that accepts only its default effort (gpt-5-pro: `high` only), so only
    /// a Responses summary may be requested.
    SummaryOnly,
    /// Accepts `reasoning_effort` (Chat Completions) and `reasoning.effort`/`summary` (Responses).
    Full,
}

/// Which reasoning settings `model` accepts. The families are OpenAI's reasoning models:
/// gpt-5 (including dated and `.1`/`.2` variants, minus `-chat` models, which reject reasoning
/// parameters, and the `-search` models, whose parameter support is undocumented), `o1` (the
/// full model only: `o1-mini` and `o1-preview` reject `reasoning_effort`), `o3*` and `o4-mini*`.
/// Anything else, including fine-tunes and vendor-prefixed names, gets nothing: a missed
/// injection costs some visibility, a wrong one costs the caller a 400.
pub fn reasoning_support(model: &str) -> ReasoningSupport {
    let model = model.trim().to_ascii_lowercase();
    if let Some(rest) = family(&model, "gpt-5") {
        if rest
            .split('-')
            .any(|part| part == "chat" || part == "search")
        {
            ReasoningSupport::None
        } else if rest == "-pro" || rest.starts_with("-pro-") {
            ReasoningSupport::SummaryOnly
        } else {
            ReasoningSupport::Full
        }
    } else if model == "o1"
        || model.starts_with("o1-20")
        || family(&model, "o3").is_some()
        || family(&model, "o4-mini").is_some()
    {
        ReasoningSupport::Full
    } else {
        ReasoningSupport::None
    }
}

/// Whether `model` accepts a system prompt (a `system` message, or `instructions`). The first
/// o1 releases reject both `system` and `developer` messages.
pub fn accepts_system_prompt(model: Option<&str>) -> bool {
    let Some(model) = model else { return true };
    let model = model.trim().to_ascii_lowercase();
    !(model.starts_with("o1-mini") || model.starts_with("o1-preview"))
}

/// `Some(rest)` when `model` is `prefix` itself or `prefix` followed by `-` or `.` (a variant).
fn family<'m>(model: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = model.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('-') || rest.starts_with('.')).then_some(rest)
}

lenient_struct! {
    /// The fields of a request body the adapter reads.
    struct Probe<'a> {
        model: Text<'a> = "model",
        stream: Flag = "stream",
    }
}

/// Members the adapter may edit: a body that would be edited but repeats one of them is
/// `Unsupported`, since which copy the provider would honour is unknowable.
const EDITABLE: &[&str] = &["messages", "reasoning_effort", "reasoning", "instructions"];

fn unsupported(message: impl Into<String>) -> AdapterError {
    AdapterError::Unsupported(message.into())
}

/// Prepares one request for the upstream (the `transform-request` export).
///
/// - Not a `POST` to `/v1/chat/completions` or `/v1/responses`: passed through, nothing decoded.
/// - Body not a JSON object (or, when an edit is due, repeating a member the adapter may edit):
///   `Unsupported`, and the host forwards the original bytes.
/// - Otherwise reports `stream` and `model`, injects reasoning settings per
///   [`reasoning_support`] and [`Settings`], and places `request.system_notes`.
pub fn transform(
    settings: &Settings,
    request: &RequestInfo,
    body: &[u8],
) -> Result<RequestPlan, AdapterError> {
    let Some(api) = Api::of(&request.method, &request.path) else {
        return Ok(RequestPlan {
            body: None,
            streaming: false,
            model: None,
            thinking_injected: false,
            notes_applied: 0,
        });
    };
    // Serde would also read a JSON array positionally into `Probe`: insist on an object.
    let root = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .filter(|&i| body.get(i) == Some(&b'{'))
        .map(|open| open..body.len())
        .ok_or_else(|| unsupported("request body is not a JSON object"))?;
    let probe: Probe<'_> = serde_json::from_slice(body)
        .map_err(|e| unsupported(format!("request body is not a usable JSON object: {e}")))?;
    let model = probe.model.as_str();
    let support = match model {
        Some(model) if settings.inject_reasoning => reasoning_support(model),
        _ => ReasoningSupport::None,
    };
    // The notes as one block, with how many notes it holds (`notes::join` drops blank ones).
    let notes = notes::join(&request.system_notes)
        .filter(|_| accepts_system_prompt(model))
        .map(|text| {
            let count = request
                .system_notes
                .iter()
                .filter(|n| !n.trim().is_empty())
                .count();
            (text, u32::try_from(count).unwrap_or(u32::MAX))
        });

    // Most requests need no edit: they are not scanned any further.
    let plan = if support == ReasoningSupport::None && notes.is_none() {
        Plan::default()
    } else {
        plan_edits(settings, api, support, notes, body, &root)?
    };
    let (thinking_injected, notes_applied) = (plan.thinking_injected, plan.notes_applied);
    Ok(RequestPlan {
        body: plan.render(body, &root)?,
        streaming: probe.stream.0,
        model: probe.model.owned(),
        thinking_injected,
        notes_applied,
    })
}

/// Decides the edits for a body that needs some: reasoning settings when `support` allows,
/// and the joined notes (with their count) when given.
fn plan_edits(
    settings: &Settings,
    api: Api,
    support: ReasoningSupport,
    notes: Option<(String, u32)>,
    body: &[u8],
    root: &std::ops::Range<usize>,
) -> Result<Plan, AdapterError> {
    let members = splice::members(body, root.clone())
        .ok_or_else(|| unsupported("request body is not a JSON object"))?;
    if let Some(key) = EDITABLE
        .iter()
        .find(|k| members.iter().filter(|m| m.key == **k).count() > 1)
    {
        return Err(unsupported(format!("request body repeats member {key}")));
    }
    let mut plan = Plan::default();
    if support != ReasoningSupport::None && !sets_sampling(body, &members) {
        match api {
            Api::ChatCompletions => chat_reasoning(settings, support, body, &members, &mut plan),
            Api::Responses => responses_reasoning(settings, support, body, &members, &mut plan)?,
        }
    }
    if let Some((text, count)) = notes {
        let placed = match api {
            Api::ChatCompletions => chat_notes(&text, body, &members, &mut plan),
            Api::Responses => responses_notes(&text, body, &members, &mut plan)?,
        };
        if placed {
            plan.notes_applied = count;
        }
    }
    Ok(plan)
}

/// The edits decided for one body.
#[derive(Default)]
struct Plan {
    /// Splices inside the body (nested values, replaced `null`s).
    edits: Vec<Edit>,
    /// New top-level members (`"key":value`), spliced in front of the caller's members.
    prepend: Vec<String>,
    thinking_injected: bool,
    notes_applied: u32,
}

impl Plan {
    fn add_member(&mut self, key: &str, json: String) {
        self.prepend.push(format!("{}:{json}", json_string(key)));
    }

    fn render(
        mut self,
        body: &[u8],
        root: &std::ops::Range<usize>,
    ) -> Result<Option<Vec<u8>>, AdapterError> {
        if !self.prepend.is_empty() {
            // One insertion for all new members, so the comma logic sees the caller's object.
            let edit = Edit::prepend_entry(body, root, self.prepend.join(","))
                .ok_or_else(|| AdapterError::Internal("request body is not an object".into()))?;
            self.edits.push(edit);
        }
        if self.edits.is_empty() {
            return Ok(None);
        }
        splice::apply(body, self.edits)
            .map(Some)
            .ok_or_else(|| AdapterError::Internal("overlapping request edits".into()))
    }
}

/// Whether the request sets sampling parameters. Reasoning models reject them unless reasoning
/// is off (gpt-5.1 and later default to effort `none`, where `temperature`, `top_p` and logprobs
/// are allowed), so a request carrying them keeps its own reasoning configuration.
fn sets_sampling(body: &[u8], members: &[Member<'_>]) -> bool {
    let raw = |key: &str| splice::find(members, key).and_then(|r| body.get(r));
    let set = |key: &str| raw(key).is_some_and(|v| v != b"null");
    set("temperature")
        || set("top_p")
        || raw("logprobs").is_some_and(|v| v == b"true")
        || raw("top_logprobs").is_some_and(|v| !matches!(v, b"null" | b"0"))
}

/// Chat Completions: `"reasoning_effort": <effort>` when the caller did not choose one (an
/// explicit `null` means "no preference", as absence does).
fn chat_reasoning(
    settings: &Settings,
    support: ReasoningSupport,
    body: &[u8],
    members: &[Member<'_>],
    plan: &mut Plan,
) {
    if support != ReasoningSupport::Full {
        return;
    }
    let effort = json_string(&settings.reasoning_effort);
    match splice::find(members, "reasoning_effort") {
        None => plan.add_member("reasoning_effort", effort),
        Some(range) if splice::is_null(body, &range) => {
            plan.edits.push(Edit::replace(range, effort));
        }
        Some(_) => return,
    }
    plan.thinking_injected = true;
}

/// Responses API: a `reasoning` object when absent (or `null`); a `summary` merged into the
/// caller's object when it has none, keeping the caller's effort.
fn responses_reasoning(
    settings: &Settings,
    support: ReasoningSupport,
    body: &[u8],
    members: &[Member<'_>],
    plan: &mut Plan,
) -> Result<(), AdapterError> {
    let summary = settings.reasoning_summary.as_deref();
    match splice::find(members, "reasoning") {
        None => {
            if let Some(value) = reasoning_object(settings, support) {
                plan.add_member("reasoning", value);
                plan.thinking_injected = true;
            }
        }
        Some(range) if splice::is_null(body, &range) => {
            if let Some(value) = reasoning_object(settings, support) {
                plan.edits.push(Edit::replace(range, value));
                plan.thinking_injected = true;
            }
        }
        Some(range) if splice::first_byte(body, &range) == Some(b'{') => {
            let Some(summary) = summary else {
                return Ok(());
            };
            let inner = splice::members(body, range.clone())
                .ok_or_else(|| unsupported("request member reasoning is not a JSON object"))?;
            let json = json_string(summary);
            match splice::find(&inner, "summary") {
                None => {
                    let member = format!("\"summary\":{json}");
                    if let Some(edit) = Edit::prepend_entry(body, &range, member) {
                        plan.edits.push(edit);
                        plan.thinking_injected = true;
                    }
                }
                // An explicit `null` means "no preference", as absence does.
                Some(at) if splice::is_null(body, &at) => {
                    plan.edits.push(Edit::replace(at, json));
                    plan.thinking_injected = true;
                }
                Some(_) => {}
            }
        }
        Some(_) => {}
    }
    Ok(())
}

/// `{"effort":…,"summary":…}` as far as the model and the settings allow, or `None` when that
/// would be empty.
fn reasoning_object(settings: &Settings, support: ReasoningSupport) -> Option<String> {
    let mut members = Vec::with_capacity(2);
    if support == ReasoningSupport::Full {
        members.push(format!(
            "\"effort\":{}",
            json_string(&settings.reasoning_effort)
        ));
    }
    if let Some(summary) = &settings.reasoning_summary {
        members.push(format!("\"summary\":{}", json_string(summary)));
    }
    (!members.is_empty()).then(|| format!("{{{}}}", members.join(",")))
}

/// Chat Completions: the notes become a `system` message in front of `messages`.
fn chat_notes(text: &str, body: &[u8], members: &[Member<'_>], plan: &mut Plan) -> bool {
    let Some(messages) = splice::find(members, "messages") else {
        return false;
    };
    if splice::first_byte(body, &messages) != Some(b'[') {
        return false;
    }
    let message = format!("{{\"role\":\"system\",\"content\":{}}}", json_string(text));
    match Edit::prepend_entry(body, &messages, message) {
        Some(edit) => {
            plan.edits.push(edit);
            true
        }
        None => false,
    }
}

/// Responses API: the notes go in front of `instructions`, separated by a blank line.
fn responses_notes(
    text: &str,
    body: &[u8],
    members: &[Member<'_>],
    plan: &mut Plan,
) -> Result<bool, AdapterError> {
    match splice::find(members, "instructions") {
        None => {
            plan.add_member("instructions", json_string(text));
            Ok(true)
        }
        Some(range) if splice::is_null(body, &range) => {
            plan.edits.push(Edit::replace(range, json_string(text)));
            Ok(true)
        }
        Some(range) if splice::first_byte(body, &range) == Some(b'"') => {
            let raw = body.get(range.clone()).unwrap_or_default();
            let existing = serde_json::from_slice::<Text<'_>>(raw)
                .map_err(|e| unsupported(format!("request member instructions: {e}")))?
                .owned()
                .unwrap_or_default();
            let combined = if existing.trim().is_empty() {
                text.to_owned()
            } else {
                format!("{text}\n\n{existing}")
            };
            plan.edits
                .push(Edit::replace(range, json_string(&combined)));
            Ok(true)
        }
        Some(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_models() {
        use ReasoningSupport::{Full, None, SummaryOnly};
        let cases = [
            ("gpt-5", Full),
            ("gpt-5-2025-08-07", Full),
            ("gpt-5-mini", Full),
            ("gpt-5-nano-2025-08-07", Full),
            ("gpt-5-codex", Full),
            ("gpt-5.1", Full),
            ("gpt-5.1-codex-max", Full),
            ("gpt-5.2-pro", Full),
            ("GPT-5", Full),
            ("gpt-5-pro", SummaryOnly),
            ("gpt-5-pro-2025-10-06", SummaryOnly),
            ("gpt-5-chat-latest", None),
            ("gpt-5-chat", None),
            ("gpt-5.1-chat-latest", None),
            ("gpt-5.2-chat-latest", None),
            ("gpt-5-search-api", None),
            ("gpt-50", None),
            ("o1", Full),
            ("o1-2024-12-17", Full),
            ("o1-mini", None),
            ("o1-mini-2024-09-12", None),
            ("o1-preview", None),
            ("o1-pro", None),
            ("o3", Full),
            ("o3-mini", Full),
            ("o3-mini-2025-01-31", Full),
            ("o3-pro", Full),
            ("o3-deep-research", Full),
            ("o4-mini", Full),
            ("o4-mini-2025-04-16", Full),
            ("o4-mini-deep-research", Full),
            ("gpt-4o", None),
            ("gpt-4o-mini", None),
            ("gpt-4.1", None),
            ("gpt-4.1-nano-2025-04-14", None),
            ("chatgpt-4o-latest", None),
            ("openai/gpt-5", None),
            ("ft:gpt-4o-mini:acme::abc", None),
            ("o30", None),
            ("", None),
        ];
        for (model, want) in cases {
            assert_eq!(reasoning_support(model), want, "{model}");
        }
    }

    #[test]
    fn system_prompt_support() {
        assert!(accepts_system_prompt(Some("gpt-4o")));
        assert!(accepts_system_prompt(Some("o1")));
        assert!(accepts_system_prompt(None));
        assert!(!accepts_system_prompt(Some("o1-mini")));
        assert!(!accepts_system_prompt(Some("o1-preview-2024-09-12")));
    }

    #[test]
    fn api_routing() {
        assert_eq!(
            Api::of("POST", "/v1/chat/completions"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(
            Api::of("POST", "/chat/completions"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(
            Api::of("post", "/v1/chat/completions/"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(Api::of("POST", "/v1/responses"), Some(Api::Responses));
        assert_eq!(Api::of("POST", "/responses"), Some(Api::Responses));
        assert_eq!(Api::of("GET", "/v1/responses"), None);
        assert_eq!(Api::of("POST", "/v1/responses/resp_1/cancel"), None);
        assert_eq!(Api::of("POST", "/v1/responses/input_tokens"), None);
        assert_eq!(Api::of("POST", "/v1/embeddings"), None);
        assert_eq!(Api::of("POST", "/v2/chat/completions"), None);
        assert_eq!(Api::of("POST", "/v1/completions"), None);
    }

    #[test]
    fn sampling_parameters() {
        let check = |body: &[u8]| {
            let members = splice::members(body, splice::root(body).unwrap()).unwrap();
            sets_sampling(body, &members)
        };
        assert!(!check(br#"{"model":"gpt-5"}"#));
        assert!(!check(
            br#"{"temperature":null,"logprobs":false,"top_logprobs":0}"#
        ));
        assert!(check(br#"{"temperature":1}"#));
        assert!(check(br#"{"top_p":0.9}"#));
        assert!(check(br#"{"logprobs":true}"#));
        assert!(check(br#"{"top_logprobs":3}"#));
    }
}
