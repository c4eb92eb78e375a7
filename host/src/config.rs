//! Gateway configuration: read once from the environment (behind a small trait so tests use a
//! map), validated completely at start-up, then shared read-only.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

/// Where configuration values come from.
pub trait ConfigSource {
    /// The value of `key`, or `None` when unset. Empty values count as unset.
    fn get(&self, key: &str) -> Option<String>;
    /// Every `(key, value)` pair; used to find per-plugin `<NAME>_BASE_URL` variables.
    fn all(&self) -> Vec<(String, String)>;
}

/// The process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvSource;

impl ConfigSource for EnvSource {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.trim().is_empty())
    }
    fn all(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

/// A fixed map, for tests and embedding.
#[derive(Debug, Default, Clone)]
pub struct MapSource(pub BTreeMap<String, String>);

impl MapSource {
    /// Builds a source from `(key, value)` pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl ConfigSource for MapSource {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned().filter(|v| !v.trim().is_empty())
    }
    fn all(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// A whole number from `range`, or `default` when `key` is unset; anything else is an error
/// naming the variable. The one parser of bounded numeric settings.
pub fn bounded(
    source: &dyn ConfigSource,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(raw) = source.get(key) else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(ConfigError::new(
            key,
            format!(
                "`{}` is not a whole number from {} to {}",
                raw.trim(),
                range.start(),
                range.end()
            ),
        )),
    }
}

/// [`bounded`] milliseconds as a duration.
pub fn bounded_millis(
    source: &dyn ConfigSource,
    key: &str,
    default: Duration,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    bounded(source, key, default, range).map(Duration::from_millis)
}

/// A boolean setting (`true/false`, `1/0`, `yes/no`, `on/off`, any case), or `default` when unset.
pub fn boolean(source: &dyn ConfigSource, key: &str, default: bool) -> Result<bool, ConfigError> {
    match source.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::new(key, format!("`{v}` is not true or false"))),
        },
    }
}

/// A configuration value that cannot be used. The message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {reason}")]
pub struct ConfigError {
    /// The offending variable.
    pub variable: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &str, reason: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Which parts of the gateway this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The proxy (the default).
    Gateway,
    /// Scheduled background jobs (`scheduler` is the original's name for it).
    Observer,
    /// Both.
    All,
}

impl Role {
    /// Whether this role serves the provider proxy (the observer only serves probes and metrics).
    pub fn serves_proxy(self) -> bool {
        matches!(self, Role::Gateway | Role::All)
    }

    /// The role's canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Observer => "observer",
            Role::All => "all",
        }
    }
}

/// Minimum severity of log lines written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything, including per-request diagnostics.
    Debug,
    /// Operational events (the default).
    Info,
    /// Recovered problems and worse.
    Warn,
    /// Failures only.
    Error,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`HOST`, default `0.0.0.0`).
    pub host: IpAddr,
    /// Port to listen on (`PORT`, default 8787).
    pub port: u16,
    /// `LOG_LEVEL`.
    pub log_level: LogLevel,
    /// `SMOLTBOT_ROLE`.
    pub role: Role,
    /// `GATEWAY_VERSION`, reported by `/health`.
    pub version: String,
    /// `AIP_ENABLED` (anything but `false` enables).
    pub aip_enabled: bool,
    /// Upstream base URL overrides by lower-case plugin name (`ANTHROPIC_BASE_URL` → `anthropic`).
    pub upstream_overrides: BTreeMap<String, Uri>,
    /// Extra plugin directories (`MNEMOM_PLUGIN_DIRS`, colon-separated), later ones win.
    pub plugin_dirs: Vec<PathBuf>,
    /// Data directory (`MNEMOM_DATA_DIR`, default `./data`).
    pub data_dir: PathBuf,
    /// Where compiled plugin artifacts are cached (`MNEMOM_PLUGIN_CACHE_DIR`, default
    /// `<data dir>/plugin-cache`); `None` disables the disk cache (`MNEMOM_PLUGIN_CACHE_DIR=off`).
    pub plugin_cache_dir: Option<PathBuf>,
    /// How often plugin directories are re-scanned even without change events.
    pub plugin_poll_interval: Duration,
    /// Quiet time after the last change event before a reload runs.
    pub plugin_reload_debounce: Duration,
    /// Largest accepted request body (`MNEMOM_MAX_REQUEST_BYTES`, default 10 MiB).
    pub max_request_bytes: usize,
    /// Largest response copy kept for extraction (`MNEMOM_MAX_CAPTURE_BYTES`, default 16 MiB).
    pub max_capture_bytes: usize,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's response headers.
    pub first_byte_timeout: Duration,
    /// Longest silence allowed between two body chunks, both directions.
    pub idle_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Request worker threads (`MNEMOM_WORKER_THREADS`, default: the CPUs the process may use);
    /// 0 serves connections on the main multi-threaded runtime instead.
    pub worker_threads: usize,
}

