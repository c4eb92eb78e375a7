//! The KV cache: Redis when `REDIS_URL` is set, a bounded in-process map otherwise, behind one
//! type whose every operation is fail-open (an error or a timeout is a miss or a no-op, counted in
//! `gateway_cache_operations_total` and logged at most every ten seconds, never an `Err` to the
//! request path). Keys carry the original's `kv:` prefix; see `docs/cache.md`.

pub mod keys;
mod memory;
mod redis_kv;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::IntCounter;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{ConfigError, ConfigSource};
use crate::metrics::Metrics;

pub use keys::CacheKey;

use memory::MemoryKv;
use redis_kv::RedisKv;

/// Default deadline of one cache operation (`MNEMOM_CACHE_TIMEOUT_MS`).
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(50);
/// Default deadline of one connection attempt to Redis (`MNEMOM_CACHE_CONNECT_TIMEOUT_MS`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default cap on the in-process map's entries (`MNEMOM_CACHE_MAX_ENTRIES`).
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// The original's default page size for `list`.
pub const DEFAULT_LIST_LIMIT: usize = 1_000;
/// Prefix of every key, as in the original's `RedisKVAdapter`.
pub const KV_PREFIX: &str = "kv:";
/// The readiness `PING` waits at least this long (an answer slower than the operation deadline
/// still reports `degraded`).
const PING_MIN_TIMEOUT: Duration = Duration::from_millis(250);
/// At most one failure log line per this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Longest accepted `MNEMOM_CACHE_PREFIX`.
const MAX_PREFIX_LEN: usize = 128;

/// Validated cache settings.
#[derive(Clone)]
pub struct CacheSettings {
    /// The Redis client for `REDIS_URL`; `None` selects the in-process map.
    pub redis: Option<redis::Client>,
    /// `MNEMOM_CACHE_PREFIX`: put before `kv:` so deployments (or tests) can share one Redis.
    pub prefix: String,
    /// `MNEMOM_CACHE_TIMEOUT_MS`: deadline of one operation.
    pub op_timeout: Duration,
    /// `MNEMOM_CACHE_CONNECT_TIMEOUT_MS`: deadline of one connection attempt.
    pub connect_timeout: Duration,
    /// `MNEMOM_CACHE_MAX_ENTRIES`: cap of the in-process map.
    pub max_entries: usize,
}

impl std::fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheSettings")
            .field(
                "redis",
                &self
                    .redis
                    .as_ref()
                    .map(|c| redis_kv::describe(c.get_connection_info())),
            )
            .field("prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl Default for CacheSettings {
    /// The in-process map with every default.
    fn default() -> Self {
        Self {
            redis: None,
            prefix: String::new(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

impl CacheSettings {
    /// Reads `REDIS_URL`, `MNEMOM_CACHE_PREFIX`, `MNEMOM_CACHE_TIMEOUT_MS`,
    /// `MNEMOM_CACHE_CONNECT_TIMEOUT_MS` and `MNEMOM_CACHE_MAX_ENTRIES`. Nothing connects here.
    pub fn from_source(source: &dyn ConfigSource) -> Result<Self, ConfigError> {
        let redis = source
            .get("REDIS_URL")
            .map(|url| parse_redis_url(url.trim()))
            .transpose()?;
        let prefix = source
            .get("MNEMOM_CACHE_PREFIX")
            .map(|p| p.trim().to_owned())
            .unwrap_or_default();
        validate_prefix(&prefix)?;
        Ok(Self {
            redis,
            prefix,
            op_timeout: Duration::from_millis(crate::config::bounded(
                source,
                "MNEMOM_CACHE_TIMEOUT_MS",
                50,
                1..=60_000,
            )?),
            connect_timeout: Duration::from_millis(crate::config::bounded(
                source,
                "MNEMOM_CACHE_CONNECT_TIMEOUT_MS",
                2_000,
                1..=60_000,
            )?),
            max_entries: usize::try_from(crate::config::bounded(
                source,
                "MNEMOM_CACHE_MAX_ENTRIES",
                100_000,
                1..=100_000_000,
            )?)
            .unwrap_or(DEFAULT_MAX_ENTRIES),
        })
    }

    /// Which backend these settings select.
    pub fn backend(&self) -> BackendKind {
        if self.redis.is_some() {
            BackendKind::Redis
        } else {
            BackendKind::Memory
        }
    }
}

/// Validates a `REDIS_URL`: `redis://` or `rediss://` (TLS), with optional `user:password@`, port,
/// `/db` and `?protocol=resp3`. The error never repeats the URL (it may hold a password).
pub fn parse_redis_url(url: &str) -> Result<redis::Client, ConfigError> {
    let invalid = |reason: String| ConfigError {
        variable: "REDIS_URL".to_owned(),
        reason,
    };
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("redis" | "rediss")) {
        return Err(invalid(
            "must start with redis:// or rediss:// (TLS), e.g. redis://:password@redis:6379/0"
                .to_owned(),
        ));
    }
    let client = redis::Client::open(url).map_err(|e| {
        invalid(format!(
            "not a valid Redis URL: {}",
            redact(&e.to_string(), url)
        ))
    })?;
    if let redis::ConnectionAddr::TcpTls { insecure: true, .. } =
        client.get_connection_info().addr()
    {
        return Err(invalid(
            "`#insecure` is not supported: certificate verification cannot be disabled".to_owned(),
        ));
    }
    Ok(client)
}

/// Removes the password of `url` from `message`, should a parser ever echo it.
fn redact(message: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => message.replace(p, "***"),
        None => message.to_owned(),
    }
}

fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError {
        variable: "MNEMOM_CACHE_PREFIX".to_owned(),
        reason: reason.to_owned(),
    };
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(invalid("must be at most 128 bytes"));
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("must not contain whitespace or control characters"));
    }
    Ok(())
}

