//! The SQLite implementation of the store's operations. Writes run in `BEGIN IMMEDIATE`
//! transactions (take the write lock up front, so two writers queue on the busy timeout instead
//! of failing a read-to-write upgrade); batches are multi-row `VALUES` statements of a few fixed
//! sizes (prepared once, then cached), all in one transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::records::{Agent, CheckpointRecord, UsageEventRecord, default_card, default_card_id};
use super::{Store, StoreError};

/// The row counts of multi-row statements, largest first. A batch is cut into chunks of these
/// sizes only (see [`statement_chunks`]), so each table has at most five statement texts: each
/// is parsed once per connection and then reused from sqlx's statement cache. A text per batch
/// size made SQLite parse a new multi-row statement for nearly every batch, which cost as much as
/// inserting the rows. 23 columns × 256 rows = 5,888 parameters, under SQLite's 32,766 limit.
const STATEMENT_ROWS: [usize; 5] = [256, 64, 16, 4, 1];

/// Cuts `rows` into consecutive chunks whose lengths are all in [`STATEMENT_ROWS`], largest
/// first (a batch of 70 rows: 64, 4, 1, 1).
pub(super) fn statement_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = STATEMENT_ROWS
            .iter()
            .copied()
            .find(|&size| size <= rows.len())?;
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

const AGENT_BY_ID: &str = concat!("SELECT ", agent_columns!(), " FROM agents WHERE id = ?1");
const AGENT_BY_HASH: &str = concat!(
    "SELECT ",
    agent_columns!(),
    " FROM agents WHERE agent_hash = ?1"
);

