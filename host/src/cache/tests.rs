//! One test suite run against both backends (the in-process map and the machine's real Redis at
//! `MNEMOM_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`), plus Redis-only tests: the key
//! layout, fail-open against an unreachable port, and an outage simulated by closing a local TCP
//! proxy. Every Redis test writes under a fresh random `MNEMOM_CACHE_PREFIX` and removes its keys
//! when done (also when it panics); the machine's Redis is never stopped.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::*;
use crate::config::MapSource;

fn redis_url() -> String {
    std::env::var("MNEMOM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test (or earlier run) uses.
fn unique_prefix() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let hash = RandomState::new().hash_one((
        nanos,
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
    ));
    format!("mnemom-test-{hash:016x}:")
}

fn settings(pairs: &[(&str, &str)]) -> Result<CacheSettings, ConfigError> {
    CacheSettings::from_source(&MapSource::from_pairs(pairs.iter().copied()))
}

struct Fixture {
    cache: Cache,
    metrics: Metrics,
    /// The deployment prefix and a direct client, for Redis fixtures.
    redis: Option<(String, redis::Client)>,
}

impl Fixture {
    fn memory() -> Self {
        let metrics = Metrics::new().unwrap();
        Self {
            cache: Cache::memory(&metrics),
            metrics,
            redis: None,
        }
    }

    /// A cache on the real Redis. The operation deadline is generous here: these tests check
    /// behaviour, not latency, and share two cores with the rest of the test run.
    fn redis() -> Self {
        Self::redis_with(&redis_url(), "1000")
    }

    fn redis_with(url: &str, timeout_ms: &str) -> Self {
        let prefix = unique_prefix();
        let s = settings(&[
            ("REDIS_URL", url),
            ("MNEMOM_CACHE_PREFIX", &prefix),
            ("MNEMOM_CACHE_TIMEOUT_MS", timeout_ms),
            ("MNEMOM_CACHE_CONNECT_TIMEOUT_MS", "1000"),
        ])
        .unwrap();
        let metrics = Metrics::new().unwrap();
        Self {
            cache: Cache::new(&s, &metrics),
            metrics,
            redis: Some((prefix, redis::Client::open(redis_url()).unwrap())),
        }
    }

    fn count(&self, op: &str, result: &str) -> u64 {
        self.metrics
            .cache_operations_total
            .with_label_values(&[op, result])
            .get()
    }

    /// Every series of `gateway_cache_operations_total`, as `op/result=n` for the non-zero ones.
    fn counts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for op in Op::NAMES {
            for result in Outcome::NAMES {
                let n = self.count(op, result);
                if n > 0 {
                    out.push(format!("{op}/{result}={n}"));
                }
            }
        }
        out
    }

    /// The raw Redis value at `<prefix>kv:<key>` and its TTL in ms.
    fn raw(&self, key: &str) -> (Option<String>, i64) {
        let (prefix, client) = self.redis.as_ref().unwrap();
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        let full = format!("{prefix}kv:{key}");
        let value: Option<String> = redis::cmd("GET").arg(&full).query(&mut con).unwrap();
        let ttl: i64 = redis::cmd("PTTL").arg(&full).query(&mut con).unwrap();
        (value, ttl)
    }
}

