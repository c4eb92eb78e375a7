//! The background writer: every database write the request path causes (usage events,
//! `last_seen`, checkpoints, and what the AIP pipeline derives from a checkpoint: nudges, drift
//! alerts, containments, webhook deliveries) goes through here, never straight to the database.
//!
//! - **Enqueue never waits.** [`Writer::enqueue`] is a plain function: it pushes onto a bounded
//!   in-memory queue, or, when that is full (or the journal already holds older records), appends
//!   one line to the journal file. Neither step touches the database.
//! - **Batches** of up to `MNEMOM_WRITER_BATCH_SIZE` records, sent when full or when the oldest
//!   record has waited `MNEMOM_WRITER_FLUSH_INTERVAL_MS`. `last_seen` is coalesced per agent and
//!   written every `MNEMOM_WRITER_LAST_SEEN_INTERVAL_MS` as one statement.
//! - **Agents first.** Before a batch, the agents it names are made sure of (the store's
//!   get-or-create upsert, once per agent per process), so foreign keys hold.
//! - **Order.** Within a batch, kinds are written in [`RecordKind::ALL`] order (a checkpoint
//!   before the nudge, drift alert, containment and deliveries that refer to it); batches are
//!   written one at a time, in the order their records were accepted (memory, then the journal,
//!   which holds only records newer than memory's; a spill goes in front of the journal). So a
//!   record is always written after every record enqueued before it has been written or set
//!   aside.
//! - **Retry** with exponential backoff (capped) while the database is at fault; records carry
//!   client-generated ids and inserts skip ids already stored, so a retried batch never
//!   duplicates. A record the database refuses (a constraint) is found by splitting the batch and
//!   set aside (logged, counted) instead of blocking the queue.
//! - **Journal.** When the database has been failing for `MNEMOM_WRITER_SPILL_AFTER_MS`, what is
//!   held in memory moves to the journal too; everything journaled is replayed, in order, when the
//!   database answers (and at start-up). See [`journal`].
//! - **Shutdown** ([`Writer::shutdown`]): the queue is written out until the deadline; whatever
//!   the database does not take by then (or at its first failure) is journaled.
//!
//! See `docs/writer.md`.

mod backoff;
pub mod journal;
mod settings;
pub(crate) mod sink;
mod task;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::store::{
    CheckpointRecord, ContainmentRecord, DriftAlertRecord, NudgeRecord, Store, UsageEventRecord,
    WebhookDeliveryRecord,
};

pub use journal::{JournalError, Recovery};
pub use settings::{FsyncPolicy, WriterSettings};

use journal::Journal;
use sink::{Sink, StoreSink};

/// Agents whose `last_seen` is coalesced in memory; beyond this, touches queue as records.
const LAST_SEEN_MAX_AGENTS: usize = 100_000;
/// How often the writer repeats its "database still failing" line.
const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// One record for the database, as queued and journaled (one JSON object per journal line).
/// Records name the agent by hash as well as id: the writer makes sure the agent exists before
/// its records and writes them under the id the store gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WriteRecord {
    /// A `usage_events` row.
    UsageEvent {
        /// The agent's hash.
        agent_hash: String,
        /// The row.
        record: UsageEventRecord,
    },
    /// An `integrity_checkpoints` row.
    Checkpoint {
        /// The agent's hash.
        agent_hash: String,
        /// The row (boxed: it is four times the size of the others).
        record: Box<CheckpointRecord>,
    },
    /// An `enforcement_nudges` row (pending), written after its checkpoint.
    Nudge {
        /// The agent's hash.
        agent_hash: String,
        /// The row.
        record: NudgeRecord,
    },
    /// A `drift_alerts` row, written after the checkpoints of its streak.
    DriftAlert {
        /// The agent's hash.
        agent_hash: String,
        /// The row.
        record: DriftAlertRecord,
    },
    /// An auto-containment: the agent's status and its `agent_containment_log` row.
    Containment {
        /// The agent's hash.
        agent_hash: String,
        /// The containment.
        record: ContainmentRecord,
    },
    /// An `aip_webhook_deliveries` outcome (an upsert per registration and checkpoint), written
    /// after its checkpoint.
    WebhookDelivery {
        /// The hash of the agent the checkpoint belongs to.
        agent_hash: String,
        /// The row.
        record: WebhookDeliveryRecord,
    },
    /// The agent was seen at `at` (`last_seen` never moves backwards).
    LastSeen {
        /// The agent's hash.
        agent_hash: String,
        /// The agent's (derived) id.
        agent_id: String,
        /// When.
        at: DateTime<Utc>,
    },
}

