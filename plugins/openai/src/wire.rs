//! The OpenAI wire shapes the response and stream parsers read, decoded with borrowed, lenient
//! leaves. One [`Doc`] type covers every top-level document (a `chat.completion`, a `response`,
//! a `chat.completion.chunk`, a Responses stream event, an error envelope), so the component
//! carries the decoding code of each shape once, which is most of what keeps it small.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::de::{Count, Label, List, Text, answer_other_types, lenient_struct};
use crate::{ToolCall, Usage};

lenient_struct! {
    /// Any top-level OpenAI JSON document; fields that a kind of document lacks stay empty.
    pub struct Doc<'a> {
        /// Responses stream event type (`response.output_text.delta`, `error`, ...).
        kind: Text<'a> = "type",
        model: Text<'a> = "model",
        /// Chat Completions choices (complete or chunk).
        choices: List<Choice<'a>> = "choices",
        /// Responses API output items.
        output: List<Item<'a>> = "output",
        usage: Option<RawUsage> = "usage",
        /// Responses API status (`completed`, `incomplete`, `failed`, ...).
        status: Text<'a> = "status",
        incomplete_details: Option<IncompleteDetails<'a>> = "incomplete_details",
        error: ErrorInfo = "error",
        // Responses stream events.
        output_index: Count = "output_index",
        summary_index: Count = "summary_index",
        delta: Text<'a> = "delta",
        item: Option<Item<'a>> = "item",
        response: Option<Box<Doc<'a>>> = "response",
        /// The documented `error` event carries its code and message at the top level.
        code: Label = "code",
        message: Text<'a> = "message",
    }
}

lenient_struct! {
    /// A Chat Completions choice: `message` in a complete response, `delta` in a chunk.
    pub struct Choice<'a> {
        index: Count = "index",
        message: Option<Message<'a>> = "message",
        delta: Option<Message<'a>> = "delta",
        finish_reason: Text<'a> = "finish_reason",
    }
}

lenient_struct! {
    /// A chat message or chunk delta.
    pub struct Message<'a> {
        content: Content = "content",
        /// DeepSeek/vLLM-style reasoning text.
        reasoning_content: Text<'a> = "reasoning_content",
        /// OpenRouter/Ollama-style reasoning text.
        reasoning: Text<'a> = "reasoning",
        tool_calls: List<ChatToolCall<'a>> = "tool_calls",
    }
}

impl Message<'_> {
    /// The reasoning text a compatible provider put on the message, when non-empty.
    pub fn thinking(&mut self) -> Option<String> {
        std::mem::take(&mut self.reasoning_content)
            .non_empty()
            .or_else(|| std::mem::take(&mut self.reasoning).non_empty())
    }
}

lenient_struct! {
    /// A chat tool call: a `function` call, or a gpt-5 `custom` tool call (free-form `input`).
    pub struct ChatToolCall<'a> {
        index: Count = "index",
        id: Text<'a> = "id",
        function: Option<CallBody<'a>> = "function",
        custom: Option<CallBody<'a>> = "custom",
    }
}

lenient_struct! {
    /// `function` (`name`, `arguments`) or `custom` (`name`, `input`).
    pub struct CallBody<'a> {
        name: Text<'a> = "name",
        arguments: Text<'a> = "arguments",
        input: Text<'a> = "input",
    }
}

impl ChatToolCall<'_> {
    /// `(id, name, arguments)`, or `None` when the call is neither a function nor a custom call.
    pub fn into_parts(self) -> Option<(Option<String>, Option<String>, Option<String>)> {
        let (body, custom) = match (self.function, self.custom) {
            (Some(function), _) => (function, false),
            (None, Some(custom)) => (custom, true),
            (None, None) => return None,
        };
        let arguments = if custom { body.input } else { body.arguments };
        Some((self.id.owned(), body.name.owned(), arguments.owned()))
    }

    /// The whole call, for complete responses.
    pub fn into_tool_call(self) -> Option<ToolCall> {
        self.into_parts().map(|(id, name, arguments)| ToolCall {
            id,
            name: name.unwrap_or_default(),
            arguments: arguments.unwrap_or_default(),
        })
    }
}

