//! The PostgreSQL implementation of the store's operations. Batches are one statement each:
//! the records' columns are bound as arrays and expanded with `UNNEST`, so a batch of any size is
//! one round trip and one prepared statement, far from the 65,535 bind-parameter limit.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgRow;

use super::records::{Agent, CheckpointRecord, UsageEventRecord, default_card, default_card_id};
use super::{Store, StoreError};

const AGENT_BY_ID: &str = concat!("SELECT ", agent_columns!(), " FROM agents WHERE id = $1");
const AGENT_BY_HASH: &str = concat!(
    "SELECT ",
    agent_columns!(),
    " FROM agents WHERE agent_hash = $1"
);

pub(super) async fn agent_by_id(
    store: &Store,
    pool: &PgPool,
    agent_id: &str,
) -> Result<Option<Agent>, StoreError> {
    let row = sqlx::query(AGENT_BY_ID)
        .bind(agent_id)
        .fetch_optional(pool)
        .await
        .map_err(|e| store.error("reading an agent", e))?;
    row.map(|r| decode_agent(store, &r)).transpose()
}

pub(super) async fn get_or_create_agent(
    store: &Store,
    pool: &PgPool,
    agent_hash: &str,
    agent_id: &str,
) -> Result<Agent, StoreError> {
    let fetch = |row: Option<PgRow>| row.map(|r| decode_agent(store, &r)).transpose();

    // Known agents (every request but the first): one indexed read, no write.
    let existing = sqlx::query(AGENT_BY_HASH)
        .bind(agent_hash)
        .fetch_optional(pool)
        .await
        .map_err(|e| store.error("reading an agent", e))?;
    if let Some(agent) = fetch(existing)? {
        return Ok(agent);
    }

    let op = "creating an agent";
    let mut tx = pool.begin().await.map_err(|e| store.error(op, e))?;
    let long_id = format!("smolt-{agent_hash}");
    let candidates: &[&str] = if agent_id == long_id {
        &[agent_id]
    } else {
        &[agent_id, &long_id]
    };
    for id in candidates {
        // No conflict target: a concurrent creator of the same hash (unique agent_hash) or
        // another key owning this id (primary key) both make this a no-op instead of an error.
        // A concurrent uncommitted insert makes us wait for its outcome.
        let created: Option<DateTime<Utc>> = sqlx::query_scalar(
            "INSERT INTO agents (id, agent_hash, last_seen) VALUES ($1, $2, now()) \
             ON CONFLICT DO NOTHING RETURNING created_at",
        )
        .bind(id)
        .bind(agent_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| store.error(op, e))?;
        if let Some(created_at) = created {
            sqlx::query(
                "INSERT INTO alignment_cards (id, agent_id, card_json, issued_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(default_card_id(id))
            .bind(*id)
            .bind(default_card(id, created_at))
            .bind(created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| store.error(op, e))?;
            break;
        }
        let mine: Option<String> =
            sqlx::query_scalar("SELECT id FROM agents WHERE agent_hash = $1")
                .bind(agent_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| store.error(op, e))?;
        if mine.is_some() {
            break;
        }
        // The id belongs to another key: try the long form.
    }
    tx.commit().await.map_err(|e| store.error(op, e))?;

    let row = sqlx::query(AGENT_BY_HASH)
        .bind(agent_hash)
        .fetch_optional(pool)
        .await
        .map_err(|e| store.error("reading an agent", e))?;
    fetch(row)?.ok_or_else(|| StoreError::AgentIdConflict {
        target: store.config.describe(),
        agent_hash: agent_hash.to_owned(),
    })
}

pub(super) async fn touch_last_seen(
    store: &Store,
    pool: &PgPool,
    latest: &BTreeMap<&str, DateTime<Utc>>,
) -> Result<u64, StoreError> {
    let ids: Vec<&str> = latest.keys().copied().collect();
    let times: Vec<DateTime<Utc>> = latest.values().copied().collect();
    let result = sqlx::query(
        "UPDATE agents AS a SET last_seen = v.seen \
         FROM UNNEST($1::text[], $2::timestamptz[]) AS v(id, seen) \
         WHERE a.id = v.id AND (a.last_seen IS NULL OR a.last_seen < v.seen)",
    )
    .bind(ids)
    .bind(times)
    .execute(pool)
    .await
    .map_err(|e| store.error("updating last_seen", e))?;
    Ok(result.rows_affected())
}

pub(super) async fn insert_checkpoints(
    store: &Store,
    pool: &PgPool,
    batch: &[CheckpointRecord],
) -> Result<u64, StoreError> {
    let n = batch.len();
    let mut checkpoint_id = Vec::with_capacity(n);
    let mut agent_id = Vec::with_capacity(n);
    let mut card_id = Vec::with_capacity(n);
    let mut session_id = Vec::with_capacity(n);
    let mut timestamp = Vec::with_capacity(n);
    let mut thinking_block_hash = Vec::with_capacity(n);
    let mut provider = Vec::with_capacity(n);
    let mut model = Vec::with_capacity(n);
    let mut verdict = Vec::with_capacity(n);
    let mut concerns = Vec::with_capacity(n);
    let mut reasoning_summary = Vec::with_capacity(n);
    let mut conscience_context = Vec::with_capacity(n);
    let mut window_position = Vec::with_capacity(n);
    let mut analysis_metadata = Vec::with_capacity(n);
    let mut linked_trace_id = Vec::with_capacity(n);
    let mut source = Vec::with_capacity(n);
    let mut input_commitment = Vec::with_capacity(n);
    let mut issuer_signature = Vec::with_capacity(n);
    let mut signing_key_id = Vec::with_capacity(n);
    let mut chain_hash = Vec::with_capacity(n);
    let mut prev_chain_hash = Vec::with_capacity(n);
    let mut merkle_leaf_index = Vec::with_capacity(n);
    let mut certificate_id = Vec::with_capacity(n);
    for r in batch {
        checkpoint_id.push(r.checkpoint_id.as_str());
        agent_id.push(r.agent_id.as_str());
        card_id.push(r.card_id.as_deref());
        session_id.push(r.session_id.as_str());
        timestamp.push(r.timestamp);
        thinking_block_hash.push(r.thinking_block_hash.as_str());
        provider.push(r.provider.as_str());
        model.push(r.model.as_str());
        verdict.push(r.verdict.as_str());
        concerns.push(r.concerns.clone());
        reasoning_summary.push(r.reasoning_summary.as_str());
        conscience_context.push(r.conscience_context.clone());
        window_position.push(r.window_position.clone());
        analysis_metadata.push(r.analysis_metadata.clone());
        linked_trace_id.push(r.linked_trace_id.as_deref());
        source.push(r.source.as_str());
        let a = r.attestation.as_ref();
        input_commitment.push(a.map(|a| a.input_commitment.as_str()));
        issuer_signature.push(a.map(|a| a.issuer_signature.as_str()));
        signing_key_id.push(a.map(|a| a.signing_key_id.as_str()));
        chain_hash.push(a.map(|a| a.chain_hash.as_str()));
        prev_chain_hash.push(a.and_then(|a| a.prev_chain_hash.as_deref()));
        merkle_leaf_index.push(a.and_then(|a| a.merkle_leaf_index));
        certificate_id.push(a.and_then(|a| a.certificate_id.as_deref()));
    }
    let result = sqlx::query(concat!(
        "INSERT INTO integrity_checkpoints (",
        checkpoint_columns!(),
        ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
         $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], $10::jsonb[], \
         $11::text[], $12::jsonb[], $13::jsonb[], $14::jsonb[], $15::text[], $16::text[], \
         $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::int8[], \
         $23::text[]) \
             ON CONFLICT (checkpoint_id) DO NOTHING"
    ))
    .bind(checkpoint_id)
    .bind(agent_id)
    .bind(card_id)
    .bind(session_id)
    .bind(timestamp)
    .bind(thinking_block_hash)
    .bind(provider)
    .bind(model)
    .bind(verdict)
    .bind(concerns)
    .bind(reasoning_summary)
    .bind(conscience_context)
    .bind(window_position)
    .bind(analysis_metadata)
    .bind(linked_trace_id)
    .bind(source)
    .bind(input_commitment)
    .bind(issuer_signature)
    .bind(signing_key_id)
    .bind(chain_hash)
    .bind(prev_chain_hash)
    .bind(merkle_leaf_index)
    .bind(certificate_id)
    .execute(pool)
    .await
    .map_err(|e| store.error("inserting checkpoints", e))?;
    Ok(result.rows_affected())
}

