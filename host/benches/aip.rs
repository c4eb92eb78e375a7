//! AIP pipeline benchmark (`cargo bench -p mnemom-gateway --bench aip`): with the analysis mock
//! answering instantly, on this machine, in one process on loopback:
//!
//! 1. the default policy's instantiate + check time, excluding the LLM call (an in-process
//!    backend answers at once) — target ≤ 200 µs;
//! 2. the pipeline's added p50 on non-streaming requests beyond the analysis call itself:
//!    p50(AIP on) − p50(AIP off) − p50(the analysis call alone) — target ≤ 1 ms;
//! 3. streaming time to first byte with AIP on vs off — target within 0.5 ms.
//!
//! The gateways run as their own processes (the release binary); the mocks and the client run in
//! this one. Knobs: `AIP_BENCH_REQUESTS` (default 2000 per series), `AIP_BENCH_CHECKS` (default
//! 3000).

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark binary: it reports on stdout and a failure is a failed run"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mnemom_gateway::metrics::Metrics;
use mnemom_gateway::plugin::adapter::Origin;
use mnemom_gateway::plugin::engine::{PluginEngine, sha256_hex};
use mnemom_gateway::plugin::manifest::Manifest;
use mnemom_gateway::plugin::policy::{
    CheckInput, Completion, CompletionRequest, LlmBackend, LlmFuture, PolicyPlugin, PolicyServices,
};
use mnemom_mock_provider::{
    MockAnalysis, MockAnalysisOptions, MockOptions, MockProvider, Scenario,
};

const JSON_FIXTURE: &str = "anthropic/messages-thinking-signature-text.json";
const SSE_FIXTURE: &str = "anthropic/messages-stream-thinking-signature-text.sse";
/// Pause between streamed requests (both series): a stream is analysed after it ends, and on
/// this 2-core machine a back-to-back next request would otherwise measure the previous
/// stream's analysis competing for the CPU rather than its own first byte.
const STREAM_PAUSE: Duration = Duration::from_millis(20);

