//! Agent settings for the request path, read through the cache and never from the database on the
//! request: a hit is the answer; a miss answers `None` (the caller uses the defaults) and starts
//! one background load per agent that fills the cache for the next request.
//!
//! The value lives at the original's key, `quota:agent:<agent_id>` (300 s), as a JSON object with
//! an `agent_settings` member, the shape of the original's `QuotaContext` (fields it does not
//! have take the column defaults), so deleting that key on containment, as the original did,
//! makes the next request reload the agent.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cache::{Cache, keys};
use crate::store::{Agent, AgentSettings, Store};

/// After a failed load, loads wait this long before asking the database again (the database is
/// probably down; every request would otherwise start one).
const LOAD_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Settings read from the cache are kept in this process for this long, decoded, so a request
/// pays neither a Redis round trip nor a JSON decode; a change made on another pod is seen within
/// this time (changes made here — auto-containment — are seen at once).
///
/// An agent the database did not know is remembered as unknown for as long: until the writer
/// has created it (its first batch, within `MNEMOM_WRITER_FLUSH_INTERVAL_MS`), or for as long as
/// it cannot, every request would otherwise read the database. That is safe: an unknown agent
/// has the default settings (it cannot be contained), and the cache (written when the agent is
/// created, loaded or contained) is read before an unknown entry is believed.
const LOCAL_TTL: Duration = Duration::from_secs(1);
/// Agents kept locally; the memo is cleared when it grows beyond this.
const LOCAL_MAX: usize = 100_000;

/// The cached value: the part of the original's `QuotaContext` the gateway reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAgent {
    /// The agent's settings.
    pub agent_settings: AgentSettings,
}

/// Puts an agent's settings in the cache (after it was created or loaded). Fail-open.
pub async fn remember(cache: &Cache, agent: &Agent) {
    let key = keys::quota_agent(&agent.id);
    let value = CachedAgent {
        agent_settings: agent.settings.clone(),
    };
    cache.put_json(&key, &value, Some(key.ttl)).await;
}

/// Reads agent settings through the cache.
#[derive(Debug, Clone)]
pub struct Agents {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cache: Cache,
    store: Store,
    loading: Mutex<HashSet<String>>,
    retry_after: Mutex<Option<tokio::time::Instant>>,
    /// In front of the cache (Redis or in-process): an agent's decoded settings, or `None` when
    /// the database did not know it, and when that was learnt ([`LOCAL_TTL`]).
    local: Mutex<std::collections::HashMap<String, (Option<AgentSettings>, std::time::Instant)>>,
}

impl Inner {
    /// What this process learnt of the agent less than [`LOCAL_TTL`] ago: `Some(None)` when the
    /// database did not know it.
    fn local_get(&self, agent_id: &str) -> Option<Option<AgentSettings>> {
        let local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let (settings, at) = local.get(agent_id)?;
        (at.elapsed() < LOCAL_TTL).then(|| settings.clone())
    }

    fn local_put(&self, agent_id: &str, settings: Option<&AgentSettings>) {
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        if local.len() >= LOCAL_MAX {
            local.clear();
        }
        local.insert(
            agent_id.to_owned(),
            (settings.cloned(), std::time::Instant::now()),
        );
    }

    /// Whether the database said, less than [`LOCAL_TTL`] ago, that it has no such agent.
    fn known_unknown(&self, agent_id: &str) -> bool {
        matches!(self.local_get(agent_id), Some(None))
    }
}

impl Agents {
    /// Settings read from `cache`, loaded from `store` on a miss.
    pub fn new(cache: Cache, store: Store) -> Self {
        Self {
            inner: Arc::new(Inner {
                local: Mutex::new(std::collections::HashMap::new()),
                cache,
                store,
                loading: Mutex::new(HashSet::new()),
                retry_after: Mutex::new(None),
            }),
        }
    }

    /// The agent's settings if the cache has them. On a miss (or a cache failure) `None`: the
    /// caller goes on with [`AgentSettings::default`], and a background task loads the agent from
    /// the database into the cache (one at a time per agent; an agent the database does not know is
    /// not asked for again for [`LOCAL_TTL`]).
    /// Never waits for the database.
    pub async fn settings(&self, agent_id: &str) -> Option<AgentSettings> {
        let key = keys::quota_agent(agent_id);
        if let Some(cached) = self.inner.cache.get_json::<CachedAgent>(&key).await {
            return Some(cached.agent_settings);
        }
        self.load_in_background(agent_id);
        None
    }

