//! Usage recording: each completed exchange becomes one `usage_events` row (agent, session,
//! provider, model, token counts, duration, tool-call count: counts only, never prompt, response
//! or thinking text) and a `last_seen` sighting, both handed to the background writer without
//! waiting. The writer makes sure the agent exists before its rows.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};

use crate::proxy::exchange::{Exchange, ExchangeObserver};
use crate::store::UsageEventRecord;
use crate::writer::{WriteRecord, Writer};

/// Model recorded when neither the response nor the request named one.
pub const UNKNOWN_MODEL: &str = "unknown";

/// The [`ExchangeObserver`] that records usage through the writer, then hands the exchange to
/// the next observer (moved, not copied: it may hold a large response).
#[derive(Debug)]
pub struct UsageRecorder {
    writer: Writer,
    /// Random per process, so ids from several pods never collide.
    nonce: [u8; 6],
    counter: std::sync::atomic::AtomicU32,
    next: Option<Arc<dyn ExchangeObserver>>,
}

impl UsageRecorder {
    /// Records into `writer`.
    pub fn new(writer: Writer) -> Self {
        Self {
            writer,
            nonce: process_nonce(),
            counter: std::sync::atomic::AtomicU32::new(0),
            next: None,
        }
    }

    /// Passes every exchange on to `next` after recording it.
    #[must_use]
    pub fn then(mut self, next: Arc<dyn ExchangeObserver>) -> Self {
        self.next = Some(next);
        self
    }

    /// Enqueues the exchange's usage row and `last_seen` sighting (never waits).
    pub fn record(&self, exchange: &Exchange) {
        let record = usage_record(self.new_id(), exchange);
        let identity = &exchange.identity;
        self.writer.touch_last_seen(
            &identity.agent_hash,
            &identity.agent_id,
            DateTime::<Utc>::from(exchange.started_at),
        );
        self.writer.enqueue(WriteRecord::usage_event(
            identity.agent_hash.clone(),
            record,
        ));
    }

    /// `ue-` + 32 hex digits: milliseconds since the epoch (48 bits), a per-process random
    /// nonce (48 bits) and a counter (32 bits). Time-ordered, so inserts append to the end of
    /// the primary-key index instead of landing at random places in it (random keys made each
    /// insert touch a different page), and made without a system call per request.
    fn new_id(&self) -> String {
        let millis = Utc::now().timestamp_millis().max(0) as u64;
        let count = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        bytes[6..12].copy_from_slice(&self.nonce);
        bytes[12..].copy_from_slice(&count.to_be_bytes());
        let mut id = [0u8; 35];
        id[..3].copy_from_slice(b"ue-");
        match hex::encode_to_slice(bytes, &mut id[3..]) {
            Ok(()) => String::from_utf8_lossy(&id).into_owned(),
            Err(_) => format!("ue-{}", hex::encode(bytes)),
        }
    }
}

/// A random nonce for this process (time-based if the OS random source fails: the record
/// must not be lost over it).
fn process_nonce() -> [u8; 6] {
    let mut nonce = [0u8; 6];
    if SystemRandom::new().fill(&mut nonce).is_err() {
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64
            ^ u64::from(std::process::id());
        nonce.copy_from_slice(&nanos.to_be_bytes()[2..]);
    }
    nonce
}

/// The usage row of an exchange.
pub fn usage_record(id: String, exchange: &Exchange) -> UsageEventRecord {
    let extracted = exchange.extracted.as_ref();
    let model = extracted
        .and_then(|e| e.model.as_deref())
        .or(exchange.request_model.as_deref())
        .filter(|m| !m.is_empty())
        .unwrap_or(UNKNOWN_MODEL);
    let tokens = |v: Option<u64>| v.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    UsageEventRecord {
        id,
        agent_id: exchange.identity.agent_id.clone(),
        session_id: exchange.identity.session_id.clone(),
        trace_id: None,
        timestamp: DateTime::<Utc>::from(exchange.started_at),
        provider: exchange.provider.clone(),
        model: model.to_owned(),
        tokens_in: tokens(extracted.and_then(|e| e.usage.input_tokens)),
        tokens_out: tokens(extracted.and_then(|e| e.usage.output_tokens)),
        duration_ms: i64::try_from(exchange.duration.as_millis()).unwrap_or(i64::MAX),
        tool_count: extracted
            .map(|e| i32::try_from(e.tool_call_count()).unwrap_or(i32::MAX))
            .unwrap_or(0),
        gateway_log_id: None,
    }
}

impl ExchangeObserver for UsageRecorder {
    fn observe(&self, exchange: Exchange) {
        self.record(&exchange);
        if let Some(next) = &self.next {
            next.observe(exchange);
        }
    }

    /// A usage row holds counts only; the next observer decides.
    fn needs_content(&self) -> bool {
        self.next.as_ref().is_some_and(|next| next.needs_content())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::proxy::extract::{Extracted, ToolCall, Usage};
    use crate::proxy::identity::AgentIdentity;

    fn exchange(extracted: Option<Extracted>, request_model: Option<&str>) -> Exchange {
        let started_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        Exchange {
            provider: "anthropic".to_owned(),
            identity: AgentIdentity::from_key("test-key", started_at),
            method: "POST".to_owned(),
            path: "/v1/messages".to_owned(),
            status: 200,
            streaming: false,
            request_model: request_model.map(str::to_owned),
            thinking_injected: false,
            extracted,
            extraction_note: None,
            started_at,
            duration: Duration::from_millis(842),
        }
    }

    #[test]
    fn a_usage_row_holds_counts_never_text() {
        let extracted = Extracted {
            thinking: vec!["secret reasoning".to_owned()],
            text: vec!["the answer".to_owned()],
            tool_calls: vec![
                ToolCall {
                    id: None,
                    name: "search".to_owned(),
                    arguments: "{\"q\":\"private\"}".to_owned(),
                };
                2
            ],
            usage: Usage {
                input_tokens: Some(120),
                output_tokens: Some(30),
                ..Usage::default()
            },
            model: Some("claude-sonnet-4-5-20250929".to_owned()),
            ..Extracted::default()
        };
        let row = usage_record(
            "ue-1".to_owned(),
            &exchange(Some(extracted), Some("claude-x")),
        );
        assert_eq!(row.agent_id, "smolt-62af8704");
        assert_eq!(row.session_id, "62af8704764faf8e-497222");
        assert_eq!(row.provider, "anthropic");
        assert_eq!(
            row.model, "claude-sonnet-4-5-20250929",
            "the provider's answer wins"
        );
        assert_eq!((row.tokens_in, row.tokens_out), (Some(120), Some(30)));
        assert_eq!(row.duration_ms, 842);
        assert_eq!(row.tool_count, 2);
        assert_eq!(row.timestamp.timestamp(), 1_790_000_000);
        let json = serde_json::to_string(&row).unwrap();
        for text in ["secret", "answer", "private", "search"] {
            assert!(!json.contains(text), "{text} leaked into {json}");
        }

        // Nothing extracted (non-2xx, AIP off): the requested model, no token counts.
        let row = usage_record("ue-2".to_owned(), &exchange(None, Some("gpt-4o")));
        assert_eq!(row.model, "gpt-4o");
        assert_eq!(
            (row.tokens_in, row.tokens_out, row.tool_count),
            (None, None, 0)
        );
        let row = usage_record("ue-3".to_owned(), &exchange(None, None));
        assert_eq!(row.model, UNKNOWN_MODEL);
    }
}
