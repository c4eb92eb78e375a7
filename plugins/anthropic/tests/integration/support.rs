//! Shared test helpers: fixture paths, SSE framing, accumulation of stream deltas the way the
//! host does it, and the JSON form of extractions used by the expected files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mnemom_adapter_anthropic::mnemom::gateway::types::{
    Extraction, SseEvent, StreamDelta, ToolCall, Usage,
};
use serde_json::{Value, json};

/// `plugins/fixtures/anthropic`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/anthropic")
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture files directly in `plugins/fixtures/anthropic` with extension `ext`, sorted.
pub fn fixture_files(ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

/// `expected/<stem>.json` for a fixture.
pub fn expected_for(fixture: &Path) -> Value {
    let stem = fixture.file_stem().unwrap().to_str().unwrap();
    let path = fixtures().join("expected").join(format!("{stem}.json"));
    serde_json::from_slice(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Frames an SSE transcript into events as the host does (WHATWG rules): events end at a blank
/// line, `\r\n` and `\n` both end lines, one space after the colon is dropped, `data:` lines
/// are joined with `\n`, comments are skipped, and an event without data is not dispatched.
pub fn frame(text: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut name: Option<String> = None;
    let mut data: Vec<&str> = Vec::new();
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
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
            "data" => data.push(value),
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

/// A streamed response put back together from its deltas, the way the host accumulates them:
/// fragments concatenated per block index (blocks in index order), tool-call fragments
/// concatenated per index (first id and name win), usage merged field by field (later figures
/// win), and the last model, stop reason and error.
#[derive(Debug, Default)]
pub struct Accumulated {
    thinking: BTreeMap<u32, String>,
    text: BTreeMap<u32, String>,
    tools: BTreeMap<u32, (Option<String>, Option<String>, String)>,
    whole_tools: Vec<ToolCall>,
    usage: Option<Usage>,
    model: Option<String>,
    stop_reason: Option<String>,
    error: Option<String>,
}

impl Accumulated {
    pub fn apply(&mut self, delta: StreamDelta) {
        for f in delta.thinking {
            self.thinking.entry(f.index).or_default().push_str(&f.text);
        }
        for f in delta.text {
            self.text.entry(f.index).or_default().push_str(&f.text);
        }
        for f in delta.tool_call_fragments {
            let slot = self.tools.entry(f.index).or_default();
            slot.0 = slot.0.take().or(f.id);
            slot.1 = slot.1.take().or(f.name);
            slot.2.push_str(&f.arguments);
        }
        self.whole_tools.extend(delta.tool_calls);
        if let Some(u) = delta.usage {
            let old = self.usage.take();
            let old = old.as_ref();
            self.usage = Some(Usage {
                input_tokens: u.input_tokens.or(old.and_then(|o| o.input_tokens)),
                output_tokens: u.output_tokens.or(old.and_then(|o| o.output_tokens)),
                reasoning_tokens: u.reasoning_tokens.or(old.and_then(|o| o.reasoning_tokens)),
                cached_input_tokens: u
                    .cached_input_tokens
                    .or(old.and_then(|o| o.cached_input_tokens)),
            });
        }
        self.model = delta.model.or(self.model.take());
        self.stop_reason = delta.stop_reason.or(self.stop_reason.take());
        self.error = delta.error.or(self.error.take());
    }

    /// The accumulated response in the shape of an extraction.
    pub fn extraction(&self) -> Extraction {
        let mut tool_calls: Vec<ToolCall> = self
            .tools
            .values()
            .map(|(id, name, arguments)| ToolCall {
                id: id.clone(),
                name: name.clone().unwrap_or_default(),
                arguments: arguments.clone(),
            })
            .collect();
        tool_calls.extend(self.whole_tools.iter().cloned());
        Extraction {
            thinking: self.thinking.values().cloned().collect(),
            text: self.text.values().cloned().collect(),
            tool_calls,
            usage: self.usage,
            model: self.model.clone(),
            stop_reason: self.stop_reason.clone(),
        }
    }

    /// The JSON form of the expected files of streams (an extraction plus `error`).
    pub fn to_json(&self) -> Value {
        let mut value = extraction_json(&self.extraction());
        value["error"] = json!(self.error);
        value
    }
}

/// The JSON form of an extraction in the expected files.
pub fn extraction_json(e: &Extraction) -> Value {
    json!({
        "thinking": e.thinking,
        "text": e.text,
        "tool_calls": e.tool_calls.iter().map(|t| json!({
            "id": t.id,
            "name": t.name,
            "arguments": t.arguments,
        })).collect::<Vec<_>>(),
        "usage": e.usage.map(|u| json!({
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "reasoning_tokens": u.reasoning_tokens,
            "cached_input_tokens": u.cached_input_tokens,
        })),
        "model": e.model,
        "stop_reason": e.stop_reason,
    })
}
