//! Requests: finds the model and the action in a Gemini API path
//! (`/v1beta/models/{model}:generateContent`), and prepares `generateContent` /
//! `streamGenerateContent` bodies by merging thinking settings into
//! `generationConfig.thinkingConfig` and placing system notes into `systemInstruction`.
//!
//! Every edit only *adds*: a member to an object, an element to the front of an array, or text
//! in front of a string. The edits are spliced into the caller's bytes, so that key order,
//! number spelling and every field the gateway does not know reach Google unchanged.

use std::ops::Range;

use mnemom_plugin_sdk::json::{self, Edit};
use mnemom_plugin_sdk::notes;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::Settings;
use crate::error::unsupported;
use crate::types::{AdapterError, RequestInfo, RequestPlan};

/// What a request path asks the API to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST …:generateContent`: one complete JSON response.
    Generate,
    /// `POST …:streamGenerateContent`: a streamed response (SSE with `alt=sse`).
    StreamGenerate,
    /// Anything else (`countTokens`, `embedContent`, listing models, files, caches, ...).
    Other,
}

/// The model and action a Gemini API path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The resource id before `:` (URL-decoded), e.g. `gemini-2.5-flash`; for paths without an
    /// action, the id after `models/` or `tunedModels/`.
    pub model: Option<String>,
    /// What the request does.
    pub action: Action,
}

/// Reads the model and action from a path such as `/v1beta/models/gemini-2.5-flash:generateContent`
/// (any API version, and any resource collection such as `tunedModels/` or Vertex-style
/// `projects/…/models/`).
pub fn route(method: &str, path: &str) -> Route {
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let last = percent_decode(segments.next().unwrap_or_default());
    let Some((resource, action)) = last.rsplit_once(':') else {
        // `GET /v1beta/models/gemini-2.5-pro` and the like: no action, but a model.
        let model = matches!(segments.next(), Some("models" | "tunedModels"))
            .then_some(last)
            .filter(|m| !m.is_empty());
        return Route {
            model,
            action: Action::Other,
        };
    };
    let action = match (method.eq_ignore_ascii_case("POST"), action) {
        (true, "generateContent") => Action::Generate,
        (true, "streamGenerateContent") => Action::StreamGenerate,
        _ => Action::Other,
    };
    Route {
        model: (!resource.is_empty()).then(|| resource.to_owned()),
        action,
    }
}

/// Decodes `%XX` escapes of one path segment. Malformed escapes stay as they are; a segment
/// that does not decode to UTF-8 is kept as sent.
fn percent_decode(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_owned();
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let escaped = (byte == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| segment.to_owned())
}

/// Which thinking knob a model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingKnob {
    /// `thinkingBudget` (tokens): Gemini 2.5 and the `-latest` aliases.
    Budget,
    /// `thinkingLevel`: Gemini 3.
    Level,
}

/// Whether `model` can think through `generateContent`, and with which knob. Only models known
/// to accept a `thinkingConfig` get one: the API can answer 400 to a `thinkingConfig` on a model
/// that cannot think (Gemini 2.0, 1.5, Gemma, unknown families), and the adapter must never turn
/// a valid request into an upstream 400. Image, text-to-speech and Live variants of thinking
/// families are excluded for the same reason.
pub fn thinking_knob(model: &str) -> Option<ThinkingKnob> {
    let model = model.to_ascii_lowercase();
    let model = model.strip_prefix("models/").unwrap_or(&model);
    match model {
        // Aliases that currently point at 2.5 models; 3.x models still accept a budget.
        "gemini-flash-latest" | "gemini-pro-latest" | "gemini-flash-lite-latest" => {
            return Some(ThinkingKnob::Budget);
        }
        _ => {}
    }
    if contains(model, "-image") || contains(model, "-tts") || contains(model, "live") {
        return None;
    }
    if model.starts_with("gemini-3") {
        Some(ThinkingKnob::Level)
    } else if model.starts_with("gemini-2.5-pro") || model.starts_with("gemini-2.5-flash") {
        Some(ThinkingKnob::Budget)
    } else {
        None
    }
}

