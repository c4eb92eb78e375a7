//! The writer's tests: batching, backoff and spilling on a paused clock, the journal's format and
//! recovery (a torn last record, a corrupt one, the lock), replay order, shutdown, refused records
//! — against a scripted sink — then the same paths on real SQLite and PostgreSQL databases, and
//! the throughput benchmark (ignored: run it by hand).

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::journal::{self, Journal};
use super::sink::{Sink, SinkError};
use super::*;
use crate::cache::{Cache, keys};
use crate::metrics::Metrics;
use crate::store::tests::{TestDb, at, checkpoint, hash_of, scalar_i64, usage};
use crate::store::{
    Agent, CheckpointRecord, ContainmentRecord, ContainmentStatus, DriftAlertRecord, NudgeRecord,
    UsageEventRecord, WebhookDeliveryRecord,
};

// ---------------------------------------------------------------------------------------------
// A scripted sink.

#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    op: &'static str,
    n: usize,
}

#[derive(Debug, Default)]
struct FakeState {
    down: bool,
    /// Record ids the "database" refuses (a constraint).
    refuse: HashSet<String>,
    /// Agent hashes whose get-or-create is refused.
    refuse_agents: HashSet<String>,
    /// Agent hashes that get the long id (their short one belongs to another key).
    long_ids: HashSet<String>,
    agents: HashMap<String, String>,
    usage: Vec<UsageEventRecord>,
    checkpoints: Vec<CheckpointRecord>,
    nudges: Vec<NudgeRecord>,
    drift_alerts: Vec<DriftAlertRecord>,
    containments: Vec<ContainmentRecord>,
    deliveries: Vec<WebhookDeliveryRecord>,
    last_seen: HashMap<String, DateTime<Utc>>,
    calls: Vec<Call>,
}

impl FakeState {
    /// A record referring to a checkpoint not written yet breaks the foreign key.
    fn require_checkpoint(&self, checkpoint_id: &str) -> Result<(), SinkError> {
        if self
            .checkpoints
            .iter()
            .any(|c| c.checkpoint_id == checkpoint_id)
        {
            Ok(())
        } else {
            Err(SinkError::record(format!(
                "foreign key: checkpoint {checkpoint_id} not written yet"
            )))
        }
    }
}

#[derive(Debug, Clone, Default)]
struct FakeSink(Arc<Mutex<FakeState>>);

impl FakeSink {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn down() -> Self {
        let sink = Self::default();
        sink.set_down(true);
        sink
    }

    fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    fn usage_ids(&self) -> Vec<String> {
        self.state().usage.iter().map(|u| u.id.clone()).collect()
    }

    fn calls(&self, op: &str) -> Vec<Call> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.op == op)
            .cloned()
            .collect()
    }

    /// Notes a call; the error to return if the database is down.
    fn enter(
        &self,
        op: &'static str,
        n: usize,
    ) -> (MutexGuard<'_, FakeState>, Result<(), SinkError>) {
        let mut state = self.state();
        state.calls.push(Call {
            at: Instant::now(),
            op,
            n,
        });
        let result = if state.down {
            Err(SinkError::database("connection refused"))
        } else {
            Ok(())
        };
        (state, result)
    }
}

