//! Metrics of the analysis endpoints, registered on the gateway's registry:
//! `gateway_analysis_requests_total{result}`, `gateway_analysis_duration_seconds`,
//! `gateway_analysis_breaker_state`, `gateway_analysis_tokens_total{kind}` for the analysis LLM,
//! and the same three first families as `gateway_hybrid_*` for the hybrid analyse endpoint (a
//! separate family rather than a label, so the analysis LLM's series keep the labels above).

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

/// Values of the `result` label: `success`; `error` (an answer that is an error, or unusable);
/// `timeout`; `rejected` (never sent: breaker open, model not allowed, or not configured).
pub const RESULTS: &[&str] = &["success", "error", "timeout", "rejected"];
/// Values of the `kind` label of `gateway_analysis_tokens_total`.
pub const TOKEN_KINDS: &[&str] = &["input", "output", "cache_read"];
/// Duration buckets (seconds), for calls between ~50 ms and the 10–15 s timeouts.
const BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0,
];

/// How one call ended, for the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// `success`.
    Success,
    /// `error`.
    Error,
    /// `timeout`.
    Timeout,
    /// `rejected`.
    Rejected,
}

impl CallResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallResult::Success => "success",
            CallResult::Error => "error",
            CallResult::Timeout => "timeout",
            CallResult::Rejected => "rejected",
        }
    }
}

/// The request counter, duration histogram and breaker gauge of one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointMetrics {
    /// `<prefix>_requests_total{result}`.
    pub requests_total: IntCounterVec,
    /// `<prefix>_duration_seconds`: calls that were sent, to the end of the answer's body.
    pub duration: Histogram,
    /// `<prefix>_breaker_state`: 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGauge,
}

impl EndpointMetrics {
    fn register(registry: &Registry, prefix: &str, what: &str) -> Result<Self, prometheus::Error> {
        let requests_total = IntCounterVec::new(
            Opts::new(
                format!("{prefix}_requests_total"),
                format!("Calls to the {what}, by result (success, error, timeout, rejected)."),
            ),
            &["result"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                format!("{prefix}_duration_seconds"),
                format!("Duration of calls to the {what} that were sent."),
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        let breaker_state = IntGauge::new(
            format!("{prefix}_breaker_state"),
            format!("Circuit breaker of the {what}: 0 closed, 1 open, 2 half-open."),
        )?;
        registry.register(Box::new(requests_total.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(breaker_state.clone()))?;
        for result in RESULTS {
            requests_total.with_label_values(&[result]);
        }
        Ok(Self {
            requests_total,
            duration,
            breaker_state,
        })
    }

    /// Counts one call.
    pub fn count(&self, result: CallResult) {
        self.requests_total
            .with_label_values(&[result.as_str()])
            .inc();
    }

    /// The count of `result` so far.
    pub fn get(&self, result: CallResult) -> u64 {
        self.requests_total
            .with_label_values(&[result.as_str()])
            .get()
    }
}

/// Every analysis metric.
#[derive(Debug, Clone)]
pub struct AnalysisMetrics {
    /// `gateway_analysis_*`: the analysis LLM (`llm.complete`).
    pub llm: EndpointMetrics,
    /// `gateway_analysis_tokens_total{kind}`: tokens reported by the analysis LLM.
    pub tokens_total: IntCounterVec,
    /// `gateway_hybrid_*`: the hybrid analyse endpoint.
    pub hybrid: EndpointMetrics,
}

impl AnalysisMetrics {
    /// Creates the metrics, registers them with `registry` and pre-creates every label value.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let llm = EndpointMetrics::register(registry, "gateway_analysis", "analysis LLM")?;
        let hybrid =
            EndpointMetrics::register(registry, "gateway_hybrid", "hybrid analyse endpoint")?;
        let tokens_total = IntCounterVec::new(
            Opts::new(
                "gateway_analysis_tokens_total",
                "Tokens billed by the analysis LLM, by kind (input, output, cache_read).",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(tokens_total.clone()))?;
        for kind in TOKEN_KINDS {
            tokens_total.with_label_values(&[kind]);
        }
        Ok(Self {
            llm,
            tokens_total,
            hybrid,
        })
    }

    /// Metrics on a private registry (for tests and tools).
    pub fn unregistered() -> Self {
        // Registering fresh metrics on an empty registry cannot collide.
        Self::register(&Registry::new())
            .unwrap_or_else(|e| unreachable!("fresh analysis metrics failed to register: {e}"))
    }

    /// The token count of `kind` so far.
    pub fn tokens(&self, kind: &str) -> u64 {
        self.tokens_total.with_label_values(&[kind]).get()
    }
}
