//! The scheduled jobs: nudge expiry, usage roll-up, integrity summary, retention and webhook
//! redelivery. Each is idempotent and bounded per run (at most [`MAX_BATCHES`] batches of
//! [`BATCH`] rows; [`REDELIVERY_BATCH`] deliveries).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::{Job, JobFuture};
use crate::store::Store;

/// `nudge_expiry`.
pub const NUDGE_EXPIRY: &str = "nudge_expiry";
/// `usage_rollup`.
pub const USAGE_ROLLUP: &str = "usage_rollup";
/// `integrity_summary`.
pub const INTEGRITY_SUMMARY: &str = "integrity_summary";
/// `retention`.
pub const RETENTION: &str = "retention";
/// `webhook_redelivery`.
pub const WEBHOOK_REDELIVERY: &str = "webhook_redelivery";

/// Rows per statement.
pub const BATCH: i64 = 1000;
/// Statements per run and table: a run touches at most `BATCH * MAX_BATCHES` rows per table.
pub const MAX_BATCHES: u32 = 20;
/// The integrity summary's window.
pub const INTEGRITY_WINDOW_HOURS: i64 = 24;
/// Pending nudges older than this expire.
pub const NUDGE_TTL_HOURS: i64 = 4;
/// Deliveries one `webhook_redelivery` run sends at most (16 at a time, each attempt bounded
/// by `MNEMOM_WEBHOOK_TIMEOUT_MS`).
pub const REDELIVERY_BATCH: u32 = 100;

/// The job called `name` over `store`, if there is one (`webhook_redelivery` needs the
/// deliverer: [`WebhookRedelivery`]).
pub fn for_store(name: &str, store: &Store, retention_days: u32) -> Option<Arc<dyn Job>> {
    let store = store.clone();
    Some(match name {
        NUDGE_EXPIRY => Arc::new(NudgeExpiry { store }),
        USAGE_ROLLUP => Arc::new(UsageRollup { store }),
        INTEGRITY_SUMMARY => Arc::new(IntegritySummary { store }),
        RETENTION => Arc::new(Retention {
            store,
            days: retention_days,
        }),
        _ => return None,
    })
}

/// Marks pending nudges older than 4 hours as expired.
#[derive(Debug, Clone)]
pub struct NudgeExpiry {
    /// The database.
    pub store: Store,
}

impl Job for NudgeExpiry {
    fn name(&self) -> &'static str {
        NUDGE_EXPIRY
    }

    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            let cutoff = now - Duration::hours(NUDGE_TTL_HOURS);
            let mut total = 0;
            for _ in 0..MAX_BATCHES {
                let n = self.store.expire_nudges(cutoff, now, BATCH).await?;
                total += n;
                if n < BATCH as u64 {
                    break;
                }
            }
            Ok(total)
        })
    }
}

/// Recomputes the daily per-agent usage roll-up of yesterday and today (UTC) from
/// `usage_events`.
#[derive(Debug, Clone)]
pub struct UsageRollup {
    /// The database.
    pub store: Store,
}

impl Job for UsageRollup {
    fn name(&self) -> &'static str {
        USAGE_ROLLUP
    }

    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move { Ok(self.store.rollup_usage(now - Duration::days(1)).await?) })
    }
}

/// Deletes integrity checkpoints, usage events and webhook delivery records older than the
/// retention age.
#[derive(Debug, Clone)]
pub struct Retention {
    /// The database.
    pub store: Store,
    /// `MNEMOM_RETENTION_DAYS`.
    pub days: u32,
}

impl Job for Retention {
    fn name(&self) -> &'static str {
        RETENTION
    }

    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            let cutoff = now - Duration::days(i64::from(self.days));
            let mut total = 0;
            for _ in 0..MAX_BATCHES {
                let n = self.store.prune_older_than(cutoff, BATCH).await?;
                total += n;
                if n == 0 {
                    break;
                }
            }
            Ok(total)
        })
    }
}

/// Recomputes each recently active agent's integrity summary over the last
/// [`INTEGRITY_WINDOW_HOURS`]: checkpoints, clear verdicts and their ratio, drift alerts.
#[derive(Debug, Clone)]
pub struct IntegritySummary {
    /// The database.
    pub store: Store,
}

impl Job for IntegritySummary {
    fn name(&self) -> &'static str {
        INTEGRITY_SUMMARY
    }

    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            let window = Duration::hours(INTEGRITY_WINDOW_HOURS);
            Ok(self
                .store
                .summarize_integrity(now - window, now - window - window, now)
                .await?)
        })
    }
}

/// Sends undelivered webhook deliveries again: a bounded batch of due ones per run, one attempt
/// each (see `Webhooks::redeliver`).
#[derive(Debug, Clone)]
pub struct WebhookRedelivery {
    /// The deliverer (its store, settings, SSRF guard and metrics).
    pub webhooks: crate::webhooks::Webhooks,
}

impl Job for WebhookRedelivery {
    fn name(&self) -> &'static str {
        WEBHOOK_REDELIVERY
    }

    fn run(&self, now: DateTime<Utc>) -> JobFuture<'_> {
        Box::pin(async move {
            let report = self.webhooks.redeliver(now, REDELIVERY_BATCH).await?;
            Ok(report.sent)
        })
    }
}
