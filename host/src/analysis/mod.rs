//! The analysis endpoints the AIP pipeline uses: the analysis LLM behind the `llm.complete`
//! host import ([`AnalysisClient`]) and the hosted analyse service of hybrid mode
//! ([`HybridClient`]), each with a timeout, a bounded answer, a half-open circuit breaker and
//! metrics. Settings come from the environment ([`AnalysisSettings`]).
//!
//! Breaker policy (both endpoints): timeouts, connection errors, 408, 429, 5xx (529 included)
//! and unreadable 2xx answers are failures; other 4xx answers (bad request, key or model) are
//! neutral: the endpoint is up, so they neither count towards opening nor keep a probe from
//! closing the breaker. Calls refused before sending (not configured, model not allowed,
//! breaker open) do not touch the breaker and are counted as `rejected`.

pub mod breaker;
pub mod client;
pub mod hybrid;
pub mod metrics;
pub mod settings;
mod transport;

#[cfg(test)]
mod tests;

pub use breaker::BreakerState;
pub use client::{AnalysisClient, Completion, CompletionRequest, LlmError};
pub use hybrid::{
    HybridAttestation, HybridCheckpoint, HybridClient, HybridConcern, HybridConscienceValue,
    HybridError, HybridRequest, HybridResponse, RecommendedAction, Severity, ThinkingMetadata,
    WindowContextEntry,
};
pub use metrics::AnalysisMetrics;
pub use settings::{AnalysisMode, AnalysisSettings, BreakerSettings, HybridSettings};
pub use transport::MAX_RESPONSE_BYTES;

/// Both clients of one process, built from the settings.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Which analysis is available.
    pub mode: AnalysisMode,
    /// The analysis LLM (unconfigured without `ANTHROPIC_API_KEY`).
    pub llm: AnalysisClient,
    /// The hybrid client, in hybrid mode.
    pub hybrid: Option<HybridClient>,
    /// The metrics both count into.
    pub metrics: AnalysisMetrics,
}

impl Analysis {
    /// Registers the analysis metrics on `registry` (the gateway's, `Metrics::registry()`) and
    /// builds the clients.
    pub fn new(
        settings: &AnalysisSettings,
        registry: &prometheus::Registry,
    ) -> Result<Self, prometheus::Error> {
        let metrics = AnalysisMetrics::register(registry)?;
        Ok(Self::with_metrics(settings, metrics))
    }

    /// Builds the clients counting into `metrics`.
    pub fn with_metrics(settings: &AnalysisSettings, metrics: AnalysisMetrics) -> Self {
        Self {
            mode: settings.mode(),
            llm: AnalysisClient::new(settings, &metrics),
            hybrid: settings
                .hybrid
                .as_ref()
                .map(|h| HybridClient::new(h, settings.breaker, &metrics)),
            metrics,
        }
    }
}
