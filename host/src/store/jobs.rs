//! The observer's statements: claiming a scheduled run, and the bounded, idempotent batch
//! operations of its jobs (nudge expiry, usage roll-up, retention). See `docs/observer.md`.

use chrono::{DateTime, Utc};

use super::sqlite::timestamp;
use super::{Pool, Store, StoreError};

/// Tables the retention job prunes: `(table, key column, age column)`.
const RETENTION_TABLES: &[(&str, &str, &str)] = &[
    ("aip_webhook_deliveries", "id", "created_at"),
    ("usage_events", "id", "created_at"),
    ("integrity_checkpoints", "checkpoint_id", "created_at"),
];

impl Store {
    /// Claims the run of `job` scheduled at `scheduled_at` (Unix seconds) for `owner`: `true`
    /// for the one caller (across every replica sharing the database) that claims it first,
    /// `false` for the others.
    pub async fn claim_run(
        &self,
        job: &str,
        scheduled_at: i64,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let result = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(
                "INSERT INTO observer_runs (job, scheduled_at, claimed_by) VALUES ($1, $2, $3) \
                 ON CONFLICT (job, scheduled_at) DO NOTHING",
            )
            .bind(job)
            .bind(scheduled_at)
            .bind(owner)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
            Pool::Sqlite(pool) => sqlx::query(
                "INSERT INTO observer_runs (job, scheduled_at, claimed_by) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (job, scheduled_at) DO NOTHING",
            )
            .bind(job)
            .bind(scheduled_at)
            .bind(owner)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        };
        result
            .map(|n| n == 1)
            .map_err(|e| self.error("claim scheduled run", e))
    }

    /// Marks at most `limit` pending nudges created before `cutoff` as expired (at `now`),
    /// oldest first. Returns how many were expired.
    pub async fn expire_nudges(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let result = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(
                "UPDATE enforcement_nudges SET status = 'expired', expired_at = $2 \
                 WHERE id IN (SELECT id FROM enforcement_nudges \
                 WHERE status = 'pending' AND created_at < $1 \
                 AND (claimed_until IS NULL OR claimed_until < $2) ORDER BY created_at LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) AND status = 'pending'",
            )
            .bind(cutoff)
            .bind(now)
            .bind(limit)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
            Pool::Sqlite(pool) => sqlx::query(
                "UPDATE enforcement_nudges SET status = 'expired', expired_at = ?2 \
                 WHERE id IN (SELECT id FROM enforcement_nudges \
                 WHERE status = 'pending' AND created_at < ?1 \
                 AND (claimed_until IS NULL OR claimed_until < ?2) ORDER BY created_at LIMIT ?3) \
                 AND status = 'pending'",
            )
            .bind(timestamp(cutoff))
            .bind(timestamp(now))
            .bind(limit)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        };
        result.map_err(|e| self.error("expire nudges", e))
    }

    /// Recomputes the daily roll-up (`usage_daily`) of every UTC day from the day of `since` on,
    /// from `usage_events`: an upsert, so running it again gives the same rows. Returns the
    /// number of roll-up rows written.
    pub async fn rollup_usage(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        let day_start = since
            .date_naive()
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        let result = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(
                "INSERT INTO usage_daily (agent_id, day, provider, model, requests, tokens_in, \
                 tokens_out, duration_ms, tool_count, updated_at) \
                 SELECT agent_id, (timestamp AT TIME ZONE 'UTC')::date, provider, model, count(*), \
                 COALESCE(sum(tokens_in), 0), COALESCE(sum(tokens_out), 0), \
                 COALESCE(sum(duration_ms), 0), COALESCE(sum(tool_count), 0), now() \
                 FROM usage_events WHERE timestamp >= $1 \
                 GROUP BY agent_id, (timestamp AT TIME ZONE 'UTC')::date, provider, model \
                 ON CONFLICT (agent_id, day, provider, model) DO UPDATE SET \
                 requests = EXCLUDED.requests, tokens_in = EXCLUDED.tokens_in, \
                 tokens_out = EXCLUDED.tokens_out, duration_ms = EXCLUDED.duration_ms, \
                 tool_count = EXCLUDED.tool_count, updated_at = EXCLUDED.updated_at",
            )
            .bind(day_start)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
            Pool::Sqlite(pool) => sqlx::query(
                "INSERT INTO usage_daily (agent_id, day, provider, model, requests, tokens_in, \
                 tokens_out, duration_ms, tool_count) \
                 SELECT agent_id, substr(timestamp, 1, 10), provider, model, count(*), \
                 COALESCE(sum(tokens_in), 0), COALESCE(sum(tokens_out), 0), \
                 COALESCE(sum(duration_ms), 0), COALESCE(sum(tool_count), 0) \
                 FROM usage_events WHERE timestamp >= ?1 \
                 GROUP BY agent_id, substr(timestamp, 1, 10), provider, model \
                 ON CONFLICT (agent_id, day, provider, model) DO UPDATE SET \
                 requests = excluded.requests, tokens_in = excluded.tokens_in, \
                 tokens_out = excluded.tokens_out, duration_ms = excluded.duration_ms, \
                 tool_count = excluded.tool_count, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            )
            .bind(timestamp(day_start))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        };
        result.map_err(|e| self.error("roll up usage", e))
    }

    /// Deletes at most `limit` rows per table of delivery records, usage events and integrity
    /// checkpoints (with what cascades from them) created before `cutoff`, and the claimed-run
    /// records older than that. Returns the number of rows deleted.
    pub async fn prune_older_than(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for (table, key, age) in RETENTION_TABLES {
            let result = match &self.pool {
                Pool::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE {key} IN \
                     (SELECT {key} FROM {table} WHERE {age} < $1 LIMIT $2)"
                )))
                .bind(cutoff)
                .bind(limit)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
                Pool::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE {key} IN \
                     (SELECT {key} FROM {table} WHERE {age} < ?1 LIMIT ?2)"
                )))
                .bind(timestamp(cutoff))
                .bind(limit)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            };
            deleted += result.map_err(|e| self.error("prune old records", e))?;
        }
        let runs = match &self.pool {
            Pool::Postgres(pool) => {
                sqlx::query("DELETE FROM observer_runs WHERE scheduled_at < $1")
                    .bind(cutoff.timestamp())
                    .execute(pool)
                    .await
            }
            .map(|r| r.rows_affected()),
            Pool::Sqlite(pool) => sqlx::query("DELETE FROM observer_runs WHERE scheduled_at < ?1")
                .bind(cutoff.timestamp())
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        };
        Ok(deleted + runs.map_err(|e| self.error("prune old records", e))?)
    }

    /// Recomputes `integrity_summaries` over the window starting at `window_start`: for agents
    /// seen since `active_since`, and for agents whose summary still counts something (so they
    /// drop to zero). Returns the number of summaries written.
    pub async fn summarize_integrity(
        &self,
        window_start: DateTime<Utc>,
        active_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let result = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(
                "INSERT INTO integrity_summaries (agent_id, window_start, checkpoints, clear, \
                 clear_ratio, active_drift_alerts, computed_at) \
                 SELECT id, $1, n, c, CASE WHEN n > 0 THEN c::float8 / n END, d, $3 FROM ( \
                 SELECT a.id, \
                 (SELECT count(*) FROM integrity_checkpoints k \
                  WHERE k.agent_id = a.id AND k.created_at >= $1) AS n, \
                 (SELECT count(*) FROM integrity_checkpoints k \
                  WHERE k.agent_id = a.id AND k.created_at >= $1 AND k.verdict = 'clear') AS c, \
                 (SELECT count(*) FROM drift_alerts x \
                  WHERE x.agent_id = a.id AND x.created_at >= $1) AS d \
                 FROM agents a WHERE a.last_seen >= $2 OR a.id IN (SELECT agent_id \
                 FROM integrity_summaries WHERE checkpoints > 0 OR active_drift_alerts > 0)) s \
                 ON CONFLICT (agent_id) DO UPDATE SET window_start = EXCLUDED.window_start, \
                 checkpoints = EXCLUDED.checkpoints, clear = EXCLUDED.clear, \
                 clear_ratio = EXCLUDED.clear_ratio, \
                 active_drift_alerts = EXCLUDED.active_drift_alerts, \
                 computed_at = EXCLUDED.computed_at",
            )
            .bind(window_start)
            .bind(active_since)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
            Pool::Sqlite(pool) => sqlx::query(
                "INSERT INTO integrity_summaries (agent_id, window_start, checkpoints, clear, \
                 clear_ratio, active_drift_alerts, computed_at) \
                 SELECT id, ?1, n, c, CASE WHEN n > 0 THEN CAST(c AS REAL) / n END, d, ?3 FROM ( \
                 SELECT a.id AS id, \
                 (SELECT count(*) FROM integrity_checkpoints k \
                  WHERE k.agent_id = a.id AND k.created_at >= ?1) AS n, \
                 (SELECT count(*) FROM integrity_checkpoints k \
                  WHERE k.agent_id = a.id AND k.created_at >= ?1 AND k.verdict = 'clear') AS c, \
                 (SELECT count(*) FROM drift_alerts x \
                  WHERE x.agent_id = a.id AND x.created_at >= ?1) AS d \
                 FROM agents a WHERE a.last_seen >= ?2 OR a.id IN (SELECT agent_id \
                 FROM integrity_summaries WHERE checkpoints > 0 OR active_drift_alerts > 0)) \
                 WHERE true \
                 ON CONFLICT (agent_id) DO UPDATE SET window_start = excluded.window_start, \
                 checkpoints = excluded.checkpoints, clear = excluded.clear, \
                 clear_ratio = excluded.clear_ratio, \
                 active_drift_alerts = excluded.active_drift_alerts, \
                 computed_at = excluded.computed_at",
            )
            .bind(timestamp(window_start))
            .bind(timestamp(active_since))
            .bind(timestamp(now))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        };
        result.map_err(|e| self.error("summarize integrity", e))
    }
}
