//! Golden tests over `plugins/fixtures/gemini/`: every recorded response (JSON and SSE) against
//! its hand-checked extraction in `expected/`, every request case in `requests/` against its
//! expected plan, and the error envelope against the shape of Google's recorded errors.

use std::collections::BTreeSet;
use std::path::Path;

use mnemom_adapter_gemini::types::{
    AdapterError, ErrorKind, Extraction, GatewayError, RequestInfo, SseEvent, ToolCall, Usage,
};
use mnemom_adapter_gemini::{Settings, error, request, response, stream};
use mnemom_plugin_sdk::testing::{self, Keys};
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/gemini");

/// `(file name, fixture bytes, expected extraction)` for one response fixture.
macro_rules! golden {
    ($stem:literal, $ext:literal) => {
        (
            concat!($stem, ".", $ext),
            include_bytes!(concat!("../../fixtures/gemini/", $stem, ".", $ext)).as_slice(),
            include_str!(concat!("../../fixtures/gemini/expected/", $stem, ".json")),
        )
    };
}

const JSON_RESPONSES: &[(&str, &[u8], &str)] = &[
    golden!("generate-content-thought-parts-signature-text", "json"),
    golden!("generate-content-function-call-thought-signature", "json"),
    golden!("generate-content-function-call", "json"),
    golden!(
        "generate-content-text-thought-signature-no-thoughts",
        "json"
    ),
    golden!("error-not-found", "json"),
    golden!("error-resource-exhausted-429", "json"),
];

const SSE_RESPONSES: &[(&str, &[u8], &str)] = &[
    golden!("stream-generate-content-thought-parts-text", "sse"),
    golden!(
        "stream-generate-content-function-call-thought-signature",
        "sse"
    ),
    golden!("stream-generate-content-text", "sse"),
];

/// `(case, request file, expected file)` for one request case.
macro_rules! request_case {
    ($stem:literal) => {
        (
            $stem,
            include_str!(concat!("../../fixtures/gemini/requests/", $stem, ".http")),
            include_str!(concat!(
                "../../fixtures/gemini/requests/",
                $stem,
                ".expected"
            )),
        )
    };
}

const REQUEST_CASES: &[(&str, &str, &str)] = &[
    request_case!("flash-2.5-plain"),
    request_case!("gemini-3-pro-thinking-level"),
    request_case!("thinking-budget-zero-kept"),
    request_case!("include-thoughts-false-kept"),
    request_case!("gemini-2.0-flash-unchanged"),
    request_case!("snake-case-thinking-config-merged"),
    request_case!("snake-case-generation-config-without-thinking"),
    request_case!("snake-case-system-instruction-notes"),
    request_case!("notes-absent-system-instruction"),
    request_case!("notes-existing-system-instruction"),
    request_case!("notes-string-system-instruction"),
    request_case!("count-tokens-unchanged"),
    request_case!("stream-generate-content"),
    request_case!("malformed-json"),
    request_case!("not-an-object"),
    request_case!("model-url-encoded"),
    request_case!("tuned-model-unchanged"),
    request_case!("v1-flash-latest-alias"),
    request_case!("v1alpha-gemini-3-budget-kept"),
    request_case!("thinking-fully-set-unchanged"),
    request_case!("image-model-unchanged"),
    request_case!("get-model-unchanged"),
];

