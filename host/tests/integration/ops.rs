//! Operational endpoints: health and probes, metrics, CORS preflight, the models registry.

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_probes_answer() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let health = get(&gateway.url("/health")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["aip_enabled"], true);
    assert_eq!(get(&gateway.url("/health/live")).await.status, 200);
    assert_eq!(get(&gateway.url("/health/startup")).await.status, 200);
    let ready = get(&gateway.url("/health/ready")).await;
    assert_eq!(ready.status, 200);
    let body = ready.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["plugins"]["status"], "ok");
    assert_eq!(body["checks"]["cache"]["status"], "ok");
    assert_eq!(body["checks"]["database"]["status"], "ok");
    assert_eq!(body["checks"]["database"]["backend"], "sqlite");
    assert_eq!(body["checks"]["cache"]["backend"], "memory");
    assert_eq!(body["checks"]["license"]["status"], "unlicensed");
    assert_eq!(
        body["checks"]["plugins"]["loaded"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(body["checks"]["plugins"]["latency_ms"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_every_family_from_start_up() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let response = get(&gateway.url("/metrics")).await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(response.body.to_vec()).unwrap();
    for series in [
        "gateway_requests_total{provider=\"anthropic\",status=\"200\"} 0",
        "gateway_request_duration_seconds_count{provider=\"gemini\"} 0",
        "gateway_aip_checks_total{verdict=\"boundary_violation\"} 0",
        "gateway_aip_checks_total{verdict=\"pending\"} 0",
        "gateway_cache_operations_total{operation=\"get\",result=\"hit\"} 0",
        "gateway_background_tasks_total{task=\"extraction\"} 0",
        "gateway_plugin_reloads_total{plugin=\"openai\",result=\"success\"} 1",
        "gateway_plugin_reloads_total{plugin=\"openai\",result=\"error\"} 0",
        "gateway_plugin_calls_total{plugin=\"gemini\",result=\"trap\"} 0",
    ] {
        assert!(text.contains(series), "missing `{series}`");
    }
    for family in [
        "# TYPE gateway_cron_runs_total counter",
        "# TYPE gateway_overhead_seconds histogram",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(text.contains(family), "missing `{family}`");
    }

    // A proxied request is counted with its provider and status, to the end of its body.
    post(
        &gateway.url("/openai/v1/chat/completions"),
        &[("authorization", "Bearer k")],
        r#"{"model":"gpt-4o","messages":[]}"#,
    )
    .await;
    gateway.collector.wait_for(1).await;
    assert_eq!(
        gateway
            .metric("gateway_requests_total{provider=\"openai\",status=\"200\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        gateway
            .metric("gateway_request_duration_seconds_count{provider=\"openai\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        gateway
            .metric("gateway_overhead_seconds_count{provider=\"openai\"}")
            .await,
        Some(1.0)
    );
    assert!(
        gateway
            .metric("gateway_plugin_calls_total{plugin=\"openai\",result=\"success\"}")
            .await
            .unwrap()
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_models() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let preflight = send(
        http::Request::builder()
            .method("OPTIONS")
            .uri(gateway.url("/anthropic/v1/messages"))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert!(
        preflight
            .header("access-control-allow-headers")
            .unwrap()
            .contains("x-api-key")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("86400"));
    assert!(mock.requests().is_empty());

    let models = get(&gateway.url("/models.json")).await;
    assert_eq!(models.status, 200);
    assert_eq!(models.header("cache-control"), Some("public, max-age=3600"));
    let body = models.json();
    for provider in ["anthropic", "openai", "gemini"] {
        assert!(!body[provider].as_array().unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_streams_finish() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[]).await;
    let request = http::Request::post(gateway.url("/anthropic/v1/messages"))
        .header("x-api-key", ANTHROPIC_KEY)
        .header("x-mock-chunk-delay-ms", "30")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"model":"claude-sonnet-4-20250514","max_tokens":16000,"stream":true,"messages":[]}"#,
        )))
        .unwrap();
    let response = client().request(request).await.unwrap();
    let app = gateway.app.clone();
    let stopping = tokio::spawn(gateway.stop());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(app.lifecycle.shutting_down(), "readiness turned false");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        body.as_ref(),
        fixture("anthropic/messages-stream-thinking-signature-text.sse").as_slice()
    );
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_role_serves_probes_and_metrics_but_no_proxy() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[("SMOLTBOT_ROLE", "scheduler")]).await;
    for path in [
        "/health/live",
        "/health/ready",
        "/health/startup",
        "/metrics",
    ] {
        assert_eq!(get(&gateway.url(path)).await.status, 200, "{path}");
    }
    let proxied = post(
        &gateway.url("/anthropic/v1/messages"),
        &[("x-api-key", ANTHROPIC_KEY)],
        "{}",
    )
    .await;
    assert_eq!(proxied.status, 404);
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_degrades_readiness_but_keeps_serving() {
    let mock = mock().await;
    let gateway = TestGateway::start(&mock, &[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let ready = get(&gateway.url("/health/ready")).await;
    assert_eq!(ready.status, 200, "the gateway can still proxy");
    assert_eq!(ready.json()["status"], "degraded");
    assert_eq!(ready.json()["checks"]["cache"]["status"], "degraded");
    assert_eq!(ready.json()["checks"]["cache"]["backend"], "redis");
    let response = post(
        &gateway.url("/openai/v1/chat/completions"),
        &[("authorization", "Bearer k")],
        r#"{"model":"gpt-4o","messages":[]}"#,
    )
    .await;
    assert_eq!(response.status, 200);
}
