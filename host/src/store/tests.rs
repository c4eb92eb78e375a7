//! The storage suite, run against both backends: each test gets a fresh, empty database (a new
//! PostgreSQL database on the machine's server, created through `MNEMOM_TEST_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`, and dropped afterwards; or a SQLite file
//! in a temporary directory). Then the PostgreSQL-only cases: concurrent migrators, an
//! unreachable server, a missing database, TLS.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::*;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn admin_url() -> String {
    std::env::var("MNEMOM_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

/// `admin` with its database replaced by `name`.
fn url_for(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = Utc::now().timestamp_subsec_nanos();
    format!(
        "mnemom_test_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh database, dropped by [`TestDb::finish`] (or, if the test panicked, on drop).
pub(crate) struct TestDb {
    pub(crate) store: Store,
    pub(crate) config: StoreConfig,
    postgres: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub(crate) async fn postgres() -> Self {
        let name = create_postgres_database().await;
        let config = StoreConfig::from_url(Some(&url_for(&admin_url(), &name)), Path::new("."))
            .expect("test database URL");
        Self {
            store: Store::connect_lazy(&config).expect("lazy store"),
            config,
            postgres: Some(name),
            _dir: None,
        }
    }

    pub(crate) fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // The embedded default, in a nested directory that does not exist yet.
        let config = StoreConfig::from_url(None, &dir.path().join("data"));
        let config = config.expect("embedded config");
        Self {
            store: Store::connect_lazy(&config).expect("lazy store"),
            config,
            postgres: None,
            _dir: Some(dir),
        }
    }

    pub(crate) async fn finish(mut self) {
        self.store.close().await;
        if let Some(name) = self.postgres.take() {
            drop_postgres_database(&name).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Only after a panic: `finish` has taken the name otherwise.
        if let Some(name) = self.postgres.take() {
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(drop_postgres_database(&name));
                }
            })
            .join();
        }
    }
}

async fn create_postgres_database() -> String {
    let admin = admin_url();
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("the storage tests need PostgreSQL at {admin} (MNEMOM_TEST_POSTGRES_URL): {e}")
    });
    let name = unique_name();
    // CREATE DATABASE copies template1 and fails while another session uses it; retry.
    let mut attempts = 0;
    loop {
        let result = sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await;
        match result {
            Ok(_) => break,
            Err(e) if attempts < 20 => {
                attempts += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("CREATE DATABASE {name}: {e}"),
        }
    }
    let _ = conn.close().await;
    name
}

async fn drop_postgres_database(name: &str) {
    if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
        let _ = sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
        let _ = conn.close().await;
    }
}

/// Runs one statement, spelled per backend, through the store's error mapping.
async fn exec(store: &Store, postgres: &str, sqlite: &str) -> Result<u64, StoreError> {
    match &store.pool {
        Pool::Postgres(pool) => sqlx::query(AssertSqlSafe(postgres.to_owned()))
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| store.error("test statement", e)),
        Pool::Sqlite(pool) => sqlx::query(AssertSqlSafe(sqlite.to_owned()))
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| store.error("test statement", e)),
    }
}

/// The same statement on both backends.
async fn exec_both(store: &Store, sql: &str) -> Result<u64, StoreError> {
    exec(store, sql, sql).await
}

pub(crate) async fn scalar_i64(store: &Store, sql: &str) -> i64 {
    match &store.pool {
        Pool::Postgres(pool) => sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
        Pool::Sqlite(pool) => sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    }
}

async fn scalar_text(store: &Store, sql: &str) -> String {
    match &store.pool {
        Pool::Postgres(pool) => sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
        Pool::Sqlite(pool) => sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    }
}

const TABLES: &[&str] = &[
    "agents",
    "alignment_cards",
    "agent_containment_log",
    "traces",
    "integrity_checkpoints",
    "enforcement_nudges",
    "verdict_proofs",
    "drift_alerts",
    "aip_webhook_registrations",
    "aip_webhook_deliveries",
    "usage_events",
    "metering_events",
    "observer_runs",
    "usage_daily",
    "integrity_summaries",
];

fn all_versions() -> Vec<i64> {
    vec![1, 2, 3, 4, 5, 6]
}

/// A timestamp both backends store exactly (milliseconds).
pub(crate) fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_790_000_000_000 + ms)
        .single()
        .expect("valid timestamp")
}

pub(crate) fn hash_of(n: u64) -> String {
    format!("{n:016x}")
}

pub(crate) fn checkpoint(id: &str, agent_id: &str, session_id: &str, ms: i64) -> CheckpointRecord {
    CheckpointRecord {
        checkpoint_id: id.to_owned(),
        agent_id: agent_id.to_owned(),
        card_id: Some("ac-00000001".to_owned()),
        session_id: session_id.to_owned(),
        timestamp: at(ms),
        thinking_block_hash: thinking_hash(id),
        provider: "anthropic".to_owned(),
        model: "claude-sonnet-4-5".to_owned(),
        verdict: Verdict::Clear,
        concerns: serde_json::json!([]),
        reasoning_summary: format!("summary of {id}"),
        conscience_context: Some(
            serde_json::json!({"values_checked": ["honesty"], "consultation_depth": "standard"}),
        ),
        window_position: Some(serde_json::json!({"index": 0, "window_size": 1})),
        analysis_metadata: None,
        linked_trace_id: None,
        source: CheckpointSource::Gateway,
        attestation: None,
    }
}

