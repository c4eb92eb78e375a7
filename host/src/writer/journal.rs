//! The writer's journal: records that could not wait in memory, on disk until the database takes
//! them.
//!
//! A directory (`<MNEMOM_DATA_DIR>/journal`) of append-only segment files
//! `segment-<20-digit id>.jsonl`, replayed in id order. Each record is one line:
//!
//! ```text
//! <crc32 of the JSON, 8 lower-case hex digits> <the record as JSON>\n
//! ```
//!
//! JSON never contains a raw newline, so a line is a record; the checksum catches a torn or
//! corrupted one. At start-up every segment is scanned: a last line without its newline (a write
//! the process did not finish) is cut off; a complete line whose checksum or JSON is wrong is
//! skipped when replayed and counted as `journal_corrupt`.
//!
//! Order: records are appended (under the writer's lock) in the order they were accepted, and
//! segments are read in id order. New segments get the next id above the newest; the writer's
//! own spills (the records it held in memory, which are older than anything journaled) get an id
//! *below* the oldest, so they are replayed first. Ids start at 2^40 so there is room both ways.
//!
//! A segment is deleted once every record in it has been written to the database; progress within
//! a segment is not persisted, so after a restart a half-replayed segment is replayed again from its
//! start (harmless: inserts are idempotent). Segments are closed at 4 MiB to bound that.
//!
//! One process owns the directory: an exclusive lock on `journal.lock` is held while it runs.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::WriteRecord;
use super::settings::FsyncPolicy;

const SEGMENT_PREFIX: &str = "segment-";
const SEGMENT_SUFFIX: &str = ".jsonl";
const LOCK_FILE: &str = "journal.lock";
/// Id of the first segment of an empty journal: room for 2^40 spills below and appends above.
const FIRST_ID: u64 = 1 << 40;

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The directory cannot be created or read.
    #[error("cannot use the writer journal directory {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the directory.
    #[error(
        "the writer journal directory {} is in use by another gateway process; give each process its own MNEMOM_DATA_DIR (or MNEMOM_WRITER_JOURNAL_DIR)",
        path.display()
    )]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A segment cannot be read, written or repaired.
    #[error("writer journal segment {}: {source}", path.display())]
    Segment {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Why one record was not appended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppendError {
    /// The journal reached `MNEMOM_WRITER_JOURNAL_MAX_MB`.
    #[error("the journal is full ({0} bytes)")]
    Full(u64),
    /// The record could not be encoded or written.
    #[error("{0}")]
    Io(String),
}

/// What start-up found in the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments found.
    pub segments: usize,
    /// Records waiting to be replayed.
    pub records: u64,
    /// Complete lines that do not decode (skipped at replay).
    pub corrupt: u64,
    /// Bytes of unfinished last lines cut off.
    pub torn_bytes: u64,
}

/// Encodes a record as one journal line.
pub(crate) fn encode(record: &WriteRecord) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(record)?;
    let mut line = Vec::with_capacity(json.len() + 10);
    line.extend_from_slice(format!("{:08x} ", crc32fast::hash(&json)).as_bytes());
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

/// Decodes one line (without its newline).
pub(crate) fn decode(line: &[u8]) -> Result<WriteRecord, String> {
    let (crc, json) = match line.split_first_chunk::<9>() {
        Some((head, json)) if head[8] == b' ' => (&head[..8], json),
        _ => return Err("no checksum".to_owned()),
    };
    let expected = std::str::from_utf8(crc)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or_else(|| "malformed checksum".to_owned())?;
    let actual = crc32fast::hash(json);
    if actual != expected {
        return Err(format!(
            "checksum mismatch (stored {expected:08x}, computed {actual:08x})"
        ));
    }
    serde_json::from_slice(json).map_err(|e| format!("not a record: {e}"))
}

/// One segment's bookkeeping.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Bytes of complete lines.
    len: u64,
    /// Bytes already written to the database (from the start of the file).
    committed: u64,
    /// Records after `committed` (corrupt lines not included).
    records: u64,
}

/// The first segment, for the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub id: u64,
    pub path: PathBuf,
    pub from: u64,
    pub to: u64,
}

/// Records read from a segment.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub records: Vec<WriteRecord>,
    /// Offset after the last line read.
    pub end: u64,
    /// Lines skipped because they did not decode.
    pub corrupt: u64,
}

/// The journal directory. Lives under the writer's lock.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    segments: BTreeMap<u64, Segment>,
    /// The append handle of the newest segment, opened by the first append.
    active: Option<(u64, File)>,
    max_bytes: u64,
    segment_bytes: u64,
    fsync: FsyncPolicy,
    /// Appended since the last sync.
    dirty: bool,
    bytes: u64,
    records: u64,
    _lock: File,
}

