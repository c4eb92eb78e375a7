//! SSE transcripts: each recorded stream is framed, fed event by event to `parse_event`, and the
//! accumulated result equals the hand-checked `expected/<stem>.json`. For Responses API streams
//! the accumulated thinking, text and arguments must also equal the transcript's own `.done`
//! recaps, which the adapter never reads.

use std::collections::BTreeMap;

use mnemom_adapter_openai::stream::{self, SUMMARY_PART_SEPARATOR};
use serde_json::Value;

use crate::support::{Accumulator, assert_json_eq, frame_sse};

fn accumulate(transcript: &str) -> Accumulator {
    let mut acc = Accumulator::default();
    for event in frame_sse(transcript) {
        let delta = stream::parse_event(&event)
            .unwrap_or_else(|e| panic!("event {:?} failed: {e:?}", event.event));
        acc.apply(delta);
    }
    acc
}

/// Compares the accumulated stream with the `.done` recaps of the transcript; returns how many
/// recaps were checked.
fn check_done_recaps(transcript: &str, acc: &Accumulator) -> usize {
    let mut summaries: BTreeMap<u64, BTreeMap<u64, String>> = BTreeMap::new();
    let mut checked = 0;
    for event in frame_sse(transcript) {
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            continue;
        };
        let index = data["output_index"].as_u64().unwrap_or(0);
        let text = data["text"].as_str().unwrap_or_default().to_owned();
        match data["type"].as_str() {
            Some("response.reasoning_summary_text.done") => {
                let part = data["summary_index"].as_u64().unwrap();
                summaries.entry(index).or_default().insert(part, text);
            }
            Some("response.reasoning_text.done") => {
                summaries.entry(index).or_default().insert(0, text);
            }
            Some("response.output_text.done") => {
                assert_eq!(
                    acc.text.get(&(index as u32)),
                    Some(&text),
                    "output_text.done #{index}"
                );
                checked += 1;
            }
            Some("response.function_call_arguments.done") => {
                let args = data["arguments"].as_str().unwrap();
                assert_eq!(
                    acc.call(index as u32).map(|c| c.2),
                    Some(args),
                    "arguments.done #{index}"
                );
                checked += 1;
            }
            _ => {}
        }
    }
    for (index, parts) in summaries {
        let want = parts
            .into_values()
            .collect::<Vec<_>>()
            .join(SUMMARY_PART_SEPARATOR);
        assert_eq!(
            acc.thinking.get(&(index as u32)),
            Some(&want),
            "reasoning .done #{index}"
        );
        checked += 1;
    }
    checked
}

macro_rules! golden_streams {
    ($($test:ident => $stem:literal, recaps: $recaps:literal;)*) => {
        /// The SSE fixtures these tests cover (file stems).
        pub const STEMS: &[&str] = &[$($stem),*];

        $(
            #[test]
            fn $test() {
                let transcript = include_str!(concat!("../../../fixtures/openai/", $stem, ".sse"));
                let want = include_str!(concat!("../../../fixtures/openai/expected/", $stem, ".json"));
                let acc = accumulate(transcript);
                assert_json_eq($stem, &acc.to_json(), &serde_json::from_str(want).unwrap());
                assert_eq!(check_done_recaps(transcript, &acc), $recaps, "{} recaps", $stem);
            }
        )*
    };
}

golden_streams! {
    chat_completions_stream_text_include_usage => "chat-completions-stream-text-include-usage", recaps: 0;
    chat_completions_stream_tool_call_include_usage => "chat-completions-stream-tool-call-include-usage", recaps: 0;
    responses_stream_reasoning_summary_text => "responses-stream-reasoning-summary-text", recaps: 2;
    responses_stream_function_call => "responses-stream-function-call", recaps: 1;
    responses_stream_error_insufficient_quota => "responses-stream-error-insufficient-quota.reframed", recaps: 0;
}

#[test]
fn reasoning_summary_parts_stay_in_one_block_per_item() {
    let transcript =
        include_str!("../../../fixtures/openai/responses-stream-reasoning-summary-text.sse");
    let acc = accumulate(transcript);
    assert_eq!(acc.thinking.keys().copied().collect::<Vec<_>>(), vec![0]);
    assert_eq!(acc.text.keys().copied().collect::<Vec<_>>(), vec![1]);
    // Parts are joined by a blank line, not run together mid-sentence.
    assert!(
        acc.thinking[&0].contains("crossing the street.\n\n**Explaining street crossing safety**")
    );
}

#[test]
fn crlf_framing_gives_the_same_result() {
    let transcript = include_str!(
        "../../../fixtures/openai/chat-completions-stream-tool-call-include-usage.sse"
    );
    let crlf = transcript.replace('\n', "\r\n");
    assert_eq!(
        accumulate(&crlf).to_json(),
        accumulate(transcript).to_json()
    );
}
