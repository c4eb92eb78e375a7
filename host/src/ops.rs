//! Operational endpoints: `/health` (the original's shape), the Kubernetes probes
//! `/health/live`, `/health/ready` and `/health/startup`, `/metrics`, `/models.json`, and the
//! CORS preflight answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::plugin::registry::PluginRegistry;
use crate::proxy::body::{GatewayBody, empty, full};
use crate::proxy::error::json_response;
use crate::proxy::headers::add_preflight;

/// Start-up and shutdown state, shared by the probes and the server.
#[derive(Debug)]
pub struct Lifecycle {
    started: AtomicBool,
    shutting_down: AtomicBool,
    /// When the process started.
    pub boot: Instant,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            started: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            boot: Instant::now(),
        }
    }
}

impl Lifecycle {
    /// Marks start-up complete (plugins loaded, listener bound).
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }
    /// Marks the beginning of shutdown: readiness turns false.
    pub fn mark_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
    /// Whether start-up completed.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }
    /// Whether shutdown began.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// One dependency's readiness entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DependencyHealth {
    /// `ok`, `degraded` or `disabled`.
    pub status: &'static str,
    /// How long the check took.
    pub latency_ms: f64,
    /// Which backend answered (`postgres`, `sqlite`).
    pub backend: &'static str,
    /// Why it is degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// RFC 3339 timestamp of now, in UTC with milliseconds.
pub fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<GatewayBody> {
    json_response(status, Bytes::from(value.to_string()))
}

/// `/health`: the original's body.
pub fn health(version: &str, aip_enabled: bool) -> Response<GatewayBody> {
    json(
        StatusCode::OK,
        serde_json::json!({"status": "ok", "version": version, "timestamp": timestamp(), "aip_enabled": aip_enabled}),
    )
}

/// `/health/live`: the process is up.
pub fn live() -> Response<GatewayBody> {
    json(
        StatusCode::OK,
        serde_json::json!({"status": "ok", "timestamp": timestamp()}),
    )
}

/// `/health/startup`: 503 until start-up completed.
pub fn startup(lifecycle: &Lifecycle) -> Response<GatewayBody> {
    if lifecycle.started() {
        json(
            StatusCode::OK,
            serde_json::json!({"status": "ok", "timestamp": timestamp()}),
        )
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "starting", "timestamp": timestamp()}),
        )
    }
}

/// `/health/ready`: one entry per dependency with its status and latency. The pod is ready when
/// it has started, is not shutting down, and can route (at least one adapter loaded).
///
/// The license entry is informative: an invalid license answers proxied requests with 403 but
/// never takes the pod out of service (every replica holds the same license). A degraded
/// database, cache or writer makes the body `degraded` with HTTP 200: the gateway still proxies
/// (writes are buffered, lookups fall through).
pub fn ready(
    lifecycle: &Lifecycle,
    registry: &PluginRegistry,
    license: &crate::license::License,
    cache: &crate::cache::CacheHealth,
    database: &DependencyHealth,
    writer: Option<&crate::writer::WriterHealth>,
    jobs: Option<serde_json::Value>,
) -> Response<GatewayBody> {
    let began = Instant::now();
    let set = registry.current();
    let plugins_ok = !set.adapters().is_empty();
    let loaded: Vec<serde_json::Value> = set
        .adapters()
        .iter()
        .map(|a| {
            serde_json::json!({
                "name": a.plugin.name(),
                "prefix": a.plugin.descriptor().route_prefix,
                "sha256": a.plugin.sha256(),
                "origin": a.plugin.origin().to_string(),
            })
        })
        .collect();
    let plugins = serde_json::json!({
        "status": if plugins_ok { "ok" } else { "error" },
        "latency_ms": began.elapsed().as_secs_f64() * 1000.0,
        "generation": set.generation,
        "loaded": loaded,
    });
    let (status, code) = if !lifecycle.started() {
        ("not_ready", StatusCode::SERVICE_UNAVAILABLE)
    } else if lifecycle.shutting_down() {
        ("shutting_down", StatusCode::SERVICE_UNAVAILABLE)
    } else if !plugins_ok {
        ("not_ready", StatusCode::SERVICE_UNAVAILABLE)
    } else if cache.status != crate::cache::HealthStatus::Ok
        || database.status == "degraded"
        || writer.is_some_and(|w| w.status != "ok")
    {
        // Degraded, still in service: requests are served without the cache, and writes are
        // buffered (memory, then the journal) until the database answers.
        ("degraded", StatusCode::OK)
    } else {
        ("ok", StatusCode::OK)
    };
    let mut checks = serde_json::json!({
        "plugins": plugins,
        "database": serde_json::to_value(database).unwrap_or_default(),
        "cache": serde_json::to_value(cache).unwrap_or_default(),
        "license": license.readiness(),
    });
    if let (Some(writer), Some(map)) = (writer, checks.as_object_mut()) {
        map.insert(
            "writer".to_owned(),
            serde_json::to_value(writer).unwrap_or_default(),
        );
    }
    // Informational: a failing job does not take the observer out of service.
    if let (Some(jobs), Some(map)) = (jobs, checks.as_object_mut()) {
        map.insert("jobs".to_owned(), jobs);
    }
    json(
        code,
        serde_json::json!({
            "status": status,
            "checks": checks,
            "timestamp": timestamp(),
        }),
    )
}

/// `/metrics`.
pub fn metrics(metrics: &crate::metrics::Metrics) -> Response<GatewayBody> {
    let (content_type, body) = metrics.render();
    let mut response = Response::new(full(body));
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

/// CORS preflight: 204 with the allow-lists.
pub fn preflight() -> Response<GatewayBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    add_preflight(response.headers_mut());
    response
}

/// `/models.json`: the static model registry of the original (which models the gateway knows
/// and whether they think).
pub fn models() -> Response<GatewayBody> {
    let model = |id: &str, name: &str, thinking: bool| serde_json::json!({"id": id, "name": name, "thinking": thinking});
    let body = serde_json::json!({
        "anthropic": [
            model("claude-opus-4-1-20250805", "Claude Opus 4.1", true),
            model("claude-opus-4-20250514", "Claude Opus 4", true),
            model("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", true),
            model("claude-sonnet-4-20250514", "Claude Sonnet 4", true),
            model("claude-haiku-4-5-20251001", "Claude Haiku 4.5", true),
            model("claude-3-7-sonnet-20250219", "Claude 3.7 Sonnet", true),
            model("claude-3-5-haiku-20241022", "Claude 3.5 Haiku", false),
        ],
        "openai": [
            model("gpt-5", "GPT-5", true),
            model("gpt-5-mini", "GPT-5 mini", true),
            model("gpt-5-nano", "GPT-5 nano", true),
            model("o3", "o3", true),
            model("o4-mini", "o4-mini", true),
            model("gpt-4.1", "GPT-4.1", false),
            model("gpt-4o", "GPT-4o", false),
        ],
        "gemini": [
            model("gemini-3-pro", "Gemini 3 Pro", true),
            model("gemini-2.5-pro", "Gemini 2.5 Pro", true),
            model("gemini-2.5-flash", "Gemini 2.5 Flash", true),
            model("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", true),
            model("gemini-2.0-flash", "Gemini 2.0 Flash", false),
        ],
    });
    let mut response = json(StatusCode::OK, body);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}