impl Config {
    /// Reads and validates every setting.
    pub fn from_source(source: &dyn ConfigSource) -> Result<Self, ConfigError> {
        let host = match source.get("HOST") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ConfigError::new("HOST", format!("`{v}` is not an IP address")))?,
        };
        let port = parse_number::<u16>(source, "PORT", 8787)?;
        let log_level = match source
            .get("LOG_LEVEL")
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => LogLevel::Info,
            Some(v) => match v.as_str() {
                "debug" | "trace" => LogLevel::Debug,
                "info" => LogLevel::Info,
                "warn" | "warning" => LogLevel::Warn,
                "error" => LogLevel::Error,
                _ => {
                    return Err(ConfigError::new(
                        "LOG_LEVEL",
                        format!("`{v}` is not one of debug, info, warn, error"),
                    ));
                }
            },
        };
        let role = match source
            .get("SMOLTBOT_ROLE")
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => Role::Gateway,
            Some(v) => match v.as_str() {
                "gateway" => Role::Gateway,
                "observer" | "scheduler" => Role::Observer,
                "all" => Role::All,
                _ => {
                    return Err(ConfigError::new(
                        "SMOLTBOT_ROLE",
                        format!("`{v}` is not one of gateway, observer (alias scheduler), all"),
                    ));
                }
            },
        };
        let aip_enabled = boolean(source, "AIP_ENABLED", true)?;

        let mut upstream_overrides = BTreeMap::new();
        for (key, value) in source.all() {
            let Some(name) = key.strip_suffix("_BASE_URL") else {
                continue;
            };
            if value.trim().is_empty() || name.is_empty() {
                continue;
            }
            // MNEMOM_ANALYSIS_BASE_URL and similar belong to other subsystems.
            if name.starts_with("MNEMOM_") {
                continue;
            }
            let uri = parse_base_url(&key, value.trim())?;
            upstream_overrides.insert(name.to_ascii_lowercase().replace('_', "-"), uri);
        }

        let plugin_dirs = source
            .get("MNEMOM_PLUGIN_DIRS")
            .map(|v| {
                v.split(':')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        let data_dir = source
            .get("MNEMOM_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let plugin_cache_dir = match source.get("MNEMOM_PLUGIN_CACHE_DIR") {
            Some(v) if v.trim() == "off" => None,
            Some(v) => Some(PathBuf::from(v)),
            None => Some(data_dir.join("plugin-cache")),
        };

        Ok(Self {
            host,
            port,
            log_level,
            role,
            version: source
                .get("GATEWAY_VERSION")
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            aip_enabled,
            upstream_overrides,
            plugin_dirs,
            data_dir,
            plugin_cache_dir,
            plugin_poll_interval: Duration::from_secs(
                parse_number(source, "MNEMOM_PLUGIN_POLL_SECONDS", 30u64)?.max(1),
            ),
            plugin_reload_debounce: Duration::from_millis(parse_number(
                source,
                "MNEMOM_PLUGIN_RELOAD_DEBOUNCE_MS",
                200u64,
            )?),
            max_request_bytes: parse_number(
                source,
                "MNEMOM_MAX_REQUEST_BYTES",
                10 * 1024 * 1024usize,
            )?,
            max_capture_bytes: parse_number(
                source,
                "MNEMOM_MAX_CAPTURE_BYTES",
                16 * 1024 * 1024usize,
            )?,
            connect_timeout: Duration::from_millis(parse_positive(
                source,
                "MNEMOM_UPSTREAM_CONNECT_TIMEOUT_MS",
                10_000,
            )?),
            // Non-streamed completions of large reasoning models take minutes before the first byte.
            first_byte_timeout: Duration::from_millis(parse_positive(
                source,
                "MNEMOM_UPSTREAM_FIRST_BYTE_TIMEOUT_MS",
                600_000,
            )?),
            idle_timeout: Duration::from_millis(parse_positive(
                source,
                "MNEMOM_UPSTREAM_IDLE_TIMEOUT_MS",
                300_000,
            )?),
            shutdown_grace: Duration::from_secs(parse_number(
                source,
                "MNEMOM_SHUTDOWN_GRACE_SECONDS",
                25u64,
            )?),
            worker_threads: bounded(
                source,
                "MNEMOM_WORKER_THREADS",
                crate::workers::default_count() as u64,
                0..=256,
            )? as usize,
        })
    }

    /// The configuration with every default, for tests.
    pub fn defaults() -> Self {
        // The empty source cannot fail validation (`defaults_are_valid` proves it).
        Self::from_source(&MapSource::default())
            .unwrap_or_else(|e| unreachable!("default configuration is invalid: {e}"))
    }
}