/// `message.content`: a string (OpenAI), or an array of text parts (some compatible
/// providers); anything else reads as no content.
#[derive(Debug, Default)]
pub struct Content(pub Vec<String>);

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ContentVisitor;

        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = Content;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("message content")
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Content(vec![v.to_owned()]))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Content(vec![v]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut texts = Vec::new();
                while let Some(part) = seq.next_element::<Part<'de>>()? {
                    if matches!(part.kind.as_str(), Some("text" | "output_text")) {
                        texts.extend(part.text.owned());
                    }
                }
                Ok(Content(texts))
            }

            answer_other_types!(Content::default(); visit_bool, visit_u64, visit_i64,
                visit_f64, visit_unit, visit_none, visit_some, visit_map);
        }

        d.deserialize_any(ContentVisitor)
    }
}

lenient_struct! {
    /// A Responses API output item. Flat on purpose: items of types the adapter does not read
    /// (web search, file search, images, ...) simply leave these fields empty.
    pub struct Item<'a> {
        kind: Text<'a> = "type",
        summary: List<Part<'a>> = "summary",
        content: List<Part<'a>> = "content",
        call_id: Text<'a> = "call_id",
        name: Text<'a> = "name",
        arguments: Text<'a> = "arguments",
        /// A custom tool call's free-form input.
        input: Text<'a> = "input",
    }
}

lenient_struct! {
    /// A typed text part (`summary_text`, `reasoning_text`, `output_text`, `text`, ...).
    pub struct Part<'a> {
        kind: Text<'a> = "type",
        text: Text<'a> = "text",
    }
}

lenient_struct! {
    /// Usage as either API reports it: Chat Completions `prompt_tokens`/`completion_tokens`, or
    /// Responses `input_tokens`/`output_tokens`, each with its details object.
    pub struct RawUsage {
        prompt_tokens: Count = "prompt_tokens",
        completion_tokens: Count = "completion_tokens",
        input_tokens: Count = "input_tokens",
        output_tokens: Count = "output_tokens",
        prompt_tokens_details: Option<TokenDetails> = "prompt_tokens_details",
        input_tokens_details: Option<TokenDetails> = "input_tokens_details",
        completion_tokens_details: Option<TokenDetails> = "completion_tokens_details",
        output_tokens_details: Option<TokenDetails> = "output_tokens_details",
    }
}

lenient_struct! {
    /// The `*_tokens_details` objects (input side: `cached_tokens`; output side: `reasoning_tokens`).
    pub struct TokenDetails {
        cached_tokens: Count = "cached_tokens",
        reasoning_tokens: Count = "reasoning_tokens",
    }
}

impl RawUsage {
    /// The WIT usage record.
    pub fn into_usage(self) -> Usage {
        let input = self.prompt_tokens_details.or(self.input_tokens_details);
        let output = self
            .completion_tokens_details
            .or(self.output_tokens_details);
        Usage {
            input_tokens: self.prompt_tokens.0.or(self.input_tokens.0),
            output_tokens: self.completion_tokens.0.or(self.output_tokens.0),
            reasoning_tokens: output.and_then(|d| d.reasoning_tokens.0),
            cached_input_tokens: input.and_then(|d| d.cached_tokens.0),
        }
    }
}

lenient_struct! {
    /// A Responses object's `incomplete_details`.
    pub struct IncompleteDetails<'a> {
        reason: Text<'a> = "reason",
    }
}

impl Doc<'_> {
    /// Stop reason of a Responses API object: why it is incomplete (`max_output_tokens`,
    /// `content_filter`) when it is, else its `status` (`completed`, `failed`, ...).
    pub fn responses_stop_reason(&mut self) -> Option<String> {
        self.incomplete_details
            .take()
            .and_then(|d| d.reason.owned())
            .or_else(|| std::mem::take(&mut self.status).owned())
    }
}

