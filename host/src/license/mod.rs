//! The license: `MNEMOM_LICENSE_JWT` verified locally and cryptographically (EdDSA or RS256 with
//! pinned public keys), its claims (feature flags, limits) exposed, and its state — unlicensed,
//! valid, grace, invalid — served to the proxy gate, the readiness body, metrics and logs.
//!
//! The token is parsed and its signature checked once, at start-up; afterwards only time moves
//! it (valid → grace → invalid, or not-yet-valid → valid), which [`License::gate`] notices with
//! one atomic comparison per request and [`License::spawn_refresher`] notices when idle.
//!
//! Rules (see `docs/license.md`):
//! - no token: the gateway runs unlicensed (one warning at start), nothing is refused;
//! - invalid (garbage, forged, wrong algorithm or key, expired beyond grace, not yet valid):
//!   proxy requests are refused with 403 `license_error`; probes and `/metrics` still answer;
//!   the reason is logged once per change;
//! - expired less than 7 days ago: served, with a warning in readiness, the metric and one log line;
//! - the license never makes `/health/ready` fail: every replica holds the same license, so
//!   unready pods would turn an explanatory 403 into a blanket outage.

mod inspect;
pub mod keys;
pub mod metrics;
mod time;
pub mod token;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus::Registry;
use serde_json::{Value, json};

use crate::config::{ConfigError, ConfigSource, EnvSource};

pub use inspect::{
    EXIT_CONFIG, EXIT_INVALID, EXIT_NO_TOKEN, EXIT_VALID, InspectOutput, Inspection,
    inspect_command, inspect_command_with,
};
pub use keys::{KeyError, KeySet, KeySource, KeyType, PUBLIC_KEY_VARIABLE, PublicKey};
pub use metrics::LicenseMetrics;
pub use time::{format_unix, unix_now};
pub use token::{
    AUDIENCE, GRACE_SECS, LEEWAY_SECS, LicenseClaims, TimeStatus, TokenError, VerifiedLicense,
};

/// The variable holding the license token.
pub const JWT_VARIABLE: &str = "MNEMOM_LICENSE_JWT";
/// The readiness warning during the grace period (the original's name).
pub const GRACE_WARNING: &str = "license_expired_grace_period";
/// How often [`License::spawn_refresher`] is usually run.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Why a license is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidReason {
    /// The token is not a license whatever the time (garbage, forged, wrong algorithm or key,
    /// bad claims).
    Token(TokenError),
    /// Expired and the 7-day grace period is over.
    Expired {
        /// `exp`.
        expired_at: i64,
        /// `exp` + 7 days.
        grace_ended: i64,
    },
    /// `nbf` (or `iat`) is in the future beyond the 60 s leeway.
    NotYetValid {
        /// When it becomes valid.
        valid_from: i64,
    },
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidReason::Token(e) => write!(f, "{e}"),
            InvalidReason::Expired {
                expired_at,
                grace_ended,
            } => write!(
                f,
                "license expired at {} and its 7-day grace period ended {}",
                format_unix(*expired_at),
                format_unix(*grace_ended)
            ),
            InvalidReason::NotYetValid { valid_from } => write!(
                f,
                "license is not valid before {} (nbf/iat in the future)",
                format_unix(*valid_from)
            ),
        }
    }
}

impl InvalidReason {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            InvalidReason::Token(TokenError::TooLarge { .. } | TokenError::Malformed(_)) => {
                "malformed"
            }
            InvalidReason::Token(TokenError::AlgNone) => "alg_none",
            InvalidReason::Token(TokenError::Symmetric(_)) => "symmetric_alg",
            InvalidReason::Token(TokenError::UnsupportedAlg(_)) => "unsupported_alg",
            InvalidReason::Token(TokenError::Critical(_)) => "critical_header",
            InvalidReason::Token(TokenError::UnknownKid(_)) => "unknown_kid",
            InvalidReason::Token(TokenError::AlgKeyMismatch { .. }) => "alg_key_mismatch",
            InvalidReason::Token(TokenError::BadSignature) => "bad_signature",
            InvalidReason::Token(TokenError::Claims(_)) => "invalid_claims",
            InvalidReason::Token(TokenError::Audience(_)) => "wrong_audience",
            InvalidReason::Expired { .. } => "expired",
            InvalidReason::NotYetValid { .. } => "not_yet_valid",
        }
    }
}

