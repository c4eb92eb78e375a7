//! Prometheus metrics: the six families of the original gateway (same names and labels), the
//! plugin and overhead metrics of this one, and the standard `process_*` metrics. Every family
//! is present from start-up with its known label values at zero.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Providers known at start-up (label values pre-created at zero).
pub const KNOWN_PROVIDERS: &[&str] = &["anthropic", "openai", "gemini", "unknown"];
/// Every value of `X-AIP-Verdict`.
pub const AIP_VERDICTS: &[&str] = &[
    "clear",
    "review_needed",
    "boundary_violation",
    "pending",
    "disabled",
    "skipped",
    "error",
];
/// Cache operations and results.
pub const CACHE_OPERATIONS: &[&str] = &["get", "put", "delete", "list"];
/// Cache results.
pub const CACHE_RESULTS: &[&str] = &["hit", "miss", "error"];
/// Background tasks of this version: response extraction, and the background writer's units of
/// work (an agent made sure of, a usage event or checkpoint persisted, an agent's `last_seen`
/// written, a record replayed from the journal).
pub const BACKGROUND_TASKS: &[&str] = &[
    "extraction",
    "agent",
    "usage_event",
    "checkpoint",
    "last_seen",
    "journal_replay",
    "nudge",
    "drift_alert",
    "containment",
    "webhook_delivery",
    "webhook",
    "aip_consequences",
    "nudge_delivery",
];
/// Record kinds of the background writer.
pub const WRITER_KINDS: &[&str] = &[
    "usage_event",
    "checkpoint",
    "nudge",
    "drift_alert",
    "containment",
    "webhook_delivery",
    "last_seen",
];
/// Why the background writer lost a record (each is also logged).
pub const WRITER_DROP_REASONS: &[&str] = &["journal_full", "journal_io", "journal_corrupt"];
/// Scheduled jobs of the observer role and the results a run can have.
pub const CRON_JOBS: &[&str] = &[
    "nudge_expiry",
    "usage_rollup",
    "webhook_redelivery",
    "integrity_summary",
    "retention",
];
/// Results of a scheduled run (`skipped`: the lease was held by another replica).
pub const CRON_RESULTS: &[&str] = &["success", "error", "skipped"];

/// Request-duration buckets of the original (seconds).
const REQUEST_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Sub-millisecond buckets for the gateway's own time and plugin calls.
const FINE_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];

/// Every metric the gateway exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `gateway_requests_total{provider,status}`.
    pub requests_total: IntCounterVec,
    /// `gateway_request_duration_seconds{provider}`, measured to the end of the response body.
    pub request_duration: HistogramVec,
    /// `gateway_aip_checks_total{verdict}`.
    pub aip_checks_total: IntCounterVec,
    /// `gateway_cache_operations_total{operation,result}`.
    pub cache_operations_total: IntCounterVec,
    /// `gateway_background_tasks_total{task}`.
    pub background_tasks_total: IntCounterVec,
    /// `gateway_cron_runs_total{job,result}`.
    pub cron_runs_total: IntCounterVec,
    /// `gateway_cron_last_success_timestamp_seconds{job}`: Unix time of each job's last
    /// successful run (0 until it has succeeded once in this process).
    pub cron_last_success: IntGaugeVec,
    /// `gateway_plugin_reloads_total{plugin,result}` (`success` | `error`).
    pub plugin_reloads_total: IntCounterVec,
    /// `gateway_plugin_calls_total{plugin,result}` (`success` | `error` | `trap` | `timeout` | `memory`).
    pub plugin_calls_total: IntCounterVec,
    /// `gateway_plugin_call_duration_seconds{plugin,function}`.
    pub plugin_call_duration: HistogramVec,
    /// `gateway_plugin_fail_open_total{plugin,function}`: failed calls passed through untouched.
    pub plugin_fail_open_total: IntCounterVec,
    /// `gateway_overhead_seconds{provider}`: total time minus upstream time.
    pub overhead_seconds: HistogramVec,
    /// `gateway_upstream_errors_total{provider,kind}` (`connect` | `timeout` | `protocol` | `idle_timeout`).
    pub upstream_errors_total: IntCounterVec,
    /// `gateway_extractions_total{provider,result}` (`success` | `error` | `abandoned` | `skipped`).
    pub extractions_total: IntCounterVec,
    /// `gateway_active_streams`: responses currently being streamed to clients.
    pub active_streams: IntGauge,
    /// `gateway_plugins_loaded`: plugins in the active set.
    pub plugins_loaded: IntGauge,
    /// `gateway_plugin_scans_total`: rescans of the plugin sources (start-up, change events, polls).
    pub plugin_scans_total: prometheus::IntCounter,
    /// `gateway_writer_queue_depth`: records in the writer's memory queue.
    pub writer_queue_depth: IntGauge,
    /// `gateway_writer_last_seen_pending`: agents whose `last_seen` waits for the next batch.
    pub writer_last_seen_pending: IntGauge,
    /// `gateway_writer_journal_records`: records in the journal not yet written to the database.
    pub writer_journal_records: IntGauge,
    /// `gateway_writer_journal_bytes`: size of the journal's segment files.
    pub writer_journal_bytes: IntGauge,
    /// `gateway_writer_records_rejected_total{kind}`: records the database refused (a constraint
    /// or a value it cannot store), set aside so they do not block the queue.
    pub writer_rejected_total: IntCounterVec,
    /// `gateway_writer_records_dropped_total{reason}`: records lost (`journal_full`,
    /// `journal_io`, `journal_corrupt`).
    pub writer_dropped_total: IntCounterVec,
    /// `gateway_writer_retries_total`: failed write attempts that were retried (or journaled).
    pub writer_retries_total: IntCounter,
}

