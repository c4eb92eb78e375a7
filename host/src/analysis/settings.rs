//! Settings of the analysis endpoints, read from the environment and validated at start-up (a
//! bad value stops the process with a message naming the variable; secrets are never echoed).

use std::fmt;
use std::time::Duration;

use http::{HeaderValue, Uri};

use crate::config::{ConfigError, ConfigSource, bounded, bounded_millis, parse_base_url};

/// The analysis model of the original (`MNEMOM_ANALYSIS_MODEL` default).
pub const DEFAULT_MODEL: &str = "claude-haiku-4-5-20251001";
/// Default analysis base URL (`MNEMOM_ANALYSIS_BASE_URL`).
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// Default cap on `max_tokens` (`MNEMOM_ANALYSIS_MAX_TOKENS`).
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
/// Default per-call timeout of both endpoints (the original's 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default consecutive failures that open a breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// Default time a breaker stays open before it lets one probe through.
pub const DEFAULT_BREAKER_OPEN: Duration = Duration::from_secs(60);
/// Longest accepted model name.
const MAX_MODEL_LEN: usize = 256;

/// A secret value: usable as a header, never printed.
#[derive(Clone)]
pub struct Secret(HeaderValue);

impl Secret {
    /// Validates `value` as a header value (visible ASCII, no line breaks). The error never
    /// contains the value.
    pub fn new(variable: &str, value: &str) -> Result<Self, ConfigError> {
        let mut header = HeaderValue::from_str(value.trim()).map_err(|_| ConfigError {
            variable: variable.to_owned(),
            reason: "contains characters that cannot be sent in an HTTP header".to_owned(),
        })?;
        header.set_sensitive(true);
        Ok(Self(header))
    }

    /// The header value (marked sensitive, so HTTP/2 never indexes it).
    pub fn header(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The circuit breaker's settings (shared by both endpoints, each with its own breaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// `MNEMOM_ANALYSIS_BREAKER_FAILURES` (5): consecutive failures that open the breaker.
    pub failures: u32,
    /// `MNEMOM_ANALYSIS_BREAKER_OPEN_SECS` (60) or `MNEMOM_ANALYSIS_BREAKER_OPEN_MS`: how long
    /// the breaker fails fast before it lets one probe call through.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: DEFAULT_BREAKER_FAILURES,
            open_for: DEFAULT_BREAKER_OPEN,
        }
    }
}

/// Hybrid mode: the hosted analyse service does the analysis (REFERENCE.md §3.7).
#[derive(Debug, Clone)]
pub struct HybridSettings {
    /// `MNEMOM_ANALYZE_URL`: the full URL requests are POSTed to.
    pub url: Uri,
    /// `MNEMOM_API_KEY`, sent as `X-Mnemom-Api-Key`.
    pub api_key: Secret,
    /// `MNEMOM_ANALYZE_TIMEOUT_MS` (10 000).
    pub timeout: Duration,
}

/// Which analysis this process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalysisMode {
    /// `ANTHROPIC_API_KEY` is set: policies call the analysis LLM through `llm.complete`.
    Direct,
    /// No `ANTHROPIC_API_KEY`, but `MNEMOM_ANALYZE_URL` and `MNEMOM_API_KEY`: the hosted service
    /// analyses.
    Hybrid,
    /// Neither: checks are `skipped` with `X-AIP-Reason: no-analysis-configured`.
    None,
}

/// Validated settings of the analysis LLM client and of hybrid mode.
#[derive(Debug, Clone)]
pub struct AnalysisSettings {
    /// `ANTHROPIC_API_KEY`; `None` (unset or empty) leaves the analysis LLM unconfigured.
    pub api_key: Option<Secret>,
    /// `MNEMOM_ANALYSIS_BASE_URL` (`https://api.anthropic.com`); requests go to
    /// `<base>/v1/messages`.
    pub base_url: Uri,
    /// `MNEMOM_ANALYSIS_MODEL` (`claude-haiku-4-5-20251001`): used when a request names none.
    pub model: String,
    /// `MNEMOM_ANALYSIS_MODELS` (comma-separated; default: just `model`): the models requests
    /// may name. Always contains `model`.
    pub allowed_models: Vec<String>,
    /// `MNEMOM_ANALYSIS_MAX_TOKENS` (1024, 1..=8192): cap on a request's `max_tokens`.
    pub max_tokens: u32,
    /// `MNEMOM_ANALYSIS_TIMEOUT_MS` (10 000): deadline of one call, connection and body included.
    pub timeout: Duration,
    /// The breaker settings.
    pub breaker: BreakerSettings,
    /// Hybrid mode, when active (see [`AnalysisSettings::mode`]).
    pub hybrid: Option<HybridSettings>,
}

