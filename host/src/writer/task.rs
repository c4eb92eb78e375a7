//! The writer's loop: take the next batch (coalesced `last_seen`, then memory, then the journal),
//! make sure its agents exist, write it kind by kind, retry while the database is at fault, set
//! aside records it refuses, and journal what it holds when the outage lasts or shutdown comes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::journal::read_chunk;
use super::sink::{Fault, Sink, SinkError};
use super::{OUTAGE_LOG_INTERVAL, RecordKind, Shared, WriteRecord};
use crate::cache::{Cache, keys};

/// Agents remembered as existing (hash → id); past this the map starts over (a known agent
/// costs one indexed read to learn again).
const KNOWN_AGENTS_MAX: usize = 100_000;

/// Where a batch came from, which decides what a success commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Memory,
    LastSeen,
    /// Lines of segment `id` up to `end`; `read` decodable records.
    Journal {
        id: u64,
        end: u64,
        read: u64,
    },
}

#[derive(Debug)]
struct Batch {
    source: Source,
    records: Vec<WriteRecord>,
}

pub(super) struct Task<S> {
    shared: Arc<Shared>,
    sink: S,
    cache: Option<Cache>,
    known: HashMap<String, String>,
    backoff: Backoff,
    schema_checked: bool,
    last_seen_due: Instant,
    closing: watch::Receiver<Option<Instant>>,
    outage_logged_at: Option<Instant>,
}

impl<S: Sink> Task<S> {
    pub(super) fn new(
        shared: Arc<Shared>,
        sink: S,
        cache: Option<Cache>,
        closing: watch::Receiver<Option<Instant>>,
    ) -> Self {
        let settings = &shared.settings;
        let backoff = Backoff::new(
            settings.retry_initial,
            settings.retry_max,
            settings.retry_jitter,
        );
        let last_seen_due = Instant::now() + settings.last_seen_interval;
        Self {
            shared,
            sink,
            cache,
            known: HashMap::new(),
            backoff,
            schema_checked: false,
            last_seen_due,
            closing,
            outage_logged_at: None,
        }
    }

    pub(super) async fn run(mut self) {
        while let Some(mut batch) = self.next_batch().await {
            if !self.write_with_retry(&mut batch).await {
                break;
            }
        }
        let state = self.shared.lock();
        if state.journal.records() > 0 {
            tracing::warn!(
                journal = %state.journal.dir().display(),
                records = state.journal.records(),
                "writer stopped; records left in the journal are replayed at the next start"
            );
        } else {
            tracing::info!("writer stopped; everything written");
        }
    }