/// A provider's per-request series, resolved once per adapter instead of looked up by label on
/// every request (a lookup hashes the label values and takes a lock).
#[derive(Debug, Clone)]
pub struct ProviderSeries {
    /// `gateway_requests_total{provider,status="200"}`.
    pub ok: prometheus::IntCounter,
    /// `gateway_request_duration_seconds{provider}`.
    pub duration: prometheus::Histogram,
    /// `gateway_overhead_seconds{provider}`.
    pub overhead: prometheus::Histogram,
    /// `gateway_extractions_total{provider,result="success"}`.
    pub extraction_success: prometheus::IntCounter,
    /// `gateway_extractions_total{provider,result="skipped"}`.
    pub extraction_skipped: prometheus::IntCounter,
    /// `gateway_background_tasks_total{task="extraction"}`.
    pub extraction_task: prometheus::IntCounter,
}

impl Metrics {
    /// The series of `provider` that every proxied request touches.
    pub fn provider_series(&self, provider: &str) -> ProviderSeries {
        ProviderSeries {
            ok: self.requests_total.with_label_values(&[provider, "200"]),
            duration: self.request_duration.with_label_values(&[provider]),
            overhead: self.overhead_seconds.with_label_values(&[provider]),
            extraction_success: self
                .extractions_total
                .with_label_values(&[provider, "success"]),
            extraction_skipped: self
                .extractions_total
                .with_label_values(&[provider, "skipped"]),
            extraction_task: self
                .background_tasks_total
                .with_label_values(&["extraction"]),
        }
    }

    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram = |name: &str,
                         help: &str,
                         labels: &[&str],
                         buckets: &[f64]|
         -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let metrics = Self {
            requests_total: counter(
                "gateway_requests_total",
                "Requests handled, by provider and HTTP status.",
                &["provider", "status"],
            )?,
            request_duration: histogram(
                "gateway_request_duration_seconds",
                "Request duration from arrival to the end of the response body.",
                &["provider"],
                REQUEST_BUCKETS,
            )?,
            aip_checks_total: counter(
                "gateway_aip_checks_total",
                "AIP integrity checks, by verdict.",
                &["verdict"],
            )?,
            cache_operations_total: counter(
                "gateway_cache_operations_total",
                "Cache operations, by operation and result.",
                &["operation", "result"],
            )?,
            background_tasks_total: counter(
                "gateway_background_tasks_total",
                "Background tasks run, by task.",
                &["task"],
            )?,
            cron_runs_total: counter(
                "gateway_cron_runs_total",
                "Scheduled job runs, by job and result.",
                &["job", "result"],
            )?,
            cron_last_success: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "gateway_cron_last_success_timestamp_seconds",
                        "Unix time of the last successful run of each scheduled job.",
                    ),
                    &["job"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            plugin_reloads_total: counter(
                "gateway_plugin_reloads_total",
                "Plugin loads and reloads, by plugin and result.",
                &["plugin", "result"],
            )?,
            plugin_calls_total: counter(
                "gateway_plugin_calls_total",
                "Plugin calls, by plugin and result.",
                &["plugin", "result"],
            )?,
            plugin_call_duration: histogram(
                "gateway_plugin_call_duration_seconds",
                "Duration of plugin calls, instance checkout included.",
                &["plugin", "function"],
                FINE_BUCKETS,
            )?,
            plugin_fail_open_total: counter(
                "gateway_plugin_fail_open_total",
                "Failed plugin calls whose request or response was passed through untouched.",
                &["plugin", "function"],
            )?,
            overhead_seconds: histogram(
                "gateway_overhead_seconds",
                "Time the gateway adds: total request time minus time spent waiting on the upstream.",
                &["provider"],
                FINE_BUCKETS,
            )?,
            upstream_errors_total: counter(
                "gateway_upstream_errors_total",
                "Upstream failures, by provider and kind.",
                &["provider", "kind"],
            )?,
            extractions_total: counter(
                "gateway_extractions_total",
                "Response extractions (thinking, text, tool calls, usage), by provider and result.",
                &["provider", "result"],
            )?,
            active_streams: gauge(
                "gateway_active_streams",
                "Responses currently being streamed to clients.",
            )?,
            plugins_loaded: gauge(
                "gateway_plugins_loaded",
                "Plugins in the active plugin set.",
            )?,
            plugin_scans_total: {
                let c = prometheus::IntCounter::new(
                    "gateway_plugin_scans_total",
                    "Rescans of the plugin sources (start-up, change events, polls).",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            writer_queue_depth: gauge(
                "gateway_writer_queue_depth",
                "Records in the background writer's memory queue.",
            )?,
            writer_last_seen_pending: gauge(
                "gateway_writer_last_seen_pending",
                "Agents whose last_seen update waits for the background writer's next batch.",
            )?,
            writer_journal_records: gauge(
                "gateway_writer_journal_records",
                "Records in the background writer's journal not yet written to the database.",
            )?,
            writer_journal_bytes: gauge(
                "gateway_writer_journal_bytes",
                "Size of the background writer's journal files.",
            )?,
            writer_rejected_total: counter(
                "gateway_writer_records_rejected_total",
                "Records the database refused (constraint or invalid value), set aside, by kind.",
                &["kind"],
            )?,
            writer_dropped_total: counter(
                "gateway_writer_records_dropped_total",
                "Records the background writer lost, by reason.",
                &["reason"],
            )?,
            writer_retries_total: {
                let c = IntCounter::new(
                    "gateway_writer_retries_total",
                    "Failed background-writer attempts that were retried or journaled.",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            registry,
        };
        metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        metrics.preset();
        Ok(metrics)
    }

    /// Creates the known label combinations at zero so dashboards and alerts see every series
    /// from start-up.
    fn preset(&self) {
        for provider in KNOWN_PROVIDERS {
            self.requests_total.with_label_values(&[provider, "200"]);
            self.request_duration.with_label_values(&[provider]);
            self.overhead_seconds.with_label_values(&[provider]);
        }
        for verdict in AIP_VERDICTS {
            self.aip_checks_total.with_label_values(&[verdict]);
        }
        for op in CACHE_OPERATIONS {
            for result in CACHE_RESULTS {
                self.cache_operations_total.with_label_values(&[op, result]);
            }
        }
        for task in BACKGROUND_TASKS {
            self.background_tasks_total.with_label_values(&[task]);
        }
        for kind in WRITER_KINDS {
            self.writer_rejected_total.with_label_values(&[kind]);
        }
        for reason in WRITER_DROP_REASONS {
            self.writer_dropped_total.with_label_values(&[reason]);
        }
        for job in CRON_JOBS {
            self.cron_last_success.with_label_values(&[job]);
            for result in CRON_RESULTS {
                self.cron_runs_total.with_label_values(&[job, result]);
            }
        }
    }

    /// Pre-creates the per-plugin series of a newly loaded plugin.
    pub fn preset_plugin(&self, plugin: &str) {
        for result in ["success", "error"] {
            self.plugin_reloads_total
                .with_label_values(&[plugin, result]);
        }
        for result in ["success", "error", "trap", "timeout", "memory"] {
            self.plugin_calls_total.with_label_values(&[plugin, result]);
        }
    }

    /// The registry, for subsystems that register their own metrics (license, cache, store).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> (String, Vec<u8>) {
        let encoder = TextEncoder::new();
        let mut buffer = Vec::with_capacity(16 * 1024);
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        (encoder.format_type().to_owned(), buffer)
    }
}