impl Journal {
    /// Opens (creating) the directory, takes its lock, and scans the segments left by an
    /// earlier run, cutting off unfinished last lines.
    pub(crate) fn open(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
        fsync: FsyncPolicy,
    ) -> Result<(Self, Recovery), JournalError> {
        let dir_error = |source| JournalError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(dir_error)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(dir_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(dir_error(e)),
        }
        let mut recovery = Recovery::default();
        let mut segments = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(dir_error)? {
            let entry = entry.map_err(dir_error)?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix(SEGMENT_PREFIX))
                .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let scan = scan_segment(&path)?;
            recovery.corrupt += scan.corrupt;
            recovery.torn_bytes += scan.torn;
            if scan.len == 0 {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            recovery.segments += 1;
            recovery.records += scan.records;
            segments.insert(
                id,
                Segment {
                    path,
                    len: scan.len,
                    committed: 0,
                    records: scan.records,
                },
            );
        }
        let mut journal = Self {
            dir: dir.to_path_buf(),
            segments,
            active: None,
            max_bytes,
            segment_bytes: segment_bytes.max(1),
            fsync,
            dirty: false,
            bytes: 0,
            records: 0,
            _lock: lock,
        };
        journal.recount();
        Ok((journal, recovery))
    }

    fn recount(&mut self) {
        self.bytes = self.segments.values().map(|s| s.len).sum();
        self.records = self.segments.values().map(|s| s.records).sum();
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether nothing waits to be replayed.
    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Records waiting to be replayed.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// Size of the segment files.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends one record to the newest segment (opening or rotating it as needed).
    pub(crate) fn append(&mut self, record: &WriteRecord) -> Result<(), AppendError> {
        let line = encode(record).map_err(|e| AppendError::Io(format!("encoding: {e}")))?;
        if self.bytes + line.len() as u64 > self.max_bytes {
            return Err(AppendError::Full(self.max_bytes));
        }
        if let Some((id, _)) = &self.active
            && self
                .segments
                .get(id)
                .is_none_or(|s| s.len >= self.segment_bytes)
        {
            // Rotate: the full segment is synced and left for the reader.
            if let Some((_, file)) = self.active.take() {
                let _ = file.sync_data();
            }
        }
        if self.active.is_none() {
            let mut id = self
                .segments
                .last_key_value()
                .map_or(FIRST_ID, |(id, _)| id + 1);
            // A file left by a failed delete keeps its name.
            while self.segment_path(id).exists() {
                id += 1;
            }
            let path = self.segment_path(id);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|e| AppendError::Io(format!("creating {}: {e}", path.display())))?;
            self.sync_dir();
            self.segments.insert(
                id,
                Segment {
                    path,
                    len: 0,
                    committed: 0,
                    records: 0,
                },
            );
            self.active = Some((id, file));
        }
        let Some((id, file)) = &mut self.active else {
            return Err(AppendError::Io("no active segment".to_owned()));
        };
        let Some(segment) = self.segments.get_mut(id) else {
            return Err(AppendError::Io("active segment lost".to_owned()));
        };
        if let Err(e) = file.write_all(&line) {
            // Remove whatever part of the line made it, so the next append starts clean.
            let _ = file.set_len(segment.len);
            return Err(AppendError::Io(format!(
                "writing {}: {e}",
                segment.path.display()
            )));
        }
        if self.fsync == FsyncPolicy::Always {
            let _ = file.sync_data();
        } else {
            self.dirty = true;
        }
        segment.len += line.len() as u64;
        segment.records += 1;
        self.bytes += line.len() as u64;
        self.records += 1;
        Ok(())
    }

