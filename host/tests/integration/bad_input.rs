//! Bad input gets a clear, provider-shaped error and never disturbs the gateway.

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_forwarded_untouched() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let broken = br#"{"model":"claude-sonnet-4-20250514","max_tokens":16000,"messages":[ oops"#;
    let response = post(
        &gateway.url("/anthropic/v1/messages"),
        &[("x-api-key", ANTHROPIC_KEY), ("x-mock-status", "400")],
        &broken[..],
    )
    .await;
    assert_eq!(response.status, 400, "the provider's own answer comes back");
    assert_eq!(
        mock.requests()[0].body.as_ref(),
        &broken[..],
        "no injection into malformed JSON"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_is_401_in_each_providers_shape() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let anthropic = post(&gateway.url("/anthropic/v1/messages"), &[], "{}").await;
    assert_eq!(anthropic.status, 401);
    let body = anthropic.json();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-api-key")
    );

    let openai = post(&gateway.url("/openai/v1/chat/completions"), &[], "{}").await;
    assert_eq!(openai.status, 401);
    assert!(
        openai.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );

    let gemini = post(
        &gateway.url("/gemini/v1beta/models/gemini-2.5-pro:generateContent"),
        &[],
        "{}",
    )
    .await;
    assert_eq!(gemini.status, 401);
    assert_eq!(gemini.json()["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(gemini.json()["error"]["code"], 401);
    assert!(mock.requests().is_empty(), "nothing reached the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_key_header_values_are_401() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let basic = post(
        &gateway.url("/openai/v1/chat/completions"),
        &[("authorization", "Basic abc")],
        "{}",
    )
    .await;
    assert_eq!(basic.status, 401);
    let mut request = http::Request::post(gateway.url("/anthropic/v1/messages"));
    request = request.header(
        "x-api-key",
        http::HeaderValue::from_bytes(b"k\xffey").unwrap(),
    );
    let response = send(
        request
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["error"]["type"], "authentication_error");
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_body_is_413() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[("MNEMOM_MAX_REQUEST_BYTES", "1024")]).await;
    let big = vec![b' '; 4096];
    let response = post(
        &gateway.url("/anthropic/v1/messages"),
        &[("x-api-key", ANTHROPIC_KEY)],
        big.clone(),
    )
    .await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["error"]["type"], "request_too_large");

    // Without a content-length (chunked), the limit still holds.
    let stream = futures_util::stream::iter((0..8).map(|_| {
        Ok::<_, std::io::Error>(http_body::Frame::data(bytes::Bytes::from(vec![b' '; 512])))
    }));
    let body = http_body_util::StreamBody::new(stream);
    let request = http::Request::post(gateway.url("/openai/v1/chat/completions"))
        .header("authorization", "Bearer k")
        .body(body)
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 413);
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_404_and_internal_headers_are_not_forwarded() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let response = get(&gateway.url("/nope/v1/x")).await;
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["type"], "not_found");
    // A path that only starts like a prefix is not that provider's.
    assert_eq!(
        get(&gateway.url("/anthropicx/v1/messages")).await.status,
        404
    );

    post(
        &gateway.url("/anthropic/v1/messages"),
        &[
            ("x-api-key", ANTHROPIC_KEY),
            ("x-mnemom-api-key", "secret"),
            ("cookie", "session=1"),
            ("x-custom", "kept"),
        ],
        r#"{"model":"claude-3-5-haiku-latest","max_tokens":5,"messages":[]}"#,
    )
    .await;
    let received = &mock.requests()[0];
    assert!(received.header("x-mnemom-api-key").is_none());
    assert!(received.header("cookie").is_none());
    assert_eq!(received.header("x-custom"), Some("kept"));
    assert!(
        received.header("host").unwrap().starts_with("127.0.0.1"),
        "host is the upstream's, not the gateway's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502_and_provider_errors_pass_through() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[("OPENAI_BASE_URL", "http://127.0.0.1:9")]).await;
    let response = post(
        &gateway.url("/openai/v1/chat/completions"),
        &[("authorization", "Bearer k")],
        "{}",
    )
    .await;
    assert_eq!(response.status, 502);
    assert!(
        response.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );

    let error_fixture = "anthropic/error-invalid-request-error.json";
    let response = post(
        &gateway.url("/anthropic/v1/messages"),
        &[
            ("x-api-key", ANTHROPIC_KEY),
            ("x-mock-fixture", error_fixture),
            ("x-mock-status", "400"),
        ],
        "{}",
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.body.as_ref(), fixture(error_fixture).as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeouts_are_504_and_idle_streams_are_cut() {
    let mock = mock().await;
    let gateway = TestGateway::start(
        &mock,
        &[
            ("MNEMOM_UPSTREAM_FIRST_BYTE_TIMEOUT_MS", "300"),
            ("MNEMOM_UPSTREAM_IDLE_TIMEOUT_MS", "300"),
        ],
    )
    .await;
    let claude = r#"{"model":"claude-3-5-haiku-latest","max_tokens":5,"messages":[]}"#;
    let slow = post(
        &gateway.url("/anthropic/v1/messages"),
        &[("x-api-key", ANTHROPIC_KEY), ("x-mock-delay-ms", "2000")],
        claude,
    )
    .await;
    assert_eq!(slow.status, 504);
    assert_eq!(slow.json()["error"]["type"], "timeout_error");

    let stream =
        r#"{"model":"claude-3-5-haiku-latest","max_tokens":5,"stream":true,"messages":[]}"#;
    let request = http::Request::post(gateway.url("/anthropic/v1/messages"))
        .header("x-api-key", ANTHROPIC_KEY)
        .header("x-mock-hang", "after:2")
        .body(http_body_util::Full::new(bytes::Bytes::from(stream)))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await;
    assert!(
        matches!(outcome, Ok(Err(_))),
        "the stalled stream is aborted, not left hanging"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_license_refuses_proxy_traffic_but_health_answers() {
    let mock = mock().await;
    // `alg: none`: never accepted, whatever its claims say.
    let forged =
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJsaWNlbnNlX2lkIjoibGljLTEiLCJleHAiOjQxMDI0NDQ4MDB9.";
    let gateway = TestGateway::start(&mock, &[("MNEMOM_LICENSE_JWT", forged)]).await;
    let response = post(
        &gateway.url("/anthropic/v1/messages"),
        &[("x-api-key", ANTHROPIC_KEY)],
        r#"{"model":"claude-3-5-haiku-latest","max_tokens":5,"messages":[]}"#,
    )
    .await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["error"]["type"], "license_error");
    assert_eq!(
        response.json()["error"]["message"],
        "License invalid or expired"
    );
    assert!(mock.requests().is_empty());
    assert_eq!(get(&gateway.url("/health")).await.status, 200);
    let ready = get(&gateway.url("/health/ready")).await;
    assert_eq!(
        ready.status, 200,
        "an invalid license does not take the pod out of service"
    );
    assert_eq!(ready.json()["checks"]["license"]["status"], "error");
}