    /// The next batch, waiting for one; `None` once shutting down and nothing is left to do
    /// before the deadline.
    async fn next_batch(&mut self) -> Option<Batch> {
        let settings = self.shared.settings.clone();
        loop {
            let now = Instant::now();
            let closing = *self.closing.borrow();
            if closing.is_some_and(|deadline| now >= deadline) {
                self.spill(None, true);
                return None;
            }
            let mut wait_until = closing;
            let head = {
                let mut state = self.shared.lock();
                if !state.last_seen.is_empty() {
                    if closing.is_some() || now >= self.last_seen_due {
                        self.last_seen_due = now + settings.last_seen_interval;
                        let records = state
                            .last_seen
                            .drain()
                            .map(|(agent_hash, (agent_id, at))| WriteRecord::LastSeen {
                                agent_hash,
                                agent_id,
                                at,
                            })
                            .collect();
                        self.shared.gauges(&state);
                        return Some(Batch {
                            source: Source::LastSeen,
                            records,
                        });
                    }
                    wait_until = earliest(wait_until, self.last_seen_due);
                }
                if !state.memory.is_empty() {
                    let due = state.oldest_at.map_or(now, |t| t + settings.flush_interval);
                    if state.memory.len() >= settings.batch_size || closing.is_some() || now >= due
                    {
                        let n = state.memory.len().min(settings.batch_size);
                        let records: Vec<WriteRecord> = state.memory.drain(..n).collect();
                        if state.memory.is_empty() {
                            state.oldest_at = None;
                        }
                        self.shared.gauges(&state);
                        return Some(Batch {
                            source: Source::Memory,
                            records,
                        });
                    }
                    wait_until = earliest(wait_until, due);
                    None
                } else {
                    state.journal.head()
                }
            };
            if let Some(head) = head {
                match read_chunk(&head.path, head.from, head.to, settings.batch_size) {
                    Ok(chunk) => {
                        self.shared.dropped(
                            "journal_corrupt",
                            chunk.corrupt,
                            &format_args!("corrupt lines in {}", head.path.display()),
                        );
                        if chunk.end <= head.from {
                            let mut state = self.shared.lock();
                            let lost = state.journal.discard(head.id);
                            self.shared.gauges(&state);
                            drop(state);
                            self.shared.dropped(
                                "journal_io",
                                lost,
                                &format_args!("unreadable segment {}", head.path.display()),
                            );
                            continue;
                        }
                        if chunk.records.is_empty() {
                            let mut state = self.shared.lock();
                            state.journal.commit(head.id, chunk.end, 0);
                            self.shared.gauges(&state);
                            continue;
                        }
                        return Some(Batch {
                            source: Source::Journal {
                                id: head.id,
                                end: chunk.end,
                                read: chunk.records.len() as u64,
                            },
                            records: chunk.records,
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // Deleted behind our back: its records are gone.
                        let mut state = self.shared.lock();
                        let lost = state.journal.discard(head.id);
                        self.shared.gauges(&state);
                        drop(state);
                        self.shared.dropped(
                            "journal_io",
                            lost,
                            &format_args!("reading {}: {e}", head.path.display()),
                        );
                        continue;
                    }
                    Err(e) => {
                        // Perhaps transient (out of file descriptors): keep the segment, try
                        // again in a second; at shutdown it stays for the next start.
                        tracing::error!(segment = %head.path.display(), error = %e, "cannot read the journal; retrying");
                        if closing.is_some() {
                            return None;
                        }
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = self.closing.changed() => {}
                        }
                        continue;
                    }
                }
            }
            if closing.is_some() {
                // Nothing in memory, nothing coalesced, nothing journaled.
                return None;
            }
            let sleep = async {
                match wait_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.shared.wake.notified() => {}
                () = sleep => {}
                _ = self.closing.changed() => {}
            }
        }
    }

    /// Writes a batch, retrying while the database is at fault. `false` when the writer must
    /// stop (shutdown: what it held is journaled).
    async fn write_with_retry(&mut self, batch: &mut Batch) -> bool {
        loop {
            let deadline = *self.closing.borrow();
            let limit = Instant::now() + self.shared.settings.op_timeout;
            let limit = deadline.map_or(limit, |d| d.min(limit));
            // A shutdown that begins during the attempt cuts it at its deadline too.
            let mut closing = self.closing.clone();
            let result = tokio::select! {
                attempt = tokio::time::timeout_at(limit, self.write_once(batch)) => match attempt {
                    Ok(result) => result,
                    Err(_) if deadline.is_some_and(|d| d <= limit) => Err(SinkError::database(
                        "no answer before the shutdown deadline",
                    )),
                    Err(_) => Err(SinkError::database(format!(
                        "no answer within {} ms (MNEMOM_WRITER_TIMEOUT_MS)",
                        self.shared.settings.op_timeout.as_millis()
                    ))),
                },
                () = deadline_passed(&mut closing) => Err(SinkError::database(
                    "no answer before the shutdown deadline",
                )),
            };
            match result {
                Ok(()) => {
                    self.committed(batch);
                    return true;
                }
                Err(error) => {
                    self.shared.metrics.writer_retries_total.inc();
                    let failing_for = self.failing(&error);
                    if deadline.is_some() {
                        self.spill(Some(batch), true);
                        return false;
                    }
                    // Journaled records are already safe; what memory holds is not, once the
                    // outage outlasts `spill_after`.
                    if !matches!(batch.source, Source::Journal { .. })
                        && failing_for >= self.shared.settings.spill_after
                    {
                        self.spill(Some(batch), false);
                        return true;
                    }
                    let delay = self.backoff.next_delay();
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = self.closing.changed() => {}
                    }
                    if self.closing.borrow().is_some() {
                        // Shutdown during an outage: no point waiting for the database.
                        self.spill(Some(batch), true);
                        return false;
                    }
                }
            }
        }
    }

    /// One attempt at a batch: agents, then each kind in order. Records the database refuses are
    /// removed from the batch (and counted) as they are found.
    async fn write_once(&mut self, batch: &mut Batch) -> Result<(), SinkError> {
        if !self.schema_checked {
            self.sink.check_schema().await?;
            self.schema_checked = true;
        }
        self.ensure_agents(batch).await?;
        for kind in RecordKind::ALL {
            self.write_kind(batch, kind).await?;
            if kind == RecordKind::Containment {
                self.forget_contained(batch).await;
            }
        }
        Ok(())
    }

    /// Drops the cached settings of the agents a containment of the batch names, so the next
    /// request reloads them (and sees the new status) instead of serving from the cache for up
    /// to its TTL. After the write, so the reload cannot read the old status.
    async fn forget_contained(&self, batch: &Batch) {
        let Some(cache) = &self.cache else {
            return;
        };
        let agents: HashSet<&str> = batch
            .records
            .iter()
            .filter_map(|r| match r {
                WriteRecord::Containment { record, .. } => Some(record.agent_id.as_str()),
                _ => None,
            })
            .collect();
        for agent_id in agents {
            cache.delete(keys::quota_agent(agent_id)).await;
        }
    }