/// Substring test on bytes (`str::contains` brings in a two-way searcher the component does not
/// otherwise need).
fn contains(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Prepares a request for the upstream (see the module documentation). Only `POST`
/// `generateContent` and `streamGenerateContent` bodies are edited; every other request passes
/// through with the model its path names.
pub fn transform(
    settings: &Settings,
    request: &RequestInfo,
    body: &[u8],
) -> Result<RequestPlan, AdapterError> {
    let Route { model, action } = route(&request.method, &request.path);
    let mut plan = RequestPlan {
        body: None,
        streaming: action == Action::StreamGenerate,
        model,
        thinking_injected: false,
        notes_applied: 0,
    };
    if action == Action::Other {
        return Ok(plan);
    }
    let knob = settings
        .inject_thinking
        .then(|| plan.model.as_deref().and_then(thinking_knob))
        .flatten();
    let notes = notes::join(&request.system_notes);
    if knob.is_none() && notes.is_none() {
        // Nothing to add: skip parsing the body at all (the hot path for most requests).
        return Ok(plan);
    }
    let edit = edit_body(settings, knob, notes.as_deref(), body)?;
    if edit.thinking || edit.notes {
        plan.thinking_injected = edit.thinking;
        if edit.notes {
            plan.notes_applied = count_notes(&request.system_notes);
        }
        plan.body = Some(edit.body);
    }
    Ok(plan)
}

/// How many notes `notes::join` keeps (blank notes are dropped).
fn count_notes(notes: &[String]) -> u32 {
    let placed = notes.iter().filter(|n| !n.trim().is_empty()).count();
    u32::try_from(placed).unwrap_or(u32::MAX)
}

/// The members the gateway reads, at any level of the body (top level, `generationConfig`,
/// `thinkingConfig`, `systemInstruction`): one struct for all levels keeps the component small
/// (every deserialized type is another copy of the parser). Keys are matched in both spellings
/// the REST API accepts, proto JSON names and the original snake_case field names. A member
/// present with the value `null` is kept (as the raw text `null`): adding the key again would
/// make it a duplicate.
#[derive(Deserialize)]
struct Members<'a> {
    #[serde(rename = "generationConfig")]
    #[serde(default, borrow, deserialize_with = "present")]
    generation_config: Option<&'a RawValue>,
    #[serde(rename = "generation_config")]
    #[serde(default, borrow, deserialize_with = "present")]
    generation_config_snake: Option<&'a RawValue>,
    #[serde(rename = "systemInstruction")]
    #[serde(default, borrow, deserialize_with = "present")]
    system_instruction: Option<&'a RawValue>,
    #[serde(rename = "system_instruction")]
    #[serde(default, borrow, deserialize_with = "present")]
    system_instruction_snake: Option<&'a RawValue>,
    #[serde(rename = "thinkingConfig")]
    #[serde(default, borrow, deserialize_with = "present")]
    thinking_config: Option<&'a RawValue>,
    #[serde(rename = "thinking_config")]
    #[serde(default, borrow, deserialize_with = "present")]
    thinking_config_snake: Option<&'a RawValue>,
    #[serde(rename = "includeThoughts")]
    #[serde(default, borrow, deserialize_with = "present")]
    include_thoughts: Option<&'a RawValue>,
    #[serde(rename = "include_thoughts")]
    #[serde(default, borrow, deserialize_with = "present")]
    include_thoughts_snake: Option<&'a RawValue>,
    #[serde(rename = "thinkingBudget")]
    #[serde(default, borrow, deserialize_with = "present")]
    thinking_budget: Option<&'a RawValue>,
    #[serde(rename = "thinking_budget")]
    #[serde(default, borrow, deserialize_with = "present")]
    thinking_budget_snake: Option<&'a RawValue>,
    #[serde(rename = "thinkingLevel")]
    #[serde(default, borrow, deserialize_with = "present")]
    thinking_level: Option<&'a RawValue>,
    #[serde(rename = "thinking_level")]
    #[serde(default, borrow, deserialize_with = "present")]
    thinking_level_snake: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    parts: Option<&'a RawValue>,
}

