//! Plugin faults: a plugin that traps, one that loops forever, one that grows memory without
//! bound. Each request is answered per the plugin's failure mode within its deadline, the
//! process stays up, and the metrics count it.

use std::time::{Duration, Instant};

use super::support::*;

/// Writes a testkit plugin named `name` into a fresh directory.
fn fault_dir(name: &str, mode: &str, failure_mode: &str, fault_in: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let wasm = testkit_wasm();
    std::fs::write(dir.path().join(format!("{name}.wasm")), &wasm).unwrap();
    let prefix = format!("/{name}");
    // A growing plugin must reach its memory cap before its deadline even on a loaded machine.
    let timeout_ms = if mode == "grow" { 2000 } else { 50 };
    let text = manifest(
        name,
        name,
        &wasm,
        failure_mode,
        timeout_ms,
        &[
            ("name", name),
            ("route-prefix", &prefix),
            ("mode", mode),
            ("fault-in", fault_in),
        ],
    );
    std::fs::write(dir.path().join(format!("{name}.plugin.toml")), text).unwrap();
    dir
}

async fn gateway_with(
    mock: &mnemom_mock_provider::MockProvider,
    dirs: &[&tempfile::TempDir],
    names: &[&str],
) -> TestGateway {
    let joined: Vec<String> = dirs
        .iter()
        .map(|d| d.path().display().to_string())
        .collect();
    let joined = joined.join(":");
    let mut extra: Vec<(String, String)> = vec![("MNEMOM_PLUGIN_DIRS".into(), joined)];
    for name in names {
        extra.push((
            format!("{}_BASE_URL", name.to_ascii_uppercase().replace('-', "_")),
            mock.base_url(),
        ));
    }
    let extra_refs: Vec<(&str, &str)> = extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    TestGateway::start(mock, &extra_refs).await
}

const BODY: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

