//! The Redis backend: one multiplexed connection behind `redis`'s `ConnectionManager` (which
//! reconnects by itself), a deadline on every command, and a small circuit breaker so that an
//! unreachable Redis costs the request path nothing after the first timeout: while the breaker
//! is open, operations fail at once and one probe per back-off interval tries the server again.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, ConnectionInfo, RedisError, RedisResult};
use tokio::sync::oneshot;

use super::KvError;

/// Keys fetched per `SCAN` step.
const SCAN_COUNT: usize = 1_000;
/// First back-off after a failure; doubled per consecutive failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest time the breaker stays open before the next probe.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// After this many consecutive connection failures the connection manager is replaced by a fresh
/// one, so no state it can get stuck in outlives an outage.
const RENEW_AFTER_FAILURES: u32 = 5;
/// The manager only reconnects by itself after I/O errors: a connection attempt that failed
/// otherwise (e.g. `-LOADING` while Redis restarts) would be returned to every later command.
/// After this many error answers in a row, without a single success, it is replaced too.
pub(crate) const RENEW_AFTER_ERROR_ANSWERS: u32 = 100;

/// `INCRBY`, then an expiry when the key has none: atomic, one round trip, any Redis version.
const INCR_SCRIPT: &str = r"
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 and redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
";

/// The Redis backend.
pub(crate) struct RedisKv {
    client: Client,
    endpoint: String,
    connect_timeout: Duration,
    op_timeout: Duration,
    manager: ArcSwapOption<ConnectionManager>,
    breaker: Breaker,
    /// Error answers since the last success.
    error_answers: AtomicU32,
    incr_script: redis::Script,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv")
            .field("endpoint", &self.endpoint)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisKv {
    /// A backend for `client`; nothing connects until the first operation.
    pub(crate) fn new(client: Client, op_timeout: Duration, connect_timeout: Duration) -> Self {
        Self {
            endpoint: describe(client.get_connection_info()),
            client,
            connect_timeout,
            op_timeout,
            manager: ArcSwapOption::empty(),
            breaker: Breaker::new(),
            error_answers: AtomicU32::new(0),
            incr_script: redis::Script::new(INCR_SCRIPT),
        }
    }

    /// `redis[s]://host:port/db`, without credentials.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The shared connection, created on first use (it needs the tokio runtime). The first
    /// connection attempt is driven by a task of its own on the home runtime, so an operation
    /// that gives up after its short deadline does not stall the connect, and the connection's
    /// driver is spawned there. With a fresh connection comes the receiver that fires once that
    /// attempt is over: the operation waits for it (within its deadline) before it sends.
    fn manager(&self) -> Result<(ConnectionManager, Option<oneshot::Receiver<()>>), KvError> {
        if let Some(manager) = self.manager.load().as_deref() {
            return Ok((manager.clone(), None));
        }
        // Created on the main runtime even when a request worker asks first: the connection's
        // driver task and socket then live there, not on that worker.
        let home = crate::workers::home();
        let _home = home.as_ref().map(tokio::runtime::Handle::enter);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // The driver's own bound for a request whose caller gave up long ago.
            .set_response_timeout(Some(self.connect_timeout.max(self.op_timeout)))
            .set_number_of_retries(2)
            .set_min_delay(MIN_BACKOFF)
            .set_max_delay(MAX_BACKOFF);
        let fresh = Arc::new(
            ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                .map_err(|e| KvError::Setup(e.to_string()))?,
        );
        let previous = self
            .manager
            .compare_and_swap(&None::<Arc<ConnectionManager>>, Some(fresh.clone()));
        if let Some(winner) = previous.as_deref() {
            // Another operation created one first.
            return Ok((winner.clone(), None));
        }
        let mut warm = (*fresh).clone();
        let (connected, attempted) = oneshot::channel();
        // Spawned on the main runtime when entered above.
        tokio::spawn(async move {
            let _: RedisResult<String> = redis::cmd("PING").query_async(&mut warm).await;
            let _ = connected.send(());
        });
        Ok(((*fresh).clone(), Some(attempted)))
    }

    /// Whether a connection manager exists (tests).
    #[cfg(test)]
    pub(crate) fn has_manager(&self) -> bool {
        self.manager.load().is_some()
    }

    fn failed(&self) {
        if self.breaker.failure().is_multiple_of(RENEW_AFTER_FAILURES) {
            self.manager.store(None);
        }
    }

    fn succeeded(&self) {
        self.breaker.success();
        if self.error_answers.load(Ordering::Relaxed) != 0 {
            self.error_answers.store(0, Ordering::Relaxed);
        }
    }

    fn error_answer(&self) {
        // The server answered: it is reachable, the breaker closes.
        self.breaker.success();
        let streak = self
            .error_answers
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if streak.is_multiple_of(RENEW_AFTER_ERROR_ANSWERS) {
            self.manager.store(None);
        }
    }

    /// Runs one operation under the breaker and a deadline.
    async fn run<T, F, Fut>(&self, timeout: Duration, probe: bool, f: F) -> Result<T, KvError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !probe {
            self.breaker.admit()?;
        }
        let (manager, connecting) = self.manager()?;
        let call = async move {
            if let Some(attempted) = connecting {
                let _ = attempted.await;
            }
            f(manager).await
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(value)) => {
                self.succeeded();
                Ok(value)
            }
            Ok(Err(e)) => {
                if is_connection_error(&e) {
                    self.failed();
                } else {
                    self.error_answer();
                }
                Err(KvError::Redis(e))
            }
            Err(_) => {
                self.failed();
                Err(KvError::Timeout(timeout))
            }
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, KvError> {
        self.run(self.op_timeout, false, |mut c| async move {
            cmd.query_async(&mut c).await
        })
        .await
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, KvError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        let value: Option<Vec<u8>> = self.query(cmd).await?;
        Ok(value.map(Bytes::from))
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value.as_ref());
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        self.query::<()>(cmd).await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, KvError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
        let removed: i64 = self.query(cmd).await?;
        Ok(removed > 0)
    }

