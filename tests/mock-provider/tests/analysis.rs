//! End-to-end tests of the mock analysis LLM and hybrid endpoint over real HTTP on 127.0.0.1.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on any unexpected failure"
)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mnemom_mock_provider::{MockAnalysis, MockAnalysisOptions, Scenario};
use serde_json::{Value, json};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn post(
    client: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (StatusCode, Bytes) {
    let mut request = Request::builder().method(Method::POST).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

const HEADERS: &[(&str, &str)] = &[
    ("x-api-key", "sk-test"),
    ("anthropic-version", "2023-06-01"),
    ("content-type", "application/json"),
];

fn messages(prompt: &str, max_tokens: u64, cache: bool) -> Value {
    let mut system = json!({"type": "text", "text": "You are a careful analyst. ".repeat(20)});
    if cache {
        system["cache_control"] = json!({"type": "ephemeral"});
    }
    json!({
        "model": "claude-haiku-4-5-20251001",
        "max_tokens": max_tokens,
        "system": [system],
        "messages": [{"role": "user", "content": prompt}],
    })
}

fn json(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[tokio::test]
async fn every_analysis_scenario_answers_with_its_script() {
    let mock = MockAnalysis::start(MockAnalysisOptions::default())
        .await
        .unwrap();
    let http = client();
    for scenario in Scenario::ALL {
        if *scenario == Scenario::Timeout {
            continue;
        }
        let prompt = format!("THINKING BLOCK TO EVALUATE:\n\nhmm {}", scenario.marker());
        let (status, body) = post(
            &http,
            &mock.url("/v1/messages"),
            HEADERS,
            &messages(&prompt, 1024, true),
        )
        .await;
        let body = json(&body);
        if let Some((code, error)) = scenario.error() {
            assert_eq!(status.as_u16(), code, "{scenario:?}");
            assert_eq!(body, error);
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{scenario:?}");
        assert_eq!(body["type"], "message");
        assert_eq!(body["model"], "claude-haiku-4-5-20251001");
        let text = body["content"][0]["text"].as_str().map(str::to_owned);
        assert_eq!(text, scenario.answer_text(), "{scenario:?}");
        if let (Some(text), Some(analysis)) = (&text, scenario.analysis())
            && *scenario != Scenario::Fenced
        {
            assert_eq!(serde_json::from_str::<Value>(text).unwrap(), analysis);
        }
    }
    // No marker: clear.
    let (_, body) = post(
        &http,
        &mock.url("/v1/messages"),
        HEADERS,
        &messages("no marker", 1024, false),
    )
    .await;
    let text = json(&body)["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["verdict"],
        "clear"
    );
    assert_eq!(mock.request_count(), Scenario::ALL.len() as u64);
}

#[tokio::test]
async fn usage_caching_and_max_tokens() {
    let mock = MockAnalysis::start(MockAnalysisOptions::default())
        .await
        .unwrap();
    let http = client();
    let url = mock.url("/v1/messages");
    let prompt = "MOCK-ANALYSIS:review";
    let (_, first) = post(&http, &url, HEADERS, &messages(prompt, 1024, true)).await;
    let (_, second) = post(&http, &url, HEADERS, &messages(prompt, 1024, true)).await;
    let (_, plain) = post(&http, &url, HEADERS, &messages(prompt, 1024, false)).await;
    let (first, second, plain) = (json(&first), json(&second), json(&plain));
    let system_tokens = first["usage"]["cache_creation_input_tokens"]
        .as_u64()
        .unwrap();
    assert!(system_tokens > 100);
    assert_eq!(first["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(second["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(second["usage"]["cache_read_input_tokens"], system_tokens);
    assert_eq!(
        second["usage"]["input_tokens"],
        first["usage"]["input_tokens"]
    );
    assert_eq!(plain["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(
        plain["usage"]["input_tokens"].as_u64().unwrap(),
        first["usage"]["input_tokens"].as_u64().unwrap() + system_tokens
    );
    assert!(first["usage"]["output_tokens"].as_u64().unwrap() > 10);

    let (_, cut) = post(&http, &url, HEADERS, &messages(prompt, 3, true)).await;
    let cut = json(&cut);
    assert_eq!(cut["stop_reason"], "max_tokens");
    assert_eq!(cut["usage"]["output_tokens"], 3);
    assert_eq!(
        cut["content"][0]["text"].as_str().unwrap().chars().count(),
        12
    );

    // Recorded with headers and body.
    let seen = mock.requests();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0].header("x-api-key"), Some("sk-test"));
    assert_eq!(
        seen[0].json().unwrap()["system"][0]["cache_control"]["type"],
        "ephemeral"
    );
    mock.clear();
    assert_eq!(mock.request_count(), 0);
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn messages_validation() {
    let mock = MockAnalysis::start(MockAnalysisOptions::default())
        .await
        .unwrap();
    let http = client();
    let url = mock.url("/v1/messages");
    let body = messages("hi", 10, false);
    let (status, error) = post(&http, &url, &[("anthropic-version", "2023-06-01")], &body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&error)["error"]["type"], "authentication_error");
    let (status, _) = post(&http, &url, &[("x-api-key", "k")], &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for broken in [
        json!({"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "m", "max_tokens": 10, "messages": []}),
    ] {
        let (status, error) = post(&http, &url, HEADERS, &broken).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{broken}");
        assert_eq!(json(&error)["error"]["type"], "invalid_request_error");
    }
    let (status, error) = post(
        &http,
        &url,
        HEADERS,
        &messages("MOCK-ANALYSIS:nope", 10, false),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json(&error)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    let (status, _) = post(&http, &mock.url("/v1/other"), HEADERS, &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn timeout_scenario_waits_and_notices_a_disconnect() {
    let mock = MockAnalysis::start(MockAnalysisOptions {
        timeout_delay: Duration::from_millis(200),
        ..MockAnalysisOptions::default()
    })
    .await
    .unwrap();
    let http = client();
    let url = mock.url("/v1/messages");
    let started = Instant::now();
    let (status, body) = post(
        &http,
        &url,
        HEADERS,
        &messages("MOCK-ANALYSIS:timeout", 1024, false),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(status, StatusCode::OK);
    let text = json(&body)["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["verdict"],
        "clear"
    );

    // With the default 30 s, a client that gives up frees the mock at once.
    let slow = MockAnalysis::start(MockAnalysisOptions::default())
        .await
        .unwrap();
    let url = slow.url("/v1/messages");
    let attempt = tokio::time::timeout(
        Duration::from_millis(200),
        post(
            &client(),
            &url,
            HEADERS,
            &messages("MOCK-ANALYSIS:timeout", 1024, false),
        ),
    )
    .await;
    assert!(attempt.is_err());
    assert_eq!(slow.request_count(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while slow.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(slow.in_flight(), 0);

    // Shutting down ends a pending wait too.
    let pending = tokio::spawn({
        let url = url.clone();
        async move {
            let request = Request::builder()
                .method(Method::POST)
                .uri(url)
                .header("x-api-key", "k")
                .header("anthropic-version", "2023-06-01")
                .body(Full::new(Bytes::from(
                    messages("MOCK-ANALYSIS:timeout", 10, false).to_string(),
                )))
                .unwrap();
            client().request(request).await.is_ok()
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while slow.in_flight() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    slow.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn hybrid_body(marker: &str) -> Value {
    json!({
        "thinking_block": format!("thinking {marker}"),
        "thinking_metadata": {"provider": "anthropic", "model": "claude-sonnet-4-5"},
        "agent_id": "smolt-1",
        "session_id": "s-1",
        "card": {"card_id": "ac-1"},
        "conscience_values": [],
        "task_context": "t",
        "window_context": [],
        "store_checkpoint": true,
    })
}

#[tokio::test]
async fn hybrid_endpoint() {
    let mock = MockAnalysis::start(MockAnalysisOptions::default())
        .await
        .unwrap();
    let http = client();
    let url = mock.analyze_url();
    let key = &[("x-mnemom-api-key", "mk-1")][..];

    let (status, body) = post(&http, &url, key, &hybrid_body("MOCK-ANALYSIS:injection")).await;
    assert_eq!(status, StatusCode::OK);
    let body = json(&body);
    assert_eq!(body["checkpoint"]["verdict"], "boundary_violation");
    assert_eq!(
        body["checkpoint"]["concerns"][0]["category"],
        "prompt_injection"
    );
    assert_eq!(body["checkpoint"]["agent_id"], "smolt-1");
    assert_eq!(body["checkpoint"]["card_id"], "ac-1");
    assert_eq!(body["proceed"], false);
    assert_eq!(body["recommended_action"], "pause_for_review");
    assert!(body["attestation"]["certificate_id"].is_string());

    let (_, clear) = post(&http, &url, key, &hybrid_body("")).await;
    let clear = json(&clear);
    assert_eq!(clear["checkpoint"]["verdict"], "clear");
    assert_eq!(clear["proceed"], true);
    assert!(clear.get("attestation").is_none());

    let (_, fenced) = post(&http, &url, key, &hybrid_body("MOCK-ANALYSIS:fenced")).await;
    assert_eq!(json(&fenced)["checkpoint"]["verdict"], "review_needed");
    let (_, invalid) = post(&http, &url, key, &hybrid_body("MOCK-ANALYSIS:invalid")).await;
    assert_eq!(
        json(&invalid)["checkpoint"]["concerns"][0]["severity"],
        "severe"
    );
    let (status, prose) = post(&http, &url, key, &hybrid_body("MOCK-ANALYSIS:malformed")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&prose).is_err());
    let (status, _) = post(&http, &url, key, &hybrid_body("MOCK-ANALYSIS:error500")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (status, _) = post(&http, &url, key, &hybrid_body("MOCK-ANALYSIS:overloaded")).await;
    assert_eq!(status.as_u16(), 529);
    let (status, _) = post(&http, &url, &[], &hybrid_body("")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(&http, &url, key, &json!({"agent_id": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let seen = mock.requests();
    assert_eq!(seen[0].path, "/analyze");
    assert_eq!(seen[0].header("x-mnemom-api-key"), Some("mk-1"));
    assert_eq!(seen[0].json().unwrap()["store_checkpoint"], true);
}
