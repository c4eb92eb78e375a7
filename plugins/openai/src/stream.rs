//! Streamed responses, one host-framed SSE event at a time: Chat Completions
//! `chat.completion.chunk` data lines (ending with `[DONE]`) and Responses API typed events
//! (`response.output_text.delta`, `response.reasoning_summary_text.delta`, ...). Each call is
//! independent: fragments carry the block index (the choice for Chat Completions, the output
//! item for the Responses API) and the host concatenates them.

use crate::wire::{self, Doc, RawUsage};
use crate::{AdapterError, Fragment, SseEvent, StreamDelta, ToolCallFragment};

/// Responses API event types this parser reads; every other `response.*` event (item and part
/// bookkeeping, `.done` recaps, annotations, audio, tool progress) contributes nothing.
const RESPONSES_EVENTS: &[&str] = &[
    "response.created",
    "response.in_progress",
    "response.queued",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.output_text.delta",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.custom_tool_call_input.delta",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
];

/// Separator put between the summary parts of one reasoning item, which arrive as separate
/// parts under the same output index: a blank line, as between paragraphs. Without it the
/// parts would run together mid-sentence in the thinking the AIP analysis reads.
pub const SUMMARY_PART_SEPARATOR: &str = "\n\n";

fn empty() -> StreamDelta {
    StreamDelta {
        thinking: Vec::new(),
        text: Vec::new(),
        tool_call_fragments: Vec::new(),
        tool_calls: Vec::new(),
        usage: None,
        model: None,
        stop_reason: None,
        error: None,
    }
}

fn decode(data: &str) -> Result<Doc<'_>, AdapterError> {
    if !mnemom_plugin_sdk::json::starts_object(data.as_bytes()) {
        return Err(AdapterError::Unsupported(
            "stream event data is not a JSON object".into(),
        ));
    }
    wire::parse_doc(data.as_bytes()).map_err(|e| {
        AdapterError::Unsupported(format!(
            "stream event data is not a readable JSON object: {e}"
        ))
    })
}

/// What one SSE event contributes (the `parse-event` export). `[DONE]`, empty data and unknown
/// Responses event types contribute nothing; data that is not a JSON object is `Unsupported`.
pub fn parse_event(event: &SseEvent) -> Result<StreamDelta, AdapterError> {
    let data = event.data.trim();
    if data.is_empty() || data == "[DONE]" {
        return Ok(empty());
    }
    // The Responses API names every event after its `type`: the ones we do not read are
    // skipped undecoded (they include `.done` recaps repeating the whole text).
    if let Some(name) = event.event.as_deref().map(str::trim)
        && (name.starts_with("response.") || name == "error")
    {
        if !RESPONSES_EVENTS.contains(&name) {
            return Ok(empty());
        }
        let mut doc = decode(data)?;
        let kind = std::mem::take(&mut doc.kind);
        return Ok(responses_event(kind.as_str().unwrap_or(name), doc));
    }
    let mut doc = decode(data)?;
    let kind = std::mem::take(&mut doc.kind);
    match kind.as_str() {
        // A Responses event relayed without its `event:` line.
        Some(kind) if doc.choices.0.is_none() => Ok(responses_event(kind, doc)),
        _ => Ok(chat_chunk(doc)),
    }
}

/// A Chat Completions chunk (or a compatible provider's in-stream `{"error": ...}`).
fn chat_chunk(mut doc: Doc<'_>) -> StreamDelta {
    let mut out = empty();
    out.model = std::mem::take(&mut doc.model).owned();
    out.usage = doc.usage.take().map(RawUsage::into_usage);
    out.error = std::mem::take(&mut doc.error).describe();
    // Only the first choice is read, as in `parse-response`: with `n > 1` the others are
    // alternatives, not more of the same answer.
    let Some(choice) = doc
        .choices
        .items()
        .into_iter()
        .find(|c| c.index.0.unwrap_or(0) == 0)
    else {
        return out;
    };
    out.stop_reason = choice.finish_reason.owned();
    let Some(mut delta) = choice.delta else {
        return out;
    };
    out.thinking
        .extend(delta.thinking().map(|text| Fragment { index: 0, text }));
    out.text.extend(
        delta
            .content
            .0
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(|text| Fragment { index: 0, text }),
    );
    for (position, call) in delta.tool_calls.items().into_iter().enumerate() {
        // Some compatible servers omit `index`; their calls then arrive whole, in order.
        let index = call
            .index
            .index()
            .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
        if let Some((id, name, arguments)) = call.into_parts() {
            out.tool_call_fragments.push(ToolCallFragment {
                index,
                id,
                name,
                arguments: arguments.unwrap_or_default(),
            });
        }
    }
    out
}

