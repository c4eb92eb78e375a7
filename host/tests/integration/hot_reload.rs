//! Hot reload exactly as a Kubernetes ConfigMap volume updates: under a sustained load of
//! requests, the kubelet's `..data` swap brings in a new plugin version with zero failed
//! requests and it serves within 2 s; a corrupt or wrong-world `.wasm` is rejected and the old
//! version keeps serving. Also: a new provider added by dropping in a plugin.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::support::*;

fn testkit_files(marker: &str) -> Vec<(String, Vec<u8>)> {
    let wasm = testkit_wasm();
    let text = manifest(
        "echo",
        "echo",
        &wasm,
        "fail-closed",
        100,
        &[
            ("name", "echo"),
            ("route-prefix", "/echo"),
            ("marker", marker),
        ],
    );
    vec![
        ("echo.wasm".into(), wasm),
        ("echo.plugin.toml".into(), text.into_bytes()),
    ]
}

fn as_refs(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect()
}

async fn marker_of_next_request(
    gateway: &TestGateway,
    mock: &mnemom_mock_provider::MockProvider,
) -> String {
    mock.clear();
    let response = post(
        &gateway.url("/echo/v1/chat/completions"),
        &[("authorization", "Bearer k")],
        r#"{"model":"m"}"#,
    )
    .await;
    assert_eq!(response.status, 200);
    mock.requests()[0].json().unwrap()["testkit_marker"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_swap_under_load_has_no_failed_requests() {
    let mock = mnemom_mock_provider::MockProvider::start(mnemom_mock_provider::MockOptions {
        record_requests: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut volume = ConfigMapDir::new(&as_refs(&testkit_files("v1")));
    let dir = volume.path().display().to_string();
    let base = mock.base_url();
    let gateway = TestGateway::start(
        &mock,
        &[
            ("MNEMOM_PLUGIN_DIRS", &dir),
            ("ECHO_BASE_URL", &base),
            ("MNEMOM_PLUGIN_POLL_SECONDS", "60"),
        ],
    )
    .await;
    assert_eq!(marker_of_next_request(&gateway, &mock).await, "v1");

    // Sustained load from 8 clients for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (stop, sent, failed, url) = (
            stop.clone(),
            sent.clone(),
            failed.clone(),
            gateway.url("/echo/v1/chat/completions"),
        );
        load.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::post(&url)
                    .header("authorization", "Bearer k")
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                        br#"{"model":"m","messages":[]}"#,
                    )))
                    .unwrap();
                let ok = match client.request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        http_body_util::BodyExt::collect(response.into_body())
                            .await
                            .is_ok()
                            && status == 200
                    }
                    Err(_) => false,
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // New version: the new marker serves within 2 s of the swap.
    volume.update(&as_refs(&testkit_files("v2")));
    let swapped = Instant::now();
    loop {
        if marker_of_next_request(&gateway, &mock).await == "v2" {
            break;
        }
        assert!(
            swapped.elapsed() < Duration::from_secs(2),
            "v2 not serving 2 s after the swap"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reload_latency = swapped.elapsed();

    // A corrupt component: rejected, v2 keeps serving.
    let mut corrupt = testkit_files("v3");
    corrupt[0].1 = b"\0asm garbage".to_vec();
    let sha = sha256_hex(&corrupt[0].1);
    let text = String::from_utf8(corrupt[1].1.clone()).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("sha256") {
                format!("sha256 = \"{sha}\"")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    corrupt[1].1 = text.into_bytes();
    volume.update(&as_refs(&corrupt));
    wait_for_metric(
        &gateway,
        "gateway_plugin_reloads_total{plugin=\"echo\",result=\"error\"}",
        1.0,
    )
    .await;
    assert_eq!(marker_of_next_request(&gateway, &mock).await, "v2");

    // A valid component of the wrong world (a core module): rejected too.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let sha = sha256_hex(&core_module);
    let text = format!(
        "name = \"echo\"\nworld = \"provider-adapter\"\nwasm = \"echo.wasm\"\nsha256 = \"{sha}\"\n"
    );
    volume.update(&[
        ("echo.wasm", &core_module),
        ("echo.plugin.toml", text.as_bytes()),
    ]);
    wait_for_metric(
        &gateway,
        "gateway_plugin_reloads_total{plugin=\"echo\",result=\"error\"}",
        2.0,
    )
    .await;
    assert_eq!(marker_of_next_request(&gateway, &mock).await, "v2");

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(sent > 50, "load ran ({sent} requests)");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the reloads"
    );
    eprintln!(
        "hot reload: {sent} requests, 0 failed, new version served {reload_latency:?} after the swap"
    );
}

async fn wait_for_metric(gateway: &TestGateway, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.metric(series).await.unwrap_or(0.0) < at_least {
        assert!(
            Instant::now() < deadline,
            "{series} never reached {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_provider_is_added_by_dropping_in_a_plugin() {
    // An OpenAI-compatible provider on its own prefix: the OpenAI adapter component, deployed
    // under another name by its manifest, into a directory the running gateway watches.
    let mock = mock().await;
    let volume = tempfile::tempdir().unwrap();
    let dir = volume.path().display().to_string();
    let gateway = TestGateway::start(&mock, &[("MNEMOM_PLUGIN_DIRS", &dir)]).await;
    assert_eq!(
        get(&gateway.url("/compat/v1/chat/completions"))
            .await
            .status,
        404
    );

    let wasm = openai_wasm();
    let upstream = format!("{}/compat-upstream", mock.base_url());
    // `upstream` is a top-level key, so it goes before the manifest's tables.
    let text = format!(
        "upstream = \"{upstream}\"\n{}",
        manifest(
            "compat",
            "compat",
            &wasm,
            "fail-open",
            100,
            &[("name", "compat"), ("route-prefix", "/compat")]
        )
    );
    std::fs::write(volume.path().join("compat.wasm"), &wasm).unwrap();
    std::fs::write(volume.path().join("compat.plugin.toml"), text).unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.app.registry.current().adapter("compat").is_none() {
        assert!(Instant::now() < deadline, "new plugin not loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = post(
        &gateway.url("/compat/v1/chat/completions"),
        &[
            ("authorization", "Bearer k"),
            ("x-mock-fixture", "openai/chat-completions-text.json"),
        ],
        r#"{"model":"gpt-5","messages":[]}"#,
    )
    .await;
    assert_eq!(response.status, 200);
    let received = &mock.requests()[0];
    assert_eq!(received.path, "/compat-upstream/v1/chat/completions");
    assert_eq!(received.json().unwrap()["reasoning_effort"], "medium");
    let exchanges = gateway.collector.wait_for(1).await;
    assert_eq!(exchanges[0].provider, "compat");
    assert!(exchanges[0].extracted.is_some());

    // Removing the plugin removes the route.
    std::fs::remove_file(volume.path().join("compat.plugin.toml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.app.registry.current().adapter("compat").is_some() {
        assert!(Instant::now() < deadline, "plugin not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        get(&gateway.url("/compat/v1/chat/completions"))
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_plugin_directory_is_not_rescanned_by_its_own_reads() {
    // Reading the files during a reload must not count as a change (inotify reports the
    // reads as access events); only the start-up scan happens while nothing changes.
    // Regular files (not the kubelet's symlinks), so reads are reported on the watched directory.
    let mock = mock().await;
    let volume = tempfile::tempdir().unwrap();
    for (name, bytes) in testkit_files("idle") {
        std::fs::write(volume.path().join(name), bytes).unwrap();
    }
    let dir = volume.path().display().to_string();
    let gateway = TestGateway::start(
        &mock,
        &[
            ("MNEMOM_PLUGIN_DIRS", &dir),
            ("MNEMOM_PLUGIN_POLL_SECONDS", "60"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        gateway.metric("gateway_plugin_scans_total").await,
        Some(1.0)
    );
}