    /// Makes sure every agent the batch names exists (get-or-create, once per agent per
    /// process), then writes the records under the ids the store gave.
    async fn ensure_agents(&mut self, batch: &mut Batch) -> Result<(), SinkError> {
        let mut resolved: HashMap<String, String> = HashMap::new();
        let mut seen = HashSet::new();
        let mut unknown = Vec::new();
        for record in &batch.records {
            let hash = record.agent_hash();
            if let Some(id) = self.known.get(hash) {
                if !resolved.contains_key(hash) {
                    resolved.insert(hash.to_owned(), id.clone());
                }
            } else if seen.insert(hash) {
                unknown.push((hash.to_owned(), record.agent_id().into_owned()));
            }
        }
        let mut refused: HashMap<String, String> = HashMap::new();
        for (hash, id) in unknown {
            match self.sink.ensure_agent(&hash, &id).await {
                Ok(agent) => {
                    self.shared
                        .metrics
                        .background_tasks_total
                        .with_label_values(&["agent"])
                        .inc();
                    if let Some(cache) = &self.cache {
                        crate::agents::remember(cache, &agent).await;
                    }
                    if self.known.len() >= KNOWN_AGENTS_MAX {
                        self.known.clear();
                    }
                    self.known.insert(hash.clone(), agent.id.clone());
                    resolved.insert(hash, agent.id);
                }
                Err(e) if e.fault == Fault::Record => {
                    refused.insert(hash, e.message);
                }
                Err(e) => return Err(e),
            }
        }
        if !refused.is_empty() {
            let records = std::mem::take(&mut batch.records);
            for record in records {
                match refused.get(record.agent_hash()) {
                    Some(error) => self.reject(&record, error),
                    None => batch.records.push(record),
                }
            }
        }
        for record in &mut batch.records {
            if let Some(id) = resolved.get(record.agent_hash()) {
                record.set_agent_id(id);
            }
        }
        Ok(())
    }