pub(crate) fn usage(id: &str, agent_id: &str, ms: i64) -> UsageEventRecord {
    UsageEventRecord {
        id: id.to_owned(),
        agent_id: agent_id.to_owned(),
        session_id: format!("{}-1", agent_id),
        trace_id: None,
        timestamp: at(ms),
        provider: "openai".to_owned(),
        model: "gpt-5".to_owned(),
        tokens_in: Some(120),
        tokens_out: Some(30),
        duration_ms: 842,
        tool_count: 2,
        gateway_log_id: Some(format!("log-{id}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The shared suite: each function gets a fresh, unmigrated database.

async fn migrations_apply_from_zero_and_are_idempotent(store: &Store) {
    assert_eq!(
        store.schema_status().await.unwrap(),
        SchemaStatus::Behind {
            current: None,
            pending: all_versions()
        }
    );
    let first = store.migrate().await.unwrap();
    let applied: Vec<i64> = first.applied.iter().map(|(v, _)| *v).collect();
    assert_eq!(applied, all_versions());
    assert_eq!(first.status, SchemaStatus::UpToDate { version: 6 });
    assert!(
        first.to_string().contains("applied 6 migrations"),
        "{first}"
    );

    let second = store.migrate().await.unwrap();
    assert!(second.applied.is_empty());
    assert_eq!(second.status, SchemaStatus::UpToDate { version: 6 });
    assert!(second.to_string().contains("nothing to apply"), "{second}");
    assert!(store.verify_schema().await.unwrap().is_servable());

    for table in TABLES {
        assert_eq!(
            scalar_i64(store, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
}

async fn serve_refuses_a_schema_that_is_behind_except_on_sqlite(store: &Store) {
    let mut migrator = schema::migrator(&store.pool);
    migrator.set_ignore_missing(true);
    match &store.pool {
        Pool::Postgres(pool) => migrator.run_to(1, pool).await.unwrap(),
        Pool::Sqlite(pool) => migrator.run_to(1, pool).await.unwrap(),
    }
    let status = store.schema_status().await.unwrap();
    assert_eq!(
        status,
        SchemaStatus::Behind {
            current: Some(1),
            pending: vec![2, 3, 4, 5, 6]
        }
    );
    assert!(!status.is_servable());
    let error = store.verify_schema().await.unwrap_err();
    assert!(matches!(error, OpenError::SchemaBehind { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("run `mnemom-gateway migrate`"),
        "{message}"
    );
    assert!(message.contains("pending: 2, 3"), "{message}");

    let opened = Store::open_for_serve(store.config()).await;
    if store.config().is_sqlite() {
        // The embedded database migrates itself.
        let opened = opened.unwrap();
        assert_eq!(
            opened.schema_status().await.unwrap(),
            SchemaStatus::UpToDate { version: 6 }
        );
        opened.close().await;
    } else {
        let error = opened.unwrap_err();
        assert!(matches!(error, OpenError::SchemaBehind { .. }), "{error}");
        store.migrate().await.unwrap();
        Store::open_for_serve(store.config())
            .await
            .unwrap()
            .close()
            .await;
    }
}

async fn a_newer_schema_is_served_and_a_modified_one_is_not(store: &Store) {
    store.migrate().await.unwrap();
    exec(
        store,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a newer release', TRUE, '\\x00'::bytea, 0)",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a newer release', 1, X'00', 0)",
    )
    .await
    .unwrap();
    assert_eq!(
        store.schema_status().await.unwrap(),
        SchemaStatus::Ahead {
            version: 9999,
            unknown: vec![9999]
        }
    );
    // An older binary's migrate is a no-op, and it may serve.
    let report = store.migrate().await.unwrap();
    assert!(report.applied.is_empty());
    assert!(store.verify_schema().await.is_ok());
    Store::open_for_serve(store.config())
        .await
        .unwrap()
        .close()
        .await;

    exec(
        store,
        "UPDATE _sqlx_migrations SET checksum = '\\x01'::bytea WHERE version = 2",
        "UPDATE _sqlx_migrations SET checksum = X'01' WHERE version = 2",
    )
    .await
    .unwrap();
    let status = store.schema_status().await.unwrap();
    assert!(matches!(status, SchemaStatus::Broken { .. }), "{status}");
    let error = store.verify_schema().await.unwrap_err();
    assert!(matches!(error, OpenError::SchemaBroken { .. }), "{error}");
    assert!(error.to_string().contains("2 differ"), "{error}");
}

async fn agents_are_created_once_with_their_card(store: &Store) {
    store.migrate().await.unwrap();
    let before = Utc::now() - chrono::Duration::seconds(5);
    let agent = store
        .get_or_create_agent("62af8704764faf8e", "smolt-62af8704")
        .await
        .unwrap();
    assert_eq!(agent.id, "smolt-62af8704");
    assert_eq!(agent.agent_hash, "62af8704764faf8e");
    assert_eq!(agent.settings, AgentSettings::default());
    assert!(agent.created_at > before);
    assert!(agent.last_seen.is_some());

    let cards = "SELECT count(*) FROM alignment_cards WHERE agent_id = 'smolt-62af8704'";
    assert_eq!(scalar_i64(store, cards).await, 1);
    let card_id = scalar_text(
        store,
        "SELECT id FROM alignment_cards WHERE agent_id = 'smolt-62af8704' AND is_active",
    )
    .await;
    assert_eq!(card_id, "ac-62af8704");

    // A person edits the card; first sight of the agent again must not rewrite it.
    exec(
        store,
        "UPDATE alignment_cards SET card_json = '{\"edited\": true}'::jsonb",
        "UPDATE alignment_cards SET card_json = '{\"edited\": true}'",
    )
    .await
    .unwrap();
    let again = store
        .get_or_create_agent("62af8704764faf8e", "smolt-62af8704")
        .await
        .unwrap();
    assert_eq!(again, agent);
    assert_eq!(scalar_i64(store, cards).await, 1);
    let edited = scalar_text(
        store,
        "SELECT CAST(card_json AS TEXT) FROM alignment_cards WHERE id = 'ac-62af8704'",
    )
    .await;
    assert!(edited.contains("edited"), "{edited}");

    assert_eq!(
        store.agent_settings("smolt-62af8704").await.unwrap(),
        Some(AgentSettings::default())
    );
    assert_eq!(store.agent_settings("smolt-00000000").await.unwrap(), None);

    exec(
        store,
        "UPDATE agents SET aip_enforcement_mode = 'enforce', nudge_strategy = 'threshold', \
         nudge_threshold = 5, nudge_rate = 40, proof_enabled = TRUE, proof_rate = 25, \
         auto_containment_threshold = 4, containment_status = 'paused', contained_at = now(), \
         aip_enabled = FALSE WHERE id = 'smolt-62af8704'",
        "UPDATE agents SET aip_enforcement_mode = 'enforce', nudge_strategy = 'threshold', \
         nudge_threshold = 5, nudge_rate = 40, proof_enabled = 1, proof_rate = 25, \
         auto_containment_threshold = 4, containment_status = 'paused', \
         contained_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), aip_enabled = 0 \
         WHERE id = 'smolt-62af8704'",
    )
    .await
    .unwrap();
    let settings = store
        .agent_settings("smolt-62af8704")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        settings,
        AgentSettings {
            aap_enabled: true,
            aip_enabled: false,
            enforcement_mode: EnforcementMode::Enforce,
            org_card_exempt: false,
            nudge_strategy: NudgeStrategy::Threshold,
            nudge_rate: 40,
            nudge_threshold: 5,
            proof_enabled: true,
            proof_rate: 25,
            auto_containment_threshold: Some(4),
            containment_status: ContainmentStatus::Paused,
        }
    );
}

async fn fifty_concurrent_first_sights_create_one_agent(store: &Store) {
    store.migrate().await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .get_or_create_agent("0123456789abcdef", "smolt-01234567")
                    .await
            })
        })
        .collect();
    for task in tasks {
        let agent = task.await.unwrap().unwrap();
        assert_eq!(agent.id, "smolt-01234567");
    }
    assert_eq!(scalar_i64(store, "SELECT count(*) FROM agents").await, 1);
    assert_eq!(
        scalar_i64(store, "SELECT count(*) FROM alignment_cards").await,
        1
    );
}

async fn colliding_agent_ids_get_the_long_form(store: &Store) {
    store.migrate().await.unwrap();
    let first = store
        .get_or_create_agent("aaaaaaaa00000001", "smolt-aaaaaaaa")
        .await
        .unwrap();
    assert_eq!(first.id, "smolt-aaaaaaaa");
    // Another key whose hash shares the first 8 hex characters: the original answered 500.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .get_or_create_agent("aaaaaaaa00000002", "smolt-aaaaaaaa")
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().id, "smolt-aaaaaaaa00000002");
    }
    assert_eq!(scalar_i64(store, "SELECT count(*) FROM agents").await, 2);
    assert_eq!(
        scalar_text(
            store,
            "SELECT id FROM alignment_cards WHERE agent_id = 'smolt-aaaaaaaa00000002'"
        )
        .await,
        "ac-aaaaaaaa00000002"
    );
    // The first agent is untouched.
    let again = store
        .get_or_create_agent("aaaaaaaa00000001", "smolt-aaaaaaaa")
        .await
        .unwrap();
    assert_eq!(again, first);
}

async fn last_seen_is_batched_and_never_moves_backwards(store: &Store) {
    store.migrate().await.unwrap();
    let a = store
        .get_or_create_agent(&hash_of(1), "smolt-00000000")
        .await
        .unwrap();
    let b = store
        .get_or_create_agent(&hash_of(0x1_0000_0000), "smolt-00000001")
        .await;
    // hash_of(0x1_0000_0000) starts with 00000001: the derived id matches.
    let b = b.unwrap();
    let future = Utc::now().timestamp_millis() - 1_790_000_000_000 + 3_600_000;
    let batch = vec![
        (a.id.clone(), at(future)),
        (a.id.clone(), at(future + 500)),
        (b.id.clone(), at(future)),
        ("smolt-deadbeef".to_owned(), at(future)),
    ];
    assert_eq!(store.touch_last_seen(&batch).await.unwrap(), 2);
    let a_seen = store.agent(&a.id).await.unwrap().unwrap().last_seen;
    assert_eq!(a_seen, Some(at(future + 500)));
    let b_seen = store.agent(&b.id).await.unwrap().unwrap().last_seen;
    assert_eq!(b_seen, Some(at(future)));

    // A replayed, older batch changes nothing.
    assert_eq!(
        store
            .touch_last_seen(&[(a.id.as_str(), at(future))])
            .await
            .unwrap(),
        0
    );
    let a_seen = store.agent(&a.id).await.unwrap().unwrap().last_seen;
    assert_eq!(a_seen, Some(at(future + 500)));
    let empty: &[(String, DateTime<Utc>)] = &[];
    assert_eq!(store.touch_last_seen(empty).await.unwrap(), 0);
}

async fn checkpoints_insert_idempotently_and_read_back_in_order(store: &Store) {
    store.migrate().await.unwrap();
    let agent = store
        .get_or_create_agent(&hash_of(7), "smolt-00000000")
        .await
        .unwrap();
    let session = format!("{}-493000", agent.agent_hash);
    let mut records: Vec<CheckpointRecord> = (0..5)
        .map(|i| checkpoint(&format!("ic-{i:04}"), &agent.id, &session, i * 1000))
        .collect();
    records[3].verdict = Verdict::BoundaryViolation;
    records[3].concerns = serde_json::json!([{"category": "prompt_injection", "severity": "high",
        "description": "follows injected instructions", "evidence": "…"}]);
    records[3].analysis_metadata =
        Some(serde_json::json!({"analysis_model": "haiku", "truncated": false}));
    records[4].source = CheckpointSource::Hybrid;
    records[4].attestation = Some(Attestation {
        input_commitment: "c".repeat(64),
        issuer_signature: "c2lnbmF0dXJl".to_owned(),
        signing_key_id: "key-001".to_owned(),
        chain_hash: "d".repeat(64),
        prev_chain_hash: Some("e".repeat(64)),
        merkle_leaf_index: Some(41),
        certificate_id: Some("cert-abcd1234".to_owned()),
    });

    assert_eq!(store.insert_checkpoints(&records).await.unwrap(), 5);
    // A retried batch inserts nothing; a batch mixing old and new inserts the new.
    assert_eq!(store.insert_checkpoints(&records).await.unwrap(), 0);
    let mut mixed = records[..2].to_vec();
    mixed.extend((5..8).map(|i| checkpoint(&format!("ic-{i:04}"), &agent.id, &session, i * 1000)));
    // The same id twice in one batch is stored once.
    mixed.push(mixed[2].clone());
    assert_eq!(store.insert_checkpoints(&mixed).await.unwrap(), 3);
    assert_eq!(
        scalar_i64(store, "SELECT count(*) FROM integrity_checkpoints").await,
        8
    );

    // The window: newest N of the session, returned oldest first, every field intact.
    let window = store
        .recent_checkpoints(&agent.id, &session, 5)
        .await
        .unwrap();
    let ids: Vec<&str> = window.iter().map(|c| c.checkpoint_id.as_str()).collect();
    assert_eq!(ids, ["ic-0003", "ic-0004", "ic-0005", "ic-0006", "ic-0007"]);
    assert_eq!(window[0], records[3]);
    assert_eq!(window[1], records[4]);
    assert!(
        store
            .recent_checkpoints(&agent.id, "another-session", 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A large batch (chunked on SQLite, one UNNEST on PostgreSQL), retried.
    let big: Vec<CheckpointRecord> = (0..1500)
        .map(|i| checkpoint(&format!("ic-big-{i:05}"), &agent.id, "big", i))
        .collect();
    assert_eq!(store.insert_checkpoints(&big).await.unwrap(), 1500);
    assert_eq!(store.insert_checkpoints(&big).await.unwrap(), 0);
    let tail = store.recent_checkpoints(&agent.id, "big", 2).await.unwrap();
    assert_eq!(tail[1].checkpoint_id, "ic-big-01499");
    assert_eq!(store.insert_checkpoints(&[]).await.unwrap(), 0);
}

async fn usage_events_insert_idempotently(store: &Store) {
    store.migrate().await.unwrap();
    let agent = store
        .get_or_create_agent(&hash_of(9), "smolt-00000000")
        .await
        .unwrap();
    let mut events: Vec<UsageEventRecord> = (0..3)
        .map(|i| usage(&format!("ue-{i}"), &agent.id, i))
        .collect();
    events[2].tokens_in = None;
    events[2].tokens_out = None;
    assert_eq!(store.insert_usage_events(&events).await.unwrap(), 3);
    assert_eq!(store.insert_usage_events(&events).await.unwrap(), 0);
    let big: Vec<UsageEventRecord> = (0..1000)
        .map(|i| usage(&format!("ue-big-{i}"), &agent.id, i))
        .collect();
    assert_eq!(store.insert_usage_events(&big).await.unwrap(), 1000);
    assert_eq!(
        scalar_i64(store, "SELECT count(*) FROM usage_events").await,
        1003
    );
    assert_eq!(
        scalar_i64(
            store,
            "SELECT CAST(sum(tokens_in) + sum(tokens_out) + sum(duration_ms) + sum(tool_count) AS BIGINT) \
             FROM usage_events WHERE id LIKE 'ue-_'"
        )
        .await,
        120 * 2 + 30 * 2 + 842 * 3 + 2 * 3
    );
    assert_eq!(
        scalar_i64(
            store,
            "SELECT count(*) FROM usage_events WHERE tokens_in IS NULL"
        )
        .await,
        1
    );
}

async fn constraints_reject_bad_values(store: &Store) {
    store.migrate().await.unwrap();
    let agent = store
        .get_or_create_agent(&hash_of(3), "smolt-00000000")
        .await
        .unwrap();
    let id = &agent.id;

    for (column, value) in [
        ("aip_enforcement_mode", "'block'"),
        ("nudge_strategy", "'sometimes'"),
        ("containment_status", "'frozen'"),
        ("nudge_rate", "101"),
        ("nudge_threshold", "0"),
        ("proof_rate", "-1"),
        ("auto_containment_threshold", "0"),
    ] {
        let error = exec_both(
            store,
            &format!("UPDATE agents SET {column} = {value} WHERE id = '{id}'"),
        )
        .await
        .unwrap_err();
        assert!(error.is_constraint_violation(), "{column}: {error}");
        assert!(!error.is_retryable(), "{column}: {error}");
    }
    // Paused without saying when.
    assert!(
        exec_both(
            store,
            &format!("UPDATE agents SET containment_status = 'paused' WHERE id = '{id}'")
        )
        .await
        .unwrap_err()
        .is_constraint_violation()
    );
    // A card that is not a JSON object.
    assert!(
        exec(
            store,
            "UPDATE alignment_cards SET card_json = '[1, 2]'::jsonb",
            "UPDATE alignment_cards SET card_json = '[1, 2]'",
        )
        .await
        .unwrap_err()
        .is_constraint_violation()
    );
    // A second active card for the agent.
    assert!(
        exec(
            store,
            &format!(
                "INSERT INTO alignment_cards (id, agent_id, card_json) VALUES ('ac-x', '{id}', '{{}}'::jsonb)"
            ),
            &format!(
                "INSERT INTO alignment_cards (id, agent_id, card_json) VALUES ('ac-x', '{id}', '{{}}')"
            ),
        )
        .await
        .unwrap_err()
        .is_constraint_violation()
    );

    // Bad records from the writer: unknown agent, bad hash, bad verdict text.
    let orphan = checkpoint("ic-orphan", "smolt-ffffffff", "s", 0);
    let error = store.insert_checkpoints(&[orphan]).await.unwrap_err();
    assert!(error.is_constraint_violation(), "{error}");
    assert!(!error.is_retryable(), "{error}");
    let mut bad_hash = checkpoint("ic-bad-hash", id, "s", 0);
    bad_hash.thinking_block_hash = "the thinking text itself".to_owned();
    assert!(
        store
            .insert_checkpoints(&[bad_hash])
            .await
            .unwrap_err()
            .is_constraint_violation()
    );
    let error = exec_both(
        store,
        &format!(
            "INSERT INTO integrity_checkpoints (checkpoint_id, agent_id, session_id, timestamp, \
             thinking_block_hash, provider, model, verdict) VALUES ('ic-v', '{id}', 's', \
             '2026-01-01T00:00:00.000Z', '{}', 'p', 'm', 'maybe')",
            "a".repeat(64)
        ),
    )
    .await
    .unwrap_err();
    assert!(error.is_constraint_violation(), "{error}");
    let mut negative = usage("ue-neg", id, 0);
    negative.duration_ms = -1;
    assert!(
        store
            .insert_usage_events(&[negative])
            .await
            .unwrap_err()
            .is_constraint_violation()
    );

    // Nudges, webhooks, containment log: enum-like columns.
    store
        .insert_checkpoints(&[checkpoint("ic-ok", id, "s", 0)])
        .await
        .unwrap();
    let nudge = |status: &str| {
        format!(
            "INSERT INTO enforcement_nudges (id, agent_id, checkpoint_id, session_id, status, \
             nudge_content, concerns_summary) VALUES ('nudge-1', '{id}', 'ic-ok', 's', \
             '{status}', 'text', 'summary')"
        )
    };
    assert!(
        exec_both(store, &nudge("sent"))
            .await
            .unwrap_err()
            .is_constraint_violation()
    );
    // Delivered without a delivery time.
    assert!(
        exec_both(store, &nudge("delivered"))
            .await
            .unwrap_err()
            .is_constraint_violation()
    );
    assert_eq!(exec_both(store, &nudge("pending")).await.unwrap(), 1);
    let registration = |url: &str| {
        format!(
            "INSERT INTO aip_webhook_registrations (id, agent_id, callback_url, secret) \
             VALUES ('wh-1', '{id}', '{url}', 'secret')"
        )
    };
    assert!(
        exec_both(store, &registration("ftp://example.com/hook"))
            .await
            .unwrap_err()
            .is_constraint_violation()
    );
    assert_eq!(
        exec_both(store, &registration("https://example.com/hook"))
            .await
            .unwrap(),
        1
    );
    assert!(
        exec_both(
            store,
            "INSERT INTO aip_webhook_deliveries (id, registration_id, checkpoint_id, event_type, \
             delivered, attempts) VALUES ('del-1', 'wh-1', 'ic-ok', 'verdict.maybe', TRUE, 1)"
        )
        .await
        .unwrap_err()
        .is_constraint_violation()
    );
    assert!(
        exec_both(
            store,
            &format!(
                "INSERT INTO agent_containment_log (id, agent_id, action, actor, new_status) \
                 VALUES ('ctl-1', '{id}', 'auto_pause', 'system', 'asleep')"
            )
        )
        .await
        .unwrap_err()
        .is_constraint_violation()
    );

    // Agent identity must look like one.
    let error = store
        .get_or_create_agent("NOT-HEX", "smolt-00000000")
        .await
        .unwrap_err();
    assert!(error.is_constraint_violation(), "{error}");
}

async fn ping_reports_latency(store: &Store) {
    let latency = store.ping().await.unwrap();
    assert!(latency < Duration::from_secs(2), "{latency:?}");
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod postgres_suite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = super::TestDb::postgres().await;
                    super::$test(&db.store).await;
                    db.finish().await;
                }
            )*
        }
        mod sqlite_suite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = super::TestDb::sqlite();
                    super::$test(&db.store).await;
                    db.finish().await;
                }
            )*
        }
    };
}