impl Default for AnalysisSettings {
    /// Every default: unconfigured, no hybrid.
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: Uri::from_static(DEFAULT_BASE_URL),
            model: DEFAULT_MODEL.to_owned(),
            allowed_models: vec![DEFAULT_MODEL.to_owned()],
            max_tokens: DEFAULT_MAX_TOKENS,
            timeout: DEFAULT_TIMEOUT,
            breaker: BreakerSettings::default(),
            hybrid: None,
        }
    }
}

impl AnalysisSettings {
    /// Reads `ANTHROPIC_API_KEY`, `MNEMOM_ANALYSIS_*`, `MNEMOM_ANALYZE_URL`,
    /// `MNEMOM_ANALYZE_TIMEOUT_MS` and `MNEMOM_API_KEY`.
    ///
    /// Hybrid mode is active only when `MNEMOM_ANALYZE_URL` and `MNEMOM_API_KEY` are both set and
    /// `ANTHROPIC_API_KEY` is not (as the original). `MNEMOM_ANALYZE_URL` is validated whenever
    /// it is set. The breaker's open period may be given in seconds
    /// (`MNEMOM_ANALYSIS_BREAKER_OPEN_SECS`) or milliseconds (`MNEMOM_ANALYSIS_BREAKER_OPEN_MS`),
    /// not both.
    pub fn from_source(source: &dyn ConfigSource) -> Result<Self, ConfigError> {
        let api_key = source
            .get("ANTHROPIC_API_KEY")
            .map(|key| Secret::new("ANTHROPIC_API_KEY", &key))
            .transpose()?;
        let base_url = match source.get("MNEMOM_ANALYSIS_BASE_URL") {
            None => Uri::from_static(DEFAULT_BASE_URL),
            Some(v) => parse_base_url("MNEMOM_ANALYSIS_BASE_URL", v.trim())?,
        };
        let model = match source.get("MNEMOM_ANALYSIS_MODEL") {
            None => DEFAULT_MODEL.to_owned(),
            Some(v) => validate_model("MNEMOM_ANALYSIS_MODEL", v.trim())?,
        };
        let allowed_models = match source.get("MNEMOM_ANALYSIS_MODELS") {
            None => vec![model.clone()],
            Some(list) => {
                let mut models = Vec::new();
                for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let name = validate_model("MNEMOM_ANALYSIS_MODELS", name)?;
                    if !models.contains(&name) {
                        models.push(name);
                    }
                }
                if !models.contains(&model) {
                    return Err(ConfigError {
                        variable: "MNEMOM_ANALYSIS_MODELS".to_owned(),
                        reason: format!(
                            "must contain the default model `{model}` (MNEMOM_ANALYSIS_MODEL)"
                        ),
                    });
                }
                models
            }
        };
        let max_tokens = u32::try_from(bounded(
            source,
            "MNEMOM_ANALYSIS_MAX_TOKENS",
            u64::from(DEFAULT_MAX_TOKENS),
            1..=8192,
        )?)
        .unwrap_or(DEFAULT_MAX_TOKENS);
        let timeout = bounded_millis(
            source,
            "MNEMOM_ANALYSIS_TIMEOUT_MS",
            DEFAULT_TIMEOUT,
            1..=600_000,
        )?;
        let failures = u32::try_from(bounded(
            source,
            "MNEMOM_ANALYSIS_BREAKER_FAILURES",
            u64::from(DEFAULT_BREAKER_FAILURES),
            1..=1000,
        )?)
        .unwrap_or(DEFAULT_BREAKER_FAILURES);
        let open_for = match (
            source.get("MNEMOM_ANALYSIS_BREAKER_OPEN_SECS"),
            source.get("MNEMOM_ANALYSIS_BREAKER_OPEN_MS"),
        ) {
            (Some(_), Some(_)) => {
                return Err(ConfigError {
                    variable: "MNEMOM_ANALYSIS_BREAKER_OPEN_MS".to_owned(),
                    reason: "set either MNEMOM_ANALYSIS_BREAKER_OPEN_SECS or \
                             MNEMOM_ANALYSIS_BREAKER_OPEN_MS, not both"
                        .to_owned(),
                });
            }
            (_, Some(_)) => Duration::from_millis(bounded(
                source,
                "MNEMOM_ANALYSIS_BREAKER_OPEN_MS",
                0,
                1..=86_400_000,
            )?),
            _ => Duration::from_secs(bounded(
                source,
                "MNEMOM_ANALYSIS_BREAKER_OPEN_SECS",
                DEFAULT_BREAKER_OPEN.as_secs(),
                1..=86_400,
            )?),
        };