    /// Writes the batch's records of one kind. When the database refuses the group because of a
    /// record, the group is halved until the record is alone, and it is set aside.
    async fn write_kind(&mut self, batch: &mut Batch, kind: RecordKind) -> Result<(), SinkError> {
        let indices: Vec<usize> = batch
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind() == kind)
            .map(|(i, _)| i)
            .collect();
        if indices.is_empty() {
            return Ok(());
        }
        let mut rejected: Vec<(usize, String)> = Vec::new();
        let mut ranges = vec![(0, indices.len())];
        let result = loop {
            let Some((lo, hi)) = ranges.pop() else {
                break Ok(());
            };
            let group = &indices[lo..hi];
            match self.insert(kind, &batch.records, group).await {
                Ok(()) => {}
                Err(e) if e.fault == Fault::Record => {
                    if hi - lo == 1 {
                        rejected.push((group[0], e.message));
                    } else {
                        let mid = lo + (hi - lo) / 2;
                        ranges.push((mid, hi));
                        ranges.push((lo, mid));
                    }
                }
                Err(e) => break Err(e),
            }
        };
        rejected.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, error) in rejected {
            let record = batch.records.remove(i);
            self.reject(&record, &error);
        }
        result
    }

    async fn insert(
        &self,
        kind: RecordKind,
        records: &[WriteRecord],
        group: &[usize],
    ) -> Result<(), SinkError> {
        let pick = group.iter().filter_map(|i| records.get(*i));
        match kind {
            RecordKind::UsageEvent => {
                let rows: Vec<_> = pick
                    .filter_map(|r| match r {
                        WriteRecord::UsageEvent { record, .. } => Some(record.clone()),
                        _ => None,
                    })
                    .collect();
                self.sink.insert_usage_events(&rows).await.map(drop)
            }
            RecordKind::Checkpoint => {
                let rows: Vec<_> = pick
                    .filter_map(|r| match r {
                        WriteRecord::Checkpoint { record, .. } => Some((**record).clone()),
                        _ => None,
                    })
                    .collect();
                self.sink.insert_checkpoints(&rows).await.map(drop)
            }
            RecordKind::Nudge => {
                let rows: Vec<_> = pick
                    .filter_map(|r| match r {
                        WriteRecord::Nudge { record, .. } => Some(record.clone()),
                        _ => None,
                    })
                    .collect();
                self.sink.insert_nudges(&rows).await.map(drop)
            }
            RecordKind::DriftAlert => {
                let rows: Vec<_> = pick
                    .filter_map(|r| match r {
                        WriteRecord::DriftAlert { record, .. } => Some(record.clone()),
                        _ => None,
                    })
                    .collect();
                self.sink.insert_drift_alerts(&rows).await.map(drop)
            }
            RecordKind::Containment => {
                let rows: Vec<_> = pick
                    .filter_map(|r| match r {
                        WriteRecord::Containment { record, .. } => Some(record.clone()),
                        _ => None,
                    })
                    .collect();
                self.sink.apply_containments(&rows).await.map(drop)
            }
            RecordKind::WebhookDelivery => {
                let rows: Vec<_> = pick
                    .filter_map(|r| match r {
                        WriteRecord::WebhookDelivery { record, .. } => Some(record.clone()),
                        _ => None,
                    })
                    .collect();
                self.sink.upsert_webhook_deliveries(&rows).await.map(drop)
            }
            RecordKind::LastSeen => {
                let rows: Vec<(String, DateTime<Utc>)> = pick
                    .filter_map(|r| match r {
                        WriteRecord::LastSeen { agent_id, at, .. } => Some((agent_id.clone(), *at)),
                        _ => None,
                    })
                    .collect();
                self.sink.touch_last_seen(&rows).await.map(drop)
            }
        }
    }

    fn reject(&self, record: &WriteRecord, error: &str) {
        let kind = record.kind().as_str();
        self.shared
            .metrics
            .writer_rejected_total
            .with_label_values(&[kind])
            .inc();
        tracing::warn!(
            kind,
            id = record.id(),
            agent = %record.agent_id(),
            error,
            "the database refused a record; set aside"
        );
    }

    /// A batch is in the database: count it, and advance the journal past it.
    fn committed(&mut self, batch: &Batch) {
        self.backoff.reset();
        let metrics = &self.shared.metrics;
        for kind in RecordKind::ALL {
            let n = batch.records.iter().filter(|r| r.kind() == kind).count() as u64;
            if n > 0 {
                metrics
                    .background_tasks_total
                    .with_label_values(&[kind.as_str()])
                    .inc_by(n);
            }
        }
        let mut state = self.shared.lock();
        if let Source::Journal { id, end, read } = batch.source {
            metrics
                .background_tasks_total
                .with_label_values(&["journal_replay"])
                .inc_by(batch.records.len() as u64);
            state.journal.commit(id, end, read);
        }
        if let Some(since) = state.failing_since.take() {
            tracing::info!(
                outage_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
                queued = state.memory.len(),
                journal_records = state.journal.records(),
                "database writes resumed"
            );
            state.last_error = None;
            self.outage_logged_at = None;
        }
        self.shared.gauges(&state);
    }

    /// Notes a failed attempt; returns how long writes have been failing.
    fn failing(&mut self, error: &SinkError) -> Duration {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let since = *state.failing_since.get_or_insert(now);
        state.last_error = Some(error.message.clone());
        let log_due = self
            .outage_logged_at
            .is_none_or(|t| now.duration_since(t) >= OUTAGE_LOG_INTERVAL);
        if log_due {
            self.outage_logged_at = Some(now);
            tracing::warn!(
                error = %error,
                failing_ms = u64::try_from(now.duration_since(since).as_millis()).unwrap_or(u64::MAX),
                queued = state.memory.len(),
                journal_records = state.journal.records(),
                "database writes failing; records are kept and retried"
            );
        }
        now.duration_since(since)
    }

    /// Moves what the writer holds (the failed batch unless it came from the journal, the memory
    /// queue, and at shutdown the coalesced `last_seen`) into a journal segment that replays
    /// before everything else journaled.
    fn spill(&mut self, batch: Option<&mut Batch>, exiting: bool) {
        let mut state = self.shared.lock();
        let mut records = match batch {
            Some(batch) if !matches!(batch.source, Source::Journal { .. }) => {
                std::mem::take(&mut batch.records)
            }
            _ => Vec::new(),
        };
        records.extend(state.memory.drain(..));
        state.oldest_at = None;
        if exiting {
            records.extend(state.last_seen.drain().map(|(agent_hash, (agent_id, at))| {
                WriteRecord::LastSeen {
                    agent_hash,
                    agent_id,
                    at,
                }
            }));
        }
        if records.is_empty() {
            return;
        }
        let n = records.len() as u64;
        let result = state.journal.prepend(&records);
        self.shared.gauges(&state);
        drop(state);
        match result {
            Ok(()) => tracing::info!(
                records = n,
                shutdown = exiting,
                "moved the records held in memory to the journal"
            ),
            Err(e) => self.shared.dropped("journal_io", n, &e),
        }
    }
}

/// Resolves once shutdown has begun and its deadline has passed.
async fn deadline_passed(closing: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let deadline = *closing.borrow_and_update();
        match deadline {
            Some(deadline) => {
                tokio::time::sleep_until(deadline).await;
                return;
            }
            None => {
                if closing.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}
