//! What the gateway learns from a response: thinking, text, tool calls, usage, model and stop
//! reason, assembled from an adapter's `parse-response` result or from its `parse-event` deltas.

use crate::plugin::adapter::{Extraction, ResponseSummary, StreamDelta};

/// One tool call.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ToolCall {
    /// Provider call id.
    pub id: Option<String>,
    /// Tool name.
    pub name: String,
    /// Arguments as JSON text.
    pub arguments: String,
}

/// Token usage.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// Reasoning tokens.
    pub reasoning_tokens: Option<u64>,
    /// Cached input tokens.
    pub cached_input_tokens: Option<u64>,
}

/// Everything extracted from one response.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Extracted {
    /// Thinking blocks in order.
    pub thinking: Vec<String>,
    /// Text blocks in order.
    pub text: Vec<String>,
    /// Tool calls in order.
    pub tool_calls: Vec<ToolCall>,
    /// Usage.
    pub usage: Usage,
    /// Model that answered.
    pub model: Option<String>,
    /// Stop reason.
    pub stop_reason: Option<String>,
    /// Errors the provider reported inside a stream.
    pub stream_errors: Vec<String>,
    /// `Some(n)` when only the adapter's summary was read (`summarize-response`, for a response
    /// whose content nothing reads): thinking, text and tool calls are then empty, and `n` is
    /// the number of tool calls the response made.
    pub summarized_tool_calls: Option<u32>,
}

/// Separator between thinking blocks when they are analysed as one text (as the original did).
pub const THINKING_SEPARATOR: &str = "\n\n---\n\n";

impl Extracted {
    /// All thinking as one text.
    pub fn thinking_text(&self) -> String {
        self.thinking.join(THINKING_SEPARATOR)
    }

    /// Total bytes of thinking (what logs may say about it instead of its content).
    pub fn thinking_bytes(&self) -> usize {
        self.thinking.iter().map(String::len).sum()
    }

    /// How many tool calls the response made (read or only counted).
    pub fn tool_call_count(&self) -> usize {
        match self.summarized_tool_calls {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => self.tool_calls.len(),
        }
    }

    /// Whether only the summary was read (no thinking, text or tool calls by design).
    pub fn is_summary(&self) -> bool {
        self.summarized_tool_calls.is_some()
    }
}

impl From<ResponseSummary> for Extracted {
    fn from(s: ResponseSummary) -> Self {
        Self {
            usage: s.usage.map(usage_from).unwrap_or_default(),
            model: s.model,
            stop_reason: s.stop_reason,
            summarized_tool_calls: Some(s.tool_calls),
            ..Self::default()
        }
    }
}

impl From<Extraction> for Extracted {
    fn from(e: Extraction) -> Self {
        Self {
            thinking: e.thinking.into_iter().filter(|t| !t.is_empty()).collect(),
            text: e.text,
            tool_calls: e
                .tool_calls
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.name,
                    arguments: c.arguments,
                })
                .collect(),
            usage: e.usage.map(usage_from).unwrap_or_default(),
            model: e.model,
            stop_reason: e.stop_reason,
            stream_errors: Vec::new(),
            summarized_tool_calls: None,
        }
    }
}

fn usage_from(u: crate::plugin::bindings::wit_types::Usage) -> Usage {
    Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        reasoning_tokens: u.reasoning_tokens,
        cached_input_tokens: u.cached_input_tokens,
    }
}

/// Assembles stream deltas into an [`Extracted`].
#[derive(Debug, Default)]
pub struct StreamAccumulator {
    thinking: Vec<(u32, String)>,
    text: Vec<(u32, String)>,
    fragments: Vec<(u32, ToolCall)>,
    complete: Vec<ToolCall>,
    usage: Usage,
    model: Option<String>,
    stop_reason: Option<String>,
    errors: Vec<String>,
}

fn append(blocks: &mut Vec<(u32, String)>, index: u32, text: &str) {
    match blocks.iter_mut().find(|(i, _)| *i == index) {
        Some((_, block)) => block.push_str(text),
        None => blocks.push((index, text.to_owned())),
    }
}

fn merge(slot: &mut Option<u64>, value: Option<u64>) {
    if value.is_some() {
        *slot = value;
    }
}

impl StreamAccumulator {
    /// Applies one event's delta.
    pub fn apply(&mut self, delta: StreamDelta) {
        for f in delta.thinking {
            append(&mut self.thinking, f.index, &f.text);
        }
        for f in delta.text {
            append(&mut self.text, f.index, &f.text);
        }
        for f in delta.tool_call_fragments {
            let call = match self.fragments.iter_mut().find(|(i, _)| *i == f.index) {
                Some((_, call)) => call,
                None => {
                    self.fragments.push((f.index, ToolCall::default()));
                    let last = self.fragments.len() - 1;
                    &mut self.fragments[last].1
                }
            };
            if f.id.is_some() {
                call.id = f.id;
            }
            if let Some(name) = f.name {
                call.name.push_str(&name);
            }
            call.arguments.push_str(&f.arguments);
        }
        for c in delta.tool_calls {
            self.complete.push(ToolCall {
                id: c.id,
                name: c.name,
                arguments: c.arguments,
            });
        }
        if let Some(u) = delta.usage {
            merge(&mut self.usage.input_tokens, u.input_tokens);
            merge(&mut self.usage.output_tokens, u.output_tokens);
            merge(&mut self.usage.reasoning_tokens, u.reasoning_tokens);
            merge(&mut self.usage.cached_input_tokens, u.cached_input_tokens);
        }
        if delta.model.is_some() {
            self.model = delta.model;
        }
        if delta.stop_reason.is_some() {
            self.stop_reason = delta.stop_reason;
        }
        if let Some(e) = delta.error {
            self.errors.push(e);
        }
    }

    /// The assembled result.
    pub fn finish(self) -> Extracted {
        let mut tool_calls: Vec<ToolCall> = self.fragments.into_iter().map(|(_, c)| c).collect();
        tool_calls.extend(self.complete);
        Extracted {
            thinking: self
                .thinking
                .into_iter()
                .map(|(_, t)| t)
                .filter(|t| !t.is_empty())
                .collect(),
            text: self.text.into_iter().map(|(_, t)| t).collect(),
            tool_calls,
            usage: self.usage,
            model: self.model,
            stop_reason: self.stop_reason,
            stream_errors: self.errors,
            summarized_tool_calls: None,
        }
    }
}
