//! `parse-response`: what a complete (non-streamed) 2xx Messages response contains, read from
//! its `content` blocks, `usage`, `model` and `stop_reason`; and `summarize-response`, the same
//! read with every block's content skipped unread.

use mnemom_plugin_sdk::skim;
use serde::Deserialize;
use serde::de::MapAccess;

use crate::exports::mnemom::gateway::adapter_summary::ResponseSummary;
use crate::mnemom::gateway::types::{AdapterError, Extraction, ToolCall};
use crate::wire::{self, Lenient, List, Node, Val, WireUsage, deserialize_leniently};

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
    let message: Message<Node<'_>> = serde_json::from_slice(body).map_err(unsupported)?;

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

/// Reads usage, model, stop reason and the number of tool calls (`tool_use` and
/// `server_tool_use` blocks, as [`parse`] counts them) from a Messages response. Block content
/// (thinking, signatures, text, tool input) is skipped, never decoded or copied.
///
/// Errors: [`AdapterError::Unsupported`] when the body is not a JSON object.
pub fn summarize(body: &[u8]) -> Result<ResponseSummary, AdapterError> {
    // Long strings (thinking, signatures, text) are cut out first: the summary never reads
    // them, and stepping over them is most of its work (`mnemom_plugin_sdk::skim`).
    skim::read_skimmed(body, summarize_exact, |s| {
        !skim::is_elided(s.model.as_deref()) && !skim::is_elided(s.stop_reason.as_deref())
    })
}

/// [`summarize`] on `body` as it is.
fn summarize_exact(body: &[u8]) -> Result<ResponseSummary, AdapterError> {
    if !mnemom_plugin_sdk::json::starts_object(body) {
        return Err(AdapterError::Unsupported(
            "response body is not a JSON object".to_owned(),
        ));
    }
    let message: Message<BlockType<'_>> = serde_json::from_slice(body).map_err(unsupported)?;
    let tool_calls = message
        .content
        .0
        .iter()
        .filter(|block| matches!(block.0.as_str(), Some("tool_use" | "server_tool_use")))
        .count();
    Ok(ResponseSummary {
        usage: message.usage.into_usage(),
        model: message.model,
        stop_reason: message.stop_reason,
        tool_calls: u32::try_from(tool_calls).unwrap_or(u32::MAX),
    })
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

/// The members of a Messages response that the extraction reads, with each content block read
/// as `B`: a whole [`Node`] for `parse`, only its [`BlockType`] for `summarize`.
#[derive(Debug)]
struct Message<B> {
    content: List<B>,
    model: Option<String>,
    stop_reason: Option<String>,
    usage: WireUsage,
}

impl<B> Default for Message<B> {
    fn default() -> Self {
        Self {
            content: List::default(),
            model: None,
            stop_reason: None,
            usage: WireUsage::default(),
        }
    }
}

impl<'de, B: Deserialize<'de>> Lenient<'de> for Message<B> {
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

impl<'de, B: Deserialize<'de>> Deserialize<'de> for Message<B> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        mnemom_plugin_sdk::lenient::lenient(d)
    }
}

/// A content block's `type`; everything else in the block is skipped.
#[derive(Debug, Default)]
struct BlockType<'a>(Val<'a>);

impl<'de> Lenient<'de> for BlockType<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "type" => self.0 = wire::val(map)?,
            _ => wire::skip(map)?,
        }
        Ok(())
    }
}

deserialize_leniently!(BlockType<'de>);

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

    /// A response whose thinking, signature, text, tool input and one key are long strings.
    fn long_strings_body(model: &str) -> Vec<u8> {
        let long = "\\\"t\\u00e9 ".repeat(100);
        format!(
            r#"{{"model":"{model}","stop_reason":"end_turn","usage":{{"input_tokens":3,"{long}":1}},
            "content":[{{"type":"thinking","thinking":"{long}","signature":"{long}"}},{{"type":"text","text":"{long}"}},
            {{"type":"tool_use","id":"a","name":"f","input":{{"q":"{long}"}}}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn summary_counts_what_the_parse_reads() {
        let body = br#"{"model":"m","stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":4},
            "content":[{"type":"thinking","thinking":"t\u00e9","signature":"s"},{"type":"text","text":"x"},
            {"type":"tool_use","id":"a","name":"f","input":{}},{"type":"server_tool_use","name":"g"},"odd",{"type":7}]}"#;
        let full = parse(body).unwrap();
        let summary = summarize(body).unwrap();
        assert_eq!(summary.tool_calls as usize, full.tool_calls.len());
        assert_eq!(summary.tool_calls, 2);
        assert_eq!(summary.model, full.model);
        assert_eq!(summary.stop_reason, full.stop_reason);
        assert_eq!(format!("{:?}", summary.usage), format!("{:?}", full.usage));
        // Escaped keys, repeated keys (the last wins), odd shapes: as the parse reads them.
        for body in [
            &br#"{"\u0063ontent":[{"type":"tool_use"},{"t\u0079pe":"server_tool_use"}],"model":1}"#
                [..],
            br#"{"content":[{"type":"tool_use"}],"content":[],"model":"a","model":"b"}"#,
            br#"{"content":{"type":"tool_use"},"usage":null,"stop_reason":null}"#,
            br#"{"content":[{"type":"text","type":"tool_use"}],"usage":{"input_tokens":"x"}}"#,
        ]
        .into_iter()
        .map(<[u8]>::to_vec)
        // Long strings (cut by the skim): in content, as the model (read from the original),
        // as a key, with escapes.
        .chain([
            long_strings_body("claude-x"),
            long_strings_body(&"m".repeat(300)),
        ]) {
            let body = &body[..];
            let (full, summary) = (parse(body).unwrap(), summarize(body).unwrap());
            assert_eq!(
                summary.tool_calls as usize,
                full.tool_calls.len(),
                "{body:?}"
            );
            assert_eq!(
                (&summary.model, &summary.stop_reason),
                (&full.model, &full.stop_reason)
            );
            assert_eq!(format!("{:?}", summary.usage), format!("{:?}", full.usage));
        }
        for body in [&b"not json"[..], b"", b"[]", b"{\"content\":", b"{} x"] {
            assert!(
                matches!(summarize(body), Err(AdapterError::Unsupported(_))),
                "{body:?}"
            );
        }
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
