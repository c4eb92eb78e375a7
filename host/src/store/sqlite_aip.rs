//! The SQLite statements of the AIP storage (see `aip.rs`). Writes run in `BEGIN IMMEDIATE`
//! transactions, which take the database's write lock up front: a claim's read and update cannot
//! interleave with another connection's, so a nudge goes to one claimer, and concurrent writers
//! queue on the busy timeout instead of failing a lock upgrade.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row as _, Sqlite, SqlitePool};

use super::aip::NudgeClaim;
use super::records::{
    ActiveCard, ClaimedNudge, ContainmentRecord, DriftAlertRecord, NudgeRecord,
    WebhookDeliveryRecord,
};
use super::sqlite::{statement_chunks, timestamp};
use super::{Store, StoreError};

pub(super) async fn insert_nudges(
    store: &Store,
    pool: &SqlitePool,
    batch: &[NudgeRecord],
) -> Result<u64, StoreError> {
    let op = "inserting nudges";
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| store.error(op, e))?;
    let mut inserted = 0;
    for chunk in statement_chunks(batch) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO enforcement_nudges (id, agent_id, checkpoint_id, session_id, \
             nudge_content, concerns_summary, created_at) ",
        );
        builder.push_values(chunk, |mut row, r| {
            row.push_bind(r.id.clone())
                .push_bind(r.agent_id.clone())
                .push_bind(r.checkpoint_id.clone())
                .push_bind(r.session_id.clone())
                .push_bind(r.nudge_content.clone())
                .push_bind(r.concerns_summary.clone())
                .push_bind(timestamp(r.created_at));
        });
        // No conflict target: a stored id or checkpoint_id (both unique) skips the row.
        builder.push(" ON CONFLICT DO NOTHING");
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

pub(super) async fn insert_drift_alerts(
    store: &Store,
    pool: &SqlitePool,
    batch: &[DriftAlertRecord],
) -> Result<u64, StoreError> {
    let op = "inserting drift alerts";
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| store.error(op, e))?;
    let mut inserted = 0;
    for chunk in statement_chunks(batch) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO drift_alerts (id, agent_id, card_id, session_id, alert_type, severity, \
             description, drift_data, dedup_key, created_at) ",
        );
        builder.push_values(chunk, |mut row, r| {
            row.push_bind(r.id.clone())
                .push_bind(r.agent_id.clone())
                .push_bind(r.card_id.clone())
                .push_bind(r.session_id.clone())
                .push_bind(r.alert_type.clone())
                .push_bind(r.severity.clone())
                .push_bind(r.description.clone())
                .push_bind(r.drift_data.to_string())
                .push_bind(r.dedup_key.clone())
                .push_bind(timestamp(r.created_at));
        });
        // No conflict target: a stored id or dedup_key (both unique) skips the row.
        builder.push(" ON CONFLICT DO NOTHING");
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

pub(super) async fn apply_containments(
    store: &Store,
    pool: &SqlitePool,
    batch: &[ContainmentRecord],
) -> Result<u64, StoreError> {
    let op = "applying a containment";
    let mut contained = 0;
    for r in batch {
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| store.error(op, e))?;
        let logged = sqlx::query("SELECT 1 FROM agent_containment_log WHERE id = ?1")
            .bind(&r.log_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| store.error(op, e))?
            .is_some();
        if !logged {
            let at = timestamp(r.at);
            let updated = sqlx::query(
                "UPDATE agents SET containment_status = ?2, contained_at = ?3, \
                 contained_by = ?4, containment_reason = ?5 \
                 WHERE id = ?1 AND containment_status = 'active'",
            )
            .bind(&r.agent_id)
            .bind(r.new_status.as_str())
            .bind(&at)
            .bind(&r.actor)
            .bind(&r.reason)
            .execute(&mut *tx)
            .await
            .map_err(|e| store.error(op, e))?
            .rows_affected();
            if updated == 1 {
                let result = sqlx::query(
                    "INSERT INTO agent_containment_log (id, agent_id, action, actor, reason, \
                     previous_status, new_status, metadata, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&r.log_id)
                .bind(&r.agent_id)
                .bind(&r.action)
                .bind(&r.actor)
                .bind(&r.reason)
                .bind(r.previous_status.as_str())
                .bind(r.new_status.as_str())
                .bind(r.metadata.to_string())
                .bind(&at)
                .execute(&mut *tx)
                .await
                .map_err(|e| store.error(op, e))?;
                contained += result.rows_affected();
            }
        }
        tx.commit().await.map_err(|e| store.error(op, e))?;
    }
    Ok(contained)
}

pub(super) async fn upsert_webhook_deliveries(
    store: &Store,
    pool: &SqlitePool,
    batch: &[WebhookDeliveryRecord],
) -> Result<u64, StoreError> {
    let op = "recording webhook deliveries";
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| store.error(op, e))?;
    let mut written = 0;
    for chunk in statement_chunks(batch) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO aip_webhook_deliveries (id, registration_id, checkpoint_id, event_type, \
             delivered, attempts, last_status, last_error, created_at) ",
        );
        builder.push_values(chunk, |mut row, r| {
            row.push_bind(r.id.clone())
                .push_bind(r.registration_id.clone())
                .push_bind(r.checkpoint_id.clone())
                .push_bind(r.event_type.clone())
                .push_bind(r.delivered)
                .push_bind(r.attempts)
                .push_bind(r.last_status)
                .push_bind(r.last_error.clone())
                .push_bind(timestamp(r.created_at));
        });
        // The update's condition is `aip::replaces`.
        builder.push(
            " ON CONFLICT (registration_id, checkpoint_id) DO UPDATE SET \
             delivered = max(aip_webhook_deliveries.delivered, excluded.delivered), \
             attempts = excluded.attempts, last_status = excluded.last_status, \
             last_error = excluded.last_error \
             WHERE excluded.attempts > aip_webhook_deliveries.attempts \
             OR (excluded.attempts = aip_webhook_deliveries.attempts \
             AND aip_webhook_deliveries.delivered = 0)",
        );
        let result = builder
            .build()
            .execute(&mut *tx)
            .await
            .map_err(|e| store.error(op, e))?;
        written += result.rows_affected();
    }
    tx.commit().await.map_err(|e| store.error(op, e))?;
    Ok(written)
}

