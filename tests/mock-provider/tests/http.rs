//! End-to-end tests of the mock provider over real HTTP on 127.0.0.1, with a plain hyper client.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on any unexpected failure"
)]

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mnemom_mock_provider::{DEFAULT_FIXTURES_DIR, MockOptions, MockProvider, split_sse_events};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(DEFAULT_FIXTURES_DIR).join(name)).unwrap()
}

async fn start() -> MockProvider {
    MockProvider::start(MockOptions::default()).await.unwrap()
}

async fn head(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Response<Incoming> {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    client.request(request).await.unwrap()
}

struct Received {
    status: StatusCode,
    headers: HeaderMap,
    frames: Vec<Bytes>,
}

impl Received {
    fn body(&self) -> Vec<u8> {
        self.frames.concat()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Received {
    let response = head(client, method, url, headers, body).await;
    let (parts, mut incoming) = response.into_parts();
    let mut frames = Vec::new();
    while let Some(frame) = incoming.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames.push(data);
        }
    }
    Received {
        status: parts.status,
        headers: parts.headers,
        frames,
    }
}

async fn post(client: &HttpClient, url: &str, headers: &[(&str, &str)], body: &str) -> Received {
    send(client, Method::POST, url, headers, body).await
}

#[tokio::test]
async fn default_routes_serve_exact_fixture_bytes() {
    let mock = start().await;
    let client = client();
    let cases: [(&str, &str, &str); 8] = [
        (
            "/v1/messages",
            r#"{"model":"m","max_tokens":5,"messages":[]}"#,
            mnemom_mock_provider::ANTHROPIC_MESSAGES,
        ),
        (
            "/v1/messages?beta=true",
            r#"{"stream":true}"#,
            mnemom_mock_provider::ANTHROPIC_MESSAGES_STREAM,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"m"}"#,
            mnemom_mock_provider::OPENAI_CHAT,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"m","stream":true}"#,
            mnemom_mock_provider::OPENAI_CHAT_STREAM,
        ),
        (
            "/v1/responses",
            r#"{"stream":false}"#,
            mnemom_mock_provider::OPENAI_RESPONSES,
        ),
        (
            "/v1/responses",
            r#"{"stream":true}"#,
            mnemom_mock_provider::OPENAI_RESPONSES_STREAM,
        ),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "{}",
            mnemom_mock_provider::GEMINI_GENERATE,
        ),
        (
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "{}",
            mnemom_mock_provider::GEMINI_GENERATE_STREAM,
        ),
    ];
    for (path, body, name) in cases {
        let received = post(&client, &mock.url(path), &[], body).await;
        assert_eq!(received.status, StatusCode::OK, "{path}");
        assert_eq!(
            received.body(),
            fixture(name),
            "{path} should serve {name} exactly"
        );
        let sse = name.ends_with(".sse");
        let content_type = if sse {
            "text/event-stream"
        } else {
            "application/json"
        };
        assert_eq!(
            received.header("content-type"),
            Some(content_type),
            "{path}"
        );
        let no_cache = sse && !name.starts_with("gemini/");
        assert_eq!(
            received.header("cache-control"),
            no_cache.then_some("no-cache"),
            "{path}"
        );
        if sse {
            assert_eq!(
                received.header("transfer-encoding"),
                Some("chunked"),
                "{path}"
            );
            // Frame boundaries are only observable with a pause between frames (see below): here the
            // client may see a chunk split across two reads.
            assert!(
                received.frames.len() >= split_sse_events(&Bytes::from(fixture(name))).len(),
                "{path}"
            );
        } else {
            let length = fixture(name).len().to_string();
            assert_eq!(
                received.header("content-length"),
                Some(length.as_str()),
                "{path}"
            );
        }
    }
    let requests = mock.requests();
    assert_eq!(requests.len(), 8);
    assert_eq!(requests[1].path, "/v1/messages");
    assert_eq!(requests[1].query.as_deref(), Some("beta=true"));
    assert_eq!(requests[7].query.as_deref(), Some("alt=sse"));
}

