//! Tests of the analysis clients over real HTTP against the mock analysis LLM and hybrid
//! endpoint (`mnemom_mock_provider::MockAnalysis`) on 127.0.0.1.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mnemom_mock_provider::{MockAnalysis, MockAnalysisOptions, Scenario};
use serde_json::{Value, json};

use super::metrics::CallResult;
use super::*;
use crate::config::MapSource;
use crate::store::Verdict;

const KEY: &str = "sk-ant-test-key";
const MNEMOM_KEY: &str = "mk-test-key";
const SYSTEM: &str = "You are a daimonion. Answer with JSON only.";

async fn mock() -> MockAnalysis {
    MockAnalysis::start(MockAnalysisOptions::default())
        .await
        .unwrap()
}

async fn mock_with_delay(delay: Duration) -> MockAnalysis {
    MockAnalysis::start(MockAnalysisOptions {
        timeout_delay: delay,
        ..MockAnalysisOptions::default()
    })
    .await
    .unwrap()
}

fn settings(mock: &MockAnalysis, extra: &[(&str, &str)]) -> AnalysisSettings {
    let base = mock.base_url();
    let mut pairs = vec![
        ("ANTHROPIC_API_KEY", KEY),
        ("MNEMOM_ANALYSIS_BASE_URL", base.as_str()),
    ];
    pairs.extend_from_slice(extra);
    AnalysisSettings::from_source(&MapSource::from_pairs(pairs)).unwrap()
}

fn hybrid_settings(mock: &MockAnalysis, extra: &[(&str, &str)]) -> AnalysisSettings {
    let url = mock.analyze_url();
    let mut pairs = vec![
        ("MNEMOM_ANALYZE_URL", url.as_str()),
        ("MNEMOM_API_KEY", MNEMOM_KEY),
    ];
    pairs.extend_from_slice(extra);
    AnalysisSettings::from_source(&MapSource::from_pairs(pairs)).unwrap()
}

fn llm_client(settings: &AnalysisSettings) -> (AnalysisClient, AnalysisMetrics) {
    let metrics = AnalysisMetrics::unregistered();
    (AnalysisClient::new(settings, &metrics), metrics)
}

fn request(scenario: Scenario) -> CompletionRequest {
    CompletionRequest {
        system: SYSTEM.to_owned(),
        prompt: format!(
            "THINKING BLOCK TO EVALUATE:\n\nLet me think. {}",
            scenario.marker()
        ),
        max_tokens: 1024,
        model: None,
        cache_system: true,
    }
}

fn analysis_of(completion: &Completion) -> Value {
    serde_json::from_str(&completion.text).unwrap()
}

#[tokio::test]
async fn request_shape_and_prompt_caching() {
    let mock = mock().await;
    let (client, metrics) = llm_client(&settings(&mock, &[]));
    assert!(client.is_configured());
    assert_eq!(client.default_model(), settings::DEFAULT_MODEL);

    let first = client.complete(request(Scenario::Review)).await.unwrap();
    assert_eq!(analysis_of(&first)["verdict"], "review_needed");
    assert_eq!(first.model, settings::DEFAULT_MODEL);
    assert_eq!(first.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(first.cache_read_tokens, Some(0));
    let second = client.complete(request(Scenario::Review)).await.unwrap();
    let cached = second.cache_read_tokens.unwrap();
    assert!(cached > 0, "the second call reads the cached system prompt");

    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    let sent = &seen[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(
        sent.json().unwrap(),
        json!({
            "model": settings::DEFAULT_MODEL,
            "max_tokens": 1024,
            "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": request(Scenario::Review).prompt}],
        })
    );

    // Without caching the system block has no cache_control.
    let uncached = CompletionRequest {
        cache_system: false,
        ..request(Scenario::Clear)
    };
    let third = client.complete(uncached).await.unwrap();
    assert_eq!(third.cache_read_tokens, Some(0));
    let body = mock.requests()[2].json().unwrap();
    assert_eq!(body["system"], json!([{"type": "text", "text": SYSTEM}]));

    assert_eq!(metrics.llm.get(CallResult::Success), 3);
    assert_eq!(metrics.llm.duration.get_sample_count(), 3);
    let input: u64 = [&first, &second, &third]
        .iter()
        .map(|c| c.input_tokens.unwrap())
        .sum();
    assert_eq!(metrics.tokens("input"), input);
    assert_eq!(metrics.tokens("cache_read"), cached);
    let output: u64 = [&first, &second, &third]
        .iter()
        .map(|c| c.output_tokens.unwrap())
        .sum();
    assert_eq!(metrics.tokens("output"), output);
}