pub(super) async fn insert_usage_events(
    store: &Store,
    pool: &PgPool,
    batch: &[UsageEventRecord],
) -> Result<u64, StoreError> {
    let n = batch.len();
    let mut id = Vec::with_capacity(n);
    let mut agent_id = Vec::with_capacity(n);
    let mut session_id = Vec::with_capacity(n);
    let mut trace_id = Vec::with_capacity(n);
    let mut timestamp = Vec::with_capacity(n);
    let mut provider = Vec::with_capacity(n);
    let mut model = Vec::with_capacity(n);
    let mut tokens_in = Vec::with_capacity(n);
    let mut tokens_out = Vec::with_capacity(n);
    let mut duration_ms = Vec::with_capacity(n);
    let mut tool_count = Vec::with_capacity(n);
    let mut gateway_log_id = Vec::with_capacity(n);
    for r in batch {
        id.push(r.id.as_str());
        agent_id.push(r.agent_id.as_str());
        session_id.push(r.session_id.as_str());
        trace_id.push(r.trace_id.as_deref());
        timestamp.push(r.timestamp);
        provider.push(r.provider.as_str());
        model.push(r.model.as_str());
        tokens_in.push(r.tokens_in);
        tokens_out.push(r.tokens_out);
        duration_ms.push(r.duration_ms);
        tool_count.push(r.tool_count);
        gateway_log_id.push(r.gateway_log_id.as_deref());
    }
    let result = sqlx::query(concat!(
        "INSERT INTO usage_events (",
        usage_columns!(),
        ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
         $5::timestamptz[], $6::text[], $7::text[], $8::int8[], $9::int8[], $10::int8[], \
         $11::int4[], $12::text[]) ON CONFLICT (id) DO NOTHING"
    ))
    .bind(id)
    .bind(agent_id)
    .bind(session_id)
    .bind(trace_id)
    .bind(timestamp)
    .bind(provider)
    .bind(model)
    .bind(tokens_in)
    .bind(tokens_out)
    .bind(duration_ms)
    .bind(tool_count)
    .bind(gateway_log_id)
    .execute(pool)
    .await
    .map_err(|e| store.error("inserting usage events", e))?;
    Ok(result.rows_affected())
}

pub(super) async fn recent_checkpoints(
    store: &Store,
    pool: &PgPool,
    agent_id: &str,
    session_id: &str,
    limit: u32,
) -> Result<Vec<CheckpointRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        checkpoint_columns!(),
        " FROM integrity_checkpoints WHERE agent_id = $1 AND session_id = $2 \
             ORDER BY timestamp DESC LIMIT $3"
    ))
    .bind(agent_id)
    .bind(session_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(|e| store.error("reading checkpoints", e))?;
    rows.iter()
        .map(|row| decode_checkpoint!(store, row))
        .collect()
}

fn decode_agent(store: &Store, row: &PgRow) -> Result<Agent, StoreError> {
    decode_agent!(store, row)
}
