//! Test program: a provider adapter for an OpenAI-shaped upstream whose behaviour is chosen by its
//! manifest config, so the gateway's tests can exercise plugin faults and hot reload with a real
//! compiled component. Never shipped in the gateway binary.
//!
//! Config keys:
//! - `name`, `route-prefix`, `default-upstream`: what `describe` reports (defaults `testkit`,
//!   `/testkit`, `http://127.0.0.1:9`).
//! - `mode`: `ok` (default), `trap` (panics), `loop` (spins forever), `grow` (allocates without
//!   bound), `describe-trap` (fails its own smoke call, so the gateway must reject it at load).
//! - `fault-in`: which call misbehaves: `transform-request` (default), `parse-response`,
//!   `parse-event`.
//! - `marker`: in `ok` mode, `transform-request` adds `"testkit_marker": <marker>` to JSON object
//!   bodies, so a test can see which plugin version handled a request.

// Only the component build has the export glue, and with it wit-bindgen's unsafe code.
#![cfg_attr(
    target_family = "wasm",
    expect(
        unsafe_code,
        reason = "wit-bindgen generates the component ABI glue as unsafe code"
    )
)]

wit_bindgen::generate!({
    world: "provider-adapter",
    path: "../../wit",
});

use exports::mnemom::gateway::adapter::Guest;
use mnemom::gateway::host::config_get;
use mnemom::gateway::types::{
    AdapterError, CredentialSource, Descriptor, Extraction, Fragment, GatewayError, RequestInfo,
    RequestPlan, SseEvent, StreamDelta,
};
use mnemom_plugin_sdk::json;

struct Testkit;

fn setting(key: &str, default: &str) -> String {
    config_get(key).unwrap_or_else(|| default.to_owned())
}

/// Misbehaves as configured when `call` is the configured faulty call.
fn maybe_fault(call: &str) {
    if setting("fault-in", "transform-request") != call {
        return;
    }
    match setting("mode", "ok").as_str() {
        "trap" => panic!("testkit: configured to trap in {call}"),
        "loop" => {
            let mut counter: u64 = 0;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        "grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        _ => {}
    }
}

impl Guest for Testkit {
    fn describe() -> Descriptor {
        if setting("mode", "ok") == "describe-trap" {
            panic!("testkit: configured to fail its smoke call");
        }
        Descriptor {
            name: setting("name", "testkit"),
            route_prefix: setting("route-prefix", "/testkit"),
            default_upstream: setting("default-upstream", "http://127.0.0.1:9"),
            credential_sources: vec![CredentialSource::Bearer],
        }
    }

    fn transform_request(
        _request: RequestInfo,
        body: Vec<u8>,
    ) -> Result<RequestPlan, AdapterError> {
        maybe_fault("transform-request");
        let marker = config_get("marker");
        let parsed: Option<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(&body).ok();
        let Some(object) = parsed else {
            return Err(AdapterError::Unsupported(
                "body is not a JSON object".into(),
            ));
        };
        let streaming = object.get("stream").and_then(|v| v.as_bool()) == Some(true);
        let model = object
            .get("model")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let new_body = match marker {
            Some(marker) if !object.contains_key("testkit_marker") => {
                json::prepend_raw_members(&body, &[("testkit_marker", json::string(&marker))])
            }
            _ => None,
        };
        Ok(RequestPlan {
            body: new_body,
            streaming,
            model,
            thinking_injected: false,
            notes_applied: 0,
        })
    }

    fn parse_response(body: Vec<u8>) -> Result<Extraction, AdapterError> {
        maybe_fault("parse-response");
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| AdapterError::Unsupported(format!("invalid JSON: {e}")))?;
        let text = value
            .pointer("/choices/0/message/content")
            .and_then(|v| v.as_str())
            .map(|s| vec![s.to_owned()])
            .unwrap_or_default();
        Ok(Extraction {
            thinking: Vec::new(),
            text,
            tool_calls: Vec::new(),
            usage: None,
            model: value
                .get("model")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            stop_reason: None,
        })
    }

    fn parse_event(event: SseEvent) -> Result<StreamDelta, AdapterError> {
        maybe_fault("parse-event");
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
        if event.data.trim() == "[DONE]" {
            return Ok(delta);
        }
        let value: serde_json::Value = serde_json::from_str(&event.data)
            .map_err(|e| AdapterError::Unsupported(format!("invalid JSON: {e}")))?;
        if let Some(text) = value
            .pointer("/choices/0/delta/content")
            .and_then(|v| v.as_str())
        {
            delta.text.push(Fragment {
                index: 0,
                text: text.to_owned(),
            });
        }
        delta.model = value
            .get("model")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        Ok(delta)
    }

    fn map_error(error: GatewayError) -> Vec<u8> {
        // `{"error":{"code","message","type"}}`: keys sorted, as `serde_json::json!` wrote them.
        let body = json::object(&[
            ("code", error.status.to_string()),
            ("message", json::string(&error.message)),
            ("type", json::string(&error.error_type)),
        ]);
        json::object(&[("error", body)]).into_bytes()
    }
}

// The export symbols only link in a wasm component; natively the crate is just checked.
#[cfg(target_family = "wasm")]
export!(Testkit);

#[cfg(test)]
mod tests {
    use super::*;
    use mnemom::gateway::types::ErrorKind;

    #[test]
    fn error_bodies_are_byte_for_byte_what_json_macro_wrote() {
        for (message, error_type) in [("m", "t"), ("quote \" \\ \n \u{1}\u{8} é ✓", "")] {
            let error = GatewayError {
                status: 502,
                kind: ErrorKind::BadGateway,
                error_type: error_type.into(),
                message: message.into(),
            };
            let want = serde_json::json!({
                "error": {"message": message, "type": error_type, "code": 502}
            })
            .to_string();
            assert_eq!(String::from_utf8(Testkit::map_error(error)).unwrap(), want);
        }
    }
}
