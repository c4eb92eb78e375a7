//! Column lists and row decoding shared by the two backends. Rows of both drivers answer the
//! same `try_get` calls (sqlx decodes PostgreSQL `timestamptz`/`jsonb`/`boolean` and SQLite's
//! TEXT timestamps, JSON text and 0/1 integers into the same Rust types), so one macro body
//! serves both; a generic function would need a bound per column type for each driver.

/// The columns of an [`Agent`](super::Agent), in `SELECT` order.
macro_rules! agent_columns {
    () => {
        "id, agent_hash, created_at, last_seen, aap_enabled, aip_enabled, aip_enforcement_mode, \
         org_card_exempt, nudge_strategy, nudge_rate, nudge_threshold, proof_enabled, \
         proof_rate, auto_containment_threshold, containment_status"
    };
}

/// The columns of a [`CheckpointRecord`](super::CheckpointRecord), in insert/`SELECT` order.
macro_rules! checkpoint_columns {
    () => {
        "checkpoint_id, agent_id, card_id, session_id, timestamp, thinking_block_hash, provider, \
         model, verdict, concerns, reasoning_summary, conscience_context, window_position, \
         analysis_metadata, linked_trace_id, source, input_commitment, issuer_signature, \
         signing_key_id, chain_hash, prev_chain_hash, merkle_leaf_index, certificate_id"
    };
}

/// The columns of a [`UsageEventRecord`](super::UsageEventRecord), in insert order.
macro_rules! usage_columns {
    () => {
        "id, agent_id, session_id, trace_id, timestamp, provider, model, tokens_in, tokens_out, \
         duration_ms, tool_count, gateway_log_id"
    };
}

/// Decodes an `agents` row (selected with `agent_columns!()`) into an `Agent`, or a
/// `StoreError::Decode` naming the column.
macro_rules! decode_agent {
    ($store:expr, $row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        let decoded = (|| -> Result<$crate::store::Agent, String> {
            let err = |column: &str, e: sqlx::Error| format!("column {column}: {e}");
            let text = |c: &'static str| row.try_get::<String, _>(c).map_err(|e| err(c, e));
            let int = |c: &'static str| row.try_get::<i32, _>(c).map_err(|e| err(c, e));
            let flag = |c: &'static str| row.try_get::<bool, _>(c).map_err(|e| err(c, e));
            let range = |c: &'static str| move |_| format!("column {c}: value out of range");
            Ok($crate::store::Agent {
                id: text("id")?,
                agent_hash: text("agent_hash")?,
                created_at: row
                    .try_get("created_at")
                    .map_err(|e| err("created_at", e))?,
                last_seen: row.try_get("last_seen").map_err(|e| err("last_seen", e))?,
                settings: $crate::store::AgentSettings {
                    aap_enabled: flag("aap_enabled")?,
                    aip_enabled: flag("aip_enabled")?,
                    enforcement_mode: text("aip_enforcement_mode")?
                        .parse()
                        .map_err(|e: $crate::store::UnknownValue| e.to_string())?,
                    org_card_exempt: flag("org_card_exempt")?,
                    nudge_strategy: text("nudge_strategy")?
                        .parse()
                        .map_err(|e: $crate::store::UnknownValue| e.to_string())?,
                    nudge_rate: u8::try_from(int("nudge_rate")?).map_err(range("nudge_rate"))?,
                    nudge_threshold: u32::try_from(int("nudge_threshold")?)
                        .map_err(range("nudge_threshold"))?,
                    proof_enabled: flag("proof_enabled")?,
                    proof_rate: u8::try_from(int("proof_rate")?).map_err(range("proof_rate"))?,
                    auto_containment_threshold: row
                        .try_get::<Option<i32>, _>("auto_containment_threshold")
                        .map_err(|e| err("auto_containment_threshold", e))?
                        .map(u32::try_from)
                        .transpose()
                        .map_err(range("auto_containment_threshold"))?,
                    containment_status: text("containment_status")?
                        .parse()
                        .map_err(|e: $crate::store::UnknownValue| e.to_string())?,
                },
            })
        })();
        decoded.map_err(|reason| $crate::store::StoreError::Decode {
            target: $store.config.describe(),
            operation: "reading an agent",
            reason,
        })
    }};
}

/// Decodes an `integrity_checkpoints` row (selected with `checkpoint_columns!()`).
macro_rules! decode_checkpoint {
    ($store:expr, $row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        let decoded = (|| -> Result<$crate::store::CheckpointRecord, String> {
            let err = |column: &str, e: sqlx::Error| format!("column {column}: {e}");
            let text = |c: &'static str| row.try_get::<String, _>(c).map_err(|e| err(c, e));
            let opt_text =
                |c: &'static str| row.try_get::<Option<String>, _>(c).map_err(|e| err(c, e));
            let opt_json = |c: &'static str| {
                row.try_get::<Option<serde_json::Value>, _>(c)
                    .map_err(|e| err(c, e))
            };
            let attestation = match opt_text("chain_hash")? {
                None => None,
                Some(chain_hash) => Some($crate::store::Attestation {
                    input_commitment: opt_text("input_commitment")?.unwrap_or_default(),
                    issuer_signature: opt_text("issuer_signature")?.unwrap_or_default(),
                    signing_key_id: opt_text("signing_key_id")?.unwrap_or_default(),
                    chain_hash,
                    prev_chain_hash: opt_text("prev_chain_hash")?,
                    merkle_leaf_index: row
                        .try_get("merkle_leaf_index")
                        .map_err(|e| err("merkle_leaf_index", e))?,
                    certificate_id: opt_text("certificate_id")?,
                }),
            };
            Ok($crate::store::CheckpointRecord {
                checkpoint_id: text("checkpoint_id")?,
                agent_id: text("agent_id")?,
                card_id: opt_text("card_id")?,
                session_id: text("session_id")?,
                timestamp: row.try_get("timestamp").map_err(|e| err("timestamp", e))?,
                thinking_block_hash: text("thinking_block_hash")?,
                provider: text("provider")?,
                model: text("model")?,
                verdict: text("verdict")?
                    .parse()
                    .map_err(|e: $crate::store::UnknownValue| e.to_string())?,
                concerns: row.try_get("concerns").map_err(|e| err("concerns", e))?,
                reasoning_summary: text("reasoning_summary")?,
                conscience_context: opt_json("conscience_context")?,
                window_position: opt_json("window_position")?,
                analysis_metadata: opt_json("analysis_metadata")?,
                linked_trace_id: opt_text("linked_trace_id")?,
                source: text("source")?
                    .parse()
                    .map_err(|e: $crate::store::UnknownValue| e.to_string())?,
                attestation,
            })
        })();
        decoded.map_err(|reason| $crate::store::StoreError::Decode {
            target: $store.config.describe(),
            operation: "reading checkpoints",
            reason,
        })
    }};
}
