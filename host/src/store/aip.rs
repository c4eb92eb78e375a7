//! The AIP pipeline's storage: the records the background writer writes after a checkpoint
//! (nudges, drift alerts, containments, webhook deliveries), the reads the pipeline makes (the
//! active card, recent verdicts, a session's violations), and nudge claims, which give each
//! pending nudge to exactly one request however many run at once.
//!
//! Every method has the same semantics on both backends; the SQL lives in `postgres_aip.rs` and
//! `sqlite_aip.rs`. Writes are idempotent (client-generated ids, `ON CONFLICT`), so the writer
//! can retry and replay them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::records::{
    ActiveCard, ClaimedNudge, ContainmentRecord, DriftAlertRecord, NudgeRecord, Verdict,
    WebhookDeliveryRecord,
};
use super::{Pool, Store, StoreError, postgres_aip, sqlite_aip};

/// Durations beyond this are treated as this (a century): keeps `now ± d` a valid, fixed-width
/// timestamp on both backends.
const MAX_OFFSET: Duration = Duration::from_secs(100 * 366 * 86_400);

impl Store {
    /// Inserts pending nudges; a nudge whose `id` or `checkpoint_id` is already stored is
    /// skipped, so a batch can be retried as a whole. Returns how many were new. The batch is one
    /// transaction; checkpoints must be written first (foreign key).
    pub async fn insert_nudges(&self, batch: &[NudgeRecord]) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        match &self.pool {
            Pool::Postgres(pool) => postgres_aip::insert_nudges(self, pool, batch).await,
            Pool::Sqlite(pool) => sqlite_aip::insert_nudges(self, pool, batch).await,
        }
    }

    /// Inserts drift alerts; one whose `id` or `dedup_key` is already stored is skipped (the same
    /// streak seen twice is one alert). Returns how many were new. One transaction.
    pub async fn insert_drift_alerts(&self, batch: &[DriftAlertRecord]) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        match &self.pool {
            Pool::Postgres(pool) => postgres_aip::insert_drift_alerts(self, pool, batch).await,
            Pool::Sqlite(pool) => sqlite_aip::insert_drift_alerts(self, pool, batch).await,
        }
    }

    /// Applies containments, each in its own transaction: when the agent is still `active`, sets
    /// its `containment_status` to `new_status` (with `contained_at`, `contained_by` = `actor`,
    /// `containment_reason`) and logs the record in `agent_containment_log`. A record whose
    /// `log_id` is already logged, or whose agent is no longer active (contained by an earlier
    /// record, or by a person), changes nothing. Returns how many agents were contained.
    pub async fn apply_containments(&self, batch: &[ContainmentRecord]) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        match &self.pool {
            Pool::Postgres(pool) => postgres_aip::apply_containments(self, pool, batch).await,
            Pool::Sqlite(pool) => sqlite_aip::apply_containments(self, pool, batch).await,
        }
    }

    /// Records webhook delivery outcomes, one row per (registration, checkpoint): a new pair is
    /// inserted; for a stored pair, a record with more attempts (or as many, while the stored one
    /// is not delivered) replaces `delivered`, `attempts`, `last_status` and `last_error`, so
    /// `attempts` never decreases, `delivered` never goes back to false, and a replayed older
    /// record changes nothing. Several records for one pair in a batch collapse by the same rule.
    /// Returns the rows inserted or updated. One transaction.
    pub async fn upsert_webhook_deliveries(
        &self,
        batch: &[WebhookDeliveryRecord],
    ) -> Result<u64, StoreError> {
        let batch = latest_deliveries(batch);
        if batch.is_empty() {
            return Ok(0);
        }
        match &self.pool {
            Pool::Postgres(pool) => {
                postgres_aip::upsert_webhook_deliveries(self, pool, &batch).await
            }
            Pool::Sqlite(pool) => sqlite_aip::upsert_webhook_deliveries(self, pool, &batch).await,
        }
    }

    /// The agent's active alignment card with its conscience values; `None` when it has none.
    pub async fn active_card(&self, agent_id: &str) -> Result<Option<ActiveCard>, StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => postgres_aip::active_card(self, pool, agent_id).await,
            Pool::Sqlite(pool) => sqlite_aip::active_card(self, pool, agent_id).await,
        }
    }

    /// The verdicts of the agent's last `limit` checkpoints, newest first (by arrival in the
    /// database, then by verdict time), as `(checkpoint_id, verdict, timestamp)`: the input of
    /// auto-containment's streak count.
    pub async fn recent_agent_verdicts(
        &self,
        agent_id: &str,
        limit: u32,
    ) -> Result<Vec<(String, Verdict, DateTime<Utc>)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = match &self.pool {
            Pool::Postgres(pool) => {
                postgres_aip::recent_agent_verdicts(self, pool, agent_id, limit).await?
            }
            Pool::Sqlite(pool) => {
                sqlite_aip::recent_agent_verdicts(self, pool, agent_id, limit).await?
            }
        };
        rows.into_iter()
            .map(|(id, verdict, at)| {
                verdict
                    .parse::<Verdict>()
                    .map(|v| (id, v, at))
                    .map_err(|e| StoreError::Decode {
                        target: self.config.describe(),
                        operation: "reading recent verdicts",
                        reason: e.to_string(),
                    })
            })
            .collect()
    }

    /// How many of the session's checkpoints are boundary violations.
    pub async fn count_session_violations(
        &self,
        agent_id: &str,
        session_id: &str,
    ) -> Result<u64, StoreError> {
        let n = match &self.pool {
            Pool::Postgres(pool) => {
                postgres_aip::count_session_violations(self, pool, agent_id, session_id).await?
            }
            Pool::Sqlite(pool) => {
                sqlite_aip::count_session_violations(self, pool, agent_id, session_id).await?
            }
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Claims, atomically, up to `limit` of the agent's pending nudges created after
    /// `now - max_age` that no one holds (never claimed, or the claim lapsed before `now`), oldest
    /// first, for `claim_for` under `token` (a random value unique to the claiming request), and
    /// returns them oldest first. However many requests claim at once, across processes sharing
    /// the database, a nudge goes to one of them. Follow with [`Store::confirm_nudges`] once the
    /// upstream accepted the request, or [`Store::release_nudges`] when it did not; a claim that
    /// is neither lapses after `claim_for` and the nudge can be claimed again.
    pub async fn claim_pending_nudges(
        &self,
        agent_id: &str,
        token: &str,
        now: DateTime<Utc>,
        max_age: Duration,
        claim_for: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedNudge>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let claim = NudgeClaim {
            agent_id,
            token,
            now,
            created_after: now - offset(max_age),
            until: now + offset(claim_for),
            limit,
        };
        let mut claimed = match &self.pool {
            Pool::Postgres(pool) => postgres_aip::claim_pending_nudges(self, pool, &claim).await?,
            Pool::Sqlite(pool) => sqlite_aip::claim_pending_nudges(self, pool, &claim).await?,
        };
        claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(claimed)
    }

    /// Marks the nudges still claimed under `token` (and still pending) as delivered at `at` in
    /// the session `delivery_session_id`, and clears their claim. Returns how many. Nudges whose
    /// claim was released, or lapsed and was taken by another request, are not touched.
    pub async fn confirm_nudges(
        &self,
        token: &str,
        delivery_session_id: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                postgres_aip::confirm_nudges(self, pool, token, delivery_session_id, at).await
            }
            Pool::Sqlite(pool) => {
                sqlite_aip::confirm_nudges(self, pool, token, delivery_session_id, at).await
            }
        }
    }

    /// Gives back the pending nudges claimed under `token` (the upstream refused the request):
    /// they can be claimed again at once. Returns how many.
    pub async fn release_nudges(&self, token: &str) -> Result<u64, StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => postgres_aip::release_nudges(self, pool, token).await,
            Pool::Sqlite(pool) => sqlite_aip::release_nudges(self, pool, token).await,
        }
    }

    /// How many of the agent's nudges are pending and younger than `max_age` at `now`, claimed
    /// or not.
    pub async fn pending_nudge_count(
        &self,
        agent_id: &str,
        now: DateTime<Utc>,
        max_age: Duration,
    ) -> Result<u64, StoreError> {
        let created_after = now - offset(max_age);
        let n = match &self.pool {
            Pool::Postgres(pool) => {
                postgres_aip::pending_nudge_count(self, pool, agent_id, created_after).await?
            }
            Pool::Sqlite(pool) => {
                sqlite_aip::pending_nudge_count(self, pool, agent_id, created_after).await?
            }
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// The parameters of one claim, as the backends need them.
#[derive(Debug)]
pub(super) struct NudgeClaim<'a> {
    pub agent_id: &'a str,
    pub token: &'a str,
    /// Claims that lapsed before this are free.
    pub now: DateTime<Utc>,
    /// Nudges created at or after this are claimable.
    pub created_after: DateTime<Utc>,
    /// The claim's end.
    pub until: DateTime<Utc>,
    pub limit: u32,
}

fn offset(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d.min(MAX_OFFSET)).unwrap_or(TimeDelta::zero())
}

