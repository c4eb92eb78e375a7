//! Retry delays: exponential from the initial delay, doubling per failure, capped, optionally
//! spread by ±20 % so that replicas which lost the database together do not retry in step.

use std::time::Duration;

/// The delay before each retry of one failing operation.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: bool,
    failures: u32,
    seed: u64,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration, jitter: bool) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64 | 1)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Self {
            initial,
            max: max.max(initial),
            jitter,
            failures: 0,
            seed,
        }
    }

    /// The delay before the next attempt: `initial · 2^(failures so far)`, capped at `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let exponent = self.failures.min(30);
        self.failures = self.failures.saturating_add(1);
        let base = self
            .initial
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.max)
            .min(self.max);
        if !self.jitter {
            return base;
        }
        // xorshift64: good enough to de-synchronise replicas, no dependency.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let spread = (self.seed % 401) as f64 / 1000.0 - 0.2; // -0.2 ..= +0.2
        base.mul_f64(1.0 + spread)
    }

    /// Back to the initial delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}
