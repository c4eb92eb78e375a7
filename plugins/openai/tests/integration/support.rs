//! Helpers shared by the golden tests: SSE framing as the host does it, accumulation of stream
//! deltas, and the JSON form of extractions that the `expected/` files use.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mnemom_adapter_openai::{Extraction, SseEvent, StreamDelta, ToolCall, Usage};
use serde_json::{Value, json};

/// `plugins/fixtures/openai/` on disk (for directory listings and the request manifest's files).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/openai")
}

pub fn usage_json(usage: Option<&Usage>) -> Value {
    match usage {
        None => Value::Null,
        Some(u) => json!({
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "reasoning_tokens": u.reasoning_tokens,
            "cached_input_tokens": u.cached_input_tokens,
        }),
    }
}

pub fn tool_call_json(call: &ToolCall) -> Value {
    json!({"id": call.id, "name": call.name, "arguments": call.arguments})
}

/// The JSON form of an extraction used by `expected/<stem>.json`.
pub fn extraction_json(e: &Extraction) -> Value {
    json!({
        "thinking": e.thinking,
        "text": e.text,
        "tool_calls": e.tool_calls.iter().map(tool_call_json).collect::<Vec<_>>(),
        "usage": usage_json(e.usage.as_ref()),
        "model": e.model,
        "stop_reason": e.stop_reason,
    })
}

/// Splits an SSE transcript into events the way the host frames them: blank-line separated
/// blocks (`\n`, `\r\n` or `\r` line ends), `event:` and `data:` fields (one optional space after
/// the colon), data lines joined with `\n`, comments and other fields ignored, blocks without
/// data not dispatched.
pub fn frame_sse(transcript: &str) -> Vec<SseEvent> {
    let normalized = transcript.replace("\r\n", "\n").replace('\r', "\n");
    let mut events = Vec::new();
    let mut name: Option<String> = None;
    let mut data: Vec<String> = Vec::new();
    for line in normalized.split('\n') {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(SseEvent {
                    event: name.take(),
                    data: data.join("\n"),
                });
            }
            name = None;
            data.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    if !data.is_empty() {
        events.push(SseEvent {
            event: name,
            data: data.join("\n"),
        });
    }
    events
}

#[derive(Default)]
struct PartialCall {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// What a client of the gateway would have seen once a stream ended: fragments concatenated
/// per index, usage overridden field by field, the last model and stop reason, every error.
#[derive(Default)]
pub struct Accumulator {
    pub thinking: BTreeMap<u32, String>,
    pub text: BTreeMap<u32, String>,
    calls: BTreeMap<u32, PartialCall>,
    whole_calls: Vec<ToolCall>,
    usage: Option<Usage>,
    model: Option<String>,
    stop_reason: Option<String>,
    errors: Vec<String>,
}

impl Accumulator {
    pub fn apply(&mut self, delta: StreamDelta) {
        for f in delta.thinking {
            self.thinking.entry(f.index).or_default().push_str(&f.text);
        }
        for f in delta.text {
            self.text.entry(f.index).or_default().push_str(&f.text);
        }
        for f in delta.tool_call_fragments {
            let call = self.calls.entry(f.index).or_default();
            if f.id.is_some() {
                call.id = f.id;
            }
            if f.name.is_some() {
                call.name = f.name;
            }
            call.arguments.push_str(&f.arguments);
        }
        self.whole_calls.extend(delta.tool_calls);
        if let Some(u) = delta.usage {
            let acc = self.usage.get_or_insert(Usage {
                input_tokens: None,
                output_tokens: None,
                reasoning_tokens: None,
                cached_input_tokens: None,
            });
            acc.input_tokens = u.input_tokens.or(acc.input_tokens);
            acc.output_tokens = u.output_tokens.or(acc.output_tokens);
            acc.reasoning_tokens = u.reasoning_tokens.or(acc.reasoning_tokens);
            acc.cached_input_tokens = u.cached_input_tokens.or(acc.cached_input_tokens);
        }
        if delta.model.is_some() {
            self.model = delta.model;
        }
        if delta.stop_reason.is_some() {
            self.stop_reason = delta.stop_reason;
        }
        self.errors.extend(delta.error);
    }

    /// The tool call accumulated at `index`, as `(id, name, arguments)`.
    pub fn call(&self, index: u32) -> Option<(Option<&str>, Option<&str>, &str)> {
        self.calls
            .get(&index)
            .map(|c| (c.id.as_deref(), c.name.as_deref(), c.arguments.as_str()))
    }

    /// The JSON form used by `expected/<stem>.json` for transcripts.
    pub fn to_json(&self) -> Value {
        let calls: Vec<Value> = self
            .calls
            .values()
            .map(|c| json!({"id": c.id, "name": c.name.clone().unwrap_or_default(), "arguments": c.arguments}))
            .chain(self.whole_calls.iter().map(tool_call_json))
            .collect();
        json!({
            "thinking": self.thinking.values().collect::<Vec<_>>(),
            "text": self.text.values().collect::<Vec<_>>(),
            "tool_calls": calls,
            "usage": usage_json(self.usage.as_ref()),
            "model": self.model,
            "stop_reason": self.stop_reason,
            "errors": self.errors,
        })
    }
}

/// Panics with both documents pretty-printed when they differ.
pub fn assert_json_eq(what: &str, got: &Value, want: &Value) {
    assert!(
        got == want,
        "{what}: extraction differs from the expected file\n--- got ---\n{}\n--- want ---\n{}",
        serde_json::to_string_pretty(got).unwrap(),
        serde_json::to_string_pretty(want).unwrap()
    );
}

#[test]
fn framing_handles_crlf_comments_and_multiline_data() {
    let events = frame_sse(
        ": keep-alive\r\nevent: a\r\ndata: 1\r\ndata:2\r\n\r\nid: 7\r\n\r\ndata: {\"x\":1}\n\n",
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event.as_deref(), Some("a"));
    assert_eq!(events[0].data, "1\n2");
    assert_eq!(events[1].event, None);
    assert_eq!(events[1].data, "{\"x\":1}");
}