#[tokio::test]
async fn token_cap_and_max_tokens_stop() {
    let mock = mock().await;
    let (client, _) = llm_client(&settings(&mock, &[("MNEMOM_ANALYSIS_MAX_TOKENS", "2048")]));
    let big = CompletionRequest {
        max_tokens: 5000,
        ..request(Scenario::Clear)
    };
    let answer = client.complete(big).await.unwrap();
    assert_eq!(mock.requests()[0].json().unwrap()["max_tokens"], 2048);
    assert_eq!(answer.stop_reason.as_deref(), Some("end_turn"));

    let tiny = CompletionRequest {
        max_tokens: 0,
        ..request(Scenario::Clear)
    };
    let cut = client.complete(tiny).await.unwrap();
    assert_eq!(mock.requests()[1].json().unwrap()["max_tokens"], 1);
    assert_eq!(cut.stop_reason.as_deref(), Some("max_tokens"));
    assert_eq!(cut.text.chars().count(), 4);
}

#[tokio::test]
async fn model_allow_list() {
    let mock = mock().await;
    let models = format!("{}, claude-sonnet-4-5", settings::DEFAULT_MODEL);
    let (client, metrics) = llm_client(&settings(
        &mock,
        &[("MNEMOM_ANALYSIS_MODELS", models.as_str())],
    ));
    let sonnet = CompletionRequest {
        model: Some("claude-sonnet-4-5".to_owned()),
        ..request(Scenario::Clear)
    };
    let answer = client.complete(sonnet).await.unwrap();
    assert_eq!(answer.model, "claude-sonnet-4-5");
    assert_eq!(
        mock.requests()[0].json().unwrap()["model"],
        "claude-sonnet-4-5"
    );

    let other = CompletionRequest {
        model: Some("gpt-4o".to_owned()),
        ..request(Scenario::Clear)
    };
    assert_eq!(
        client.complete(other).await,
        Err(LlmError::ModelNotAllowed("gpt-4o".to_owned()))
    );
    assert_eq!(mock.request_count(), 1, "a refused model is never sent");
    assert_eq!(metrics.llm.get(CallResult::Rejected), 1);
    assert_eq!(metrics.llm.get(CallResult::Success), 1);
}

#[tokio::test]
async fn unconfigured_client_sends_nothing() {
    let mock = mock().await;
    let base = mock.base_url();
    let settings = AnalysisSettings::from_source(&MapSource::from_pairs([(
        "MNEMOM_ANALYSIS_BASE_URL",
        base.as_str(),
    )]))
    .unwrap();
    let (client, metrics) = llm_client(&settings);
    assert!(!client.is_configured());
    assert_eq!(
        client.complete(request(Scenario::Clear)).await,
        Err(LlmError::NotConfigured)
    );
    assert_eq!(mock.request_count(), 0);
    assert_eq!(metrics.llm.get(CallResult::Rejected), 1);
}