/// The license state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LicenseStatus {
    /// No `MNEMOM_LICENSE_JWT`: runs unlicensed.
    Missing,
    /// Verified and within its validity.
    Valid {
        /// `exp`.
        expires_at: i64,
    },
    /// Verified, expired less than 7 days ago: still served, with a warning.
    Grace {
        /// `exp`.
        expired_at: i64,
        /// `exp` + 7 days.
        grace_ends: i64,
    },
    /// Not usable: proxy requests are refused.
    Invalid(InvalidReason),
}

impl LicenseStatus {
    /// The state's name, as the metric's `state` label spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            LicenseStatus::Missing => "unlicensed",
            LicenseStatus::Valid { .. } => "valid",
            LicenseStatus::Grace { .. } => "grace",
            LicenseStatus::Invalid(_) => "invalid",
        }
    }

    /// Whether proxy requests are served in this state.
    pub fn serves(&self) -> bool {
        !matches!(self, LicenseStatus::Invalid(_))
    }

    /// The status of a verified token at a time.
    pub fn from_time(status: TimeStatus) -> Self {
        match status {
            TimeStatus::Valid { expires_at } => LicenseStatus::Valid { expires_at },
            TimeStatus::Grace {
                expired_at,
                grace_ends,
            } => LicenseStatus::Grace {
                expired_at,
                grace_ends,
            },
            TimeStatus::Expired {
                expired_at,
                grace_ended,
            } => LicenseStatus::Invalid(InvalidReason::Expired {
                expired_at,
                grace_ended,
            }),
            TimeStatus::NotYetValid { valid_from } => {
                LicenseStatus::Invalid(InvalidReason::NotYetValid { valid_from })
            }
        }
    }
}

/// A proxy request refused because the license is invalid. The client sees
/// [`LicenseRefusal::MESSAGE`] with type [`LicenseRefusal::ERROR_TYPE`] and status 403; the
/// reason is for logs and readiness.
#[derive(Debug, Clone, thiserror::Error)]
#[error("License invalid or expired")]
pub struct LicenseRefusal {
    reason: Arc<str>,
}

impl LicenseRefusal {
    /// The client-facing message (the original's).
    pub const MESSAGE: &'static str = "License invalid or expired";
    /// The error type (the original's).
    pub const ERROR_TYPE: &'static str = "license_error";
    /// The HTTP status.
    pub const STATUS: u16 = 403;

    /// Why the license is invalid.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The original gateway's body: `{"error":"License invalid or expired","type":"license_error"}`.
    pub fn original_body() -> Value {
        json!({"error": Self::MESSAGE, "type": Self::ERROR_TYPE})
    }
}

/// What the token turned out to be at start-up.
#[derive(Debug)]
enum Token {
    Missing,
    Rejected(TokenError),
    Verified(Box<VerifiedLicense>),
}

#[derive(Debug)]
struct Snapshot {
    status: LicenseStatus,
    refusal: Option<Arc<str>>,
}

/// The gateway's license, shared by the proxy, the probes and the metrics.
#[derive(Debug)]
pub struct License {
    token: Token,
    key_source: KeySource,
    current: ArcSwap<Snapshot>,
    /// When the status next needs recomputing (Unix seconds).
    next_check: AtomicI64,
    refusing: AtomicBool,
    refresh_lock: Mutex<()>,
    metrics: OnceLock<LicenseMetrics>,
}