/// A Responses API event of one of the [`RESPONSES_EVENTS`] types.
fn responses_event(kind: &str, mut doc: Doc<'_>) -> StreamDelta {
    let mut out = empty();
    let index = doc.output_index.index().unwrap_or(0);
    match kind {
        "response.created" | "response.in_progress" | "response.queued" => {
            out.model = doc.response.and_then(|r| r.model.owned());
        }
        "response.reasoning_summary_part.added" if doc.summary_index.0.unwrap_or(0) > 0 => {
            out.thinking.push(Fragment {
                index,
                text: SUMMARY_PART_SEPARATOR.to_owned(),
            });
        }
        "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
            out.thinking
                .extend(doc.delta.non_empty().map(|text| Fragment { index, text }));
        }
        "response.output_text.delta" => {
            out.text
                .extend(doc.delta.non_empty().map(|text| Fragment { index, text }));
        }
        "response.output_item.added" => {
            if let Some(item) = doc.item {
                let arguments = match item.kind.as_str() {
                    Some("function_call") => Some(item.arguments),
                    Some("custom_tool_call") => Some(item.input),
                    _ => None,
                };
                if let Some(arguments) = arguments {
                    out.tool_call_fragments.push(ToolCallFragment {
                        index,
                        id: item.call_id.owned(),
                        name: item.name.owned(),
                        arguments: arguments.owned().unwrap_or_default(),
                    });
                }
            }
        }
        "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
            if let Some(arguments) = doc.delta.non_empty() {
                out.tool_call_fragments.push(ToolCallFragment {
                    index,
                    id: None,
                    name: None,
                    arguments,
                });
            }
        }
        "response.completed" | "response.incomplete" | "response.failed" => {
            if let Some(mut response) = doc.response {
                out.model = std::mem::take(&mut response.model).owned();
                out.usage = response.usage.take().map(RawUsage::into_usage);
                out.error = std::mem::take(&mut response.error).describe();
                out.stop_reason = response.responses_stop_reason();
            }
        }
        "error" => {
            // Documented shape: `code`/`message` at the top level; also seen nested in `error`.
            let mut error = std::mem::take(&mut doc.error);
            error.code = error.code.or(doc.code.0);
            error.message = error.message.or(doc.message.owned());
            out.error = error.describe();
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Usage;

    fn event(name: Option<&str>, data: &str) -> StreamDelta {
        parse_event(&SseEvent {
            event: name.map(str::to_owned),
            data: data.to_owned(),
        })
        .unwrap()
    }

    #[test]
    fn done_and_blank_data_are_empty() {
        assert_eq!(event(None, "[DONE]"), empty());
        assert_eq!(event(None, " [DONE]\n"), empty());
        assert_eq!(event(Some("ping"), ""), empty());
    }

    #[test]
    fn invalid_json_is_unsupported() {
        for (name, data) in [
            (None, "{"),
            (None, "hello"),
            (Some("response.output_text.delta"), "{]"),
        ] {
            let got = parse_event(&SseEvent {
                event: name.map(str::to_owned),
                data: data.to_owned(),
            });
            assert!(matches!(got, Err(AdapterError::Unsupported(_))), "{data}");
        }
    }

    #[test]
    fn unknown_responses_events_are_empty_without_decoding() {
        assert_eq!(
            event(Some("response.output_text.done"), "not even json"),
            empty()
        );
        assert_eq!(
            event(
                None,
                r#"{"type":"response.web_search_call.searching","output_index":1}"#
            ),
            empty()
        );
        assert_eq!(
            event(
                Some("response.output_text.annotation.added"),
                r#"{"annotation":{}}"#
            ),
            empty()
        );
    }

    #[test]
    fn responses_events_without_event_lines() {
        let d = event(
            None,
            r#"{"type":"response.output_text.delta","output_index":2,"content_index":0,"delta":"Hi"}"#,
        );
        assert_eq!(
            d.text,
            vec![Fragment {
                index: 2,
                text: "Hi".into()
            }]
        );
    }

    #[test]
    fn chat_reasoning_fields_and_other_choices() {
        let d = event(
            None,
            r#"{"object":"chat.completion.chunk","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"reasoning_content":"hm","content":null}}]}"#,
        );
        assert_eq!(
            d.thinking,
            vec![Fragment {
                index: 0,
                text: "hm".into()
            }]
        );
        assert_eq!(d.model.as_deref(), Some("deepseek-reasoner"));
        let d = event(
            None,
            r#"{"choices":[{"index":0,"delta":{"reasoning":"or"}}]}"#,
        );
        assert_eq!(
            d.thinking,
            vec![Fragment {
                index: 0,
                text: "or".into()
            }]
        );
        let d = event(
            None,
            r#"{"choices":[{"index":1,"delta":{"content":"alt"}}]}"#,
        );
        assert!(d.text.is_empty());
    }

    #[test]
    fn chat_error_chunks() {
        let d = event(None, r#"{"error":{"message":"Rate limit","code":429}}"#);
        assert_eq!(d.error.as_deref(), Some("429: Rate limit"));
        let d = event(None, r#"{"error":"overloaded"}"#);
        assert_eq!(d.error.as_deref(), Some("overloaded"));
    }

    #[test]
    fn documented_error_event_shape() {
        let d = event(
            Some("error"),
            r#"{"type":"error","code":"ERR_SOMETHING","message":"Something went wrong","param":null,"sequence_number":1}"#,
        );
        assert_eq!(
            d.error.as_deref(),
            Some("ERR_SOMETHING: Something went wrong")
        );
    }

    #[test]
    fn summary_parts_are_separated() {
        let first = event(
            Some("response.reasoning_summary_part.added"),
            r#"{"type":"response.reasoning_summary_part.added","output_index":0,"summary_index":0,"part":{"type":"summary_text","text":""}}"#,
        );
        assert!(first.thinking.is_empty());
        let second = event(
            Some("response.reasoning_summary_part.added"),
            r#"{"type":"response.reasoning_summary_part.added","output_index":3,"summary_index":1,"part":{"type":"summary_text","text":""}}"#,
        );
        assert_eq!(
            second.thinking,
            vec![Fragment {
                index: 3,
                text: "\n\n".into()
            }]
        );
    }

    #[test]
    fn incomplete_response_stop_reason() {
        let d = event(
            Some("response.incomplete"),
            r#"{"type":"response.incomplete","response":{"model":"o3","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"usage":{"input_tokens":1,"output_tokens":2,"output_tokens_details":{"reasoning_tokens":2},"input_tokens_details":{"cached_tokens":0}},"error":null}}"#,
        );
        assert_eq!(d.stop_reason.as_deref(), Some("max_output_tokens"));
        assert_eq!(d.error, None);
        assert_eq!(
            d.usage,
            Some(Usage {
                input_tokens: Some(1),
                output_tokens: Some(2),
                reasoning_tokens: Some(2),
                cached_input_tokens: Some(0)
            })
        );
    }

    #[test]
    fn custom_tool_calls_stream_like_function_calls() {
        let d = event(
            Some("response.output_item.added"),
            r#"{"type":"response.output_item.added","output_index":1,"item":{"type":"custom_tool_call","call_id":"c","name":"sql","input":""}}"#,
        );
        assert_eq!(
            d.tool_call_fragments,
            vec![ToolCallFragment {
                index: 1,
                id: Some("c".into()),
                name: Some("sql".into()),
                arguments: String::new()
            }]
        );
        let d = event(
            Some("response.custom_tool_call_input.delta"),
            r#"{"type":"response.custom_tool_call_input.delta","output_index":1,"delta":"SELECT"}"#,
        );
        assert_eq!(d.tool_call_fragments[0].arguments, "SELECT");
        let d = event(
            Some("response.output_item.added"),
            r#"{"type":"response.output_item.added","output_index":0,"item":{"type":"message","content":[]}}"#,
        );
        assert!(d.tool_call_fragments.is_empty());
    }
}