/// Timestamps are stored as fixed-width UTC text with milliseconds (what the schema's
/// `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')` defaults produce), so text order is time order.
pub(super) fn timestamp(at: DateTime<Utc>) -> String {
    // The same text as the format string `%Y-%m-%dT%H:%M:%S%.3fZ`, without parsing one per call.
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn json(value: &serde_json::Value) -> String {
    value.to_string()
}

pub(super) async fn agent_by_id(
    store: &Store,
    pool: &SqlitePool,
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
    pool: &SqlitePool,
    agent_hash: &str,
    agent_id: &str,
) -> Result<Agent, StoreError> {
    let existing = sqlx::query(AGENT_BY_HASH)
        .bind(agent_hash)
        .fetch_optional(pool)
        .await
        .map_err(|e| store.error("reading an agent", e))?;
    if let Some(row) = existing {
        return decode_agent(store, &row);
    }

    let op = "creating an agent";
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| store.error(op, e))?;
    let long_id = format!("smolt-{agent_hash}");
    let candidates: &[&str] = if agent_id == long_id {
        &[agent_id]
    } else {
        &[agent_id, &long_id]
    };
    let now = Utc::now();
    for id in candidates {
        // As on PostgreSQL: no conflict target, so a concurrent creator (unique agent_hash) or
        // another key owning the id (primary key) makes this a no-op. The IMMEDIATE transaction
        // already serializes creators.
        let created = sqlx::query(
            "INSERT INTO agents (id, agent_hash, created_at, last_seen) VALUES (?1, ?2, ?3, ?3) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(*id)
        .bind(agent_hash)
        .bind(timestamp(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| store.error(op, e))?;
        if created.is_some() {
            sqlx::query(
                "INSERT INTO alignment_cards (id, agent_id, card_json, issued_at, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT DO NOTHING",
            )
            .bind(default_card_id(id))
            .bind(*id)
            .bind(json(&default_card(id, now)))
            .bind(timestamp(now))
            .execute(&mut *tx)
            .await
            .map_err(|e| store.error(op, e))?;
            break;
        }
        let mine = sqlx::query("SELECT id FROM agents WHERE agent_hash = ?1")
            .bind(agent_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| store.error(op, e))?;
        if mine.is_some() {
            break;
        }
    }
    let row = sqlx::query(AGENT_BY_HASH)
        .bind(agent_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| store.error("reading an agent", e))?;
    tx.commit().await.map_err(|e| store.error(op, e))?;
    match row {
        Some(row) => decode_agent(store, &row),
        None => Err(StoreError::AgentIdConflict {
            target: store.config.describe(),
            agent_hash: agent_hash.to_owned(),
        }),
    }
}

pub(super) async fn touch_last_seen(
    store: &Store,
    pool: &SqlitePool,
    latest: &BTreeMap<&str, DateTime<Utc>>,
) -> Result<u64, StoreError> {
    let op = "updating last_seen";
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| store.error(op, e))?;
    let mut updated = 0;
    // One prepared statement per agent inside one transaction: on SQLite that costs microseconds
    // each (no round trips), and the transaction makes it one fsync.
    for (id, at) in latest {
        let result = sqlx::query(
            "UPDATE agents SET last_seen = ?2 WHERE id = ?1 AND (last_seen IS NULL OR last_seen < ?2)",
        )
        .bind(*id)
        .bind(timestamp(*at))
        .execute(&mut *tx)
        .await
        .map_err(|e| store.error(op, e))?;
        updated += result.rows_affected();
    }
    tx.commit().await.map_err(|e| store.error(op, e))?;
    Ok(updated)
}

pub(super) async fn insert_checkpoints(
    store: &Store,
    pool: &SqlitePool,
    batch: &[CheckpointRecord],
) -> Result<u64, StoreError> {
    let op = "inserting checkpoints";
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| store.error(op, e))?;
    let mut inserted = 0;
    for chunk in statement_chunks(batch) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(concat!(
            "INSERT INTO integrity_checkpoints (",
            checkpoint_columns!(),
            ") "
        ));
        builder.push_values(chunk, |mut row, r| {
            let a = r.attestation.as_ref();
            row.push_bind(r.checkpoint_id.clone())
                .push_bind(r.agent_id.clone())
                .push_bind(r.card_id.clone())
                .push_bind(r.session_id.clone())
                .push_bind(timestamp(r.timestamp))
                .push_bind(r.thinking_block_hash.clone())
                .push_bind(r.provider.clone())
                .push_bind(r.model.clone())
                .push_bind(r.verdict.as_str())
                .push_bind(json(&r.concerns))
                .push_bind(r.reasoning_summary.clone())
                .push_bind(r.conscience_context.as_ref().map(json))
                .push_bind(r.window_position.as_ref().map(json))
                .push_bind(r.analysis_metadata.as_ref().map(json))
                .push_bind(r.linked_trace_id.clone())
                .push_bind(r.source.as_str())
                .push_bind(a.map(|a| a.input_commitment.clone()))
                .push_bind(a.map(|a| a.issuer_signature.clone()))
                .push_bind(a.map(|a| a.signing_key_id.clone()))
                .push_bind(a.map(|a| a.chain_hash.clone()))
                .push_bind(a.and_then(|a| a.prev_chain_hash.clone()))
                .push_bind(a.and_then(|a| a.merkle_leaf_index))
                .push_bind(a.and_then(|a| a.certificate_id.clone()));
        });
        builder.push(" ON CONFLICT (checkpoint_id) DO NOTHING");
        let result = builder
            .build()
            .execute(&mut *tx)
            .await
            .map_err(|e| store.error(op, e))?;
        inserted += result.rows_affected();
    }
    tx.commit().await.map_err(|e| store.error(op, e))?;
    Ok(inserted)
}

