//! `parse-response`: what a complete (non-streamed) 2xx Messages response contains, read from
//! its `content` blocks, `usage`, `model` and `stop_reason`.

use serde::de::MapAccess;

use crate::mnemom::gateway::types::{AdapterError, Extraction, ToolCall};
use crate::wire::{self, Lenient, List, Node, WireUsage, deserialize_leniently};

/// Extracts thinking, text, tool calls, usage, model and stop reason from a Messages response.
///
/// - `thinking` blocks give thinking; `redacted_thinking` is neither thinking nor text (its
///   content is encrypted);
/// - `text` blocks give text;
/// - `tool_use` and `server_tool_use` blocks give tool calls, with `input` as compact JSON text
///   in the provider's key order;
/// - empty thinking and text blocks are left out, as the streamed form of the same response
///   carries nothing for them either.
///
/// Members of unexpected types are read as absent.
///
/// Errors: [`AdapterError::Unsupported`] when the body is not a JSON object.
pub fn parse(body: &[u8]) -> Result<Extraction, AdapterError> {
    if !mnemom_plugin_sdk::json::starts_object(body) {
        return Err(AdapterError::Unsupported(
            "response body is not a JSON object".to_owned(),
        ));
    }
    let message: Message<'_> = serde_json::from_slice(body).map_err(unsupported)?;

    let mut extraction = Extraction {
        thinking: Vec::new(),
        text: Vec::new(),
        tool_calls: Vec::new(),
        usage: message.usage.into_usage(),
        model: message.model,
        stop_reason: message.stop_reason,
    };
    for block in message.content.0 {
        match block.kind.as_str() {
            Some("thinking") => extraction.thinking.extend(non_empty(block.thinking)),
            Some("text") => extraction.text.extend(non_empty(block.text)),
            Some("tool_use" | "server_tool_use") => extraction.tool_calls.push(ToolCall {
                id: block.id,
                name: block.name.unwrap_or_default(),
                arguments: block.input.map_or_else(|| "{}".to_owned(), |input| input.0),
            }),
            _ => {}
        }
    }
    Ok(extraction)
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
}

fn unsupported(e: serde_json::Error) -> AdapterError {
    // Only the position: serde's messages can quote the content.
    AdapterError::Unsupported(format!(
        "response body is not a Messages response ({:?} error at line {} column {})",
        e.classify(),
        e.line(),
        e.column()
    ))
}

/// The members of a Messages response that the extraction reads.
#[derive(Debug, Default)]
struct Message<'a> {
    content: List<Node<'a>>,
    model: Option<String>,
    stop_reason: Option<String>,
    usage: WireUsage,
}

impl<'de> Lenient<'de> for Message<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "content" => self.content = map.next_value()?,
            "model" => self.model = wire::val(map)?.into_string(),
            "stop_reason" => self.stop_reason = wire::val(map)?.into_string(),
            "usage" => self.usage = map.next_value()?,
            _ => wire::skip(map)?,
        }
        Ok(())
    }
}

deserialize_leniently!(Message<'de>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_objects() {
        for body in [&b"not json"[..], b"", b"[]", b"{\"content\":", b"{} x"] {
            assert!(
                matches!(parse(body), Err(AdapterError::Unsupported(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn minimal_message() {
        let e = parse(br#"{"content":[{"type":"text","text":""},{"type":"text","text":"hi"}]}"#)
            .unwrap();
        assert_eq!(e.text, ["hi"]);
        assert!(e.thinking.is_empty() && e.tool_calls.is_empty());
        assert!(e.usage.is_none() && e.model.is_none() && e.stop_reason.is_none());
    }

    #[test]
    fn tool_arguments_keep_provider_order() {
        let e = parse(
            br#"{"content":[{"type":"tool_use","id":"t","name":"f","input":{ "z": 1, "a": [ "x y" ] }}]}"#,
        )
        .unwrap();
        assert_eq!(e.tool_calls[0].arguments, r#"{"z":1,"a":["x y"]}"#);
    }
}
