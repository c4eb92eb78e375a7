//! What a webhook carries: the event type, the compact JSON body (field order as the original
//! gateway sent it), its HMAC-SHA256 signature, and the delivery id.

use chrono::{DateTime, SecondsFormat, Utc};
use ring::hmac;
use serde::Serialize;

use crate::store::Verdict;

/// `X-AIP-Version`: the AIP protocol version the payload follows.
pub const AIP_VERSION: &str = "0.1.0";

/// The prefix of `X-AIP-Signature`.
pub const SIGNATURE_PREFIX: &str = "sha256=";

/// An integrity checkpoint to announce, as the pipeline produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointEvent {
    /// The agent (`smolt-…`).
    pub agent_id: String,
    /// The agent's hash (the writer names agents by it).
    pub agent_hash: String,
    /// `ic-…`.
    pub checkpoint_id: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The concerns (a JSON array).
    pub concerns: serde_json::Value,
    /// The analysis' summary of its reasoning.
    pub reasoning_summary: String,
    /// When the verdict was produced (the payload's `timestamp`).
    pub timestamp: DateTime<Utc>,
}

impl CheckpointEvent {
    /// `verdict.<verdict>`.
    pub fn event_type(&self) -> String {
        event_type(self.verdict)
    }

    /// The request body: compact JSON
    /// `{"event","timestamp","checkpoint":{"checkpoint_id","agent_id","verdict","concerns","reasoning_summary"}}`.
    pub fn payload(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Checkpoint<'a> {
            checkpoint_id: &'a str,
            agent_id: &'a str,
            verdict: &'a str,
            concerns: &'a serde_json::Value,
            reasoning_summary: &'a str,
        }
        #[derive(Serialize)]
        struct Payload<'a> {
            event: String,
            timestamp: String,
            checkpoint: Checkpoint<'a>,
        }
        let payload = Payload {
            event: self.event_type(),
            timestamp: self.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
            checkpoint: Checkpoint {
                checkpoint_id: &self.checkpoint_id,
                agent_id: &self.agent_id,
                verdict: self.verdict.as_str(),
                concerns: &self.concerns,
                reasoning_summary: &self.reasoning_summary,
            },
        };
        // Serializing plain strings and a JSON value cannot fail.
        serde_json::to_vec(&payload).unwrap_or_default()
    }
}

/// `verdict.<verdict>`.
pub fn event_type(verdict: Verdict) -> String {
    format!("verdict.{}", verdict.as_str())
}

/// Whether a registration subscribed to `event_types` receives `event` (`verdict.<v>`): it
/// lists `*`, `verdict.*` or the exact type.
pub fn matches_event(event_types: &[String], event: &str) -> bool {
    event_types.iter().any(|t| {
        let t = t.trim();
        t == "*" || t == event || (t == "verdict.*" && event.starts_with("verdict."))
    })
}

/// The value of `X-AIP-Signature`: `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, body);
    format!("{SIGNATURE_PREFIX}{}", hex::encode(tag.as_ref()))
}

/// Checks an `X-AIP-Signature` header (`sha256=<hex>`, the prefix optional, hex in either case)
/// against `body`, in constant time: what a receiver does before trusting a delivery.
pub fn verify_signature(secret: &str, body: &[u8], header: &str) -> bool {
    let header = header.trim();
    let hex_part = header.strip_prefix(SIGNATURE_PREFIX).unwrap_or(header);
    let Ok(tag) = hex::decode(hex_part) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, body, &tag).is_ok()
}

/// A new delivery id: `del-` and 12 random hex digits.
pub fn new_delivery_id() -> String {
    format!("del-{}", random_hex(6))
}

/// `bytes` random bytes from the system generator, as hex.
pub fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom;
    let mut buffer = vec![0u8; bytes];
    if ring::rand::SystemRandom::new().fill(&mut buffer).is_err() {
        // The system generator does not fail on supported platforms; rather than give up, mix
        // the clock with a counter (ids need to be unique, not secret).
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .unsigned_abs();
        let mixed = (nanos ^ n.rotate_left(40)).to_be_bytes();
        for (i, b) in buffer.iter_mut().enumerate() {
            *b = mixed[i % mixed.len()] ^ (i as u8);
        }
    }
    hex::encode(buffer)
}