impl Drop for Fixture {
    /// Removes every key under the test's prefix (synchronously, so it runs on panic too).
    fn drop(&mut self) {
        let Some((prefix, client)) = &self.redis else {
            return;
        };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let pattern = format!("{}*", redis_kv::glob_escape(prefix));
        let mut cursor: u64 = 0;
        loop {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&keys).query(&mut con);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// The suite both backends must pass.
mod suite {
    use super::*;

    pub(super) async fn get_put_and_miss(fx: &Fixture) {
        let c = &fx.cache;
        assert_eq!(c.get("a").await, None);
        assert!(c.put("a", "1", Some(Duration::from_secs(60))).await);
        assert_eq!(c.get("a").await.as_deref(), Some(&b"1"[..]));
        assert!(
            c.put("a", b"2".to_vec(), Some(Duration::from_secs(60)))
                .await
        );
        assert_eq!(c.get_text("a").await.as_deref(), Some("2"));
        assert_eq!(c.get_text("absent").await, None);
        assert_eq!(fx.counts(), ["get/hit=2", "get/miss=2", "put/hit=2"]);
    }

    pub(super) async fn ttl_expiry(fx: &Fixture) {
        let c = &fx.cache;
        assert!(c.put("short", "x", Some(Duration::from_millis(300))).await);
        assert!(c.put("long", "y", Some(Duration::from_secs(60))).await);
        assert!(c.get("short").await.is_some());
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(c.get("short").await, None);
        assert!(c.get("long").await.is_some());
        assert_eq!(c.list("", 100).await, ["long"]);
    }

    pub(super) async fn delete_reports_presence(fx: &Fixture) {
        let c = &fx.cache;
        assert!(c.put("d", "x", None).await);
        assert!(c.delete("d").await);
        assert!(!c.delete("d").await);
        assert_eq!(c.get("d").await, None);
        assert!(!c.delete(keys::quota_agent("never-written")).await);
        assert_eq!(
            fx.counts(),
            ["get/miss=1", "put/hit=1", "delete/hit=1", "delete/miss=2"]
        );
    }

    pub(super) async fn list_by_prefix(fx: &Fixture) {
        let c = &fx.cache;
        let ttl = Some(Duration::from_secs(60));
        for key in [
            "agents:3",
            "agents:1",
            "agents:2",
            "other:1",
            "a*gents:x",
            "agents",
        ] {
            assert!(c.put(key, "v", ttl).await);
        }
        assert_eq!(
            c.list("agents:", DEFAULT_LIST_LIMIT).await,
            ["agents:1", "agents:2", "agents:3"]
        );
        assert_eq!(c.list("agents:", 2).await.len(), 2);
        // Glob characters in the prefix match literally.
        assert_eq!(c.list("a*", DEFAULT_LIST_LIMIT).await, ["a*gents:x"]);
        assert_eq!(
            c.list("nothing:", DEFAULT_LIST_LIMIT).await,
            Vec::<String>::new()
        );
        assert_eq!(c.list("", DEFAULT_LIST_LIMIT).await.len(), 6);
        assert_eq!(fx.counts(), ["put/hit=6", "list/hit=4", "list/miss=1"]);
    }

    pub(super) async fn json_helpers(fx: &Fixture) {
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct Quota {
            plan_id: String,
            included_checks: u32,
        }
        let c = &fx.cache;
        let key = keys::quota_agent("smolt-1a2b3c4d");
        let quota = Quota {
            plan_id: "team".to_owned(),
            included_checks: 10_000,
        };
        assert!(c.put_json(&key, &quota, Some(key.ttl)).await);
        assert_eq!(c.get_json::<Quota>(&key).await, Some(quota));
        // Unparseable values are misses for the caller, errors for the metric (as the original's
        // `get(key, 'json')`, which returned null).
        assert!(
            c.put("bad", "{not json", Some(Duration::from_secs(60)))
                .await
        );
        assert_eq!(c.get_json::<Quota>("bad").await, None);
        assert_eq!(c.get_json::<Quota>("absent").await, None);
        assert!(
            c.put("bytes", vec![0xff, 0xfe], Some(Duration::from_secs(60)))
                .await
        );
        assert_eq!(c.get_text("bytes").await, None);
        assert_eq!(
            fx.counts(),
            ["get/hit=1", "get/miss=1", "get/error=2", "put/hit=3"]
        );
    }

    pub(super) async fn set_nx_px_is_exclusive(fx: &Fixture) {
        let key = keys::lease("nudge_expiry");
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let c = fx.cache.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    let claim = c
                        .set_nx_px(&key, format!("task-{i}"), Duration::from_millis(500))
                        .await;
                    (i, claim)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (i, claim) = task.await.unwrap();
            match claim {
                Claim::Acquired => winners.push(i),
                Claim::Held => {}
                Claim::Unavailable => panic!("task {i}: cache unavailable"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        assert_eq!(
            fx.cache.get_text(&key).await,
            Some(format!("task-{}", winners[0]))
        );
        assert_eq!(fx.count("put", "hit"), 1);
        assert_eq!(fx.count("put", "miss"), 19);
        // The claim ends with its TTL.
        tokio::time::sleep(Duration::from_millis(650)).await;
        assert!(
            fx.cache
                .set_nx_px(&key, "later", key.ttl)
                .await
                .is_acquired()
        );
        assert_eq!(
            fx.cache.set_nx_px(&key, "again", key.ttl).await,
            Claim::Held
        );
    }

    pub(super) async fn incr_counts_with_ttl(fx: &Fixture) {
        let c = &fx.cache;
        let window = Duration::from_millis(400);
        assert_eq!(c.incr("calls", 1, window).await, Some(1));
        assert_eq!(c.incr("calls", 2, window).await, Some(3));
        assert_eq!(c.incr("calls", -1, Duration::from_secs(60)).await, Some(2));
        assert_eq!(c.get_text("calls").await.as_deref(), Some("2"));
        // The first increment's window holds: the counter starts again after it.
        tokio::time::sleep(Duration::from_millis(550)).await;
        assert_eq!(c.incr("calls", 1, window).await, Some(1));
        assert!(c.put("text", "abc", Some(Duration::from_secs(60))).await);
        assert_eq!(c.incr("text", 1, window).await, None);
        assert_eq!(fx.counts(), ["get/hit=1", "put/hit=5", "put/error=1"]);
    }

    pub(super) async fn ping_reports_the_backend(fx: &Fixture) {
        let health = fx.cache.ping().await;
        assert_eq!(health.status, HealthStatus::Ok, "{health:?}");
        assert_eq!(health.backend, fx.cache.backend());
        assert!(health.latency_ms >= 0.0);
        let json = serde_json::to_value(&health).unwrap();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["backend"], fx.cache.backend().as_str());
        assert!(json["latency_ms"].is_number());
        assert!(json.get("error").is_none());
        // The probe is not a cache operation.
        assert!(fx.counts().is_empty());
    }
}

macro_rules! shared_suite {
    ($($name:ident),* $(,)?) => {
        mod memory_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let fx = super::Fixture::memory();
                    assert_eq!(fx.cache.backend(), super::BackendKind::Memory);
                    super::suite::$name(&fx).await;
                }
            )*
        }
        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let fx = super::Fixture::redis();
                    assert_eq!(fx.cache.backend(), super::BackendKind::Redis);
                    super::suite::$name(&fx).await;
                }
            )*
        }
    };
}

