//! Shared test helpers: fixture paths, and the glue between this adapter's WIT records and the
//! SDK's test support (`mnemom_plugin_sdk::testing`: SSE framing, accumulation of stream deltas
//! the way the host does it, and the JSON form of extractions used by the expected files).

use std::path::{Path, PathBuf};

use mnemom_adapter_anthropic::mnemom::gateway::types::{
    Extraction, SseEvent, StreamDelta, ToolCall, Usage,
};
use mnemom_plugin_sdk::testing::{self, Keys};
use serde_json::{Value, json};

pub use testing::read;

/// `plugins/fixtures/anthropic`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/anthropic")
}

/// The fixture files directly in `plugins/fixtures/anthropic` with extension `ext`, sorted.
pub fn fixture_files(ext: &str) -> Vec<PathBuf> {
    testing::files_with_extension(&fixtures(), ext)
}

/// The `.json` fixtures whose file name starts with `prefix`, sorted.
pub fn json_fixtures(prefix: &str) -> Vec<PathBuf> {
    fixture_files("json")
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect()
}

/// `expected/<stem>.json` for a fixture.
pub fn expected_for(fixture: &Path) -> Value {
    let stem = fixture.file_stem().unwrap().to_str().unwrap();
    testing::read_json(&fixtures().join("expected").join(format!("{stem}.json")))
}

/// Frames an SSE transcript into events as the host does (see [`testing::frame_sse`]).
pub fn frame(text: &str) -> Vec<SseEvent> {
    testing::frame_sse(text)
        .into_iter()
        .map(|f| SseEvent {
            event: f.event,
            data: f.data,
        })
        .collect()
}

/// A streamed response put back together from its deltas (see [`testing::Accumulator`]).
#[derive(Debug, Default)]
pub struct Accumulated(testing::Accumulator);

impl Accumulated {
    pub fn apply(&mut self, delta: StreamDelta) {
        let acc = &mut self.0;
        for f in delta.thinking {
            acc.thinking(f.index, &f.text);
        }
        for f in delta.text {
            acc.text(f.index, &f.text);
        }
        for f in delta.tool_call_fragments {
            acc.fragment(f.index, f.id, f.name, &f.arguments);
        }
        for c in delta.tool_calls {
            acc.whole_call(plain_call(c));
        }
        if let Some(u) = delta.usage {
            acc.usage(plain_usage(u));
        }
        acc.outcome(delta.model, delta.stop_reason, delta.error);
    }

    /// The accumulated response in the shape of an extraction.
    pub fn extraction(&self) -> Extraction {
        let e = self.0.extraction();
        Extraction {
            thinking: e.thinking,
            text: e.text,
            tool_calls: e
                .tool_calls
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.name.unwrap_or_default(),
                    arguments: c.arguments,
                })
                .collect(),
            usage: e.usage.map(|u| Usage {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                reasoning_tokens: u.reasoning_tokens,
                cached_input_tokens: u.cached_input_tokens,
            }),
            model: e.model,
            stop_reason: e.stop_reason,
        }
    }

    /// The JSON form of the expected files of streams (an extraction plus the last `error`).
    pub fn to_json(&self) -> Value {
        let mut value = self.0.extraction().to_json(Keys::Snake);
        value["error"] = json!(self.0.last_error());
        value
    }
}

/// The JSON form of an extraction in the expected files.
pub fn extraction_json(e: &Extraction) -> Value {
    testing::Extraction {
        thinking: e.thinking.clone(),
        text: e.text.clone(),
        tool_calls: e.tool_calls.iter().cloned().map(plain_call).collect(),
        usage: e.usage.map(plain_usage),
        model: e.model.clone(),
        stop_reason: e.stop_reason.clone(),
    }
    .to_json(Keys::Snake)
}

fn plain_call(c: ToolCall) -> testing::Call {
    testing::Call {
        id: c.id,
        name: Some(c.name),
        arguments: c.arguments,
    }
}

fn plain_usage(u: Usage) -> testing::Usage {
    testing::Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        reasoning_tokens: u.reasoning_tokens,
        cached_input_tokens: u.cached_input_tokens,
    }
}