/// The kinds of [`WriteRecord`], in the order a batch writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// `usage_events`.
    UsageEvent,
    /// `integrity_checkpoints`.
    Checkpoint,
    /// `enforcement_nudges`.
    Nudge,
    /// `drift_alerts`.
    DriftAlert,
    /// `agents.containment_status` and `agent_containment_log`.
    Containment,
    /// `aip_webhook_deliveries`.
    WebhookDelivery,
    /// `agents.last_seen`.
    LastSeen,
}

impl RecordKind {
    /// Every kind, in write order: checkpoints before the records that refer to them.
    pub const ALL: [RecordKind; 7] = [
        RecordKind::UsageEvent,
        RecordKind::Checkpoint,
        RecordKind::Nudge,
        RecordKind::DriftAlert,
        RecordKind::Containment,
        RecordKind::WebhookDelivery,
        RecordKind::LastSeen,
    ];

    /// The metric label (`usage_event`, `checkpoint`, `nudge`, `drift_alert`, `containment`,
    /// `webhook_delivery`, `last_seen`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::UsageEvent => "usage_event",
            RecordKind::Checkpoint => "checkpoint",
            RecordKind::Nudge => "nudge",
            RecordKind::DriftAlert => "drift_alert",
            RecordKind::Containment => "containment",
            RecordKind::WebhookDelivery => "webhook_delivery",
            RecordKind::LastSeen => "last_seen",
        }
    }
}

impl WriteRecord {
    /// A usage event of the agent with this hash.
    pub fn usage_event(agent_hash: impl Into<String>, record: UsageEventRecord) -> Self {
        Self::UsageEvent {
            agent_hash: agent_hash.into(),
            record,
        }
    }

    /// A checkpoint of the agent with this hash.
    pub fn checkpoint(agent_hash: impl Into<String>, record: CheckpointRecord) -> Self {
        Self::Checkpoint {
            agent_hash: agent_hash.into(),
            record: Box::new(record),
        }
    }

    /// A pending nudge of the agent with this hash (enqueue it after its checkpoint).
    pub fn nudge(agent_hash: impl Into<String>, record: NudgeRecord) -> Self {
        Self::Nudge {
            agent_hash: agent_hash.into(),
            record,
        }
    }

    /// A drift alert of the agent with this hash.
    pub fn drift_alert(agent_hash: impl Into<String>, record: DriftAlertRecord) -> Self {
        Self::DriftAlert {
            agent_hash: agent_hash.into(),
            record,
        }
    }

    /// A containment of the agent with this hash.
    pub fn containment(agent_hash: impl Into<String>, record: ContainmentRecord) -> Self {
        Self::Containment {
            agent_hash: agent_hash.into(),
            record,
        }
    }

    /// A webhook delivery outcome for a checkpoint of the agent with this hash (enqueue it after
    /// the checkpoint).
    pub fn webhook_delivery(agent_hash: impl Into<String>, record: WebhookDeliveryRecord) -> Self {
        Self::WebhookDelivery {
            agent_hash: agent_hash.into(),
            record,
        }
    }

