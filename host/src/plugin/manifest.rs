//! Plugin manifests: the `<name>.plugin.toml` file that sits next to a plugin's `.wasm` and says
//! what it is (name, world, sha256), how it may run (limits, failure mode) and its config.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// File-name suffix that marks a manifest in a plugin directory.
pub const MANIFEST_SUFFIX: &str = ".plugin.toml";

/// The worlds a plugin can implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `mnemom:gateway/provider-adapter`.
    ProviderAdapter,
    /// `mnemom:gateway/aip-policy`: an AIP policy that may call the analysis LLM and use `kv`.
    AipPolicy,
    /// `mnemom:gateway/aip-policy-pure`: a deterministic AIP policy without I/O.
    AipPolicyPure,
}

impl World {
    /// The world's name in the WIT package.
    pub fn as_str(self) -> &'static str {
        match self {
            World::ProviderAdapter => "provider-adapter",
            World::AipPolicy => "aip-policy",
            World::AipPolicyPure => "aip-policy-pure",
        }
    }

    /// Whether the world is one of the AIP policy worlds.
    pub fn is_policy(self) -> bool {
        matches!(self, World::AipPolicy | World::AipPolicyPure)
    }
}

/// What the gateway does when a plugin call fails (trap, timeout, memory cap, error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// Pass the request/response through untouched and count it (the default).
    FailOpen,
    /// Refuse the request with a provider-shaped 502.
    FailClosed,
}

impl FailureMode {
    /// The mode's name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::FailOpen => "fail-open",
            FailureMode::FailClosed => "fail-closed",
        }
    }
}

/// Resource limits of one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline of one call (epoch interruption).
    pub timeout: Duration,
    /// Largest linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Idle warm instances kept per plugin.
    pub pool_size: usize,
    /// An instance is discarded after this many calls.
    pub recycle_after: u32,
    /// An instance whose memory grew beyond this is discarded after its call.
    pub recycle_memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // 100 ms: parsing a 10 MiB response body in wasm takes ~40 ms on this class of machine.
            timeout: Duration::from_millis(100),
            memory_bytes: 128 << 20,
            pool_size: 16,
            recycle_after: 10_000,
            recycle_memory_bytes: 32 << 20,
        }
    }
}

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Unique plugin name; a directory plugin with the name of an embedded one replaces it.
    pub name: String,
    /// The world the component implements.
    pub world: World,
    /// File name of the component, relative to the manifest's directory.
    pub wasm: String,
    /// Expected sha256 (hex) of the component; required for directory plugins.
    pub sha256: Option<String>,
    /// `true` removes a plugin of this name (e.g. an embedded default) instead of loading one.
    pub disabled: bool,
    /// Upstream base URL for an adapter, overriding its default (the `<NAME>_BASE_URL`
    /// variable still wins).
    pub upstream: Option<String>,
    /// Failure mode.
    pub failure_mode: FailureMode,
    /// Limits.
    pub limits: Limits,
    /// Read-only configuration the plugin sees through `host.config-get`.
    pub config: BTreeMap<String, String>,
}

/// Why a manifest was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not valid TOML or not the expected shape.
    #[error("manifest is not valid: {0}")]
    Syntax(String),
    /// A field has an unusable value.
    #[error("manifest field `{field}`: {reason}")]
    Field {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    world: World,
    wasm: Option<String>,
    sha256: Option<String>,
    #[serde(default)]
    disabled: bool,
    upstream: Option<String>,
    failure_mode: Option<FailureMode>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    pool_size: Option<usize>,
    recycle_after: Option<u32>,
    recycle_memory_mb: Option<u64>,
}

