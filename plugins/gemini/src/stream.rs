//! Streamed responses (`streamGenerateContent?alt=sse`): each SSE event's data is one whole
//! `GenerateContentResponse` chunk. Thoughts and text continue across chunks in one block each
//! (index 0); function calls arrive complete, one part each; usage metadata is cumulative.

use crate::response::{GenerateContentResponse, PartKind};
use crate::types::{AdapterError, Fragment, SseEvent, StreamDelta};

/// Gemini streams one candidate's thoughts and text as single growing blocks.
const BLOCK: u32 = 0;

/// Extracts what one SSE event of a Gemini stream contributes.
pub fn parse_event(event: &SseEvent) -> Result<StreamDelta, AdapterError> {
    let mut delta = StreamDelta {
        thinking: Vec::new(),
        text: Vec::new(),
        tool_call_fragments: Vec::new(),
        tool_calls: Vec::new(),
        usage: None,
        model: None,
        stop_reason: None,
        error: None,
    };
    let data = event.data.trim();
    // Gemini sends neither keep-alives nor a terminator; tolerate both from proxies in between.
    if data.is_empty() || data == "[DONE]" {
        return Ok(delta);
    }
    let mut chunk = GenerateContentResponse::from_slice(data.as_bytes())?;
    if let Some(error) = &chunk.error {
        delta.error = Some(error.describe());
    }
    let (parts, stop_reason) = chunk.take_parts_and_stop();
    for part in parts {
        match part.into_kind() {
            Some(PartKind::Thought(text)) => delta.thinking.push(Fragment { index: BLOCK, text }),
            Some(PartKind::Text(text)) => delta.text.push(Fragment { index: BLOCK, text }),
            Some(PartKind::Call(call)) => delta.tool_calls.push(call),
            None => {}
        }
    }
    delta.usage = chunk.usage();
    delta.model = chunk.model_version.take();
    delta.stop_reason = stop_reason;
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.into(),
        }
    }

    #[test]
    fn thought_and_text_fragments_share_block_zero() {
        let d = parse_event(&event(
            r#"{"candidates":[{"content":{"parts":[{"text":"hmm","thought":true},{"text":"Hi"},{"text":" there"}],"role":"model"},"index":0}],"modelVersion":"gemini-2.5-pro"}"#,
        ))
        .unwrap();
        assert_eq!(d.thinking.len(), 1);
        assert_eq!(
            (d.thinking[0].index, d.thinking[0].text.as_str()),
            (0, "hmm")
        );
        let text: Vec<_> = d.text.iter().map(|f| (f.index, f.text.as_str())).collect();
        assert_eq!(text, [(0, "Hi"), (0, " there")]);
        assert!(d.tool_calls.is_empty() && d.tool_call_fragments.is_empty());
        assert_eq!(d.model.as_deref(), Some("gemini-2.5-pro"));
        assert!(d.usage.is_none() && d.stop_reason.is_none() && d.error.is_none());
    }

    #[test]
    fn function_calls_arrive_whole() {
        let d = parse_event(&event(
            r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"get","args":{"q": "x"}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":1}}"#,
        ))
        .unwrap();
        assert_eq!(d.tool_calls.len(), 1);
        assert_eq!(d.tool_calls[0].name, "get");
        assert_eq!(d.tool_calls[0].arguments, r#"{"q":"x"}"#);
        assert_eq!(d.stop_reason.as_deref(), Some("STOP"));
        let u = d.usage.unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.reasoning_tokens),
            (Some(9), Some(1), None)
        );
    }

    #[test]
    fn in_stream_error_is_reported() {
        let d = parse_event(&event(
            r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
        ))
        .unwrap();
        assert_eq!(
            d.error.as_deref(),
            Some("UNAVAILABLE: The model is overloaded. Please try again later.")
        );
        let d = parse_event(&event(r#"{"error":{"code":500,"message":"boom"}}"#)).unwrap();
        assert_eq!(d.error.as_deref(), Some("500: boom"));
    }

    #[test]
    fn empty_and_done_events_contribute_nothing() {
        for data in ["", "  ", "[DONE]"] {
            let d = parse_event(&event(data)).unwrap();
            assert!(d.text.is_empty() && d.thinking.is_empty() && d.usage.is_none());
        }
    }

    #[test]
    fn invalid_json_is_unsupported() {
        for data in ["{\"candidates\": [", "not json", "[1]", "42"] {
            assert!(
                matches!(parse_event(&event(data)), Err(AdapterError::Unsupported(_))),
                "{data}"
            );
        }
    }
}
