//! `transform-request` for the Messages API: detects streaming and the model, injects extended
//! thinking only where Anthropic accepts it, and places the gateway's system notes in front of
//! the system prompt. Edits are splices into the caller's bytes; nothing else is re-encoded.
//!
//! This runs on every request, so the body is read once into a borrowed summary holding only
//! what the decisions need (everything else is skipped unread), and is never built into a
//! `serde_json::Value`.

use std::ops::Range;

use mnemom_plugin_sdk::{json, notes};
use serde::de::{MapAccess, SeqAccess};
// The tests of this module build bodies as `Value`s.
#[cfg(test)]
use serde_json::Value;

/// The byte range of the value of a top-level member of a JSON object (the last one when the
/// key repeats, as for the parse); the request must already have been parsed.
pub use mnemom_plugin_sdk::json::member_span;

use crate::Settings;
use crate::mnemom::gateway::types::{AdapterError, RequestInfo, RequestPlan};
use crate::wire::{self, Lenient, Val, deserialize_leniently};

/// Anthropic rejects a thinking budget below 1024 tokens.
pub const MIN_THINKING_BUDGET: u64 = 1024;

/// Tokens of `max_tokens` left for the visible answer when thinking is injected. The budget is
/// cut to `max_tokens - MIN_ANSWER_TOKENS` so that a client asking for a short answer does not
/// get a response truncated (`stop_reason: max_tokens`) by thinking it never asked for.
pub const MIN_ANSWER_TOKENS: u64 = 1024;

/// Model families without extended thinking (Anthropic answers 400 to `thinking` for them).
/// Every other `claude-*` model is assumed to support it: every model since 3.7 does.
const NON_THINKING_MODELS: &[&str] = &[
    "claude-3-haiku",
    "claude-3-5-",
    "claude-3-opus",
    "claude-3-sonnet",
    "claude-2",
    "claude-instant",
];

