//! AIP policies as plugins and the other analysis paths: a policy loaded from a ConfigMap
//! directory at run time that changes verdicts and hot-reloads, policies that trap or overrun
//! their deadline (per failure mode, the client always gets its response), the SDK's example
//! policy, hybrid mode, and signed webhooks with retries.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mnemom_mock_provider::{
    MockAnalysis, MockAnalysisOptions, MockOptions, MockProvider, Scenario,
};

use super::aip::*;
use super::support::*;

/// The testkit policy component (a test program, never embedded).
fn testkit_policy_wasm() -> Vec<u8> {
    std::fs::read(env!("MNEMOM_PLUGIN_WASM_TESTKIT_POLICY")).unwrap()
}

/// A policy manifest (pure world) for `<name>.wasm`.
fn policy_manifest(
    name: &str,
    wasm: &[u8],
    failure_mode: &str,
    timeout_ms: u64,
    config: &[(&str, &str)],
) -> String {
    let mut text = format!(
        "name = \"{name}\"\nworld = \"aip-policy-pure\"\nwasm = \"{name}.wasm\"\nsha256 = \"{}\"\nfailure_mode = \"{failure_mode}\"\n[limits]\ntimeout_ms = {timeout_ms}\nmemory_mb = 32\n[config]\n",
        sha256_hex(wasm)
    );
    for (k, v) in config {
        text.push_str(&format!("\"{k}\" = \"{v}\"\n"));
    }
    text
}

fn testkit_policy_files(
    name: &str,
    failure_mode: &str,
    config: &[(&str, &str)],
) -> Vec<(String, Vec<u8>)> {
    let wasm = testkit_policy_wasm();
    let manifest = policy_manifest(name, &wasm, failure_mode, 50, config);
    vec![
        (format!("{name}.wasm"), wasm),
        (format!("{name}.plugin.toml"), manifest.into_bytes()),
    ]
}