shared_suite!(
    get_put_and_miss,
    ttl_expiry,
    delete_reports_presence,
    list_by_prefix,
    json_helpers,
    set_nx_px_is_exclusive,
    incr_counts_with_ttl,
    ping_reports_the_backend,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_carry_the_prefixes_and_ttls() {
    let fx = Fixture::redis();
    let key = keys::quota_agent("smolt-1a2b3c4d");
    assert!(fx.cache.put(&key, "{}", Some(key.ttl)).await);
    let (value, ttl) = fx.raw("quota:agent:smolt-1a2b3c4d");
    assert_eq!(value.as_deref(), Some("{}"));
    assert!((299_000..=300_000).contains(&ttl), "PTTL {ttl}");
    assert!(
        fx.cache
            .incr("n", 1, Duration::from_secs(30))
            .await
            .is_some()
    );
    let (value, ttl) = fx.raw("n");
    assert_eq!(value.as_deref(), Some("1"));
    assert!((29_000..=30_000).contains(&ttl), "PTTL {ttl}");

    // A cache with another deployment prefix on the same Redis sees none of it.
    let other = Fixture::redis();
    assert_eq!(other.cache.get(&key).await, None);
    assert!(other.cache.list("", DEFAULT_LIST_LIMIT).await.is_empty());
    assert_eq!(fx.cache.list("", DEFAULT_LIST_LIMIT).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_connections_work() {
    let fx = Fixture::redis_with(
        &format!("{}/?protocol=resp3", redis_url().trim_end_matches('/')),
        "1000",
    );
    assert!(fx.cache.put("k", "v", Some(Duration::from_secs(30))).await);
    assert_eq!(fx.cache.get_text("k").await.as_deref(), Some("v"));
    assert_eq!(fx.cache.ping().await.status, HealthStatus::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_fails_open_quickly() {
    let fx = Fixture::redis_with("redis://127.0.0.1:1", "50");
    let c = &fx.cache;
    let started = Instant::now();
    assert_eq!(c.get("k").await, None);
    assert_eq!(c.get_json::<serde_json::Value>("k").await, None);
    assert!(!c.put("k", "v", Some(Duration::from_secs(1))).await);
    assert!(!c.put_json("k", &[1, 2], None).await);
    assert!(!c.delete("k").await);
    assert!(c.list("", 10).await.is_empty());
    assert_eq!(
        c.set_nx_px("k", "v", Duration::from_secs(1)).await,
        Claim::Unavailable
    );
    assert_eq!(c.incr("k", 1, Duration::from_secs(1)).await, None);
    assert_eq!(
        fx.counts(),
        [
            "get/error=2",
            "put/error=4",
            "delete/error=1",
            "list/error=1"
        ]
    );
    // After the first failure the breaker answers at once.
    for _ in 0..200 {
        assert_eq!(c.get("k").await, None);
    }
    assert_eq!(fx.count("get", "error"), 202);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");

    let health = c.ping().await;
    assert_eq!(health.status, HealthStatus::Degraded);
    assert_eq!(health.backend, BackendKind::Redis);
    assert!(health.error.is_some());
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["status"], "degraded");
    assert_eq!(json["backend"], "redis");
}

/// A TCP proxy in front of the real Redis that the test can take down and bring back on the
/// same port, cutting every connection through it.
struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let upstream = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let registry = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream.as_str()).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { port, tasks }
    }

    /// Closes the listener and every proxied connection.
    fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_for(mut ok: impl AsyncFnMut() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ok().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_then_recovers() {
    let proxy = Proxy::start(0).await;
    let fx = Fixture::redis_with(&format!("redis://127.0.0.1:{}", proxy.port), "200");
    let c = &fx.cache;
    let ttl = Some(Duration::from_secs(60));
    assert!(
        wait_for(
            async || c.ping().await.status == HealthStatus::Ok,
            Duration::from_secs(5)
        )
        .await,
        "redis never became reachable through the proxy"
    );
    assert!(c.put("k", "before", ttl).await);
    assert_eq!(c.get_text("k").await.as_deref(), Some("before"));

    // Outage: every connection cut, the port closed.
    proxy.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(c.get("k").await, None);
        assert!(!c.put("k", "during", ttl).await);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "100 operations took {elapsed:?}"
    );
    assert_eq!(fx.count("get", "error"), 50);
    assert_eq!(fx.count("put", "error"), 50);
    let health = c.ping().await;
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");

    // Redis is back on the same address: the cache reconnects by itself.
    let _proxy = Proxy::start(proxy.port).await;
    assert!(
        wait_for(async || c.get("k").await.is_some(), Duration::from_secs(10)).await,
        "the cache did not reconnect"
    );
    assert_eq!(c.get_text("k").await.as_deref(), Some("before"));
    assert!(c.put("k", "after", ttl).await);
    assert_eq!(c.ping().await.status, HealthStatus::Ok);
    assert_eq!(fx.count("put", "error"), 50);
}

/// A server that answers every command with `-LOADING`, as Redis does while it reloads its data.
async fn loading_server() -> (u16, JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    // One answer per command: commands are arrays (`*<n>`) at the start of a line;
                    // none of the arguments used here starts with `*`.
                    let chunk = &buf[..n];
                    let commands = chunk
                        .iter()
                        .enumerate()
                        .filter(|&(i, &b)| b == b'*' && (i == 0 || chunk[i - 1] == b'\n'))
                        .count();
                    let reply =
                        "-LOADING Redis is loading the dataset in memory\r\n".repeat(commands);
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_count_as_errors_and_eventually_renew_the_connection() {
    let (port, server) = loading_server().await;
    let fx = Fixture::redis_with(&format!("redis://127.0.0.1:{port}"), "1000");
    let Backend::Redis(redis) = &fx.cache.inner.backend else {
        panic!("not redis");
    };
    for i in 1..=redis_kv::RENEW_AFTER_ERROR_ANSWERS {
        // The server answers: no breaker, every call reaches it and fails on its own.
        assert_eq!(fx.cache.get("k").await, None);
        assert_eq!(
            redis.has_manager(),
            i != redis_kv::RENEW_AFTER_ERROR_ANSWERS,
            "call {i}"
        );
    }
    assert_eq!(
        fx.count("get", "error"),
        u64::from(redis_kv::RENEW_AFTER_ERROR_ANSWERS)
    );
    let health = fx.cache.ping().await;
    assert_eq!(health.status, HealthStatus::Degraded);
    let error = health.error.unwrap();
    assert!(error.contains("loading"), "{error}");
    server.abort();
}

#[test]
fn settings_default_to_the_in_process_map() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.backend(), BackendKind::Memory);
    assert_eq!(s.op_timeout, DEFAULT_OP_TIMEOUT);
    assert_eq!(s.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(s.max_entries, DEFAULT_MAX_ENTRIES);
    assert_eq!(s.prefix, "");
    let s = settings(&[
        ("REDIS_URL", "  "),
        ("MNEMOM_CACHE_TIMEOUT_MS", "75"),
        ("MNEMOM_CACHE_MAX_ENTRIES", "500"),
        ("MNEMOM_CACHE_PREFIX", "staging:"),
    ])
    .unwrap();
    assert_eq!(s.backend(), BackendKind::Memory);
    assert_eq!(s.op_timeout, Duration::from_millis(75));
    assert_eq!(s.max_entries, 500);
    assert_eq!(s.prefix, "staging:");
}

#[test]
fn redis_urls_are_validated_without_leaking_the_password() {
    for url in [
        "redis://127.0.0.1:6379",
        "redis://:s3cret-pw@redis.internal:6380/2",
        "redis://user:s3cret-pw@redis.internal/0",
        "rediss://:s3cret-pw@cache.example.com:6380/1",
        "REDIS://localhost",
        "redis://localhost:6379/0?protocol=resp3",
    ] {
        let s = settings(&[("REDIS_URL", url)]).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(s.backend(), BackendKind::Redis);
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cret-pw"), "{debug}");
    }
    let s = settings(&[("REDIS_URL", "rediss://:pw@cache.example.com:6380/1")]).unwrap();
    assert!(format!("{s:?}").contains("rediss://cache.example.com:6380/1"));

    for url in [
        "http://redis:6379",
        "localhost:6379",
        "redis//localhost",
        "redis://:s3cret-pw@",
        "redis://:s3cret-pw@host:notaport",
        "redis://:s3cret-pw@host/notadb",
        "rediss://:s3cret-pw@host#insecure",
    ] {
        let err = settings(&[("REDIS_URL", url)]).unwrap_err();
        assert_eq!(err.variable, "REDIS_URL", "{url}");
        let message = err.to_string();
        assert!(
            message.starts_with("invalid configuration: REDIS_URL: "),
            "{message}"
        );
        assert!(!message.contains("s3cret-pw"), "{url}: {message}");
    }
}

#[test]
fn bad_tuning_values_name_the_variable() {
    for (key, value) in [
        ("MNEMOM_CACHE_TIMEOUT_MS", "0"),
        ("MNEMOM_CACHE_TIMEOUT_MS", "fast"),
        ("MNEMOM_CACHE_CONNECT_TIMEOUT_MS", "-1"),
        ("MNEMOM_CACHE_MAX_ENTRIES", "0"),
        ("MNEMOM_CACHE_PREFIX", "has space"),
    ] {
        let err = settings(&[(key, value)]).unwrap_err();
        assert_eq!(err.variable, key, "{key}={value}");
    }
}

#[tokio::test]
async fn failures_are_logged_at_most_once_per_interval() {
    let log = FailureLog::new();
    let error = KvError::Timeout(Duration::from_millis(50));
    for _ in 0..100 {
        log.failure(BackendKind::Redis, Op::Get, &error);
    }
    assert_eq!(log.suppressed.load(Ordering::Relaxed), 99);
    assert!(log.failing.load(Ordering::Relaxed));
    log.success(BackendKind::Redis);
    assert!(!log.failing.load(Ordering::Relaxed));
    // A bad value is not a backend failure.
    log.failure(
        BackendKind::Redis,
        Op::Get,
        &KvError::Decode("x".to_owned()),
    );
    assert!(!log.failing.load(Ordering::Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_lives_on_the_main_runtime_when_a_worker_connects_first() {
    let fx = Fixture::redis();
    let cache = fx.cache.clone();
    // The first operation comes from a request worker, whose runtime then stops. Had the
    // connection's driver been spawned there, it would be gone with it.
    let workers = crate::workers::Workers::start(1).unwrap();
    let (put_tx, put_rx) = tokio::sync::oneshot::channel();
    let (alive_tx, alive_rx) = tokio::sync::oneshot::channel::<()>();
    workers.spawn(async move {
        let _ = put_tx.send(cache.put("home", "v", None).await);
    });
    workers.spawn(async move {
        // Dropped (with the sender) when the worker's runtime drops its tasks.
        std::future::pending::<()>().await;
        drop(alive_tx);
    });
    assert!(put_rx.await.unwrap());
    drop(workers);
    assert!(alive_rx.await.is_err());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(fx.cache.get("home").await.as_deref(), Some(&b"v"[..]));
    assert_eq!(fx.count("get", "error"), 0);
}