    /// Writes `records` into a new segment that sorts before every other (they are older than
    /// anything journaled), and syncs it. Used by the writer for what it held in memory.
    pub(crate) fn prepend(&mut self, records: &[WriteRecord]) -> Result<(), JournalError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut id = self
            .segments
            .first_key_value()
            .map_or(FIRST_ID, |(id, _)| id.saturating_sub(1));
        while id > 0 && self.segment_path(id).exists() {
            id -= 1;
        }
        let path = self.segment_path(id);
        let segment_error = |source| JournalError::Segment {
            path: path.clone(),
            source,
        };
        let mut buffer = Vec::with_capacity(records.len() * 256);
        for record in records {
            let line = encode(record).map_err(|e| segment_error(std::io::Error::other(e)))?;
            buffer.extend_from_slice(&line);
        }
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(segment_error)?;
        if let Err(e) = file.write_all(&buffer).and_then(|()| file.sync_data()) {
            let _ = std::fs::remove_file(&path);
            return Err(segment_error(e));
        }
        self.sync_dir();
        self.segments.insert(
            id,
            Segment {
                path,
                len: buffer.len() as u64,
                committed: 0,
                records: records.len() as u64,
            },
        );
        self.recount();
        Ok(())
    }

    /// Where the reader continues: the oldest segment, from its committed offset to its end.
    pub(crate) fn head(&self) -> Option<Head> {
        let (id, s) = self.segments.first_key_value()?;
        Some(Head {
            id: *id,
            path: s.path.clone(),
            from: s.committed,
            to: s.len,
        })
    }

    /// Records that the lines of segment `id` up to `end` (`records` of them decodable) are in
    /// the database. A segment that is fully written is deleted.
    pub(crate) fn commit(&mut self, id: u64, end: u64, records: u64) {
        let Some(segment) = self.segments.get_mut(&id) else {
            return;
        };
        segment.committed = segment.committed.max(end);
        segment.records = segment.records.saturating_sub(records);
        self.records = self.records.saturating_sub(records);
        if segment.committed >= segment.len {
            if self.active.as_ref().is_some_and(|(a, _)| *a == id) {
                self.active = None;
                self.dirty = false;
            }
            if let Some(segment) = self.segments.remove(&id) {
                if let Err(e) = std::fs::remove_file(&segment.path) {
                    tracing::warn!(segment = %segment.path.display(), error = %e, "cannot delete a replayed journal segment");
                }
                self.bytes = self.bytes.saturating_sub(segment.len);
                // Lines that never decoded leave with the file.
                self.records = self.records.saturating_sub(segment.records);
            }
        }
    }

    /// Forgets a segment that cannot be read any more; returns the records it held.
    pub(crate) fn discard(&mut self, id: u64) -> u64 {
        if self.active.as_ref().is_some_and(|(a, _)| *a == id) {
            self.active = None;
        }
        let Some(segment) = self.segments.remove(&id) else {
            return 0;
        };
        let _ = std::fs::remove_file(&segment.path);
        self.recount();
        segment.records
    }

    /// A handle to sync, when records were appended since the last sync (the sync itself runs
    /// outside the lock).
    pub(crate) fn take_dirty(&mut self) -> Option<File> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.active.as_ref().and_then(|(_, f)| f.try_clone().ok())
    }

    /// Syncs the active segment now.
    pub(crate) fn sync(&mut self) {
        if let Some((_, file)) = &self.active
            && let Err(e) = file.sync_data()
        {
            tracing::warn!(error = %e, "journal fsync failed");
        }
        self.dirty = false;
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        self.dir
            .join(format!("{SEGMENT_PREFIX}{id:020}{SEGMENT_SUFFIX}"))
    }

    /// Makes a created file's directory entry durable.
    fn sync_dir(&self) {
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
    }
}

/// Reads up to `max` records of a segment between `from` and `to` (complete lines only).
pub(crate) fn read_chunk(path: &Path, from: u64, to: u64, max: usize) -> std::io::Result<Chunk> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file.take(to.saturating_sub(from)));
    let mut chunk = Chunk {
        end: from,
        ..Chunk::default()
    };
    let mut line = Vec::with_capacity(512);
    while chunk.records.len() < max {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        chunk.end += n as u64;
        match decode(&line[..n - 1]) {
            Ok(record) => chunk.records.push(record),
            Err(reason) => {
                chunk.corrupt += 1;
                tracing::error!(segment = %path.display(), offset = chunk.end - n as u64, reason = %reason, "skipping a corrupt journal record");
            }
        }
    }
    Ok(chunk)
}

struct Scan {
    len: u64,
    records: u64,
    corrupt: u64,
    torn: u64,
}

/// Counts a segment's records and cuts off an unfinished last line.
fn scan_segment(path: &Path) -> Result<Scan, JournalError> {
    let segment_error = |source| JournalError::Segment {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(segment_error)?;
    let size = file.metadata().map_err(segment_error)?.len();
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut scan = Scan {
        len: 0,
        records: 0,
        corrupt: 0,
        torn: 0,
    };
    let mut line = Vec::with_capacity(512);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(segment_error)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            break;
        }
        scan.len += n as u64;
        if decode(&line[..n - 1]).is_ok() {
            scan.records += 1;
        } else {
            scan.corrupt += 1;
        }
    }
    if scan.len < size {
        scan.torn = size - scan.len;
        tracing::warn!(segment = %path.display(), bytes = scan.torn, "cutting off an unfinished journal record");
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(segment_error)?;
        file.set_len(scan.len).map_err(segment_error)?;
        file.sync_data().map_err(segment_error)?;
    }
    if scan.corrupt > 0 {
        tracing::error!(segment = %path.display(), lines = scan.corrupt, "journal segment has corrupt records; they will be skipped");
    }
    Ok(scan)
}
