//! AIP pipeline benchmark (`cargo bench -p mnemom-gateway --bench aip`): with the analysis mock
//! answering instantly, on this machine, in one process on loopback:
//!
//! 1. the default policy's instantiate + check time, excluding the LLM call (an in-process
//!    backend answers at once) — target ≤ 200 µs;
//! 2. the pipeline's added p50 on non-streaming requests beyond the analysis call itself:
//!    p50(AIP on) − p50(AIP off) − p50(the analysis call alone) — target ≤ 1 ms;
//! 3. streaming time to first byte with AIP on vs off — target within 0.5 ms.
//!
//! Knobs: `AIP_BENCH_REQUESTS` (default 2000 per series), `AIP_BENCH_CHECKS` (default 3000).

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
use mnemom_gateway::app::App;
use mnemom_gateway::config::MapSource;
use mnemom_gateway::metrics::Metrics;
use mnemom_gateway::plugin::adapter::Origin;
use mnemom_gateway::plugin::engine::{PluginEngine, sha256_hex};
use mnemom_gateway::plugin::manifest::Manifest;
use mnemom_gateway::plugin::policy::{
    CheckInput, Completion, CompletionRequest, LlmBackend, LlmFuture, PolicyPlugin, PolicyServices,
};
use mnemom_gateway::proxy::exchange::LogObserver;
use mnemom_mock_provider::{
    MockAnalysis, MockAnalysisOptions, MockOptions, MockProvider, Scenario,
};

const JSON_FIXTURE: &str = "anthropic/messages-thinking-signature-text.json";
const SSE_FIXTURE: &str = "anthropic/messages-stream-thinking-signature-text.sse";

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

struct Running {
    app: Arc<App>,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn gateway(mock: &MockProvider, extra: &[(&str, &str)]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let base = mock.base_url();
    let mut pairs: Vec<(String, String)> = vec![
        ("ANTHROPIC_BASE_URL".into(), base),
        ("MNEMOM_DATA_DIR".into(), dir.path().display().to_string()),
        ("LOG_LEVEL".into(), "error".into()),
        ("MNEMOM_AIP_MIN_EVIDENCE_TOKENS".into(), "1".into()),
    ];
    for (k, v) in extra {
        pairs.push(((*k).into(), (*v).into()));
    }
    let app = App::build_from(&MapSource::from_pairs(pairs), Arc::new(LogObserver))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    while !app.lifecycle.started() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Running {
        app,
        addr,
        _dir: dir,
        stop,
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
    for _ in 0..rounds {
        l_off.extend(
            latencies(&client, &url_off, &json_headers, body, per_round)
                .await
                .0,
        );
        l_on.extend(
            latencies(&client, &url_on, &json_headers, body, per_round)
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
            )
            .await
            .0,
        );
        t_off.extend(
            latencies(&client, &url_off, &sse_headers, stream_body, per_round / 2)
                .await
                .1,
        );
        t_on.extend(
            latencies(&client, &url_on, &sse_headers, stream_body, per_round / 2)
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
    let checks_total = on
        .app
        .metrics
        .aip_checks_total
        .with_label_values(&["review_needed"])
        .get()
        + on.app
            .metrics
            .aip_checks_total
            .with_label_values(&["clear"])
            .get();

    println!("# AIP pipeline benchmark ({requests} requests per series, {checks} policy checks)\n");
    println!("| measure | value | target |");
    println!("| --- | --- | --- |");
    println!(
        "| default policy instantiate + check, excluding the LLM (p50 / p90) | {check_p50:.0} µs / {check_p90:.0} µs | ≤ 200 µs |"
    );
    println!("| non-stream p50, AIP off | {p50_off:.0} µs | |");
    println!("| non-stream p50, AIP on (analysis mock answering at once) | {p50_on:.0} µs | |");
    println!("| the analysis call alone, p50 | {p50_llm:.0} µs | |");
    println!("| pipeline's added p50 beyond the analysis call | {added:.0} µs | ≤ 1000 µs |");
    println!(
        "| stream time to first byte p50, AIP off / on | {ttfb_off:.0} µs / {ttfb_on:.0} µs (Δ {:.0} µs) | within 500 µs |",
        ttfb_on - ttfb_off
    );
    println!("\nchecks that produced a verdict during the run: {checks_total}");
    let _ = on.stop.send(());
    let _ = off.stop.send(());
}
