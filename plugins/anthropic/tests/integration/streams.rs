//! `parse-event` against every recorded stream: framed here, fed event by event, accumulated,
//! and compared with the expected extraction and with the non-streamed form of the same
//! message.

use mnemom_adapter_anthropic::mnemom::gateway::types::{Extraction, SseEvent};
use mnemom_adapter_anthropic::{response, stream};
use serde_json::{Map, Value, json};

use crate::support::{
    Accumulated, expected_for, extraction_json, fixture_files, fixtures, frame, read,
};

fn accumulate(events: &[SseEvent]) -> Accumulated {
    let mut acc = Accumulated::default();
    for event in events {
        let delta = stream::parse(event).unwrap_or_else(|e| panic!("{event:?}: {e:?}"));
        acc.apply(delta);
    }
    acc
}

fn events_of(name: &str) -> Vec<SseEvent> {
    let bytes = read(&fixtures().join(name));
    frame(std::str::from_utf8(&bytes).unwrap())
}

#[test]
fn every_stream_fixture_matches_its_expected_extraction() {
    let fixtures = fixture_files("sse");
    assert_eq!(
        fixtures.len(),
        7,
        "stream fixtures were added or removed: {fixtures:?}"
    );
    for path in fixtures {
        let text = String::from_utf8(read(&path)).unwrap();
        let events = frame(&text);
        assert!(!events.is_empty(), "{}", path.display());
        assert_eq!(
            accumulate(&events).to_json(),
            expected_for(&path),
            "{}",
            path.display()
        );
    }
}

#[test]
fn framing_tolerates_crlf() {
    let lf = events_of("messages-stream-thinking-signature-text.sse");
    let text = String::from_utf8(read(
        &fixtures().join("messages-stream-thinking-signature-text.sse"),
    ))
    .unwrap()
    .replace('\n', "\r\n");
    let crlf = frame(&text);
    assert_eq!(lf.len(), crlf.len());
    assert_eq!(accumulate(&lf).to_json(), accumulate(&crlf).to_json());
}

#[test]
fn raw_padding_and_spaced_ping_are_read() {
    // The raw recordings pad the data's JSON with runs of spaces before its closing brace and
    // send `{"type": "ping"}`.
    let events = events_of("messages-stream-thinking-signature-text.sse");
    assert!(events.iter().any(|e| e.data.ends_with("  }")));
    let ping = events
        .iter()
        .find(|e| e.event.as_deref() == Some("ping"))
        .unwrap();
    assert_eq!(ping.data, r#"{"type": "ping"}"#);
    let delta = stream::parse(ping).unwrap();
    assert!(delta.text.is_empty() && delta.thinking.is_empty() && delta.usage.is_none());
}

/// The complete Message a stream describes, assembled from the raw events the way Anthropic's
/// SDKs do it (`message_start` gives the message, blocks start whole and grow by deltas, tool
/// input is the parsed concatenation of `partial_json`, `message_delta` patches the message and
/// its usage). Independent of the adapter: it works on `serde_json::Value`.
fn assemble(events: &[SseEvent]) -> Option<Value> {
    let mut message: Option<Value> = None;
    let mut partial_inputs: Map<String, Value> = Map::new();
    for event in events {
        let data: Value = serde_json::from_str(&event.data).unwrap();
        let index = data["index"].as_u64().map(|i| i as usize);
        match data["type"].as_str().unwrap() {
            "message_start" => message = Some(data["message"].clone()),
            "content_block_start" => {
                let content = message.as_mut()?["content"].as_array_mut()?;
                assert_eq!(content.len(), index?);
                content.push(data["content_block"].clone());
            }
            "content_block_delta" => {
                let block = &mut message.as_mut()?["content"][index?];
                let delta = &data["delta"];
                let (field, piece) = match delta["type"].as_str()? {
                    "text_delta" => ("text", &delta["text"]),
                    "thinking_delta" => ("thinking", &delta["thinking"]),
                    "signature_delta" => ("signature", &delta["signature"]),
                    "input_json_delta" => {
                        let buffer = partial_inputs
                            .entry(index?.to_string())
                            .or_insert_with(|| json!(""));
                        *buffer = json!(format!(
                            "{}{}",
                            buffer.as_str()?,
                            delta["partial_json"].as_str()?
                        ));
                        continue;
                    }
                    other => panic!("unexpected delta {other}"),
                };
                let old = block[field].as_str().unwrap_or("").to_owned();
                block[field] = json!(old + piece.as_str()?);
            }
            "content_block_stop" => {
                if let Some(partial) = partial_inputs.remove(&index?.to_string()) {
                    let text = partial.as_str()?;
                    message.as_mut()?["content"][index?]["input"] = if text.is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(text).unwrap()
                    };
                }
            }
            "message_delta" => {
                let message = message.as_mut()?;
                for (k, v) in data["delta"].as_object()? {
                    message[k] = v.clone();
                }
                for (k, v) in data["usage"].as_object()? {
                    message["usage"][k] = v.clone();
                }
            }
            _ => {}
        }
    }
    message
}

/// Tool-call arguments compared as JSON values: a stream carries the provider's own spacing,
/// and a call without arguments streams no `partial_json` at all (`""` stands for `{}`).
fn normalise(mut e: Extraction) -> Value {
    for call in &mut e.tool_calls {
        let value: Value = if call.arguments.is_empty() {
            json!({})
        } else {
            serde_json::from_str(&call.arguments).unwrap()
        };
        call.arguments = value.to_string();
    }
    extraction_json(&e)
}

#[test]
fn streamed_accumulation_equals_parse_of_the_assembled_message() {
    // No recorded stream has a recorded non-streamed twin (the JSON fixtures come from other
    // requests), so the twin is assembled from the stream itself, independently of the adapter.
    let mut compared = 0;
    for path in fixture_files("sse") {
        let events = frame(&String::from_utf8(read(&path)).unwrap());
        let Some(message) = assemble(&events) else {
            continue; // the error-only stream has no message
        };
        let streamed = accumulate(&events).extraction();
        let parsed = response::parse(message.to_string().as_bytes()).unwrap();
        assert_eq!(normalise(streamed), normalise(parsed), "{}", path.display());
        compared += 1;
    }
    assert_eq!(compared, 6);
}

#[test]
fn thinking_stream_equals_its_non_streamed_form() {
    let events = events_of("messages-stream-thinking-signature-text.sse");
    let streamed = accumulate(&events).extraction();
    let message = assemble(&events).unwrap();
    // The assembled message is a regular thinking response: thinking (with its signature),
    // then text.
    let kinds: Vec<&str> = message["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["thinking", "text"]);
    assert!(message["content"][0]["signature"].as_str().unwrap().len() > 100);
    let parsed = response::parse(message.to_string().as_bytes()).unwrap();
    assert_eq!(extraction_json(&streamed), extraction_json(&parsed));
    assert_eq!(streamed.thinking.len(), 1);
    assert!(streamed.thinking[0].starts_with("This is a straightforward question"));
}
