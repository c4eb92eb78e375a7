//! Provider adapter for the OpenAI Chat Completions and Responses APIs (and OpenAI-compatible
//! providers), built as a `provider-adapter-with-summary` component: the WIT bindings, the `Guest` wiring, the
//! descriptor and the reading of the plugin's configuration into [`Settings`].
//!
//! Everything below the wiring is pure and takes plain values, so it runs natively in tests and
//! benchmarks, where the host imports (`config-get`, `log`) are unreachable stubs.
#![cfg_attr(
    target_family = "wasm",
    expect(
        unsafe_code,
        reason = "wit-bindgen generates the component ABI glue as unsafe code"
    )
)]

wit_bindgen::generate!({
    world: "provider-adapter-with-summary",
    path: "../../wit",
    additional_derives: [PartialEq, Eq, Clone],
});

pub mod de;
pub mod error;
pub mod request;
pub mod response;
pub mod stream;
mod wire;

/// Byte-level JSON edits that keep the caller's bytes: the SDK's [`mnemom_plugin_sdk::json`],
/// under the name this crate has always exported it.
pub use mnemom_plugin_sdk::json as splice;

/// The WIT record types as generated from `wit/gateway.wit`, re-exported for tests and
/// benchmarks that call the pure modules directly.
pub use mnemom::gateway::types;
pub use mnemom::gateway::types::{
    AdapterError, CredentialSource, Descriptor, ErrorKind, Extraction, Fragment, GatewayError,
    Header, RequestInfo, RequestPlan, SseEvent, StreamDelta, ToolCall, ToolCallFragment, Usage,
};

use exports::mnemom::gateway::adapter::Guest;
use mnemom::gateway::host::{self, LogLevel};
use mnemom_plugin_sdk::config::{self, Defaults, Overrides, lookup};
// The tests of this module check the SDK's normalisation of descriptor values directly.
#[cfg(test)]
use mnemom_plugin_sdk::config::{provider_name, route_prefix, upstream};

/// Provider name when the configuration does not override it.
pub const DEFAULT_NAME: &str = "openai";
/// Route prefix when neither `route-prefix` nor `name` is configured.
pub const DEFAULT_ROUTE_PREFIX: &str = "/openai";
/// Upstream base URL when `default-upstream` is not configured.
pub const DEFAULT_UPSTREAM: &str = "https://api.openai.com";
/// Reasoning effort injected when `reasoning_effort` is not configured. `medium` is OpenAI's own
/// default for every reasoning model before gpt-5.1, and accepted by all of them except gpt-5-pro
/// (which gets no effort, see [`request::reasoning_support`]).
pub const DEFAULT_REASONING_EFFORT: &str = "medium";
/// Reasoning summary requested when `reasoning_summary` is not configured: `auto` gives the most
/// detailed summary the model supports, which is what the AIP analysis reads.
pub const DEFAULT_REASONING_SUMMARY: &str = "auto";

/// The descriptor values above, which `name`, `route-prefix` and `default-upstream` override.
const DEFAULTS: Defaults<'static> =
    Defaults::new(DEFAULT_NAME, DEFAULT_ROUTE_PREFIX, DEFAULT_UPSTREAM);

/// What the request transformation may do, read from the plugin's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Whether reasoning settings are injected at all (`inject_reasoning`, default `true`).
    pub inject_reasoning: bool,
    /// Reasoning effort to inject (`reasoning_effort`, default `medium`).
    pub reasoning_effort: String,
    /// Responses API reasoning summary to request (`reasoning_summary`, default `auto`);
    /// `None` when configured as `off`.
    pub reasoning_summary: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            inject_reasoning: true,
            reasoning_effort: DEFAULT_REASONING_EFFORT.to_owned(),
            reasoning_summary: Some(DEFAULT_REASONING_SUMMARY.to_owned()),
        }
    }
}

impl Settings {
    /// Reads the settings through `get` (the plugin's configuration lookup). Invalid values fall
    /// back to their defaults and are reported through `warn`, so a typo never disables a deploy.
    pub fn from_config(get: &dyn Fn(&str) -> Option<String>, warn: &mut dyn FnMut(String)) -> Self {
        let mut settings = Self::default();
        if let Some((key, raw)) = lookup(get, "inject_reasoning") {
            match config::parse_bool(&raw, config::ANY_BOOL_WORD) {
                Ok(on) => settings.inject_reasoning = on,
                Err(e) => warn(format!("config {key}: {e}, got \"{raw}\"; using true")),
            }
        }
        if let Some((key, raw)) = lookup(get, "reasoning_effort") {
            match token(&raw) {
                Some(effort) => settings.reasoning_effort = effort,
                None => warn(format!(
                    "config {key}: expected a reasoning effort such as low, medium or high, got \"{raw}\"; using {DEFAULT_REASONING_EFFORT}"
                )),
            }
        }
        if let Some((key, raw)) = lookup(get, "reasoning_summary") {
            let value = raw.trim().to_ascii_lowercase();
            if matches!(value.as_str(), "off" | "none" | "false" | "disabled") {
                settings.reasoning_summary = None;
            } else {
                match token(&value) {
                    Some(summary) => settings.reasoning_summary = Some(summary),
                    None => warn(format!(
                        "config {key}: expected auto, concise, detailed or off, got \"{raw}\"; using {DEFAULT_REASONING_SUMMARY}"
                    )),
                }
            }
        }
        settings
    }
}

