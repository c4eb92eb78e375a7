//! End to end through the real gateway and the real adapter components: all three providers,
//! JSON and SSE; the client receives exactly the provider's bytes, the provider receives the
//! adapter's injected settings, and extraction sees thinking, text, tool calls and usage.

use super::support::*;

struct Case {
    path: &'static str,
    auth: (&'static str, &'static str),
    body: &'static str,
    fixture: &'static str,
    content_type: &'static str,
    expect_thinking: bool,
}

fn cases() -> Vec<Case> {
    let bearer = ("authorization", "Bearer sk-test-key");
    let anthropic = ("x-api-key", ANTHROPIC_KEY);
    let gemini = ("x-goog-api-key", GEMINI_KEY);
    let claude = r#"{"model":"claude-sonnet-4-20250514","max_tokens":16000,"messages":[{"role":"user","content":"hi"}]}"#;
    let claude_stream = r#"{"model":"claude-sonnet-4-20250514","max_tokens":16000,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let gpt = r#"{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}"#;
    let gpt_stream = r#"{"model":"gpt-5","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let responses = r#"{"model":"o3","input":"hi"}"#;
    let responses_stream = r#"{"model":"o3","input":"hi","stream":true}"#;
    let gemini_body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    vec![
        Case {
            path: "/anthropic/v1/messages",
            auth: anthropic,
            body: claude,
            fixture: "anthropic/messages-thinking-signature-text.json",
            content_type: "application/json",
            expect_thinking: true,
        },
        Case {
            path: "/anthropic/v1/messages",
            auth: anthropic,
            body: claude,
            fixture: "anthropic/messages-thinking-text-tool-use.json",
            content_type: "application/json",
            expect_thinking: true,
        },
        Case {
            path: "/anthropic/v1/messages",
            auth: anthropic,
            body: claude_stream,
            fixture: "anthropic/messages-stream-thinking-signature-text.sse",
            content_type: "text/event-stream",
            expect_thinking: true,
        },
        Case {
            path: "/anthropic/v1/messages",
            auth: anthropic,
            body: claude_stream,
            fixture: "anthropic/messages-stream-tool-use-input-json-delta.docs-example.sse",
            content_type: "text/event-stream",
            expect_thinking: false,
        },
        Case {
            path: "/openai/v1/chat/completions",
            auth: bearer,
            body: gpt,
            fixture: "openai/chat-completions-tool-calls.json",
            content_type: "application/json",
            expect_thinking: false,
        },
        Case {
            path: "/openai/v1/chat/completions",
            auth: bearer,
            body: gpt_stream,
            fixture: "openai/chat-completions-stream-tool-call-include-usage.sse",
            content_type: "text/event-stream",
            expect_thinking: false,
        },
        Case {
            path: "/openai/v1/responses",
            auth: bearer,
            body: responses,
            fixture: "openai/responses-reasoning-summary-message.json",
            content_type: "application/json",
            expect_thinking: true,
        },
        Case {
            path: "/openai/v1/responses",
            auth: bearer,
            body: responses_stream,
            fixture: "openai/responses-stream-reasoning-summary-text.sse",
            content_type: "text/event-stream",
            expect_thinking: true,
        },
        Case {
            path: "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
            auth: gemini,
            body: gemini_body,
            fixture: "gemini/generate-content-thought-parts-signature-text.json",
            content_type: "application/json",
            expect_thinking: true,
        },
        Case {
            path: "/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            auth: gemini,
            body: gemini_body,
            fixture: "gemini/stream-generate-content-thought-parts-text.sse",
            content_type: "text/event-stream",
            expect_thinking: true,
        },
        Case {
            path: "/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            auth: gemini,
            body: gemini_body,
            fixture: "gemini/stream-generate-content-function-call-thought-signature.sse",
            content_type: "text/event-stream",
            expect_thinking: false,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_json_and_sse_bytes_are_unchanged_and_extracted() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    for (i, case) in cases().into_iter().enumerate() {
        mock.clear();
        let response = post(
            &gateway.url(case.path),
            &[
                case.auth,
                ("content-type", "application/json"),
                ("x-mock-fixture", case.fixture),
                ("x-mock-chunk", "bytes:7"),
            ],
            case.body,
        )
        .await;
        assert_eq!(
            response.status, 200,
            "{}: {:?}",
            case.fixture, response.body
        );
        assert_eq!(
            response.body.as_ref(),
            fixture(case.fixture).as_slice(),
            "{}: bytes differ",
            case.fixture
        );
        assert!(
            response
                .header("content-type")
                .unwrap()
                .starts_with(case.content_type),
            "{}",
            case.fixture
        );
        assert!(
            response
                .header("x-smoltbot-agent")
                .unwrap()
                .starts_with("smolt-")
        );
        assert!(response.header("x-smoltbot-session").is_some());

        // What the provider received: the route prefix stripped, query kept, key forwarded.
        let received = mock.requests();
        assert_eq!(received.len(), 1);
        let upstream_path = case.path.split_once('/').map(|(_, p)| p).unwrap();
        let expected_path = &upstream_path[upstream_path.find('/').unwrap()..];
        let (expected_path, expected_query) = match expected_path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (expected_path, None),
        };
        assert_eq!(received[0].path, expected_path);
        assert_eq!(received[0].query.as_deref(), expected_query);
        assert_eq!(received[0].header(case.auth.0), Some(case.auth.1));

        let exchanges = gateway.collector.wait_for(i + 1).await;
        let exchange = &exchanges[i];
        assert_eq!(exchange.status, 200);
        let extracted = exchange
            .extracted
            .as_ref()
            .unwrap_or_else(|| panic!("{}: {:?}", case.fixture, exchange.extraction_note));
        assert_eq!(
            !extracted.thinking.is_empty(),
            case.expect_thinking,
            "{}: thinking",
            case.fixture
        );
        assert!(
            !extracted.text.is_empty() || !extracted.tool_calls.is_empty(),
            "{}: no text and no tool calls",
            case.fixture
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thinking_is_injected_into_what_the_provider_receives() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let claude = r#"{"model":"claude-sonnet-4-20250514","max_tokens":16000,"messages":[{"role":"user","content":"hi"}]}"#;
    post(
        &gateway.url("/anthropic/v1/messages"),
        &[("x-api-key", ANTHROPIC_KEY)],
        claude,
    )
    .await;
    let sent = mock.requests()[0].json().unwrap();
    assert_eq!(sent["thinking"]["type"], "enabled");
    assert_eq!(sent["thinking"]["budget_tokens"], 10000);
    assert_eq!(sent["max_tokens"], 16000);

    mock.clear();
    let gpt = r#"{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}"#;
    post(
        &gateway.url("/openai/v1/chat/completions"),
        &[("authorization", "Bearer k")],
        gpt,
    )
    .await;
    assert_eq!(
        mock.requests()[0].json().unwrap()["reasoning_effort"],
        "medium"
    );

    mock.clear();
    let body = r#"{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"temperature":0.2}}"#;
    post(
        &gateway.url("/gemini/v1beta/models/gemini-2.5-flash:generateContent"),
        &[("x-goog-api-key", "g")],
        body,
    )
    .await;
    let sent = mock.requests()[0].json().unwrap();
    assert_eq!(sent["generationConfig"]["temperature"], 0.2);
    assert_eq!(
        sent["generationConfig"]["thinkingConfig"]["includeThoughts"],
        true
    );

    // A request the adapter must not touch reaches the provider byte for byte.
    mock.clear();
    let cold = r#"{"model":"claude-sonnet-4-20250514","max_tokens":16000,"temperature":0.3,"messages":[]}"#;
    post(
        &gateway.url("/anthropic/v1/messages"),
        &[("x-api-key", ANTHROPIC_KEY)],
        cold,
    )
    .await;
    assert_eq!(mock.requests()[0].body.as_ref(), cold.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_query_key_and_bearer_anthropic_key_identify_the_agent() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let body = r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#;
    let by_query = post(
        &gateway.url("/gemini/v1beta/models/gemini-2.0-flash:generateContent?key=gkey"),
        &[],
        body,
    )
    .await;
    let by_header = post(
        &gateway.url("/gemini/v1beta/models/gemini-2.0-flash:generateContent"),
        &[("x-goog-api-key", "gkey")],
        body,
    )
    .await;
    assert_eq!(by_query.status, 200);
    assert_eq!(
        by_query.header("x-smoltbot-agent"),
        by_header.header("x-smoltbot-agent")
    );
    assert_eq!(mock.requests()[0].query.as_deref(), Some("key=gkey"));

    let claude = r#"{"model":"claude-3-5-haiku-latest","max_tokens":10,"messages":[]}"#;
    let a = post(
        &gateway.url("/anthropic/v1/messages"),
        &[("x-api-key", "same")],
        claude,
    )
    .await;
    let b = post(
        &gateway.url("/anthropic/v1/messages"),
        &[("authorization", "Bearer same")],
        claude,
    )
    .await;
    assert_eq!(a.header("x-smoltbot-agent"), b.header("x-smoltbot-agent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_whose_content_nothing_reads_is_only_summarized() {
    let mock = mock().await;
    // AIP on, no analysis configured: no check can judge a response.
    let gateway = TestGateway::start(&mock, &[]).await;
    gateway.collector.set_counts_only();
    let claude = r#"{"model":"claude-sonnet-4-20250514","max_tokens":16000,"messages":[]}"#;
    let summarized = r#"gateway_plugin_call_duration_seconds_count{function="summarize-response",plugin="anthropic"}"#;
    let parsed = r#"gateway_plugin_call_duration_seconds_count{function="parse-response",plugin="anthropic"}"#;
    let parsed_before = gateway.metric(parsed).await.unwrap_or(0.0);
    for (i, (name, tool_calls)) in [
        ("anthropic/messages-tool-use.json", 1),
        ("anthropic/messages-thinking-signature-text.json", 0),
    ]
    .into_iter()
    .enumerate()
    {
        let response = post(
            &gateway.url("/anthropic/v1/messages"),
            &[("x-api-key", ANTHROPIC_KEY), ("x-mock-fixture", name)],
            claude,
        )
        .await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body.as_ref(), fixture(name).as_slice());
        let exchanges = gateway.collector.wait_for(i + 1).await;
        let extracted = exchanges[i].extracted.as_ref().unwrap();
        assert!(extracted.is_summary(), "{name}");
        assert!(extracted.thinking.is_empty() && extracted.text.is_empty());
        assert_eq!(extracted.tool_call_count(), tool_calls, "{name}");
        assert!(extracted.usage.input_tokens.is_some(), "{name}");
        assert!(extracted.model.is_some() && extracted.stop_reason.is_some());
    }
    assert_eq!(gateway.metric(summarized).await, Some(2.0));
    // (An observer that reads content gets the full parse: the other tests here.)
    assert_eq!(gateway.metric(parsed).await.unwrap_or(0.0), parsed_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_without_the_summary_export_is_summarized_from_its_parse() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let wasm = testkit_wasm();
    std::fs::write(dir.path().join("compat.wasm"), &wasm).unwrap();
    let text = manifest(
        "compat",
        "compat",
        &wasm,
        "fail-open",
        1000,
        &[("name", "compat"), ("route-prefix", "/compat")],
    );
    std::fs::write(dir.path().join("compat.plugin.toml"), text).unwrap();
    let dirs = dir.path().display().to_string();
    let base = mock.base_url();
    let gateway = TestGateway::start(
        &mock,
        &[("MNEMOM_PLUGIN_DIRS", &dirs), ("COMPAT_BASE_URL", &base)],
    )
    .await;
    gateway.collector.set_counts_only();
    let response = post(
        &gateway.url("/compat/v1/chat/completions"),
        &[
            ("authorization", "Bearer compat-key"),
            ("x-mock-fixture", "openai/chat-completions-text.json"),
        ],
        r#"{"model":"gpt-4o","messages":[]}"#,
    )
    .await;
    assert_eq!(response.status, 200);
    let exchanges = gateway.collector.wait_for(1).await;
    let extracted = exchanges[0].extracted.as_ref().unwrap();
    assert!(extracted.is_summary() && extracted.text.is_empty());
    assert!(extracted.model.is_some());
    assert_eq!(extracted.tool_call_count(), 0);
    let parsed =
        r#"gateway_plugin_call_duration_seconds_count{function="parse-response",plugin="compat"}"#;
    assert_eq!(gateway.metric(parsed).await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_responses_are_forwarded_compressed_and_still_extracted() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let claude = r#"{"model":"claude-sonnet-4-20250514","max_tokens":16000,"messages":[]}"#;
    let response = post(
        &gateway.url("/anthropic/v1/messages"),
        &[
            ("x-api-key", ANTHROPIC_KEY),
            ("accept-encoding", "gzip"),
            ("x-mock-gzip", "1"),
        ],
        claude,
    )
    .await;
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(response.body.as_ref()),
        &mut decoded,
    )
    .unwrap();
    assert_eq!(
        decoded,
        fixture("anthropic/messages-thinking-signature-text.json")
    );
    let exchanges = gateway.collector.wait_for(1).await;
    assert!(!exchanges[0].extracted.as_ref().unwrap().thinking.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_not_buffered() {
    // The mock sends one event, then waits 800 ms before the rest: the client must see the first
    // event long before the stream ends.
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let request = http::Request::post(gateway.url("/anthropic/v1/messages"))
        .header("x-api-key", ANTHROPIC_KEY)
        .header("x-mock-chunk-delay-ms", "400")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"model":"claude-sonnet-4-20250514","max_tokens":16000,"stream":true,"messages":[]}"#,
        )))
        .unwrap();
    let started = std::time::Instant::now();
    let response = client().request(request).await.unwrap();
    let mut body = response.into_body();
    let first = http_body_util::BodyExt::frame(&mut body)
        .await
        .unwrap()
        .unwrap();
    let first_at = started.elapsed();
    assert!(
        first
            .data_ref()
            .is_some_and(|d| d.starts_with(b"event: message_start"))
    );
    let mut rest = 0usize;
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        rest += frame.unwrap().data_ref().map_or(0, |d| d.len());
    }
    let total = started.elapsed();
    assert!(rest > 0);
    // Structural, not a speed target: the first event arrives at least two chunk delays before the end.
    assert!(
        total - first_at >= std::time::Duration::from_millis(800),
        "first {first_at:?}, total {total:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_served_on_request_workers_or_on_the_main_runtime() {
    let mock = mock().await;
    // 3 workers (more than this machine's CPUs: connections are spread round robin) and 0 (no
    // workers: connections run on the runtime that accepts them).
    for workers in ["3", "0"] {
        let gateway = TestGateway::start(&mock, &[("MNEMOM_WORKER_THREADS", workers)]).await;
        let mut calls = Vec::new();
        for i in 0..8 {
            let (fixture_name, body) = if i % 2 == 0 {
                (
                    "anthropic/messages-thinking-signature-text.json",
                    r#"{"model":"claude-sonnet-4-20250514","max_tokens":16000,"messages":[{"role":"user","content":"hi"}]}"#,
                )
            } else {
                (
                    "anthropic/messages-stream-thinking-signature-text.sse",
                    r#"{"model":"claude-sonnet-4-20250514","max_tokens":16000,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
                )
            };
            let url = gateway.url("/anthropic/v1/messages");
            calls.push(tokio::spawn(async move {
                let response = post(
                    &url,
                    &[
                        ("x-api-key", ANTHROPIC_KEY),
                        ("content-type", "application/json"),
                        ("x-mock-fixture", fixture_name),
                        ("x-mock-chunk", "bytes:64"),
                    ],
                    body,
                )
                .await;
                (fixture_name, response)
            }));
        }
        for call in calls {
            let (fixture_name, response) = call.await.unwrap();
            assert_eq!(response.status, 200, "workers={workers}: {fixture_name}");
            assert_eq!(
                response.body.as_ref(),
                fixture(fixture_name).as_slice(),
                "workers={workers}: {fixture_name}: bytes differ"
            );
        }
        let exchanges = gateway.collector.wait_for(8).await;
        assert!(
            exchanges.iter().all(|e| e.extracted.is_some()),
            "workers={workers}: every exchange extracted"
        );
        // A graceful stop returns (the workers stop after the connections drained).
        tokio::time::timeout(std::time::Duration::from_secs(10), gateway.stop())
            .await
            .unwrap_or_else(|_| panic!("workers={workers}: the gateway did not stop"));
    }
}