/// Whether `new` replaces `old` for the same (registration, checkpoint): more attempts, or as
/// many while `old` is not delivered.
pub(super) fn replaces(old: &WebhookDeliveryRecord, new: &WebhookDeliveryRecord) -> bool {
    new.attempts > old.attempts || (new.attempts == old.attempts && !old.delivered)
}

/// One record per (registration, checkpoint), in first-seen order, each the one that wins by
/// [`replaces`] (with `delivered` kept once true, and the first id and time), so a batch upserts
/// each pair once.
fn latest_deliveries(batch: &[WebhookDeliveryRecord]) -> Vec<WebhookDeliveryRecord> {
    let mut out: Vec<WebhookDeliveryRecord> = Vec::with_capacity(batch.len());
    let mut slot: HashMap<(&str, &str), usize> = HashMap::new();
    for record in batch {
        let key = (
            record.registration_id.as_str(),
            record.checkpoint_id.as_str(),
        );
        match slot.get(&key) {
            Some(&i) => {
                if let Some(old) = out.get_mut(i)
                    && replaces(old, record)
                {
                    // The row keeps its first id and first attempt's time, as in the database.
                    *old = WebhookDeliveryRecord {
                        id: std::mem::take(&mut old.id),
                        created_at: old.created_at,
                        delivered: old.delivered || record.delivered,
                        ..record.clone()
                    };
                }
            }
            None => {
                slot.insert(key, out.len());
                out.push(record.clone());
            }
        }
    }
    out
}