pub(super) async fn active_card(
    store: &Store,
    pool: &SqlitePool,
    agent_id: &str,
) -> Result<Option<ActiveCard>, StoreError> {
    let op = "reading the active card";
    let row = sqlx::query(
        "SELECT id, card_json, conscience_values FROM alignment_cards \
         WHERE agent_id = ?1 AND is_active = 1",
    )
    .bind(agent_id)
    .fetch_optional(pool)
    .await
    .map_err(|e| store.error(op, e))?;
    row.map(|row| {
        Ok(ActiveCard {
            id: row.try_get("id")?,
            card_json: row.try_get("card_json")?,
            conscience_values: row.try_get("conscience_values")?,
        })
    })
    .transpose()
    .map_err(|e| store.error(op, e))
}

pub(super) async fn recent_agent_verdicts(
    store: &Store,
    pool: &SqlitePool,
    agent_id: &str,
    limit: u32,
) -> Result<Vec<(String, String, DateTime<Utc>)>, StoreError> {
    sqlx::query_as(
        "SELECT checkpoint_id, verdict, timestamp FROM integrity_checkpoints \
         WHERE agent_id = ?1 ORDER BY created_at DESC, timestamp DESC, checkpoint_id DESC \
         LIMIT ?2",
    )
    .bind(agent_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(|e| store.error("reading recent verdicts", e))
}

pub(super) async fn count_session_violations(
    store: &Store,
    pool: &SqlitePool,
    agent_id: &str,
    session_id: &str,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT count(*) FROM integrity_checkpoints \
         WHERE agent_id = ?1 AND session_id = ?2 AND verdict = 'boundary_violation'",
    )
    .bind(agent_id)
    .bind(session_id)
    .fetch_one(pool)
    .await
    .map_err(|e| store.error("counting session violations", e))
}

pub(super) async fn claim_pending_nudges(
    store: &Store,
    pool: &SqlitePool,
    claim: &NudgeClaim<'_>,
) -> Result<Vec<ClaimedNudge>, StoreError> {
    let op = "claiming nudges";
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| store.error(op, e))?;
    let rows = sqlx::query(
        "UPDATE enforcement_nudges SET claim_token = ?2, claimed_until = ?5 \
         WHERE id IN (SELECT id FROM enforcement_nudges \
         WHERE agent_id = ?1 AND status = 'pending' AND created_at >= ?3 \
         AND (claimed_until IS NULL OR claimed_until < ?4) \
         ORDER BY created_at, id LIMIT ?6) \
         RETURNING id, checkpoint_id, nudge_content, created_at",
    )
    .bind(claim.agent_id)
    .bind(claim.token)
    .bind(timestamp(claim.created_after))
    .bind(timestamp(claim.now))
    .bind(timestamp(claim.until))
    .bind(i64::from(claim.limit))
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| store.error(op, e))?;
    let claimed = rows
        .iter()
        .map(|row| {
            Ok(ClaimedNudge {
                id: row.try_get("id")?,
                checkpoint_id: row.try_get("checkpoint_id")?,
                nudge_content: row.try_get("nudge_content")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(|e| store.error(op, e))?;
    tx.commit().await.map_err(|e| store.error(op, e))?;
    Ok(claimed)
}

pub(super) async fn confirm_nudges(
    store: &Store,
    pool: &SqlitePool,
    token: &str,
    delivery_session_id: &str,
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let result = sqlx::query(
        "UPDATE enforcement_nudges SET status = 'delivered', delivered_at = ?3, \
         delivery_session_id = ?2, claim_token = NULL, claimed_until = NULL \
         WHERE claim_token = ?1 AND status = 'pending'",
    )
    .bind(token)
    .bind(delivery_session_id)
    .bind(timestamp(at))
    .execute(pool)
    .await
    .map_err(|e| store.error("confirming nudges", e))?;
    Ok(result.rows_affected())
}

pub(super) async fn release_nudges(
    store: &Store,
    pool: &SqlitePool,
    token: &str,
) -> Result<u64, StoreError> {
    let result = sqlx::query(
        "UPDATE enforcement_nudges SET claim_token = NULL, claimed_until = NULL \
         WHERE claim_token = ?1 AND status = 'pending'",
    )
    .bind(token)
    .execute(pool)
    .await
    .map_err(|e| store.error("releasing nudges", e))?;
    Ok(result.rows_affected())
}

pub(super) async fn pending_nudge_count(
    store: &Store,
    pool: &SqlitePool,
    agent_id: &str,
    created_after: DateTime<Utc>,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT count(*) FROM enforcement_nudges \
         WHERE agent_id = ?1 AND status = 'pending' AND created_at >= ?2",
    )
    .bind(agent_id)
    .bind(timestamp(created_after))
    .fetch_one(pool)
    .await
    .map_err(|e| store.error("counting pending nudges", e))
}