fn parse_number<T: std::str::FromStr>(
    source: &dyn ConfigSource,
    key: &str,
    default: T,
) -> Result<T, ConfigError> {
    match source.get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(key, format!("`{v}` is not a valid number"))),
    }
}

fn parse_positive(source: &dyn ConfigSource, key: &str, default: u64) -> Result<u64, ConfigError> {
    let value = parse_number(source, key, default)?;
    if value == 0 {
        return Err(ConfigError::new(key, "must be greater than zero"));
    }
    Ok(value)
}

/// Parses an upstream base URL: `http` or `https`, with a host, no query.
pub fn parse_base_url(variable: &str, value: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = value
        .parse()
        .map_err(|_| ConfigError::new(variable, format!("`{value}` is not a URL")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(ConfigError::new(
                variable,
                format!("`{value}` must start with http:// or https://"),
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ConfigError::new(variable, format!("`{value}` has no host")));
    }
    if uri.query().is_some() {
        return Err(ConfigError::new(
            variable,
            format!("`{value}` must not have a query string"),
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_source(&MapSource::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_are_valid() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 8787);
        assert_eq!(c.role, Role::Gateway);
        assert_eq!(c.max_request_bytes, 10 * 1024 * 1024);
        assert!(c.aip_enabled);
        assert_eq!(c.worker_threads, crate::workers::default_count());
        assert!(c.worker_threads >= 1);
        assert_eq!(
            config(&[("MNEMOM_WORKER_THREADS", "0")])
                .unwrap()
                .worker_threads,
            0
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (key, value) in [
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("HOST", "not-an-ip"),
            ("LOG_LEVEL", "loud"),
            ("SMOLTBOT_ROLE", "janitor"),
            ("ANTHROPIC_BASE_URL", "ftp://x"),
            ("OPENAI_BASE_URL", "http://"),
            ("MNEMOM_UPSTREAM_IDLE_TIMEOUT_MS", "0"),
            ("AIP_ENABLED", "maybe"),
            ("MNEMOM_WORKER_THREADS", "many"),
            ("MNEMOM_WORKER_THREADS", "257"),
        ] {
            let err = config(&[(key, value)]).unwrap_err();
            assert_eq!(err.variable, key, "{key}={value}");
            assert!(err.to_string().starts_with("invalid configuration: "));
        }
    }

    #[test]
    fn roles_and_overrides() {
        let c = config(&[
            ("SMOLTBOT_ROLE", "Scheduler"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9000"),
            ("MY_PROVIDER_BASE_URL", "https://example.com/v1"),
            ("MNEMOM_ANALYSIS_BASE_URL", "https://api.anthropic.com"),
            ("MNEMOM_PLUGIN_DIRS", "/a::/b"),
        ])
        .unwrap();
        assert_eq!(c.role, Role::Observer);
        assert_eq!(
            c.upstream_overrides["anthropic"].to_string(),
            "http://127.0.0.1:9000/"
        );
        assert!(c.upstream_overrides.contains_key("my-provider"));
        assert!(!c.upstream_overrides.contains_key("mnemom-analysis"));
        assert_eq!(
            c.plugin_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
    }
}