        let analyze_url = source
            .get("MNEMOM_ANALYZE_URL")
            .map(|v| parse_analyze_url(v.trim()))
            .transpose()?;
        let hybrid_timeout = bounded_millis(
            source,
            "MNEMOM_ANALYZE_TIMEOUT_MS",
            DEFAULT_TIMEOUT,
            1..=600_000,
        )?;
        let hybrid = match (&api_key, analyze_url, source.get("MNEMOM_API_KEY")) {
            (None, Some(url), Some(key)) => Some(HybridSettings {
                url,
                api_key: Secret::new("MNEMOM_API_KEY", &key)?,
                timeout: hybrid_timeout,
            }),
            _ => None,
        };

        Ok(Self {
            api_key,
            base_url,
            model,
            allowed_models,
            max_tokens,
            timeout,
            breaker: BreakerSettings { failures, open_for },
            hybrid,
        })
    }

    /// Which analysis is available.
    pub fn mode(&self) -> AnalysisMode {
        if self.api_key.is_some() {
            AnalysisMode::Direct
        } else if self.hybrid.is_some() {
            AnalysisMode::Hybrid
        } else {
            AnalysisMode::None
        }
    }

    /// `<base_url>/v1/messages` (a path prefix of the base URL is kept).
    pub fn messages_url(&self) -> Result<Uri, http::Error> {
        let base = self.base_url.to_string();
        let url = format!("{}/v1/messages", base.trim_end_matches('/'));
        Ok(url.parse::<Uri>()?)
    }
}

/// Validates `MNEMOM_ANALYZE_URL`: http(s) with a host; a query string is allowed (the URL is
/// used as is).
fn parse_analyze_url(value: &str) -> Result<Uri, ConfigError> {
    let invalid = |reason: String| ConfigError {
        variable: "MNEMOM_ANALYZE_URL".to_owned(),
        reason,
    };
    let uri: Uri = value
        .parse()
        .map_err(|_| invalid(format!("`{value}` is not a URL")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid(format!(
            "`{value}` must start with http:// or https://"
        )));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid(format!("`{value}` has no host")));
    }
    Ok(uri)
}

