//! The AIP pipeline through the real gateway: a mock provider serving recorded responses with
//! thinking, and a mock analysis LLM answering scripted verdicts chosen by a marker the test puts
//! into the user message (the task context carries it into the analysis prompt). Headers, stored
//! checkpoints, enforcement, nudges, containment, drift, policy faults and the hybrid mode.

use std::time::{Duration, SystemTime};

use mnemom_gateway::cache::keys;
use mnemom_gateway::proxy::identity::AgentIdentity;
use mnemom_mock_provider::{MockAnalysis, MockAnalysisOptions, MockProvider, Scenario};

use super::support::*;

/// One provider's request shape with a recorded response that has thinking.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub name: &'static str,
    pub path: &'static str,
    pub stream: bool,
    pub fixture: &'static str,
}

pub const ANTHROPIC_JSON: Shape = Shape {
    name: "anthropic-json",
    path: "/anthropic/v1/messages",
    stream: false,
    fixture: "anthropic/messages-thinking-signature-text.json",
};
pub const ANTHROPIC_SSE: Shape = Shape {
    name: "anthropic-sse",
    path: "/anthropic/v1/messages",
    stream: true,
    fixture: "anthropic/messages-stream-thinking-signature-text.sse",
};
pub const OPENAI_JSON: Shape = Shape {
    name: "openai-json",
    path: "/openai/v1/responses",
    stream: false,
    fixture: "openai/responses-reasoning-summary-message.json",
};
pub const OPENAI_SSE: Shape = Shape {
    name: "openai-sse",
    path: "/openai/v1/responses",
    stream: true,
    fixture: "openai/responses-stream-reasoning-summary-text.sse",
};
pub const GEMINI_JSON: Shape = Shape {
    name: "gemini-json",
    path: "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
    stream: false,
    fixture: "gemini/generate-content-thought-parts-signature-text.json",
};
pub const GEMINI_SSE: Shape = Shape {
    name: "gemini-sse",
    path: "/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    stream: true,
    fixture: "gemini/stream-generate-content-thought-parts-text.sse",
};
pub const ALL_SHAPES: [Shape; 6] = [
    ANTHROPIC_JSON,
    ANTHROPIC_SSE,
    OPENAI_JSON,
    OPENAI_SSE,
    GEMINI_JSON,
    GEMINI_SSE,
];