#[tokio::test]
async fn static_routes_and_not_found() {
    let mock = start().await;
    let client = client();

    let count = post(&client, &mock.url("/v1/messages/count_tokens"), &[], "{}").await;
    assert_eq!(count.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&count.body()).unwrap();
    assert_eq!(json, serde_json::json!({"input_tokens": 12}));
    assert!(count.header("request-id").unwrap().starts_with("req_mock_"));

    let models = send(&client, Method::GET, &mock.url("/v1/models"), &[], "").await;
    assert_eq!(models.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&models.body()).unwrap();
    assert_eq!(json["object"], "list");
    assert!(!json["data"].as_array().unwrap().is_empty());
    assert!(models.header("x-request-id").is_some());

    let anthropic_models = send(
        &client,
        Method::GET,
        &mock.url("/v1/models"),
        &[("anthropic-version", "2023-06-01")],
        "",
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&anthropic_models.body()).unwrap();
    assert_eq!(json["data"][0]["type"], "model");

    let gemini_count = post(
        &client,
        &mock.url("/v1beta/models/gemini-2.5-flash:countTokens"),
        &[],
        "{}",
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&gemini_count.body()).unwrap();
    assert_eq!(json["totalTokens"], 12);

    for (method, path) in [
        (Method::POST, "/v2/nothing"),
        (Method::GET, "/v1/messages"),
        (Method::POST, "/"),
    ] {
        let missing = send(&client, method, &mock.url(path), &[], "").await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(missing.header("content-type"), Some("application/json"));
        let json: serde_json::Value = serde_json::from_slice(&missing.body()).unwrap();
        assert!(json["error"]["message"].as_str().unwrap().contains(path));
    }
}

