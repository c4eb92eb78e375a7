//! Complete `generateContent` responses: thoughts, text, function calls, usage, model and
//! finish reason of the first candidate (or only their summary). Also the `GenerateContentResponse` wire types that the
//! streaming parser shares (every SSE event carries one such response as a chunk).

use mnemom_plugin_sdk::skim;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::unsupported;
use crate::exports::mnemom::gateway::adapter_summary::ResponseSummary;
use crate::types::{AdapterError, Extraction, ToolCall, Usage};
use mnemom_plugin_sdk::json;

/// One `GenerateContentResponse`: a whole response, or one chunk of a streamed one. Only the
/// fields the gateway reads are declared; serde skips the rest (signatures, safety ratings,
/// citations) without allocating.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerateContentResponse<'a> {
    #[serde(borrow)]
    candidates: Option<Vec<Candidate<'a>>>,
    usage_metadata: Option<UsageMetadata>,
    pub(crate) model_version: Option<String>,
    prompt_feedback: Option<PromptFeedback>,
    /// Present instead of candidates when the API fails in the middle of a stream.
    pub(crate) error: Option<ApiError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(borrow)]
    content: Option<Content<'a>>,
    finish_reason: Option<String>,
    /// Omitted for candidate 0 (proto3 JSON leaves out default values).
    index: Option<u32>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow)]
    parts: Option<Vec<Part<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Part<'a> {
    pub(crate) text: Option<String>,
    pub(crate) thought: Option<bool>,
    #[serde(borrow)]
    pub(crate) function_call: Option<FunctionCall<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct FunctionCall<'a> {
    id: Option<String>,
    name: Option<String>,
    #[serde(borrow)]
    args: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

/// `google.rpc.Status` as the API reports it.
#[derive(Deserialize)]
pub(crate) struct ApiError {
    code: Option<i64>,
    message: Option<String>,
    status: Option<String>,
}

impl<'a> GenerateContentResponse<'a> {
    /// Parses one response or chunk; anything that is not one is `unsupported`.
    pub(crate) fn from_slice(body: &'a [u8]) -> Result<Self, AdapterError> {
        // Checked first: serde would also read a struct from a JSON array of its fields.
        if !json::starts_object(body) {
            return Err(unsupported("not a JSON object"));
        }
        serde_json::from_slice(body)
            .map_err(|e| unsupported(format!("not a Gemini GenerateContentResponse: {e}")))
    }

    /// Takes candidate 0 out of the response. Other candidates (`candidateCount` > 1) are
    /// ignored: the gateway checks the one answer a client shows first.
    fn first_candidate(&mut self) -> Option<Candidate<'a>> {
        let candidates = self.candidates.as_mut()?;
        let at = candidates.iter().position(|c| c.index.unwrap_or(0) == 0)?;
        Some(candidates.swap_remove(at))
    }

    /// Splits the response into its first candidate's parts and its finish reason (or, for a
    /// blocked prompt that has no candidate, the block reason).
    pub(crate) fn take_parts_and_stop(&mut self) -> (Vec<Part<'a>>, Option<String>) {
        let candidate = self.first_candidate();
        let block_reason = self.prompt_feedback.take().and_then(|f| f.block_reason);
        match candidate {
            Some(c) => (
                c.content.and_then(|c| c.parts).unwrap_or_default(),
                c.finish_reason.or(block_reason),
            ),
            None => (Vec::new(), block_reason),
        }
    }

    /// The usage figures, when the response reports any.
    pub(crate) fn usage(&self) -> Option<Usage> {
        self.usage_metadata.as_ref().map(|u| Usage {
            input_tokens: u.prompt_token_count,
            output_tokens: u.candidates_token_count,
            reasoning_tokens: u.thoughts_token_count,
            cached_input_tokens: u.cached_content_token_count,
        })
    }
}