impl Shape {
    /// The request body carrying `user_text` as the last user message.
    pub fn body(self, user_text: &str) -> String {
        let text = serde_json::Value::String(user_text.to_owned());
        if self.path.starts_with("/anthropic") {
            format!(
                r#"{{"model":"claude-sonnet-4-5","max_tokens":16000,"stream":{},"messages":[{{"role":"user","content":{text}}}]}}"#,
                self.stream
            )
        } else if self.path.starts_with("/openai") {
            format!(
                r#"{{"model":"o4-mini","stream":{},"input":[{{"role":"user","content":{text}}}]}}"#,
                self.stream
            )
        } else {
            format!(r#"{{"contents":[{{"role":"user","parts":[{{"text":{text}}}]}}]}}"#)
        }
    }

    /// Sends one request as the agent with API key `key`.
    pub async fn send(self, gateway: &TestGateway, key: &str, user_text: &str) -> Collected {
        let auth_header = if self.path.starts_with("/anthropic") {
            ("x-api-key", key.to_owned())
        } else if self.path.starts_with("/openai") {
            ("authorization", format!("Bearer {key}"))
        } else {
            ("x-goog-api-key", key.to_owned())
        };
        post(
            &gateway.url(self.path),
            &[
                (auth_header.0, auth_header.1.as_str()),
                ("content-type", "application/json"),
                ("anthropic-version", "2023-06-01"),
                ("x-mock-fixture", self.fixture),
            ],
            self.body(user_text),
        )
        .await
    }
}

/// A gateway with a mock provider and a mock analysis LLM.
pub struct Aip {
    pub mock: MockProvider,
    pub analysis: MockAnalysis,
    pub gateway: TestGateway,
}

/// Starts the three with `extra` settings (the analysis LLM configured, user text allowed in
/// the task context so markers reach the analysis, every thinking analysed).
pub async fn aip_gateway(extra: &[(&str, &str)]) -> Aip {
    aip_gateway_with(MockAnalysisOptions::default(), extra).await
}

pub async fn aip_gateway_with(options: MockAnalysisOptions, extra: &[(&str, &str)]) -> Aip {
    let mock = mock().await;
    let analysis = MockAnalysis::start(options).await.unwrap();
    let base = analysis.base_url();
    let mut settings: Vec<(&str, &str)> = vec![
        ("ANTHROPIC_API_KEY", "test-analysis-key"),
        ("MNEMOM_ANALYSIS_BASE_URL", base.as_str()),
        ("MNEMOM_AIP_TASK_CONTEXT_USER_TEXT", "true"),
        ("MNEMOM_AIP_MIN_EVIDENCE_TOKENS", "1"),
        ("MNEMOM_WRITER_FLUSH_INTERVAL_MS", "10"),
    ];
    for (k, v) in extra {
        settings.retain(|(key, _)| key != k);
        settings.push((k, v));
    }
    let gateway = TestGateway::start(&mock, &settings).await;
    Aip {
        mock,
        analysis,
        gateway,
    }
}

pub fn identity(key: &str) -> AgentIdentity {
    AgentIdentity::from_key(key, SystemTime::now())
}

/// Creates the agent of `key` and sets its columns (`SET` clause), then drops its cached
/// settings so the next request reads them.
pub async fn configure_agent(gateway: &TestGateway, key: &str, set: &str) {
    let id = identity(key);
    let store = gateway.app.store.get().unwrap();
    store
        .get_or_create_agent(&id.agent_hash, &id.agent_id)
        .await
        .unwrap();
    sqlite_exec(
        &gateway.data_dir,
        &format!("UPDATE agents SET {set} WHERE id = '{}'", id.agent_id),
    )
    .await;
    gateway
        .app
        .cache
        .delete(keys::quota_agent(&id.agent_id))
        .await;
}

/// Runs one statement on the embedded SQLite database.
pub async fn sqlite_exec(data_dir: &std::path::Path, sql: &str) {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("mnemom.db"))
        .busy_timeout(Duration::from_secs(5));
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// Waits until the agent has `n` stored checkpoints.
pub async fn checkpoints(gateway: &TestGateway, key: &str, n: i64) {
    let id = identity(key).agent_id;
    let data = gateway.data_dir.clone();
    eventually("stored checkpoints", Duration::from_secs(10), n, || {
        let sql = format!("SELECT count(*) FROM integrity_checkpoints WHERE agent_id = '{id}'");
        let data = data.clone();
        async move { sqlite_count(&data, &sql).await }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_json_and_sse_is_checked_and_stored() {
    let aip = aip_gateway(&[]).await;
    for (i, shape) in ALL_SHAPES.iter().enumerate() {
        let key = format!("sk-aip-shape-{i}");
        let response = shape
            .send(&aip.gateway, &key, "Please help. MOCK-ANALYSIS:review")
            .await;
        assert_eq!(response.status, 200, "{}: {:?}", shape.name, response.body);
        if shape.stream {
            assert_eq!(
                response.header("x-aip-verdict"),
                Some("pending"),
                "{}",
                shape.name
            );
            assert_eq!(response.header("x-aip-checkpoint-id"), None);
        } else {
            assert_eq!(
                response.header("x-aip-verdict"),
                Some("review_needed"),
                "{}",
                shape.name
            );
            assert!(
                response
                    .header("x-aip-checkpoint-id")
                    .unwrap()
                    .starts_with("ic-")
            );
            assert_eq!(response.header("x-aip-action"), Some("log_and_continue"));
            assert_eq!(response.header("x-aip-proceed"), Some("true"));
            // The body is the provider's, byte for byte.
            assert_eq!(
                response.body.as_ref(),
                fixture(shape.fixture).as_slice(),
                "{}",
                shape.name
            );
        }
        checkpoints(&aip.gateway, &key, 1).await;
        let id = identity(&key).agent_id;
        let stored = sqlite_count(
            &aip.gateway.data_dir,
            &format!(
                "SELECT count(*) FROM integrity_checkpoints WHERE agent_id = '{id}' \
                 AND verdict = 'review_needed' AND length(thinking_block_hash) = 64 \
                 AND concerns LIKE '%value_misalignment%' AND source = 'gateway'"
            ),
        )
        .await;
        assert_eq!(stored, 1, "{}", shape.name);
    }
    // The analysis LLM saw the thinking of every provider; the checkpoint never stores it.
    assert_eq!(aip.analysis.request_count(), 6);
    let all = sqlite_count(
        &aip.gateway.data_dir,
        "SELECT count(*) FROM integrity_checkpoints WHERE reasoning_summary LIKE '%MOCK-ANALYSIS%' \
         OR concerns LIKE '%THINKING BLOCK%'",
    )
    .await;
    assert_eq!(all, 0);
    // The fixed system prompt is sent for caching.
    let first = aip.analysis.requests()[0].json().unwrap();
    assert_eq!(first["system"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(first["model"], "claude-haiku-4-5-20251001");
    assert_eq!(
        aip.gateway
            .metric("gateway_aip_checks_total{verdict=\"pending\"}")
            .await,
        Some(3.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_analyses_give_the_derived_verdict_headers() {
    let aip = aip_gateway(&[("MNEMOM_ANALYSIS_TIMEOUT_MS", "1000")]).await;
    let cases: &[(Scenario, &str, Option<&str>)] = &[
        (Scenario::Clear, "clear", Some("continue")),
        (Scenario::Review, "review_needed", Some("log_and_continue")),
        (
            Scenario::Boundary,
            "boundary_violation",
            Some("deny_and_escalate"),
        ),
        (
            Scenario::Injection,
            "boundary_violation",
            Some("pause_for_review"),
        ),
        (
            Scenario::Deception,
            "boundary_violation",
            Some("pause_for_review"),
        ),
        (
            Scenario::Autonomy,
            "review_needed",
            Some("log_and_continue"),
        ),
        (Scenario::Values, "review_needed", Some("log_and_continue")),
        (
            Scenario::BoundaryValue,
            "boundary_violation",
            Some("pause_for_review"),
        ),
        (
            Scenario::Undeclared,
            "review_needed",
            Some("log_and_continue"),
        ),
        (
            Scenario::Corruption,
            "review_needed",
            Some("log_and_continue"),
        ),
        (Scenario::Fenced, "review_needed", Some("log_and_continue")),
        // The model says clear, its concerns say otherwise: the concerns win.
        (
            Scenario::Contradict,
            "boundary_violation",
            Some("deny_and_escalate"),
        ),
        (Scenario::Malformed, "error", None),
        (Scenario::Invalid, "error", None),
        (Scenario::Error500, "error", None),
        (Scenario::Overloaded, "error", None),
        (Scenario::Timeout, "error", None),
    ];
    for (i, (scenario, verdict, action)) in cases.iter().enumerate() {
        let key = format!("sk-aip-scenario-{i}");
        let started = std::time::Instant::now();
        let response = ANTHROPIC_JSON
            .send(&aip.gateway, &key, &format!("task {}", scenario.marker()))
            .await;
        assert_eq!(response.status, 200, "{scenario:?}");
        assert_eq!(
            response.header("x-aip-verdict"),
            Some(*verdict),
            "{scenario:?}"
        );
        assert_eq!(response.header("x-aip-action"), *action, "{scenario:?}");
        assert_eq!(
            response.body.as_ref(),
            fixture(ANTHROPIC_JSON.fixture).as_slice(),
            "the client gets its response whatever the analysis did"
        );
        if *scenario == Scenario::Timeout {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "bounded by the analysis timeout"
            );
        }
        if action.is_some() {
            checkpoints(&aip.gateway, &key, 1).await;
        }
    }
    let contradict = identity("sk-aip-scenario-11").agent_id;
    assert_eq!(
        sqlite_count(
            &aip.gateway.data_dir,
            &format!(
                "SELECT count(*) FROM integrity_checkpoints WHERE agent_id = '{contradict}' \
                 AND verdict = 'boundary_violation' AND analysis_metadata LIKE '%verdict_overridden%'"
            ),
        )
        .await,
        1
    );
    assert_eq!(
        aip.gateway
            .metric("gateway_aip_checks_total{verdict=\"error\"}")
            .await,
        Some(5.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_rules_disabled_skipped_and_synthetic() {
    // No analysis endpoint at all: skipped, with the reason.
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let response = ANTHROPIC_JSON.send(&gateway, "sk-skip-1", "hi").await;
    assert_eq!(response.header("x-aip-verdict"), Some("skipped"));
    assert_eq!(
        response.header("x-aip-reason"),
        Some("no-analysis-configured")
    );
    // Upstream non-2xx: skipped.
    let response = post(
        &gateway.url("/anthropic/v1/messages"),
        &[
            ("x-api-key", "sk-skip-1"),
            ("x-mock-status", "529"),
            (
                "x-mock-fixture",
                "anthropic/error-invalid-request-error.json",
            ),
        ],
        ANTHROPIC_JSON.body("hi"),
    )
    .await;
    assert_eq!(response.status, 529);
    assert_eq!(response.header("x-aip-verdict"), Some("skipped"));
    gateway.stop().await;

    // AIP off globally.
    let gateway = TestGateway::start(&mock, &[("AIP_ENABLED", "false")]).await;
    let response = ANTHROPIC_JSON.send(&gateway, "sk-skip-2", "hi").await;
    assert_eq!(response.header("x-aip-verdict"), Some("disabled"));
    gateway.stop().await;

    let aip = aip_gateway(&[("MNEMOM_AIP_MIN_EVIDENCE_TOKENS", "100000")]).await;
    // Thinking below the minimum evidence size: a synthetic clear, no analysis call.
    let response = ANTHROPIC_JSON.send(&aip.gateway, "sk-skip-3", "hi").await;
    assert_eq!(response.header("x-aip-verdict"), Some("clear"));
    assert_eq!(response.header("x-aip-synthetic"), Some("true"));
    // No thinking at all: a synthetic clear too.
    let response = post(
        &aip.gateway.url("/anthropic/v1/messages"),
        &[
            ("x-api-key", "sk-skip-3"),
            ("x-mock-fixture", "anthropic/messages-tool-use.json"),
        ],
        ANTHROPIC_JSON.body("hi"),
    )
    .await;
    assert_eq!(response.header("x-aip-verdict"), Some("clear"));
    assert_eq!(response.header("x-aip-synthetic"), Some("true"));
    assert_eq!(aip.analysis.request_count(), 0);
    // AIP off for one agent.
    configure_agent(&aip.gateway, "sk-skip-4", "aip_enabled = 0").await;
    let response = ANTHROPIC_JSON.send(&aip.gateway, "sk-skip-4", "hi").await;
    assert_eq!(response.header("x-aip-verdict"), Some("disabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_mode_blocks_violations_and_streams_nudge_the_next_request() {
    let aip = aip_gateway(&[]).await;
    let key = "sk-aip-enforce";
    configure_agent(&aip.gateway, key, "aip_enforcement_mode = 'enforce'").await;
    let response = ANTHROPIC_JSON
        .send(
            &aip.gateway,
            key,
            &format!("x {}", Scenario::Boundary.marker()),
        )
        .await;
    assert_eq!(response.status, 403);
    let body = response.json();
    assert_eq!(body["type"], "integrity_violation");
    assert_eq!(body["error"], "Request blocked by integrity check");
    assert_eq!(body["checkpoint"]["verdict"], "boundary_violation");
    assert_eq!(
        body["checkpoint"]["recommended_action"],
        "deny_and_escalate"
    );
    assert!(body["checkpoint"]["concerns"].as_array().unwrap().len() == 1);
    assert_eq!(response.header("x-aip-proceed"), Some("false"));
    assert_eq!(
        body["checkpoint"]["checkpoint_id"].as_str(),
        response.header("x-aip-checkpoint-id")
    );
    assert!(response.header("x-smoltbot-agent").is_some());
    // A stream is never blocked: the violation becomes a nudge in the next request.
    let stream = ANTHROPIC_SSE
        .send(
            &aip.gateway,
            key,
            &format!("x {}", Scenario::Boundary.marker()),
        )
        .await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("x-aip-verdict"), Some("pending"));
    let id = identity(key).agent_id;
    let data = aip.gateway.data_dir.clone();
    eventually("two pending nudges", Duration::from_secs(10), 2, || {
        let sql = format!(
            "SELECT count(*) FROM enforcement_nudges WHERE agent_id = '{id}' AND status = 'pending'"
        );
        let data = data.clone();
        async move { sqlite_count(&data, &sql).await }
    })
    .await;
    aip.mock.clear();
    let next = ANTHROPIC_JSON.send(&aip.gateway, key, "all good now").await;
    assert_eq!(next.status, 200);
    assert_eq!(next.header("x-aip-enforcement"), Some("nudge"));
    assert_eq!(next.header("x-aip-nudge-count"), Some("2"));
    let sent = aip.mock.requests()[0].json().unwrap();
    let system = sent["system"].to_string();
    assert_eq!(
        system
            .matches("[INTEGRITY NOTICE — Conscience Protocol]")
            .count(),
        1
    );
    assert_eq!(
        system
            .matches("was flagged as a boundary violation")
            .count(),
        2
    );
    eventually("nudges delivered", Duration::from_secs(10), 2, || {
        let sql = format!(
            "SELECT count(*) FROM enforcement_nudges WHERE agent_id = '{id}' AND status = 'delivered' \
             AND delivered_at IS NOT NULL AND delivery_session_id IS NOT NULL"
        );
        let data = data.clone();
        async move { sqlite_count(&data, &sql).await }
    })
    .await;
    // Delivered once: the request after that carries none.
    aip.mock.clear();
    let after = ANTHROPIC_JSON.send(&aip.gateway, key, "again").await;
    assert_eq!(after.header("x-aip-enforcement"), None);
    assert!(
        !aip.mock.requests()[0].json().unwrap()["system"]
            .to_string()
            .contains("INTEGRITY NOTICE")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nudges_reach_all_three_providers_in_their_own_system_field() {
    let aip = aip_gateway(&[]).await;
    let cases: [(Shape, &str); 3] = [
        (ANTHROPIC_JSON, "/system"),
        (OPENAI_JSON, "/instructions"),
        (GEMINI_JSON, "/systemInstruction"),
    ];
    for (i, (shape, field)) in cases.iter().enumerate() {
        let key = format!("sk-aip-nudge-{i}");
        configure_agent(&aip.gateway, &key, "aip_enforcement_mode = 'nudge'").await;
        let first = shape
            .send(
                &aip.gateway,
                &key,
                &format!("x {}", Scenario::Boundary.marker()),
            )
            .await;
        // Nudge mode records and nudges but never blocks.
        assert_eq!(first.status, 200, "{}", shape.name);
        assert_eq!(first.header("x-aip-verdict"), Some("boundary_violation"));
        let id = identity(&key).agent_id;
        let data = aip.gateway.data_dir.clone();
        eventually("a pending nudge", Duration::from_secs(10), 1, || {
            let sql = format!("SELECT count(*) FROM enforcement_nudges WHERE agent_id = '{id}'");
            let data = data.clone();
            async move { sqlite_count(&data, &sql).await }
        })
        .await;
        aip.mock.clear();
        let next = shape.send(&aip.gateway, &key, "next").await;
        assert_eq!(
            next.header("x-aip-nudge-count"),
            Some("1"),
            "{}",
            shape.name
        );
        let sent = aip.mock.requests()[0].json().unwrap();
        let placed = sent
            .pointer(field)
            .map(|v| v.to_string())
            .unwrap_or_default();
        assert!(
            placed.contains("INTEGRITY NOTICE"),
            "{}: {sent}",
            shape.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_requests_deliver_one_pending_nudge_exactly_once() {
    let aip = aip_gateway(&[]).await;
    let key = "sk-aip-parallel";
    configure_agent(&aip.gateway, key, "aip_enforcement_mode = 'nudge'").await;
    let first = ANTHROPIC_JSON
        .send(
            &aip.gateway,
            key,
            &format!("x {}", Scenario::Boundary.marker()),
        )
        .await;
    assert_eq!(first.header("x-aip-verdict"), Some("boundary_violation"));
    let id = identity(key).agent_id;
    let data = aip.gateway.data_dir.clone();
    eventually("a pending nudge", Duration::from_secs(10), 1, || {
        let sql = format!("SELECT count(*) FROM enforcement_nudges WHERE agent_id = '{id}'");
        let data = data.clone();
        async move { sqlite_count(&data, &sql).await }
    })
    .await;
    aip.mock.clear();
    let url = aip.gateway.url(ANTHROPIC_JSON.path);
    let body = ANTHROPIC_JSON.body("parallel");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = url.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            post(
                &url,
                &[
                    ("x-api-key", key),
                    (
                        "x-mock-fixture",
                        "anthropic/messages-text-and-tool-use-no-args.json",
                    ),
                ],
                body,
            )
            .await
        }));
    }
    let mut nudged = 0;
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status, 200);
        if response.header("x-aip-nudge-count").is_some() {
            nudged += 1;
        }
    }
    assert_eq!(nudged, 1, "exactly one request carried the nudge");
    let carried = aip
        .mock
        .requests()
        .iter()
        .filter(|r| {
            r.json().unwrap()["system"]
                .to_string()
                .contains("INTEGRITY NOTICE")
        })
        .count();
    assert_eq!(carried, 1);
    eventually("delivered once", Duration::from_secs(10), 1, || {
        let sql = format!(
            "SELECT count(*) FROM enforcement_nudges WHERE agent_id = '{id}' AND status = 'delivered'"
        );
        let data = data.clone();
        async move { sqlite_count(&data, &sql).await }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_violations_pause_the_agent_and_a_paused_agent_is_refused() {
    let aip = aip_gateway(&[]).await;
    let key = "sk-aip-contain";
    configure_agent(
        &aip.gateway,
        key,
        "aip_enforcement_mode = 'nudge', auto_containment_threshold = 3",
    )
    .await;
    for n in 0..3 {
        let response = ANTHROPIC_JSON
            .send(
                &aip.gateway,
                key,
                &format!("{n} {}", Scenario::Boundary.marker()),
            )
            .await;
        assert_eq!(response.status, 200, "request {n} is served");
        assert_eq!(response.header("x-aip-verdict"), Some("boundary_violation"));
    }
    // The third violation pauses the agent; the next request is refused in the provider's shape.
    let id = identity(key).agent_id;
    let data = aip.gateway.data_dir.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let response = ANTHROPIC_JSON.send(&aip.gateway, key, "hello").await;
        if response.status == 403 {
            break response;
        }
        assert!(tokio::time::Instant::now() < deadline, "never contained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused.json()["error"]["type"], "containment_error");
    eventually("containment stored", Duration::from_secs(10), 1, || {
        let sql = format!(
            "SELECT count(*) FROM agents a JOIN agent_containment_log l ON l.agent_id = a.id \
             WHERE a.id = '{id}' AND a.containment_status = 'paused' AND l.action = 'auto_pause' \
             AND l.reason = 'Auto-contained: 3 consecutive boundary violations'"
        );
        let data = data.clone();
        async move { sqlite_count(&data, &sql).await }
    })
    .await;
    // Even with a cold cache the pause holds (read from the database).
    aip.gateway.app.cache.delete(keys::quota_agent(&id)).await;
    let response = GEMINI_JSON.send(&aip.gateway, key, "hello").await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["error"]["status"], "PERMISSION_DENIED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streak_of_non_clear_verdicts_raises_one_drift_alert() {
    let aip = aip_gateway(&[]).await;
    let key = "sk-aip-drift";
    let id = identity(key).agent_id;
    let script = [
        Scenario::Clear,
        Scenario::Review,
        Scenario::Injection,
        Scenario::Review,
        Scenario::Review,
        Scenario::Clear,
        Scenario::Review,
    ];
    for (n, scenario) in script.iter().enumerate() {
        let response = ANTHROPIC_JSON
            .send(&aip.gateway, key, &format!("{n} {}", scenario.marker()))
            .await;
        assert_eq!(response.status, 200);
        checkpoints(&aip.gateway, key, n as i64 + 1).await;
    }
    let data = aip.gateway.data_dir.clone();
    eventually("one drift alert", Duration::from_secs(10), 1, || {
        let sql = format!(
            "SELECT count(*) FROM drift_alerts WHERE agent_id = '{id}' AND session_id IS NOT NULL"
        );
        let data = data.clone();
        async move { sqlite_count(&data, &sql).await }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sqlite_count(
            &data,
            &format!("SELECT count(*) FROM drift_alerts WHERE agent_id = '{id}'")
        )
        .await,
        1,
        "one alert per streak"
    );
}
