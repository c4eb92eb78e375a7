//! The license JWT: compact-serialisation decoding, pinned-algorithm signature verification, the
//! claims, and the time-based status (`status_at`) of a verified token.
//!
//! Order of checks: three base64url parts → header JSON → `alg` (`none` and `HS*` refused
//! outright; only `EdDSA`/`Ed25519`/`RS256`) → `crit` refused → key chosen by `kid` and key type →
//! signature → claims (`license_id`, `exp` required; `aud`, if present, must name
//! `mnemom-gateway`). Time (`exp`, `nbf`, `iat`) is judged separately by
//! [`VerifiedLicense::status_at`], so the running gateway moves valid → grace → invalid
//! without parsing the token again.

use std::collections::BTreeMap;

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use super::keys::{KeySet, KeySource, KeyType, PublicKey};
use super::time::format_unix;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 60;
/// How long an expired license keeps serving (with a warning), in seconds: 7 days.
pub const GRACE_SECS: i64 = 7 * 24 * 3600;
/// The audience a token must name when it carries `aud`.
pub const AUDIENCE: &str = "mnemom-gateway";
/// Largest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// base64url, padding optional (JWS uses none; some encoders add it).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a token is not a license, whatever the time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Larger than [`MAX_TOKEN_BYTES`].
    #[error("token is {bytes} bytes, larger than the {MAX_TOKEN_BYTES}-byte limit")]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// Not a compact JWS, or a part does not decode.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg: none` (an unsigned token).
    #[error("unsigned token (alg `none`) refused")]
    AlgNone,
    /// `HS256` and friends: a shared secret is never a license key.
    #[error("symmetric algorithm `{0}` refused (only EdDSA and RS256 with pinned public keys)")]
    Symmetric(String),
    /// Any other algorithm.
    #[error("algorithm `{0}` is not accepted (only EdDSA and RS256)")]
    UnsupportedAlg(String),
    /// The header marks extensions critical.
    #[error("header lists critical extensions ({0}) the gateway does not implement")]
    Critical(String),
    /// The header names a kid the key set does not have.
    #[error("unknown key id `{0}`: no pinned key has it")]
    UnknownKid(String),
    /// No key of the type the algorithm needs (or the named key is of another type).
    #[error("algorithm `{alg}` needs an {needed} key: {detail}")]
    AlgKeyMismatch {
        /// The header's algorithm.
        alg: String,
        /// The key type it needs.
        needed: &'static str,
        /// Which keys there are instead.
        detail: String,
    },
    /// The signature does not verify with any candidate key.
    #[error("signature does not verify against the pinned license key(s)")]
    BadSignature,
    /// A claim is missing or of the wrong type.
    #[error("invalid claims: {0}")]
    Claims(String),
    /// `aud` is present and does not name this product.
    #[error("audience {0} does not include `{AUDIENCE}`")]
    Audience(String),
}

/// The decoded, unverified parts of a token, for diagnostics.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// The header, when it decodes to a JSON object.
    pub header: Option<Map<String, Value>>,
    /// The payload, when it decodes to a JSON object.
    pub payload: Option<Map<String, Value>>,
}

/// Decodes header and payload without verifying anything (never trust the result).
pub fn decode_unverified(token: &str) -> Decoded {
    let mut parts = token.trim().split('.');
    let object = |part: Option<&str>| -> Option<Map<String, Value>> {
        let bytes = B64URL.decode(part?).ok()?;
        match serde_json::from_slice(&bytes).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    };
    let header = object(parts.next());
    let payload = object(parts.next());
    Decoded { header, payload }
}

/// The claims of a license.
#[derive(Debug, Clone, PartialEq)]
pub struct LicenseClaims {
    /// `license_id` (required).
    pub license_id: String,
    /// `account_id`.
    pub account_id: Option<String>,
    /// `plan_id`.
    pub plan_id: Option<String>,
    /// `iss` (shown, not checked: the pinned key is the issuer).
    pub issuer: Option<String>,
    /// `sub`.
    pub subject: Option<String>,
    /// `aud`, as a list.
    pub audience: Vec<String>,
    /// `iat`, Unix seconds.
    pub issued_at: Option<i64>,
    /// `nbf`, Unix seconds.
    pub not_before: Option<i64>,
    /// `exp`, Unix seconds (required).
    pub expires_at: i64,
    /// `feature_flags`: the boolean entries.
    pub feature_flags: BTreeMap<String, bool>,
    /// `feature_flags` entries that are not booleans (ignored).
    pub ignored_flags: Vec<String>,
    /// `limits`, as issued.
    pub limits: BTreeMap<String, Value>,
    /// `is_offline` (default false). The gateway never phones home, so this is informational.
    pub is_offline: bool,
    /// `max_activations`, informational.
    pub max_activations: Option<u64>,
    /// Every other claim, as issued.
    pub other: BTreeMap<String, Value>,
}

