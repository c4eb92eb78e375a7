//! `mnemom-gateway license inspect [TOKEN|-]`: what a token grants (claims, features, limits,
//! expiry, kid, alg) and why it is or is not valid, as text or JSON, with an exit code.

use std::io::Read;

use serde_json::{Map, Value, json};

use super::keys::{KeySet, PublicKey};
use super::time::{format_span, format_unix, unix_now};
use super::token::{self, Decoded, VerifiedLicense};
use super::{GRACE_WARNING, InvalidReason, JWT_VARIABLE, LicenseStatus};
use crate::config::ConfigSource;

/// Exit status: valid, or expired within the grace period.
pub const EXIT_VALID: u8 = 0;
/// Exit status: invalid.
pub const EXIT_INVALID: u8 = 1;
/// Exit status: no token given and `MNEMOM_LICENSE_JWT` unset (or empty input).
pub const EXIT_NO_TOKEN: u8 = 2;
/// Exit status: `MNEMOM_LICENSE_PUBLIC_KEY` is unusable (as the binary's configuration errors).
pub const EXIT_CONFIG: u8 = 64;

/// What the command prints (to stdout) and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectOutput {
    /// The report, newline-terminated.
    pub text: String,
    /// The process exit status.
    pub exit_code: u8,
}

/// Runs `license inspect`: `token` is the argument (`-` reads standard input; `None` uses
/// `MNEMOM_LICENSE_JWT` from `source`), keys come from `source` as at start-up.
pub fn inspect_command(
    token: Option<&str>,
    source: &dyn ConfigSource,
    json: bool,
) -> InspectOutput {
    inspect_command_with(
        token,
        source,
        json,
        &mut std::io::stdin().lock(),
        unix_now(),
    )
}

/// [`inspect_command`] with an explicit standard input and time.
pub fn inspect_command_with(
    token: Option<&str>,
    source: &dyn ConfigSource,
    json: bool,
    stdin: &mut dyn Read,
    now: i64,
) -> InspectOutput {
    let keys = match KeySet::from_source(source) {
        Ok(keys) => keys,
        Err(e) => {
            return InspectOutput {
                text: format!("{e}\n"),
                exit_code: EXIT_CONFIG,
            };
        }
    };
    let (token, origin) = match token {
        Some("-") => {
            let mut input = String::new();
            if let Err(e) = stdin.read_to_string(&mut input) {
                return InspectOutput {
                    text: format!("cannot read the token from standard input: {e}\n"),
                    exit_code: EXIT_NO_TOKEN,
                };
            }
            (input, "standard input")
        }
        Some(t) => (t.to_owned(), "argument"),
        None => match source.get(JWT_VARIABLE) {
            Some(t) => (t, JWT_VARIABLE),
            None => (String::new(), JWT_VARIABLE),
        },
    };
    if token.trim().is_empty() {
        return InspectOutput {
            text: format!(
                "no license token: pass one as an argument, `-` to read standard input, or set {JWT_VARIABLE}\n\
                 (without a token the gateway runs unlicensed)\n"
            ),
            exit_code: EXIT_NO_TOKEN,
        };
    }
    let inspection = Inspection::new(&token, &keys, origin, now);
    let text = if json {
        let mut text =
            serde_json::to_string_pretty(&inspection.to_json()).unwrap_or_else(|e| e.to_string());
        text.push('\n');
        text
    } else {
        inspection.render()
    };
    InspectOutput {
        text,
        exit_code: if inspection.status.serves() {
            EXIT_VALID
        } else {
            EXIT_INVALID
        },
    }
}

/// The result of inspecting one token.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Where the token came from.
    pub origin: String,
    /// Its state at the time of inspection (never `Missing`).
    pub status: LicenseStatus,
    /// The verified token, when the signature and claims checked out.
    pub verified: Option<VerifiedLicense>,
    /// The undecoded parts, for showing what an unverified token claims.
    pub decoded: Decoded,
    /// The keys it was checked against.
    pub keys: KeySet,
    /// The time of inspection.
    pub now: i64,
}

