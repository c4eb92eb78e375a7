//! The `llm.complete` host import, executed by the process's analysis client (allow-list,
//! token cap, timeout, circuit breaker and metrics live there).

use crate::analysis::{self, AnalysisClient};
use crate::plugin::policy::{Completion, CompletionRequest, LlmBackend, LlmError, LlmFuture};

/// Policies' `llm.complete` through the analysis client.
#[derive(Debug, Clone)]
pub struct AnalysisLlm(pub AnalysisClient);

impl LlmBackend for AnalysisLlm {
    fn complete(&self, request: CompletionRequest) -> LlmFuture {
        let client = self.0.clone();
        Box::pin(async move {
            let request = analysis::CompletionRequest {
                system: request.system,
                prompt: request.prompt,
                max_tokens: request.max_tokens,
                model: request.model,
                cache_system: request.cache_system,
            };
            match client.complete(request).await {
                Ok(c) => Ok(Completion {
                    text: c.text,
                    model: c.model,
                    stop_reason: c.stop_reason,
                    input_tokens: c.input_tokens,
                    output_tokens: c.output_tokens,
                    cache_read_tokens: c.cache_read_tokens,
                }),
                Err(e) => Err(match e {
                    analysis::LlmError::NotConfigured => LlmError::NotConfigured,
                    analysis::LlmError::ModelNotAllowed(m) => LlmError::ModelNotAllowed(m),
                    analysis::LlmError::Unavailable(m) => LlmError::Unavailable(m),
                    analysis::LlmError::Timeout => LlmError::Timeout,
                    analysis::LlmError::Upstream(m) => LlmError::Upstream(m),
                }),
            }
        })
    }
}
