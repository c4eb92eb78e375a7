//! The webhook settings, read from `MNEMOM_WEBHOOK_*` and validated at start-up (a bad value
//! stops the process with a message naming the variable).

use std::time::Duration;

use crate::config::bounded;

use crate::config::{ConfigError, ConfigSource};

/// Validated webhook settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `MNEMOM_WEBHOOK_ALLOW_PRIVATE` (false): allow loopback, private, link-local, CGNAT and
    /// other non-public destinations. Unspecified, broadcast and multicast addresses stay
    /// refused.
    pub allow_private: bool,
    /// `MNEMOM_WEBHOOK_RETRY_DELAYS_MS` (`1000,4000,16000`): the waits before each retry; a
    /// delivery makes at most `1 + retry_delays.len()` attempts.
    pub retry_delays: Vec<Duration>,
    /// `MNEMOM_WEBHOOK_TIMEOUT_MS` (5 000): deadline of one attempt (resolution, connection, TLS,
    /// request and response head).
    pub attempt_timeout: Duration,
    /// `MNEMOM_WEBHOOK_DISABLE_AFTER` (10): consecutive failed deliveries after which a
    /// registration is disabled; 0 never disables.
    pub disable_after: u32,
    /// `MNEMOM_WEBHOOK_MAX_CONCURRENCY` (64): deliveries in flight at once in this process;
    /// beyond that a delivery is recorded as not attempted and left to the redelivery job.
    pub max_concurrency: usize,
    /// `MNEMOM_WEBHOOK_REDELIVERY_MAX_ATTEMPTS` (8): the attempt budget of a delivery, first
    /// delivery and redeliveries together.
    pub redelivery_max_attempts: u32,
    /// `MNEMOM_WEBHOOK_REDELIVERY_MAX_AGE_HOURS` (24): deliveries older than this are not
    /// redelivered.
    pub redelivery_max_age: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry_delays: [1000, 4000, 16000]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            attempt_timeout: Duration::from_secs(5),
            disable_after: 10,
            max_concurrency: 64,
            redelivery_max_attempts: 8,
            redelivery_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl WebhookSettings {
    /// Reads the `MNEMOM_WEBHOOK_*` variables.
    pub fn from_source(source: &dyn ConfigSource) -> Result<Self, ConfigError> {
        let d = Self::default();
        let allow_private = match source
            .get("MNEMOM_WEBHOOK_ALLOW_PRIVATE")
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => d.allow_private,
            Some(v) => match v.as_str() {
                "false" | "0" | "no" | "off" => false,
                "true" | "1" | "yes" | "on" => true,
                _ => {
                    return Err(error(
                        "MNEMOM_WEBHOOK_ALLOW_PRIVATE",
                        format!("`{v}` is not true or false"),
                    ));
                }
            },
        };
        let retry_delays = match source.get("MNEMOM_WEBHOOK_RETRY_DELAYS_MS") {
            None => d.retry_delays,
            Some(v) => parse_delays(&v)?,
        };
        let attempt_timeout = Duration::from_millis(bounded(
            source,
            "MNEMOM_WEBHOOK_TIMEOUT_MS",
            5_000,
            1..=300_000,
        )?);
        let disable_after = bounded(
            source,
            "MNEMOM_WEBHOOK_DISABLE_AFTER",
            u64::from(d.disable_after),
            0..=1_000_000,
        )?;
        let max_concurrency = bounded(
            source,
            "MNEMOM_WEBHOOK_MAX_CONCURRENCY",
            d.max_concurrency as u64,
            1..=100_000,
        )?;
        let redelivery_max_attempts = bounded(
            source,
            "MNEMOM_WEBHOOK_REDELIVERY_MAX_ATTEMPTS",
            u64::from(d.redelivery_max_attempts),
            1..=1_000,
        )?;
        let max_age_hours = bounded(
            source,
            "MNEMOM_WEBHOOK_REDELIVERY_MAX_AGE_HOURS",
            24,
            1..=24 * 365,
        )?;
        Ok(Self {
            allow_private,
            retry_delays,
            attempt_timeout,
            // The bounds above keep these conversions lossless.
            disable_after: u32::try_from(disable_after).unwrap_or(u32::MAX),
            max_concurrency: usize::try_from(max_concurrency).unwrap_or(usize::MAX),
            redelivery_max_attempts: u32::try_from(redelivery_max_attempts).unwrap_or(u32::MAX),
            redelivery_max_age: Duration::from_secs(max_age_hours * 3600),
        })
    }

    /// The most attempts one delivery makes before it is recorded as failed.
    pub fn attempts_per_delivery(&self) -> u32 {
        u32::try_from(self.retry_delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }
}

fn error(variable: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        reason: reason.into(),
    }
}

/// `a,b,c` milliseconds; empty (`none`) means no retries. At most 20 retries of at most an hour.
fn parse_delays(value: &str) -> Result<Vec<Duration>, ConfigError> {
    const VARIABLE: &str = "MNEMOM_WEBHOOK_RETRY_DELAYS_MS";
    let value = value.trim();
    if value.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let delays = value
        .split(',')
        .map(|part| {
            let part = part.trim();
            part.parse::<u64>()
                .ok()
                .filter(|ms| *ms <= 3_600_000)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    error(
                        VARIABLE,
                        format!(
                            "`{part}` is not a delay in milliseconds (0 to 3600000); expected a \
                             comma-separated list such as 1000,4000,16000, or none"
                        ),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if delays.len() > 20 {
        return Err(error(VARIABLE, "at most 20 retries"));
    }
    Ok(delays)
}