on_both_backends!(
    migrations_apply_from_zero_and_are_idempotent,
    serve_refuses_a_schema_that_is_behind_except_on_sqlite,
    a_newer_schema_is_served_and_a_modified_one_is_not,
    agents_are_created_once_with_their_card,
    fifty_concurrent_first_sights_create_one_agent,
    colliding_agent_ids_get_the_long_form,
    last_seen_is_batched_and_never_moves_backwards,
    checkpoints_insert_idempotently_and_read_back_in_order,
    usage_events_insert_idempotently,
    constraints_reject_bad_values,
    ping_reports_latency,
    observer_jobs_produce_the_expected_rows,
    integrity_summary_counts_the_window,
);

/// The wiring spawns these futures (the writer, readiness, start-up): they must be `Send`.
#[test]
fn operations_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let config = StoreConfig::from_url(Some("sqlite::memory:"), Path::new(".")).unwrap();
    let store = Store::connect_lazy(&config).unwrap();
    assert_send(&Store::open_for_serve(&config));
    assert_send(&run_migrate(&config));
    assert_send(&store.migrate());
    assert_send(&store.schema_status());
    assert_send(&store.verify_schema());
    assert_send(&store.ping());
    assert_send(&store.get_or_create_agent("0000000000000000", "smolt-00000000"));
    assert_send(&store.agent_settings("smolt-00000000"));
    let seen: Vec<(String, DateTime<Utc>)> = Vec::new();
    assert_send(&store.touch_last_seen(&seen));
    assert_send(&store.insert_checkpoints(&[]));
    assert_send(&store.insert_usage_events(&[]));
    assert_send(&store.recent_checkpoints("a", "s", 10));
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrators_on_one_fresh_database_apply_once() {
    let db = TestDb::postgres().await;
    // Four "pods" at once, each with its own pool and connection.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let config = db.config.clone();
            tokio::spawn(async move { run_migrate(&config).await })
        })
        .collect();
    let mut applied = Vec::new();
    for run in runs {
        let report = run.await.unwrap().unwrap();
        assert_eq!(report.status, SchemaStatus::UpToDate { version: 6 });
        applied.extend(report.applied.into_iter().map(|(v, _)| v));
    }
    applied.sort_unstable();
    // Exactly one of them applied each migration; the others waited and found nothing to do.
    assert_eq!(applied, all_versions());
    assert_eq!(
        scalar_i64(&db.store, "SELECT count(*) FROM _sqlx_migrations").await,
        all_versions().len() as i64
    );
    // No advisory lock is left behind.
    assert_eq!(
        scalar_i64(
            &db.store,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        .await,
        0
    );
    db.finish().await;
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

#[tokio::test]
async fn unreachable_postgres_is_a_clear_error_for_migrate_and_degraded_for_serve() {
    let url = format!(
        "postgres://postgres:hunter2@127.0.0.1:{}/mnemom",
        closed_port()
    );
    let mut config = StoreConfig::from_url(Some(&url), Path::new(".")).unwrap();
    config.acquire_timeout = Duration::from_secs(1);

    let error = run_migrate(&config).await.unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(error.is_retryable());
    let message = error.to_string();
    assert!(message.contains("DATABASE_URL"), "{message}");
    assert!(message.contains("connection refused"), "{message}");
    assert!(message.contains("is PostgreSQL running"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    let error = Store::open_for_serve(&config).await.unwrap_err();
    assert!(matches!(error, OpenError::Unavailable { .. }), "{error}");
    let (store, cause) = error.into_degraded().unwrap();
    assert!(cause.to_string().contains("connection refused"), "{cause}");
    let ping = store.ping().await.unwrap_err();
    assert!(ping.is_unavailable(), "{ping}");
}

#[tokio::test]
async fn a_missing_database_is_rejected_not_degraded() {
    let url = url_for(&admin_url(), "mnemom_test_does_not_exist");
    let config = StoreConfig::from_url(Some(&url), Path::new(".")).unwrap();
    let error = run_migrate(&config).await.unwrap_err();
    assert!(matches!(error, StoreError::Rejected { .. }), "{error}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("does not exist"), "{error}");
    let error = Store::open_for_serve(&config).await.unwrap_err();
    assert!(
        matches!(&error, OpenError::Store(e) if matches!(**e, StoreError::Rejected { .. })),
        "{error}"
    );
}

#[tokio::test]
async fn tls_follows_sslmode() {
    let db = TestDb::postgres().await;
    let name = db.postgres.clone().unwrap();
    let admin = admin_url();
    let with_mode = |mode: &str| {
        let url = url_for(&admin, &name);
        let sep = if url.contains('?') { '&' } else { '?' };
        StoreConfig::from_url(Some(&format!("{url}{sep}sslmode={mode}")), Path::new(".")).unwrap()
    };
    let ssl_on = scalar_text(&db.store, "SHOW ssl").await == "on";
    let required = Store::connect(&with_mode("require")).await;
    if ssl_on {
        // Encrypted (rustls), certificate not verified: works against a self-signed server.
        let store = required.unwrap();
        let encrypted = match &store.pool {
            Pool::Postgres(pool) => sqlx::query_scalar::<_, bool>(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            )
            .fetch_one(pool)
            .await
            .unwrap(),
            Pool::Sqlite(_) => unreachable!(),
        };
        assert!(encrypted);
        store.close().await;
        // verify-full checks the certificate against the web PKI roots: a local self-signed
        // certificate fails, naming TLS.
        let error = run_migrate(&with_mode("verify-full")).await.unwrap_err();
        assert!(error.to_string().contains("TLS"), "{error}");
    } else {
        let error = required.unwrap_err();
        assert!(error.to_string().contains("TLS"), "{error}");
    }
    let disabled = Store::connect(&with_mode("disable")).await.unwrap();
    disabled.close().await;
    db.finish().await;
}

#[tokio::test]
async fn the_embedded_default_creates_its_directory_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    let config = StoreConfig::from_url(None, &data).unwrap();
    assert!(config.describe().contains("DATABASE_URL is unset"));
    let store = Store::open_for_serve(&config).await.unwrap();
    assert!(data.join(EMBEDDED_FILE_NAME).exists());
    assert_eq!(
        store.schema_status().await.unwrap(),
        SchemaStatus::UpToDate { version: 6 }
    );
    store.close().await;
    // Reopening is a no-op migration.
    let store = Store::open_for_serve(&config).await.unwrap();
    store.close().await;
}

/// Writer throughput (batched checkpoints per second) on both backends. Not part of the normal
/// run: `cargo test -p mnemom-gateway --lib store::tests::checkpoint_write_throughput --
/// --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn checkpoint_write_throughput() {
    const BATCH: usize = 500;
    const BATCHES: usize = 40;
    for db in [TestDb::postgres().await, TestDb::sqlite()] {
        db.store.migrate().await.unwrap();
        let agent = db
            .store
            .get_or_create_agent(&hash_of(42), "smolt-00000000")
            .await
            .unwrap();
        let batches: Vec<Vec<CheckpointRecord>> = (0..BATCHES)
            .map(|b| {
                (0..BATCH)
                    .map(|i| {
                        let n = b * BATCH + i;
                        let mut c = checkpoint(&format!("ic-{n:08}"), &agent.id, "bench", n as i64);
                        c.analysis_metadata = Some(serde_json::json!({
                            "analysis_model": "claude-haiku-4-5-20251001",
                            "analysis_duration_ms": 812,
                            "thinking_tokens_original": 900,
                            "truncated": false
                        }));
                        c
                    })
                    .collect()
            })
            .collect();
        let started = std::time::Instant::now();
        for batch in &batches {
            assert_eq!(
                db.store.insert_checkpoints(batch).await.unwrap(),
                BATCH as u64
            );
        }
        let elapsed = started.elapsed();
        eprintln!(
            "{}: {} checkpoints in batches of {BATCH}: {:.0} ms, {:.0} checkpoints/s",
            db.store.backend_name(),
            BATCH * BATCHES,
            elapsed.as_secs_f64() * 1000.0,
            (BATCH * BATCHES) as f64 / elapsed.as_secs_f64()
        );
        db.finish().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The observer's statements (see `store/jobs.rs`).

fn ts(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

async fn observer_jobs_produce_the_expected_rows(store: &Store) {
    store.migrate().await.unwrap();
    let id = store
        .get_or_create_agent("aaaabbbbccccdddd", "smolt-aaaabbbb")
        .await
        .unwrap()
        .id;
    let now = at(0);
    let hours = |h: i64| ts(now - chrono::Duration::hours(h));

    // Nudge expiry: only pending nudges older than 4 hours.
    store
        .insert_checkpoints(&[
            checkpoint("ic-a", &id, "s", 0),
            checkpoint("ic-b", &id, "s", 1),
            checkpoint("ic-c", &id, "s", 2),
        ])
        .await
        .unwrap();
    for (nudge, checkpoint, status, created, delivered) in [
        ("nudge-old", "ic-a", "pending", hours(5), "NULL".to_owned()),
        ("nudge-new", "ic-b", "pending", hours(1), "NULL".to_owned()),
        (
            "nudge-done",
            "ic-c",
            "delivered",
            hours(6),
            format!("'{}'", hours(5)),
        ),
    ] {
        exec_both(
            store,
            &format!(
                "INSERT INTO enforcement_nudges (id, agent_id, checkpoint_id, session_id, status, \
                 nudge_content, concerns_summary, created_at, delivered_at) VALUES ('{nudge}', \
                 '{id}', '{checkpoint}', 's', '{status}', 'text', 'summary', '{created}', \
                 {delivered})"
            ),
        )
        .await
        .unwrap();
    }
    let cutoff = now - chrono::Duration::hours(4);
    assert_eq!(store.expire_nudges(cutoff, now, 1000).await.unwrap(), 1);
    assert_eq!(store.expire_nudges(cutoff, now, 1000).await.unwrap(), 0);
    let status = |nudge: &str| {
        format!("SELECT count(*) FROM enforcement_nudges WHERE id = '{nudge}' AND status = ")
    };
    assert_eq!(
        scalar_i64(store, &format!("{}'expired'", status("nudge-old"))).await,
        1
    );
    assert_eq!(
        scalar_i64(store, &format!("{}'pending'", status("nudge-new"))).await,
        1
    );
    assert_eq!(
        scalar_i64(store, &format!("{}'delivered'", status("nudge-done"))).await,
        1
    );

    // Usage roll-up: one row per agent, day, provider and model; recomputed, never added twice.
    let day = 86_400_000;
    let mut other_model = usage("ue-3", &id, 20);
    other_model.model = "gpt-5-mini".to_owned();
    other_model.tokens_in = None;
    store
        .insert_usage_events(&[
            usage("ue-1", &id, 0),
            usage("ue-2", &id, 10),
            other_model,
            usage("ue-y", &id, -day),
            usage("ue-old", &id, -10 * day),
        ])
        .await
        .unwrap();
    let since = now - chrono::Duration::days(1);
    store.rollup_usage(since).await.unwrap();
    store.rollup_usage(since).await.unwrap();
    assert_eq!(
        scalar_i64(store, "SELECT count(*) FROM usage_daily").await,
        3
    );
    let total = "SELECT CAST(sum(requests) AS BIGINT) FROM usage_daily";
    assert_eq!(scalar_i64(store, total).await, 4);
    let tokens_in = "SELECT CAST(sum(tokens_in) AS BIGINT) FROM usage_daily";
    assert_eq!(scalar_i64(store, tokens_in).await, 360);
    store
        .insert_usage_events(&[usage("ue-4", &id, 30)])
        .await
        .unwrap();
    store.rollup_usage(since).await.unwrap();
    assert_eq!(scalar_i64(store, total).await, 5);
    assert_eq!(
        scalar_i64(
            store,
            "SELECT CAST(max(requests) AS BIGINT) FROM usage_daily WHERE model = 'gpt-5'"
        )
        .await,
        3
    );

    // Claims: once per job and scheduled minute.
    assert!(store.claim_run("usage_rollup", 60, "a").await.unwrap());
    assert!(!store.claim_run("usage_rollup", 60, "b").await.unwrap());
    assert!(store.claim_run("usage_rollup", 120, "b").await.unwrap());
    assert!(store.claim_run("retention", 60, "b").await.unwrap());

    // Retention: rows created before the cutoff go (a checkpoint with its nudge), the rest stay.
    let old = "2000-01-01T00:00:00.000Z";
    exec_both(
        store,
        &format!("UPDATE usage_events SET created_at = '{old}' WHERE id = 'ue-1'"),
    )
    .await
    .unwrap();
    exec_both(
        store,
        &format!(
            "UPDATE integrity_checkpoints SET created_at = '{old}' WHERE checkpoint_id = 'ic-a'"
        ),
    )
    .await
    .unwrap();
    let cutoff = Utc::now() - chrono::Duration::days(90);
    let deleted = store.prune_older_than(cutoff, 1000).await.unwrap();
    assert_eq!(deleted, 2 + 3, "two records and three claims");
    assert_eq!(store.prune_older_than(cutoff, 1000).await.unwrap(), 0);
    assert_eq!(
        scalar_i64(store, "SELECT count(*) FROM usage_events").await,
        5
    );
    assert_eq!(
        scalar_i64(store, "SELECT count(*) FROM integrity_checkpoints").await,
        2
    );
    assert_eq!(
        scalar_i64(store, "SELECT count(*) FROM enforcement_nudges").await,
        2
    );
    // The roll-up keeps what the deleted events contributed.
    assert_eq!(scalar_i64(store, total).await, 5);
}

async fn integrity_summary_counts_the_window(store: &Store) {
    store.migrate().await.unwrap();
    let id = store
        .get_or_create_agent("eeeeffff00001111", "smolt-eeeeffff")
        .await
        .unwrap()
        .id;
    let idle = store
        .get_or_create_agent("2222333344445555", "smolt-22223333")
        .await
        .unwrap()
        .id;
    let mut review = checkpoint("ic-r", &id, "s", 3);
    review.verdict = Verdict::ReviewNeeded;
    store
        .insert_checkpoints(&[
            checkpoint("ic-1", &id, "s", 0),
            checkpoint("ic-2", &id, "s", 1),
            checkpoint("ic-3", &id, "s", 2),
            review,
            checkpoint("ic-old", &id, "s", 4),
        ])
        .await
        .unwrap();
    exec_both(
        store,
        "UPDATE integrity_checkpoints SET created_at = '2000-01-01T00:00:00.000Z' \
         WHERE checkpoint_id = 'ic-old'",
    )
    .await
    .unwrap();
    exec_both(
        store,
        &format!(
            "INSERT INTO drift_alerts (id, agent_id, alert_type, severity, description) \
             VALUES ('ida-1', '{id}', 'value_erosion', 'medium', 'drifting')"
        ),
    )
    .await
    .unwrap();
    exec_both(
        store,
        &format!("UPDATE agents SET last_seen = '2000-01-01T00:00:00.000Z' WHERE id = '{idle}'"),
    )
    .await
    .unwrap();
    let now = Utc::now();
    let window = now - chrono::Duration::hours(24);
    let active = now - chrono::Duration::hours(48);
    assert_eq!(
        store
            .summarize_integrity(window, active, now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .summarize_integrity(window, active, now)
            .await
            .unwrap(),
        1
    );
    let of = |column: &str| {
        format!("SELECT CAST({column} AS BIGINT) FROM integrity_summaries WHERE agent_id = '{id}'")
    };
    assert_eq!(scalar_i64(store, &of("checkpoints")).await, 4);
    assert_eq!(scalar_i64(store, &of("clear")).await, 3);
    assert_eq!(scalar_i64(store, &of("clear_ratio * 100")).await, 75);
    assert_eq!(scalar_i64(store, &of("active_drift_alerts")).await, 1);
    // Once the window has moved past everything, the agent drops to zero (it is still listed
    // because its summary counted something).
    exec_both(
        store,
        "UPDATE agents SET last_seen = '2000-01-01T00:00:00.000Z'",
    )
    .await
    .unwrap();
    let later = now + chrono::Duration::hours(48);
    assert_eq!(
        store
            .summarize_integrity(later, later, later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(scalar_i64(store, &of("checkpoints")).await, 0);
    assert_eq!(
        scalar_i64(
            store,
            &format!(
                "SELECT count(*) FROM integrity_summaries WHERE agent_id = '{id}' \
                 AND clear_ratio IS NULL"
            )
        )
        .await,
        1
    );
    assert_eq!(
        store
            .summarize_integrity(later, later, later)
            .await
            .unwrap(),
        0
    );
}
