//! The rows the gateway reads and writes, as Rust types: an agent with its settings, an
//! integrity checkpoint, a usage event. Records are `serde` types so the background writer can
//! journal them to disk unchanged; none of them can hold prompt, response or thinking text.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A value read from the database that is not one this binary knows (e.g. written by a newer
/// version); the message names the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {column} value `{value}`")]
pub struct UnknownValue {
    /// The column.
    pub column: &'static str,
    /// What was found.
    pub value: String,
}

macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $column:literal {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { column: $column, value: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// `agents.aip_enforcement_mode`: what a boundary violation leads to.
    EnforcementMode, "aip_enforcement_mode" {
        /// Record only (the default).
        Observe => "observe",
        /// Record, and inject a nudge into the agent's next request.
        Nudge => "nudge",
        /// As `nudge`, and answer non-streaming violations with 403.
        Enforce => "enforce",
    }
}

text_enum! {
    /// `agents.nudge_strategy`: which violations create a nudge.
    NudgeStrategy, "nudge_strategy" {
        /// Never.
        Off => "off",
        /// `nudge_rate` percent of them.
        Sampling => "sampling",
        /// Once the session has `nudge_threshold` violations.
        Threshold => "threshold",
        /// Every one (the default).
        Always => "always",
    }
}

text_enum! {
    /// `agents.containment_status`.
    ContainmentStatus, "containment_status" {
        /// Serving (the default).
        Active => "active",
        /// Paused, by a person or by auto-containment.
        Paused => "paused",
        /// Stopped for good.
        Killed => "killed",
    }
}

text_enum! {
    /// `integrity_checkpoints.verdict`.
    Verdict, "verdict" {
        /// No concern of medium or higher severity.
        Clear => "clear",
        /// A concern that does not meet the boundary criteria.
        ReviewNeeded => "review_needed",
        /// A boundary violation.
        BoundaryViolation => "boundary_violation",
    }
}

text_enum! {
    /// `integrity_checkpoints.source`: who analysed the thinking.
    CheckpointSource, "source" {
        /// This gateway's own policy chain.
        Gateway => "gateway",
        /// The hosted analysis service (hybrid mode).
        Hybrid => "hybrid",
    }
}

/// An agent's settings: the columns the request path needs (through the cache). Fields missing
/// from a cached JSON value take the column defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentSettings {
    /// AAP tracing on.
    pub aap_enabled: bool,
    /// AIP integrity checks on (`AIP_ENABLED=false` still turns them off globally).
    pub aip_enabled: bool,
    /// What a violation leads to.
    pub enforcement_mode: EnforcementMode,
    /// Exempt from the organisation's card template.
    pub org_card_exempt: bool,
    /// Which violations create a nudge.
    pub nudge_strategy: NudgeStrategy,
    /// Percentage for [`NudgeStrategy::Sampling`] (0–100).
    pub nudge_rate: u8,
    /// Session violations for [`NudgeStrategy::Threshold`] (≥ 1).
    pub nudge_threshold: u32,
    /// Verdict proofs on.
    pub proof_enabled: bool,
    /// Percentage of non-violation checkpoints proved (0–100).
    pub proof_rate: u8,
    /// Consecutive violations that pause the agent; `None` disables auto-containment.
    pub auto_containment_threshold: Option<u32>,
    /// Whether the agent may be served.
    pub containment_status: ContainmentStatus,
}

impl Default for AgentSettings {
    /// The column defaults of a new agent.
    fn default() -> Self {
        Self {
            aap_enabled: true,
            aip_enabled: true,
            enforcement_mode: EnforcementMode::Observe,
            org_card_exempt: false,
            nudge_strategy: NudgeStrategy::Always,
            nudge_rate: 100,
            nudge_threshold: 3,
            proof_enabled: false,
            proof_rate: 10,
            auto_containment_threshold: None,
            containment_status: ContainmentStatus::Active,
        }
    }
}

/// An `agents` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// `smolt-<8 hex>` (or `smolt-<16 hex>` after an id collision: use this, not the derived id).
    pub id: String,
    /// First 16 hex characters of sha256(provider key).
    pub agent_hash: String,
    /// First seen.
    pub created_at: DateTime<Utc>,
    /// Last request, as of the last batched update.
    pub last_seen: Option<DateTime<Utc>>,
    /// Its settings.
    pub settings: AgentSettings,
}

/// Attestation of a checkpoint (signature, hash chain, Merkle leaf).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// sha256 over the analysis inputs.
    pub input_commitment: String,
    /// Ed25519 signature, standard base64.
    pub issuer_signature: String,
    /// Which signing key.
    pub signing_key_id: String,
    /// This link of the agent+session hash chain.
    pub chain_hash: String,
    /// The previous link; `None` for the first checkpoint of a chain.
    pub prev_chain_hash: Option<String>,
    /// Position in the agent's Merkle tree.
    pub merkle_leaf_index: Option<i64>,
    /// `cert-…`.
    pub certificate_id: Option<String>,
}