/// Builds the descriptor from the configuration read through `get`: `name`, `route-prefix` and
/// `default-upstream` override the OpenAI defaults, which is how one build of this adapter serves
/// any OpenAI-compatible provider. Values that the host would reject are normalised when the
/// intent is clear (`Groq` → `groq`, `groq/` → `/groq`) and otherwise replaced by a safe default,
/// with a note through `warn`.
pub fn descriptor_from_config(
    get: &dyn Fn(&str) -> Option<String>,
    warn: &mut dyn FnMut(String),
) -> Descriptor {
    let Overrides {
        name,
        route_prefix,
        default_upstream,
    } = DEFAULTS.validated(get, warn);
    Descriptor {
        name,
        route_prefix,
        default_upstream,
        credential_sources: vec![CredentialSource::Bearer],
    }
}

/// A lower-case word such as `medium` or `auto` (letters, digits, `_`, `-`). Unknown words are
/// allowed: OpenAI adds levels (`minimal`, `none`, `xhigh`) faster than adapters are rebuilt.
fn token(raw: &str) -> Option<String> {
    let value = raw.trim().to_ascii_lowercase();
    let ok = !value.is_empty()
        && value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    ok.then_some(value)
}

/// Reads this plugin's configuration from the host.
fn host_config(key: &str) -> Option<String> {
    host::config_get(key)
}

/// The settings, read from the host on this instance's first call. An instance never sees
/// another configuration (a changed manifest is a new plugin version with new instances), so
/// reading them once saves host calls on every request.
fn settings() -> &'static Settings {
    static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();
    SETTINGS.get_or_init(|| Settings::from_config(&host_config, &mut |_| {}))
}

struct Adapter;

impl Guest for Adapter {
    fn describe() -> Descriptor {
        // Describe runs once per load: the place to report configuration mistakes.
        let mut warn = |message: String| host::log(LogLevel::Warn, &message);
        let _ = Settings::from_config(&host_config, &mut warn);
        descriptor_from_config(&host_config, &mut warn)
    }

    fn transform_request(request: RequestInfo, body: Vec<u8>) -> Result<RequestPlan, AdapterError> {
        request::transform(settings(), &request, &body)
    }

    fn parse_response(body: Vec<u8>) -> Result<Extraction, AdapterError> {
        response::parse(&body)
    }

    fn parse_event(event: SseEvent) -> Result<StreamDelta, AdapterError> {
        stream::parse_event(&event)
    }

    fn map_error(error: GatewayError) -> Vec<u8> {
        error::render(&error)
    }
}

impl exports::mnemom::gateway::adapter_summary::Guest for Adapter {
    fn summarize_response(
        body: Vec<u8>,
    ) -> Result<exports::mnemom::gateway::adapter_summary::ResponseSummary, AdapterError> {
        response::summarize(&body)
    }
}

