//! The writer's settings, read from `MNEMOM_WRITER_*` and validated at start-up like every other
//! variable (a bad value stops the process with a message naming it).

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ConfigError, ConfigSource, bounded};

/// When appended journal records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `interval` (the default): a background tick calls `fdatasync` once a second while records
    /// were appended; segment rotation, the writer's own spills and shutdown sync at once. A
    /// crash of the process loses nothing written (the page cache survives it); a crash of the
    /// machine can lose the last second of records that were appended from the request path.
    Interval,
    /// `always`: `fdatasync` after every append (each request that overflows memory waits for the
    /// disk).
    Always,
}

/// Validated writer settings.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// `MNEMOM_WRITER_QUEUE_CAPACITY` (10 000): records held in memory; more go to the journal.
    pub queue_capacity: usize,
    /// `MNEMOM_WRITER_BATCH_SIZE` (500): records per database round trip.
    pub batch_size: usize,
    /// `MNEMOM_WRITER_FLUSH_INTERVAL_MS` (200): longest a record waits for its batch to fill.
    pub flush_interval: Duration,
    /// `MNEMOM_WRITER_LAST_SEEN_INTERVAL_MS` (5 000): how often `last_seen` is written (one
    /// statement for every agent seen since the last time).
    pub last_seen_interval: Duration,
    /// First retry delay (100 ms, `MNEMOM_WRITER_RETRY_INITIAL_MS`); doubles per failure.
    pub retry_initial: Duration,
    /// `MNEMOM_WRITER_RETRY_MAX_MS` (5 000): cap of the retry delay.
    pub retry_max: Duration,
    /// Spread retry delays by up to ±20 % so replicas do not retry in step (off in tests that
    /// check exact delays).
    pub retry_jitter: bool,
    /// `MNEMOM_WRITER_SPILL_AFTER_MS` (5 000): once the database has been failing this long, the
    /// records held in memory are moved to the journal (so a crash during an outage loses none).
    pub spill_after: Duration,
    /// `MNEMOM_WRITER_TIMEOUT_MS` (10 000): deadline of one database attempt.
    pub op_timeout: Duration,
    /// `MNEMOM_WRITER_JOURNAL_DIR` (`<MNEMOM_DATA_DIR>/journal`).
    pub journal_dir: PathBuf,
    /// `MNEMOM_WRITER_JOURNAL_MAX_MB` (1 024): beyond this the journal refuses records (counted
    /// and logged as `journal_full`).
    pub journal_max_bytes: u64,
    /// Size at which a journal segment is closed and a new one started (4 MiB): replay progress
    /// survives a restart at this granularity.
    pub journal_segment_bytes: u64,
    /// `MNEMOM_WRITER_JOURNAL_FSYNC` (`interval` | `always`).
    pub journal_fsync: FsyncPolicy,
}

impl WriterSettings {
    /// Every default, with the journal under `data_dir`.
    pub fn defaults(data_dir: &Path) -> Self {
        Self {
            queue_capacity: 10_000,
            batch_size: 500,
            flush_interval: Duration::from_millis(200),
            last_seen_interval: Duration::from_secs(5),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            retry_jitter: true,
            spill_after: Duration::from_secs(5),
            op_timeout: Duration::from_secs(10),
            journal_dir: data_dir.join("journal"),
            journal_max_bytes: 1024 * 1024 * 1024,
            journal_segment_bytes: 4 * 1024 * 1024,
            journal_fsync: FsyncPolicy::Interval,
        }
    }

    /// Reads the `MNEMOM_WRITER_*` variables; `data_dir` is the validated `MNEMOM_DATA_DIR`.
    pub fn from_source(source: &dyn ConfigSource, data_dir: &Path) -> Result<Self, ConfigError> {
        let d = Self::defaults(data_dir);
        let ms = |key: &str, default: Duration, range: RangeInclusive<u64>| {
            bounded(source, key, millis(default), range).map(Duration::from_millis)
        };
        let fsync = match source
            .get("MNEMOM_WRITER_JOURNAL_FSYNC")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("interval") => FsyncPolicy::Interval,
            Some("always") => FsyncPolicy::Always,
            Some(other) => {
                return Err(ConfigError {
                    variable: "MNEMOM_WRITER_JOURNAL_FSYNC".to_owned(),
                    reason: format!("`{other}` is not one of interval, always"),
                });
            }
        };
        let settings = Self {
            queue_capacity: to_usize(bounded(
                source,
                "MNEMOM_WRITER_QUEUE_CAPACITY",
                d.queue_capacity as u64,
                1..=10_000_000,
            )?),
            batch_size: to_usize(bounded(
                source,
                "MNEMOM_WRITER_BATCH_SIZE",
                d.batch_size as u64,
                1..=10_000,
            )?),
            flush_interval: ms(
                "MNEMOM_WRITER_FLUSH_INTERVAL_MS",
                d.flush_interval,
                1..=60_000,
            )?,
            last_seen_interval: ms(
                "MNEMOM_WRITER_LAST_SEEN_INTERVAL_MS",
                d.last_seen_interval,
                1..=3_600_000,
            )?,
            retry_initial: ms(
                "MNEMOM_WRITER_RETRY_INITIAL_MS",
                d.retry_initial,
                1..=60_000,
            )?,
            retry_max: ms("MNEMOM_WRITER_RETRY_MAX_MS", d.retry_max, 1..=600_000)?,
            retry_jitter: true,
            spill_after: ms("MNEMOM_WRITER_SPILL_AFTER_MS", d.spill_after, 0..=3_600_000)?,
            op_timeout: ms("MNEMOM_WRITER_TIMEOUT_MS", d.op_timeout, 100..=600_000)?,
            journal_dir: source
                .get("MNEMOM_WRITER_JOURNAL_DIR")
                .map(|v| PathBuf::from(v.trim()))
                .unwrap_or(d.journal_dir),
            journal_max_bytes: bounded(
                source,
                "MNEMOM_WRITER_JOURNAL_MAX_MB",
                d.journal_max_bytes >> 20,
                1..=1_048_576,
            )? << 20,
            journal_segment_bytes: d.journal_segment_bytes,
            journal_fsync: fsync,
        };
        if settings.retry_max < settings.retry_initial {
            return Err(ConfigError {
                variable: "MNEMOM_WRITER_RETRY_MAX_MS".to_owned(),
                reason: "must not be below MNEMOM_WRITER_RETRY_INITIAL_MS".to_owned(),
            });
        }
        Ok(settings)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}