/// Keeps a member that is present with the value `null` distinct from an absent one (a plain
/// `Option` maps both to `None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Picks the member spelled in camelCase, else the snake_case one, with its spelling.
fn either<'a>(
    camel: Option<&'a RawValue>,
    snake: Option<&'a RawValue>,
) -> Option<(&'a RawValue, Case)> {
    match (camel, snake) {
        (Some(raw), _) => Some((raw, Case::Camel)),
        (None, Some(raw)) => Some((raw, Case::Snake)),
        (None, None) => None,
    }
}

/// Spelling of a key the adapter adds: that of the object it adds it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Camel,
    Snake,
}

impl Case {
    fn key(self, camel: &'static str, snake: &'static str) -> &'static str {
        match self {
            Self::Camel => camel,
            Self::Snake => snake,
        }
    }
}

/// What a JSON value inside the body is, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Object,
    Array,
    String,
    Null,
    Other,
}

fn shape(raw: &RawValue) -> Shape {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'{') => Shape::Object,
        Some(b'[') => Shape::Array,
        Some(b'"') => Shape::String,
        Some(b'n') => Shape::Null,
        _ => Shape::Other,
    }
}

/// The outcome of editing a body.
struct Edited {
    body: Vec<u8>,
    thinking: bool,
    notes: bool,
}

/// A member to add: its key and its value as JSON text.
type Member = (&'static str, String);

/// Where a value parsed out of `body` sits in it.
fn span(body: &[u8], raw: &RawValue) -> Result<Range<usize>, AdapterError> {
    let len = raw.get().len();
    let start = (raw.get().as_ptr() as usize)
        .checked_sub(body.as_ptr() as usize)
        .filter(|start| start + len <= body.len())
        .ok_or_else(|| AdapterError::Internal("parsed value outside the request body".into()))?;
    Ok(start..start + len)
}

/// Reads the members of an object found inside the body (its text borrows from the body, so
/// the values it yields still locate themselves in it).
fn members_of(raw: &RawValue) -> Result<Members<'_>, AdapterError> {
    parse_members(raw.get().as_bytes())
}

fn parse_members(json: &[u8]) -> Result<Members<'_>, AdapterError> {
    serde_json::from_slice(json).map_err(|e| unsupported(format!("request body: {e}")))
}

fn edit_body(
    settings: &Settings,
    knob: Option<ThinkingKnob>,
    notes: Option<&str>,
    body: &[u8],
) -> Result<Edited, AdapterError> {
    if !json::starts_object(body) {
        return Err(unsupported("request body is not a JSON object"));
    }
    let top = parse_members(body)?;
    let config = either(top.generation_config, top.generation_config_snake);
    let instruction = either(top.system_instruction, top.system_instruction_snake);
    // New top-level keys follow the caller's spelling when it used snake_case for either.
    let top_case = match (config, instruction) {
        (Some((_, Case::Snake)), _) | (_, Some((_, Case::Snake))) => Case::Snake,
        _ => Case::Camel,
    };

    let mut splices = Vec::new();
    let mut top_members: Vec<Member> = Vec::new();

    let mut thinking = false;
    if let Some(knob) = knob {
        let thinking_config = |case: Case| {
            let key = case.key("thinkingConfig", "thinking_config");
            json::object(&[(
                key,
                json::object(&all_thinking_members(settings, knob, case)),
            )])
        };
        match config {
            None => {
                let key = top_case.key("generationConfig", "generation_config");
                top_members.push((key, thinking_config(top_case)));
                thinking = true;
            }
            Some((raw, case)) => match shape(raw) {
                Shape::Null => {
                    let range = span(body, raw)?;
                    let bytes = thinking_config(case).into_bytes();
                    splices.push(Edit { range, bytes });
                    thinking = true;
                }
                Shape::Object => {
                    if let Some(splice) = merge_thinking(settings, knob, body, raw, case)? {
                        splices.push(splice);
                        thinking = true;
                    }
                }
                // A generationConfig that is not an object is the caller's 400 to receive.
                _ => {}
            },
        }
    }

    let mut placed_notes = false;
    if let Some(notes) = notes {
        match instruction {
            None => {
                let key = top_case.key("systemInstruction", "system_instruction");
                top_members.push((
                    key,
                    json::object(&[("parts", format!("[{}]", note_part(notes)))]),
                ));
                placed_notes = true;
            }
            Some((raw, _)) => {
                if let Some(splice) = place_notes(body, raw, notes)? {
                    splices.push(splice);
                    placed_notes = true;
                }
            }
        }
    }

    if splices.is_empty() && top_members.is_empty() {
        return Ok(Edited {
            body: Vec::new(),
            thinking: false,
            notes: false,
        });
    }
    let mut body = json::apply(body, splices)
        .ok_or_else(|| AdapterError::Internal("overlapping request edits".into()))?;
    if !top_members.is_empty() {
        body = json::prepend_raw_members(&body, &top_members)
            .ok_or_else(|| AdapterError::Internal("edited request body is not an object".into()))?;
    }
    Ok(Edited {
        body,
        thinking,
        notes: placed_notes,
    })
}