impl Sink for FakeSink {
    async fn check_schema(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn ensure_agent(&self, agent_hash: &str, agent_id: &str) -> Result<Agent, SinkError> {
        let (mut state, result) = self.enter("agent", 1);
        result?;
        if state.refuse_agents.contains(agent_hash) {
            return Err(SinkError::record("agents_agent_hash_check"));
        }
        let id = if state.long_ids.contains(agent_hash) {
            format!("smolt-{agent_hash}")
        } else {
            agent_id.to_owned()
        };
        let id = state
            .agents
            .entry(agent_hash.to_owned())
            .or_insert(id)
            .clone();
        Ok(Agent {
            id,
            agent_hash: agent_hash.to_owned(),
            created_at: Utc::now(),
            last_seen: None,
            settings: Default::default(),
        })
    }

    async fn insert_usage_events(&self, batch: &[UsageEventRecord]) -> Result<u64, SinkError> {
        let (mut state, result) = self.enter("usage", batch.len());
        result?;
        if batch.iter().any(|r| state.refuse.contains(&r.id)) {
            return Err(SinkError::record("usage_events_tokens_in_check"));
        }
        let mut new = 0;
        for r in batch {
            if !state.usage.iter().any(|u| u.id == r.id) {
                state.usage.push(r.clone());
                new += 1;
            }
        }
        Ok(new)
    }

    async fn insert_checkpoints(&self, batch: &[CheckpointRecord]) -> Result<u64, SinkError> {
        let (mut state, result) = self.enter("checkpoint", batch.len());
        result?;
        let mut new = 0;
        for r in batch {
            if !state
                .checkpoints
                .iter()
                .any(|c| c.checkpoint_id == r.checkpoint_id)
            {
                state.checkpoints.push(r.clone());
                new += 1;
            }
        }
        Ok(new)
    }

    async fn insert_nudges(&self, batch: &[NudgeRecord]) -> Result<u64, SinkError> {
        let (mut state, result) = self.enter("nudge", batch.len());
        result?;
        for r in batch {
            state.require_checkpoint(&r.checkpoint_id)?;
        }
        let mut new = 0;
        for r in batch {
            if !state.nudges.iter().any(|n| n.id == r.id) {
                state.nudges.push(r.clone());
                new += 1;
            }
        }
        Ok(new)
    }

    async fn insert_drift_alerts(&self, batch: &[DriftAlertRecord]) -> Result<u64, SinkError> {
        let (mut state, result) = self.enter("drift_alert", batch.len());
        result?;
        let mut new = 0;
        for r in batch {
            if !state
                .drift_alerts
                .iter()
                .any(|d| d.dedup_key == r.dedup_key)
            {
                state.drift_alerts.push(r.clone());
                new += 1;
            }
        }
        Ok(new)
    }

    async fn apply_containments(&self, batch: &[ContainmentRecord]) -> Result<u64, SinkError> {
        let (mut state, result) = self.enter("containment", batch.len());
        result?;
        let mut new = 0;
        for r in batch {
            if !state.containments.iter().any(|c| c.agent_id == r.agent_id) {
                state.containments.push(r.clone());
                new += 1;
            }
        }
        Ok(new)
    }

    async fn upsert_webhook_deliveries(
        &self,
        batch: &[WebhookDeliveryRecord],
    ) -> Result<u64, SinkError> {
        let (mut state, result) = self.enter("webhook_delivery", batch.len());
        result?;
        for r in batch {
            state.require_checkpoint(&r.checkpoint_id)?;
        }
        for r in batch {
            state
                .deliveries
                .retain(|d| d.checkpoint_id != r.checkpoint_id);
            state.deliveries.push(r.clone());
        }
        Ok(batch.len() as u64)
    }

    async fn touch_last_seen(&self, batch: &[(String, DateTime<Utc>)]) -> Result<u64, SinkError> {
        let (mut state, result) = self.enter("last_seen", batch.len());
        result?;
        for (id, at) in batch {
            let slot = state.last_seen.entry(id.clone()).or_insert(*at);
            if *at > *slot {
                *slot = *at;
            }
        }
        Ok(batch.len() as u64)
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

const AGENT: u64 = 0x1a2b_3c4d_5e6f_7081;

fn agent_hash() -> String {
    hash_of(AGENT)
}

fn agent_id() -> String {
    format!("smolt-{}", &agent_hash()[..8])
}

fn id(n: usize) -> String {
    format!("ue-{n:06}")
}

fn usage_of(hash: &str, n: usize) -> WriteRecord {
    let mut record = usage(&id(n), &format!("smolt-{}", &hash[..8]), n as i64);
    record.session_id = format!("{hash}-1");
    WriteRecord::usage_event(hash, record)
}

fn rec(n: usize) -> WriteRecord {
    usage_of(&agent_hash(), n)
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(id).collect()
}

/// Test settings: small batches, exact (unjittered) delays, no spilling unless a test asks,
/// every append synced (no background ticker on the paused clock).
fn settings(dir: &Path) -> WriterSettings {
    let mut s = WriterSettings::defaults(dir);
    s.batch_size = 10;
    s.flush_interval = Duration::from_millis(50);
    s.last_seen_interval = Duration::from_millis(100);
    s.retry_initial = Duration::from_millis(100);
    s.retry_max = Duration::from_millis(800);
    s.retry_jitter = false;
    s.spill_after = Duration::from_secs(3600);
    s.journal_fsync = FsyncPolicy::Always;
    s
}

fn start(sink: &FakeSink, settings: WriterSettings, metrics: &Metrics) -> (Writer, Recovery) {
    Writer::start_with_sink(sink.clone(), settings, metrics, None).expect("writer starts")
}

/// Polls `cond` every 10 ms (of the test's clock) for up to 30 s.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn task_count(metrics: &Metrics, task: &str) -> u64 {
    metrics
        .background_tasks_total
        .with_label_values(&[task])
        .get()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

// ---------------------------------------------------------------------------------------------
// Queue, batching, retry.

#[tokio::test(start_paused = true)]
async fn batches_fill_by_size_then_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeSink::default();
    let metrics = Metrics::new().unwrap();
    let mut s = settings(dir.path());
    s.flush_interval = Duration::from_millis(200);
    let (writer, recovery) = start(&sink, s, &metrics);
    assert_eq!(recovery, Recovery::default());
    let t0 = Instant::now();
    for n in 0..25 {
        assert_eq!(writer.enqueue(rec(n)), Enqueued::Memory);
    }
    assert_eq!(metrics.writer_queue_depth.get(), 25);

    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls = sink.calls("usage");
    assert_eq!(calls.iter().map(|c| c.n).collect::<Vec<_>>(), [10, 10]);
    assert!(calls.iter().all(|c| c.at == t0), "full batches go at once");

    tokio::time::sleep(Duration::from_millis(150)).await;
    let calls = sink.calls("usage");
    assert_eq!(calls.iter().map(|c| c.n).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!(
        calls[2].at - t0,
        Duration::from_millis(200),
        "the rest waits the flush interval"
    );
    assert_eq!(sink.usage_ids(), ids(0..25));
    assert_eq!(
        sink.calls("agent").len(),
        1,
        "the agent is made sure of once"
    );
    assert_eq!(task_count(&metrics, "usage_event"), 25);
    assert_eq!(task_count(&metrics, "agent"), 1);
    assert_eq!(metrics.writer_queue_depth.get(), 0);
    assert_eq!(writer.health().status, "ok");
}

#[tokio::test(start_paused = true)]
async fn last_seen_is_coalesced_per_agent() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeSink::default();
    let metrics = Metrics::new().unwrap();
    let (writer, _) = start(&sink, settings(dir.path()), &metrics);
    let other = hash_of(7);
    for n in 0..100 {
        writer.touch_last_seen(&agent_hash(), &agent_id(), at(n));
        writer.touch_last_seen(&other, &format!("smolt-{}", &other[..8]), at(1000 - n));
    }
    assert_eq!(metrics.writer_last_seen_pending.get(), 2);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let calls = sink.calls("last_seen");
    assert_eq!(calls.len(), 1, "one statement for every agent");
    assert_eq!(calls[0].n, 2);
    let state = sink.state();
    assert_eq!(state.last_seen[&agent_id()], at(99));
    assert_eq!(state.last_seen[&format!("smolt-{}", &other[..8])], at(1000));
    drop(state);
    assert_eq!(task_count(&metrics, "last_seen"), 2);
    assert_eq!(metrics.writer_last_seen_pending.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_up_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeSink::down();
    let metrics = Metrics::new().unwrap();
    let (writer, _) = start(&sink, settings(dir.path()), &metrics);
    let t0 = Instant::now();
    writer.enqueue(rec(0));
    tokio::time::sleep(Duration::from_millis(5000)).await;

    let attempts: Vec<Instant> = sink.calls("agent").iter().map(|c| c.at).collect();
    assert_eq!(
        attempts[0] - t0,
        Duration::from_millis(50),
        "after the flush interval"
    );
    let gaps: Vec<u64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect();
    assert_eq!(gaps, [100, 200, 400, 800, 800, 800, 800, 800]);
    assert_eq!(metrics.writer_retries_total.get(), attempts.len() as u64);
    let health = writer.health();
    assert_eq!(health.status, "degraded");
    assert_eq!(health.queue_depth, 0, "the batch is held by the writer");
    assert_eq!(health.error.as_deref(), Some("connection refused"));
    assert!(health.failing_for_ms.unwrap() >= 4900);

    // The database returns: the next attempt writes, and the delays start over.
    sink.set_down(false);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sink.usage_ids(), ids(0..1));
    assert_eq!(writer.health().status, "ok");
    sink.set_down(true);
    writer.enqueue(rec(1));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again: Vec<Instant> = sink.calls("usage").iter().skip(1).map(|c| c.at).collect();
    assert_eq!(
        again
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis() as u64)
            .collect::<Vec<_>>(),
        [100, 200]
    );
}

#[test]
fn jittered_delays_stay_within_a_fifth_of_the_exponential_ones() {
    let mut backoff =
        backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(5), true);
    for expected in [100u64, 200, 400, 800, 1600, 3200, 5000, 5000] {
        let d = backoff.next_delay().as_millis() as u64;
        assert!(
            d >= expected * 8 / 10 && d <= expected * 12 / 10,
            "{d} ms for {expected} ms"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_record_is_set_aside_and_the_queue_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeSink::default();
    sink.state().refuse.insert(id(4));
    let metrics = Metrics::new().unwrap();
    let (writer, _) = start(&sink, settings(dir.path()), &metrics);
    for n in 0..13 {
        writer.enqueue(rec(n));
    }
    until("13 records handled", || sink.state().usage.len() == 12).await;
    let mut expected = ids(0..13);
    expected.remove(4);
    assert_eq!(
        sink.usage_ids(),
        expected,
        "order is kept around the refused record"
    );
    assert_eq!(
        metrics
            .writer_rejected_total
            .with_label_values(&["usage_event"])
            .get(),
        1
    );
    assert_eq!(task_count(&metrics, "usage_event"), 12);
    assert_eq!(
        metrics.writer_retries_total.get(),
        0,
        "a refusal is not retried"
    );
    assert_eq!(writer.health().status, "ok");
}

#[tokio::test(start_paused = true)]
async fn records_follow_the_agent_id_the_store_gives() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeSink::default();
    let refused = hash_of(9);
    {
        let mut state = sink.state();
        state.long_ids.insert(agent_hash());
        state.refuse_agents.insert(refused.clone());
    }
    let metrics = Metrics::new().unwrap();
    let (writer, _) = start(&sink, settings(dir.path()), &metrics);
    writer.enqueue(rec(0));
    writer.enqueue(usage_of(&refused, 1));
    writer.touch_last_seen(&agent_hash(), &agent_id(), at(5));
    tokio::time::sleep(Duration::from_millis(200)).await;
    writer.enqueue(rec(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let long = format!("smolt-{}", agent_hash());
    let state = sink.state();
    assert_eq!(
        state
            .usage
            .iter()
            .map(|u| (u.id.as_str(), u.agent_id.as_str()))
            .collect::<Vec<_>>(),
        [
            (id(0).as_str(), long.as_str()),
            (id(2).as_str(), long.as_str())
        ]
    );
    assert_eq!(state.last_seen.get(&long), Some(&at(5)));
    // Asked once for the known agent; the refused agent's record is set aside.
    assert_eq!(state.calls.iter().filter(|c| c.op == "agent").count(), 2);
    drop(state);
    assert_eq!(
        metrics
            .writer_rejected_total
            .with_label_values(&["usage_event"])
            .get(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// The journal.

#[test]
fn journal_round_trip_survives_a_torn_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut records: Vec<WriteRecord> = (0..3).map(rec).collect();
    let mut cp = checkpoint("ic-1", &agent_id(), "s", 1);
    cp.concerns = serde_json::json!([{"category": "deception", "severity": "high"}]);
    records.push(WriteRecord::checkpoint(agent_hash(), cp));
    records.push(WriteRecord::LastSeen {
        agent_hash: agent_hash(),
        agent_id: agent_id(),
        at: at(3),
    });
    {
        let (mut journal, recovery) =
            Journal::open(dir.path(), 1 << 30, 1 << 20, FsyncPolicy::Always).unwrap();
        assert_eq!(recovery, Recovery::default());
        for r in &records {
            journal.append(r).unwrap();
        }
        assert_eq!(journal.records(), 5);
        // One process owns the directory.
        let second = Journal::open(dir.path(), 1 << 30, 1 << 20, FsyncPolicy::Always);
        assert!(
            matches!(second, Err(JournalError::Locked { .. })),
            "{second:?}"
        );
    }
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    let whole = std::fs::metadata(&files[0]).unwrap().len();
    // Every line: checksum, space, JSON; the kind is named.
    let text = std::fs::read_to_string(&files[0]).unwrap();
    for line in text.lines() {
        let (crc, json) = line.split_once(' ').unwrap();
        assert_eq!(crc.len(), 8);
        assert!(serde_json::from_str::<serde_json::Value>(json).unwrap()["kind"].is_string());
    }
    assert!(text.starts_with(&format!(
        "{:08x} {{\"kind\":\"usage_event\"",
        crc32fast::hash(serde_json::to_string(&records[0]).unwrap().as_bytes())
    )));

    // A write the process did not finish: half a line.
    let line = journal::encode(&rec(99)).unwrap();
    let torn = &line[..line.len() / 2];
    std::fs::OpenOptions::new()
        .append(true)
        .open(&files[0])
        .unwrap()
        .write_all(torn)
        .unwrap();

    let (journal, recovery) =
        Journal::open(dir.path(), 1 << 30, 1 << 20, FsyncPolicy::Always).unwrap();
    assert_eq!(
        recovery,
        Recovery {
            segments: 1,
            records: 5,
            corrupt: 0,
            torn_bytes: torn.len() as u64,
        }
    );
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().len(),
        whole,
        "cut off"
    );
    let head = journal.head().unwrap();
    let chunk = journal::read_chunk(&head.path, head.from, head.to, 100).unwrap();
    assert_eq!(chunk.records, records);
    assert_eq!(chunk.end, whole);
    assert_eq!(chunk.corrupt, 0);
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_record_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    {
        let (mut journal, _) =
            Journal::open(&s.journal_dir, 1 << 30, 1 << 20, s.journal_fsync).unwrap();
        for n in 0..3 {
            journal.append(&rec(n)).unwrap();
        }
    }
    let file = segment_files(&s.journal_dir).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    let second = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    // Flip one digit of the second record's id.
    let digit = second
        + bytes[second..]
            .windows(9)
            .position(|w| w == b"ue-000001")
            .unwrap()
        + 8;
    bytes[digit] = b'7';
    std::fs::write(&file, &bytes).unwrap();

    let sink = FakeSink::default();
    let metrics = Metrics::new().unwrap();
    let (writer, recovery) = start(&sink, s, &metrics);
    assert_eq!((recovery.records, recovery.corrupt), (2, 1));
    until("replay", || sink.state().usage.len() == 2).await;
    assert_eq!(sink.usage_ids(), [id(0), id(2)]);
    assert_eq!(
        metrics
            .writer_dropped_total
            .with_label_values(&["journal_corrupt"])
            .get(),
        1
    );
    until("the segment is deleted", || {
        writer.health().journal_bytes == 0
    })
    .await;
    assert!(segment_files(&writer.journal_dir()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_journal_replays_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    {
        // One record per segment; then what a writer held in memory goes in front.
        let (mut journal, _) = Journal::open(&s.journal_dir, 1 << 30, 1, s.journal_fsync).unwrap();
        for n in 3..7 {
            journal.append(&rec(n)).unwrap();
        }
        journal.prepend(&[rec(0), rec(1), rec(2)]).unwrap();
    }
    assert_eq!(segment_files(&s.journal_dir).len(), 5);
    let sink = FakeSink::default();
    let metrics = Metrics::new().unwrap();
    let mut s = s;
    s.batch_size = 2;
    let (writer, recovery) = start(&sink, s, &metrics);
    assert_eq!((recovery.segments, recovery.records), (5, 7));
    assert_eq!(
        writer.health().status,
        "degraded",
        "until the journal is replayed"
    );
    // New records wait behind the journal.
    assert_eq!(writer.enqueue(rec(7)), Enqueued::Journal);
    until("replay", || sink.state().usage.len() == 8).await;
    assert_eq!(sink.usage_ids(), ids(0..8));
    assert!(sink.calls("usage").iter().all(|c| c.n <= 2));
    assert_eq!(task_count(&metrics, "journal_replay"), 8);
    until("the journal empties", || writer.health().status == "ok").await;
    assert!(segment_files(&writer.journal_dir()).is_empty());
    assert_eq!(metrics.writer_journal_records.get(), 0);
    assert_eq!(metrics.writer_journal_bytes.get(), 0);
    // Back to memory.
    assert_eq!(writer.enqueue(rec(8)), Enqueued::Memory);
}

#[tokio::test(start_paused = true)]
async fn what_does_not_fit_in_memory_is_journaled_and_replayed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeSink::default();
    let metrics = Metrics::new().unwrap();
    let mut s = settings(dir.path());
    s.queue_capacity = 5;
    let (writer, _) = start(&sink, s, &metrics);
    let placed: Vec<Enqueued> = (0..12).map(|n| writer.enqueue(rec(n))).collect();
    assert_eq!(placed[..5], [Enqueued::Memory; 5]);
    assert_eq!(placed[5..], [Enqueued::Journal; 7]);
    assert_eq!(metrics.writer_journal_records.get(), 7);
    until("all written", || sink.state().usage.len() == 12).await;
    assert_eq!(sink.usage_ids(), ids(0..12));
    assert_eq!(task_count(&metrics, "journal_replay"), 7);
    assert_eq!(task_count(&metrics, "usage_event"), 12);
}

#[tokio::test(start_paused = true)]
async fn a_long_outage_moves_memory_to_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeSink::down();
    let metrics = Metrics::new().unwrap();
    let mut s = settings(dir.path());
    s.spill_after = Duration::from_secs(1);
    let (writer, _) = start(&sink, s, &metrics);
    for n in 0..13 {
        writer.enqueue(rec(n));
    }
    writer.touch_last_seen(&agent_hash(), &agent_id(), at(1));
    // Attempts at 50, 150, 350, 750 and 1550 ms: the last one is past `spill_after`.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let health = writer.health();
    assert_eq!(health.queue_depth, 0);
    assert_eq!(
        health.journal_records, 14,
        "13 records and the last_seen batch"
    );
    assert_eq!(writer.enqueue(rec(13)), Enqueued::Journal);

    sink.set_down(false);
    until("all written", || sink.state().usage.len() == 14).await;
    assert_eq!(sink.usage_ids(), ids(0..14));
    assert_eq!(sink.state().last_seen.get(&agent_id()), Some(&at(1)));
    until("the journal empties", || writer.health().status == "ok").await;
}

#[tokio::test(start_paused = true)]
async fn a_full_journal_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeSink::down();
    let metrics = Metrics::new().unwrap();
    let mut s = settings(dir.path());
    s.queue_capacity = 1;
    s.journal_max_bytes = 100;
    let (writer, _) = start(&sink, s, &metrics);
    assert_eq!(writer.enqueue(rec(0)), Enqueued::Memory);
    assert_eq!(writer.enqueue(rec(1)), Enqueued::Dropped);
    assert_eq!(
        metrics
            .writer_dropped_total
            .with_label_values(&["journal_full"])
            .get(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Shutdown.

#[tokio::test]
async fn shutdown_journals_what_the_database_does_not_take_and_a_restart_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new().unwrap();
    let down = FakeSink::down();
    let (writer, _) = start(&down, settings(dir.path()), &metrics);
    for n in 0..4 {
        writer.enqueue(rec(n));
    }
    writer.touch_last_seen(&agent_hash(), &agent_id(), at(4));
    let began = Instant::now();
    let report = writer
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "journaled at the first failure"
    );
    assert_eq!(
        report,
        DrainReport {
            journal_records: 5,
            unflushed: 0
        }
    );
    // Late records (an exchange that finished during the drain) go to the journal too.
    assert_eq!(writer.enqueue(rec(4)), Enqueued::Journal);
    drop(writer);

    let up = FakeSink::default();
    let metrics = Metrics::new().unwrap();
    let (writer, recovery) = start(&up, settings(dir.path()), &metrics);
    assert_eq!(recovery.records, 6);
    until("replay", || {
        up.state().usage.len() == 5 && !up.state().last_seen.is_empty()
    })
    .await;
    assert_eq!(up.usage_ids(), ids(0..5));
    assert_eq!(up.state().last_seen.get(&agent_id()), Some(&at(4)));
    assert_eq!(task_count(&metrics, "journal_replay"), 6);
    until("the journal empties", || writer.health().status == "ok").await;
}

#[tokio::test]
async fn shutdown_drains_when_the_database_answers() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeSink::default();
    let metrics = Metrics::new().unwrap();
    let mut s = settings(dir.path());
    s.flush_interval = Duration::from_secs(60);
    s.last_seen_interval = Duration::from_secs(60);
    let (writer, _) = start(&sink, s, &metrics);
    for n in 0..105 {
        writer.enqueue(rec(n));
    }
    writer.touch_last_seen(&agent_hash(), &agent_id(), at(1));
    let report = writer
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
    assert_eq!(report.journal_records, 0);
    assert_eq!(report.unflushed, 0);
    assert_eq!(sink.usage_ids(), ids(0..105));
    assert_eq!(sink.state().last_seen.get(&agent_id()), Some(&at(1)));
    assert!(segment_files(&writer.journal_dir()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// AIP records: nudges, drift alerts, containments, webhook deliveries.

fn checkpoint_id(n: usize) -> String {
    format!("ic-{n:04}")
}

fn cp_of(n: usize) -> WriteRecord {
    let record = checkpoint(&checkpoint_id(n), &agent_id(), "s-1", n as i64);
    WriteRecord::checkpoint(agent_hash(), record)
}

fn nudge_of(n: usize) -> WriteRecord {
    WriteRecord::nudge(
        agent_hash(),
        NudgeRecord {
            id: format!("nudge-{n:04}"),
            agent_id: agent_id(),
            checkpoint_id: checkpoint_id(n),
            session_id: "s-1".to_owned(),
            nudge_content: format!("[INTEGRITY NOTICE] {n}"),
            concerns_summary: "Boundary violation detected".to_owned(),
            created_at: at(n as i64),
        },
    )
}

fn drift_of(n: usize) -> WriteRecord {
    WriteRecord::drift_alert(
        agent_hash(),
        DriftAlertRecord {
            id: format!("ida-{n:04}"),
            agent_id: agent_id(),
            card_id: None,
            session_id: "s-1".to_owned(),
            alert_type: "value_erosion".to_owned(),
            severity: "low".to_owned(),
            description: "drifting".to_owned(),
            drift_data: serde_json::json!({"checkpoint_ids": [checkpoint_id(n)]}),
            dedup_key: format!("{}:s-1:{}", agent_id(), checkpoint_id(n)),
            created_at: at(n as i64),
        },
    )
}

fn containment_of(n: usize) -> WriteRecord {
    WriteRecord::containment(
        agent_hash(),
        ContainmentRecord {
            log_id: format!("ctl-{n:04}"),
            agent_id: agent_id(),
            action: "auto_pause".to_owned(),
            actor: "system".to_owned(),
            reason: "Auto-contained: 3 consecutive boundary violations".to_owned(),
            previous_status: ContainmentStatus::Active,
            new_status: ContainmentStatus::Paused,
            metadata: serde_json::json!({"checkpoint_id": checkpoint_id(n)}),
            at: at(n as i64),
        },
    )
}

fn delivery_of(n: usize, registration_id: &str) -> WriteRecord {
    WriteRecord::webhook_delivery(
        agent_hash(),
        WebhookDeliveryRecord {
            id: format!("del-{n:04}"),
            registration_id: registration_id.to_owned(),
            checkpoint_id: checkpoint_id(n),
            event_type: "verdict.boundary_violation".to_owned(),
            delivered: true,
            attempts: 1,
            last_status: Some(200),
            last_error: None,
            created_at: at(n as i64),
        },
    )
}

const AIP_KINDS: [&str; 4] = ["nudge", "drift_alert", "containment", "webhook_delivery"];

fn rejected(metrics: &Metrics) -> u64 {
    RecordKind::ALL
        .iter()
        .map(|k| {
            metrics
                .writer_rejected_total
                .with_label_values(&[k.as_str()])
                .get()
        })
        .sum()
}

#[test]
fn kinds_are_written_checkpoints_first_and_journaled_by_name() {
    assert_eq!(
        RecordKind::ALL.map(RecordKind::as_str),
        [
            "usage_event",
            "checkpoint",
            "nudge",
            "drift_alert",
            "containment",
            "webhook_delivery",
            "last_seen"
        ]
    );
    let records = [
        nudge_of(1),
        drift_of(1),
        containment_of(1),
        delivery_of(1, "whr-1"),
    ];
    for (record, kind) in records.iter().zip(AIP_KINDS) {
        assert_eq!(record.kind().as_str(), kind);
        let line = journal::encode(record).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&line[9..line.len() - 1]).unwrap();
        assert_eq!(json["kind"], kind);
        assert_eq!(json["agent_hash"], agent_hash().as_str());
        assert_eq!(&journal::decode(&line[..line.len() - 1]).unwrap(), record);
        assert_eq!(record.agent_hash(), agent_hash());
        assert_eq!(record.agent_id(), agent_id());
    }
    assert_eq!(records[0].id(), "nudge-0001");
    assert_eq!(records[2].id(), "ctl-0001");
    // A delivery names its agent by hash only; the derived id stands in for logs and creation.
    let mut delivery = delivery_of(1, "whr-1");
    delivery.set_agent_id("smolt-1a2b3c4d5e6f7081");
    assert_eq!(delivery, delivery_of(1, "whr-1"));

    // Lines written before these kinds existed still decode.
    let old = r#"{"kind":"last_seen","agent_hash":"1a2b3c4d5e6f7081","agent_id":"smolt-1a2b3c4d","at":"2026-09-21T12:26:40Z"}"#;
    let line = format!("{:08x} {old}", crc32fast::hash(old.as_bytes()));
    assert!(matches!(
        journal::decode(line.as_bytes()).unwrap(),
        WriteRecord::LastSeen { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_batch_writes_checkpoints_before_what_refers_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeSink::default();
    let metrics = Metrics::new().unwrap();
    let (writer, _) = start(&sink, settings(dir.path()), &metrics);
    // Enqueued in the reverse of the write order, in one batch.
    for record in [
        delivery_of(0, "whr-1"),
        containment_of(0),
        drift_of(0),
        nudge_of(0),
        cp_of(0),
        rec(0),
    ] {
        assert_eq!(writer.enqueue(record), Enqueued::Memory);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = sink.state();
    let ops: Vec<&str> = state.calls.iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        [
            "agent",
            "usage",
            "checkpoint",
            "nudge",
            "drift_alert",
            "containment",
            "webhook_delivery"
        ]
    );
    assert_eq!(state.nudges.len(), 1);
    assert_eq!(state.drift_alerts.len(), 1);
    assert_eq!(state.containments.len(), 1);
    assert_eq!(state.deliveries.len(), 1);
    drop(state);
    for kind in AIP_KINDS {
        assert_eq!(task_count(&metrics, kind), 1, "{kind}");
    }
    assert_eq!(rejected(&metrics), 0);
}

#[tokio::test(start_paused = true)]
async fn a_record_whose_checkpoint_was_refused_is_set_aside_too() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeSink::default();
    let metrics = Metrics::new().unwrap();
    let (writer, _) = start(&sink, settings(dir.path()), &metrics);
    // ic-0001 never reaches the database: its nudge breaks the foreign key and is set aside;
    // the others are written.
    for record in [cp_of(0), nudge_of(0), nudge_of(1), cp_of(2), nudge_of(2)] {
        writer.enqueue(record);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let written: Vec<String> = sink.state().nudges.iter().map(|n| n.id.clone()).collect();
    assert_eq!(written, ["nudge-0000", "nudge-0002"]);
    assert_eq!(
        metrics
            .writer_rejected_total
            .with_label_values(&["nudge"])
            .get(),
        1
    );
    assert_eq!(writer.health().status, "ok");
}

#[tokio::test(start_paused = true)]
async fn later_batches_follow_earlier_ones_through_memory_spills_and_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let sink = FakeSink::down();
    let metrics = Metrics::new().unwrap();
    let mut s = settings(dir.path());
    // Three records a batch: a checkpoint and its nudge often land in different batches.
    s.batch_size = 3;
    s.queue_capacity = 4;
    s.spill_after = Duration::from_millis(300);
    let (writer, _) = start(&sink, s, &metrics);
    let mut placed = Vec::new();
    for n in 0..12 {
        placed.push(writer.enqueue(cp_of(n)));
        placed.push(writer.enqueue(nudge_of(n)));
        if n % 4 == 0 {
            placed.push(writer.enqueue(delivery_of(n, "whr-1")));
        }
    }
    assert_eq!(placed[..4], [Enqueued::Memory; 4]);
    assert!(placed[4..].iter().all(|p| *p == Enqueued::Journal));
    // The outage outlasts `spill_after`: memory goes in front of the journal.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(writer.health().queue_depth, 0);
    sink.set_down(false);
    until("everything written", || {
        let state = sink.state();
        state.nudges.len() == 12 && state.deliveries.len() == 3
    })
    .await;
    let (nudges, checkpoints): (Vec<String>, Vec<String>) = {
        let state = sink.state();
        (
            state
                .nudges
                .iter()
                .map(|n| n.checkpoint_id.clone())
                .collect(),
            state
                .checkpoints
                .iter()
                .map(|c| c.checkpoint_id.clone())
                .collect(),
        )
    };
    let expected: Vec<String> = (0..12).map(checkpoint_id).collect();
    assert_eq!(nudges, expected);
    assert_eq!(checkpoints, expected);
    assert_eq!(
        rejected(&metrics),
        0,
        "no record came before its checkpoint"
    );
    until("the journal empties", || writer.health().status == "ok").await;
}

// ---------------------------------------------------------------------------------------------
// Real databases.

async fn on_a_real_database(db: TestDb) {
    db.store.migrate().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new().unwrap();
    let cache = Cache::memory(&metrics);
    let mut s = settings(dir.path());
    s.batch_size = 50;
    s.flush_interval = Duration::from_millis(20);
    s.last_seen_interval = Duration::from_millis(50);
    let writer = Writer::start(db.store.clone(), false, s, &metrics, Some(cache.clone())).unwrap();
    let other = hash_of(0xfeed);
    for n in 0..120 {
        let hash = if n % 2 == 0 {
            agent_hash()
        } else {
            other.clone()
        };
        let mut record = usage_of(&hash, n);
        if n == 33
            && let WriteRecord::UsageEvent { record, .. } = &mut record
        {
            record.tokens_in = Some(-1); // CHECK (tokens_in >= 0)
        }
        writer.enqueue(record);
    }
    for n in 0..5 {
        let mut cp = checkpoint(&format!("ic-{n}"), &agent_id(), "s-1", n);
        if n == 2 {
            cp.thinking_block_hash = "not a sha256".to_owned();
        }
        writer.enqueue(WriteRecord::checkpoint(agent_hash(), cp));
    }
    writer.touch_last_seen(&agent_hash(), &agent_id(), at(777));
    let store = db.store.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let usage = scalar_i64(&store, "SELECT count(*) FROM usage_events").await;
        let checkpoints = scalar_i64(&store, "SELECT count(*) FROM integrity_checkpoints").await;
        let seen = scalar_i64(
            &store,
            "SELECT count(*) FROM agents WHERE last_seen IS NOT NULL",
        )
        .await;
        if usage == 119 && checkpoints == 4 && metrics.writer_queue_depth.get() == 0 && seen == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "usage {usage}, checkpoints {checkpoints}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(scalar_i64(&store, "SELECT count(*) FROM agents").await, 2);
    assert_eq!(
        scalar_i64(&store, "SELECT count(*) FROM alignment_cards").await,
        2
    );
    for (kind, n) in [("usage_event", 1), ("checkpoint", 1)] {
        assert_eq!(
            metrics
                .writer_rejected_total
                .with_label_values(&[kind])
                .get(),
            n,
            "{kind}"
        );
    }
    // New agents' settings are primed in the cache.
    let cached: Option<crate::agents::CachedAgent> =
        cache.get_json(keys::quota_agent(&agent_id())).await;
    assert_eq!(
        cached.map(|c| c.agent_settings),
        Some(crate::store::AgentSettings::default())
    );
    let report = writer
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(report.journal_records, 0);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_postgres() {
    on_a_real_database(TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_sqlite() {
    on_a_real_database(TestDb::sqlite()).await;
}

/// The AIP kinds on a real database: some replayed from a journal left by an earlier run, the
/// rest enqueued behind it; the foreign keys to the checkpoints hold, the containment pauses the
/// agent once, and the agent's cached settings are dropped.
async fn aip_records_on_a_real_database(db: TestDb) {
    db.store.migrate().await.unwrap();
    let store = db.store.clone();
    let id = store
        .get_or_create_agent(&agent_hash(), &agent_id())
        .await
        .unwrap()
        .id;
    assert_eq!(
        scalar_i64(
            &store,
            &format!(
                "INSERT INTO aip_webhook_registrations (id, agent_id, callback_url, secret) \
                 VALUES ('whr-1', '{id}', 'https://example.test/hook', 's') \
                 RETURNING CAST(1 AS BIGINT)"
            )
        )
        .await,
        1
    );
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    {
        let (mut journal, _) =
            Journal::open(&s.journal_dir, 1 << 30, 1 << 20, s.journal_fsync).unwrap();
        for record in [cp_of(0), nudge_of(0), drift_of(0), delivery_of(0, "whr-1")] {
            journal.append(&record).unwrap();
        }
    }
    let metrics = Metrics::new().unwrap();
    let cache = Cache::memory(&metrics);
    let writer = Writer::start(store.clone(), false, s, &metrics, Some(cache.clone())).unwrap();
    for record in [
        cp_of(1),
        nudge_of(1),
        containment_of(1),
        containment_of(2),
        delivery_of(1, "whr-1"),
        // Replayed twice: idempotent.
        nudge_of(0),
        drift_of(0),
    ] {
        writer.enqueue(record);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = [
            "integrity_checkpoints",
            "enforcement_nudges",
            "drift_alerts",
            "agent_containment_log",
            "aip_webhook_deliveries",
        ];
        let mut found = Vec::new();
        for table in counts {
            found.push(scalar_i64(&store, &format!("SELECT count(*) FROM {table}")).await);
        }
        if found == [2, 2, 1, 1, 2] && writer.health().status == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "rows: {found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rejected(&metrics), 0);
    let agent = store.agent(&id).await.unwrap().unwrap();
    assert_eq!(agent.settings.containment_status, ContainmentStatus::Paused);
    assert_eq!(
        scalar_i64(
            &store,
            "SELECT count(*) FROM agent_containment_log WHERE id = 'ctl-0001'"
        )
        .await,
        1
    );
    let cached: Option<crate::agents::CachedAgent> = cache.get_json(keys::quota_agent(&id)).await;
    assert_eq!(
        cached, None,
        "the cached settings are dropped on containment"
    );
    let report = writer
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(report.journal_records, 0);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aip_records_reach_postgres() {
    aip_records_on_a_real_database(TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aip_records_reach_sqlite() {
    aip_records_on_a_real_database(TestDb::sqlite()).await;
}

/// Writer throughput: checkpoints enqueued, batched and written to the local PostgreSQL (and
/// SQLite), through memory and through the journal. Not part of the normal run:
/// `cargo test -p mnemom-gateway --lib writer::tests::writer_checkpoint_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn writer_checkpoint_throughput() {
    const N: usize = 50_000;
    for db in [TestDb::postgres().await, TestDb::sqlite()] {
        db.store.migrate().await.unwrap();
        for (path, capacity) in [("memory", N), ("journal", 1)] {
            let dir = tempfile::tempdir().unwrap();
            let metrics = Metrics::new().unwrap();
            let mut s = WriterSettings::defaults(dir.path());
            s.queue_capacity = capacity;
            let writer = Writer::start(db.store.clone(), false, s, &metrics, None).unwrap();
            let agents: Vec<String> = (0..10).map(|a| hash_of(0xbe00 + a)).collect();
            let records: Vec<WriteRecord> = (0..N)
                .map(|n| {
                    let hash = &agents[n % agents.len()];
                    let mut cp = checkpoint(
                        &format!("ic-{path}-{n:08}"),
                        &format!("smolt-{}", &hash[..8]),
                        "bench",
                        n as i64,
                    );
                    cp.analysis_metadata = Some(serde_json::json!({
                        "analysis_model": "claude-haiku-4-5-20251001",
                        "analysis_duration_ms": 812,
                        "thinking_tokens_original": 900,
                        "truncated": false
                    }));
                    WriteRecord::checkpoint(hash.clone(), cp)
                })
                .collect();
            let started = std::time::Instant::now();
            for record in records {
                writer.enqueue(record);
            }
            let enqueued = started.elapsed();
            while task_count(&metrics, "checkpoint") < N as u64 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let elapsed = started.elapsed();
            eprintln!(
                "{} via {path}: {N} checkpoints (batches of 500): enqueue {:.0} ms ({:.2} µs each), written in {:.0} ms: {:.0} checkpoints/s",
                db.store.backend_name(),
                enqueued.as_secs_f64() * 1000.0,
                enqueued.as_secs_f64() * 1e6 / N as f64,
                elapsed.as_secs_f64() * 1000.0,
                N as f64 / elapsed.as_secs_f64()
            );
            writer
                .shutdown(Instant::now() + Duration::from_secs(5))
                .await;
        }
        db.finish().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Settings.

#[test]
fn settings_are_validated_naming_the_variable() {
    use crate::config::MapSource;
    let data = Path::new("/var/lib/mnemom");
    let defaults = WriterSettings::from_source(&MapSource::default(), data).unwrap();
    assert_eq!(defaults.queue_capacity, 10_000);
    assert_eq!(defaults.batch_size, 500);
    assert_eq!(defaults.journal_dir, data.join("journal"));
    assert_eq!(defaults.journal_max_bytes, 1024 << 20);
    assert_eq!(defaults.journal_fsync, FsyncPolicy::Interval);
    let set = WriterSettings::from_source(
        &MapSource::from_pairs([
            ("MNEMOM_WRITER_QUEUE_CAPACITY", "50"),
            ("MNEMOM_WRITER_JOURNAL_DIR", "/tmp/j"),
            ("MNEMOM_WRITER_JOURNAL_FSYNC", "always"),
            ("MNEMOM_WRITER_SPILL_AFTER_MS", "0"),
        ]),
        data,
    )
    .unwrap();
    assert_eq!(set.queue_capacity, 50);
    assert_eq!(set.journal_dir, PathBuf::from("/tmp/j"));
    assert_eq!(set.journal_fsync, FsyncPolicy::Always);
    assert_eq!(set.spill_after, Duration::ZERO);
    for (key, value) in [
        ("MNEMOM_WRITER_QUEUE_CAPACITY", "0"),
        ("MNEMOM_WRITER_BATCH_SIZE", "lots"),
        ("MNEMOM_WRITER_JOURNAL_FSYNC", "sometimes"),
        ("MNEMOM_WRITER_RETRY_MAX_MS", "10"),
    ] {
        let error =
            WriterSettings::from_source(&MapSource::from_pairs([(key, value)]), data).unwrap_err();
        assert_eq!(error.variable, key);
        assert!(
            error.to_string().starts_with("invalid configuration: "),
            "{error}"
        );
    }
}