/// Which store backs the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// `REDIS_URL`.
    Redis,
    /// The in-process map.
    Memory,
}

impl BackendKind {
    /// `redis` or `memory`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Redis => "redis",
            BackendKind::Memory => "memory",
        }
    }
}

/// Result of [`Cache::set_nx_px`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key was absent and now holds our value: we own it until its TTL runs out.
    Acquired,
    /// Someone else holds the key.
    Held,
    /// The cache could not be asked (error or timeout). Callers decide: a scheduler lease skips
    /// the run, a nudge stays pending for a later request.
    Unavailable,
}

impl Claim {
    /// Whether the claim is ours.
    pub fn is_acquired(self) -> bool {
        self == Claim::Acquired
    }
}

/// Status of the readiness entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// The cache answers within the operation deadline.
    Ok,
    /// It does not (down, slow or unreachable): requests are served without it.
    Degraded,
}

/// The cache's readiness entry: `{"status","latency_ms","backend"[,"error"]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheHealth {
    /// `ok` or `degraded`.
    pub status: HealthStatus,
    /// Time the `PING` took (to the failure, when it failed), in milliseconds.
    pub latency_ms: f64,
    /// `redis` or `memory`.
    pub backend: BackendKind,
    /// Why the cache is degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A backend failure; never leaves this module (operations are fail-open).
#[derive(Debug, thiserror::Error)]
pub(crate) enum KvError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("redis unreachable, next attempt in {0:?}")]
    CircuitOpen(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis client setup failed: {0}")]
    Setup(String),
    #[error("unexpected reply `{0}`")]
    UnexpectedReply(String),
    #[error("the value is not an integer, or the result is out of range")]
    NotInteger,
    #[error("the stored value cannot be decoded: {0}")]
    Decode(String),
    #[error("the value cannot be encoded: {0}")]
    Encode(String),
}

impl KvError {
    /// Whether the error is about the backend (rather than one value).
    fn is_backend(&self) -> bool {
        !matches!(
            self,
            KvError::NotInteger | KvError::Decode(_) | KvError::Encode(_)
        )
    }
}

#[derive(Debug)]
enum Backend {
    Memory(MemoryKv),
    Redis(Box<RedisKv>),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Get = 0,
    Put = 1,
    Delete = 2,
    List = 3,
}

