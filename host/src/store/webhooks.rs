//! The webhook statements: an agent's enabled registrations, the atomic failure counting and
//! auto-disable of a registration, registering and re-enabling, and what the redelivery job
//! reads and claims. Delivery records themselves are written by the background writer
//! (`Store::upsert_webhook_deliveries`). See `docs/webhooks.md`.

use chrono::{DateTime, Utc};

use super::sqlite::timestamp;
use super::{Pool, Store, StoreError, Verdict, WebhookDeliveryRecord, WebhookRegistration};

/// The columns of a [`WebhookRegistration`], prefixed with `r.`.
macro_rules! registration_columns {
    () => {
        "r.id AS r_id, r.agent_id AS r_agent_id, r.callback_url AS r_callback_url, \
         r.secret AS r_secret, r.event_types AS r_event_types, \
         r.failure_count AS r_failure_count, r.enabled AS r_enabled"
    };
}

/// The columns a redelivery needs besides the registration's.
macro_rules! redelivery_columns {
    () => {
        "d.id AS d_id, d.registration_id AS d_registration_id, \
         d.checkpoint_id AS d_checkpoint_id, d.event_type AS d_event_type, \
         d.delivered AS d_delivered, d.attempts AS d_attempts, d.last_status AS d_last_status, \
         d.last_error AS d_last_error, d.created_at AS d_created_at, \
         c.agent_id AS c_agent_id, c.verdict AS c_verdict, c.concerns AS c_concerns, \
         c.reasoning_summary AS c_reasoning_summary, c.timestamp AS c_timestamp"
    };
}

/// The columns of an `aip_webhook_deliveries` row, prefixed with `d.`.
macro_rules! delivery_columns {
    () => {
        "d.id AS d_id, d.registration_id AS d_registration_id, \
         d.checkpoint_id AS d_checkpoint_id, d.event_type AS d_event_type, \
         d.delivered AS d_delivered, d.attempts AS d_attempts, d.last_status AS d_last_status, \
         d.last_error AS d_last_error, d.created_at AS d_created_at"
    };
}

/// Decodes the registration columns of a row; `$event_types` turns the raw column into the
/// list (an array on PostgreSQL, JSON text on SQLite).
macro_rules! decode_registration {
    ($row:expr, $event_types:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        let err = |column: &str, e: sqlx::Error| format!("column {column}: {e}");
        (|| -> Result<WebhookRegistration, String> {
            Ok(WebhookRegistration {
                id: row.try_get("r_id").map_err(|e| err("id", e))?,
                agent_id: row.try_get("r_agent_id").map_err(|e| err("agent_id", e))?,
                callback_url: row
                    .try_get("r_callback_url")
                    .map_err(|e| err("callback_url", e))?,
                secret: row.try_get("r_secret").map_err(|e| err("secret", e))?,
                event_types: $event_types(row)?,
                failure_count: row
                    .try_get("r_failure_count")
                    .map_err(|e| err("failure_count", e))?,
                enabled: row.try_get("r_enabled").map_err(|e| err("enabled", e))?,
            })
        })()
    }};
}

/// Decodes the delivery columns of a row.
macro_rules! decode_delivery {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        let err = |column: &str, e: sqlx::Error| format!("column {column}: {e}");
        (|| -> Result<WebhookDeliveryRecord, String> {
            Ok(WebhookDeliveryRecord {
                id: row.try_get("d_id").map_err(|e| err("id", e))?,
                registration_id: row
                    .try_get("d_registration_id")
                    .map_err(|e| err("registration_id", e))?,
                checkpoint_id: row
                    .try_get("d_checkpoint_id")
                    .map_err(|e| err("checkpoint_id", e))?,
                event_type: row
                    .try_get("d_event_type")
                    .map_err(|e| err("event_type", e))?,
                delivered: row
                    .try_get("d_delivered")
                    .map_err(|e| err("delivered", e))?,
                attempts: row.try_get("d_attempts").map_err(|e| err("attempts", e))?,
                last_status: row
                    .try_get("d_last_status")
                    .map_err(|e| err("last_status", e))?,
                last_error: row
                    .try_get("d_last_error")
                    .map_err(|e| err("last_error", e))?,
                created_at: row
                    .try_get("d_created_at")
                    .map_err(|e| err("created_at", e))?,
            })
        })()
    }};
}

