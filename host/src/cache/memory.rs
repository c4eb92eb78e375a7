//! The in-process backend used when `REDIS_URL` is unset: a sharded map with per-entry expiry and
//! a hard cap on the number of entries. Expired entries are dropped when read and swept before
//! anything live is evicted; when a shard is full of live entries, those closest to expiry go
//! first (entries without a TTL last).

use std::collections::HashMap;
use std::collections::hash_map::{Entry as MapEntry, RandomState};
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::KvError;

/// Shards used once the cap is large enough for them to matter.
const SHARDS: usize = 16;

#[derive(Debug)]
struct Entry {
    value: Bytes,
    expires_at: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

type Shard = HashMap<String, Entry>;

/// A bounded, concurrent map with TTLs.
pub(crate) struct MemoryKv {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    hasher: RandomState,
}

impl std::fmt::Debug for MemoryKv {
    /// Sizes only: the values are cached data and stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryKv")
            .field("shards", &self.shards.len())
            .field("shard_capacity", &self.shard_capacity)
            .finish_non_exhaustive()
    }
}

impl MemoryKv {
    /// A map holding at most `max_entries` entries (at least one).
    pub(crate) fn new(max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        // Small caps use one shard so the cap is exact; large ones spread the lock.
        let shards = if max_entries >= SHARDS * 256 {
            SHARDS
        } else {
            1
        };
        Self {
            shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            shard_capacity: max_entries.div_ceil(shards),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let index = if self.shards.len() == 1 {
            0
        } else {
            // The modulo keeps the index below the shard count, which is small.
            (self.hasher.hash_one(key) % self.shards.len() as u64) as usize
        };
        // A panic while holding the lock cannot leave an entry half-written; keep serving.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &str) -> Option<Bytes> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some(entry) if entry.live(now) => Some(entry.value.clone()),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) {
        let now = Instant::now();
        let entry = Entry {
            value,
            expires_at: ttl.map(|t| now + t),
        };
        let mut shard = self.shard(key);
        if let Some(existing) = shard.get_mut(key) {
            *existing = entry;
            return;
        }
        self.make_room(&mut shard, now);
        shard.insert(key.to_owned(), entry);
    }

    /// Whether a live entry was removed.
    pub(crate) fn delete(&self, key: &str) -> bool {
        let now = Instant::now();
        self.shard(key)
            .remove(key)
            .is_some_and(|entry| entry.live(now))
    }

    /// Live keys starting with `prefix`, unordered, at most `limit`.
    pub(crate) fn list(&self, prefix: &str, limit: usize) -> Vec<String> {
        let now = Instant::now();
        let mut keys = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, entry) in shard.iter() {
                if keys.len() >= limit {
                    return keys;
                }
                if key.starts_with(prefix) && entry.live(now) {
                    keys.push(key.clone());
                }
            }
        }
        keys
    }

    /// Sets `key` only when it holds no live entry; whether it was set.
    pub(crate) fn set_nx(&self, key: &str, value: Bytes, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut shard = self.shard(key);
        if shard.get(key).is_some_and(|entry| entry.live(now)) {
            return false;
        }
        let entry = Entry {
            value,
            expires_at: Some(now + ttl),
        };
        if let Some(existing) = shard.get_mut(key) {
            *existing = entry;
        } else {
            self.make_room(&mut shard, now);
            shard.insert(key.to_owned(), entry);
        }
        true
    }

    /// Adds `by` to the integer at `key` (0 when absent) and returns the new value. A key without
    /// an expiry gets `ttl`; an existing expiry is kept (a fixed window, as in Redis).
    pub(crate) fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, KvError> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        if !shard.contains_key(key) {
            self.make_room(&mut shard, now);
        }
        match shard.entry(key.to_owned()) {
            MapEntry::Occupied(mut occupied) => {
                let entry = occupied.get_mut();
                if !entry.live(now) {
                    *entry = Entry {
                        value: Bytes::from(by.to_string()),
                        expires_at: Some(now + ttl),
                    };
                    return Ok(by);
                }
                let current = std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(KvError::NotInteger)?;
                let next = current.checked_add(by).ok_or(KvError::NotInteger)?;
                entry.value = Bytes::from(next.to_string());
                if entry.expires_at.is_none() {
                    entry.expires_at = Some(now + ttl);
                }
                Ok(next)
            }
            MapEntry::Vacant(vacant) => {
                vacant.insert(Entry {
                    value: Bytes::from(by.to_string()),
                    expires_at: Some(now + ttl),
                });
                Ok(by)
            }
        }
    }

    /// Number of entries held, expired ones not yet swept included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Frees at least one slot in a full shard: expired entries first, then the live entries
    /// closest to expiry (a sixteenth of the shard at once, so a full cache does not pay a sweep
    /// on every insert).
    fn make_room(&self, shard: &mut Shard, now: Instant) {
        if shard.len() < self.shard_capacity {
            return;
        }
        shard.retain(|_, entry| entry.live(now));
        if shard.len() < self.shard_capacity {
            return;
        }
        let evict = (self.shard_capacity / 16).max(1);
        let mut candidates: Vec<(Option<Instant>, String)> = shard
            .iter()
            .map(|(key, entry)| (entry.expires_at, key.clone()))
            .collect();
        // `None` (no expiry) must sort last: map it to "never".
        let order = |at: &Option<Instant>| at.map_or((1, now), |at| (0, at));
        if evict < candidates.len() {
            candidates.select_nth_unstable_by(evict - 1, |a, b| order(&a.0).cmp(&order(&b.0)));
            candidates.truncate(evict);
        }
        for (_, key) in candidates {
            shard.remove(&key);
        }
        tracing::debug!(
            evicted = evict,
            "in-process cache full: evicted live entries"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_the_cap() {
        let kv = MemoryKv::new(8);
        for i in 0..100 {
            kv.put(&format!("k{i}"), Bytes::from_static(b"v"), None);
            assert!(kv.len() <= 8);
        }
        // The newest key is always kept.
        assert!(kv.get("k99").is_some());

        let big = MemoryKv::new(SHARDS * 256);
        assert_eq!(big.shards.len(), SHARDS);
        for i in 0..(SHARDS * 256 * 3) {
            big.put(&format!("k{i}"), Bytes::from_static(b"v"), None);
        }
        assert!(big.len() <= SHARDS * 256);
    }

    #[test]
    fn expired_entries_are_evicted_before_live_ones() {
        let kv = MemoryKv::new(4);
        kv.put("live-1", Bytes::from_static(b"1"), None);
        kv.put(
            "live-2",
            Bytes::from_static(b"2"),
            Some(Duration::from_secs(600)),
        );
        kv.put("dead-1", Bytes::from_static(b"x"), Some(Duration::ZERO));
        kv.put("dead-2", Bytes::from_static(b"x"), Some(Duration::ZERO));
        kv.put("new-1", Bytes::from_static(b"n"), None);
        kv.put("new-2", Bytes::from_static(b"n"), None);
        for key in ["live-1", "live-2", "new-1", "new-2"] {
            assert!(kv.get(key).is_some(), "{key} was evicted");
        }
        assert_eq!(kv.len(), 4);
        // Full of live entries: the one closest to expiry goes, the one without a TTL stays.
        kv.put("new-3", Bytes::from_static(b"n"), None);
        assert!(kv.get("live-2").is_none());
        assert!(kv.get("live-1").is_some());
        assert!(kv.get("new-3").is_some());
    }

    #[test]
    fn incr_keeps_an_existing_expiry_and_rejects_non_integers() {
        let kv = MemoryKv::new(16);
        assert_eq!(kv.incr("c", 2, Duration::from_secs(60)).ok(), Some(2));
        assert_eq!(kv.incr("c", -5, Duration::from_secs(1)).ok(), Some(-3));
        kv.put("s", Bytes::from_static(b"text"), None);
        assert!(matches!(
            kv.incr("s", 1, Duration::from_secs(1)),
            Err(KvError::NotInteger)
        ));
        kv.put("max", Bytes::from(i64::MAX.to_string()), None);
        assert!(kv.incr("max", 1, Duration::from_secs(1)).is_err());
    }
}