#[tokio::test]
async fn error_mapping() {
    let mock = mock().await;
    let (client, metrics) = llm_client(&settings(
        &mock,
        &[("MNEMOM_ANALYSIS_BREAKER_FAILURES", "100")],
    ));
    let call = |scenario| client.complete(request(scenario));

    assert_eq!(
        call(Scenario::Error500).await,
        Err(LlmError::Upstream("500: Internal server error".to_owned()))
    );
    assert_eq!(
        call(Scenario::Overloaded).await,
        Err(LlmError::Upstream("529: Overloaded".to_owned()))
    );
    assert_eq!(
        call(Scenario::Empty).await,
        Err(LlmError::Upstream("the answer has no text".to_owned()))
    );
    // Unusable analyses are the policy's business: the client returns the text as it came.
    for scenario in [Scenario::Malformed, Scenario::Invalid, Scenario::Fenced] {
        let completion = call(scenario).await.unwrap();
        assert_eq!(Some(completion.text), scenario.answer_text());
    }
    let mut unknown = request(Scenario::Clear);
    unknown.prompt = "MOCK-ANALYSIS:nope".to_owned();
    assert_eq!(
        client.complete(unknown).await,
        Err(LlmError::Upstream(
            "400: unknown mock scenario `nope`".to_owned()
        ))
    );
    assert_eq!(metrics.llm.get(CallResult::Error), 4);
    assert_eq!(metrics.llm.get(CallResult::Success), 3);

    // A closed port: a connection error, not a timeout.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let closed = format!("http://127.0.0.1:{port}");
    let settings = AnalysisSettings::from_source(&MapSource::from_pairs([
        ("ANTHROPIC_API_KEY", KEY),
        ("MNEMOM_ANALYSIS_BASE_URL", closed.as_str()),
    ]))
    .unwrap();
    let (refused, _) = llm_client(&settings);
    match refused.complete(request(Scenario::Clear)).await {
        Err(LlmError::Upstream(message)) => {
            assert!(message.starts_with("request failed: "), "{message}");
            assert!(!message.contains(KEY));
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[tokio::test]
async fn timeout_is_enforced() {
    let mock = mock().await;
    let (client, metrics) = llm_client(&settings(&mock, &[("MNEMOM_ANALYSIS_TIMEOUT_MS", "200")]));
    let started = Instant::now();
    assert_eq!(
        client.complete(request(Scenario::Timeout)).await,
        Err(LlmError::Timeout)
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(metrics.llm.get(CallResult::Timeout), 1);
    // The client closed the connection: the mock stops waiting.
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mock.in_flight(), 0);
}

#[tokio::test]
async fn breaker_opens_fails_fast_then_probes_once() {
    // `timeout` answers clear after 300 ms here: a slow probe.
    let mock = mock_with_delay(Duration::from_millis(300)).await;
    let (client, metrics) = llm_client(&settings(
        &mock,
        &[
            ("MNEMOM_ANALYSIS_BREAKER_FAILURES", "3"),
            ("MNEMOM_ANALYSIS_BREAKER_OPEN_MS", "300"),
            ("MNEMOM_ANALYSIS_TIMEOUT_MS", "5000"),
        ],
    ));
    for _ in 0..3 {
        assert!(matches!(
            client.complete(request(Scenario::Overloaded)).await,
            Err(LlmError::Upstream(_))
        ));
    }
    assert_eq!(client.breaker_state(), BreakerState::Open);
    assert_eq!(metrics.llm.breaker_state.get(), 1);
    let started = Instant::now();
    assert!(matches!(
        client.complete(request(Scenario::Clear)).await,
        Err(LlmError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_millis(100), "fails fast");
    assert_eq!(mock.request_count(), 3);
    assert_eq!(metrics.llm.get(CallResult::Rejected), 1);

    tokio::time::sleep(Duration::from_millis(350)).await;
    // Eight concurrent callers: exactly one probe reaches the endpoint.
    let results = join_all((0..8).map(|_| client.complete(request(Scenario::Timeout)))).await;
    let (ok, unavailable): (Vec<_>, Vec<_>) = results.iter().partition(|r| r.is_ok());
    assert_eq!(ok.len(), 1);
    assert_eq!(unavailable.len(), 7);
    assert!(
        unavailable
            .iter()
            .all(|r| matches!(r, Err(LlmError::Unavailable(_))))
    );
    assert_eq!(mock.request_count(), 4);
    assert_eq!(client.breaker_state(), BreakerState::Closed);
    assert_eq!(metrics.llm.breaker_state.get(), 0);
    assert!(client.complete(request(Scenario::Clear)).await.is_ok());
    assert_eq!(metrics.llm.get(CallResult::Rejected), 8);
}

#[tokio::test]
async fn half_open_state_is_visible_and_a_failed_probe_reopens() {
    let mock = mock_with_delay(Duration::from_millis(300)).await;
    let (client, metrics) = llm_client(&settings(
        &mock,
        &[
            ("MNEMOM_ANALYSIS_BREAKER_FAILURES", "2"),
            ("MNEMOM_ANALYSIS_BREAKER_OPEN_MS", "200"),
            ("MNEMOM_ANALYSIS_TIMEOUT_MS", "150"),
        ],
    ));
    // Timeouts count as failures.
    for _ in 0..2 {
        assert_eq!(
            client.complete(request(Scenario::Timeout)).await,
            Err(LlmError::Timeout)
        );
    }
    assert_eq!(client.breaker_state(), BreakerState::Open);
    tokio::time::sleep(Duration::from_millis(250)).await;

    // A slow probe in flight: the gauge reads half-open and others fail fast.
    let probe = tokio::spawn({
        let client = client.clone();
        async move { client.complete(request(Scenario::Timeout)).await }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.request_count() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(client.breaker_state(), BreakerState::HalfOpen);
    assert_eq!(metrics.llm.breaker_state.get(), 2);
    assert!(matches!(
        client.complete(request(Scenario::Clear)).await,
        Err(LlmError::Unavailable(_))
    ));
    // The probe times out: open again for a full period.
    assert_eq!(probe.await.unwrap(), Err(LlmError::Timeout));
    assert_eq!(client.breaker_state(), BreakerState::Open);
    assert!(matches!(
        client.complete(request(Scenario::Clear)).await,
        Err(LlmError::Unavailable(_))
    ));
    assert_eq!(mock.request_count(), 3);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(client.complete(request(Scenario::Clear)).await.is_ok());
    assert_eq!(client.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn refused_requests_do_not_open_the_breaker() {
    let mock = mock().await;
    let (client, _) = llm_client(&settings(
        &mock,
        &[("MNEMOM_ANALYSIS_BREAKER_FAILURES", "2")],
    ));
    let mut unknown = request(Scenario::Clear);
    unknown.prompt = "MOCK-ANALYSIS:typo".to_owned();
    for _ in 0..5 {
        assert!(matches!(
            client.complete(unknown.clone()).await,
            Err(LlmError::Upstream(m)) if m.starts_with("400: ")
        ));
    }
    assert_eq!(client.breaker_state(), BreakerState::Closed);
    // An empty 2xx answer is a failure.
    for _ in 0..2 {
        assert!(client.complete(request(Scenario::Empty)).await.is_err());
    }
    assert_eq!(client.breaker_state(), BreakerState::Open);
}

#[tokio::test]
async fn metrics_are_registered_at_zero() {
    let registry = prometheus::Registry::new();
    let analysis = Analysis::new(&AnalysisSettings::default(), &registry).unwrap();
    assert_eq!(analysis.mode, AnalysisMode::None);
    assert!(analysis.hybrid.is_none());
    let families = registry.gather();
    let series = |name: &str| {
        families
            .iter()
            .find(|f| f.name() == name)
            .map(|f| f.get_metric().len())
    };
    assert_eq!(series("gateway_analysis_requests_total"), Some(4));
    assert_eq!(series("gateway_analysis_tokens_total"), Some(3));
    assert_eq!(series("gateway_analysis_duration_seconds"), Some(1));
    assert_eq!(series("gateway_analysis_breaker_state"), Some(1));
    assert_eq!(series("gateway_hybrid_requests_total"), Some(4));
    assert_eq!(series("gateway_hybrid_duration_seconds"), Some(1));
    assert_eq!(series("gateway_hybrid_breaker_state"), Some(1));
    // The gateway's own registry accepts them next to its families.
    let gateway = crate::metrics::Metrics::new().unwrap();
    Analysis::new(&AnalysisSettings::default(), gateway.registry()).unwrap();
    let (_, text) = gateway.render();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("gateway_analysis_requests_total{result=\"rejected\"} 0"));
    assert!(text.contains("gateway_analysis_tokens_total{kind=\"cache_read\"} 0"));
    assert!(text.contains("gateway_analysis_breaker_state 0"));
}

fn hybrid_request(scenario: Scenario) -> HybridRequest {
    HybridRequest {
        thinking_block: format!("I should check this. {}", scenario.marker()),
        thinking_metadata: ThinkingMetadata {
            provider: "anthropic".to_owned(),
            model: "claude-sonnet-4-5".to_owned(),
        },
        agent_id: "smolt-0123abcd".to_owned(),
        session_id: "0123abcd-491234".to_owned(),
        card: json!({"card_id": "ac-1", "values": []}),
        conscience_values: vec![HybridConscienceValue {
            kind: "BOUNDARY".to_owned(),
            content: "Never deceive the user.".to_owned(),
            id: Some("boundary-no-deception".to_owned()),
        }],
        task_context: "A coding assistant.".to_owned(),
        window_context: vec![WindowContextEntry {
            checkpoint_id: "ic-prev".to_owned(),
            verdict: Verdict::Clear,
            reasoning_summary: "fine".to_owned(),
        }],
    }
}

fn hybrid_client(settings: &AnalysisSettings) -> (HybridClient, AnalysisMetrics) {
    let analysis = Analysis::with_metrics(settings, AnalysisMetrics::unregistered());
    assert_eq!(analysis.mode, AnalysisMode::Hybrid);
    assert!(!analysis.llm.is_configured());
    (analysis.hybrid.unwrap(), analysis.metrics)
}

#[tokio::test]
async fn hybrid_happy_path() {
    let mock = mock().await;
    let (client, metrics) = hybrid_client(&hybrid_settings(&mock, &[]));
    let answer = client
        .analyze(hybrid_request(Scenario::Boundary))
        .await
        .unwrap();
    assert_eq!(answer.checkpoint.verdict, Verdict::BoundaryViolation);
    assert!(!answer.proceed);
    assert_eq!(
        answer.recommended_action,
        RecommendedAction::DenyAndEscalate
    );
    assert_eq!(answer.checkpoint.concerns[0].severity, Severity::Critical);
    assert!(answer.checkpoint.checkpoint_id.starts_with("ic-"));
    assert_eq!(answer.checkpoint.extra["window_position"]["index"], 1);
    let attestation = answer.attestation.unwrap();
    assert!(attestation.certificate_id.starts_with("cert-"));
    assert_eq!(attestation.chain_hash.len(), 64);

    let sent = &mock.requests()[0];
    assert_eq!(sent.path, "/analyze");
    assert_eq!(sent.header("x-mnemom-api-key"), Some(MNEMOM_KEY));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    let body = sent.json().unwrap();
    assert_eq!(body["store_checkpoint"], true);
    assert_eq!(body["agent_id"], "smolt-0123abcd");
    assert_eq!(body["thinking_metadata"]["model"], "claude-sonnet-4-5");
    assert_eq!(body["window_context"][0]["verdict"], "clear");
    assert_eq!(body["conscience_values"][0]["type"], "BOUNDARY");

    let clear = client
        .analyze(hybrid_request(Scenario::Clear))
        .await
        .unwrap();
    assert_eq!(clear.checkpoint.verdict, Verdict::Clear);
    assert!(clear.proceed);
    assert_eq!(clear.recommended_action, RecommendedAction::Continue);
    assert!(clear.attestation.is_none());
    assert_eq!(metrics.hybrid.get(CallResult::Success), 2);
    assert_eq!(metrics.llm.get(CallResult::Success), 0);
}

#[tokio::test]
async fn hybrid_errors() {
    let mock = mock().await;
    let (client, metrics) = hybrid_client(&hybrid_settings(
        &mock,
        &[
            ("MNEMOM_ANALYZE_TIMEOUT_MS", "200"),
            ("MNEMOM_ANALYSIS_BREAKER_FAILURES", "100"),
        ],
    ));
    let call = |scenario| client.analyze(hybrid_request(scenario));
    assert_eq!(
        call(Scenario::Error500).await,
        Err(HybridError::Upstream(
            "500: Internal server error".to_owned()
        ))
    );
    assert_eq!(
        call(Scenario::Overloaded).await,
        Err(HybridError::Upstream("529: Overloaded".to_owned()))
    );
    for scenario in [Scenario::Malformed, Scenario::Invalid, Scenario::Empty] {
        assert!(
            matches!(call(scenario).await, Err(HybridError::InvalidResponse(_))),
            "{scenario:?}"
        );
    }
    assert_eq!(call(Scenario::Timeout).await, Err(HybridError::Timeout));
    assert_eq!(metrics.hybrid.get(CallResult::Error), 5);
    assert_eq!(metrics.hybrid.get(CallResult::Timeout), 1);
}

#[tokio::test]
async fn hybrid_breaker() {
    let mock = mock().await;
    let (client, metrics) = hybrid_client(&hybrid_settings(
        &mock,
        &[
            ("MNEMOM_ANALYSIS_BREAKER_FAILURES", "2"),
            ("MNEMOM_ANALYSIS_BREAKER_OPEN_MS", "200"),
        ],
    ));
    for _ in 0..2 {
        assert!(
            client
                .analyze(hybrid_request(Scenario::Error500))
                .await
                .is_err()
        );
    }
    assert_eq!(client.breaker_state(), BreakerState::Open);
    assert_eq!(metrics.hybrid.breaker_state.get(), 1);
    assert!(matches!(
        client.analyze(hybrid_request(Scenario::Clear)).await,
        Err(HybridError::Unavailable(_))
    ));
    assert_eq!(mock.request_count(), 2);
    assert_eq!(metrics.hybrid.get(CallResult::Rejected), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        client
            .analyze(hybrid_request(Scenario::Review))
            .await
            .is_ok()
    );
    assert_eq!(client.breaker_state(), BreakerState::Closed);
    assert_eq!(metrics.llm.breaker_state.get(), 0);
}