impl Inspection {
    /// Verifies `token` against `keys` at `now`.
    pub fn new(token: &str, keys: &KeySet, origin: &str, now: i64) -> Self {
        let (status, verified) = match token::verify(token, keys) {
            Ok(v) => (LicenseStatus::from_time(v.status_at(now)), Some(v)),
            Err(e) => (LicenseStatus::Invalid(InvalidReason::Token(e)), None),
        };
        Self {
            origin: origin.to_owned(),
            status,
            verified,
            decoded: token::decode_unverified(token),
            keys: keys.clone(),
            now,
        }
    }

    fn headline(&self) -> String {
        match &self.status {
            LicenseStatus::Valid { expires_at } => format!(
                "VALID: expires {} (in {})",
                format_unix(*expires_at),
                format_span(expires_at - self.now)
            ),
            LicenseStatus::Grace {
                expired_at,
                grace_ends,
            } => format!(
                "GRACE ({GRACE_WARNING}): expired {} ({} ago); served until the grace period ends {} (in {})",
                format_unix(*expired_at),
                format_span(self.now - expired_at),
                format_unix(*grace_ends),
                format_span(grace_ends - self.now)
            ),
            LicenseStatus::Invalid(reason) => format!("INVALID ({}): {reason}", reason.code()),
            LicenseStatus::Missing => "UNLICENSED".to_owned(),
        }
    }

    fn effect(&self) -> &'static str {
        if self.status.serves() {
            "proxy requests are served"
        } else {
            "proxy requests get 403 license_error; health endpoints and /metrics still answer"
        }
    }

    /// The text report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: &str| {
            let text = format!("{label:<16} {value}");
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line("license:", &self.headline());
        line("effect:", self.effect());
        line("token from:", &self.origin);
        let header = self.decoded.header.as_ref();
        let header_str = |name: &str| {
            header
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        };
        line(
            "algorithm:",
            &header_str("alg").unwrap_or_else(|| "(unreadable)".into()),
        );
        let no_kid = if header.is_some() {
            "(none)"
        } else {
            "(unreadable)"
        };
        line(
            "key id:",
            &header_str("kid").unwrap_or_else(|| no_kid.into()),
        );
        match &self.verified {
            Some(v) => {
                line(
                    "signature:",
                    &format!("verified with {}", describe_key(&v.key)),
                );
                line("keys from:", self.keys.source().describe());
                render_claims(&mut line, v, self.now);
            }
            None => {
                line("keys from:", self.keys.source().describe());
                for key in self.keys.keys() {
                    line("  pinned key:", &describe_key(key));
                }
                if let Some(payload) = &self.decoded.payload {
                    line(
                        "claims:",
                        "(UNVERIFIED — shown for diagnosis only, nothing here is trusted)",
                    );
                    for (name, value) in payload {
                        line(&format!("  {name}"), &value.to_string());
                    }
                } else {
                    line("claims:", "(unreadable)");
                }
            }
        }
        out
    }

    /// The JSON report.
    pub fn to_json(&self) -> Value {
        let mut report = Map::new();
        report.insert("status".into(), json!(self.status.as_str()));
        report.insert("accepted".into(), json!(self.status.serves()));
        report.insert("summary".into(), json!(self.headline()));
        report.insert("effect".into(), json!(self.effect()));
        report.insert("token_from".into(), json!(self.origin));
        report.insert("keys_from".into(), json!(self.keys.source().describe()));
        if let LicenseStatus::Invalid(reason) = &self.status {
            report.insert("reason_code".into(), json!(reason.code()));
            report.insert("reason".into(), json!(reason.to_string()));
        }
        if let LicenseStatus::Grace { .. } = &self.status {
            report.insert("warning".into(), json!(GRACE_WARNING));
        }
        report.insert(
            "header".into(),
            self.decoded
                .header
                .clone()
                .map_or(Value::Null, Value::Object),
        );
        report.insert("verified".into(), json!(self.verified.is_some()));
        match &self.verified {
            Some(v) => {
                let c = &v.claims;
                report.insert("key".into(), key_json(&v.key));
                report.insert(
                    "claims".into(),
                    json!({
                        "license_id": c.license_id,
                        "account_id": c.account_id,
                        "plan_id": c.plan_id,
                        "iss": c.issuer,
                        "sub": c.subject,
                        "aud": c.audience,
                        "iat": c.issued_at,
                        "nbf": c.not_before,
                        "exp": c.expires_at,
                        "is_offline": c.is_offline,
                        "max_activations": c.max_activations,
                        "other": c.other,
                    }),
                );
                report.insert("features".into(), json!(c.feature_flags));
                report.insert("ignored_feature_flags".into(), json!(c.ignored_flags));
                report.insert("limits".into(), json!(c.limits));
                report.insert("expires_at".into(), json!(format_unix(c.expires_at)));
                report.insert(
                    "grace_ends".into(),
                    json!(format_unix(c.expires_at.saturating_add(super::GRACE_SECS))),
                );
            }
            None => {
                report.insert(
                    "pinned_keys".into(),
                    Value::Array(self.keys.keys().iter().map(key_json).collect()),
                );
                report.insert(
                    "unverified_claims".into(),
                    self.decoded
                        .payload
                        .clone()
                        .map_or(Value::Null, Value::Object),
                );
            }
        }
        Value::Object(report)
    }
}

