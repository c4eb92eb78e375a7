//! `parse-event`: what one server-sent event of a streamed Messages response contributes
//! (thinking, text and tool-call fragments per content block, model, usage, stop reason,
//! in-stream errors).
//!
//! The event's own `type` member decides its meaning (the `event:` field is the fallback); an
//! event type Anthropic adds later passes as an empty delta instead of an error.

use serde::de::MapAccess;

use crate::mnemom::gateway::types::{
    AdapterError, Fragment, SseEvent, StreamDelta, ToolCallFragment,
};
use crate::wire::{self, Lenient, Node, Val, WireUsage, deserialize_leniently};

/// Reads one event. Anthropic pads the data's JSON with runs of spaces and sends `ping`s;
/// both read fine. An event without data contributes nothing.
///
/// Errors: [`AdapterError::Unsupported`] when the data is not JSON.
pub fn parse(event: &SseEvent) -> Result<StreamDelta, AdapterError> {
    let mut delta = empty_delta();
    if event.data.trim().is_empty() {
        return Ok(delta);
    }
    let data: Event<'_> = serde_json::from_slice(event.data.as_bytes()).map_err(|e| {
        // Only the position: serde's messages can quote the content.
        AdapterError::Unsupported(format!(
            "event data is not valid JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let index = data
        .index
        .map_or(0, |i| u32::try_from(i).unwrap_or(u32::MAX));

    match data.kind.as_str().or(event.event.as_deref()).unwrap_or("") {
        "message_start" => {
            delta.model = data.message.model;
            // At this point `output_tokens` is a placeholder (1 or so): the real figure comes
            // with `message_delta`, so only the input side is reported here.
            delta.usage = WireUsage {
                input_tokens: data.message.usage.input_tokens,
                cache_read_input_tokens: data.message.usage.cache_read_input_tokens,
                ..WireUsage::default()
            }
            .into_usage();
        }
        "content_block_start" => {
            let block = data.content_block;
            match block.kind.as_str() {
                // The start carries `input: {}`; the arguments follow as `input_json_delta`.
                Some("tool_use" | "server_tool_use") => {
                    delta.tool_call_fragments.push(ToolCallFragment {
                        index,
                        id: block.id,
                        name: block.name,
                        arguments: String::new(),
                    });
                }
                Some("text") => delta.text.extend(fragment(index, block.text)),
                Some("thinking") => delta.thinking.extend(fragment(index, block.thinking)),
                // `redacted_thinking` (encrypted), server tool results, and later types.
                _ => {}
            }
        }
        "content_block_delta" => {
            let change = data.delta;
            match change.kind.as_str() {
                Some("thinking_delta") => delta.thinking.extend(fragment(index, change.thinking)),
                Some("text_delta") => delta.text.extend(fragment(index, change.text)),
                Some("input_json_delta") => {
                    if let Some(arguments) = change.partial_json.filter(|a| !a.is_empty()) {
                        delta.tool_call_fragments.push(ToolCallFragment {
                            index,
                            id: None,
                            name: None,
                            arguments,
                        });
                    }
                }
                // `signature_delta`, `citations_delta`, and later types.
                _ => {}
            }
        }
        "message_delta" => {
            delta.stop_reason = data.delta.stop_reason;
            // Cumulative totals: with server tools the final `input_tokens` exceeds the one
            // announced by `message_start`, so every figure reported here is passed on.
            delta.usage = data.usage.into_usage();
        }
        "error" => {
            let kind = data
                .error
                .kind
                .into_string()
                .unwrap_or_else(|| "error".to_owned());
            delta.error = Some(match data.error.message {
                Some(message) => format!("{kind}: {message}"),
                None => kind,
            });
        }
        // `ping`, `message_stop`, `content_block_stop`, and event types added later.
        _ => {}
    }
    Ok(delta)
}

fn empty_delta() -> StreamDelta {
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

fn fragment(index: u32, text: Option<String>) -> Option<Fragment> {
    text.filter(|t| !t.is_empty())
        .map(|text| Fragment { index, text })
}

/// The data of one event. Every nested object is read leniently, so an event type added
/// later, whatever its shape, reads without error and falls through as an empty delta.
#[derive(Debug, Default)]
struct Event<'a> {
    kind: Val<'a>,
    index: Option<u64>,
    message: Node<'a>,
    content_block: Node<'a>,
    delta: Node<'a>,
    usage: WireUsage,
    error: Node<'a>,
}

impl<'de> Lenient<'de> for Event<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "type" => self.kind = wire::val(map)?,
            "index" => self.index = wire::val(map)?.as_u64(),
            "message" => self.message = map.next_value()?,
            "content_block" => self.content_block = map.next_value()?,
            "delta" => self.delta = map.next_value()?,
            "usage" => self.usage = map.next_value()?,
            "error" => self.error = map.next_value()?,
            _ => wire::skip(map)?,
        }
        Ok(())
    }
}

deserialize_leniently!(Event<'de>);

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: name.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    fn is_empty(d: &StreamDelta) -> bool {
        d.thinking.is_empty()
            && d.text.is_empty()
            && d.tool_call_fragments.is_empty()
            && d.tool_calls.is_empty()
            && d.usage.is_none()
            && d.model.is_none()
            && d.stop_reason.is_none()
            && d.error.is_none()
    }

    #[test]
    fn pings_stops_and_unknown_types_are_empty() {
        for data in [
            r#"{"type": "ping"}"#,
            r#"{"type":"message_stop"}   "#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"brand_new_event","delta":"not an object","usage":[1]}"#,
            "",
        ] {
            assert!(is_empty(&parse(&event(None, data)).unwrap()), "{data}");
        }
    }

    #[test]
    fn non_json_is_unsupported() {
        assert!(matches!(
            parse(&event(Some("message_start"), "[DONE")),
            Err(AdapterError::Unsupported(_))
        ));
    }

    #[test]
    fn event_name_is_the_fallback_type() {
        let d = parse(&event(
            Some("content_block_delta"),
            r#"{"index":2,"delta":{"type":"text_delta","text":"x"}}"#,
        ))
        .unwrap();
        assert_eq!(d.text.len(), 1);
        assert_eq!((d.text[0].index, d.text[0].text.as_str()), (2, "x"));
    }

    #[test]
    fn start_blocks_with_initial_content() {
        let d = parse(&event(
            None,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"thinking","thinking":"hm","signature":""}}"#,
        ))
        .unwrap();
        assert_eq!(
            (d.thinking[0].index, d.thinking[0].text.as_str()),
            (1, "hm")
        );
        let d = parse(&event(
            None,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"Hi"}}"#,
        ))
        .unwrap();
        assert_eq!(d.text[0].text, "Hi");
        let d = parse(&event(
            None,
            r#"{"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"t1","name":"f","input":{"a":1}}}"#,
        ))
        .unwrap();
        let f = &d.tool_call_fragments[0];
        assert_eq!(
            (
                f.index,
                f.id.as_deref(),
                f.name.as_deref(),
                f.arguments.as_str()
            ),
            (3, Some("t1"), Some("f"), "")
        );
    }

    #[test]
    fn error_without_message() {
        let d = parse(&event(
            Some("error"),
            r#"{"type":"error","error":{"type":"api_error"}}"#,
        ))
        .unwrap();
        assert_eq!(d.error.as_deref(), Some("api_error"));
    }
}
