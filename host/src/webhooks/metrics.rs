//! The webhook metrics, registered in the gateway's registry: deliveries by outcome, attempts
//! by result, and delivery durations.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

use crate::metrics::Metrics;

/// Outcomes of a delivery (`gateway_webhook_deliveries_total{result}`): `delivered`, `failed`
/// (every attempt failed), `refused` (the SSRF guard refused the destination), `deferred` (not
/// attempted: too many deliveries in flight, or shutting down; left to the redelivery job) and
/// `disabled` (the failure disabled the registration; also counted as `failed` or `refused`).
pub const DELIVERY_RESULTS: &[&str] = &["delivered", "failed", "refused", "deferred", "disabled"];

/// Results of one HTTP attempt (`gateway_webhook_attempts_total{result}`): `success` (2xx),
/// `http_error` (another status), `connect_error` (resolution, connection, TLS, protocol) and
/// `timeout`.
pub const ATTEMPT_RESULTS: &[&str] = &["success", "http_error", "connect_error", "timeout"];

/// Delivery duration buckets (seconds): a delivery can span several attempts and retry waits.
const DURATION_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The webhook metric families (cheap to clone).
#[derive(Debug, Clone)]
pub struct WebhookMetrics {
    /// `gateway_webhook_deliveries_total{result}`.
    pub deliveries_total: IntCounterVec,
    /// `gateway_webhook_attempts_total{result}`.
    pub attempts_total: IntCounterVec,
    /// `gateway_webhook_delivery_duration_seconds{result}`: first attempt to outcome (`delivered`
    /// or `failed`).
    pub delivery_duration: HistogramVec,
    /// The gateway's metrics (`gateway_background_tasks_total{task="webhook"}`).
    pub gateway: Metrics,
}

impl WebhookMetrics {
    /// Registers the families in `metrics`' registry, every known label at zero. Call once per
    /// registry (a second call fails with `AlreadyReg`).
    pub fn register(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let registry = metrics.registry();
        let deliveries_total = IntCounterVec::new(
            Opts::new(
                "gateway_webhook_deliveries_total",
                "Webhook deliveries (one per registration and checkpoint, redeliveries included), \
                 by outcome.",
            ),
            &["result"],
        )?;
        let attempts_total = IntCounterVec::new(
            Opts::new(
                "gateway_webhook_attempts_total",
                "Webhook HTTP attempts, by result.",
            ),
            &["result"],
        )?;
        let delivery_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_webhook_delivery_duration_seconds",
                "Duration of webhook deliveries, retries included, by outcome.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["result"],
        )?;
        registry.register(Box::new(deliveries_total.clone()))?;
        registry.register(Box::new(attempts_total.clone()))?;
        registry.register(Box::new(delivery_duration.clone()))?;
        for result in DELIVERY_RESULTS {
            deliveries_total.with_label_values(&[result]);
        }
        for result in ATTEMPT_RESULTS {
            attempts_total.with_label_values(&[result]);
        }
        for result in ["delivered", "failed"] {
            delivery_duration.with_label_values(&[result]);
        }
        metrics
            .background_tasks_total
            .with_label_values(&["webhook"]);
        Ok(Self {
            deliveries_total,
            attempts_total,
            delivery_duration,
            gateway: metrics.clone(),
        })
    }

    pub(crate) fn delivery(&self, result: &str) {
        self.deliveries_total.with_label_values(&[result]).inc();
    }

    pub(crate) fn attempt(&self, result: &str) {
        self.attempts_total.with_label_values(&[result]).inc();
    }
}