/// An `integrity_checkpoints` row as the gateway writes it. `checkpoint_id` is generated before
/// the insert, so retrying a batch never duplicates a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// `ic-<uuid>`; the idempotency key.
    pub checkpoint_id: String,
    /// The agent (must exist: write the agent before its checkpoints).
    pub agent_id: String,
    /// The alignment card analysed against.
    pub card_id: Option<String>,
    /// `<agent_hash>-<hour>`.
    pub session_id: String,
    /// When the verdict was produced.
    pub timestamp: DateTime<Utc>,
    /// SHA-256 hex of the thinking text ([`thinking_hash`]); the text is never stored.
    pub thinking_block_hash: String,
    /// Provider (adapter name).
    pub provider: String,
    /// Model that produced the thinking.
    pub model: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Concerns (a JSON array).
    pub concerns: serde_json::Value,
    /// The analysis' summary of its reasoning (about the thinking, not the thinking itself).
    pub reasoning_summary: String,
    /// Conscience context (a JSON object).
    pub conscience_context: Option<serde_json::Value>,
    /// `{index, window_size}`.
    pub window_position: Option<serde_json::Value>,
    /// Analysis model, durations, token counts, truncation.
    pub analysis_metadata: Option<serde_json::Value>,
    /// The observer's trace, once linked.
    pub linked_trace_id: Option<String>,
    /// Who analysed.
    pub source: CheckpointSource,
    /// Present when the checkpoint is attested.
    pub attestation: Option<Attestation>,
}

/// A `usage_events` row: one proxied exchange, counts only, never text. `id` is generated
/// before the insert (the idempotency key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEventRecord {
    /// `ue-…`; the idempotency key.
    pub id: String,
    /// The agent (must exist).
    pub agent_id: String,
    /// `<agent_hash>-<hour>`.
    pub session_id: String,
    /// The observer's trace, if any.
    pub trace_id: Option<String>,
    /// When the exchange started.
    pub timestamp: DateTime<Utc>,
    /// Provider (adapter name).
    pub provider: String,
    /// Model, as reported by the provider (or requested).
    pub model: String,
    /// Input tokens, when the provider reported usage.
    pub tokens_in: Option<i64>,
    /// Output tokens, when the provider reported usage.
    pub tokens_out: Option<i64>,
    /// Arrival to the end of the response body.
    pub duration_ms: i64,
    /// Tool calls in the response.
    pub tool_count: i32,
    /// A correlation id for logs.
    pub gateway_log_id: Option<String>,
}

/// An `enforcement_nudges` row as created after a boundary violation (status `pending`). `id` is
/// generated before the insert; `checkpoint_id` is unique, so a retried insert is a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NudgeRecord {
    /// `nudge-<16 hex>`.
    pub id: String,
    /// The agent.
    pub agent_id: String,
    /// The checkpoint that caused it (must be written first).
    pub checkpoint_id: String,
    /// The session of that checkpoint.
    pub session_id: String,
    /// The exact text injected into the next request.
    pub nudge_content: String,
    /// `category: description; …`, or `Boundary violation detected`.
    pub concerns_summary: String,
    /// When it was created (expiry counts from here).
    pub created_at: DateTime<Utc>,
}

/// A pending nudge claimed for one request (see `Store::claim_pending_nudges`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedNudge {
    /// `nudge-…`.
    pub id: String,
    /// The checkpoint that caused it.
    pub checkpoint_id: String,
    /// The text to inject.
    pub nudge_content: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A `drift_alerts` row for integrity drift (a streak of non-clear verdicts in a session).
/// `dedup_key` is unique: the same streak seen by two pods is stored once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftAlertRecord {
    /// `ida-<uuid>`.
    pub id: String,
    /// The agent.
    pub agent_id: String,
    /// The card analysed against.
    pub card_id: Option<String>,
    /// The session of the streak.
    pub session_id: String,
    /// Direction: `injection_pattern`, `value_erosion`, `autonomy_creep`, `deception_pattern`
    /// or `unknown`.
    pub alert_type: String,
    /// `low`, `medium` or `high`.
    pub severity: String,
    /// For a human.
    pub description: String,
    /// `{integrity_similarity, streak_length, checkpoint_ids, …}` (a JSON object).
    pub drift_data: serde_json::Value,
    /// `<agent_id>:<session_id>:<first checkpoint id of the streak>`.
    pub dedup_key: String,
    /// When it was raised.
    pub created_at: DateTime<Utc>,
}

