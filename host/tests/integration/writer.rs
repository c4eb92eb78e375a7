//! Usage recording through the real gateway and the background writer: rows in SQLite and a
//! fresh PostgreSQL database, fifty concurrent first requests from one key, a Redis that goes
//! away, and SIGTERM under load with the database unreachable (the journal), then a restart that
//! replays it. The PostgreSQL stop/start outage test is its own binary (`tests/outage.rs`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::support::*;

const USAGE_ROWS: &str = "SELECT count(*) FROM usage_events";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_become_usage_rows_in_the_embedded_database() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[("MNEMOM_WRITER_FLUSH_INTERVAL_MS", "20")]).await;
    let base = gateway.url("");
    for n in 0..4 {
        assert!(one_request(&base, "sk-usage-one", n).await);
    }
    assert!(one_request(&base, "sk-usage-two", 0).await);
    let data = gateway.data_dir.clone();
    eventually("usage rows", Duration::from_secs(10), 5, || {
        sqlite_count(&data, USAGE_ROWS)
    })
    .await;
    assert_eq!(sqlite_count(&data, "SELECT count(*) FROM agents").await, 2);
    assert_eq!(
        sqlite_count(&data, "SELECT count(*) FROM alignment_cards").await,
        2
    );
    // Provider, model and token counts are recorded; prompts and responses are not stored.
    assert_eq!(
        sqlite_count(
            &data,
            "SELECT count(*) FROM usage_events WHERE provider = 'anthropic' AND model <> '' \
             AND tokens_in > 0 AND tokens_out > 0 AND duration_ms >= 0 AND id LIKE 'ue-%'"
        )
        .await,
        3
    );
    assert_eq!(
        sqlite_count(
            &data,
            "SELECT count(DISTINCT session_id) FROM usage_events WHERE session_id LIKE '%-%'"
        )
        .await,
        2
    );
    assert_eq!(
        gateway
            .metric("gateway_background_tasks_total{task=\"usage_event\"}")
            .await,
        Some(5.0)
    );
    let ready = get(&gateway.url("/health/ready")).await.json();
    assert_eq!(ready["checks"]["writer"]["status"], "ok");
    assert_eq!(ready["checks"]["writer"]["journal_records"], 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_first_requests_from_one_key_make_one_agent_on_postgres() {
    let db = PgDatabase::create().await;
    let mock = mock().await;
    let gateway = TestGateway::start(
        &mock,
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("MNEMOM_WRITER_FLUSH_INTERVAL_MS", "20"),
            ("MNEMOM_WRITER_LAST_SEEN_INTERVAL_MS", "100"),
        ],
    )
    .await;
    let base = gateway.url("");
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..50 {
        let base = base.clone();
        requests.spawn(async move { one_request(&base, "sk-fifty-first", n).await });
    }
    while let Some(ok) = requests.join_next().await {
        assert!(ok.unwrap(), "every request is answered with 200");
    }
    eventually("usage rows", Duration::from_secs(10), 50, || {
        db.count(USAGE_ROWS)
    })
    .await;
    assert_eq!(db.count("SELECT count(*) FROM agents").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM alignment_cards").await, 1);
    eventually("last_seen", Duration::from_secs(5), 1, || {
        db.count("SELECT count(*) FROM agents WHERE last_seen IS NOT NULL")
    })
    .await;
    assert_eq!(
        gateway
            .metric("gateway_background_tasks_total{task=\"agent\"}")
            .await,
        Some(1.0),
        "the agent is made sure of once"
    );
    for series in [
        "gateway_writer_records_rejected_total{kind=\"usage_event\"}",
        "gateway_writer_records_dropped_total{reason=\"journal_io\"}",
        "gateway_writer_retries_total",
        "gateway_writer_queue_depth",
        "gateway_writer_journal_records",
    ] {
        assert_eq!(gateway.metric(series).await, Some(0.0), "{series}");
    }
    // The agent's settings come from the cache (primed by the writer when it created the agent).
    let id: String = sqlx::query_scalar("SELECT id FROM agents")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let settings = gateway.app.agent_settings(&id).await;
    assert_eq!(
        settings,
        Some(mnemom_gateway::store::AgentSettings::default())
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_settings_are_read_through_the_cache() {
    let db = PgDatabase::create().await;
    let mock = mock().await;
    let gateway = TestGateway::start(
        &mock,
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("MNEMOM_WRITER_FLUSH_INTERVAL_MS", "20"),
        ],
    )
    .await;
    let app = gateway.app.clone();
    // An agent the gateway never saw: a miss (defaults), and nothing to load.
    assert_eq!(app.agent_settings("smolt-00000000").await, None);
    // An agent changed behind the gateway's back: the first read misses and loads it in the
    // background; the next one is served from the cache.
    sqlx::query("INSERT INTO agents (id, agent_hash, aip_enforcement_mode) VALUES ('smolt-0000beef', '0000beef00000000', 'enforce')")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(app.agent_settings("smolt-0000beef").await, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let settings = loop {
        if let Some(s) = app.agent_settings("smolt-0000beef").await {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        settings.enforcement_mode,
        mnemom_gateway::store::EnforcementMode::Enforce
    );
    // Cached: a change in the database shows after the entry expires or is deleted.
    sqlx::query("UPDATE agents SET aip_enforcement_mode = 'nudge' WHERE id = 'smolt-0000beef'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        app.agent_settings("smolt-0000beef")
            .await
            .map(|s| s.enforcement_mode),
        Some(mnemom_gateway::store::EnforcementMode::Enforce)
    );
    assert!(
        app.cache
            .delete(mnemom_gateway::cache::keys::quota_agent("smolt-0000beef"))
            .await
    );
    assert_eq!(app.agent_settings("smolt-0000beef").await, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(s) = app.agent_settings("smolt-0000beef").await {
            assert_eq!(
                s.enforcement_mode,
                mnemom_gateway::store::EnforcementMode::Nudge
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_agent_settings_are_read_once_a_second_not_per_request() {
    let mock = mock().await;
    let prefix = format!("it-memo-{}-", std::process::id());
    let gateway = TestGateway::start(
        &mock,
        &[
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("MNEMOM_CACHE_PREFIX", prefix.as_str()),
            ("MNEMOM_WRITER_FLUSH_INTERVAL_MS", "20"),
        ],
    )
    .await;
    let base = gateway.url("");
    assert!(one_request(&base, "sk-memo", 0).await);
    let data = gateway.data_dir.clone();
    eventually("the agent exists", Duration::from_secs(10), 1, || {
        sqlite_count(&data, "SELECT count(*) FROM agents")
    })
    .await;
    let gets = || async {
        gateway
            .metric("gateway_cache_operations_total{operation=\"get\",result=\"hit\"}")
            .await
            .unwrap_or(0.0)
            + gateway
                .metric("gateway_cache_operations_total{operation=\"get\",result=\"miss\"}")
                .await
                .unwrap_or(0.0)
    };
    // Load the settings into this process once, then ten requests within the second.
    assert!(one_request(&base, "sk-memo", 1).await);
    let before = gets().await;
    for n in 2..12 {
        assert!(one_request(&base, "sk-memo", n).await);
    }
    let during = gets().await - before;
    assert!(during <= 1.0, "{during} Redis reads for ten requests");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = gets().await;
    assert!(one_request(&base, "sk-memo", 12).await);
    assert_eq!(
        gets().await - before,
        1.0,
        "after a second Redis is asked again"
    );
    gateway.stop().await;
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_redis_costs_the_cache_not_the_requests() {
    let mut relay = TcpRelay::start("127.0.0.1:6379".parse().unwrap()).await;
    let redis_url = format!("redis://{}", relay.addr);
    let prefix = format!("it-{}-{}:", std::process::id(), closed_port());
    let mock = mock().await;
    let gateway = TestGateway::start(
        &mock,
        &[
            ("REDIS_URL", redis_url.as_str()),
            ("MNEMOM_CACHE_PREFIX", prefix.as_str()),
            ("MNEMOM_WRITER_FLUSH_INTERVAL_MS", "20"),
        ],
    )
    .await;
    let base = gateway.url("");
    let data = gateway.data_dir.clone();
    assert!(one_request(&base, "sk-redis-one", 0).await);
    eventually("usage rows", Duration::from_secs(10), 1, || {
        sqlite_count(&data, USAGE_ROWS)
    })
    .await;
    let first = mnemom_gateway::proxy::identity::AgentIdentity::from_key(
        "sk-redis-one",
        std::time::SystemTime::now(),
    );
    // Primed in Redis by the writer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gateway.app.agent_settings(&first.agent_id).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "settings never cached"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = get(&gateway.url("/health/ready")).await;
    assert_eq!(ready.json()["checks"]["cache"]["status"], "ok");

    // Redis goes away.
    relay.close().await;
    let get_errors = "gateway_cache_operations_total{operation=\"get\",result=\"error\"}";
    let put_errors = "gateway_cache_operations_total{operation=\"put\",result=\"error\"}";
    let before = gateway.metric(get_errors).await.unwrap();
    for n in 0..8 {
        assert!(
            one_request(&base, "sk-redis-two", n).await,
            "served without the cache"
        );
    }
    eventually("usage rows", Duration::from_secs(10), 9, || {
        sqlite_count(&data, USAGE_ROWS)
    })
    .await;
    assert_eq!(sqlite_count(&data, "SELECT count(*) FROM agents").await, 2);
    // Reads fail open (a miss), and are counted as errors.
    assert_eq!(gateway.app.agent_settings(&first.agent_id).await, None);
    assert!(gateway.metric(get_errors).await.unwrap() > before);
    // The writer's attempt to prime the new agent's settings failed and was counted.
    assert!(gateway.metric(put_errors).await.unwrap() >= 1.0);
    let ready = get(&gateway.url("/health/ready")).await;
    assert_eq!(ready.status, 200, "still in service");
    assert_eq!(ready.json()["status"], "degraded");
    assert_eq!(ready.json()["checks"]["cache"]["status"], "degraded");
    assert_eq!(ready.json()["checks"]["writer"]["status"], "ok");
    gateway.stop().await;
}

// ---------------------------------------------------------------------------------------------
// SIGTERM under load, with the real binary.

struct Binary {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Binary {
    fn spawn(env: &[(&str, String)], log: std::path::PathBuf) -> Self {
        let port = closed_port();
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_mnemom-gateway"));
        command
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("LOG_LEVEL", "info")
            .env(
                "MNEMOM_PLUGIN_CACHE_DIR",
                plugin_cache_dir().display().to_string(),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the gateway exited ({status}):\n{}", self.logs());
            }
            let ready = client()
                .request(
                    http::Request::get(format!("{}/health/ready", self.base))
                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                        .unwrap(),
                )
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the gateway did not exit:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn journal_lines(dir: &std::path::Path, kind: &str) -> usize {
    let needle = format!("{{\"kind\":\"{kind}\"");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                .map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .filter(|l| l.contains(&needle))
                        .count()
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_journals_and_a_restart_replays_every_record() {
    let mock = mock().await;
    let data = tempfile::tempdir().unwrap();
    let journal = data.path().join("journal");
    let common = |database_url: String| {
        vec![
            ("ANTHROPIC_BASE_URL", mock.base_url()),
            ("OPENAI_BASE_URL", mock.base_url()),
            ("GEMINI_BASE_URL", mock.base_url()),
            ("MNEMOM_DATA_DIR", data.path().display().to_string()),
            ("DATABASE_URL", database_url),
            // Small, so the load overflows memory into the journal as well.
            ("MNEMOM_WRITER_QUEUE_CAPACITY", "40".to_owned()),
            ("MNEMOM_WRITER_FLUSH_INTERVAL_MS", "20".to_owned()),
            ("MNEMOM_SHUTDOWN_GRACE_SECONDS", "10".to_owned()),
        ]
    };

    // 1. The database is unreachable: the gateway starts degraded and keeps serving.
    let unreachable = format!("postgres://postgres@127.0.0.1:{}/mnemom", closed_port());
    let mut first = Binary::spawn(&common(unreachable), data.path().join("first.log"));
    first.wait_ready().await;

    let served = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..6 {
        let base = first.base.clone();
        let served = served.clone();
        let stop = stop.clone();
        load.spawn(async move {
            let key = format!("sk-sigterm-{}", worker % 3);
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                if one_request(&base, &key, n).await {
                    served.fetch_add(1, Ordering::SeqCst);
                } else {
                    // The listener closed: the gateway is shutting down.
                    break;
                }
                n += 1;
            }
        });
    }
    while served.load(Ordering::SeqCst) < 150 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 2. SIGTERM while requests are in flight.
    first.sigterm();
    let status = first.wait_exit().await;
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    let accepted = served.load(Ordering::SeqCst);
    let logs = first.logs();
    assert!(status.success(), "exit {status}:\n{logs}");
    assert!(logs.contains("background writer drained"), "{logs}");
    assert_eq!(
        journal_lines(&journal, "usage_event"),
        accepted,
        "every answered request is journaled:\n{logs}"
    );
    assert!(journal_lines(&journal, "last_seen") >= 1);

    // 3. Restart with the database: the journal replays; nothing lost, nothing doubled.
    let db = PgDatabase::create().await;
    let mut second = Binary::spawn(&common(db.url.clone()), data.path().join("second.log"));
    second.wait_ready().await;
    eventually(
        "replayed usage rows",
        Duration::from_secs(30),
        accepted as i64,
        || db.count(USAGE_ROWS),
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM agents").await, 3);
    assert_eq!(
        db.count("SELECT count(*) FROM agents WHERE last_seen IS NOT NULL")
            .await,
        3
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while journal_lines(&journal, "usage_event") > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "journal not emptied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.sigterm();
    assert!(second.wait_exit().await.success(), "{}", second.logs());
    assert_eq!(db.count(USAGE_ROWS).await, accepted as i64);
}