fn render_claims(line: &mut dyn FnMut(&str, &str), v: &VerifiedLicense, now: i64) {
    let c = &v.claims;
    let or_none = |s: &Option<String>| s.clone().unwrap_or_else(|| "(none)".into());
    line("license_id:", &c.license_id);
    line("account_id:", &or_none(&c.account_id));
    line("plan_id:", &or_none(&c.plan_id));
    if let Some(iss) = &c.issuer {
        line("issuer:", iss);
    }
    if let Some(sub) = &c.subject {
        line("subject:", sub);
    }
    if !c.audience.is_empty() {
        line("audience:", &c.audience.join(", "));
    }
    if let Some(iat) = c.issued_at {
        line("issued at:", &format_unix(iat));
    }
    if let Some(nbf) = c.not_before {
        line("not before:", &format_unix(nbf));
    }
    let relative = if c.expires_at >= now {
        format!("in {}", format_span(c.expires_at - now))
    } else {
        format!("{} ago", format_span(now - c.expires_at))
    };
    line(
        "expires at:",
        &format!("{} ({relative})", format_unix(c.expires_at)),
    );
    line(
        "grace ends:",
        &format_unix(c.expires_at.saturating_add(super::GRACE_SECS)),
    );
    line("offline:", if c.is_offline { "yes" } else { "no" });
    if let Some(max) = c.max_activations {
        line("max activations:", &max.to_string());
    }
    if c.feature_flags.is_empty() {
        line(
            "features:",
            "(none named: features follow their own settings)",
        );
    } else {
        line("features:", "");
        for (name, on) in &c.feature_flags {
            line(&format!("  {name}"), if *on { "on" } else { "off" });
        }
    }
    for name in &c.ignored_flags {
        line(&format!("  {name}"), "ignored (not a boolean)");
    }
    if c.limits.is_empty() {
        line("limits:", "(none)");
    } else {
        line("limits:", "");
        for (name, value) in &c.limits {
            line(&format!("  {name}"), &value.to_string());
        }
    }
    if !c.other.is_empty() {
        line("other claims:", "");
        for (name, value) in &c.other {
            line(&format!("  {name}"), &value.to_string());
        }
    }
}

fn describe_key(key: &PublicKey) -> String {
    let name = key
        .kid()
        .map_or_else(|| "(no kid)".to_owned(), |k| format!("`{k}`"));
    format!(
        "key {name}: {} {} bits, alg {}, sha256 {}",
        key.kind().as_str(),
        key.bits(),
        key.kind().algorithm(),
        key.fingerprint()
    )
}

fn key_json(key: &PublicKey) -> Value {
    json!({
        "kid": key.kid(),
        "type": key.kind().as_str(),
        "alg": key.kind().algorithm(),
        "bits": key.bits(),
        "sha256": key.fingerprint(),
    })
}