impl Manifest {
    /// Parses and validates a manifest's text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        validate_name(&raw.name)?;
        let wasm = raw.wasm.unwrap_or_else(|| format!("{}.wasm", raw.name));
        if wasm.contains('/') || wasm.starts_with('.') || !wasm.ends_with(".wasm") {
            return Err(ManifestError::Field {
                field: "wasm",
                reason: format!("`{wasm}` must be a plain `.wasm` file name in the same directory"),
            });
        }
        let sha256 = match raw.sha256 {
            None => None,
            Some(s) => {
                let s = s.trim().to_ascii_lowercase();
                if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ManifestError::Field {
                        field: "sha256",
                        reason: "must be 64 hex digits".into(),
                    });
                }
                Some(s)
            }
        };
        let defaults = Limits::default();
        let limits = Limits {
            timeout: match raw.limits.timeout_ms {
                None => defaults.timeout,
                Some(0) => {
                    return Err(ManifestError::Field {
                        field: "limits.timeout_ms",
                        reason: "must be > 0".into(),
                    });
                }
                Some(ms) if ms > 60_000 => {
                    return Err(ManifestError::Field {
                        field: "limits.timeout_ms",
                        reason: "must be at most 60000".into(),
                    });
                }
                Some(ms) => Duration::from_millis(ms),
            },
            memory_bytes: match raw.limits.memory_mb {
                None => defaults.memory_bytes,
                Some(mb) if mb == 0 || mb > 4096 => {
                    return Err(ManifestError::Field {
                        field: "limits.memory_mb",
                        reason: "must be between 1 and 4096".into(),
                    });
                }
                Some(mb) => (mb as usize) << 20,
            },
            pool_size: raw.limits.pool_size.unwrap_or(defaults.pool_size).min(1024),
            recycle_after: match raw.limits.recycle_after {
                Some(0) => {
                    return Err(ManifestError::Field {
                        field: "limits.recycle_after",
                        reason: "must be > 0".into(),
                    });
                }
                other => other.unwrap_or(defaults.recycle_after),
            },
            recycle_memory_bytes: raw
                .limits
                .recycle_memory_mb
                .map(|mb| (mb as usize) << 20)
                .unwrap_or(defaults.recycle_memory_bytes),
        };
        let mut config = BTreeMap::new();
        for (key, value) in raw.config {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(ManifestError::Field {
                        field: "config",
                        reason: format!(
                            "`{key}` must be a string, number or boolean, not {}",
                            other.type_str()
                        ),
                    });
                }
            };
            config.insert(key, text);
        }
        Ok(Self {
            name: raw.name,
            world: raw.world,
            wasm,
            sha256,
            disabled: raw.disabled,
            upstream: raw.upstream,
            failure_mode: raw.failure_mode.unwrap_or(FailureMode::FailOpen),
            limits,
            config,
        })
    }

    /// Renders the manifest as TOML (used by `plugins export`).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("name = {}\n", toml_str(&self.name)));
        out.push_str(&format!("world = {}\n", toml_str(self.world.as_str())));
        out.push_str(&format!("wasm = {}\n", toml_str(&self.wasm)));
        if let Some(sha) = &self.sha256 {
            out.push_str(&format!("sha256 = {}\n", toml_str(sha)));
        }
        if self.disabled {
            out.push_str("disabled = true\n");
        }
        if let Some(upstream) = &self.upstream {
            out.push_str(&format!("upstream = {}\n", toml_str(upstream)));
        }
        out.push_str(&format!(
            "failure_mode = {}\n",
            toml_str(self.failure_mode.as_str())
        ));
        out.push_str("\n[limits]\n");
        out.push_str(&format!(
            "timeout_ms = {}\n",
            self.limits.timeout.as_millis()
        ));
        out.push_str(&format!("memory_mb = {}\n", self.limits.memory_bytes >> 20));
        out.push_str(&format!("pool_size = {}\n", self.limits.pool_size));
        out.push_str(&format!("recycle_after = {}\n", self.limits.recycle_after));
        out.push_str(&format!(
            "recycle_memory_mb = {}\n",
            self.limits.recycle_memory_bytes >> 20
        ));
        out.push_str("\n[config]\n");
        for (key, value) in &self.config {
            out.push_str(&format!("{} = {}\n", toml_str(key), toml_str(value)));
        }
        out
    }
}

/// A TOML basic string. JSON string escaping is a subset of TOML's, so serde_json renders it.
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Plugin names: 1-64 characters of lower-case ASCII letters, digits and `-`, starting with a letter.
pub fn validate_name(name: &str) -> Result<(), ManifestError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ManifestError::Field {
            field: "name",
            reason: format!(
                "`{name}` must be lower-case letters, digits and `-`, starting with a letter"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_manifest_and_round_trips() {
        let text = r#"
            name = "groq"
            world = "provider-adapter"
            wasm = "openai.wasm"
            sha256 = "AB00000000000000000000000000000000000000000000000000000000000000"
            upstream = "https://api.groq.com/openai"
            failure_mode = "fail-closed"
            [limits]
            timeout_ms = 20
            memory_mb = 16
            [config]
            name = "groq"
            inject_reasoning = false
            budget = 5
        "#;
        let m = Manifest::parse(text).unwrap();
        assert_eq!(m.name, "groq");
        assert_eq!(m.failure_mode, FailureMode::FailClosed);
        assert_eq!(m.limits.timeout, Duration::from_millis(20));
        assert_eq!(m.limits.memory_bytes, 16 << 20);
        assert_eq!(m.config["inject_reasoning"], "false");
        assert_eq!(m.config["budget"], "5");
        assert!(m.sha256.as_deref().unwrap().starts_with("ab"));
        assert_eq!(Manifest::parse(&m.to_toml()).unwrap(), m);
    }

    #[test]
    fn rejects_bad_fields() {
        let cases = [
            ("name = \"Bad Name\"\nworld = \"provider-adapter\"", "name"),
            (
                "name = \"a\"\nworld = \"provider-adapter\"\nwasm = \"../x.wasm\"",
                "wasm",
            ),
            (
                "name = \"a\"\nworld = \"provider-adapter\"\nsha256 = \"zz\"",
                "sha256",
            ),
            (
                "name = \"a\"\nworld = \"provider-adapter\"\n[limits]\ntimeout_ms = 0",
                "limits.timeout_ms",
            ),
            (
                "name = \"a\"\nworld = \"provider-adapter\"\n[config]\nx = [1]",
                "config",
            ),
        ];
        for (text, field) in cases {
            match Manifest::parse(text) {
                Err(ManifestError::Field { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            Manifest::parse("name = \"a\"\nworld = \"nope\""),
            Err(ManifestError::Syntax(_))
        ));
        assert!(matches!(
            Manifest::parse("name = \"a\"\nworld = \"provider-adapter\"\nextra = 1"),
            Err(ManifestError::Syntax(_))
        ));
    }
}