/// The deadline ticker parks when no plugin call has run for 100 ms; a looping plugin called
/// after such a spell still meets its deadline (the call wakes the ticker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_times_out_after_the_ticker_parked() {
    let mock = mock().await;
    let dir = fault_dir("loop-idle", "loop", "fail-closed", "transform-request");
    let gateway = gateway_with(&mock, &[&dir], &["loop-idle"]).await;
    let engine = gateway.app.registry.engine();
    let waited = Instant::now();
    while !engine.ticker_parked() {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the ticker never parked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..2 {
        let started = Instant::now();
        let response = post(
            &gateway.url("/loop-idle/v1/chat/completions"),
            &[("authorization", "Bearer k")],
            BODY,
        )
        .await;
        assert_eq!(response.status, 502, "{:?}", response.body);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
    let series = "gateway_plugin_calls_total{plugin=\"loop-idle\",result=\"timeout\"}";
    assert_eq!(gateway.metric(series).await, Some(2.0), "{series}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_looping_and_greedy_plugins_fail_open_or_closed() {
    let mock = mock().await;
    let cases = [
        ("trap-open", "trap", "fail-open", "trap"),
        ("loop-open", "loop", "fail-open", "timeout"),
        ("grow-open", "grow", "fail-open", "memory"),
        ("trap-closed", "trap", "fail-closed", "trap"),
        ("loop-closed", "loop", "fail-closed", "timeout"),
        ("grow-closed", "grow", "fail-closed", "memory"),
    ];
    let dirs: Vec<tempfile::TempDir> = cases
        .iter()
        .map(|(name, mode, fm, _)| fault_dir(name, mode, fm, "transform-request"))
        .collect();
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let gateway = gateway_with(&mock, &dirs.iter().collect::<Vec<_>>(), &names).await;
    assert_eq!(
        gateway.app.registry.current().adapters().len(),
        3 + cases.len()
    );

    for (name, _, failure_mode, result) in cases {
        for attempt in 0..3 {
            mock.clear();
            let started = Instant::now();
            let response = post(
                &gateway.url(&format!("/{name}/v1/chat/completions")),
                &[
                    ("authorization", "Bearer k"),
                    ("x-mock-fixture", "openai/chat-completions-text.json"),
                ],
                BODY,
            )
            .await;
            // A sanity bound against hanging forever, not a speed target: the deadline is 50 ms.
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{name}: took {:?}",
                started.elapsed()
            );
            if failure_mode == "fail-open" {
                assert_eq!(
                    response.status, 200,
                    "{name} #{attempt}: {:?}",
                    response.body
                );
                assert_eq!(
                    mock.requests()[0].body.as_ref(),
                    BODY.as_bytes(),
                    "{name}: forwarded untouched"
                );
            } else {
                assert_eq!(response.status, 502, "{name} #{attempt}");
                assert!(mock.requests().is_empty(), "{name}: nothing forwarded");
                assert!(response.body.starts_with(b"{"), "{name}: JSON error body");
            }
        }
        let series = format!("gateway_plugin_calls_total{{plugin=\"{name}\",result=\"{result}\"}}");
        assert!(
            gateway.metric(&series).await.unwrap_or(0.0) >= 3.0,
            "{series}"
        );
        if failure_mode == "fail-open" {
            let series = format!(
                "gateway_plugin_fail_open_total{{function=\"transform-request\",plugin=\"{name}\"}}"
            );
            assert_eq!(gateway.metric(&series).await, Some(3.0), "{series}");
        }
    }
    // The process is still up and the healthy adapters still serve.
    let ok = post(
        &gateway.url("/openai/v1/chat/completions"),
        &[("authorization", "Bearer k")],
        BODY,
    )
    .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_while_parsing_responses_never_touch_the_client() {
    let mock = mock().await;
    let dirs = [
        fault_dir("parse-trap", "trap", "fail-closed", "parse-response"),
        fault_dir("parse-loop", "loop", "fail-open", "parse-event"),
    ];
    let gateway = gateway_with(
        &mock,
        &dirs.iter().collect::<Vec<_>>(),
        &["parse-trap", "parse-loop"],
    )
    .await;
    let fixture_name = "openai/chat-completions-text.json";
    let response = post(
        &gateway.url("/parse-trap/v1/chat/completions"),
        &[
            ("authorization", "Bearer k"),
            ("x-mock-fixture", fixture_name),
        ],
        BODY,
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body.as_ref(), fixture(fixture_name).as_slice());

    let stream_fixture = "openai/chat-completions-stream-text-include-usage.sse";
    let response = post(
        &gateway.url("/parse-loop/v1/chat/completions"),
        &[
            ("authorization", "Bearer k"),
            ("x-mock-fixture", stream_fixture),
        ],
        BODY,
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body.as_ref(), fixture(stream_fixture).as_slice());

    let exchanges = gateway.collector.wait_for(2).await;
    for exchange in &exchanges {
        assert!(exchange.extracted.is_none(), "{}", exchange.provider);
        assert!(
            exchange
                .extraction_note
                .as_deref()
                .unwrap()
                .starts_with("adapter failed"),
            "{:?}",
            exchange.extraction_note
        );
    }
    assert!(
        gateway
            .metric("gateway_plugin_calls_total{plugin=\"parse-trap\",result=\"trap\"}")
            .await
            .unwrap()
            >= 1.0
    );
    assert!(
        gateway
            .metric("gateway_plugin_calls_total{plugin=\"parse-loop\",result=\"timeout\"}")
            .await
            .unwrap()
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_that_fail_their_smoke_call_or_import_too_much_are_rejected() {
    let mock = mock().await;
    let dir = fault_dir("smoke", "describe-trap", "fail-open", "transform-request");
    let gateway = gateway_with(&mock, &[&dir], &["smoke"]).await;
    assert!(gateway.app.registry.current().adapter("smoke").is_none());
    assert_eq!(
        gateway
            .metric("gateway_plugin_reloads_total{plugin=\"smoke\",result=\"error\"}")
            .await,
        Some(1.0)
    );
    let failed = &gateway.app.initial_load.failed;
    assert!(
        failed
            .iter()
            .any(|(name, reason)| name == "smoke" && reason.contains("smoke call")),
        "{failed:?}"
    );
}