/// Decodes a redelivery row (delivery, registration and checkpoint columns).
macro_rules! decode_redelivery {
    ($row:expr, $event_types:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        let err = |column: &str, e: sqlx::Error| format!("column {column}: {e}");
        (|| -> Result<Redelivery, String> {
            let verdict: String = row.try_get("c_verdict").map_err(|e| err("verdict", e))?;
            Ok(Redelivery {
                delivery: decode_delivery!(row)?,
                registration: decode_registration!(row, $event_types)?,
                agent_id: row.try_get("c_agent_id").map_err(|e| err("agent_id", e))?,
                verdict: verdict
                    .parse()
                    .map_err(|e: super::UnknownValue| e.to_string())?,
                concerns: row.try_get("c_concerns").map_err(|e| err("concerns", e))?,
                reasoning_summary: row
                    .try_get("c_reasoning_summary")
                    .map_err(|e| err("reasoning_summary", e))?,
                timestamp: row
                    .try_get("c_timestamp")
                    .map_err(|e| err("timestamp", e))?,
            })
        })()
    }};
}

/// Event types a registration may subscribe to.
pub const EVENT_TYPES: &[&str] = &[
    "*",
    "verdict.*",
    "verdict.clear",
    "verdict.review_needed",
    "verdict.boundary_violation",
];

/// A registration's state after a delivery outcome was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookState {
    /// Consecutive failed deliveries (0 after a success).
    pub failure_count: u32,
    /// Whether the registration still receives deliveries.
    pub enabled: bool,
    /// This very outcome disabled the registration (its failure reached the limit).
    pub just_disabled: bool,
}

/// An undelivered delivery the redelivery job may send again, with what it needs to rebuild
/// the identical payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Redelivery {
    /// The delivery record as stored.
    pub delivery: WebhookDeliveryRecord,
    /// Its registration (enabled).
    pub registration: WebhookRegistration,
    /// The checkpoint's agent.
    pub agent_id: String,
    /// The checkpoint's verdict.
    pub verdict: Verdict,
    /// The checkpoint's concerns.
    pub concerns: serde_json::Value,
    /// The checkpoint's reasoning summary.
    pub reasoning_summary: String,
    /// When the checkpoint's verdict was produced.
    pub timestamp: DateTime<Utc>,
}

/// Why a registration cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// A value is not acceptable (the message says which and why).
    #[error("invalid webhook registration: {0}")]
    Invalid(String),
    /// The database failed (a second registration of the same URL for the agent is a
    /// constraint violation).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn pg_event_types(row: &sqlx::postgres::PgRow) -> Result<Vec<String>, String> {
    use sqlx::Row as _;
    row.try_get("r_event_types")
        .map_err(|e| format!("column event_types: {e}"))
}

