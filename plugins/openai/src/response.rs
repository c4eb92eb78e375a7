//! Extraction from complete (non-streamed) responses: Chat Completions `chat.completion` bodies
//! (including the `reasoning_content`/`reasoning` fields of DeepSeek/OpenRouter-style compatible
//! providers) and Responses API `response` objects (reasoning summaries and reasoning text,
//! output text, function and custom tool calls); and the summary of the same bodies (usage, model,
//! stop reason, tool-call count).

use mnemom_plugin_sdk::skim;

use crate::exports::mnemom::gateway::adapter_summary::ResponseSummary;
use crate::wire::{self, Item, Message};
use crate::{AdapterError, Extraction, ToolCall};

/// Extracts thinking, text, tool calls, usage, model and stop reason from a complete 2xx body
/// (the `parse-response` export). A JSON object of neither API's shape (an embeddings list, say)
/// yields only its model and usage; a body that is not a JSON object is `Unsupported`.
pub fn parse(body: &[u8]) -> Result<Extraction, AdapterError> {
    let mut doc = read(body)?;
    let mut out = Extraction {
        thinking: Vec::new(),
        text: Vec::new(),
        tool_calls: Vec::new(),
        usage: doc.usage.take().map(wire::RawUsage::into_usage),
        model: std::mem::take(&mut doc.model).owned(),
        stop_reason: None,
    };
    if let Some(choices) = doc.choices.0.take() {
        // Only the first choice counts: with `n > 1` the others are alternatives.
        if let Some(choice) = choices.into_iter().next() {
            out.stop_reason = choice.finish_reason.owned();
            if let Some(message) = choice.message {
                read_chat_message(message, &mut out);
            }
        }
    } else if let Some(items) = doc.output.0.take() {
        for item in items {
            read_output_item(item, &mut out);
        }
        out.stop_reason = doc.responses_stop_reason();
    }
    Ok(out)
}

/// Usage, model, stop reason and the number of tool calls of a complete 2xx body (the
/// `summarize-response` export): the same reading as [`parse`], without copying out thinking,
/// text or arguments.
pub fn summarize(body: &[u8]) -> Result<ResponseSummary, AdapterError> {
    // Long strings (reasoning, text, arguments) are cut out first: the summary never reads
    // them, and stepping over them is most of its work (`mnemom_plugin_sdk::skim`).
    skim::read_skimmed(body, summarize_exact, |s| {
        !skim::is_elided(s.model.as_deref()) && !skim::is_elided(s.stop_reason.as_deref())
    })
}

/// [`summarize`] on `body` as it is.
fn summarize_exact(body: &[u8]) -> Result<ResponseSummary, AdapterError> {
    let mut doc = read(body)?;
    let usage = doc.usage.take().map(wire::RawUsage::into_usage);
    let model = std::mem::take(&mut doc.model).owned();
    let (stop_reason, tool_calls) = if let Some(choices) = doc.choices.0.take() {
        // As in `parse`: the first choice only.
        match choices.into_iter().next() {
            Some(choice) => {
                let calls = choice.message.map_or(0, |message| {
                    message
                        .tool_calls
                        .items()
                        .into_iter()
                        .filter_map(wire::ChatToolCall::into_tool_call)
                        .count()
                });
                (choice.finish_reason.owned(), calls)
            }
            None => (None, 0),
        }
    } else if let Some(items) = doc.output.0.take() {
        let calls = items
            .iter()
            .filter(|item| {
                matches!(
                    item.kind.as_str(),
                    Some("function_call" | "custom_tool_call")
                )
            })
            .count();
        (doc.responses_stop_reason(), calls)
    } else {
        (None, 0)
    };
    Ok(ResponseSummary {
        usage,
        model,
        stop_reason,
        tool_calls: u32::try_from(tool_calls).unwrap_or(u32::MAX),
    })
}

/// The document of a complete 2xx body; `Unsupported` when it is not a JSON object.
fn read(body: &[u8]) -> Result<wire::Doc<'_>, AdapterError> {
    if !mnemom_plugin_sdk::json::starts_object(body) {
        return Err(AdapterError::Unsupported(
            "response body is not a JSON object".into(),
        ));
    }
    wire::parse_doc(body).map_err(|e| {
        AdapterError::Unsupported(format!("response body is not a readable JSON object: {e}"))
    })
}

fn read_chat_message(mut message: Message<'_>, out: &mut Extraction) {
    out.thinking.extend(message.thinking());
    out.text
        .extend(message.content.0.into_iter().filter(|t| !t.is_empty()));
    out.tool_calls.extend(
        message
            .tool_calls
            .items()
            .into_iter()
            .filter_map(wire::ChatToolCall::into_tool_call),
    );
}