/// Auto-containment of an agent: set `containment_status = 'paused'` (only if it is still
/// `active`) and log it in `agent_containment_log`, in one transaction. Idempotent by `log_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainmentRecord {
    /// `ctl-<16 hex>`: the log row's id.
    pub log_id: String,
    /// The agent.
    pub agent_id: String,
    /// `auto_pause`.
    pub action: String,
    /// `system`.
    pub actor: String,
    /// `Auto-contained: N consecutive boundary violations`.
    pub reason: String,
    /// The status it replaces (`active`).
    pub previous_status: ContainmentStatus,
    /// The new status (`paused`).
    pub new_status: ContainmentStatus,
    /// `{checkpoint_id}` (a JSON object).
    pub metadata: serde_json::Value,
    /// When.
    pub at: DateTime<Utc>,
}

/// An `aip_webhook_deliveries` row: the outcome of delivering one checkpoint to one registration,
/// with the attempts really made. Unique per (registration, checkpoint): a later record for the
/// same pair (a redelivery) updates `delivered`, `attempts`, `last_status` and `last_error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDeliveryRecord {
    /// `del-<12 hex>`.
    pub id: String,
    /// The registration.
    pub registration_id: String,
    /// The checkpoint delivered (must be written first).
    pub checkpoint_id: String,
    /// `verdict.<verdict>`.
    pub event_type: String,
    /// Whether a 2xx answer came back.
    pub delivered: bool,
    /// Attempts made in total (≥ 1).
    pub attempts: i32,
    /// HTTP status of the last attempt, when one answered.
    pub last_status: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the first attempt was made.
    pub created_at: DateTime<Utc>,
}

/// An `aip_webhook_registrations` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRegistration {
    /// Id.
    pub id: String,
    /// The agent.
    pub agent_id: String,
    /// Where to POST.
    pub callback_url: String,
    /// HMAC-SHA256 key.
    pub secret: String,
    /// `*`, `verdict.*` or exact event types.
    pub event_types: Vec<String>,
    /// Consecutive failed deliveries.
    pub failure_count: i32,
    /// Disabled registrations receive nothing.
    pub enabled: bool,
}

/// An agent's active alignment card with its per-agent conscience values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveCard {
    /// `ac-…`.
    pub id: String,
    /// The AAP card.
    pub card_json: serde_json::Value,
    /// Per-agent conscience values (a JSON array), if any.
    pub conscience_values: Option<serde_json::Value>,
}

/// SHA-256 hex of a thinking block: what checkpoints store instead of the text.
pub fn thinking_hash(thinking: &str) -> String {
    hex::encode(Sha256::digest(thinking.as_bytes()))
}

/// The id of an agent's default alignment card: `ac-` + the hex part of the agent id.
pub fn default_card_id(agent_id: &str) -> String {
    format!("ac-{}", agent_id.strip_prefix("smolt-").unwrap_or(agent_id))
}

/// The alignment card a new agent starts with: an AAP card with no declared restrictions, marked
/// as the default so tools can tell it from one a person wrote. Created once, with the agent.
pub fn default_card(agent_id: &str, issued_at: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "aap_version": "0.1.0",
        "card_id": default_card_id(agent_id),
        "agent_id": agent_id,
        "issued_at": issued_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "principal": { "type": "unspecified", "relationship": "delegated_authority" },
        "values": {
            "declared": ["transparency", "honesty", "harm_prevention"],
            "definitions": {}
        },
        "autonomy_envelope": {
            "bounded_actions": ["inference"],
            "forbidden_actions": [],
            "escalation_triggers": []
        },
        "audit_commitment": { "trace_format": "ap-trace-v1", "retention_days": 90, "queryable": true },
        "extensions": {
            "mnemom": { "description": "Agent seen by the mnemom gateway", "default_card": true }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_stored_text() {
        for mode in EnforcementMode::ALL {
            assert_eq!(mode.as_str().parse::<EnforcementMode>().unwrap(), *mode);
        }
        for strategy in NudgeStrategy::ALL {
            assert_eq!(
                strategy.as_str().parse::<NudgeStrategy>().unwrap(),
                *strategy
            );
        }
        for status in ContainmentStatus::ALL {
            assert_eq!(
                status.to_string().parse::<ContainmentStatus>().unwrap(),
                *status
            );
        }
        for verdict in Verdict::ALL {
            let json = serde_json::to_string(verdict).unwrap();
            assert_eq!(json, format!("\"{}\"", verdict.as_str()));
        }
        let error = "block".parse::<EnforcementMode>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown aip_enforcement_mode value `block`"
        );
    }

    #[test]
    fn thinking_is_hashed_not_kept() {
        assert_eq!(
            thinking_hash("test-key"),
            "62af8704764faf8ea82fc61ce9c4c3908b6cb97d463a634e9e587d7c885db0ef"
        );
        assert_eq!(default_card_id("smolt-62af8704"), "ac-62af8704");
        let card = default_card("smolt-62af8704", Utc::now());
        assert_eq!(card["card_id"], "ac-62af8704");
        assert_eq!(card["extensions"]["mnemom"]["default_card"], true);
    }
}
