//! Complete JSON responses: `parse_response` over each recorded body equals the hand-checked
//! `expected/<stem>.json`, and `summarize_response` agrees with it.

use mnemom_adapter_openai::response;

use crate::support::{assert_json_eq, extraction_json};

macro_rules! golden_responses {
    ($($test:ident => $stem:literal,)*) => {
        /// The response fixtures these tests cover (file stems).
        pub const STEMS: &[&str] = &[$($stem),*];

        $(
            #[test]
            fn $test() {
                let body = include_bytes!(concat!("../../../fixtures/openai/", $stem, ".json"));
                let want = include_str!(concat!("../../../fixtures/openai/expected/", $stem, ".json"));
                let got = response::parse(body).unwrap();
                assert_json_eq($stem, &extraction_json(&got), &serde_json::from_str(want).unwrap());
                // The summary reads the same usage, model, stop reason and tool-call count.
                let summary = response::summarize(body).unwrap();
                assert_eq!(summary.tool_calls as usize, got.tool_calls.len(), $stem);
                assert_eq!((&summary.model, &summary.stop_reason), (&got.model, &got.stop_reason), $stem);
                assert_eq!(format!("{:?}", summary.usage), format!("{:?}", got.usage), $stem);
            }
        )*
    };
}

golden_responses! {
    chat_completions_text => "chat-completions-text",
    chat_completions_tool_calls => "chat-completions-tool-calls",
    responses_reasoning_summary_message => "responses-reasoning-summary-message",
}
