//! The record of one completed exchange (request, response, extraction) and the observer
//! interface through which later stages (AIP analysis, usage records) receive it. The proxy
//! never waits for an observer: exchanges are delivered from a background task.

use std::time::{Duration, SystemTime};

use super::extract::Extracted;
use super::identity::AgentIdentity;

/// One finished request/response pair. Never holds the caller's key or the prompt.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Adapter (provider) name.
    pub provider: String,
    /// Who called.
    pub identity: AgentIdentity,
    /// HTTP method.
    pub method: String,
    /// Path after the route prefix.
    pub path: String,
    /// Upstream status.
    pub status: u16,
    /// Whether the response was an event stream.
    pub streaming: bool,
    /// Model named by the request.
    pub request_model: Option<String>,
    /// Whether thinking settings were injected.
    pub thinking_injected: bool,
    /// What was extracted, when extraction ran and succeeded.
    pub extracted: Option<Extracted>,
    /// Why extraction did not produce a result, when it did not.
    pub extraction_note: Option<String>,
    /// When the request arrived.
    pub started_at: SystemTime,
    /// Total duration to the end of the response body.
    pub duration: Duration,
}

/// Receives completed exchanges.
pub trait ExchangeObserver: Send + Sync + std::fmt::Debug + 'static {
    /// Called once per exchange whose response body finished (from a background task).
    fn observe(&self, exchange: Exchange);

    /// Whether this observer reads a response's content (thinking, text, tool calls). When no
    /// observer and no AIP check does, a complete response is only summarized (usage, model,
    /// stop reason, tool-call count), which costs the adapter a fraction of a full parse.
    fn needs_content(&self) -> bool {
        true
    }
}

/// Logs a one-line summary per exchange at debug level: sizes and counts, never content (so it
/// does not need the content: a summarized exchange logs its tool-call count, no sizes).
#[derive(Debug, Default)]
pub struct LogObserver;

impl ExchangeObserver for LogObserver {
    fn observe(&self, exchange: Exchange) {
        let (thinking_bytes, text_blocks, tool_calls) = exchange
            .extracted
            .as_ref()
            .map(|e| (e.thinking_bytes(), e.text.len(), e.tool_call_count()))
            .unwrap_or_default();
        let extraction = match &exchange.extracted {
            None => "none",
            Some(e) if e.is_summary() => "summary",
            Some(_) => "full",
        };
        tracing::debug!(
            provider = %exchange.provider,
            agent = %exchange.identity.agent_id,
            session = %exchange.identity.session_id,
            status = exchange.status,
            streaming = exchange.streaming,
            model = exchange.extracted.as_ref().and_then(|e| e.model.as_deref()).or(exchange.request_model.as_deref()).unwrap_or(""),
            extraction,
            thinking_bytes,
            text_blocks,
            tool_calls,
            input_tokens = exchange.extracted.as_ref().and_then(|e| e.usage.input_tokens).unwrap_or(0),
            output_tokens = exchange.extracted.as_ref().and_then(|e| e.usage.output_tokens).unwrap_or(0),
            note = exchange.extraction_note.as_deref().unwrap_or(""),
            duration_ms = exchange.duration.as_millis() as u64,
            "exchange completed"
        );
    }

    fn needs_content(&self) -> bool {
        false
    }
}

/// Exchanges whose extraction task has not delivered them yet. Shutdown waits for these, so the
/// records of every answered request reach the observers (and the writer) before it drains.
#[derive(Debug, Default, Clone)]
pub struct InFlight(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    /// Counts one exchange until the guard drops.
    pub fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlightGuard(self.0.clone())
    }

    /// Exchanges not yet delivered.
    pub fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One exchange in flight (see [`InFlight`]).
#[derive(Debug)]
pub struct InFlightGuard(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