fn validate_model(variable: &str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_MODEL_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != ',' && c != '"');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(ConfigError {
            variable: variable.to_owned(),
            reason: format!(
                "`{name}` is not a model name (1 to {MAX_MODEL_LEN} visible ASCII characters)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapSource;

    fn settings(pairs: &[(&str, &str)]) -> Result<AnalysisSettings, ConfigError> {
        AnalysisSettings::from_source(&MapSource::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert!(s.api_key.is_none());
        assert_eq!(s.mode(), AnalysisMode::None);
        assert_eq!(s.model, DEFAULT_MODEL);
        assert_eq!(s.allowed_models, vec![DEFAULT_MODEL.to_owned()]);
        assert_eq!(s.max_tokens, 1024);
        assert_eq!(s.timeout, Duration::from_secs(10));
        assert_eq!(s.breaker, BreakerSettings::default());
        assert_eq!(
            s.messages_url().unwrap().to_string(),
            "https://api.anthropic.com/v1/messages"
        );
        let d = AnalysisSettings::default();
        assert_eq!(d.allowed_models, s.allowed_models);
        assert_eq!(d.base_url, s.base_url);
    }

    #[test]
    fn full_configuration() {
        let s = settings(&[
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
            ("MNEMOM_ANALYSIS_BASE_URL", "http://127.0.0.1:9/proxy/"),
            ("MNEMOM_ANALYSIS_MODEL", "claude-sonnet-4-5"),
            (
                "MNEMOM_ANALYSIS_MODELS",
                " claude-haiku-4-5-20251001, claude-sonnet-4-5 ,,claude-sonnet-4-5",
            ),
            ("MNEMOM_ANALYSIS_MAX_TOKENS", "2048"),
            ("MNEMOM_ANALYSIS_TIMEOUT_MS", "250"),
            ("MNEMOM_ANALYSIS_BREAKER_FAILURES", "2"),
            ("MNEMOM_ANALYSIS_BREAKER_OPEN_MS", "150"),
            ("MNEMOM_ANALYZE_URL", "https://api.mnemom.ai/v1/analyze"),
            ("MNEMOM_API_KEY", "mk-1"),
        ])
        .unwrap();
        assert_eq!(s.mode(), AnalysisMode::Direct);
        assert!(s.hybrid.is_none(), "ANTHROPIC_API_KEY disables hybrid mode");
        assert_eq!(s.model, "claude-sonnet-4-5");
        assert_eq!(
            s.allowed_models,
            vec!["claude-haiku-4-5-20251001", "claude-sonnet-4-5"]
        );
        assert_eq!(s.max_tokens, 2048);
        assert_eq!(s.timeout, Duration::from_millis(250));
        assert_eq!(s.breaker.failures, 2);
        assert_eq!(s.breaker.open_for, Duration::from_millis(150));
        assert_eq!(
            s.messages_url().unwrap().to_string(),
            "http://127.0.0.1:9/proxy/v1/messages"
        );
        assert_eq!(format!("{:?}", s.api_key), "Some(Secret(***))");
        assert!(!format!("{s:?}").contains("sk-ant-test"));
    }

    #[test]
    fn hybrid_needs_both_variables_and_no_anthropic_key() {
        let s = settings(&[
            ("MNEMOM_ANALYZE_URL", "https://api.mnemom.ai/v1/analyze?x=1"),
            ("MNEMOM_API_KEY", "mk-1"),
            ("MNEMOM_ANALYZE_TIMEOUT_MS", "500"),
        ])
        .unwrap();
        assert_eq!(s.mode(), AnalysisMode::Hybrid);
        let h = s.hybrid.unwrap();
        assert_eq!(h.url.to_string(), "https://api.mnemom.ai/v1/analyze?x=1");
        assert_eq!(h.timeout, Duration::from_millis(500));
        assert!(h.api_key.header().is_sensitive());
        for pairs in [
            &[("MNEMOM_ANALYZE_URL", "https://a.example/analyze")][..],
            &[("MNEMOM_API_KEY", "mk-1")][..],
        ] {
            assert_eq!(settings(pairs).unwrap().mode(), AnalysisMode::None);
        }
        assert_eq!(
            settings(&[("MNEMOM_ANALYSIS_BREAKER_OPEN_SECS", "2")])
                .unwrap()
                .breaker
                .open_for,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (pairs, variable) in [
            (
                &[("MNEMOM_ANALYSIS_BASE_URL", "ftp://x")][..],
                "MNEMOM_ANALYSIS_BASE_URL",
            ),
            (
                &[("MNEMOM_ANALYSIS_MODELS", "claude-sonnet-4-5")][..],
                "MNEMOM_ANALYSIS_MODELS",
            ),
            (
                &[("MNEMOM_ANALYSIS_MODEL", "has space")][..],
                "MNEMOM_ANALYSIS_MODEL",
            ),
            (
                &[("MNEMOM_ANALYSIS_MAX_TOKENS", "0")][..],
                "MNEMOM_ANALYSIS_MAX_TOKENS",
            ),
            (
                &[("MNEMOM_ANALYSIS_MAX_TOKENS", "8193")][..],
                "MNEMOM_ANALYSIS_MAX_TOKENS",
            ),
            (
                &[("MNEMOM_ANALYSIS_TIMEOUT_MS", "soon")][..],
                "MNEMOM_ANALYSIS_TIMEOUT_MS",
            ),
            (
                &[("MNEMOM_ANALYSIS_BREAKER_FAILURES", "0")][..],
                "MNEMOM_ANALYSIS_BREAKER_FAILURES",
            ),
            (
                &[("MNEMOM_ANALYSIS_BREAKER_OPEN_SECS", "-1")][..],
                "MNEMOM_ANALYSIS_BREAKER_OPEN_SECS",
            ),
            (
                &[
                    ("MNEMOM_ANALYSIS_BREAKER_OPEN_SECS", "1"),
                    ("MNEMOM_ANALYSIS_BREAKER_OPEN_MS", "10"),
                ][..],
                "MNEMOM_ANALYSIS_BREAKER_OPEN_MS",
            ),
            (
                &[("MNEMOM_ANALYZE_URL", "api.mnemom.ai/analyze")][..],
                "MNEMOM_ANALYZE_URL",
            ),
            (
                &[("ANTHROPIC_API_KEY", "sk-ant-\nsecret")][..],
                "ANTHROPIC_API_KEY",
            ),
        ] {
            let err = settings(pairs).unwrap_err();
            assert_eq!(err.variable, variable, "{pairs:?}");
            assert!(!err.to_string().contains("secret"));
        }
    }
}