fn env_number(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

/// An analysis LLM that answers at once with a clear analysis.
#[derive(Debug)]
struct Instant0(String);

impl LlmBackend for Instant0 {
    fn complete(&self, request: CompletionRequest) -> LlmFuture {
        let text = self.0.clone();
        Box::pin(async move {
            Ok(Completion {
                text,
                model: request.model.unwrap_or_else(|| "bench".into()),
                stop_reason: Some("end_turn".into()),
                input_tokens: None,
                output_tokens: None,
                cache_read_tokens: None,
            })
        })
    }
}

async fn policy_check_times(checks: usize) -> Vec<f64> {
    let wasm = std::fs::read(env!("MNEMOM_PLUGIN_WASM_AIP_CONSCIENCE")).unwrap();
    let manifest =
        Manifest::parse(include_str!("../../plugins/aip-conscience/plugin.toml")).unwrap();
    let engine = PluginEngine::new(None).unwrap();
    let metrics = Metrics::new().unwrap();
    let answer = Scenario::Review.answer_text().unwrap();
    let services = PolicyServices {
        llm: Some(Arc::new(Instant0(answer))),
        kv: None,
    };
    let sha = sha256_hex(&wasm);
    let policy = PolicyPlugin::load(
        &engine,
        manifest,
        &wasm,
        sha,
        Origin::Embedded,
        services,
        &metrics,
    )
    .await
    .unwrap();
    let input = CheckInput {
        agent_id: "smolt-bench".into(),
        session_id: "bench-1".into(),
        provider: "anthropic".into(),
        model: "claude-sonnet-4-5".into(),
        thinking: vec!["I need to find all roots of this cubic polynomial and verify them. The Rational Root Theorem suggests checking factors of 6. ".repeat(8)],
        response_text: vec!["The roots are 1, 2 and 3.".into()],
        tool_calls: Vec::new(),
        card_json: Some(
            serde_json::to_string(&mnemom_gateway::store::default_card("smolt-bench", chrono::Utc::now()))
                .unwrap(),
        ),
        card_id: Some("ac-bench".into()),
        conscience_values: mnemom_gateway::aip::inputs::conscience_values(None),
        window: Vec::new(),
        task_context: Some("Agent seen by the mnemom gateway.".into()),
    };
    for _ in 0..50 {
        policy.check(&input).await.unwrap();
    }
    let mut times = Vec::with_capacity(checks);
    for _ in 0..checks {
        let started = Instant::now();
        policy.check(&input).await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    times
}

/// A gateway process (the release binary), stopped when dropped.
struct Running {
    addr: std::net::SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the gateway binary as its own process (its own runtime and threads, as deployed),
/// pointed at the in-process mocks.
async fn gateway(mock: &MockProvider, extra: &[(&str, &str)]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mnemom-gateway"));
    command
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("ANTHROPIC_BASE_URL", mock.base_url())
        .env("MNEMOM_DATA_DIR", dir.path())
        .env("LOG_LEVEL", "error")
        .env("MNEMOM_AIP_MIN_EVIDENCE_TOKENS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    for (k, v) in extra {
        command.env(k, v);
    }
    let child = command.spawn().unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client
            .get(format!("http://{addr}/health/ready").parse().unwrap())
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Running {
        addr,
        child,
        _dir: dir,
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Sequential request latencies (µs) and time to first body byte (µs).
async fn latencies(
    client: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
    n: usize,
    pause: Duration,
) -> (Vec<f64>, Vec<f64>) {
    let mut total = Vec::with_capacity(n);
    let mut first = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let mut builder = http::Request::post(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap();
        let started = Instant::now();
        let response = client.request(request).await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let mut body = response.into_body();
        let mut first_at = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            if first_at.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                first_at = Some(started.elapsed());
            }
        }
        let elapsed = started.elapsed();
        if i >= 50 {
            total.push(elapsed.as_secs_f64() * 1e6);
            first.push(first_at.unwrap_or(elapsed).as_secs_f64() * 1e6);
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    (total, first)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests = env_number("AIP_BENCH_REQUESTS", 2000);
    let checks = env_number("AIP_BENCH_CHECKS", 3000);

    let mut times = policy_check_times(checks).await;
    let check_p50 = percentile(&mut times, 0.5);
    let check_p90 = percentile(&mut times, 0.9);

    let mock = MockProvider::start(MockOptions {
        record_requests: false,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let analysis = MockAnalysis::start(MockAnalysisOptions::default())
        .await
        .unwrap();
    let analysis_url = analysis.base_url();
    let on = gateway(
        &mock,
        &[
            ("ANTHROPIC_API_KEY", "bench-analysis-key"),
            ("MNEMOM_ANALYSIS_BASE_URL", analysis_url.as_str()),
        ],
    )
    .await;
    let off = gateway(&mock, &[("AIP_ENABLED", "false")]).await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":16000,"messages":[{"role":"user","content":"What are the roots of x^3-6x^2+11x-6?"}]}"#;
    let stream_body = r#"{"model":"claude-sonnet-4-5","max_tokens":16000,"stream":true,"messages":[{"role":"user","content":"What are the roots?"}]}"#;
    let json_headers = [("x-api-key", "sk-bench"), ("x-mock-fixture", JSON_FIXTURE)];
    let sse_headers = [("x-api-key", "sk-bench"), ("x-mock-fixture", SSE_FIXTURE)];

    // The analysis call alone: the same request the gateway makes, to the same mock.
    let analysis_request = {
        let system = "x".repeat(7000);
        let prompt = format!(
            "ALIGNMENT CARD SUMMARY (card_id: ac-bench)\n\nTHINKING BLOCK TO EVALUATE:\n\n{}",
            "I need to find all roots of this cubic polynomial. ".repeat(8)
        );
        serde_json::json!({
            "model": "claude-haiku-4-5-20251001",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": prompt}],
        })
        .to_string()
    };
    let analysis_headers = [
        ("x-api-key", "bench-analysis-key"),
        ("anthropic-version", "2023-06-01"),
        ("content-type", "application/json"),
    ];
    let url_on = format!("http://{}/anthropic/v1/messages", on.addr);
    let url_off = format!("http://{}/anthropic/v1/messages", off.addr);
    let url_llm = analysis.url("/v1/messages");

    // Interleave rounds so drift on the machine affects every series alike.
    let rounds = 4;
    let per_round = requests.div_ceil(rounds);
    let (mut l_on, mut l_off, mut l_llm, mut t_on, mut t_off) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut p_on, mut p_off) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        l_off.extend(
            latencies(
                &client,
                &url_off,
                &json_headers,
                body,
                per_round,
                Duration::ZERO,
            )
            .await
            .0,
        );
        l_on.extend(
            latencies(
                &client,
                &url_on,
                &json_headers,
                body,
                per_round,
                Duration::ZERO,
            )
            .await
            .0,
        );
        // Paced: a pause after each request lets the previous check's background work (its
        // consequences, the writer's flush) finish first, as at low load.
        p_off.extend(
            latencies(
                &client,
                &url_off,
                &json_headers,
                body,
                per_round / 2,
                STREAM_PAUSE,
            )
            .await
            .0,
        );
        p_on.extend(
            latencies(
                &client,
                &url_on,
                &json_headers,
                body,
                per_round / 2,
                STREAM_PAUSE,
            )
            .await
            .0,
        );
        l_llm.extend(
            latencies(
                &client,
                &url_llm,
                &analysis_headers,
                &analysis_request,
                per_round,
                Duration::ZERO,
            )
            .await
            .0,
        );
        t_off.extend(
            latencies(
                &client,
                &url_off,
                &sse_headers,
                stream_body,
                per_round / 2,
                STREAM_PAUSE,
            )
            .await
            .1,
        );
        t_on.extend(
            latencies(
                &client,
                &url_on,
                &sse_headers,
                stream_body,
                per_round / 2,
                STREAM_PAUSE,
            )
            .await
            .1,
        );
    }
    let p50_on = percentile(&mut l_on, 0.5);
    let p50_off = percentile(&mut l_off, 0.5);
    let p50_llm = percentile(&mut l_llm, 0.5);
    let ttfb_on = percentile(&mut t_on, 0.5);
    let ttfb_off = percentile(&mut t_off, 0.5);
    let added = p50_on - p50_off - p50_llm;
    let paced_on = percentile(&mut p_on, 0.5);
    let paced_off = percentile(&mut p_off, 0.5);
    let paced_added = paced_on - paced_off - p50_llm;
    println!("# AIP pipeline benchmark ({requests} requests per series, {checks} policy checks)\n");
    println!("| measure | value | target |");
    println!("| --- | --- | --- |");
    println!(
        "| default policy instantiate + check, excluding the LLM (p50 / p90) | {check_p50:.0} µs / {check_p90:.0} µs | ≤ 200 µs |"
    );
    println!("| non-stream p50, AIP off | {p50_off:.0} µs | |");
    println!("| non-stream p50, AIP on (analysis mock answering at once) | {p50_on:.0} µs | |");
    println!("| the analysis call alone, p50 | {p50_llm:.0} µs | |");
    println!(
        "| pipeline's added p50 beyond the analysis call, back to back | {added:.0} µs | ≤ 1000 µs |"
    );
    println!(
        "| non-stream p50 paced (20 ms between requests), AIP off / on | {paced_off:.0} µs / {paced_on:.0} µs | |"
    );
    println!(
        "| pipeline's added p50 beyond the analysis call, paced | {paced_added:.0} µs | ≤ 1000 µs |"
    );
    println!(
        "| stream time to first byte p50, AIP off / on | {ttfb_off:.0} µs / {ttfb_on:.0} µs (Δ {:.0} µs) | within 500 µs |",
        ttfb_on - ttfb_off
    );
    // Where the time goes, from the gateway's own histograms (means over the run).
    let text = {
        let response = client
            .get(format!("http://{}/metrics", on.addr).parse().unwrap())
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    };
    let mean = |family: &str, labels: &str| {
        let value = |suffix: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("{family}_{suffix}")) && l.contains(labels))
                .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                .sum::<f64>()
        };
        value("sum") / value("count").max(1.0) * 1e6
    };
    println!(
        "mean inside the gateway: AIP check {:.0} µs (of which analysis LLM call {:.0} µs, policy check {:.0} µs)",
        mean("gateway_aip_check_duration_seconds", ""),
        mean("gateway_analysis_duration_seconds", ""),
        mean("gateway_plugin_call_duration_seconds", "function=\"check\""),
    );
    let checked: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("gateway_aip_checks_total")
                && (l.contains("\"clear\"") || l.contains("\"review_needed\""))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    println!("checks that produced a verdict during the run: {checked}");
    drop(on);
    drop(off);
}