/// `includeThoughts: true` and the model's knob, for a `thinkingConfig` created from scratch.
fn all_thinking_members(settings: &Settings, knob: ThinkingKnob, case: Case) -> [Member; 2] {
    [include_thoughts(case), knob_member(settings, knob, case)]
}

fn include_thoughts(case: Case) -> Member {
    (
        case.key("includeThoughts", "include_thoughts"),
        "true".to_owned(),
    )
}

/// `thinkingBudget: <budget>` or `thinkingLevel: "<level>"`.
fn knob_member(settings: &Settings, knob: ThinkingKnob, case: Case) -> Member {
    match knob {
        ThinkingKnob::Budget => (
            case.key("thinkingBudget", "thinking_budget"),
            settings.thinking_budget.to_string(),
        ),
        ThinkingKnob::Level => (
            case.key("thinkingLevel", "thinking_level"),
            json::string(&settings.thinking_level),
        ),
    }
}

/// Merges the thinking settings into an existing `generationConfig` object: adds a
/// `thinkingConfig`, or adds to the caller's the members it lacks. Never changes a value the
/// caller chose, and never sets a budget next to a level (or the reverse).
fn merge_thinking(
    settings: &Settings,
    knob: ThinkingKnob,
    body: &[u8],
    config: &RawValue,
    config_case: Case,
) -> Result<Option<Edit>, AdapterError> {
    let members = members_of(config)?;
    let Some((existing, case)) = either(members.thinking_config, members.thinking_config_snake)
    else {
        let key = config_case.key("thinkingConfig", "thinking_config");
        let value = json::object(&all_thinking_members(settings, knob, config_case));
        return splice_members(body, config, &[(key, value)]);
    };
    match shape(existing) {
        Shape::Null => {
            let range = span(body, existing)?;
            let bytes = json::object(&all_thinking_members(settings, knob, case)).into_bytes();
            Ok(Some(Edit { range, bytes }))
        }
        Shape::Object => {
            let chosen = members_of(existing)?;
            let mut add = Vec::new();
            if chosen.include_thoughts.is_none() && chosen.include_thoughts_snake.is_none() {
                add.push(include_thoughts(case));
            }
            let has_knob = chosen.thinking_budget.is_some()
                || chosen.thinking_budget_snake.is_some()
                || chosen.thinking_level.is_some()
                || chosen.thinking_level_snake.is_some();
            if !has_knob {
                add.push(knob_member(settings, knob, case));
            }
            if add.is_empty() {
                return Ok(None);
            }
            splice_members(body, existing, &add)
        }
        _ => Ok(None),
    }
}

/// `{"text": <notes>}`: the part that carries the notes.
fn note_part(notes: &str) -> String {
    json::object(&[("text", json::string(notes))])
}

/// Places the notes into an existing `systemInstruction` value. Returns `None` (notes not
/// placed) when the value has a shape that cannot hold them.
fn place_notes(body: &[u8], raw: &RawValue, notes: &str) -> Result<Option<Edit>, AdapterError> {
    let range = span(body, raw)?;
    let part = note_part(notes);
    let text = match shape(raw) {
        Shape::Null => json::object(&[("parts", format!("[{part}]"))]).into_bytes(),
        // Some clients send the instruction as a bare string; keep it a string.
        Shape::String => {
            let old: String = serde_json::from_slice(raw.get().as_bytes())
                .map_err(|e| unsupported(format!("request body: {e}")))?;
            json::string(&format!("{notes}\n\n{old}")).into_bytes()
        }
        Shape::Object => {
            let Some(parts) = members_of(raw)?.parts else {
                return splice_members(body, raw, &[("parts", format!("[{part}]"))]);
            };
            let range = span(body, parts)?;
            let old = &body[range.clone()];
            let bytes = match shape(parts) {
                Shape::Array => json::prepend_raw_element(old, &part),
                Shape::Null => Some(format!("[{part}]").into_bytes()),
                // A single part where a list belongs: make it a list, notes first.
                Shape::Object => {
                    let mut list = format!("[{part},").into_bytes();
                    list.extend_from_slice(old);
                    list.push(b']');
                    Some(list)
                }
                _ => None,
            };
            return Ok(bytes.map(|bytes| Edit { range, bytes }));
        }
        _ => return Ok(None),
    };
    Ok(Some(Edit { range, bytes: text }))
}