impl ApiError {
    /// `"<status>: <message>"`, falling back to the numeric code when there is no status.
    pub(crate) fn describe(&self) -> String {
        let status = match (&self.status, self.code) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(code)) => Some(code.to_string()),
            _ => None,
        };
        match (status, self.message.as_deref().filter(|m| !m.is_empty())) {
            (Some(s), Some(m)) => format!("{s}: {m}"),
            (Some(s), None) => s,
            (None, Some(m)) => m.to_owned(),
            (None, None) => "unknown error".to_owned(),
        }
    }
}

/// What one part of a candidate is, for the gateway.
pub(crate) enum PartKind {
    Thought(String),
    Text(String),
    Call(ToolCall),
}

impl Part<'_> {
    /// Classifies the part. Empty texts (the final chunk of a stream often carries `""`) and
    /// parts the gateway does not read (inline data, executable code, ...) give `None`.
    pub(crate) fn into_kind(self) -> Option<PartKind> {
        if let Some(call) = self.function_call {
            return Some(PartKind::Call(call.into_tool_call()));
        }
        let text = self.text.filter(|t| !t.is_empty())?;
        Some(if self.thought == Some(true) {
            PartKind::Thought(text)
        } else {
            PartKind::Text(text)
        })
    }
}

impl FunctionCall<'_> {
    fn into_tool_call(self) -> ToolCall {
        ToolCall {
            id: self.id,
            name: self.name.unwrap_or_default(),
            // `args` is a google.protobuf.Struct: absent means no arguments.
            arguments: self
                .args
                .map_or_else(|| "{}".to_owned(), |raw| json::compact(raw.get())),
        }
    }
}

/// Extracts everything the gateway needs from a complete `generateContent` body.
pub fn parse(body: &[u8]) -> Result<Extraction, AdapterError> {
    let mut response = GenerateContentResponse::from_slice(body)?;
    let (parts, stop_reason) = response.take_parts_and_stop();
    let mut extraction = Extraction {
        thinking: Vec::new(),
        text: Vec::new(),
        tool_calls: Vec::new(),
        usage: response.usage(),
        model: response.model_version.take(),
        stop_reason,
    };
    for part in parts {
        match part.into_kind() {
            Some(PartKind::Thought(t)) => extraction.thinking.push(t),
            Some(PartKind::Text(t)) => extraction.text.push(t),
            Some(PartKind::Call(c)) => extraction.tool_calls.push(c),
            None => {}
        }
    }
    Ok(extraction)
}

/// Usage, model, finish reason and the number of function calls of a complete body (the
/// `summarize-response` export): the same reading as [`parse`], without copying out thoughts,
/// text or arguments.
pub fn summarize(body: &[u8]) -> Result<ResponseSummary, AdapterError> {
    // Long strings (thoughts, text, signatures) are cut out first: the summary never reads
    // them, and stepping over them is most of its work (`mnemom_plugin_sdk::skim`).
    skim::read_skimmed(body, summarize_exact, |s| {
        !skim::is_elided(s.model.as_deref()) && !skim::is_elided(s.stop_reason.as_deref())
    })
}