/// The expected files' JSON form of an extraction (WIT spelling of the keys).
fn extraction_json(e: &Extraction) -> Value {
    testing::Extraction {
        thinking: e.thinking.clone(),
        text: e.text.clone(),
        tool_calls: e.tool_calls.iter().cloned().map(plain_call).collect(),
        usage: e.usage.map(plain_usage),
        model: e.model.clone(),
        stop_reason: e.stop_reason.clone(),
    }
    .to_json(Keys::Kebab)
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
fn json_responses_match_their_extractions() {
    for (name, body, expected) in JSON_RESPONSES {
        let extraction = response::parse(body).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let expected: Value = serde_json::from_str(expected).unwrap();
        assert_eq!(extraction_json(&extraction), expected, "{name}");
        // The summary reads the same usage, model, stop reason and tool-call count.
        let summary = response::summarize(body).unwrap();
        assert_eq!(
            summary.tool_calls as usize,
            extraction.tool_calls.len(),
            "{name}"
        );
        assert_eq!(summary.model, extraction.model, "{name}");
        assert_eq!(summary.stop_reason, extraction.stop_reason, "{name}");
        assert_eq!(
            format!("{:?}", summary.usage),
            format!("{:?}", extraction.usage),
            "{name}"
        );
    }
}

/// Splits an SSE body into events the way the host does (see [`testing::frame_sse`]).
fn frame(body: &str) -> Vec<SseEvent> {
    testing::frame_sse(body)
        .into_iter()
        .map(|f| SseEvent {
            event: f.event,
            data: f.data,
        })
        .collect()
}

/// What a consumer of `parse-event` builds from a whole stream (see [`testing::Accumulator`]).
#[derive(Default)]
struct Accumulated(testing::Accumulator);

impl Accumulated {
    fn feed(&mut self, events: &[SseEvent]) {
        let acc = &mut self.0;
        for event in events {
            let delta =
                stream::parse_event(event).unwrap_or_else(|e| panic!("{e:?}: {}", event.data));
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
    }

    fn to_json(&self) -> Value {
        let mut value = self.0.extraction().to_json(Keys::Kebab);
        value["error"] = json!(self.0.last_error());
        value
    }
}

#[test]
fn sse_responses_match_their_extractions() {
    for (name, body, expected) in SSE_RESPONSES {
        let body = std::str::from_utf8(body).unwrap();
        // Gemini frames events with CRLF CRLF; check the framing found them all.
        assert!(body.contains("\r\n\r\n"), "{name}: expected CRLF framing");
        let events = frame(body);
        assert_eq!(events.len(), body.matches("data:").count(), "{name}");
        let mut accumulated = Accumulated::default();
        accumulated.feed(&events);
        let expected: Value = serde_json::from_str(expected).unwrap();
        assert_eq!(accumulated.to_json(), expected, "{name}");
    }
}

#[test]
fn sse_framing_variants_give_the_same_result() {
    let (_, body, expected) = SSE_RESPONSES[0];
    let body = std::str::from_utf8(body).unwrap();
    let expected: Value = serde_json::from_str(expected).unwrap();
    for variant in [body.replace("\r\n", "\n"), body.replace("data: ", "data:")] {
        let mut accumulated = Accumulated::default();
        accumulated.feed(&frame(&variant));
        assert_eq!(accumulated.to_json(), expected);
    }
}

#[test]
fn sse_error_event_is_reported() {
    // No recorded Gemini mid-stream error exists (see SOURCES.md); this is the documented
    // google.rpc.Status shape the API streams when it fails after headers were sent.
    let body = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n\
                data: {\"error\": {\"code\": 503,\"message\": \"The model is overloaded. Please try again later.\",\"status\": \"UNAVAILABLE\"}}\r\n\r\n";
    let mut accumulated = Accumulated::default();
    accumulated.feed(&frame(body));
    let got = accumulated.to_json();
    assert_eq!(got["text"], json!(["Hel"]));
    assert_eq!(
        got["error"],
        json!("UNAVAILABLE: The model is overloaded. Please try again later.")
    );
}

#[test]
fn invalid_sse_data_is_unsupported() {
    let event = SseEvent {
        event: None,
        data: "{\"candidates\": [".into(),
    };
    assert!(matches!(
        stream::parse_event(&event),
        Err(AdapterError::Unsupported(_))
    ));
}

/// A request case file: request line, `name: value` lines, empty line, body.
fn parse_request(text: &str) -> (RequestInfo, &[u8]) {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let Some((method, target)) = lines.next().and_then(|line| line.split_once(' ')) else {
        panic!("request case without a request line");
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut info = RequestInfo {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: Vec::new(),
        system_notes: Vec::new(),
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            panic!("request case header line without ':': {line}");
        };
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        if name == "system-note" {
            info.system_notes.push(value);
        } else {
            info.headers.push(mnemom_adapter_gemini::types::Header {
                name: name.to_ascii_lowercase(),
                value,
            });
        }
    }
    (info, body.as_bytes())
}

/// Renders an outcome in the `.expected` format (see `requests/README.md`).
fn render_outcome(
    outcome: &Result<mnemom_adapter_gemini::types::RequestPlan, AdapterError>,
) -> String {
    match outcome {
        Err(AdapterError::Unsupported(_)) => "error: unsupported\n".to_owned(),
        Err(AdapterError::Internal(message)) => format!("error: internal ({message})\n"),
        Ok(plan) => {
            let mut out = format!(
                "streaming: {}\nmodel: {}\nthinking-injected: {}\nnotes-applied: {}\n",
                plan.streaming,
                plan.model.as_deref().unwrap_or("none"),
                plan.thinking_injected,
                plan.notes_applied
            );
            match &plan.body {
                None => out.push_str("body: unchanged\n"),
                Some(body) => {
                    out.push_str("body: changed\n\n");
                    out.push_str(&String::from_utf8_lossy(body));
                }
            }
            out
        }
    }
}

/// A `thinkingConfig` (either spelling) inside `generationConfig` (either spelling).
fn thinking_config(body: &Value) -> Option<&Value> {
    let config = body
        .get("generationConfig")
        .or_else(|| body.get("generation_config"))?;
    config
        .get("thinkingConfig")
        .or_else(|| config.get("thinking_config"))
}

#[test]
fn request_cases_match_their_plans() {
    for (case, input, expected) in REQUEST_CASES {
        let (info, body) = parse_request(input);
        let outcome = request::transform(&Settings::default(), &info, body);
        assert_eq!(render_outcome(&outcome), *expected, "case {case}");

        if let Ok(plan) = &outcome
            && let Some(edited) = &plan.body
        {
            // Every edited body is JSON, and never carries a budget and a level together.
            let edited: Value = serde_json::from_slice(edited)
                .unwrap_or_else(|e| panic!("case {case}: edited body is not JSON: {e}"));
            if let Some(thinking) = thinking_config(&edited) {
                let has = |camel: &str, snake: &str| {
                    thinking.get(camel).is_some() || thinking.get(snake).is_some()
                };
                assert!(
                    !(has("thinkingBudget", "thinking_budget")
                        && has("thinkingLevel", "thinking_level")),
                    "case {case}: budget and level together"
                );
            }
            // Nothing the caller sent is lost: every original top-level member is still there.
            let original: Value = serde_json::from_slice(body).unwrap();
            for key in original.as_object().unwrap().keys() {
                assert!(edited.get(key).is_some(), "case {case}: lost {key}");
            }
        }
    }
}

/// Files directly in `dir` whose name ends with `suffix`.
fn files(dir: &str, suffix: &str) -> BTreeSet<String> {
    let mut names = testing::file_names(Path::new(dir));
    names.retain(|name| name.ends_with(suffix));
    names
}

#[test]
fn every_fixture_has_a_golden_test() {
    let tested: BTreeSet<String> = JSON_RESPONSES
        .iter()
        .chain(SSE_RESPONSES)
        .map(|(name, _, _)| (*name).to_owned())
        .collect();
    assert_eq!(
        files(FIXTURES, ""),
        tested,
        "response fixtures without a golden test"
    );

    let expected: BTreeSet<String> = tested
        .iter()
        .map(|name| format!("{}.json", name.rsplit_once('.').unwrap().0))
        .collect();
    assert_eq!(files(&format!("{FIXTURES}/expected"), ".json"), expected);

    let cases: BTreeSet<String> = REQUEST_CASES
        .iter()
        .map(|(case, _, _)| format!("{case}.http"))
        .collect();
    assert_eq!(files(&format!("{FIXTURES}/requests"), ".http"), cases);
    let expected_cases: BTreeSet<String> = REQUEST_CASES
        .iter()
        .map(|(case, _, _)| format!("{case}.expected"))
        .collect();
    assert_eq!(
        files(&format!("{FIXTURES}/requests"), ".expected"),
        expected_cases
    );
}

/// The structure of a JSON value: object keys with the structure of their values, the kind of
/// everything else.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), shape(v))).collect(),
        Value::Array(items) => items.iter().map(shape).collect(),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

#[test]
fn gateway_errors_look_like_google_errors() {
    let recorded: Value =
        serde_json::from_slice(include_bytes!("../../fixtures/gemini/error-not-found.json"))
            .unwrap();
    let rendered = error::render(&GatewayError {
        status: 404,
        kind: ErrorKind::NotFound,
        error_type: String::new(),
        message: "no route for /gemini/v1beta/nothing".into(),
    });
    let rendered: Value = serde_json::from_slice(&rendered).unwrap();
    assert_eq!(shape(&rendered), shape(&recorded));
    assert_eq!(rendered["error"]["status"], recorded["error"]["status"]);

    // With a reason, `details` carries one ErrorInfo, like the recorded 429 carries its details.
    let recorded: Value = serde_json::from_slice(include_bytes!(
        "../../fixtures/gemini/error-resource-exhausted-429.json"
    ))
    .unwrap();
    let rendered = error::render(&GatewayError {
        status: 403,
        kind: ErrorKind::Permission,
        error_type: "license_error".into(),
        message: "the gateway licence has expired".into(),
    });
    let rendered: Value = serde_json::from_slice(&rendered).unwrap();
    let keys = |v: &Value| {
        v["error"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&rendered), keys(&recorded));
    assert_eq!(
        rendered["error"]["details"],
        json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "license_error",
            "domain": "mnemom.ai",
        }])
    );
    assert_eq!(rendered["error"]["code"], 403);
    assert_eq!(rendered["error"]["status"], "PERMISSION_DENIED");
}
