//! Cache key names and their TTLs: the original gateway's (`REFERENCE.md` §5.3) plus the two
//! coordination keys of this port. Names here are logical: the cache adds `kv:` (and the
//! deployment prefix) itself.

use std::time::Duration;

/// Quota and agent settings (`quota:agent:*`, `quota:mk:*`): 300 s.
pub const QUOTA_TTL: Duration = Duration::from_secs(300);
/// Organisation conscience values and card template: 300 s.
pub const ORG_TTL: Duration = Duration::from_secs(300);
/// `license:status:*` when the licence was found valid: 86 400 s (one day).
pub const LICENSE_STATUS_VALID_TTL: Duration = Duration::from_secs(86_400);
/// `license:status:*` when the licence was found invalid: 3 600 s (one hour).
pub const LICENSE_STATUS_INVALID_TTL: Duration = Duration::from_secs(3_600);
/// `license:last_valid:*`, the anchor of the 7-day grace period: 604 800 s.
pub const LICENSE_LAST_VALID_TTL: Duration = Duration::from_secs(604_800);
/// Default length of a scheduler lease (`lease:*`, this port's): 60 s.
pub const LEASE_TTL: Duration = Duration::from_secs(60);
/// How long a nudge delivery claim (`nudge:claim:*`, this port's) is held: 300 s.
pub const NUDGE_CLAIM_TTL: Duration = Duration::from_secs(300);

/// A logical key with the TTL its writer uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The key without the `kv:` prefix, e.g. `quota:agent:smolt-1a2b3c4d`.
    pub key: String,
    /// The TTL the original (or this port) writes it with.
    pub ttl: Duration,
}

impl CacheKey {
    fn new(key: String, ttl: Duration) -> Self {
        Self { key, ttl }
    }

    /// The same key with another TTL (e.g. a licence found invalid, or a longer lease).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The logical key.
    pub fn as_str(&self) -> &str {
        &self.key
    }
}

impl AsRef<str> for CacheKey {
    fn as_ref(&self) -> &str {
        &self.key
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)
    }
}

/// `quota:agent:<agent_id>`: the agent's `QuotaContext` JSON (quota and `agent_settings`), 300 s.
/// Deleted on auto-containment.
pub fn quota_agent(agent_id: &str) -> CacheKey {
    CacheKey::new(format!("quota:agent:{agent_id}"), QUOTA_TTL)
}

/// `quota:mk:<sha256 hex of the Mnemom key>`: the `QuotaContext` JSON keyed by billing key, 300 s.
/// Per-agent fields (`agent_settings`, `containment_status`) must not be read from it: agents
/// sharing a key would share them (the original's bug, `REFERENCE.md` §5.3).
pub fn quota_mnemom_key(key_sha256_hex: &str) -> CacheKey {
    CacheKey::new(format!("quota:mk:{key_sha256_hex}"), QUOTA_TTL)
}

/// `org-cv:agent:<agent_id>`: the organisation's conscience values for the agent, 300 s.
pub fn org_conscience_values(agent_id: &str) -> CacheKey {
    CacheKey::new(format!("org-cv:agent:{agent_id}"), ORG_TTL)
}

/// `org-card-tpl:agent:<agent_id>`: the organisation's card template for the agent, 300 s.
pub fn org_card_template(agent_id: &str) -> CacheKey {
    CacheKey::new(format!("org-card-tpl:agent:{agent_id}"), ORG_TTL)
}

/// `license:status:<license_id>`: `"valid"` (86 400 s) or `"invalid"` (3 600 s).
pub fn license_status(license_id: &str, valid: bool) -> CacheKey {
    let ttl = if valid {
        LICENSE_STATUS_VALID_TTL
    } else {
        LICENSE_STATUS_INVALID_TTL
    };
    CacheKey::new(format!("license:status:{license_id}"), ttl)
}

/// `license:last_valid:<license_id>`: ISO-8601 time of the last successful validation, 604 800 s.
pub fn license_last_valid(license_id: &str) -> CacheKey {
    CacheKey::new(
        format!("license:last_valid:{license_id}"),
        LICENSE_LAST_VALID_TTL,
    )
}

/// `lease:<name>` (this port's): held with [`super::Cache::set_nx_px`] by the replica running a
/// scheduled job, 60 s by default.
pub fn lease(name: &str) -> CacheKey {
    CacheKey::new(format!("lease:{name}"), LEASE_TTL)
}

/// `nudge:claim:<nudge_id>` (this port's): claimed with [`super::Cache::set_nx_px`] by the
/// request that delivers a pending nudge, so two concurrent requests cannot both deliver it.
pub fn nudge_claim(nudge_id: &str) -> CacheKey {
    CacheKey::new(format!("nudge:claim:{nudge_id}"), NUDGE_CLAIM_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ttls_match_the_original() {
        let cases = [
            (
                quota_agent("smolt-1a2b3c4d"),
                "quota:agent:smolt-1a2b3c4d",
                300,
            ),
            (quota_mnemom_key("ab12"), "quota:mk:ab12", 300),
            (org_conscience_values("a"), "org-cv:agent:a", 300),
            (org_card_template("a"), "org-card-tpl:agent:a", 300),
            (license_status("l1", true), "license:status:l1", 86_400),
            (license_status("l1", false), "license:status:l1", 3_600),
            (license_last_valid("l1"), "license:last_valid:l1", 604_800),
            (lease("nudge_expiry"), "lease:nudge_expiry", 60),
            (
                nudge_claim("nudge-0a1b2c3d"),
                "nudge:claim:nudge-0a1b2c3d",
                300,
            ),
        ];
        for (key, name, secs) in cases {
            assert_eq!(key.as_str(), name);
            assert_eq!(key.ttl, Duration::from_secs(secs), "{name}");
        }
        let longer = lease("x").with_ttl(Duration::from_secs(120));
        assert_eq!(longer.ttl, Duration::from_secs(120));
        assert_eq!(longer.to_string(), "lease:x");
    }
}