fn sqlite_event_types(row: &sqlx::sqlite::SqliteRow) -> Result<Vec<String>, String> {
    use sqlx::Row as _;
    let text: String = row
        .try_get("r_event_types")
        .map_err(|e| format!("column event_types: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("column event_types: {e}"))
}

impl Store {
    /// The agent's enabled webhook registrations, oldest first.
    pub async fn webhook_registrations(
        &self,
        agent_id: &str,
    ) -> Result<Vec<WebhookRegistration>, StoreError> {
        let op = "reading webhook registrations";
        let decoded = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(concat!(
                "SELECT ",
                registration_columns!(),
                " FROM aip_webhook_registrations r WHERE r.agent_id = $1 AND r.enabled \
                 ORDER BY r.created_at, r.id"
            ))
            .bind(agent_id)
            .fetch_all(pool)
            .await
            .map_err(|e| self.error(op, e))?
            .iter()
            .map(|row| decode_registration!(row, pg_event_types))
            .collect::<Result<Vec<_>, _>>(),
            Pool::Sqlite(pool) => sqlx::query(concat!(
                "SELECT ",
                registration_columns!(),
                " FROM aip_webhook_registrations r WHERE r.agent_id = ?1 AND r.enabled \
                 ORDER BY r.created_at, r.id"
            ))
            .bind(agent_id)
            .fetch_all(pool)
            .await
            .map_err(|e| self.error(op, e))?
            .iter()
            .map(|row| decode_registration!(row, sqlite_event_types))
            .collect::<Result<Vec<_>, _>>(),
        };
        decoded.map_err(|reason| self.decode_error(op, reason))
    }

    /// Counts one delivery outcome on its registration, in a single atomic `UPDATE` (no
    /// read-modify-write, so concurrent outcomes are never lost):
    /// - delivered: `failure_count = 0` (written only when it was not already 0);
    /// - failed: `failure_count = failure_count + 1`, `last_failure_at = at`, and once the count
    ///   reaches `disable_after` (0: never) `enabled = false, disabled_at = at`.
    ///
    /// Returns the new state, or `None` when the registration no longer exists.
    pub async fn record_webhook_outcome(
        &self,
        registration_id: &str,
        delivered: bool,
        disable_after: u32,
        at: DateTime<Utc>,
    ) -> Result<Option<WebhookState>, StoreError> {
        let op = "counting a webhook outcome";
        let limit = i32::try_from(disable_after).unwrap_or(i32::MAX);
        let row: Option<(i32, bool)> = match (&self.pool, delivered) {
            (Pool::Postgres(pool), false) => sqlx::query_as(
                "UPDATE aip_webhook_registrations SET \
                 failure_count = failure_count + 1, \
                 last_failure_at = $2, \
                 enabled = CASE WHEN $3 > 0 AND failure_count + 1 >= $3 THEN FALSE \
                 ELSE enabled END, \
                 disabled_at = CASE WHEN enabled AND $3 > 0 AND failure_count + 1 >= $3 THEN $2 \
                 ELSE disabled_at END \
                 WHERE id = $1 RETURNING failure_count, enabled",
            )
            .bind(registration_id)
            .bind(at)
            .bind(limit)
            .fetch_optional(pool)
            .await
            .map_err(|e| self.error(op, e))?,
            (Pool::Sqlite(pool), false) => sqlx::query_as(
                "UPDATE aip_webhook_registrations SET \
                 failure_count = failure_count + 1, \
                 last_failure_at = ?2, \
                 enabled = CASE WHEN ?3 > 0 AND failure_count + 1 >= ?3 THEN 0 ELSE enabled END, \
                 disabled_at = CASE WHEN enabled AND ?3 > 0 AND failure_count + 1 >= ?3 THEN ?2 \
                 ELSE disabled_at END \
                 WHERE id = ?1 RETURNING failure_count, enabled",
            )
            .bind(registration_id)
            .bind(timestamp(at))
            .bind(limit)
            .fetch_optional(pool)
            .await
            .map_err(|e| self.error(op, e))?,
            (Pool::Postgres(pool), true) => {
                let reset = sqlx::query_as(
                    "UPDATE aip_webhook_registrations SET failure_count = 0 \
                     WHERE id = $1 AND failure_count <> 0 RETURNING failure_count, enabled",
                )
                .bind(registration_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| self.error(op, e))?;
                match reset {
                    Some(row) => Some(row),
                    None => sqlx::query_as(
                        "SELECT failure_count, enabled FROM aip_webhook_registrations \
                         WHERE id = $1",
                    )
                    .bind(registration_id)
                    .fetch_optional(pool)
                    .await
                    .map_err(|e| self.error(op, e))?,
                }
            }
            (Pool::Sqlite(pool), true) => {
                let reset = sqlx::query_as(
                    "UPDATE aip_webhook_registrations SET failure_count = 0 \
                     WHERE id = ?1 AND failure_count <> 0 RETURNING failure_count, enabled",
                )
                .bind(registration_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| self.error(op, e))?;
                match reset {
                    Some(row) => Some(row),
                    None => sqlx::query_as(
                        "SELECT failure_count, enabled FROM aip_webhook_registrations \
                         WHERE id = ?1",
                    )
                    .bind(registration_id)
                    .fetch_optional(pool)
                    .await
                    .map_err(|e| self.error(op, e))?,
                }
            }
        };
        Ok(row.map(|(count, enabled)| {
            let failure_count = u32::try_from(count).unwrap_or_default();
            WebhookState {
                failure_count,
                enabled,
                // The count moves by exactly one per failure, so exactly one failure sees it
                // reach the limit (re-enabling resets it: `enable_webhook_registration`).
                just_disabled: !delivered
                    && !enabled
                    && disable_after > 0
                    && failure_count == disable_after,
            }
        }))
    }

    /// Registers a webhook for an agent and returns its id (`wh-<16 hex>`). The URL must be an
    /// absolute http(s) URL with a host and no user information; `event_types` must be
    /// non-empty, each one of [`EVENT_TYPES`]; the secret must not be empty. The destination is
    /// vetted by the SSRF guard at every delivery, not here (DNS answers change).
    pub async fn insert_webhook_registration(
        &self,
        agent_id: &str,
        callback_url: &str,
        secret: &str,
        event_types: &[String],
    ) -> Result<String, RegistrationError> {
        crate::webhooks::Target::parse(callback_url)
            .map_err(|e| RegistrationError::Invalid(e.to_string()))?;
        if secret.is_empty() {
            return Err(RegistrationError::Invalid("the secret is empty".to_owned()));
        }
        if event_types.is_empty() {
            return Err(RegistrationError::Invalid(
                "no event types (use `*` for every event)".to_owned(),
            ));
        }
        if let Some(bad) = event_types
            .iter()
            .find(|t| !EVENT_TYPES.contains(&t.as_str()))
        {
            return Err(RegistrationError::Invalid(format!(
                "unknown event type `{bad}` (expected one of {})",
                EVENT_TYPES.join(", ")
            )));
        }
        let id = format!("wh-{}", crate::webhooks::payload::random_hex(8));
        let op = "registering a webhook";
        let url = callback_url.trim();
        match &self.pool {
            Pool::Postgres(pool) => sqlx::query(
                "INSERT INTO aip_webhook_registrations \
                 (id, agent_id, callback_url, secret, event_types) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(agent_id)
            .bind(url)
            .bind(secret)
            .bind(event_types)
            .execute(pool)
            .await
            .map(drop),
            Pool::Sqlite(pool) => sqlx::query(
                "INSERT INTO aip_webhook_registrations \
                 (id, agent_id, callback_url, secret, event_types) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(&id)
            .bind(agent_id)
            .bind(url)
            .bind(secret)
            .bind(serde_json::Value::from(event_types.to_vec()).to_string())
            .execute(pool)
            .await
            .map(drop),
        }
        .map_err(|e| self.error(op, e))?;
        Ok(id)
    }

    /// Re-enables a registration and resets its failure count. Returns whether it exists.
    pub async fn enable_webhook_registration(
        &self,
        registration_id: &str,
    ) -> Result<bool, StoreError> {
        let op = "enabling a webhook registration";
        let result = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(
                "UPDATE aip_webhook_registrations SET enabled = TRUE, disabled_at = NULL, \
                 failure_count = 0 WHERE id = $1",
            )
            .bind(registration_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
            Pool::Sqlite(pool) => sqlx::query(
                "UPDATE aip_webhook_registrations SET enabled = 1, disabled_at = NULL, \
                 failure_count = 0 WHERE id = ?1",
            )
            .bind(registration_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        };
        result.map(|n| n == 1).map_err(|e| self.error(op, e))
    }

    /// The delivery records of a checkpoint (one per registration it was delivered to), by
    /// registration id.
    pub async fn webhook_deliveries_of_checkpoint(
        &self,
        checkpoint_id: &str,
    ) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
        let op = "reading webhook deliveries";
        let decoded = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(concat!(
                "SELECT ",
                delivery_columns!(),
                " FROM aip_webhook_deliveries d WHERE d.checkpoint_id = $1 \
                 ORDER BY d.registration_id"
            ))
            .bind(checkpoint_id)
            .fetch_all(pool)
            .await
            .map_err(|e| self.error(op, e))?
            .iter()
            .map(|row| decode_delivery!(row))
            .collect::<Result<Vec<_>, _>>(),
            Pool::Sqlite(pool) => sqlx::query(concat!(
                "SELECT ",
                delivery_columns!(),
                " FROM aip_webhook_deliveries d WHERE d.checkpoint_id = ?1 \
                 ORDER BY d.registration_id"
            ))
            .bind(checkpoint_id)
            .fetch_all(pool)
            .await
            .map_err(|e| self.error(op, e))?
            .iter()
            .map(|row| decode_delivery!(row))
            .collect::<Result<Vec<_>, _>>(),
        };
        decoded.map_err(|reason| self.decode_error(op, reason))
    }

    /// At most `limit` deliveries the redelivery job may send again, oldest first: not
    /// delivered, fewer than `max_attempts` attempts, created at or after `since`, whose
    /// registration is enabled, and due at `now` — a delivery with `n` attempts is due
    /// `2^(n-1)` minutes (capped at 2^10) after it was created, so redeliveries back off
    /// exponentially without a column of their own.
    pub async fn redeliverable_webhook_deliveries(
        &self,
        max_attempts: u32,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Redelivery>, StoreError> {
        let op = "reading redeliverable webhook deliveries";
        let max_attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        let decoded = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(concat!(
                "SELECT ",
                redelivery_columns!(),
                ", ",
                registration_columns!(),
                " FROM aip_webhook_deliveries d \
                 JOIN aip_webhook_registrations r ON r.id = d.registration_id \
                 JOIN integrity_checkpoints c ON c.checkpoint_id = d.checkpoint_id \
                 WHERE NOT d.delivered AND d.attempts < $1 AND d.created_at >= $2 AND r.enabled \
                 AND d.created_at <= $3 - interval '1 minute' * (1 << least(d.attempts - 1, 10)) \
                 ORDER BY d.created_at, d.id LIMIT $4"
            ))
            .bind(max_attempts)
            .bind(since)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(|e| self.error(op, e))?
            .iter()
            .map(|row| decode_redelivery!(row, pg_event_types))
            .collect::<Result<Vec<_>, _>>(),
            Pool::Sqlite(pool) => sqlx::query(concat!(
                "SELECT ",
                redelivery_columns!(),
                ", ",
                registration_columns!(),
                " FROM aip_webhook_deliveries d \
                 JOIN aip_webhook_registrations r ON r.id = d.registration_id \
                 JOIN integrity_checkpoints c ON c.checkpoint_id = d.checkpoint_id \
                 WHERE NOT d.delivered AND d.attempts < ?1 AND d.created_at >= ?2 AND r.enabled \
                 AND d.created_at <= strftime('%Y-%m-%dT%H:%M:%fZ', ?3, \
                 '-' || (1 << min(d.attempts - 1, 10)) || ' minutes') \
                 ORDER BY d.created_at, d.id LIMIT ?4"
            ))
            .bind(max_attempts)
            .bind(timestamp(since))
            .bind(timestamp(now))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(|e| self.error(op, e))?
            .iter()
            .map(|row| decode_redelivery!(row, sqlite_event_types))
            .collect::<Result<Vec<_>, _>>(),
        };
        decoded.map_err(|reason| self.decode_error(op, reason))
    }

    /// Claims the next attempt of an undelivered delivery that has made `attempts` attempts:
    /// `attempts = attempts + 1` only if it still has that count, so of several runs (or
    /// replicas) racing for the same attempt exactly one wins (`true`). The attempt counts even
    /// if the process dies before it is made.
    pub async fn claim_webhook_redelivery(
        &self,
        delivery_id: &str,
        attempts: i32,
    ) -> Result<bool, StoreError> {
        let op = "claiming a webhook redelivery";
        let result = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(
                "UPDATE aip_webhook_deliveries SET attempts = attempts + 1 \
                 WHERE id = $1 AND attempts = $2 AND NOT delivered",
            )
            .bind(delivery_id)
            .bind(attempts)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
            Pool::Sqlite(pool) => sqlx::query(
                "UPDATE aip_webhook_deliveries SET attempts = attempts + 1 \
                 WHERE id = ?1 AND attempts = ?2 AND NOT delivered",
            )
            .bind(delivery_id)
            .bind(attempts)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        };
        result.map(|n| n == 1).map_err(|e| self.error(op, e))
    }

    fn decode_error(&self, operation: &'static str, reason: String) -> StoreError {
        StoreError::Decode {
            target: self.config.describe(),
            operation,
            reason,
        }
    }
}