/// Prepares a request for Anthropic. Only `POST …/v1/messages` is edited; every other endpoint
/// (`count_tokens`, batches, models, …) is passed through untouched, as it does not generate.
///
/// Errors: [`AdapterError::Unsupported`] when a Messages body is not a JSON object.
pub fn transform(
    settings: &Settings,
    request: &RequestInfo,
    body: &[u8],
) -> Result<RequestPlan, AdapterError> {
    if !is_messages_endpoint(request) {
        return Ok(RequestPlan {
            body: None,
            streaming: false,
            model: None,
            thinking_injected: false,
            notes_applied: 0,
        });
    }
    if !json::starts_object(body) {
        return Err(AdapterError::Unsupported(
            "request body is not a JSON object".to_owned(),
        ));
    }
    let probe: Probe<'_> = serde_json::from_slice(body).map_err(|e| {
        // Only the position: serde's messages can quote the caller's content.
        AdapterError::Unsupported(format!(
            "request body is not valid JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;

    let budget = thinking_budget(settings, &probe);
    // New members as JSON text (values written directly: no `serde_json::Value` in the
    // component).
    let mut prepend: Vec<(&str, String)> = Vec::new();
    if let Some(budget) = budget {
        // Members in alphabetical order, as this adapter has always sent them.
        let thinking = json::object(&[
            ("budget_tokens", budget.to_string()),
            ("type", json::string("enabled")),
        ]);
        prepend.push(("thinking", thinking));
    }

    let mut edited: Option<Vec<u8>> = None;
    let mut notes_applied = 0;
    if let Some(text) = notes::join(&request.system_notes) {
        // Found by a second, shallow scan: notes are rare, and this keeps the system prompt
        // (often the largest string of a request) out of the hot path's decoding.
        let placed = match member_span(body, "system") {
            None => {
                prepend.push(("system", json::string(&text)));
                true
            }
            Some(span) => {
                edited = prepend_to_system(body, span, &text);
                edited.is_some()
            }
        };
        if placed {
            notes_applied = request
                .system_notes
                .iter()
                .filter(|n| !n.trim().is_empty())
                .count()
                .try_into()
                .unwrap_or(u32::MAX);
        }
    }

    let body = if prepend.is_empty() {
        edited
    } else {
        let base = edited.as_deref().unwrap_or(body);
        Some(json::prepend_raw_members(base, &prepend).ok_or_else(|| {
            AdapterError::Internal("could not splice into the request object".to_owned())
        })?)
    };

    Ok(RequestPlan {
        body,
        streaming: probe.stream == Val::Bool(true),
        model: probe.model.into_string(),
        thinking_injected: budget.is_some(),
        notes_applied,
    })
}

/// `POST` to a path ending in `/v1/messages` (the prefix-stripped path; a query is separate).
fn is_messages_endpoint(request: &RequestInfo) -> bool {
    request.method.eq_ignore_ascii_case("POST") && request.path.ends_with("/v1/messages")
}

/// Whether `model` supports extended thinking, judged by its name.
pub fn model_supports_thinking(model: &str) -> bool {
    model.starts_with("claude-") && !NON_THINKING_MODELS.iter().any(|p| model.starts_with(p))
}

/// The budget to inject, or `None` when injecting could turn this request into a 400 (or the
/// operator turned injection off). Each condition is one of Anthropic's documented
/// incompatibilities of extended thinking; an unexpected value counts as incompatible.
fn thinking_budget(settings: &Settings, probe: &Probe<'_>) -> Option<u64> {
    if !settings.inject_thinking || probe.thinking != Val::Absent {
        return None;
    }
    if !probe.model.as_str().is_some_and(model_supports_thinking) {
        return None;
    }
    // Sampling: thinking requires the default temperature, no top_k, and top_p in [0.95, 1].
    let temperature_ok = probe.temperature.is_unset() || probe.temperature.as_f64() == Some(1.0);
    let top_k_ok = probe.top_k.is_unset();
    let top_p_ok = probe.top_p.is_unset() || probe.top_p.as_f64().is_some_and(|p| p >= 0.95);
    // Forced tool use (`any`, `tool`) is incompatible with thinking.
    let tool_choice_ok =
        probe.tool_choice.is_unset() || matches!(probe.tool_choice.kind(), Some("auto" | "none"));
    if !(temperature_ok && top_k_ok && top_p_ok && tool_choice_ok) {
        return None;
    }
    let conversation = &probe.messages;
    if !conversation.is_array || conversation.ends_with_assistant || conversation.unsigned_tool_use
    {
        return None;
    }
    let max_tokens = probe.max_tokens.as_u64()?;
    let budget = settings
        .thinking_budget_tokens
        .min(max_tokens.saturating_sub(MIN_ANSWER_TOKENS));
    (budget >= MIN_THINKING_BUDGET).then_some(budget)
}

/// Places `notes` before the existing `system` value at `span` of `body`. Returns the edited
/// body, or `None` when `system` has a shape notes cannot be placed into.
fn prepend_to_system(body: &[u8], span: Range<usize>, notes: &str) -> Option<Vec<u8>> {
    let old = body.get(span.clone())?;
    let notes_json = json::string(notes);
    let replacement = match old.first()? {
        b'"' if old == b"\"\"" => notes_json.into_bytes(),
        // "notes\n\nold": the escaped separator goes right after the opening quote, so the
        // caller's prompt keeps its own bytes.
        b'"' => {
            let mut joined = Vec::with_capacity(old.len() + notes_json.len() + 4);
            joined.extend_from_slice(&notes_json.as_bytes()[..notes_json.len() - 1]);
            joined.extend_from_slice(b"\\n\\n");
            joined.extend_from_slice(&old[1..]);
            joined
        }
        // A list of blocks: a new text block goes first.
        b'[' => {
            let block = json::object(&[("type", json::string("text")), ("text", notes_json)]);
            json::prepend_raw_element(old, &block)?
        }
        b'n' => notes_json.into_bytes(),
        _ => return None,
    };
    let edit = json::Edit {
        range: span,
        bytes: replacement,
    };
    json::apply(body, vec![edit])
}

/// The members of a Messages request that the decisions read; all others are skipped unread.
#[derive(Debug, Default)]
struct Probe<'a> {
    model: Val<'a>,
    stream: Val<'a>,
    thinking: Val<'a>,
    max_tokens: Val<'a>,
    temperature: Val<'a>,
    top_k: Val<'a>,
    top_p: Val<'a>,
    tool_choice: Val<'a>,
    messages: Conversation,
}

impl<'de> Lenient<'de> for Probe<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "model" => self.model = wire::val(map)?,
            "stream" => self.stream = wire::val(map)?,
            "thinking" => self.thinking = wire::val(map)?,
            "max_tokens" => self.max_tokens = wire::val(map)?,
            "temperature" => self.temperature = wire::val(map)?,
            "top_k" => self.top_k = wire::val(map)?,
            "top_p" => self.top_p = wire::val(map)?,
            "tool_choice" => self.tool_choice = wire::val(map)?,
            "messages" => self.messages = map.next_value()?,
            _ => wire::skip(map)?,
        }
        Ok(())
    }
}

