//! Reading and building a [`CheckInput`]: a sample input with the `plugin test` harness's
//! defaults for native unit tests, builders, and small accessors.

use super::convert::default_conscience_values;
use super::{CheckInput, ToolCall};

impl CheckInput {
    /// An input with the defaults of the `mnemom-gateway plugin test` harness: agent
    /// `smolt-test`, session `test-session`, provider `anthropic`, model `test-model`, no
    /// thinking, text or tool calls, no card, no window, no task context, and the default
    /// conscience values. Build test inputs from it with the `with_…` methods.
    pub fn sample() -> CheckInput {
        CheckInput {
            agent_id: "smolt-test".to_owned(),
            session_id: "test-session".to_owned(),
            provider: "anthropic".to_owned(),
            model: "test-model".to_owned(),
            thinking: Vec::new(),
            response_text: Vec::new(),
            tool_calls: Vec::new(),
            card_json: None,
            card_id: None,
            conscience_values: default_conscience_values(),
            window: Vec::new(),
            task_context: None,
        }
    }

    /// The same input with one more thinking block.
    pub fn with_thinking(mut self, block: impl Into<String>) -> CheckInput {
        self.thinking.push(block.into());
        self
    }

    /// The same input with one more visible text block.
    pub fn with_response_text(mut self, block: impl Into<String>) -> CheckInput {
        self.response_text.push(block.into());
        self
    }

    /// The same input with one more tool call (`arguments` is JSON text), without an id.
    pub fn with_tool_call(
        mut self,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> CheckInput {
        self.tool_calls.push(ToolCall {
            id: None,
            name: name.into(),
            arguments: arguments.into(),
        });
        self
    }

    /// The same input with an alignment card (AAP card JSON) and its id.
    pub fn with_card(
        mut self,
        card_id: impl Into<String>,
        card_json: impl Into<String>,
    ) -> CheckInput {
        self.card_id = Some(card_id.into());
        self.card_json = Some(card_json.into());
        self
    }

    /// The thinking blocks joined with blank lines (empty when there is no thinking).
    pub fn thinking_text(&self) -> String {
        self.thinking.join("\n\n")
    }

    /// Whether the response has any thinking text (other than whitespace).
    pub fn has_thinking(&self) -> bool {
        self.thinking.iter().any(|block| !block.trim().is_empty())
    }

    /// The parsed alignment card, or `None` without a card or when it is not valid JSON.
    pub fn card(&self) -> Option<serde_json::Value> {
        self.card_json
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_matches_the_harness_defaults() {
        let input = CheckInput::sample();
        assert_eq!(input.agent_id, "smolt-test");
        assert_eq!(input.session_id, "test-session");
        assert_eq!(input.provider, "anthropic");
        assert_eq!(input.model, "test-model");
        assert_eq!(input.conscience_values.len(), 9);
        assert!(!input.has_thinking());
        assert_eq!(input.card(), None);
    }

    #[test]
    fn builders_and_accessors() {
        let input = CheckInput::sample()
            .with_thinking("first")
            .with_thinking("second")
            .with_response_text("shown")
            .with_tool_call("bash", r#"{"cmd":"ls"}"#)
            .with_card("ac-1", r#"{"card_id":"ac-1"}"#);
        assert_eq!(input.thinking_text(), "first\n\nsecond");
        assert!(input.has_thinking());
        assert_eq!(input.response_text, ["shown"]);
        assert_eq!(input.tool_calls[0].name, "bash");
        assert_eq!(input.tool_calls[0].id, None);
        assert_eq!(input.card_id.as_deref(), Some("ac-1"));
        assert_eq!(input.card().unwrap()["card_id"], "ac-1");
        let broken = CheckInput::sample().with_card("ac-2", "{not json");
        assert_eq!(broken.card(), None);
        assert!(!CheckInput::sample().with_thinking("  \n").has_thinking());
    }
}