// Natively (tests, host-side reuse of the pure modules) nothing is exported: the export symbol
// names (`mnemom:gateway/adapter@0.1.0#describe`) are valid in wasm only, and a native cdylib
// carrying them fails to link.
#[cfg(target_family = "wasm")]
export!(Adapter);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn read_settings(pairs: &[(&str, &str)]) -> (Settings, Vec<String>) {
        let map = config(pairs);
        let mut warnings = Vec::new();
        let settings = Settings::from_config(&|k| map.get(k).cloned(), &mut |w| warnings.push(w));
        (settings, warnings)
    }

    fn read_descriptor(pairs: &[(&str, &str)]) -> (Descriptor, Vec<String>) {
        let map = config(pairs);
        let mut warnings = Vec::new();
        let d = descriptor_from_config(&|k| map.get(k).cloned(), &mut |w| warnings.push(w));
        (d, warnings)
    }

    #[test]
    fn default_settings() {
        let (settings, warnings) = read_settings(&[]);
        assert_eq!(settings, Settings::default());
        assert!(settings.inject_reasoning);
        assert_eq!(settings.reasoning_effort, "medium");
        assert_eq!(settings.reasoning_summary.as_deref(), Some("auto"));
        assert!(warnings.is_empty());
    }

    #[test]
    fn settings_overrides() {
        let (s, w) = read_settings(&[
            ("inject_reasoning", " False "),
            ("reasoning_effort", "HIGH"),
            ("reasoning_summary", "detailed"),
        ]);
        assert!(!s.inject_reasoning);
        assert_eq!(s.reasoning_effort, "high");
        assert_eq!(s.reasoning_summary.as_deref(), Some("detailed"));
        assert!(w.is_empty());

        let (s, w) = read_settings(&[("reasoning-summary", "off"), ("inject-reasoning", "yes")]);
        assert!(s.inject_reasoning);
        assert_eq!(s.reasoning_summary, None);
        assert!(w.is_empty());
    }

    #[test]
    fn invalid_settings_fall_back_with_a_warning() {
        let (s, w) = read_settings(&[
            ("inject_reasoning", "maybe"),
            ("reasoning_effort", "very high"),
            ("reasoning_summary", "{\"x\":1}"),
        ]);
        assert_eq!(s, Settings::default());
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("config inject_reasoning:"), "{w:?}");
        let (s, w) = read_settings(&[("reasoning_effort", "  ")]);
        assert_eq!(s, Settings::default());
        assert!(w.is_empty(), "blank counts as unset");
    }

    #[test]
    fn default_descriptor() {
        let (d, w) = read_descriptor(&[]);
        assert_eq!(
            d,
            Descriptor {
                name: "openai".into(),
                route_prefix: "/openai".into(),
                default_upstream: "https://api.openai.com".into(),
                credential_sources: vec![CredentialSource::Bearer],
            }
        );
        assert!(w.is_empty());
        assert_eq!(d.route_prefix, DEFAULT_ROUTE_PREFIX);
    }

    #[test]
    fn compatible_provider_deployment() {
        let (d, w) = read_descriptor(&[
            ("name", "groq"),
            ("route-prefix", "/groq"),
            ("default-upstream", "https://api.groq.com/openai/"),
        ]);
        assert_eq!(d.name, "groq");
        assert_eq!(d.route_prefix, "/groq");
        assert_eq!(d.default_upstream, "https://api.groq.com/openai");
        assert_eq!(d.credential_sources, vec![CredentialSource::Bearer]);
        assert!(w.is_empty());
    }

    #[test]
    fn descriptor_values_are_normalised() {
        let (d, w) = read_descriptor(&[
            ("name", " Together "),
            ("route_prefix", "together/"),
            ("default_upstream", "https://api.together.xyz"),
        ]);
        assert_eq!(d.name, "together");
        assert_eq!(d.route_prefix, "/together");
        assert_eq!(d.default_upstream, "https://api.together.xyz");
        assert!(w.is_empty());
    }

    #[test]
    fn renamed_deployment_derives_its_prefix_and_warns_about_the_upstream() {
        let (d, w) = read_descriptor(&[("name", "deepseek")]);
        assert_eq!(d.route_prefix, "/deepseek");
        assert_eq!(d.default_upstream, DEFAULT_UPSTREAM);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("default-upstream is not set"), "{w:?}");
    }

    #[test]
    fn invalid_descriptor_values_fall_back() {
        let (d, w) = read_descriptor(&[
            ("name", "my provider!"),
            ("route-prefix", "/a/b"),
            ("default-upstream", "ftp://example.com"),
        ]);
        assert_eq!(d.name, "openai");
        assert_eq!(d.route_prefix, "/openai");
        assert_eq!(d.default_upstream, DEFAULT_UPSTREAM);
        assert_eq!(w.len(), 3, "{w:?}");

        let (d, w) = read_descriptor(&[
            ("name", "mistral"),
            ("route-prefix", "/"),
            ("default-upstream", "https://"),
        ]);
        assert_eq!(d.name, "mistral");
        assert_eq!(d.route_prefix, "/mistral");
        assert_eq!(d.default_upstream, DEFAULT_UPSTREAM);
        assert_eq!(w.len(), 2, "{w:?}");
        for bad in ["https://x.y/?q=1", "https://x y", "api.openai.com"] {
            assert_eq!(upstream(bad), None, "{bad}");
        }
        for bad in ["1password", "-x", "", "a_b"] {
            assert_eq!(provider_name(bad), None, "{bad}");
        }
        for bad in ["/health", "metrics/", "/models.json", "/a~b", "/a b"] {
            assert_eq!(route_prefix(bad), None, "{bad}");
        }
    }
}
