//! License metrics: `gateway_license_state{state}` (1 for the current state, 0 for the others)
//! and `gateway_license_expiry_timestamp_seconds` (the token's `exp`, 0 without a verified
//! token). Created by [`super::License::register_metrics`] on the gateway's registry.

use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};

/// Every value of the `state` label.
pub const STATES: &[&str] = &["valid", "grace", "invalid", "unlicensed"];

/// The license gauges.
#[derive(Debug, Clone)]
pub struct LicenseMetrics {
    /// `gateway_license_state{state}`.
    pub state: IntGaugeVec,
    /// `gateway_license_expiry_timestamp_seconds`.
    pub expiry: IntGauge,
}

impl LicenseMetrics {
    /// Creates the gauges and registers them with `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let state = IntGaugeVec::new(
            Opts::new(
                "gateway_license_state",
                "License state: 1 for the current one of valid, grace, invalid, unlicensed.",
            ),
            &["state"],
        )?;
        let expiry = IntGauge::new(
            "gateway_license_expiry_timestamp_seconds",
            "Expiry (exp) of the verified license as a Unix timestamp; 0 without one.",
        )?;
        registry.register(Box::new(state.clone()))?;
        registry.register(Box::new(expiry.clone()))?;
        for s in STATES {
            state.with_label_values(&[s]).set(0);
        }
        Ok(Self { state, expiry })
    }

    /// Sets the gauges to `state` and `expiry`.
    pub fn set(&self, state: &str, expiry: Option<i64>) {
        for s in STATES {
            self.state
                .with_label_values(&[s])
                .set(i64::from(*s == state));
        }
        self.expiry.set(expiry.unwrap_or(0));
    }
}