    /// Which kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            WriteRecord::UsageEvent { .. } => RecordKind::UsageEvent,
            WriteRecord::Checkpoint { .. } => RecordKind::Checkpoint,
            WriteRecord::Nudge { .. } => RecordKind::Nudge,
            WriteRecord::DriftAlert { .. } => RecordKind::DriftAlert,
            WriteRecord::Containment { .. } => RecordKind::Containment,
            WriteRecord::WebhookDelivery { .. } => RecordKind::WebhookDelivery,
            WriteRecord::LastSeen { .. } => RecordKind::LastSeen,
        }
    }

    /// The agent's hash.
    pub fn agent_hash(&self) -> &str {
        match self {
            WriteRecord::UsageEvent { agent_hash, .. }
            | WriteRecord::Checkpoint { agent_hash, .. }
            | WriteRecord::Nudge { agent_hash, .. }
            | WriteRecord::DriftAlert { agent_hash, .. }
            | WriteRecord::Containment { agent_hash, .. }
            | WriteRecord::WebhookDelivery { agent_hash, .. }
            | WriteRecord::LastSeen { agent_hash, .. } => agent_hash,
        }
    }

    /// The agent's id. A webhook delivery does not carry it: its id is the one derived from the
    /// hash (`smolt-<first 8 hex>`), which is only used if the agent has to be created (and then
    /// the delivery's registration cannot exist either).
    pub fn agent_id(&self) -> Cow<'_, str> {
        match self {
            WriteRecord::UsageEvent { record, .. } => Cow::Borrowed(&record.agent_id),
            WriteRecord::Checkpoint { record, .. } => Cow::Borrowed(&record.agent_id),
            WriteRecord::Nudge { record, .. } => Cow::Borrowed(&record.agent_id),
            WriteRecord::DriftAlert { record, .. } => Cow::Borrowed(&record.agent_id),
            WriteRecord::Containment { record, .. } => Cow::Borrowed(&record.agent_id),
            WriteRecord::WebhookDelivery { agent_hash, .. } => {
                let short = agent_hash.get(..8).unwrap_or(agent_hash);
                Cow::Owned(format!("smolt-{short}"))
            }
            WriteRecord::LastSeen { agent_id, .. } => Cow::Borrowed(agent_id),
        }
    }

    fn set_agent_id(&mut self, id: &str) {
        let slot = match self {
            WriteRecord::UsageEvent { record, .. } => &mut record.agent_id,
            WriteRecord::Checkpoint { record, .. } => &mut record.agent_id,
            WriteRecord::Nudge { record, .. } => &mut record.agent_id,
            WriteRecord::DriftAlert { record, .. } => &mut record.agent_id,
            WriteRecord::Containment { record, .. } => &mut record.agent_id,
            // Refers to its agent through the registration and the checkpoint only.
            WriteRecord::WebhookDelivery { .. } => return,
            WriteRecord::LastSeen { agent_id, .. } => agent_id,
        };
        if slot != id {
            id.clone_into(slot);
        }
    }

    /// The record's own id, for logs (`ue-…`, `ic-…`, `nudge-…`, `ida-…`, `ctl-…`, `del-…`, or
    /// the agent id).
    pub fn id(&self) -> &str {
        match self {
            WriteRecord::UsageEvent { record, .. } => &record.id,
            WriteRecord::Checkpoint { record, .. } => &record.checkpoint_id,
            WriteRecord::Nudge { record, .. } => &record.id,
            WriteRecord::DriftAlert { record, .. } => &record.id,
            WriteRecord::Containment { record, .. } => &record.log_id,
            WriteRecord::WebhookDelivery { record, .. } => &record.id,
            WriteRecord::LastSeen { agent_id, .. } => agent_id,
        }
    }
}

/// Where [`Writer::enqueue`] put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// In the memory queue.
    Memory,
    /// Appended to the journal (memory full, the journal already held older records, or the
    /// writer is shutting down).
    Journal,
    /// Lost: the journal is full or cannot be written (counted in
    /// `gateway_writer_records_dropped_total` and logged).
    Dropped,
}

/// The writer's readiness entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriterHealth {
    /// `ok`, or `degraded` while the database is failing or the journal holds records.
    pub status: &'static str,
    /// Records in memory.
    pub queue_depth: usize,
    /// Agents whose `last_seen` waits for the next batch.
    pub last_seen_pending: usize,
    /// Records in the journal.
    pub journal_records: u64,
    /// Size of the journal files.
    pub journal_bytes: u64,
    /// How long writes have been failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_for_ms: Option<u64>,
    /// The last failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What shutdown left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Records in the journal (replayed at the next start).
    pub journal_records: u64,
    /// Records still in memory (0 unless the writer task could not finish).
    pub unflushed: usize,
}

#[derive(Debug)]
struct State {
    memory: VecDeque<WriteRecord>,
    /// When the memory queue last went from empty to non-empty.
    oldest_at: Option<Instant>,
    /// Agent hash → (agent id, latest sighting).
    last_seen: HashMap<String, (String, DateTime<Utc>)>,
    journal: Journal,
    closing: bool,
    failing_since: Option<Instant>,
    last_error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Notify,
    closing: watch::Sender<Option<Instant>>,
    settings: WriterSettings,
    metrics: Metrics,
    drop_log: Throttle,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the gauges from the state (call with the lock held).
    fn gauges(&self, state: &State) {
        let m = &self.metrics;
        m.writer_queue_depth
            .set(i64::try_from(state.memory.len()).unwrap_or(i64::MAX));
        m.writer_last_seen_pending
            .set(i64::try_from(state.last_seen.len()).unwrap_or(i64::MAX));
        m.writer_journal_records
            .set(i64::try_from(state.journal.records()).unwrap_or(i64::MAX));
        m.writer_journal_bytes
            .set(i64::try_from(state.journal.bytes()).unwrap_or(i64::MAX));
    }

