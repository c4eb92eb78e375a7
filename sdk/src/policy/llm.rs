//! The host's analysis LLM (world `aip-policy`, feature `policy`): one completion per call,
//! executed by the gateway against its configured analysis endpoint with a model allow-list, a
//! token cap, a timeout and a circuit breaker shared by the whole process. The policy never
//! sees the endpoint's key.
//!
//! [`complete`] calls into the host (inside the gateway only); the request builder,
//! [`json_object`] and the error conversion are plain Rust and work in native tests.

use super::PolicyError;
pub use super::bindings::mnemom::gateway::llm::{
    Completion, CompletionRequest, LlmError, complete,
};

impl CompletionRequest {
    /// A request for the host's configured analysis model, asking the endpoint to cache
    /// `system` (keep it identical across calls so the cache hits). The host lowers
    /// `max_tokens` to its own cap.
    pub fn new(system: impl Into<String>, prompt: impl Into<String>, max_tokens: u32) -> Self {
        CompletionRequest {
            system: system.into(),
            prompt: prompt.into(),
            max_tokens,
            model: None,
            cache_system: true,
        }
    }

    /// The same request for `model`, which must be on the host's allow-list (otherwise the
    /// call fails with [`LlmError::ModelNotAllowed`]).
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
}

impl LlmError {
    /// A one-line description for logs and `policy-error`s.
    pub fn describe(&self) -> String {
        match self {
            LlmError::NotConfigured => "the analysis LLM is not configured".to_owned(),
            LlmError::ModelNotAllowed(model) => {
                format!("model `{model}` is not on the gateway's allow-list")
            }
            LlmError::Unavailable(why) => format!("the analysis LLM is unavailable: {why}"),
            LlmError::Timeout => "the analysis LLM did not answer in time".to_owned(),
            LlmError::Upstream(why) => format!("the analysis LLM answered with an error: {why}"),
        }
    }
}

impl From<LlmError> for PolicyError {
    /// Every LLM failure is an `analysis-failed` error: the host then applies the policy's
    /// failure mode.
    fn from(error: LlmError) -> Self {
        PolicyError::AnalysisFailed(error.describe())
    }
}

/// The JSON object in a model's answer: the text from the first `{` to the last `}`, which
/// skips prose and code fences around it. `None` when there is no such span. The span is not
/// validated: parse it with `serde_json` and treat a failure as
/// [`PolicyError::AnalysisFailed`].
pub fn json_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (end > start).then(|| &text[start..=end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_default_to_the_host_model_with_caching() {
        let r = CompletionRequest::new("sys", "prompt", 512);
        assert_eq!(r.model, None);
        assert!(r.cache_system);
        assert_eq!(r.max_tokens, 512);
        let r = r.with_model("claude-haiku-4-5-20251001");
        assert_eq!(r.model.as_deref(), Some("claude-haiku-4-5-20251001"));
    }

    #[test]
    fn json_objects_are_found_in_prose() {
        assert_eq!(json_object(r#"{"a":1}"#), Some(r#"{"a":1}"#));
        assert_eq!(
            json_object("Here you go:\n```json\n{\"verdict\": \"clear\", \"x\": {}}\n```"),
            Some("{\"verdict\": \"clear\", \"x\": {}}")
        );
        assert_eq!(json_object("no json here"), None);
        assert_eq!(json_object("} backwards {"), None);
    }

    #[test]
    fn errors_become_analysis_failures() {
        let e = PolicyError::from(LlmError::ModelNotAllowed("gpt-x".into()));
        assert_eq!(
            e,
            PolicyError::AnalysisFailed("model `gpt-x` is not on the gateway's allow-list".into())
        );
        assert_eq!(
            PolicyError::from(LlmError::Timeout),
            PolicyError::AnalysisFailed("the analysis LLM did not answer in time".into())
        );
    }
}