fn read_output_item(item: Item<'_>, out: &mut Extraction) {
    let texts = |parts: crate::de::List<wire::Part<'_>>, kind: &str| {
        parts
            .items()
            .into_iter()
            .filter(|p| p.kind.as_str().is_none_or(|k| k == kind))
            .filter_map(|p| p.text.non_empty())
            .collect::<Vec<_>>()
    };
    match item.kind.as_str() {
        Some("reasoning") => {
            out.thinking.extend(texts(item.summary, "summary_text"));
            out.thinking.extend(texts(item.content, "reasoning_text"));
        }
        Some("message") => out.text.extend(texts(item.content, "output_text")),
        Some("function_call") => out.tool_calls.push(ToolCall {
            id: item.call_id.owned(),
            name: item.name.owned().unwrap_or_default(),
            arguments: item.arguments.owned().unwrap_or_default(),
        }),
        Some("custom_tool_call") => out.tool_calls.push(ToolCall {
            id: item.call_id.owned(),
            name: item.name.owned().unwrap_or_default(),
            arguments: item.input.owned().unwrap_or_default(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Usage;

    fn extract(json: &str) -> Extraction {
        parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn chat_reasoning_content_and_reasoning() {
        let e = extract(
            r#"{"choices":[{"message":{"content":"4","reasoning_content":"2+2"},"finish_reason":"stop"}]}"#,
        );
        assert_eq!(e.thinking, vec!["2+2"]);
        assert_eq!(e.text, vec!["4"]);
        assert_eq!(e.stop_reason.as_deref(), Some("stop"));
        let e = extract(r#"{"choices":[{"message":{"content":"4","reasoning":"sum"}}]}"#);
        assert_eq!(e.thinking, vec!["sum"]);
        let e = extract(
            r#"{"choices":[{"message":{"content":"4","reasoning_content":"","reasoning":{"x":1}}}]}"#,
        );
        assert!(e.thinking.is_empty());
    }

    #[test]
    fn chat_content_parts_and_custom_tools() {
        let e = extract(
            r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"image_url"},{"type":"text","text":"b"}],
                "tool_calls":[{"id":"c1","type":"custom","custom":{"name":"sql","input":"SELECT 1"}},{"type":"mystery"}]}}]}"#,
        );
        assert_eq!(e.text, vec!["a", "b"]);
        assert_eq!(
            e.tool_calls,
            vec![ToolCall {
                id: Some("c1".into()),
                name: "sql".into(),
                arguments: "SELECT 1".into()
            }]
        );
    }

    #[test]
    fn summary_of_long_strings_and_a_long_model() {
        let long = "\\\"t\\u00e9 ".repeat(100);
        for model in ["gpt-5".to_owned(), "g".repeat(300)] {
            let chat = format!(
                r#"{{"model":"{model}","choices":[{{"message":{{"content":"{long}","reasoning_content":"{long}",
                "tool_calls":[{{"id":"c","type":"function","function":{{"name":"f","arguments":"{long}"}}}}]}},
                "finish_reason":"tool_calls"}}],"usage":{{"prompt_tokens":3,"{long}":1}}}}"#
            );
            let responses = format!(
                r#"{{"object":"response","model":"{model}","status":"completed","output":[
                {{"type":"reasoning","summary":[{{"type":"summary_text","text":"{long}"}}]}},
                {{"type":"message","content":[{{"type":"output_text","text":"{long}"}}]}},
                {{"type":"function_call","call_id":"c","name":"f","arguments":"{long}"}}],
                "usage":{{"input_tokens":3,"output_tokens":4}}}}"#
            );
            for body in [chat, responses] {
                let (full, summary) = (
                    parse(body.as_bytes()).unwrap(),
                    summarize(body.as_bytes()).unwrap(),
                );
                assert_eq!(summary.tool_calls, 1);
                assert_eq!(summary.tool_calls as usize, full.tool_calls.len());
                assert_eq!(
                    (&summary.model, &summary.stop_reason),
                    (&full.model, &full.stop_reason)
                );
                assert_eq!(summary.model.as_ref(), Some(&model));
                assert_eq!(format!("{:?}", summary.usage), format!("{:?}", full.usage));
            }
        }
    }

    #[test]
    fn only_the_first_choice_counts() {
        let e = extract(
            r#"{"choices":[{"message":{"content":"one"},"finish_reason":"stop"},{"message":{"content":"two"},"finish_reason":"length"}]}"#,
        );
        assert_eq!(e.text, vec!["one"]);
        assert_eq!(e.stop_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn responses_reasoning_text_and_incomplete() {
        let e = extract(
            r#"{"object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},
                "output":[{"type":"reasoning","summary":[],"content":[{"type":"reasoning_text","text":"raw"}]},
                          {"type":"web_search_call","status":"completed","action":{"query":"x"}},
                          {"type":"message","content":[{"type":"refusal","refusal":"no"},{"type":"output_text","text":"partial"}]}],
                "usage":{"input_tokens":5,"output_tokens":7,"output_tokens_details":{"reasoning_tokens":3}}}"#,
        );
        assert_eq!(e.thinking, vec!["raw"]);
        assert_eq!(e.text, vec!["partial"]);
        assert_eq!(e.stop_reason.as_deref(), Some("max_output_tokens"));
        assert_eq!(
            e.usage,
            Some(Usage {
                input_tokens: Some(5),
                output_tokens: Some(7),
                reasoning_tokens: Some(3),
                cached_input_tokens: None
            })
        );
    }

    #[test]
    fn responses_custom_tool_calls() {
        let e = extract(
            r#"{"object":"response","status":"completed","output":[{"type":"custom_tool_call","call_id":"call_1","name":"apply_patch","input":"*** Begin Patch"}]}"#,
        );
        assert_eq!(
            e.tool_calls,
            vec![ToolCall {
                id: Some("call_1".into()),
                name: "apply_patch".into(),
                arguments: "*** Begin Patch".into()
            }]
        );
        assert_eq!(e.stop_reason.as_deref(), Some("completed"));
    }

    #[test]
    fn other_json_objects_yield_model_and_usage_only() {
        let e = extract(
            r#"{"object":"list","data":[{"embedding":[0.1]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#,
        );
        assert_eq!(e.model.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(e.usage.and_then(|u| u.input_tokens), Some(8));
        assert!(e.text.is_empty() && e.thinking.is_empty() && e.tool_calls.is_empty());
        assert_eq!(e.stop_reason, None);
    }

    #[test]
    fn non_objects_are_unsupported() {
        for body in ["", "not json", "[1]", "\"x\"", "{\"choices\":", "{} x"] {
            assert!(
                matches!(parse(body.as_bytes()), Err(AdapterError::Unsupported(_))),
                "{body}"
            );
        }
    }
}