/// What thinking injection needs to know of `messages`, gathered while it is read.
#[derive(Debug, Default)]
struct Conversation {
    /// `messages` is an array (otherwise the request is invalid: leave it alone).
    is_array: bool,
    /// The last message is an assistant prefill, which thinking does not allow.
    ends_with_assistant: bool,
    /// An assistant message carries a tool call but no thinking block: with thinking on,
    /// Anthropic rejects such a continued tool loop.
    unsigned_tool_use: bool,
}

impl<'de> Lenient<'de> for Conversation {
    fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut conversation = Conversation {
            is_array: true,
            ..Conversation::default()
        };
        while let Some(message) = seq.next_element::<Turn<'de>>()? {
            let assistant = message.role.as_str() == Some("assistant");
            conversation.ends_with_assistant = assistant;
            if assistant && message.content.tool_use && !message.content.thinking {
                conversation.unsigned_tool_use = true;
            }
        }
        Ok(conversation)
    }
}

/// One message of `messages`.
#[derive(Debug, Default)]
struct Turn<'a> {
    role: Val<'a>,
    content: BlockKinds,
}

impl<'de> Lenient<'de> for Turn<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "role" => self.role = wire::val(map)?,
            "content" => self.content = map.next_value()?,
            _ => wire::skip(map)?,
        }
        Ok(())
    }
}

/// Which kinds of block a message's `content` holds (a string content holds none).
#[derive(Debug, Default)]
struct BlockKinds {
    tool_use: bool,
    thinking: bool,
}

impl<'de> Lenient<'de> for BlockKinds {
    fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut kinds = BlockKinds::default();
        while let Some(block) = seq.next_element::<Val<'de>>()? {
            match block.kind() {
                // `server_tool_use` and `mcp_tool_use` too: being stricter than needed only
                // costs an injection, being laxer costs the caller a 400.
                Some(kind) if kind.ends_with("tool_use") => kinds.tool_use = true,
                Some("thinking" | "redacted_thinking") => kinds.thinking = true,
                _ => {}
            }
        }
        Ok(kinds)
    }
}