impl Op {
    const NAMES: [&'static str; 4] = ["get", "put", "delete", "list"];

    fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Hit = 0,
    Miss = 1,
    Error = 2,
}

impl Outcome {
    const NAMES: [&'static str; 3] = ["hit", "miss", "error"];
}

/// The twelve `gateway_cache_operations_total` series, resolved once.
#[derive(Debug)]
struct Counters([[IntCounter; 3]; 4]);

impl Counters {
    fn new(metrics: &Metrics) -> Self {
        Self(std::array::from_fn(|op| {
            std::array::from_fn(|outcome| {
                metrics
                    .cache_operations_total
                    .with_label_values(&[Op::NAMES[op], Outcome::NAMES[outcome]])
            })
        }))
    }

    fn inc(&self, op: Op, outcome: Outcome) {
        self.0[op as usize][outcome as usize].inc();
    }
}

/// Rate-limited failure logging: one line per [`LOG_INTERVAL`] with the number suppressed, and
/// one line when the backend answers again.
#[derive(Debug)]
struct FailureLog {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last line written, plus one; 0 before the first.
    last_ms: AtomicU64,
    suppressed: AtomicU64,
    failing: AtomicBool,
}

impl FailureLog {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        }
    }

    fn failure(&self, backend: BackendKind, op: Op, error: &KvError) {
        if error.is_backend() {
            self.failing.store(true, Ordering::Relaxed);
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let last = self.last_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(LOG_INTERVAL.as_millis()).unwrap_or(10_000);
        let due = last == 0 || now.saturating_sub(last) >= interval;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(
                backend = backend.as_str(),
                operation = op.as_str(),
                error = %error,
                suppressed,
                "cache operation failed; continuing without the cache"
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn success(&self, backend: BackendKind) {
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(backend = backend.as_str(), "cache answers again");
        }
    }
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    /// `<MNEMOM_CACHE_PREFIX>kv:`.
    namespace: String,
    op_timeout: Duration,
    counters: Counters,
    log: FailureLog,
}

/// The gateway's KV cache. Cheap to clone; every clone shares the connection and the counters.
#[derive(Debug, Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Cache {
    /// The cache `settings` select, counting into `metrics`. Nothing connects here: the Redis
    /// connection is opened by the first operation (or [`Cache::ping`]) inside the tokio runtime,
    /// so an unreachable Redis never blocks or fails start-up.
    pub fn new(settings: &CacheSettings, metrics: &Metrics) -> Self {
        let backend = match &settings.redis {
            Some(client) => Backend::Redis(Box::new(RedisKv::new(
                client.clone(),
                settings.op_timeout,
                settings.connect_timeout,
            ))),
            None => Backend::Memory(MemoryKv::new(settings.max_entries)),
        };
        Self {
            inner: Arc::new(Inner {
                backend,
                namespace: format!("{}{KV_PREFIX}", settings.prefix),
                op_timeout: settings.op_timeout,
                counters: Counters::new(metrics),
                log: FailureLog::new(),
            }),
        }
    }

    /// An in-process cache with every default (for tests and tools).
    pub fn memory(metrics: &Metrics) -> Self {
        Self::new(&CacheSettings::default(), metrics)
    }

    /// Which store backs this cache.
    pub fn backend(&self) -> BackendKind {
        match self.inner.backend {
            Backend::Memory(_) => BackendKind::Memory,
            Backend::Redis(_) => BackendKind::Redis,
        }
    }

    /// One line for the start-up log: the backend and where it is, never credentials.
    pub fn describe(&self) -> String {
        match &self.inner.backend {
            Backend::Memory(_) => "in-process".to_owned(),
            Backend::Redis(r) => r.endpoint().to_owned(),
        }
    }

    /// The full key: `<prefix>kv:<key>`.
    fn full_key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.inner.namespace.len() + key.len());
        full.push_str(&self.inner.namespace);
        full.push_str(key);
        full
    }

    fn count(&self, op: Op, outcome: Outcome) {
        self.inner.counters.inc(op, outcome);
        if !matches!(outcome, Outcome::Error) {
            self.inner.log.success(self.backend());
        }
    }

    fn fail(&self, op: Op, error: &KvError) {
        self.inner.counters.inc(op, Outcome::Error);
        self.inner.log.failure(self.backend(), op, error);
    }

    async fn raw_get(&self, key: &str) -> Result<Option<Bytes>, KvError> {
        let key = self.full_key(key);
        match &self.inner.backend {
            Backend::Memory(m) => Ok(m.get(&key)),
            Backend::Redis(r) => r.get(&key).await,
        }
    }

    /// The value at `key`; `None` when absent, expired or on any failure.
    /// Counts `get` as `hit`, `miss` or `error`.
    pub async fn get(&self, key: impl AsRef<str>) -> Option<Bytes> {
        match self.raw_get(key.as_ref()).await {
            Ok(Some(value)) => {
                self.count(Op::Get, Outcome::Hit);
                Some(value)
            }
            Ok(None) => {
                self.count(Op::Get, Outcome::Miss);
                None
            }
            Err(e) => {
                self.fail(Op::Get, &e);
                None
            }
        }
    }

    /// The value at `key` as UTF-8 text. A value that is not UTF-8 is `None` and counts `error`.
    pub async fn get_text(&self, key: impl AsRef<str>) -> Option<String> {
        self.get_decoded(key.as_ref(), |bytes| {
            String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
        })
        .await
    }

    /// The value at `key` parsed as JSON. A value that does not parse as `T` is `None` (as the
    /// original) and counts `error`.
    pub async fn get_json<T: DeserializeOwned>(&self, key: impl AsRef<str>) -> Option<T> {
        self.get_decoded(key.as_ref(), |bytes| {
            serde_json::from_slice(bytes).map_err(|e| e.to_string())
        })
        .await
    }

    async fn get_decoded<T>(
        &self,
        key: &str,
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Option<T> {
        match self.raw_get(key).await {
            Ok(Some(bytes)) => match decode(&bytes) {
                Ok(value) => {
                    self.count(Op::Get, Outcome::Hit);
                    Some(value)
                }
                Err(e) => {
                    self.fail(Op::Get, &KvError::Decode(e));
                    None
                }
            },
            Ok(None) => {
                self.count(Op::Get, Outcome::Miss);
                None
            }
            Err(e) => {
                self.fail(Op::Get, &e);
                None
            }
        }
    }

    /// Stores `value` at `key`, expiring after `ttl` (`None`: no expiry; the in-process map may
    /// still evict it when full). Whether it was stored; counts `put` as `hit` or `error`.
    pub async fn put(
        &self,
        key: impl AsRef<str>,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> bool {
        let key = self.full_key(key.as_ref());
        let value = value.into();
        let result = match &self.inner.backend {
            Backend::Memory(m) => {
                m.put(&key, value, ttl);
                Ok(())
            }
            Backend::Redis(r) => r.put(&key, value, ttl).await,
        };
        match result {
            Ok(()) => {
                self.count(Op::Put, Outcome::Hit);
                true
            }
            Err(e) => {
                self.fail(Op::Put, &e);
                false
            }
        }
    }

    /// Stores `value` as JSON. A value that cannot be serialised counts `put` `error`.
    pub async fn put_json<T: Serialize + ?Sized>(
        &self,
        key: impl AsRef<str>,
        value: &T,
        ttl: Option<Duration>,
    ) -> bool {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.put(key, bytes, ttl).await,
            Err(e) => {
                self.fail(Op::Put, &KvError::Encode(e.to_string()));
                false
            }
        }
    }

    /// Removes `key`. Whether a value was there; counts `delete` as `hit` (removed), `miss`
    /// (absent) or `error`.
    pub async fn delete(&self, key: impl AsRef<str>) -> bool {
        let key = self.full_key(key.as_ref());
        let result = match &self.inner.backend {
            Backend::Memory(m) => Ok(m.delete(&key)),
            Backend::Redis(r) => r.delete(&key).await,
        };
        match result {
            Ok(true) => {
                self.count(Op::Delete, Outcome::Hit);
                true
            }
            Ok(false) => {
                self.count(Op::Delete, Outcome::Miss);
                false
            }
            Err(e) => {
                self.fail(Op::Delete, &e);
                false
            }
        }
    }

    /// Up to `limit` keys starting with `prefix` (without the `kv:` namespace), sorted. Redis is
    /// walked with `SCAN` (never `KEYS`); the walk gets ten operation deadlines. Counts `list` as
    /// `hit` (at least one key), `miss` (none) or `error` (then the result is empty).
    pub async fn list(&self, prefix: impl AsRef<str>, limit: usize) -> Vec<String> {
        let full = self.full_key(prefix.as_ref());
        let result = match &self.inner.backend {
            Backend::Memory(m) => Ok(m.list(&full, limit)),
            Backend::Redis(r) => r.list(&full, limit).await,
        };
        match result {
            Ok(keys) => {
                let mut keys: Vec<String> = keys
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&self.inner.namespace).map(str::to_owned))
                    .collect();
                keys.sort_unstable();
                self.count(
                    Op::List,
                    if keys.is_empty() {
                        Outcome::Miss
                    } else {
                        Outcome::Hit
                    },
                );
                keys
            }
            Err(e) => {
                self.fail(Op::List, &e);
                Vec::new()
            }
        }
    }

    /// Sets `key` to `value` only when it is absent, expiring after `ttl` (Redis `SET NX PX`;
    /// atomic across replicas). Counts `put` as `hit` (acquired), `miss` (held by someone else) or
    /// `error` ([`Claim::Unavailable`]).
    pub async fn set_nx_px(
        &self,
        key: impl AsRef<str>,
        value: impl Into<Bytes>,
        ttl: Duration,
    ) -> Claim {
        let key = self.full_key(key.as_ref());
        let value = value.into();
        let result = match &self.inner.backend {
            Backend::Memory(m) => Ok(m.set_nx(&key, value, ttl)),
            Backend::Redis(r) => r.set_nx(&key, value, ttl).await,
        };
        match result {
            Ok(true) => {
                self.count(Op::Put, Outcome::Hit);
                Claim::Acquired
            }
            Ok(false) => {
                self.count(Op::Put, Outcome::Miss);
                Claim::Held
            }
            Err(e) => {
                self.fail(Op::Put, &e);
                Claim::Unavailable
            }
        }
    }

    /// Adds `by` to the integer counter at `key` (absent counts as 0) and returns the new value.
    /// A counter without an expiry gets `ttl`; a running one keeps its expiry (fixed windows).
    /// `None` on failure, or when the key holds something that is not an integer. Counts `put`
    /// as `hit` or `error`.
    pub async fn incr(&self, key: impl AsRef<str>, by: i64, ttl: Duration) -> Option<i64> {
        let key = self.full_key(key.as_ref());
        let result = match &self.inner.backend {
            Backend::Memory(m) => m.incr(&key, by, ttl),
            Backend::Redis(r) => r.incr(&key, by, ttl).await,
        };
        match result {
            Ok(value) => {
                self.count(Op::Put, Outcome::Hit);
                Some(value)
            }
            Err(e) => {
                self.fail(Op::Put, &e);
                None
            }
        }
    }

    /// The readiness entry. Redis: `PING` answered `PONG` within the operation deadline → `ok`;
    /// slower, failed or unreachable → `degraded` (the gateway keeps serving without the cache).
    /// The in-process map is always `ok`. Not counted in `gateway_cache_operations_total`.
    pub async fn ping(&self) -> CacheHealth {
        let backend = self.backend();
        let Backend::Redis(redis) = &self.inner.backend else {
            return CacheHealth {
                status: HealthStatus::Ok,
                latency_ms: 0.0,
                backend,
                error: None,
            };
        };
        let started = Instant::now();
        let result = redis
            .ping(self.inner.op_timeout.max(PING_MIN_TIMEOUT))
            .await;
        let elapsed = started.elapsed();
        let latency_ms = (elapsed.as_secs_f64() * 100_000.0).round() / 100.0;
        let error = match result {
            Ok(()) if elapsed <= self.inner.op_timeout => None,
            Ok(()) => Some(format!(
                "PING took {latency_ms} ms, longer than the {} ms operation deadline \
                 (MNEMOM_CACHE_TIMEOUT_MS)",
                self.inner.op_timeout.as_millis()
            )),
            Err(e) => Some(e.to_string()),
        };
        CacheHealth {
            status: if error.is_none() {
                HealthStatus::Ok
            } else {
                HealthStatus::Degraded
            },
            latency_ms,
            backend,
            error,
        }
    }
}