fn refs(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_from_a_plugin_directory_changes_verdicts_and_hot_reloads() {
    let files = testkit_policy_files(
        "custom",
        "fail-open",
        &[("verdict", "review_needed"), ("marker", "v1")],
    );
    let mut dir = ConfigMapDir::new(&refs(&files));
    let mock = mock().await;
    let path = dir.path().display().to_string();
    // No analysis LLM: only pure policies can run, and this one is the whole chain.
    let gateway = TestGateway::start(
        &mock,
        &[
            ("MNEMOM_PLUGIN_DIRS", path.as_str()),
            ("MNEMOM_AIP_POLICIES", "custom"),
            ("MNEMOM_AIP_MIN_EVIDENCE_TOKENS", "1"),
            ("MNEMOM_WRITER_FLUSH_INTERVAL_MS", "10"),
        ],
    )
    .await;
    let key = "sk-policy-reload";
    let response = ANTHROPIC_JSON.send(&gateway, key, "hi").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-aip-verdict"), Some("review_needed"));
    // A sound instance goes back to the pool for the next check.
    let set = gateway.app.registry.current();
    assert_eq!(set.policy("custom").unwrap().plugin.idle_instances(), 1);
    checkpoints(&gateway, key, 1).await;
    let id = identity(key).agent_id;
    assert_eq!(
        sqlite_count(
            &gateway.data_dir,
            &format!(
                "SELECT count(*) FROM integrity_checkpoints WHERE agent_id = '{id}' \
                 AND reasoning_summary = 'testkit v1' AND concerns LIKE '%\"policy\":\"custom\"%'"
            ),
        )
        .await,
        1
    );
    // The kubelet swaps the ConfigMap: the new version decides within 2 s, no restart.
    let files = testkit_policy_files(
        "custom",
        "fail-open",
        &[("verdict", "boundary_violation"), ("marker", "v2")],
    );
    dir.update(&refs(&files));
    let swapped = Instant::now();
    loop {
        let response = ANTHROPIC_JSON.send(&gateway, key, "hi").await;
        assert_eq!(response.status, 200);
        if response.header("x-aip-verdict") == Some("boundary_violation") {
            break;
        }
        assert!(
            swapped.elapsed() < Duration::from_secs(5),
            "new policy never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gateway
            .metric("gateway_plugin_reloads_total{plugin=\"custom\",result=\"success\"}")
            .await
            .unwrap()
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_and_overrunning_policies_follow_their_failure_mode() {
    let trap = testkit_policy_files("trapper", "fail-open", &[("mode", "trap")]);
    let spin = testkit_policy_files("spinner", "fail-open", &[("mode", "loop")]);
    let closed = testkit_policy_files("closed", "fail-closed", &[("mode", "loop")]);
    let mut all = trap;
    all.extend(spin);
    all.extend(closed);
    let dir = ConfigMapDir::new(&refs(&all));
    let path = dir.path().display().to_string();

    // Fail-open faults only: no verdict can be given, so `error`; the response is untouched.
    let aip = aip_gateway(&[
        ("MNEMOM_PLUGIN_DIRS", path.as_str()),
        ("MNEMOM_AIP_POLICIES", "trapper,spinner"),
    ])
    .await;
    let started = Instant::now();
    let response = ANTHROPIC_JSON.send(&aip.gateway, "sk-faults-1", "hi").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-aip-verdict"), Some("error"));
    assert_eq!(
        response.body.as_ref(),
        fixture(ANTHROPIC_JSON.fixture).as_slice()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the 50 ms deadline held"
    );
    // Instances that trapped or overran are discarded, never pooled again.
    let set = aip.gateway.app.registry.current();
    for name in ["trapper", "spinner"] {
        assert_eq!(
            set.policy(name).unwrap().plugin.idle_instances(),
            0,
            "{name}"
        );
    }
    assert_eq!(
        aip.gateway
            .metric("gateway_plugin_calls_total{plugin=\"trapper\",result=\"trap\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        aip.gateway
            .metric("gateway_plugin_calls_total{plugin=\"spinner\",result=\"timeout\"}")
            .await,
        Some(1.0)
    );
    // A failing fail-open policy next to a working one: the working one decides.
    aip.gateway.stop().await;
    let aip = aip_gateway(&[
        ("MNEMOM_PLUGIN_DIRS", path.as_str()),
        ("MNEMOM_AIP_POLICIES", "aip-conscience,trapper"),
    ])
    .await;
    let response = ANTHROPIC_JSON
        .send(&aip.gateway, "sk-faults-2", &Scenario::Review.marker())
        .await;
    assert_eq!(response.header("x-aip-verdict"), Some("review_needed"));
    aip.gateway.stop().await;

    // A fail-closed policy that cannot answer makes the check a violation: enforce blocks it,
    // and the stored concern says why.
    let aip = aip_gateway(&[
        ("MNEMOM_PLUGIN_DIRS", path.as_str()),
        ("MNEMOM_AIP_POLICIES", "aip-conscience,closed"),
    ])
    .await;
    let key = "sk-faults-3";
    configure_agent(&aip.gateway, key, "aip_enforcement_mode = 'enforce'").await;
    let response = ANTHROPIC_JSON.send(&aip.gateway, key, "hi").await;
    assert_eq!(response.status, 403);
    assert_eq!(response.header("x-aip-verdict"), Some("boundary_violation"));
    let concerns = &response.json()["checkpoint"]["concerns"];
    assert_eq!(concerns[0]["category"], "policy_failure");
    assert_eq!(concerns[0]["policy"], "closed");
    // The process is fine and still serves streams.
    let stream = ANTHROPIC_SSE.send(&aip.gateway, "sk-faults-4", "hi").await;
    assert_eq!(stream.status, 200);
    assert_eq!(
        stream.body.as_ref(),
        fixture(ANTHROPIC_SSE.fixture).as_slice()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_example_policy_flags_destructive_commands_from_a_plugin_directory() {
    // A provider answer whose thinking plans a destructive command.
    let fixtures = tempfile::tempdir().unwrap();
    std::fs::create_dir(fixtures.path().join("anthropic")).unwrap();
    let mut answer: serde_json::Value =
        serde_json::from_slice(&fixture("anthropic/messages-thinking-signature-text.json"))
            .unwrap();
    answer["content"][0]["thinking"] =
        "The disk is full. The quickest fix is to run `sudo rm -rf --no-preserve-root /` and start over."
            .into();
    std::fs::write(
        fixtures.path().join("anthropic/destructive.json"),
        serde_json::to_vec(&answer).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        fixture_path("anthropic/messages-thinking-signature-text.json"),
        fixtures.path().join("anthropic/benign.json"),
    )
    .unwrap();
    let mock = MockProvider::start(MockOptions {
        fixtures_dir: fixtures.path().to_owned(),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let wasm = std::fs::read(env!("MNEMOM_PLUGIN_WASM_SHELL_GUARD")).unwrap();
    let manifest = format!(
        "name = \"shell-guard\"\nworld = \"aip-policy-pure\"\nwasm = \"shell-guard.wasm\"\nsha256 = \"{}\"\nfailure_mode = \"fail-open\"\n[limits]\ntimeout_ms = 50\nmemory_mb = 16\n",
        sha256_hex(&wasm)
    );
    let mut dir = ConfigMapDir::new(&[
        ("shell-guard.wasm", wasm.as_slice()),
        ("shell-guard.plugin.toml", manifest.as_bytes()),
    ]);
    let path = dir.path().display().to_string();
    let gateway = TestGateway::start(
        &mock,
        &[
            ("MNEMOM_PLUGIN_DIRS", path.as_str()),
            ("MNEMOM_AIP_POLICIES", "shell-guard"),
            ("MNEMOM_AIP_MIN_EVIDENCE_TOKENS", "1"),
        ],
    )
    .await;
    let send = |fixture: &'static str| {
        let url = gateway.url("/anthropic/v1/messages");
        async move {
            post(
                &url,
                &[("x-api-key", "sk-shell-guard"), ("x-mock-fixture", fixture)],
                ANTHROPIC_JSON.body("clean up the disk"),
            )
            .await
        }
    };
    let flagged = send("anthropic/destructive.json").await;
    assert_eq!(flagged.status, 200);
    assert_eq!(flagged.header("x-aip-verdict"), Some("boundary_violation"));
    assert_eq!(flagged.header("x-aip-action"), Some("deny_and_escalate"));
    let benign = send("anthropic/benign.json").await;
    assert_eq!(benign.header("x-aip-verdict"), Some("clear"));
    // Hot reload: the operator exempts the command in the policy's config; no restart.
    let allowing = format!("{manifest}[config]\nallow = \"--no-preserve-root\"\n");
    dir.update(&[
        ("shell-guard.wasm", wasm.as_slice()),
        ("shell-guard.plugin.toml", allowing.as_bytes()),
    ]);
    let swapped = Instant::now();
    loop {
        let response = send("anthropic/destructive.json").await;
        assert_eq!(response.status, 200);
        if response.header("x-aip-verdict") == Some("clear") {
            break;
        }
        assert!(
            swapped.elapsed() < Duration::from_secs(5),
            "the new config never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_mode_analyses_through_the_hosted_service_for_json_and_streams() {
    let analysis = MockAnalysis::start(MockAnalysisOptions {
        default_scenario: Scenario::Boundary,
        ..MockAnalysisOptions::default()
    })
    .await
    .unwrap();
    let mock = mock().await;
    let url = analysis.analyze_url();
    let gateway = TestGateway::start(
        &mock,
        &[
            ("MNEMOM_ANALYZE_URL", url.as_str()),
            ("MNEMOM_API_KEY", "mnm-test"),
            ("MNEMOM_AIP_MIN_EVIDENCE_TOKENS", "1"),
            ("MNEMOM_WRITER_FLUSH_INTERVAL_MS", "10"),
        ],
    )
    .await;
    let key = "sk-hybrid";
    configure_agent(&gateway, key, "aip_enforcement_mode = 'nudge'").await;
    let response = ANTHROPIC_JSON.send(&gateway, key, "hi").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-aip-verdict"), Some("boundary_violation"));
    assert_eq!(response.header("x-aip-source"), Some("hybrid"));
    assert!(response.header("x-aip-certificate-id").is_some());
    assert!(response.header("x-aip-chain-hash").is_some());
    let checkpoint = response.header("x-aip-checkpoint-id").unwrap().to_owned();
    let recorded = analysis.requests();
    assert_eq!(recorded[0].header("x-mnemom-api-key"), Some("mnm-test"));
    // Streams take the same path in the background; both create nudges (the original's
    // non-streaming hybrid path did not).
    let stream = ANTHROPIC_SSE.send(&gateway, key, "hi").await;
    assert_eq!(stream.header("x-aip-verdict"), Some("pending"));
    checkpoints(&gateway, key, 2).await;
    let id = identity(key).agent_id;
    assert_eq!(
        sqlite_count(
            &gateway.data_dir,
            &format!(
                "SELECT count(*) FROM integrity_checkpoints WHERE checkpoint_id = '{checkpoint}' AND source = 'hybrid'"
            ),
        )
        .await,
        1
    );
    let data = gateway.data_dir.clone();
    eventually("nudges from both paths", Duration::from_secs(10), 2, || {
        let sql = format!("SELECT count(*) FROM enforcement_nudges WHERE agent_id = '{id}'");
        let data = data.clone();
        async move { sqlite_count(&data, &sql).await }
    })
    .await;
    gateway.stop().await;

    // The hosted service failing: error, fail-open, still marked as hybrid.
    let failing = MockAnalysis::start(MockAnalysisOptions {
        default_scenario: Scenario::Error500,
        ..MockAnalysisOptions::default()
    })
    .await
    .unwrap();
    let url = failing.analyze_url();
    let gateway = TestGateway::start(
        &mock,
        &[
            ("MNEMOM_ANALYZE_URL", url.as_str()),
            ("MNEMOM_API_KEY", "mnm-test"),
            ("MNEMOM_AIP_MIN_EVIDENCE_TOKENS", "1"),
        ],
    )
    .await;
    let response = ANTHROPIC_JSON.send(&gateway, "sk-hybrid-2", "hi").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-aip-verdict"), Some("error"));
    assert_eq!(response.header("x-aip-source"), Some("hybrid"));
}

/// A webhook receiver on loopback: answers 500 to the first `failures` deliveries, then 200,
/// and records every delivery.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<(http::HeaderMap, Bytes)>>>,
}

async fn receiver(failures: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/aip", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<(http::HeaderMap, Bytes)>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let n = {
                            let mut all = record.lock().unwrap();
                            all.push((parts.headers, body));
                            all.len()
                        };
                        let status = if n <= failures { 500 } else { 200 };
                        let mut response =
                            http::Response::new(Full::new(Bytes::from_static(b"ok")));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Receiver { url, seen }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_reach_registered_webhooks_signed_and_retried() {
    let hook = receiver(1).await;
    let aip = aip_gateway(&[
        ("MNEMOM_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("MNEMOM_WEBHOOK_RETRY_DELAYS_MS", "50,50,50"),
    ])
    .await;
    let key = "sk-webhook";
    let id = identity(key);
    let store = aip.gateway.app.store.get().unwrap();
    store
        .get_or_create_agent(&id.agent_hash, &id.agent_id)
        .await
        .unwrap();
    store
        .insert_webhook_registration(
            &id.agent_id,
            &hook.url,
            "whsec-test",
            &["verdict.boundary_violation".to_owned()],
        )
        .await
        .unwrap();
    // A clear verdict matches no registered event type; a violation does.
    let clear = ANTHROPIC_JSON
        .send(&aip.gateway, key, &Scenario::Clear.marker())
        .await;
    assert_eq!(clear.header("x-aip-verdict"), Some("clear"));
    let violation = ANTHROPIC_JSON
        .send(&aip.gateway, key, &Scenario::Boundary.marker())
        .await;
    let checkpoint = violation.header("x-aip-checkpoint-id").unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while hook.seen.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "webhook not delivered twice");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (headers, body) = hook.seen.lock().unwrap()[1].clone();
    let signature = headers["x-aip-signature"].to_str().unwrap();
    assert!(mnemom_gateway::webhooks::verify_signature(
        "whsec-test",
        &body,
        signature
    ));
    assert!(!mnemom_gateway::webhooks::verify_signature(
        "other", &body, signature
    ));
    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["event"], "verdict.boundary_violation");
    assert_eq!(payload["checkpoint"]["checkpoint_id"], checkpoint);
    assert_eq!(payload["checkpoint"]["agent_id"], id.agent_id);
    let data = aip.gateway.data_dir.clone();
    eventually(
        "delivery recorded after a retry",
        Duration::from_secs(10),
        1,
        || {
            let sql = format!(
                "SELECT count(*) FROM aip_webhook_deliveries WHERE checkpoint_id = '{checkpoint}' \
             AND delivered = 1 AND attempts = 2"
            );
            let data = data.clone();
            async move { sqlite_count(&data, &sql).await }
        },
    )
    .await;
    assert_eq!(
        hook.seen.lock().unwrap().len(),
        2,
        "the clear verdict was not sent"
    );
}