    /// `SCAN … MATCH <escaped prefix>* COUNT 1000` until the cursor returns or `limit` keys are
    /// found. A full scan may take longer than one command: it gets ten operation deadlines.
    pub(crate) async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<String>, KvError> {
        let pattern = format!("{}*", glob_escape(prefix));
        let timeout = self.op_timeout.saturating_mul(10);
        self.run(timeout, false, |mut c| async move {
            let mut keys = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut c)
                    .await?;
                // Keys this gateway writes are UTF-8; anything else is not one of ours.
                keys.extend(batch.into_iter().filter_map(|k| String::from_utf8(k).ok()));
                if next == 0 || keys.len() >= limit {
                    keys.truncate(limit);
                    return Ok(keys);
                }
                cursor = next;
            }
        })
        .await
    }

    pub(crate) async fn set_nx(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, KvError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(value.as_ref())
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        let reply: Option<String> = self.query(cmd).await?;
        Ok(reply.is_some())
    }

    pub(crate) async fn incr(&self, key: &str, by: i64, ttl: Duration) -> Result<i64, KvError> {
        let ttl_ms = millis(ttl);
        let script = &self.incr_script;
        self.run(self.op_timeout, false, |mut c| async move {
            script
                .key(key)
                .arg(by)
                .arg(ttl_ms)
                .invoke_async(&mut c)
                .await
        })
        .await
    }

    /// `PING` with `timeout`, bypassing the breaker (readiness must see the server's real state)
    /// but informing it: a successful probe closes it.
    pub(crate) async fn ping(&self, timeout: Duration) -> Result<(), KvError> {
        let reply: String = self
            .run(timeout, true, |mut c| async move {
                redis::cmd("PING").query_async(&mut c).await
            })
            .await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(KvError::UnexpectedReply(reply))
        }
    }
}

