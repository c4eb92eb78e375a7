//! The PostgreSQL statements of the AIP storage (see `aip.rs`). Batches are one `UNNEST`
//! statement each; a containment is one statement (a data-modifying CTE: the agent's update and
//! its log row commit together); claims lock the rows they take with `FOR UPDATE SKIP LOCKED`,
//! so concurrent claimers never wait for each other and never take the same nudge.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row as _};

use super::aip::NudgeClaim;
use super::records::{
    ActiveCard, ClaimedNudge, ContainmentRecord, DriftAlertRecord, NudgeRecord,
    WebhookDeliveryRecord,
};
use super::{Store, StoreError};

pub(super) async fn insert_nudges(
    store: &Store,
    pool: &PgPool,
    batch: &[NudgeRecord],
) -> Result<u64, StoreError> {
    let n = batch.len();
    let mut id = Vec::with_capacity(n);
    let mut agent_id = Vec::with_capacity(n);
    let mut checkpoint_id = Vec::with_capacity(n);
    let mut session_id = Vec::with_capacity(n);
    let mut content = Vec::with_capacity(n);
    let mut summary = Vec::with_capacity(n);
    let mut created_at = Vec::with_capacity(n);
    for r in batch {
        id.push(r.id.as_str());
        agent_id.push(r.agent_id.as_str());
        checkpoint_id.push(r.checkpoint_id.as_str());
        session_id.push(r.session_id.as_str());
        content.push(r.nudge_content.as_str());
        summary.push(r.concerns_summary.as_str());
        created_at.push(r.created_at);
    }
    // No conflict target: a stored id or checkpoint_id (both unique) skips the row.
    let result = sqlx::query(
        "INSERT INTO enforcement_nudges (id, agent_id, checkpoint_id, session_id, nudge_content, \
         concerns_summary, created_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::timestamptz[]) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(agent_id)
    .bind(checkpoint_id)
    .bind(session_id)
    .bind(content)
    .bind(summary)
    .bind(created_at)
    .execute(pool)
    .await
    .map_err(|e| store.error("inserting nudges", e))?;
    Ok(result.rows_affected())
}

pub(super) async fn insert_drift_alerts(
    store: &Store,
    pool: &PgPool,
    batch: &[DriftAlertRecord],
) -> Result<u64, StoreError> {
    let n = batch.len();
    let mut id = Vec::with_capacity(n);
    let mut agent_id = Vec::with_capacity(n);
    let mut card_id = Vec::with_capacity(n);
    let mut session_id = Vec::with_capacity(n);
    let mut alert_type = Vec::with_capacity(n);
    let mut severity = Vec::with_capacity(n);
    let mut description = Vec::with_capacity(n);
    let mut drift_data = Vec::with_capacity(n);
    let mut dedup_key = Vec::with_capacity(n);
    let mut created_at = Vec::with_capacity(n);
    for r in batch {
        id.push(r.id.as_str());
        agent_id.push(r.agent_id.as_str());
        card_id.push(r.card_id.as_deref());
        session_id.push(r.session_id.as_str());
        alert_type.push(r.alert_type.as_str());
        severity.push(r.severity.as_str());
        description.push(r.description.as_str());
        drift_data.push(r.drift_data.clone());
        dedup_key.push(r.dedup_key.as_str());
        created_at.push(r.created_at);
    }
    // No conflict target: a stored id or dedup_key (both unique) skips the row.
    let result = sqlx::query(
        "INSERT INTO drift_alerts (id, agent_id, card_id, session_id, alert_type, severity, \
         description, drift_data, dedup_key, created_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::jsonb[], $9::text[], $10::timestamptz[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(agent_id)
    .bind(card_id)
    .bind(session_id)
    .bind(alert_type)
    .bind(severity)
    .bind(description)
    .bind(drift_data)
    .bind(dedup_key)
    .bind(created_at)
    .execute(pool)
    .await
    .map_err(|e| store.error("inserting drift alerts", e))?;
    Ok(result.rows_affected())
}

pub(super) async fn apply_containments(
    store: &Store,
    pool: &PgPool,
    batch: &[ContainmentRecord],
) -> Result<u64, StoreError> {
    let mut contained = 0;
    for r in batch {
        // One statement, so one transaction. A concurrent twin blocks on the agent's row, then
        // finds it no longer active and updates (and logs) nothing.
        let result = sqlx::query(
            "WITH contained AS ( \
             UPDATE agents SET containment_status = $7, contained_at = $9, contained_by = $4, \
             containment_reason = $5 \
             WHERE id = $2 AND containment_status = 'active' \
             AND NOT EXISTS (SELECT 1 FROM agent_containment_log WHERE id = $1) \
             RETURNING id) \
             INSERT INTO agent_containment_log (id, agent_id, action, actor, reason, \
             previous_status, new_status, metadata, created_at) \
             SELECT $1, id, $3, $4, $5, $6, $7, $8, $9 FROM contained \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&r.log_id)
        .bind(&r.agent_id)
        .bind(&r.action)
        .bind(&r.actor)
        .bind(&r.reason)
        .bind(r.previous_status.as_str())
        .bind(r.new_status.as_str())
        .bind(&r.metadata)
        .bind(r.at)
        .execute(pool)
        .await
        .map_err(|e| store.error("applying a containment", e))?;
        contained += result.rows_affected();
    }
    Ok(contained)
}

pub(super) async fn upsert_webhook_deliveries(
    store: &Store,
    pool: &PgPool,
    batch: &[WebhookDeliveryRecord],
) -> Result<u64, StoreError> {
    let n = batch.len();
    let mut id = Vec::with_capacity(n);
    let mut registration_id = Vec::with_capacity(n);
    let mut checkpoint_id = Vec::with_capacity(n);
    let mut event_type = Vec::with_capacity(n);
    let mut delivered = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut last_status = Vec::with_capacity(n);
    let mut last_error = Vec::with_capacity(n);
    let mut created_at = Vec::with_capacity(n);
    for r in batch {
        id.push(r.id.as_str());
        registration_id.push(r.registration_id.as_str());
        checkpoint_id.push(r.checkpoint_id.as_str());
        event_type.push(r.event_type.as_str());
        delivered.push(r.delivered);
        attempts.push(r.attempts);
        last_status.push(r.last_status);
        last_error.push(r.last_error.as_deref());
        created_at.push(r.created_at);
    }
    // The update's condition is `aip::replaces`.
    let result = sqlx::query(
        "INSERT INTO aip_webhook_deliveries AS d (id, registration_id, checkpoint_id, \
         event_type, delivered, attempts, last_status, last_error, created_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], \
         $6::int4[], $7::int4[], $8::text[], $9::timestamptz[]) \
         ON CONFLICT (registration_id, checkpoint_id) DO UPDATE SET \
         delivered = d.delivered OR EXCLUDED.delivered, attempts = EXCLUDED.attempts, \
         last_status = EXCLUDED.last_status, last_error = EXCLUDED.last_error \
         WHERE EXCLUDED.attempts > d.attempts \
         OR (EXCLUDED.attempts = d.attempts AND NOT d.delivered)",
    )
    .bind(id)
    .bind(registration_id)
    .bind(checkpoint_id)
    .bind(event_type)
    .bind(delivered)
    .bind(attempts)
    .bind(last_status)
    .bind(last_error)
    .bind(created_at)
    .execute(pool)
    .await
    .map_err(|e| store.error("recording webhook deliveries", e))?;
    Ok(result.rows_affected())
}

pub(super) async fn active_card(
    store: &Store,
    pool: &PgPool,
    agent_id: &str,
) -> Result<Option<ActiveCard>, StoreError> {
    let op = "reading the active card";
    let row = sqlx::query(
        "SELECT id, card_json, conscience_values FROM alignment_cards \
         WHERE agent_id = $1 AND is_active",
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
    pool: &PgPool,
    agent_id: &str,
    limit: u32,
) -> Result<Vec<(String, String, DateTime<Utc>)>, StoreError> {
    sqlx::query_as(
        "SELECT checkpoint_id, verdict, timestamp FROM integrity_checkpoints \
         WHERE agent_id = $1 ORDER BY created_at DESC, timestamp DESC, checkpoint_id DESC \
         LIMIT $2",
    )
    .bind(agent_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(|e| store.error("reading recent verdicts", e))
}

pub(super) async fn count_session_violations(
    store: &Store,
    pool: &PgPool,
    agent_id: &str,
    session_id: &str,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT count(*) FROM integrity_checkpoints \
         WHERE agent_id = $1 AND session_id = $2 AND verdict = 'boundary_violation'",
    )
    .bind(agent_id)
    .bind(session_id)
    .fetch_one(pool)
    .await
    .map_err(|e| store.error("counting session violations", e))
}

pub(super) async fn claim_pending_nudges(
    store: &Store,
    pool: &PgPool,
    claim: &NudgeClaim<'_>,
) -> Result<Vec<ClaimedNudge>, StoreError> {
    let op = "claiming nudges";
    // A row another claimer has locked is skipped; one it claimed and committed meanwhile is
    // re-checked against the condition (read committed) and dropped.
    let rows = sqlx::query(
        "UPDATE enforcement_nudges SET claim_token = $2, claimed_until = $5 \
         WHERE id IN (SELECT id FROM enforcement_nudges \
         WHERE agent_id = $1 AND status = 'pending' AND created_at >= $3 \
         AND (claimed_until IS NULL OR claimed_until < $4) \
         ORDER BY created_at, id LIMIT $6 FOR UPDATE SKIP LOCKED) \
         RETURNING id, checkpoint_id, nudge_content, created_at",
    )
    .bind(claim.agent_id)
    .bind(claim.token)
    .bind(claim.created_after)
    .bind(claim.now)
    .bind(claim.until)
    .bind(i64::from(claim.limit))
    .fetch_all(pool)
    .await
    .map_err(|e| store.error(op, e))?;
    rows.iter()
        .map(|row| {
            Ok(ClaimedNudge {
                id: row.try_get("id")?,
                checkpoint_id: row.try_get("checkpoint_id")?,
                nudge_content: row.try_get("nudge_content")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| store.error(op, e))
}

pub(super) async fn confirm_nudges(
    store: &Store,
    pool: &PgPool,
    token: &str,
    delivery_session_id: &str,
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let result = sqlx::query(
        "UPDATE enforcement_nudges SET status = 'delivered', delivered_at = $3, \
         delivery_session_id = $2, claim_token = NULL, claimed_until = NULL \
         WHERE claim_token = $1 AND status = 'pending'",
    )
    .bind(token)
    .bind(delivery_session_id)
    .bind(at)
    .execute(pool)
    .await
    .map_err(|e| store.error("confirming nudges", e))?;
    Ok(result.rows_affected())
}

pub(super) async fn release_nudges(
    store: &Store,
    pool: &PgPool,
    token: &str,
) -> Result<u64, StoreError> {
    let result = sqlx::query(
        "UPDATE enforcement_nudges SET claim_token = NULL, claimed_until = NULL \
         WHERE claim_token = $1 AND status = 'pending'",
    )
    .bind(token)
    .execute(pool)
    .await
    .map_err(|e| store.error("releasing nudges", e))?;
    Ok(result.rows_affected())
}

pub(super) async fn pending_nudge_count(
    store: &Store,
    pool: &PgPool,
    agent_id: &str,
    created_after: DateTime<Utc>,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT count(*) FROM enforcement_nudges \
         WHERE agent_id = $1 AND status = 'pending' AND created_at >= $2",
    )
    .bind(agent_id)
    .bind(created_after)
    .fetch_one(pool)
    .await
    .map_err(|e| store.error("counting pending nudges", e))
}
