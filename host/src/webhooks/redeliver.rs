//! Redelivery (the observer's `webhook_redelivery` job): a bounded batch of undelivered, due
//! deliveries, each sent once more — claimed first, so concurrent runs never send the same
//! attempt twice — with the same signing, SSRF guard and failure counting as the first
//! delivery.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use tokio::time::Instant;

use super::send::{self, Outgoing};
use super::{CheckpointEvent, Kind, Outcome, Webhooks, finished, sign};
use crate::store::StoreError;
use crate::store::webhooks::Redelivery;

/// Deliveries re-sent at once by one run.
pub const REDELIVERY_CONCURRENCY: usize = 16;

/// What one redelivery run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedeliveryReport {
    /// Deliveries found due.
    pub due: u64,
    /// Deliveries sent again (claimed by this run).
    pub sent: u64,
    /// Of those, delivered.
    pub delivered: u64,
}

impl Webhooks {
    /// One redelivery run at `now`: at most `limit` due deliveries (oldest first), each sent
    /// once. A delivery is due when it is undelivered, younger than
    /// `MNEMOM_WEBHOOK_REDELIVERY_MAX_AGE_HOURS`, has made fewer than
    /// `MNEMOM_WEBHOOK_REDELIVERY_MAX_ATTEMPTS` attempts, its registration is enabled, and its
    /// backoff has passed (see `Store::redeliverable_webhook_deliveries`). Store failures of
    /// single deliveries are logged; the first one is returned after the batch.
    pub async fn redeliver(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<RedeliveryReport, StoreError> {
        let settings = &self.inner.settings;
        let max_age = chrono::Duration::from_std(settings.redelivery_max_age)
            .unwrap_or(chrono::Duration::MAX);
        let since = now
            .checked_sub_signed(max_age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let due = self
            .inner
            .store
            .redeliverable_webhook_deliveries(settings.redelivery_max_attempts, since, now, limit)
            .await?;
        let mut report = RedeliveryReport {
            due: u64::try_from(due.len()).unwrap_or(u64::MAX),
            ..RedeliveryReport::default()
        };
        let results: Vec<Result<Option<bool>, StoreError>> = futures_util::stream::iter(due)
            .map(|redelivery| self.redeliver_one(redelivery))
            .buffer_unordered(REDELIVERY_CONCURRENCY)
            .collect()
            .await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(Some(delivered)) => {
                    report.sent += 1;
                    report.delivered += u64::from(delivered);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "webhook redelivery failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Claims and sends one delivery; `Some(delivered)` when this run sent it.
    async fn redeliver_one(&self, redelivery: Redelivery) -> Result<Option<bool>, StoreError> {
        let store = &self.inner.store;
        let Redelivery {
            delivery,
            registration,
            agent_id,
            verdict,
            concerns,
            reasoning_summary,
            timestamp,
        } = redelivery;
        if !store
            .claim_webhook_redelivery(&delivery.id, delivery.attempts)
            .await?
        {
            return Ok(None);
        }
        let event = CheckpointEvent {
            agent_id: agent_id.clone(),
            agent_hash: String::new(),
            checkpoint_id: delivery.checkpoint_id.clone(),
            verdict,
            concerns,
            reasoning_summary,
            timestamp,
        };
        let body = Bytes::from(event.payload());
        let outgoing = Outgoing {
            url: registration.callback_url.clone(),
            delivery_id: delivery.id.clone(),
            event_type: delivery.event_type.clone(),
            signature: sign(&registration.secret, &body),
            body,
        };
        let settings = &self.inner.settings;
        let started = Instant::now();
        let attempt = {
            // Shares the process-wide bound with first deliveries.
            let _permit = self.inner.permits.clone().acquire_owned().await;
            send::attempt(
                &outgoing,
                settings.allow_private,
                settings.attempt_timeout,
                usize::try_from(delivery.attempts).unwrap_or_default(),
            )
            .await
        };
        if let Some(result) = attempt.metric() {
            self.inner.metrics.attempt(result);
        }
        let kind = if attempt.is_success() {
            Kind::Delivered
        } else if attempt.was_sent() {
            Kind::Failed
        } else {
            Kind::Refused
        };
        let outcome: Outcome = finished(kind, 1, &attempt);
        let mut record = delivery;
        record.attempts = record.attempts.saturating_add(1);
        record.delivered = kind == Kind::Delivered;
        record.last_status = outcome.last_status.map(i32::from);
        record.last_error = outcome.last_error.clone();
        store.upsert_webhook_deliveries(&[record]).await?;
        self.finish(
            &registration,
            &agent_id,
            &outgoing.delivery_id,
            &outcome,
            started,
        )
        .await;
        Ok(Some(kind == Kind::Delivered))
    }
}