impl License {
    /// Reads `MNEMOM_LICENSE_JWT` and `MNEMOM_LICENSE_PUBLIC_KEY` from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&EnvSource)
    }

    /// Reads `MNEMOM_LICENSE_JWT` and `MNEMOM_LICENSE_PUBLIC_KEY` from `source`. Only an
    /// unusable public key is an error; a bad token gives an invalid license.
    pub fn from_source(source: &dyn ConfigSource) -> Result<Self, ConfigError> {
        Self::from_source_at(source, unix_now())
    }

    /// [`Self::from_source`] at a given time (Unix seconds).
    pub fn from_source_at(source: &dyn ConfigSource, now: i64) -> Result<Self, ConfigError> {
        let keys = KeySet::from_source(source)?;
        Ok(Self::new(source.get(JWT_VARIABLE).as_deref(), &keys, now))
    }

    /// A license from a token (or none) verified against `keys`, evaluated at `now`. Logs the
    /// initial state once.
    pub fn new(token: Option<&str>, keys: &KeySet, now: i64) -> Self {
        let token = match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => Token::Missing,
            Some(t) => match token::verify(t, keys) {
                Ok(verified) => Token::Verified(Box::new(verified)),
                Err(e) => Token::Rejected(e),
            },
        };
        let license = Self {
            token,
            key_source: keys.source(),
            current: ArcSwap::from_pointee(Snapshot {
                status: LicenseStatus::Missing,
                refusal: None,
            }),
            next_check: AtomicI64::new(i64::MIN),
            refusing: AtomicBool::new(false),
            refresh_lock: Mutex::new(()),
            metrics: OnceLock::new(),
        };
        let status = license.compute(now);
        license.log_state(&status);
        license.store(status, now);
        license
    }

    /// A license with no token: unlicensed (for tests and embedding).
    pub fn unlicensed() -> Self {
        Self::new(None, &KeySet::new(Vec::new()), unix_now())
    }

    /// The current state.
    pub fn status(&self) -> LicenseStatus {
        self.status_at(unix_now())
    }

    /// The state at `now`, recomputed first if a time-based transition is due.
    pub fn status_at(&self, now: i64) -> LicenseStatus {
        self.refresh_if_due(now);
        self.current.load().status.clone()
    }

    /// The verified token (also when expired or not yet valid), if the signature verified.
    pub fn verified(&self) -> Option<&VerifiedLicense> {
        match &self.token {
            Token::Verified(v) => Some(v),
            _ => None,
        }
    }

    /// Why the token was rejected outright, if it was.
    pub fn rejection(&self) -> Option<&TokenError> {
        match &self.token {
            Token::Rejected(e) => Some(e),
            _ => None,
        }
    }

    /// Where the verification keys came from.
    pub fn key_source(&self) -> KeySource {
        self.key_source
    }

    /// The per-request gate: `Ok` unless the license is invalid. Cheap: one clock read and two
    /// atomic loads on the happy path.
    pub fn gate(&self) -> Result<(), LicenseRefusal> {
        self.gate_at(unix_now())
    }

    /// [`Self::gate`] at a given time.
    pub fn gate_at(&self, now: i64) -> Result<(), LicenseRefusal> {
        self.refresh_if_due(now);
        if !self.refusing.load(Ordering::Acquire) {
            return Ok(());
        }
        let reason = self
            .current
            .load()
            .refusal
            .clone()
            .unwrap_or_else(|| Arc::from("license invalid"));
        Err(LicenseRefusal { reason })
    }

    /// The value of a feature flag in a valid (or grace) license; `None` when the license does
    /// not name it, is missing, or is invalid.
    pub fn feature(&self, name: &str) -> Option<bool> {
        let verified = self.verified()?;
        if !self.current.load().status.serves() {
            return None;
        }
        verified.claims.feature_flags.get(name).copied()
    }

    /// Whether a feature may run: a valid license's flag when it names one; `true` when it does
    /// not or when the gateway is unlicensed (the license only narrows what runs); `false` when
    /// the license is invalid.
    pub fn allows(&self, name: &str) -> bool {
        match self.current.load().status {
            LicenseStatus::Invalid(_) => false,
            LicenseStatus::Missing => true,
            LicenseStatus::Valid { .. } | LicenseStatus::Grace { .. } => {
                self.feature(name).unwrap_or(true)
            }
        }
    }

    /// A limit of a valid (or grace) license, as issued.
    pub fn limit(&self, name: &str) -> Option<&Value> {
        let verified = self.verified()?;
        if !self.current.load().status.serves() {
            return None;
        }
        verified.claims.limits.get(name)
    }

    /// The `license` entry of `/health/ready`. It never makes the pod unready (see module docs).
    pub fn readiness(&self) -> Value {
        self.readiness_at(unix_now())
    }

    /// [`Self::readiness`] at a given time.
    pub fn readiness_at(&self, now: i64) -> Value {
        let began = Instant::now();
        let status = self.status_at(now);
        let mut entry = serde_json::Map::new();
        let (label, proxy) = match &status {
            LicenseStatus::Missing => ("unlicensed", "serving"),
            LicenseStatus::Valid { .. } => ("ok", "serving"),
            LicenseStatus::Grace { .. } => ("warning", "serving"),
            LicenseStatus::Invalid(_) => ("error", "refusing"),
        };
        entry.insert("status".into(), json!(label));
        entry.insert("state".into(), json!(status.as_str()));
        entry.insert("proxy".into(), json!(proxy));
        if let Some(v) = self.verified() {
            entry.insert("license_id".into(), json!(v.claims.license_id));
            if let Some(plan) = &v.claims.plan_id {
                entry.insert("plan_id".into(), json!(plan));
            }
            entry.insert("expires_at".into(), json!(format_unix(v.claims.expires_at)));
        }
        match &status {
            LicenseStatus::Grace { grace_ends, .. } => {
                entry.insert("warning".into(), json!(GRACE_WARNING));
                entry.insert("grace_ends".into(), json!(format_unix(*grace_ends)));
            }
            LicenseStatus::Invalid(reason) => {
                entry.insert("error".into(), json!(reason.code()));
                entry.insert("reason".into(), json!(reason.to_string()));
            }
            LicenseStatus::Missing | LicenseStatus::Valid { .. } => {}
        }
        entry.insert(
            "latency_ms".into(),
            json!(began.elapsed().as_secs_f64() * 1000.0),
        );
        Value::Object(entry)
    }

    /// Creates `gateway_license_state{state}` and `gateway_license_expiry_timestamp_seconds` on
    /// `registry` and keeps them current. Call once.
    pub fn register_metrics(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        let metrics = LicenseMetrics::register(registry)?;
        self.metrics
            .set(metrics)
            .map_err(|_| prometheus::Error::AlreadyReg)?;
        let snapshot = self.current.load();
        self.update_metrics(&snapshot.status);
        Ok(())
    }

    /// Re-evaluates the time-based state now (logs and updates metrics on a change).
    pub fn refresh(&self) {
        self.refresh_at(unix_now());
    }

    /// [`Self::refresh`] at a given time.
    pub fn refresh_at(&self, now: i64) {
        let _guard = self
            .refresh_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.apply(now);
    }

    /// Re-evaluates every `every` so metrics and logs follow time while no request arrives.
    /// Runs until the returned task is aborted. Needs a Tokio runtime.
    pub fn spawn_refresher(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let license = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                license.refresh();
            }
        })
    }

    fn refresh_if_due(&self, now: i64) {
        if now < self.next_check.load(Ordering::Acquire) {
            return;
        }
        let _guard = match self.refresh_lock.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Another caller is refreshing; use the state as it is.
            Err(TryLockError::WouldBlock) => return,
        };
        if now >= self.next_check.load(Ordering::Acquire) {
            self.apply(now);
        }
    }

    /// Recomputes, logs a change, stores. The caller holds `refresh_lock`.
    fn apply(&self, now: i64) {
        let status = self.compute(now);
        if self.current.load().status != status {
            self.log_state(&status);
        }
        self.store(status, now);
    }

    fn compute(&self, now: i64) -> LicenseStatus {
        match &self.token {
            Token::Missing => LicenseStatus::Missing,
            Token::Rejected(e) => LicenseStatus::Invalid(InvalidReason::Token(e.clone())),
            Token::Verified(v) => LicenseStatus::from_time(v.status_at(now)),
        }
    }

    fn store(&self, status: LicenseStatus, now: i64) {
        let next = match &self.token {
            Token::Verified(v) => v.next_transition(now),
            Token::Missing | Token::Rejected(_) => i64::MAX,
        };
        let refusal = match &status {
            LicenseStatus::Invalid(reason) => Some(Arc::from(reason.to_string())),
            _ => None,
        };
        self.update_metrics(&status);
        let refusing = refusal.is_some();
        self.current.store(Arc::new(Snapshot { status, refusal }));
        self.refusing.store(refusing, Ordering::Release);
        self.next_check.store(next, Ordering::Release);
    }

    fn update_metrics(&self, status: &LicenseStatus) {
        if let Some(metrics) = self.metrics.get() {
            metrics.set(
                status.as_str(),
                self.verified().map(|v| v.claims.expires_at),
            );
        }
    }

    fn log_state(&self, status: &LicenseStatus) {
        let verified = self.verified();
        let license_id = verified.map_or("", |v| v.claims.license_id.as_str());
        match status {
            LicenseStatus::Missing => tracing::warn!(
                "{JWT_VARIABLE} is not set: running unlicensed (nothing is refused; no license feature flags apply)"
            ),
            LicenseStatus::Valid { expires_at } => tracing::info!(
                license_id,
                plan_id = verified.and_then(|v| v.claims.plan_id.as_deref()).unwrap_or(""),
                kid = verified.and_then(|v| v.kid.as_deref()).unwrap_or(""),
                alg = verified.map_or("", |v| v.alg.as_str()),
                expires_at = %format_unix(*expires_at),
                "license verified"
            ),
            LicenseStatus::Grace {
                expired_at,
                grace_ends,
            } => tracing::warn!(
                license_id,
                warning = GRACE_WARNING,
                expired_at = %format_unix(*expired_at),
                grace_ends = %format_unix(*grace_ends),
                "license expired: still serving during the 7-day grace period; renew it before it ends"
            ),
            LicenseStatus::Invalid(reason) => tracing::error!(
                license_id,
                reason = %reason,
                code = reason.code(),
                key_source = self.key_source.describe(),
                "license invalid: proxy requests are refused with 403 license_error (health endpoints still answer)"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