pub(super) async fn insert_usage_events(
    store: &Store,
    pool: &SqlitePool,
    batch: &[UsageEventRecord],
) -> Result<u64, StoreError> {
    let op = "inserting usage events";
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| store.error(op, e))?;
    let mut inserted = 0;
    // The batch's write time, what the column's `strftime` default would give each row.
    let created_at = timestamp(Utc::now());
    for chunk in statement_chunks(batch) {
        let mut query = match usage_insert_sql(chunk.len()) {
            Some(sql) => sqlx::query(sql),
            // Not reached (every chunk has one of the prepared sizes); correct all the same.
            None => sqlx::query(sqlx::AssertSqlSafe(build_usage_insert(chunk.len()))),
        };
        for r in chunk {
            query = query
                .bind(r.id.clone())
                .bind(r.agent_id.clone())
                .bind(r.session_id.clone())
                .bind(r.trace_id.clone())
                .bind(timestamp(r.timestamp))
                .bind(r.provider.clone())
                .bind(r.model.clone())
                .bind(r.tokens_in)
                .bind(r.tokens_out)
                .bind(r.duration_ms)
                .bind(r.tool_count)
                .bind(r.gateway_log_id.clone())
                .bind(created_at.clone());
        }
        let result = query
            .execute(&mut *tx)
            .await
            .map_err(|e| store.error(op, e))?;
        inserted += result.rows_affected();
    }
    tx.commit().await.map_err(|e| store.error(op, e))?;
    Ok(inserted)
}

/// The multi-row usage `INSERT` for each of [`STATEMENT_ROWS`], built once: every batch of a size
/// then sends the same text (prepared once per connection) and costs only its binds.
fn usage_insert_sql(rows: usize) -> Option<&'static str> {
    static SQL: std::sync::OnceLock<Vec<(usize, String)>> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        STATEMENT_ROWS
            .iter()
            .map(|&rows| (rows, build_usage_insert(rows)))
            .collect()
    })
    .iter()
    .find(|(n, _)| *n == rows)
    .map(|(_, sql)| sql.as_str())
}

/// `INSERT INTO usage_events (…, created_at) VALUES (?, …), … ON CONFLICT (id) DO NOTHING` for
/// `rows` rows. `created_at` is bound (the batch's write time) rather than left to the column
/// default, which SQLite would otherwise compute with `strftime` for every row.
fn build_usage_insert(rows: usize) -> String {
    const COLUMNS: usize = 13;
    let row = format!("({})", vec!["?"; COLUMNS].join(", "));
    format!(
        "INSERT INTO usage_events ({}, created_at) VALUES {} ON CONFLICT (id) DO NOTHING",
        usage_columns!(),
        vec![row; rows].join(", ")
    )
}

pub(super) async fn recent_checkpoints(
    store: &Store,
    pool: &SqlitePool,
    agent_id: &str,
    session_id: &str,
    limit: u32,
) -> Result<Vec<CheckpointRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        checkpoint_columns!(),
        " FROM integrity_checkpoints WHERE agent_id = ?1 AND session_id = ?2 \
         ORDER BY timestamp DESC LIMIT ?3"
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

fn decode_agent(store: &Store, row: &SqliteRow) -> Result<Agent, StoreError> {
    decode_agent!(store, row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_into_the_fixed_statement_sizes() {
        for len in [0usize, 1, 3, 4, 5, 70, 255, 256, 257, 1000] {
            let rows: Vec<usize> = (0..len).collect();
            let chunks: Vec<&[usize]> = statement_chunks(&rows).collect();
            assert!(
                chunks.iter().all(|c| STATEMENT_ROWS.contains(&c.len())),
                "{len}"
            );
            assert!(chunks.windows(2).all(|w| w[0].len() >= w[1].len()), "{len}");
            let joined: Vec<usize> = chunks.concat();
            assert_eq!(joined, rows, "every row once, in order");
        }
        let sizes: Vec<usize> = statement_chunks(&[0u8; 70]).map(<[u8]>::len).collect();
        assert_eq!(sizes, [64, 4, 1, 1]);
    }

    #[test]
    fn usage_inserts_have_one_placeholder_per_column_and_row() {
        let columns = usage_columns!().split(',').count() + 1;
        for rows in STATEMENT_ROWS {
            let sql = usage_insert_sql(rows).unwrap();
            assert_eq!(sql.matches('?').count(), rows * columns, "{rows}");
            assert!(sql.ends_with("ON CONFLICT (id) DO NOTHING"));
        }
        assert_eq!(usage_insert_sql(3), None);
    }
}