/// A token whose signature verified against a pinned key and whose claims are well-formed.
#[derive(Debug, Clone)]
pub struct VerifiedLicense {
    /// The header's `alg`.
    pub alg: String,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The key that verified it.
    pub key: PublicKey,
    /// Where that key came from.
    pub key_source: KeySource,
    /// The claims.
    pub claims: LicenseClaims,
}

/// Where a verified license stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeStatus {
    /// Within `nbf`/`iat` … `exp` (with leeway).
    Valid {
        /// `exp`.
        expires_at: i64,
    },
    /// Expired less than [`GRACE_SECS`] ago.
    Grace {
        /// `exp`.
        expired_at: i64,
        /// `exp` + 7 days.
        grace_ends: i64,
    },
    /// Expired, grace over.
    Expired {
        /// `exp`.
        expired_at: i64,
        /// When grace ended.
        grace_ended: i64,
    },
    /// `nbf` (or `iat`) is in the future beyond the leeway.
    NotYetValid {
        /// The earliest time it becomes valid (without leeway).
        valid_from: i64,
    },
}

impl VerifiedLicense {
    /// The status at `now` (Unix seconds). Cheap: no parsing, no crypto.
    pub fn status_at(&self, now: i64) -> TimeStatus {
        let claims = &self.claims;
        let valid_from = claims.not_before.into_iter().chain(claims.issued_at).max();
        if let Some(from) = valid_from
            && now.saturating_add(LEEWAY_SECS) < from
        {
            return TimeStatus::NotYetValid { valid_from: from };
        }
        let exp = claims.expires_at;
        let grace_ends = exp.saturating_add(GRACE_SECS);
        if now <= exp.saturating_add(LEEWAY_SECS) {
            TimeStatus::Valid { expires_at: exp }
        } else if now < grace_ends {
            TimeStatus::Grace {
                expired_at: exp,
                grace_ends,
            }
        } else {
            TimeStatus::Expired {
                expired_at: exp,
                grace_ended: grace_ends,
            }
        }
    }

    /// The first time after `now` at which [`Self::status_at`] can change, or `i64::MAX`.
    pub fn next_transition(&self, now: i64) -> i64 {
        match self.status_at(now) {
            TimeStatus::NotYetValid { valid_from } => valid_from.saturating_sub(LEEWAY_SECS),
            TimeStatus::Valid { expires_at } => {
                expires_at.saturating_add(LEEWAY_SECS).saturating_add(1)
            }
            TimeStatus::Grace { grace_ends, .. } => grace_ends,
            TimeStatus::Expired { .. } => i64::MAX,
        }
    }
}

impl TimeStatus {
    /// A one-line description.
    pub fn describe(&self) -> String {
        match self {
            TimeStatus::Valid { expires_at } => format!("valid until {}", format_unix(*expires_at)),
            TimeStatus::Grace {
                expired_at,
                grace_ends,
            } => format!(
                "expired at {}; grace period ends {}",
                format_unix(*expired_at),
                format_unix(*grace_ends)
            ),
            TimeStatus::Expired {
                expired_at,
                grace_ended,
            } => format!(
                "expired at {}; the 7-day grace period ended {}",
                format_unix(*expired_at),
                format_unix(*grace_ended)
            ),
            TimeStatus::NotYetValid { valid_from } => {
                format!("not valid before {}", format_unix(*valid_from))
            }
        }
    }
}

/// Verifies `token` against `keys`: everything but time.
pub fn verify(token: &str, keys: &KeySet) -> Result<VerifiedLicense, TokenError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge { bytes: token.len() });
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts.as_slice() else {
        return Err(TokenError::Malformed(format!(
            "expected three dot-separated parts, found {}",
            parts.len()
        )));
    };
    let header = decode_object(header_b64, "header")?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        Some(_) => return Err(TokenError::Malformed("header `alg` is not a string".into())),
        None => return Err(TokenError::Malformed("header has no `alg`".into())),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    if alg.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) {
        return Err(TokenError::Symmetric(alg.to_owned()));
    }
    let needed = if KeyType::Ed25519.accepts(alg) {
        KeyType::Ed25519
    } else if KeyType::Rsa.accepts(alg) {
        KeyType::Rsa
    } else {
        return Err(TokenError::UnsupportedAlg(alg.to_owned()));
    };
    if let Some(crit) = header.get("crit") {
        return Err(TokenError::Critical(crit.to_string()));
    }
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(TokenError::Malformed("header `kid` is not a string".into())),
    };
    let candidates = candidates(keys, kid.as_deref(), alg, needed)?;

    let signature = B64URL
        .decode(signature_b64)
        .map_err(|_| TokenError::Malformed("signature is not base64url".into()))?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    let key = candidates
        .into_iter()
        .find(|key| key.verify(alg, signing_input.as_bytes(), &signature))
        .ok_or(TokenError::BadSignature)?;

    let payload = decode_object(payload_b64, "payload")?;
    let claims = parse_claims(payload)?;
    Ok(VerifiedLicense {
        alg: alg.to_owned(),
        kid,
        key: key.clone(),
        key_source: keys.source(),
        claims,
    })
}