/// Adds `members` at the front of the object `object` (a value inside `body`).
fn splice_members(
    body: &[u8],
    object: &RawValue,
    members: &[Member],
) -> Result<Option<Edit>, AdapterError> {
    let range = span(body, object)?;
    let bytes = json::prepend_raw_members(&body[range.clone()], members);
    Ok(bytes.map(|bytes| Edit { range, bytes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, notes: &[&str]) -> RequestInfo {
        RequestInfo {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
            system_notes: notes.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    fn run(path: &str, notes: &[&str], body: &str) -> RequestPlan {
        transform(
            &Settings::default(),
            &request("POST", path, notes),
            body.as_bytes(),
        )
        .unwrap()
    }

    fn body_text(plan: &RequestPlan) -> &str {
        std::str::from_utf8(plan.body.as_deref().unwrap()).unwrap()
    }

    const FLASH: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

    #[test]
    fn thinking_models() {
        use ThinkingKnob::{Budget, Level};
        let cases = [
            ("gemini-2.5-pro", Some(Budget)),
            ("gemini-2.5-pro-preview-06-05", Some(Budget)),
            ("gemini-2.5-flash", Some(Budget)),
            ("gemini-2.5-flash-lite", Some(Budget)),
            ("gemini-2.5-flash-preview-09-2025", Some(Budget)),
            ("models/gemini-2.5-flash", Some(Budget)),
            ("Gemini-2.5-Flash", Some(Budget)),
            ("gemini-flash-latest", Some(Budget)),
            ("gemini-pro-latest", Some(Budget)),
            ("gemini-flash-lite-latest", Some(Budget)),
            ("gemini-3-pro-preview", Some(Level)),
            ("gemini-3-flash-preview", Some(Level)),
            ("gemini-3.1-pro-preview", Some(Level)),
            ("gemini-2.5-flash-image", None),
            ("gemini-2.5-flash-image-preview", None),
            ("gemini-2.5-flash-preview-tts", None),
            ("gemini-2.5-pro-preview-tts", None),
            ("gemini-2.5-flash-live-preview", None),
            ("gemini-live-2.5-flash-preview", None),
            ("gemini-3-pro-image-preview", None),
            ("gemini-2.0-flash", None),
            ("gemini-2.0-flash-thinking-exp", None),
            ("gemini-2.0-flash-lite", None),
            ("gemini-1.5-pro", None),
            ("gemini-1.5-flash-8b", None),
            ("gemma-3-27b-it", None),
            ("gemini-2.5-computer-use-preview-10-2025", None),
            ("gemini-exp-1206", None),
            ("text-embedding-004", None),
            ("", None),
        ];
        for (model, want) in cases {
            assert_eq!(thinking_knob(model), want, "{model}");
        }
    }

    #[test]
    fn routes() {
        let r = route("POST", "/v1beta/models/gemini-2.5-flash:generateContent");
        assert_eq!(
            (r.model.as_deref(), r.action),
            (Some("gemini-2.5-flash"), Action::Generate)
        );
        let r = route("POST", "/v1/models/gemini-2.5-pro:streamGenerateContent");
        assert_eq!(
            (r.model.as_deref(), r.action),
            (Some("gemini-2.5-pro"), Action::StreamGenerate)
        );
        let r = route("POST", "/v1alpha/tunedModels/my-model-x1:generateContent");
        assert_eq!(
            (r.model.as_deref(), r.action),
            (Some("my-model-x1"), Action::Generate)
        );
        let r = route(
            "POST",
            "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent",
        );
        assert_eq!(
            (r.model.as_deref(), r.action),
            (Some("gemini-2.5-pro"), Action::Generate)
        );
        let r = route(
            "POST",
            "/v1beta/models/gemini%2D2.5%2Dflash%3AstreamGenerateContent",
        );
        assert_eq!(
            (r.model.as_deref(), r.action),
            (Some("gemini-2.5-flash"), Action::StreamGenerate)
        );
        let r = route("POST", "/v1beta/models/gemini-2.5-flash:countTokens");
        assert_eq!(
            (r.model.as_deref(), r.action),
            (Some("gemini-2.5-flash"), Action::Other)
        );
        let r = route("GET", "/v1beta/models/gemini-2.5-flash:generateContent");
        assert_eq!(r.action, Action::Other);
        let r = route("GET", "/v1beta/models/gemini-2.5-pro");
        assert_eq!(
            (r.model.as_deref(), r.action),
            (Some("gemini-2.5-pro"), Action::Other)
        );
        let r = route("GET", "/v1beta/models");
        assert_eq!((r.model, r.action), (None, Action::Other));
        let r = route("GET", "/v1beta/files/abc");
        assert_eq!((r.model, r.action), (None, Action::Other));
        let r = route("POST", "/");
        assert_eq!((r.model, r.action), (None, Action::Other));
        let r = route("POST", "/v1beta/models/:generateContent");
        assert_eq!((r.model, r.action), (None, Action::Generate));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        assert_eq!(percent_decode("%FF"), "%FF");
    }

    #[test]
    fn injects_into_absent_generation_config() {
        let plan = run(FLASH, &[], r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#);
        assert_eq!(
            body_text(&plan),
            r#"{"generationConfig":{"thinkingConfig":{"includeThoughts":true,"thinkingBudget":16384}},"contents":[{"parts":[{"text":"hi"}]}]}"#
        );
        assert!(plan.thinking_injected);
        assert_eq!(plan.notes_applied, 0);
    }

    #[test]
    fn null_values_are_replaced_not_duplicated() {
        let plan = run(
            FLASH,
            &["n"],
            r#"{"generationConfig":null,"systemInstruction":null}"#,
        );
        assert_eq!(
            body_text(&plan),
            r#"{"generationConfig":{"thinkingConfig":{"includeThoughts":true,"thinkingBudget":16384}},"systemInstruction":{"parts":[{"text":"n"}]}}"#
        );
        let plan = run(
            FLASH,
            &[],
            r#"{"generationConfig":{"thinkingConfig":null}}"#,
        );
        assert_eq!(
            body_text(&plan),
            r#"{"generationConfig":{"thinkingConfig":{"includeThoughts":true,"thinkingBudget":16384}}}"#
        );
        let plan = run(
            FLASH,
            &[],
            r#"{"generationConfig":{"thinkingConfig":{"includeThoughts":null}}}"#,
        );
        assert_eq!(
            body_text(&plan),
            r#"{"generationConfig":{"thinkingConfig":{"thinkingBudget":16384,"includeThoughts":null}}}"#
        );
    }

    #[test]
    fn nothing_to_add_leaves_body_alone() {
        let plan = run(
            FLASH,
            &[],
            r#"{"generationConfig":{"thinkingConfig":{"includeThoughts":true,"thinkingLevel":"low"}}}"#,
        );
        assert!(plan.body.is_none());
        assert!(!plan.thinking_injected);
        // A generationConfig of the wrong type is left for Google to reject.
        let plan = run(FLASH, &[], r#"{"generationConfig":"x"}"#);
        assert!(plan.body.is_none());
    }

    #[test]
    fn thinking_can_be_disabled() {
        let settings = Settings {
            inject_thinking: false,
            ..Settings::default()
        };
        let plan = transform(&settings, &request("POST", FLASH, &[]), b"{}").unwrap();
        assert!(plan.body.is_none() && !plan.thinking_injected);
        let plan = transform(&settings, &request("POST", FLASH, &["be kind"]), b"{}").unwrap();
        assert_eq!(
            body_text(&plan),
            r#"{"systemInstruction":{"parts":[{"text":"be kind"}]}}"#
        );
        assert!(!plan.thinking_injected);
        assert_eq!(plan.notes_applied, 1);
    }

    #[test]
    fn configured_budget_and_level_are_used() {
        let settings = Settings {
            inject_thinking: true,
            thinking_budget: -1,
            thinking_level: "low".into(),
        };
        let plan = transform(&settings, &request("POST", FLASH, &[]), b"{}").unwrap();
        assert_eq!(
            body_text(&plan),
            r#"{"generationConfig":{"thinkingConfig":{"includeThoughts":true,"thinkingBudget":-1}}}"#
        );
        let path = "/v1beta/models/gemini-3-flash-preview:generateContent";
        let plan = transform(&settings, &request("POST", path, &[]), b"{}").unwrap();
        assert_eq!(
            body_text(&plan),
            r#"{"generationConfig":{"thinkingConfig":{"includeThoughts":true,"thinkingLevel":"low"}}}"#
        );
    }

    #[test]
    fn notes_shapes() {
        let plan = run(
            FLASH,
            &["A", "  ", "B"],
            r#"{"systemInstruction":{"role":"system"}}"#,
        );
        assert_eq!(
            body_text(&plan),
            r#"{"generationConfig":{"thinkingConfig":{"includeThoughts":true,"thinkingBudget":16384}},"systemInstruction":{"parts":[{"text":"A\n\nB"}],"role":"system"}}"#
        );
        assert_eq!(plan.notes_applied, 2);

        let plan = run(
            FLASH,
            &["A"],
            r#"{"system_instruction":{"parts":{"text":"old"}}}"#,
        );
        assert_eq!(
            body_text(&plan),
            r#"{"generation_config":{"thinking_config":{"include_thoughts":true,"thinking_budget":16384}},"system_instruction":{"parts":[{"text":"A"},{"text":"old"}]}}"#
        );

        let plan = run(FLASH, &["A"], r#"{"systemInstruction":{"parts":[ ]}}"#);
        assert_eq!(
            body_text(&plan),
            r#"{"generationConfig":{"thinkingConfig":{"includeThoughts":true,"thinkingBudget":16384}},"systemInstruction":{"parts":[{"text":"A"} ]}}"#
        );

        // A shape that cannot hold notes: thinking is still injected, no note is counted.
        let plan = run(FLASH, &["A"], r#"{"systemInstruction":42}"#);
        assert_eq!(plan.notes_applied, 0);
        assert!(plan.thinking_injected);
        let plan = run(
            "/v1beta/models/gemini-2.0-flash:generateContent",
            &["A"],
            r#"{"systemInstruction":[]}"#,
        );
        assert!(plan.body.is_none());
        assert_eq!(plan.notes_applied, 0);
    }

    #[test]
    fn blank_notes_only_are_no_notes() {
        let plan = run(
            "/v1beta/models/gemini-2.0-flash:generateContent",
            &[" ", ""],
            "not even json",
        );
        assert!(plan.body.is_none());
        assert_eq!(plan.notes_applied, 0);
    }

    #[test]
    fn unsupported_bodies() {
        for body in [
            "",
            "[]",
            "\"x\"",
            "{",
            r#"{"a":1} x"#,
            r#"{"generationConfig":{"thinkingConfig":{"includeThoughts":true,"includeThoughts":true}}}"#,
        ] {
            let result = transform(
                &Settings::default(),
                &request("POST", FLASH, &[]),
                body.as_bytes(),
            );
            assert!(
                matches!(result, Err(AdapterError::Unsupported(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn splice_keeps_escaped_strings_and_whitespace() {
        let body = "{ \"contents\": [{\"parts\": [{\"text\": \"caf\\u00e9 \\\"q\\\"\"}]}],\n  \"generationConfig\": { \"temperature\": 0.70 }\n}\n";
        let plan = run(FLASH, &[], body);
        assert_eq!(
            body_text(&plan),
            "{ \"contents\": [{\"parts\": [{\"text\": \"caf\\u00e9 \\\"q\\\"\"}]}],\n  \"generationConfig\": {\"thinkingConfig\":{\"includeThoughts\":true,\"thinkingBudget\":16384}, \"temperature\": 0.70 }\n}\n"
        );
    }
}