#[tokio::test]
async fn fixture_and_status_overrides() {
    let mock = start().await;
    let client = client();

    let error = post(
        &client,
        &mock.url("/v1/chat/completions"),
        &[
            ("x-mock-fixture", "openai/error-insufficient-quota.json"),
            ("x-mock-status", "429"),
        ],
        r#"{"stream":true}"#,
    )
    .await;
    assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        error.body(),
        fixture("openai/error-insufficient-quota.json")
    );
    assert_eq!(error.header("content-type"), Some("application/json"));

    // The fixture header works on any path, and picks the content type from the extension.
    let stream = post(
        &client,
        &mock.url("/anything"),
        &[(
            "x-mock-fixture",
            "anthropic/messages-stream-tool-use.reframed.sse",
        )],
        "",
    )
    .await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("cache-control"), Some("no-cache"));
    assert_eq!(
        stream.body(),
        fixture("anthropic/messages-stream-tool-use.reframed.sse")
    );

    let status_only = post(
        &client,
        &mock.url("/v1/messages"),
        &[("x-mock-status", "529")],
        "{}",
    )
    .await;
    assert_eq!(status_only.status.as_u16(), 529);
    assert_eq!(
        status_only.body(),
        fixture(mnemom_mock_provider::ANTHROPIC_MESSAGES)
    );

    let missing = post(
        &client,
        &mock.url("/v1/messages"),
        &[("x-mock-fixture", "openai/nope.json")],
        "",
    )
    .await;
    assert_eq!(missing.status, StatusCode::INTERNAL_SERVER_ERROR);
    for bad in ["../Cargo.toml", "openai/../../x.json", "nope"] {
        let escaped = post(
            &client,
            &mock.url("/v1/messages"),
            &[("x-mock-fixture", bad)],
            "",
        )
        .await;
        assert_eq!(escaped.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    for (name, value) in [
        ("x-mock-status", "abc"),
        ("x-mock-status", "1000"),
        ("x-mock-delay-ms", "-1"),
        ("x-mock-chunk", "lines"),
        ("x-mock-gzip", "maybe"),
        ("x-mock-hang", "later"),
    ] {
        let invalid = post(&client, &mock.url("/v1/messages"), &[(name, value)], "").await;
        assert_eq!(invalid.status, StatusCode::BAD_REQUEST, "{name}: {value}");
        let json: serde_json::Value = serde_json::from_slice(&invalid.body()).unwrap();
        assert_eq!(json["error"]["type"], "mock_provider_error");
    }
}

#[tokio::test]
async fn chunk_modes_change_framing_not_bytes() {
    let mock = start().await;
    let client = client();
    let name = "anthropic/messages-stream-basic-text.docs-example.sse";
    let expected = fixture(name);
    let events = split_sse_events(&Bytes::from(expected.clone()));

    // A small pause between frames keeps the client from seeing two frames in one read.
    let by_event = post(
        &client,
        &mock.url("/x"),
        &[("x-mock-fixture", name), ("x-mock-chunk-delay-ms", "5")],
        "",
    )
    .await;
    assert_eq!(by_event.frames, events);

    let by_bytes = post(
        &client,
        &mock.url("/x"),
        &[
            ("x-mock-fixture", name),
            ("x-mock-chunk", "bytes:100"),
            ("x-mock-chunk-delay-ms", "5"),
        ],
        "",
    )
    .await;
    assert_eq!(by_bytes.body(), expected);
    assert_eq!(by_bytes.frames.len(), expected.len().div_ceil(100));
    assert!(
        by_bytes.frames[..by_bytes.frames.len() - 1]
            .iter()
            .all(|f| f.len() == 100)
    );

    let whole = post(
        &client,
        &mock.url("/x"),
        &[("x-mock-fixture", name), ("x-mock-chunk", "whole")],
        "",
    )
    .await;
    assert_eq!(whole.frames, [Bytes::from(expected.clone())]);

    // Byte framing also applies to JSON bodies, which keep their content-length.
    let json = post(
        &client,
        &mock.url("/v1/messages"),
        &[
            ("x-mock-chunk", "bytes:1000"),
            ("x-mock-chunk-delay-ms", "5"),
        ],
        "{}",
    )
    .await;
    let json_fixture = fixture(mnemom_mock_provider::ANTHROPIC_MESSAGES);
    assert_eq!(json.body(), json_fixture);
    assert_eq!(json.frames.len(), json_fixture.len().div_ceil(1000));
    assert_eq!(
        json.header("content-length"),
        Some(json_fixture.len().to_string().as_str())
    );
}

#[tokio::test]
async fn delays_are_applied() {
    let mock = start().await;
    let client = client();

    let started = Instant::now();
    let response = head(
        &client,
        Method::POST,
        &mock.url("/v1/messages"),
        &[("x-mock-delay-ms", "150")],
        "{}",
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(response.status(), StatusCode::OK);

    // 6 events, 40 ms between consecutive ones: at least 200 ms from headers to the end of the body.
    let name = "openai/chat-completions-stream-tool-call-include-usage.sse";
    let events = split_sse_events(&Bytes::from(fixture(name))).len();
    let response = head(
        &client,
        Method::POST,
        &mock.url("/x"),
        &[("x-mock-fixture", name), ("x-mock-chunk-delay-ms", "40")],
        "",
    )
    .await;
    let started = Instant::now();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let elapsed = started.elapsed();
    assert_eq!(body.to_vec(), fixture(name));
    assert!(
        elapsed >= Duration::from_millis(40 * (events as u64 - 1)),
        "{elapsed:?} for {events} events"
    );

    // Options give the defaults.
    let slow = MockProvider::start(MockOptions {
        latency: Duration::from_millis(120),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let started = Instant::now();
    let received = post(&client, &slow.url("/v1/chat/completions"), &[], "{}").await;
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert_eq!(received.body(), fixture(mnemom_mock_provider::OPENAI_CHAT));
    let started = Instant::now();
    post(
        &client,
        &slow.url("/v1/chat/completions"),
        &[("x-mock-delay-ms", "0")],
        "{}",
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(120));
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn gzip_only_when_accepted() {
    let mock = start().await;
    let client = client();
    let stream_name = mnemom_mock_provider::ANTHROPIC_MESSAGES_STREAM;

    let gz = post(
        &client,
        &mock.url("/v1/messages"),
        &[
            ("x-mock-gzip", "1"),
            ("accept-encoding", "gzip, deflate, br"),
        ],
        r#"{"stream":true}"#,
    )
    .await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("content-type"), Some("text/event-stream"));
    assert_eq!(gunzip(&gz.body()), fixture(stream_name));

    let gz_json = post(
        &client,
        &mock.url("/v1beta/models/g:generateContent"),
        &[("x-mock-gzip", "1"), ("accept-encoding", "gzip")],
        "{}",
    )
    .await;
    assert_eq!(gz_json.header("content-encoding"), Some("gzip"));
    let length = gz_json.body().len().to_string();
    assert_eq!(gz_json.header("content-length"), Some(length.as_str()));
    assert_eq!(
        gunzip(&gz_json.body()),
        fixture(mnemom_mock_provider::GEMINI_GENERATE)
    );

    for accept in [None, Some("identity"), Some("gzip;q=0")] {
        let mut headers = vec![("x-mock-gzip", "1")];
        if let Some(accept) = accept {
            headers.push(("accept-encoding", accept));
        }
        let plain = post(
            &client,
            &mock.url("/v1/messages"),
            &headers,
            r#"{"stream":true}"#,
        )
        .await;
        assert_eq!(plain.header("content-encoding"), None, "{accept:?}");
        assert_eq!(plain.body(), fixture(stream_name), "{accept:?}");
    }

    // Gzip as a server default, and a request opting out.
    let gz_default = MockProvider::start(MockOptions {
        gzip: true,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let on = post(
        &client,
        &gz_default.url("/v1/responses"),
        &[("accept-encoding", "gzip")],
        "{}",
    )
    .await;
    assert_eq!(on.header("content-encoding"), Some("gzip"));
    assert_eq!(
        gunzip(&on.body()),
        fixture(mnemom_mock_provider::OPENAI_RESPONSES)
    );
    let off = post(
        &client,
        &gz_default.url("/v1/responses"),
        &[("accept-encoding", "gzip"), ("x-mock-gzip", "0")],
        "{}",
    )
    .await;
    assert_eq!(off.header("content-encoding"), None);
    assert_eq!(off.body(), fixture(mnemom_mock_provider::OPENAI_RESPONSES));
}

#[tokio::test]
async fn hang_sends_headers_then_stalls() {
    let mock = start().await;
    let client = client();

    let response = head(
        &client,
        Method::POST,
        &mock.url("/v1/messages"),
        &[("x-mock-hang", "1")],
        "{}",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get(header::CONTENT_LENGTH), None);
    let mut body = response.into_body();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), body.frame())
            .await
            .is_err()
    );

    let response = head(
        &client,
        Method::POST,
        &mock.url("/v1/chat/completions"),
        &[("x-mock-hang", "after:2"), ("x-mock-chunk-delay-ms", "5")],
        r#"{"stream":true}"#,
    )
    .await;
    let mut body = response.into_body();
    let events = split_sse_events(&Bytes::from(fixture(
        mnemom_mock_provider::OPENAI_CHAT_STREAM,
    )));
    let mut received = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(200), body.frame()).await {
            Ok(Some(frame)) => received.push(frame.unwrap().into_data().unwrap()),
            Ok(None) => panic!("a hanging body must not end"),
            Err(_elapsed) => break,
        }
    }
    assert_eq!(received.concat(), events[..2].concat());

    // Shutting down closes the hanging connections too.
    let shutdown = tokio::time::timeout(Duration::from_secs(5), mock.shutdown()).await;
    assert!(shutdown.is_ok());
    let end = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap();
    assert!(
        !matches!(end, Some(Ok(_))),
        "the body should fail or end once the server is gone"
    );
}

#[tokio::test]
async fn records_requests_in_order_and_clears() {
    let mock = start().await;
    let client = client();
    post(
        &client,
        &mock.url("/v1/messages?beta=true"),
        &[
            ("x-api-key", "sk-ant-test"),
            ("anthropic-version", "2023-06-01"),
        ],
        r#"{"model":"claude","max_tokens":1,"messages":[]}"#,
    )
    .await;
    send(
        &client,
        Method::GET,
        &mock.url("/v1/models"),
        &[("authorization", "Bearer sk-test")],
        "",
    )
    .await;

    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, Method::POST);
    assert_eq!(requests[0].path, "/v1/messages");
    assert_eq!(requests[0].query.as_deref(), Some("beta=true"));
    assert_eq!(requests[0].header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(requests[0].json().unwrap()["model"], "claude");
    assert_eq!(
        &requests[0].body[..],
        br#"{"model":"claude","max_tokens":1,"messages":[]}"#
    );
    assert_eq!(requests[1].method, Method::GET);
    assert_eq!(requests[1].header("authorization"), Some("Bearer sk-test"));
    assert!(requests[1].body.is_empty());

    // The same list over HTTP (for out-of-process users such as the SDK checks); not recorded itself.
    let listed = send(
        &client,
        Method::GET,
        &mock.url(mnemom_mock_provider::REQUESTS_PATH),
        &[],
        "",
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&listed.body()).unwrap();
    assert_eq!(json["recording"], true);
    assert_eq!(json["requests"][0]["path"], "/v1/messages");
    assert_eq!(json["requests"][0]["query"], "beta=true");
    assert_eq!(json["requests"][0]["headers"]["x-api-key"], "sk-ant-test");
    assert_eq!(json["requests"][1]["method"], "GET");
    assert_eq!(json["requests"].as_array().unwrap().len(), 2);

    mock.clear();
    assert!(mock.requests().is_empty());
    post(&client, &mock.url("/v1/responses"), &[], "{}").await;
    assert_eq!(mock.requests().len(), 1);
    let cleared = send(
        &client,
        Method::DELETE,
        &mock.url(mnemom_mock_provider::REQUESTS_PATH),
        &[],
        "",
    )
    .await;
    assert_eq!(cleared.status, StatusCode::OK);
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn keeps_connections_alive() {
    let mock = start().await;
    let client = client();
    for _ in 0..5 {
        let received = post(
            &client,
            &mock.url("/v1/chat/completions"),
            &[],
            r#"{"stream":true}"#,
        )
        .await;
        assert_eq!(received.status, StatusCode::OK);
    }
    assert_eq!(mock.connection_count(), 1);
}

#[tokio::test]
async fn custom_fixtures_dir_and_shutdown() {
    let dir = std::env::temp_dir().join(format!("mock-provider-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("openai")).unwrap();
    std::fs::write(
        dir.join("openai/chat-completions-text.json"),
        b"{\"custom\":true}\n",
    )
    .unwrap();
    let mock = MockProvider::start(MockOptions {
        fixtures_dir: dir.clone(),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(mock.fixtures_dir(), dir.as_path());
    assert!(mock.base_url().starts_with("http://127.0.0.1:"));
    let client = client();
    let received = post(&client, &mock.url("/v1/chat/completions"), &[], "{}").await;
    assert_eq!(received.body(), b"{\"custom\":true}\n");
    // Not in this directory: a 500 from the mock.
    let missing = post(&client, &mock.url("/v1/messages"), &[], "{}").await;
    assert_eq!(missing.status, StatusCode::INTERNAL_SERVER_ERROR);

    let addr = mock.addr();
    mock.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let dropped = start().await;
    let addr = dropped.addr();
    drop(dropped);
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "dropping the mock should close its listener");
    std::fs::remove_dir_all(&dir).unwrap();
}