/// Errors that say the server is unreachable or the connection is unusable (as opposed to an
/// error answer to one command).
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

/// A TTL in whole milliseconds, at least one (Redis rejects `PX 0`).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Escapes the glob metacharacters of `SCAN MATCH` so a prefix matches literally.
pub(crate) fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `redis[s]://host:port/db` for logs and the readiness body; never the credentials.
pub(crate) fn describe(info: &ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}/{db}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}/{db}"),
        ConnectionAddr::Unix(path) => format!("unix://{}", path.display()),
        _ => "redis".to_owned(),
    }
}

/// Open after a connection failure or timeout, for a back-off that doubles per consecutive
/// failure (100 ms … 1 s). When it elapses, exactly one operation goes through as a probe; the
/// others keep failing fast until the probe succeeds.
#[derive(Debug)]
struct Breaker {
    epoch: Instant,
    /// Milliseconds since `epoch` until which operations fail fast; 0 when closed.
    open_until_ms: AtomicU64,
    failures: AtomicU32,
}

impl Breaker {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            open_until_ms: AtomicU64::new(0),
            failures: AtomicU32::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1 so that "now" is never the closed marker 0.
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn backoff(&self) -> Duration {
        let failures = self.failures.load(Ordering::Relaxed).clamp(1, 16);
        MIN_BACKOFF
            .saturating_mul(1 << (failures - 1))
            .min(MAX_BACKOFF)
    }

    fn admit(&self) -> Result<(), KvError> {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return Ok(());
        }
        let now = self.now_ms();
        if now < until {
            return Err(KvError::CircuitOpen(Duration::from_millis(until - now)));
        }
        // Half-open: the operation that moves the deadline on is the probe.
        let next = now.saturating_add(u64::try_from(self.backoff().as_millis()).unwrap_or(1_000));
        match self
            .open_until_ms
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(0) => Ok(()),
            Err(other) => Err(KvError::CircuitOpen(Duration::from_millis(
                other.saturating_sub(now),
            ))),
        }
    }

    fn success(&self) {
        if self.open_until_ms.load(Ordering::Acquire) != 0
            || self.failures.load(Ordering::Relaxed) != 0
        {
            self.failures.store(0, Ordering::Relaxed);
            self.open_until_ms.store(0, Ordering::Release);
        }
    }

    /// Opens (or keeps open) the breaker; the number of consecutive failures.
    fn failure(&self) -> u32 {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(self.backoff().as_millis()).unwrap_or(1_000));
        self.open_until_ms.store(until, Ordering::Release);
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\d"), "a\\*b\\?\\[c\\]\\\\d");
        assert_eq!(glob_escape("quota:agent:"), "quota:agent:");
    }

    #[test]
    fn breaker_backs_off_and_lets_one_probe_through() {
        let b = Breaker::new();
        assert!(b.admit().is_ok());
        b.failure();
        assert!(matches!(b.admit(), Err(KvError::CircuitOpen(_))));
        assert_eq!(b.backoff(), MIN_BACKOFF);
        b.failure();
        b.failure();
        assert_eq!(b.backoff(), MIN_BACKOFF * 4);
        for _ in 0..10 {
            b.failure();
        }
        assert_eq!(b.backoff(), MAX_BACKOFF);
        // Force the deadline into the past: one probe is admitted, the next caller is not.
        b.open_until_ms.store(1, Ordering::Release);
        assert!(b.admit().is_ok());
        assert!(b.admit().is_err());
        b.success();
        assert!(b.admit().is_ok());
        assert!(b.admit().is_ok());
    }

    #[test]
    fn ttls_are_whole_positive_milliseconds() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1_500)), 1);
        assert_eq!(millis(Duration::from_secs(300)), 300_000);
    }
}