    fn dropped(&self, reason: &'static str, n: u64, detail: &dyn std::fmt::Display) {
        if n == 0 {
            return;
        }
        self.metrics
            .writer_dropped_total
            .with_label_values(&[reason])
            .inc_by(n);
        if let Some(suppressed) = self.drop_log.due() {
            tracing::error!(reason, records = n, suppressed, error = %detail, "writer lost records");
        }
    }
}

/// At most one log line per interval; counts the ones it suppressed.
#[derive(Debug)]
struct Throttle {
    interval: Duration,
    last: Mutex<Option<std::time::Instant>>,
    suppressed: std::sync::atomic::AtomicU64,
}

impl Throttle {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last line)` when a line is due.
    fn due(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.interval) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// The handle: cheap to clone, shared by the request path and the app.
#[derive(Debug, Clone)]
pub struct Writer {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Tasks>>,
}

#[derive(Debug, Default)]
struct Tasks {
    writer: Option<JoinHandle<()>>,
    ticker: Option<JoinHandle<()>>,
}

impl Writer {
    /// Opens the journal (replaying what an earlier run left, in the background) and starts the
    /// writer on `store`. `verify_schema`: the store was opened while the database was
    /// unreachable, so its schema is checked before the first write. `cache`, when given, is
    /// primed with the settings of agents the writer creates. Call inside a Tokio runtime.
    pub fn start(
        store: Store,
        verify_schema: bool,
        settings: WriterSettings,
        metrics: &Metrics,
        cache: Option<Cache>,
    ) -> Result<Self, JournalError> {
        let sink = StoreSink {
            store,
            verify_schema,
        };
        Self::start_with_sink(sink, settings, metrics, cache).map(|(writer, _)| writer)
    }

    /// [`Writer::start`] over any sink.
    pub(crate) fn start_with_sink<S: Sink>(
        sink: S,
        settings: WriterSettings,
        metrics: &Metrics,
        cache: Option<Cache>,
    ) -> Result<(Self, Recovery), JournalError> {
        let (journal, recovery) = Journal::open(
            &settings.journal_dir,
            settings.journal_max_bytes,
            settings.journal_segment_bytes,
            settings.journal_fsync,
        )?;
        if recovery.records > 0 || recovery.corrupt > 0 || recovery.torn_bytes > 0 {
            tracing::info!(
                journal = %settings.journal_dir.display(),
                segments = recovery.segments,
                records = recovery.records,
                corrupt = recovery.corrupt,
                torn_bytes = recovery.torn_bytes,
                "journal found; replaying it into the database"
            );
        }
        let (closing, closing_rx) = watch::channel(None);
        let fsync = settings.journal_fsync;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                memory: VecDeque::with_capacity(settings.queue_capacity.min(65_536)),
                oldest_at: None,
                last_seen: HashMap::new(),
                journal,
                closing: false,
                failing_since: None,
                last_error: None,
            }),
            wake: Notify::new(),
            closing,
            settings,
            metrics: metrics.clone(),
            drop_log: Throttle::new(Duration::from_secs(10)),
        });
        shared.gauges(&shared.lock());
        let task = task::Task::new(shared.clone(), sink, cache, closing_rx);
        let writer = tokio::spawn(task.run());
        let ticker =
            (fsync == FsyncPolicy::Interval).then(|| tokio::spawn(sync_ticker(shared.clone())));
        Ok((
            Self {
                shared,
                tasks: Arc::new(Mutex::new(Tasks {
                    writer: Some(writer),
                    ticker,
                })),
            },
            recovery,
        ))
    }

    /// Queues a record without waiting: memory if there is room (and the journal holds nothing
    /// older), else the journal. Never touches the database.
    pub fn enqueue(&self, record: WriteRecord) -> Enqueued {
        let shared = &self.shared;
        let mut state = shared.lock();
        if !state.closing
            && state.journal.is_empty()
            && state.memory.len() < shared.settings.queue_capacity
        {
            let was_empty = state.memory.is_empty();
            if was_empty {
                state.oldest_at = Some(Instant::now());
            }
            state.memory.push_back(record);
            let len = state.memory.len();
            shared
                .metrics
                .writer_queue_depth
                .set(i64::try_from(len).unwrap_or(i64::MAX));
            drop(state);
            if was_empty || len == shared.settings.batch_size {
                shared.wake.notify_one();
            }
            return Enqueued::Memory;
        }
        let result = state.journal.append(&record);
        if state.closing {
            // The writer may already be gone: nobody else will sync this.
            state.journal.sync();
        }
        shared.gauges(&state);
        drop(state);
        match result {
            Ok(()) => {
                shared.wake.notify_one();
                Enqueued::Journal
            }
            Err(e) => {
                let reason = match e {
                    journal::AppendError::Full(_) => "journal_full",
                    journal::AppendError::Io(_) => "journal_io",
                };
                shared.dropped(reason, 1, &e);
                Enqueued::Dropped
            }
        }
    }

    /// Notes that an agent was seen at `at`: coalesced per agent and written in the next
    /// `last_seen` batch (one statement for all agents), never one write per request.
    pub fn touch_last_seen(&self, agent_hash: &str, agent_id: &str, at: DateTime<Utc>) {
        let shared = &self.shared;
        let mut state = shared.lock();
        if !state.closing {
            if let Some(entry) = state.last_seen.get_mut(agent_hash) {
                if at > entry.1 {
                    entry.1 = at;
                }
                return;
            }
            if state.last_seen.len() < LAST_SEEN_MAX_AGENTS {
                state
                    .last_seen
                    .insert(agent_hash.to_owned(), (agent_id.to_owned(), at));
                shared
                    .metrics
                    .writer_last_seen_pending
                    .set(i64::try_from(state.last_seen.len()).unwrap_or(i64::MAX));
                return;
            }
        }
        drop(state);
        self.enqueue(WriteRecord::LastSeen {
            agent_hash: agent_hash.to_owned(),
            agent_id: agent_id.to_owned(),
            at,
        });
    }

    /// The readiness entry.
    pub fn health(&self) -> WriterHealth {
        let state = self.shared.lock();
        let degraded = state.failing_since.is_some() || !state.journal.is_empty();
        WriterHealth {
            status: if degraded { "degraded" } else { "ok" },
            queue_depth: state.memory.len(),
            last_seen_pending: state.last_seen.len(),
            journal_records: state.journal.records(),
            journal_bytes: state.journal.bytes(),
            failing_for_ms: state
                .failing_since
                .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
            error: state.failing_since.and(state.last_error.clone()),
        }
    }

    /// The journal directory.
    pub fn journal_dir(&self) -> std::path::PathBuf {
        self.shared.lock().journal.dir().to_path_buf()
    }

    /// Drains: writes what is queued (memory, `last_seen`, then the journal) until `deadline`;
    /// at the first failure, or at the deadline, journals what is left. Records enqueued from now
    /// on go straight to the journal. Idempotent.
    pub async fn shutdown(&self, deadline: Instant) -> DrainReport {
        self.shared.lock().closing = true;
        self.shared.closing.send_replace(Some(deadline));
        self.shared.wake.notify_one();
        let (writer, ticker) = {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            (tasks.writer.take(), tasks.ticker.take())
        };
        if let Some(writer) = writer {
            // The task bounds each attempt by the deadline; the margin covers a file system that
            // is slow to take the final spill.
            let abort = writer.abort_handle();
            if tokio::time::timeout_at(deadline + Duration::from_secs(5), writer)
                .await
                .is_err()
            {
                abort.abort();
                tracing::error!("the writer did not stop in time");
            }
        }
        if let Some(ticker) = ticker {
            ticker.abort();
        }
        let mut state = self.shared.lock();
        state.journal.sync();
        self.shared.gauges(&state);
        DrainReport {
            journal_records: state.journal.records(),
            unflushed: state.memory.len() + state.last_seen.len(),
        }
    }
}

/// Syncs journal appends once a second ([`FsyncPolicy::Interval`]).
async fn sync_ticker(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let file = shared.lock().journal.take_dirty();
        if let Some(file) = file {
            match tokio::task::spawn_blocking(move || file.sync_data()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "journal fsync failed"),
                Err(e) => tracing::warn!(error = %e, "journal fsync task failed"),
            }
        }
    }
}
