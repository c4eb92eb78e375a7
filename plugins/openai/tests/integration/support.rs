//! Helpers shared by the golden tests: the glue between this adapter's WIT records and the
//! SDK's test support (`mnemom_plugin_sdk::testing`: SSE framing as the host does it,
//! accumulation of stream deltas, and the JSON form of extractions that the `expected/` files
//! use).

use std::ops::Deref;
use std::path::PathBuf;

use mnemom_adapter_openai::{Extraction, SseEvent, StreamDelta, ToolCall, Usage};
use mnemom_plugin_sdk::testing::{self, Keys};
use serde_json::{Value, json};

pub use testing::assert_json_eq;

/// `plugins/fixtures/openai/` on disk (for directory listings and the request manifest's files).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/openai")
}

/// The JSON form of an extraction used by `expected/<stem>.json`.
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

/// Splits an SSE transcript into events the way the host frames them (see
/// [`testing::frame_sse`]).
pub fn frame_sse(transcript: &str) -> Vec<SseEvent> {
    testing::frame_sse(transcript)
        .into_iter()
        .map(|f| SseEvent {
            event: f.event,
            data: f.data,
        })
        .collect()
}

/// What a client of the gateway would have seen once a stream ended (see
/// [`testing::Accumulator`], whose fields and `call` it derefs to).
#[derive(Default)]
pub struct Accumulator(testing::Accumulator);

impl Deref for Accumulator {
    type Target = testing::Accumulator;

    fn deref(&self) -> &testing::Accumulator {
        &self.0
    }
}

impl Accumulator {
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

    /// The JSON form used by `expected/<stem>.json` for transcripts (with every error).
    pub fn to_json(&self) -> Value {
        let mut value = self.0.extraction().to_json(Keys::Snake);
        value["errors"] = json!(self.0.errors);
        value
    }
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
