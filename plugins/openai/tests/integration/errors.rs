//! Error envelopes: what `map_error` renders has the layout of real OpenAI errors (the recorded
//! ones in the fixture tree), and the same envelopes arriving mid-stream become stream errors.

use mnemom_adapter_openai::{ErrorKind, GatewayError, SseEvent, error, response, splice, stream};
use serde_json::Value;

/// The error fixtures these tests cover (file stems).
pub const STEMS: &[&str] = &[
    "error-insufficient-quota",
    "error-invalid-request-unsupported-parameter",
];

const INSUFFICIENT_QUOTA: &str =
    include_str!("../../../fixtures/openai/error-insufficient-quota.json");
const UNSUPPORTED_PARAMETER: &str =
    include_str!("../../../fixtures/openai/error-invalid-request-unsupported-parameter.json");

/// Keys of the object at the top of `doc`, and of its `error` member, in document order.
fn key_layout(doc: &[u8]) -> (Vec<String>, Vec<String>) {
    let top = splice::members(doc, splice::root(doc).unwrap()).unwrap();
    let inner = splice::members(doc, splice::find(&top, "error").unwrap()).unwrap();
    let keys = |ms: Vec<splice::Member<'_>>| ms.into_iter().map(|m| m.key.into_owned()).collect();
    (keys(top), keys(inner))
}

fn render(kind: ErrorKind, error_type: &str, message: &str) -> Vec<u8> {
    error::render(&GatewayError {
        status: 400,
        kind,
        error_type: error_type.into(),
        message: message.into(),
    })
}

#[test]
fn rendered_errors_have_openais_layout() {
    for fixture in [INSUFFICIENT_QUOTA, UNSUPPORTED_PARAMETER] {
        let real: Value = serde_json::from_str(fixture).unwrap();
        let message = real["error"]["message"].as_str().unwrap();
        let kind = real["error"]["type"].as_str().unwrap();
        let ours = render(ErrorKind::InvalidRequest, kind, message);
        assert_eq!(key_layout(&ours), key_layout(fixture.as_bytes()));
        let ours: Value = serde_json::from_slice(&ours).unwrap();
        assert_eq!(ours["error"]["message"], real["error"]["message"]);
        assert_eq!(ours["error"]["type"], real["error"]["type"]);
        assert_eq!(ours["error"]["param"], Value::Null);
    }
}

#[test]
fn a_missing_key_looks_like_openais_own_401() {
    // OpenAI answers a bad key with type invalid_request_error and code invalid_api_key.
    let ours: Value = serde_json::from_slice(&render(
        ErrorKind::Authentication,
        "",
        "no API key was provided",
    ))
    .unwrap();
    assert_eq!(ours["error"]["type"], "invalid_request_error");
    assert_eq!(ours["error"]["code"], "invalid_api_key");
}

#[test]
fn error_envelopes_mid_stream_become_stream_errors() {
    let cases = [
        (
            INSUFFICIENT_QUOTA,
            "insufficient_quota: You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        ),
        (
            UNSUPPORTED_PARAMETER,
            "unsupported_parameter: Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
        ),
    ];
    for (fixture, want) in cases {
        let delta = stream::parse_event(&SseEvent {
            event: None,
            data: fixture.to_owned(),
        })
        .unwrap();
        assert_eq!(delta.error.as_deref(), Some(want));
        assert!(delta.text.is_empty() && delta.thinking.is_empty());
    }
}

#[test]
fn error_bodies_hold_nothing_to_extract() {
    for fixture in [INSUFFICIENT_QUOTA, UNSUPPORTED_PARAMETER] {
        let e = response::parse(fixture.as_bytes()).unwrap();
        assert!(e.text.is_empty() && e.thinking.is_empty() && e.tool_calls.is_empty());
        assert_eq!((e.usage, e.model, e.stop_reason), (None, None, None));
    }
}