/// [`summarize`] on `body` as it is.
fn summarize_exact(body: &[u8]) -> Result<ResponseSummary, AdapterError> {
    let mut response = GenerateContentResponse::from_slice(body)?;
    let (parts, stop_reason) = response.take_parts_and_stop();
    // Every part with a function call is one, as `parse` reads them (`Part::into_kind`).
    let tool_calls = parts.iter().filter(|p| p.function_call.is_some()).count();
    Ok(ResponseSummary {
        usage: response.usage(),
        model: response.model_version.take(),
        stop_reason,
        tool_calls: u32::try_from(tool_calls).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary agrees with the parse.
    fn assert_summary_matches(body: &[u8]) {
        let (full, summary) = (parse(body).unwrap(), summarize(body).unwrap());
        assert_eq!(summary.tool_calls as usize, full.tool_calls.len());
        assert_eq!(
            (&summary.model, &summary.stop_reason),
            (&full.model, &full.stop_reason)
        );
        assert_eq!(format!("{:?}", summary.usage), format!("{:?}", full.usage));
    }

    #[test]
    fn summary_of_long_strings_and_a_long_model() {
        let long = "\\\"t\\u00e9 ".repeat(100);
        for model in ["gemini-2.5-pro".to_owned(), "g".repeat(300)] {
            let body = format!(
                r#"{{"candidates":[{{"content":{{"role":"model","parts":[
                {{"text":"{long}","thought":true,"thoughtSignature":"{long}"}},{{"text":"{long}"}},
                {{"functionCall":{{"name":"f","args":{{"q":"{long}"}}}}}}]}},"finishReason":"STOP"}}],
                "usageMetadata":{{"promptTokenCount":3,"{long}":1}},"modelVersion":"{model}"}}"#
            );
            assert_summary_matches(body.as_bytes());
            assert_eq!(summarize(body.as_bytes()).unwrap().model, Some(model));
        }
    }

    #[test]
    fn thought_text_and_calls_in_order() {
        let body = br#"{"candidates":[{"content":{"role":"model","parts":[
            {"text":"plan","thought":true},
            {"text":"answer"},
            {"text":""},
            {"functionCall":{"id":"c1","name":"f","args":{"z":1,"a":[true]}}},
            {"functionCall":{"name":"g"}},
            {"inlineData":{"mimeType":"image/png","data":"AAAA"}}
        ]},"finishReason":"STOP"}],
        "usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4,"thoughtsTokenCount":5,"cachedContentTokenCount":2},
        "modelVersion":"gemini-2.5-flash"}"#;
        let e = parse(body).unwrap();
        assert_eq!(e.thinking, ["plan"]);
        assert_eq!(e.text, ["answer"]);
        assert_eq!(e.tool_calls.len(), 2);
        assert_eq!(e.tool_calls[0].id.as_deref(), Some("c1"));
        assert_eq!(e.tool_calls[0].name, "f");
        assert_eq!(e.tool_calls[0].arguments, r#"{"z":1,"a":[true]}"#);
        assert_eq!(e.tool_calls[1].id, None);
        assert_eq!(e.tool_calls[1].arguments, "{}");
        let u = e.usage.unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.reasoning_tokens,
                u.cached_input_tokens
            ),
            (Some(3), Some(4), Some(5), Some(2))
        );
        assert_eq!(e.model.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(e.stop_reason.as_deref(), Some("STOP"));
        assert_summary_matches(body);
    }

    #[test]
    fn picks_candidate_zero_and_reports_blocked_prompts() {
        let body = br#"{"candidates":[
            {"index":1,"content":{"parts":[{"text":"second"}]},"finishReason":"MAX_TOKENS"},
            {"content":{"parts":[{"text":"first"}]},"finishReason":"STOP"}]}"#;
        let e = parse(body).unwrap();
        assert_eq!(e.text, ["first"]);
        assert_eq!(e.stop_reason.as_deref(), Some("STOP"));

        let blocked = br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":7}}"#;
        let e = parse(blocked).unwrap();
        assert!(e.text.is_empty() && e.thinking.is_empty() && e.tool_calls.is_empty());
        assert_eq!(e.stop_reason.as_deref(), Some("SAFETY"));
        assert_eq!(e.usage.unwrap().input_tokens, Some(7));
        assert_eq!(e.model, None);
        assert_summary_matches(body);
        assert_summary_matches(blocked);
    }

    #[test]
    fn non_json_is_unsupported() {
        for body in [
            &b"data: {}"[..],
            b"",
            b"{\"candidates\":",
            b"\"text\"",
            b"[{}]",
            b"[null,null,null,null,null]",
        ] {
            assert!(
                matches!(parse(body), Err(AdapterError::Unsupported(_))),
                "{body:?}"
            );
            assert!(
                matches!(summarize(body), Err(AdapterError::Unsupported(_))),
                "{body:?}"
            );
        }
    }
}