    /// The agent's settings from the cache; on a miss, loaded from the database for at most
    /// `wait` (then cached), so that a paused agent is refused even on a cold cache. Past
    /// `wait`, or while the database is failing, `None` (use the defaults) and the load goes on
    /// in the background. Unknown agents are `None` (and not read again for [`LOCAL_TTL`]).
    pub async fn settings_or_load(&self, agent_id: &str, wait: Duration) -> Option<AgentSettings> {
        let local = self.inner.local_get(agent_id);
        if let Some(Some(settings)) = local {
            return Some(settings);
        }
        let key = keys::quota_agent(agent_id);
        if let Some(cached) = self.inner.cache.get_json::<CachedAgent>(&key).await {
            self.inner.local_put(agent_id, Some(&cached.agent_settings));
            return Some(cached.agent_settings);
        }
        // Not in the cache, and the database did not know it a moment ago.
        if local.is_some() {
            return None;
        }
        let failing = self
            .inner
            .retry_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|t| tokio::time::Instant::now() < t);
        if failing || wait.is_zero() {
            self.load_in_background(agent_id);
            return None;
        }
        let store = self.inner.store.clone();
        let id = agent_id.to_owned();
        // Off the request workers: a connection the pool opens for it belongs to the main
        // runtime.
        let read = crate::workers::spawn_background(async move { store.agent(&id).await });
        let read = async move {
            read.await.unwrap_or_else(|e| {
                // Only when the main runtime is shutting down.
                Err(crate::store::StoreError::Unavailable {
                    target: "database".to_owned(),
                    cause: format!("the read was cancelled: {e}"),
                    source: None,
                })
            })
        };
        match tokio::time::timeout(wait, read).await {
            Ok(Ok(Some(agent))) => {
                remember(&self.inner.cache, &agent).await;
                self.inner.local_put(agent_id, Some(&agent.settings));
                Some(agent.settings)
            }
            Ok(Ok(None)) => {
                self.inner.local_put(agent_id, None);
                None
            }
            Ok(Err(e)) => {
                *self
                    .inner
                    .retry_after
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some(tokio::time::Instant::now() + LOAD_RETRY_AFTER);
                tracing::debug!(agent = %agent_id, error = %e, "loading agent settings failed");
                None
            }
            Err(_) => {
                self.load_in_background(agent_id);
                None
            }
        }
    }

    /// Replaces an agent's settings in the cache (and this process's memo) at once, e.g. when
    /// auto-containment pauses it.
    pub async fn replace(&self, agent_id: &str, settings: &AgentSettings) {
        let key = keys::quota_agent(agent_id);
        let value = CachedAgent {
            agent_settings: settings.clone(),
        };
        self.inner.cache.put_json(&key, &value, Some(key.ttl)).await;
        self.inner.local_put(agent_id, Some(settings));
    }

    fn load_in_background(&self, agent_id: &str) {
        if self.inner.known_unknown(agent_id) {
            return;
        }
        let now = tokio::time::Instant::now();
        if self
            .inner
            .retry_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|t| now < t)
        {
            return;
        }
        if !self
            .inner
            .loading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agent_id.to_owned())
        {
            return;
        }
        let inner = self.inner.clone();
        let agent_id = agent_id.to_owned();
        crate::workers::spawn_background(async move {
            match inner.store.agent(&agent_id).await {
                Ok(Some(agent)) => remember(&inner.cache, &agent).await,
                Ok(None) => inner.local_put(&agent_id, None),
                Err(e) => {
                    *inner
                        .retry_after
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) =
                        Some(tokio::time::Instant::now() + LOAD_RETRY_AFTER);
                    tracing::debug!(agent = %agent_id, error = %e, "loading agent settings failed");
                }
            }
            inner
                .loading
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&agent_id);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::tests::TestDb;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn an_unknown_agent_is_not_read_again_until_its_memo_expires() {
        let db = TestDb::sqlite();
        db.store.migrate().await.unwrap();
        let metrics = Metrics::new().unwrap();
        let cache = Cache::memory(&metrics);
        let agents = Agents::new(cache.clone(), db.store.clone());

        assert_eq!(agents.settings_or_load("smolt-0000aaaa", WAIT).await, None);
        // Created behind the gateway's back (no cache entry): the memo answers, not the
        // database.
        let created = db
            .store
            .get_or_create_agent("0000aaaa00000000", "smolt-0000aaaa")
            .await
            .unwrap();
        assert_eq!(agents.settings_or_load(&created.id, WAIT).await, None);
        assert_eq!(agents.settings(&created.id).await, None);
        tokio::time::sleep(LOCAL_TTL + Duration::from_millis(50)).await;
        assert_eq!(
            agents.settings_or_load(&created.id, WAIT).await,
            Some(created.settings.clone())
        );

        // A cache entry (written when the writer creates an agent) is read before the memo.
        assert_eq!(agents.settings_or_load("smolt-0000bbbb", WAIT).await, None);
        let other = db
            .store
            .get_or_create_agent("0000bbbb00000000", "smolt-0000bbbb")
            .await
            .unwrap();
        remember(&cache, &other).await;
        assert_eq!(
            agents.settings_or_load(&other.id, WAIT).await,
            Some(other.settings)
        );
        db.finish().await;
    }
}