/// The keys a token may be verified with. A kid the set names selects that key alone; keys
/// without a kid (the `MNEMOM_LICENSE_PUBLIC_KEY` override) are candidates whatever the kid.
fn candidates<'k>(
    keys: &'k KeySet,
    kid: Option<&str>,
    alg: &str,
    needed: KeyType,
) -> Result<Vec<&'k PublicKey>, TokenError> {
    let mismatch = |detail: String| TokenError::AlgKeyMismatch {
        alg: alg.to_owned(),
        needed: needed.as_str(),
        detail,
    };
    if let Some(kid) = kid
        && let Some(named) = keys.keys().iter().find(|k| k.kid() == Some(kid))
    {
        return if named.kind() == needed {
            Ok(vec![named])
        } else {
            Err(mismatch(format!(
                "key `{kid}` is {} (pinned to {})",
                named.kind().as_str(),
                named.kind().algorithm()
            )))
        };
    }
    let pool: Vec<&PublicKey> = match kid {
        Some(_) => keys.keys().iter().filter(|k| k.kid().is_none()).collect(),
        None => keys.keys().iter().collect(),
    };
    if pool.is_empty()
        && let Some(kid) = kid
    {
        return Err(TokenError::UnknownKid(kid.to_owned()));
    }
    let matching: Vec<&PublicKey> = pool.into_iter().filter(|k| k.kind() == needed).collect();
    if matching.is_empty() {
        return Err(mismatch(format!(
            "the {} has none",
            keys.source().describe()
        )));
    }
    Ok(matching)
}

fn decode_object(part: &str, what: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = B64URL
        .decode(part)
        .map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(TokenError::Malformed(format!(
            "{what} is not a JSON object"
        ))),
        Err(_) => Err(TokenError::Malformed(format!("{what} is not JSON"))),
    }
}

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    // NumericDate may carry fractions; whole seconds are enough.
                    Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                    _ => Err(TokenError::Claims(format!("`{name}` is out of range"))),
                }
            }
        }
        Some(_) => Err(TokenError::Claims(format!(
            "`{name}` is not a number of seconds"
        ))),
    }
}

fn optional_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::Claims(format!("`{name}` is not a string"))),
    }
}

fn parse_claims(mut map: Map<String, Value>) -> Result<LicenseClaims, TokenError> {
    let license_id = match map.get("license_id") {
        Some(Value::String(id)) if !id.trim().is_empty() => id.clone(),
        Some(Value::String(_)) => return Err(TokenError::Claims("`license_id` is empty".into())),
        Some(_) => return Err(TokenError::Claims("`license_id` is not a string".into())),
        None => return Err(TokenError::Claims("`license_id` is missing".into())),
    };
    let expires_at =
        numeric_date(&map, "exp")?.ok_or_else(|| TokenError::Claims("`exp` is missing".into()))?;
    let issued_at = numeric_date(&map, "iat")?;
    let not_before = numeric_date(&map, "nbf")?;
    let audience = match map.get("aud") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| TokenError::Claims("`aud` is not a string or list of strings".into()))?,
        Some(_) => {
            return Err(TokenError::Claims(
                "`aud` is not a string or list of strings".into(),
            ));
        }
    };
    if !audience.is_empty() && !audience.iter().any(|a| a == AUDIENCE) {
        return Err(TokenError::Audience(format!("{audience:?}")));
    }
    let mut feature_flags = BTreeMap::new();
    let mut ignored_flags = Vec::new();
    match map.get("feature_flags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(flags)) => {
            for (name, value) in flags {
                match value {
                    Value::Bool(b) => {
                        feature_flags.insert(name.clone(), *b);
                    }
                    _ => ignored_flags.push(name.clone()),
                }
            }
        }
        Some(_) => {
            return Err(TokenError::Claims(
                "`feature_flags` is not an object".into(),
            ));
        }
    }
    let limits = match map.get("limits") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(limits)) => limits.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(_) => return Err(TokenError::Claims("`limits` is not an object".into())),
    };
    let is_offline = match map.get("is_offline") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(TokenError::Claims("`is_offline` is not a boolean".into())),
    };
    let max_activations = match map.get("max_activations") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| TokenError::Claims("`max_activations` is not a count".into()))?,
        ),
    };
    let claims = LicenseClaims {
        account_id: optional_string(&map, "account_id")?,
        plan_id: optional_string(&map, "plan_id")?,
        issuer: optional_string(&map, "iss")?,
        subject: optional_string(&map, "sub")?,
        license_id,
        audience,
        issued_at,
        not_before,
        expires_at,
        feature_flags,
        ignored_flags,
        limits,
        is_offline,
        max_activations,
        other: BTreeMap::new(),
    };
    for known in [
        "license_id",
        "account_id",
        "plan_id",
        "iss",
        "sub",
        "aud",
        "iat",
        "nbf",
        "exp",
        "feature_flags",
        "limits",
        "is_offline",
        "max_activations",
    ] {
        map.remove(known);
    }
    Ok(LicenseClaims {
        other: map.into_iter().collect(),
        ..claims
    })
}
