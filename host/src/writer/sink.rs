//! Where the writer's batches go: the [`Store`], behind a narrow trait so the queue, batching,
//! retry and journal logic is tested against a scripted fake as well as real databases.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::store::{
    Agent, CheckpointRecord, ContainmentRecord, DriftAlertRecord, NudgeRecord, Store, StoreError,
    UsageEventRecord, WebhookDeliveryRecord,
};

/// Whose fault a failed write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The database's (unreachable, busy, a missing table, a schema behind): the records wait
    /// and the write is retried.
    Database,
    /// The records' (a constraint, a value the database cannot store): retrying cannot help, so
    /// the offending record is found and set aside.
    Record,
}

/// A failed write.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub(crate) struct SinkError {
    pub fault: Fault,
    pub message: String,
}

impl SinkError {
    pub(crate) fn database(message: impl Into<String>) -> Self {
        Self {
            fault: Fault::Database,
            message: message.into(),
        }
    }

    #[cfg(test)]
    pub(crate) fn record(message: impl Into<String>) -> Self {
        Self {
            fault: Fault::Record,
            message: message.into(),
        }
    }
}

impl From<StoreError> for SinkError {
    fn from(e: StoreError) -> Self {
        let fault = if e.is_record_error() || matches!(e, StoreError::AgentIdConflict { .. }) {
            Fault::Record
        } else {
            Fault::Database
        };
        Self {
            fault,
            message: e.to_string(),
        }
    }
}

/// The operations the writer needs. Each must be idempotent: a batch may be sent again after a
/// failure whose effect is unknown (a timeout, a dropped connection).
pub(crate) trait Sink: Send + Sync + 'static {
    /// Checks, once, that the schema can be written to (for a store opened while the database was
    /// unreachable: `serve` could not check it at start-up).
    fn check_schema(&self) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// The agent with this hash, created on first sight.
    fn ensure_agent(
        &self,
        agent_hash: &str,
        agent_id: &str,
    ) -> impl Future<Output = Result<Agent, SinkError>> + Send;
    /// Inserts usage events (ids already stored are skipped).
    fn insert_usage_events(
        &self,
        batch: &[UsageEventRecord],
    ) -> impl Future<Output = Result<u64, SinkError>> + Send;
    /// Inserts checkpoints (ids already stored are skipped).
    fn insert_checkpoints(
        &self,
        batch: &[CheckpointRecord],
    ) -> impl Future<Output = Result<u64, SinkError>> + Send;
    /// Inserts pending nudges (ids and checkpoints already stored are skipped).
    fn insert_nudges(
        &self,
        batch: &[NudgeRecord],
    ) -> impl Future<Output = Result<u64, SinkError>> + Send;
    /// Inserts drift alerts (ids and dedup keys already stored are skipped).
    fn insert_drift_alerts(
        &self,
        batch: &[DriftAlertRecord],
    ) -> impl Future<Output = Result<u64, SinkError>> + Send;
    /// Contains agents that are still active, logging each once.
    fn apply_containments(
        &self,
        batch: &[ContainmentRecord],
    ) -> impl Future<Output = Result<u64, SinkError>> + Send;
    /// Records webhook delivery outcomes (an upsert; attempts never decrease).
    fn upsert_webhook_deliveries(
        &self,
        batch: &[WebhookDeliveryRecord],
    ) -> impl Future<Output = Result<u64, SinkError>> + Send;
    /// Moves `last_seen` forward.
    fn touch_last_seen(
        &self,
        batch: &[(String, DateTime<Utc>)],
    ) -> impl Future<Output = Result<u64, SinkError>> + Send;
}

/// The real database.
#[derive(Debug, Clone)]
pub(crate) struct StoreSink {
    pub store: Store,
    /// Whether the schema still has to be checked (the store was opened degraded).
    pub verify_schema: bool,
}

impl Sink for StoreSink {
    async fn check_schema(&self) -> Result<(), SinkError> {
        if !self.verify_schema {
            return Ok(());
        }
        match self.store.verify_schema().await {
            Ok(status) => {
                tracing::info!(schema = %status, "database answers; schema checked");
                Ok(())
            }
            Err(e) => Err(SinkError::database(e.to_string())),
        }
    }

    async fn ensure_agent(&self, agent_hash: &str, agent_id: &str) -> Result<Agent, SinkError> {
        Ok(self.store.get_or_create_agent(agent_hash, agent_id).await?)
    }

    async fn insert_usage_events(&self, batch: &[UsageEventRecord]) -> Result<u64, SinkError> {
        Ok(self.store.insert_usage_events(batch).await?)
    }

    async fn insert_checkpoints(&self, batch: &[CheckpointRecord]) -> Result<u64, SinkError> {
        Ok(self.store.insert_checkpoints(batch).await?)
    }

    async fn insert_nudges(&self, batch: &[NudgeRecord]) -> Result<u64, SinkError> {
        Ok(self.store.insert_nudges(batch).await?)
    }

    async fn insert_drift_alerts(&self, batch: &[DriftAlertRecord]) -> Result<u64, SinkError> {
        Ok(self.store.insert_drift_alerts(batch).await?)
    }

    async fn apply_containments(&self, batch: &[ContainmentRecord]) -> Result<u64, SinkError> {
        Ok(self.store.apply_containments(batch).await?)
    }

    async fn upsert_webhook_deliveries(
        &self,
        batch: &[WebhookDeliveryRecord],
    ) -> Result<u64, SinkError> {
        Ok(self.store.upsert_webhook_deliveries(batch).await?)
    }

    async fn touch_last_seen(&self, batch: &[(String, DateTime<Utc>)]) -> Result<u64, SinkError> {
        Ok(self.store.touch_last_seen(batch).await?)
    }
}