deserialize_leniently!(Probe<'de>, Conversation, Turn<'de>, BlockKinds);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(method: &str, path: &str, notes: &[&str]) -> RequestInfo {
        RequestInfo {
            method: method.to_owned(),
            path: path.to_owned(),
            query: String::new(),
            headers: Vec::new(),
            system_notes: notes.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    fn run(body: &Value, notes: &[&str]) -> RequestPlan {
        let bytes = body.to_string();
        transform(
            &Settings::default(),
            &info("POST", "/v1/messages", notes),
            bytes.as_bytes(),
        )
        .unwrap()
    }

    /// The budget injected into `body`, if any.
    fn injected(body: Value) -> Option<u64> {
        let plan = run(&body, &[]);
        assert_eq!(plan.thinking_injected, plan.body.is_some());
        let out: Value = serde_json::from_slice(&plan.body?).unwrap();
        out["thinking"]["budget_tokens"].as_u64()
    }

    fn base() -> Value {
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 16000,
            "messages": [{"role": "user", "content": "Hi"}]
        })
    }

    fn with(pairs: &[(&str, Value)]) -> Value {
        let mut body = base();
        for (k, v) in pairs {
            body[*k] = v.clone();
        }
        body
    }

    #[test]
    fn only_messages_posts_are_edited() {
        let body = base().to_string();
        for (method, path) in [
            ("GET", "/v1/messages"),
            ("POST", "/v1/messages/count_tokens"),
            ("POST", "/v1/messages/batches"),
            ("POST", "/v1/messages/"),
            ("GET", "/v1/models"),
        ] {
            let plan = transform(
                &Settings::default(),
                &info(method, path, &["n"]),
                body.as_bytes(),
            )
            .unwrap();
            assert!(
                plan.body.is_none() && plan.model.is_none(),
                "{method} {path}"
            );
            assert_eq!((plan.notes_applied, plan.thinking_injected), (0, false));
        }
        // Nothing is parsed there: a non-JSON body is no error.
        assert!(transform(&Settings::default(), &info("POST", "/v1/models", &[]), b"x").is_ok());
        let plan = transform(
            &Settings::default(),
            &info("post", "/v1/messages", &[]),
            body.as_bytes(),
        )
        .unwrap();
        assert!(plan.thinking_injected);
    }

    #[test]
    fn models_with_and_without_thinking() {
        for model in [
            "claude-3-7-sonnet-20250219",
            "claude-3-7-sonnet-latest",
            "claude-sonnet-4-20250514",
            "claude-opus-4-1-20250805",
            "claude-haiku-4-5",
            "claude-sonnet-4-6",
            "claude-opus-5",
        ] {
            assert!(model_supports_thinking(model), "{model}");
        }
        for model in [
            "claude-3-haiku-20240307",
            "claude-3-5-haiku-latest",
            "claude-3-5-sonnet-20241022",
            "claude-3-opus-20240229",
            "claude-3-sonnet-20240229",
            "claude-2.1",
            "claude-instant-1.2",
            "gpt-5",
            "MiniMax-M2",
            "",
        ] {
            assert!(!model_supports_thinking(model), "{model}");
        }
    }

    #[test]
    fn sampling_settings() {
        assert_eq!(injected(with(&[("temperature", json!(1))])), Some(10_000));
        assert_eq!(
            injected(with(&[("temperature", json!(null))])),
            Some(10_000)
        );
        assert_eq!(injected(with(&[("temperature", json!(0))])), None);
        assert_eq!(injected(with(&[("temperature", json!("1"))])), None);
        assert_eq!(injected(with(&[("top_p", json!(1))])), Some(10_000));
        assert_eq!(injected(with(&[("top_p", json!(0.95))])), Some(10_000));
        assert_eq!(injected(with(&[("top_p", json!(0.9))])), None);
        assert_eq!(injected(with(&[("top_k", json!(null))])), Some(10_000));
        assert_eq!(injected(with(&[("top_k", json!(5))])), None);
    }

    #[test]
    fn tool_choice() {
        for choice in [
            json!({"type": "auto"}),
            json!({"type": "none"}),
            json!(null),
        ] {
            assert_eq!(
                injected(with(&[("tool_choice", choice.clone())])),
                Some(10_000),
                "{choice}"
            );
        }
        for choice in [
            json!({"type": "any"}),
            json!({"type": "tool", "name": "f"}),
            json!({"name": "f"}),
            json!("auto"),
        ] {
            assert_eq!(
                injected(with(&[("tool_choice", choice.clone())])),
                None,
                "{choice}"
            );
        }
    }

    #[test]
    fn budget_follows_max_tokens() {
        assert_eq!(injected(with(&[("max_tokens", json!(2048))])), Some(1024));
        assert_eq!(injected(with(&[("max_tokens", json!(2047))])), None);
        assert_eq!(
            injected(with(&[("max_tokens", json!(11024))])),
            Some(10_000)
        );
        assert_eq!(injected(with(&[("max_tokens", json!(4096.0))])), None);
        let mut body = base();
        body.as_object_mut().unwrap().remove("max_tokens");
        assert_eq!(injected(body), None);

        let settings = Settings {
            inject_thinking: true,
            thinking_budget_tokens: 2000,
        };
        let plan = transform(
            &settings,
            &info("POST", "/v1/messages", &[]),
            base().to_string().as_bytes(),
        )
        .unwrap();
        let out: Value = serde_json::from_slice(&plan.body.unwrap()).unwrap();
        assert_eq!(
            out["thinking"],
            json!({"type": "enabled", "budget_tokens": 2000})
        );
    }

    #[test]
    fn existing_thinking_even_null_is_kept() {
        assert_eq!(injected(with(&[("thinking", json!(null))])), None);
        assert_eq!(
            injected(with(&[("thinking", json!({"type": "disabled"}))])),
            None
        );
    }

    #[test]
    fn conversation_shapes() {
        let tool_use = json!({"type": "tool_use", "id": "t", "name": "f", "input": {}});
        let tool_result =
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]});
        let cases = [
            // A later user turn after an assistant text turn is fine.
            (
                json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]),
                true,
            ),
            (
                json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": [{"type": "text", "text": "b"}]}]),
                false,
            ),
            (
                json!([{"role": "assistant", "content": [tool_use.clone()]}, tool_result.clone()]),
                false,
            ),
            (
                json!([{"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}, {"role": "user", "content": "c"}]),
                false,
            ),
            (
                json!([{"role": "assistant", "content": [{"type": "redacted_thinking", "data": "x"}, tool_use.clone()]}, tool_result.clone()]),
                true,
            ),
            // A user message never carries the model's tool calls.
            (
                json!([{"role": "user", "content": [tool_use.clone()]}]),
                true,
            ),
            (json!({"role": "user"}), false),
            (json!([{"role": "user", "content": 7}, "odd", 3]), true),
        ];
        for (messages, expected) in cases {
            let got = injected(with(&[("messages", messages.clone())])).is_some();
            assert_eq!(got, expected, "{messages}");
        }
    }

    #[test]
    fn injection_keeps_caller_bytes_and_detects_streaming() {
        let body = br#"  {"max_tokens": 4096, "model":"claude-opus-4-1", "stream": true, "n": 1.50, "messages":[{"role":"user","content":"caf\u00e9"}]}"#;
        let plan = transform(
            &Settings::default(),
            &info("POST", "/v1/messages", &[]),
            body,
        )
        .unwrap();
        assert!(plan.streaming);
        assert_eq!(plan.model.as_deref(), Some("claude-opus-4-1"));
        assert_eq!(
            String::from_utf8(plan.body.unwrap()).unwrap(),
            r#"  {"thinking":{"budget_tokens":3072,"type":"enabled"},"max_tokens": 4096, "model":"claude-opus-4-1", "stream": true, "n": 1.50, "messages":[{"role":"user","content":"caf\u00e9"}]}"#
        );
    }

    #[test]
    fn non_objects_are_unsupported() {
        for body in [
            &b""[..],
            b"  ",
            b"[1]",
            b"\"x\"",
            b"{\"model\":",
            b"{} {}",
            b"null",
        ] {
            let result = transform(
                &Settings::default(),
                &info("POST", "/v1/messages", &[]),
                body,
            );
            assert!(
                matches!(result, Err(AdapterError::Unsupported(_))),
                "{body:?}"
            );
        }
    }

    fn system_after(system: Option<Value>, notes: &[&str]) -> (Value, u32) {
        let mut body = with(&[("temperature", json!(0.5))]); // no thinking: notes only
        if let Some(system) = system {
            body["system"] = system;
        }
        let plan = run(&body, notes);
        assert!(!plan.thinking_injected);
        let out = plan.body.map_or(Value::Null, |b| {
            serde_json::from_slice::<Value>(&b).unwrap()
        });
        (out["system"].clone(), plan.notes_applied)
    }

    #[test]
    fn notes_in_every_system_shape() {
        let notes = ["Say \"why\".\n", "", "Ünïcode ✓ \u{1}"];
        let text = "Say \"why\".\n\nÜnïcode ✓ \u{1}";
        assert_eq!(system_after(None, &notes), (json!(text), 2));
        assert_eq!(system_after(Some(json!(null)), &notes), (json!(text), 2));
        assert_eq!(system_after(Some(json!("")), &notes), (json!(text), 2));
        assert_eq!(
            system_after(Some(json!("Be brief.")), &notes),
            (json!(format!("{text}\n\nBe brief.")), 2)
        );
        assert_eq!(
            system_after(Some(json!([])), &notes),
            (json!([{"type": "text", "text": text}]), 2)
        );
        assert_eq!(
            system_after(Some(json!([{"type": "text", "text": "Be brief."}])), &notes),
            (
                json!([{"type": "text", "text": text}, {"type": "text", "text": "Be brief."}]),
                2
            )
        );
        // A shape Anthropic rejects anyway is left alone, and reported as not placed.
        assert_eq!(system_after(Some(json!(7)), &notes), (Value::Null, 0));
        assert_eq!(
            system_after(Some(json!({"text": "x"})), &notes),
            (Value::Null, 0)
        );
        // Blank notes place nothing.
        assert_eq!(
            system_after(Some(json!("Be brief.")), &[" ", ""]),
            (Value::Null, 0)
        );
    }

    #[test]
    fn notes_go_into_an_escaped_system_key() {
        let body = br#"{"sys\u0074em":"old","model":"claude-3-5-haiku-latest","max_tokens":100,"messages":[]}"#;
        let plan = transform(
            &Settings::default(),
            &info("POST", "/v1/messages", &["new"]),
            body,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(plan.body.unwrap()).unwrap(),
            r#"{"sys\u0074em":"new\n\nold","model":"claude-3-5-haiku-latest","max_tokens":100,"messages":[]}"#
        );
    }

    #[test]
    fn member_spans() {
        let body = br#" { "a" : {"system": "x}"} , "b\"" :[1,"]",{"c":2}],"system" : [ ] , "n":-1.5e3,"t":true}"#;
        let text = std::str::from_utf8(body).unwrap();
        let span = |key: &str| member_span(body, key).map(|r| &text[r]);
        assert_eq!(span("a"), Some(r#"{"system": "x}"}"#));
        assert_eq!(span("b\""), Some(r#"[1,"]",{"c":2}]"#)); // keys compare decoded
        assert_eq!(span("system"), Some("[ ]"));
        assert_eq!(span("n"), Some("-1.5e3"));
        assert_eq!(span("t"), Some("true"));
        assert_eq!(span("c"), None);
        assert_eq!(member_span(b"{}", "a"), None);
        assert_eq!(member_span(br#"{"a":1,"a":2}"#, "a"), Some(11..12));
        let escaped = br#"{"b\"":0}"#;
        assert_eq!(member_span(escaped, "b\""), Some(7..8));
    }
}