/// An error as providers report it: OpenAI's `{"message","type","code"}` object, or a bare
/// string from some compatible servers. `null` and other types read as no error.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    pub code: Option<String>,
    pub kind: Option<String>,
    pub message: Option<String>,
}

impl<'de> Deserialize<'de> for ErrorInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ErrorVisitor;

        impl<'de> Visitor<'de> for ErrorVisitor {
            type Value = ErrorInfo;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error object")
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ErrorInfo {
                    message: Some(v.to_owned()),
                    ..ErrorInfo::default()
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = ErrorInfo::default();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    match key.as_str() {
                        Some("message") => out.message = map.next_value::<Text<'de>>()?.owned(),
                        Some("code") => out.code = map.next_value::<Label>()?.0,
                        Some("type") => out.kind = map.next_value::<Text<'de>>()?.owned(),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }

            answer_other_types!(ErrorInfo::default(); visit_bool, visit_u64, visit_i64,
                visit_f64, visit_unit, visit_none, visit_some, visit_seq);
        }

        d.deserialize_any(ErrorVisitor)
    }
}

impl ErrorInfo {
    /// `"<code>: <message>"`, with the error type standing in for a missing code, and either
    /// part alone when the other is missing; `None` when there is no error.
    pub fn describe(self) -> Option<String> {
        let code = self.code.or(self.kind).filter(|c| !c.is_empty());
        let message = self.message.filter(|m| !m.is_empty());
        match (code, message) {
            (Some(code), Some(message)) => Some(format!("{code}: {message}")),
            (Some(one), None) | (None, Some(one)) => Some(one),
            (None, None) => None,
        }
    }
}

/// Decodes one document. Callers check first that it is an object: serde reads structs from
/// arrays too.
pub fn parse_doc(bytes: &[u8]) -> Result<Doc<'_>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> Option<String> {
        let doc = parse_doc(json.as_bytes()).unwrap();
        doc.error.describe()
    }

    #[test]
    fn error_shapes() {
        assert_eq!(
            error(r#"{"error":{"message":"m","type":"t","param":null,"code":"c"}}"#).as_deref(),
            Some("c: m")
        );
        assert_eq!(
            error(r#"{"error":{"message":"m","type":"t","code":null}}"#).as_deref(),
            Some("t: m")
        );
        assert_eq!(
            error(r#"{"error":{"message":"Rate limit","code":429}}"#).as_deref(),
            Some("429: Rate limit")
        );
        assert_eq!(error(r#"{"error":{"code":"c"}}"#).as_deref(), Some("c"));
        assert_eq!(
            error(r#"{"error":"overloaded"}"#).as_deref(),
            Some("overloaded")
        );
        assert_eq!(error(r#"{"error":null}"#), None);
        assert_eq!(error(r#"{"error":{}}"#), None);
        assert_eq!(error(r#"{"error":[1]}"#), None);
        assert_eq!(error(r#"{}"#), None);
    }

    #[test]
    fn usage_of_both_apis() {
        let chat: RawUsage = serde_json::from_str(
            r#"{"prompt_tokens":1,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":3},"completion_tokens_details":{"reasoning_tokens":4}}"#,
        )
        .unwrap();
        let responses: RawUsage = serde_json::from_str(
            r#"{"input_tokens":1,"output_tokens":2,"input_tokens_details":{"cached_tokens":3},"output_tokens_details":{"reasoning_tokens":4}}"#,
        )
        .unwrap();
        let want = Usage {
            input_tokens: Some(1),
            output_tokens: Some(2),
            reasoning_tokens: Some(4),
            cached_input_tokens: Some(3),
        };
        assert_eq!(chat.into_usage(), want);
        assert_eq!(responses.into_usage(), want);
        let bare: RawUsage = serde_json::from_str(
            r#"{"prompt_tokens":8,"total_tokens":8,"prompt_tokens_details":null}"#,
        )
        .unwrap();
        assert_eq!(
            bare.into_usage(),
            Usage {
                input_tokens: Some(8),
                output_tokens: None,
                reasoning_tokens: None,
                cached_input_tokens: None
            }
        );
    }
}
