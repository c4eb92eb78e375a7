//! Provider adapter for Google's Gemini API (`generateContent` / `streamGenerateContent`), built
//! as a `provider-adapter-with-summary` component: the WIT bindings, the exported functions and the plugin's
//! configuration. The translation itself lives in pure modules that take a plain [`Settings`],
//! so that native tests, host tests and benchmarks can call them without a host.
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
});

pub mod error;
pub mod request;
pub mod response;
pub mod stream;

/// The WIT record types (`request-info`, `request-plan`, `extraction`, ...) as generated from
/// `wit/gateway.wit`, re-exported for tests and benchmarks that call the pure modules directly.
pub use mnemom::gateway::types;

use exports::mnemom::gateway::adapter::Guest;
use mnemom::gateway::host::{self, LogLevel};
use mnemom_plugin_sdk::config::{self, Defaults, Overrides};
use types::{
    AdapterError, CredentialSource, Descriptor, Extraction, GatewayError, RequestInfo, RequestPlan,
    SseEvent, StreamDelta,
};

/// Provider name used in metrics labels and logs unless the manifest overrides `name`.
pub const DEFAULT_NAME: &str = "gemini";
/// Route prefix: the google-genai SDK is pointed at `<gateway>/gemini` as its `base_url`.
pub const DEFAULT_ROUTE_PREFIX: &str = "/gemini";
/// The public Gemini API (Google AI Studio keys); Vertex AI is served from other hosts.
pub const DEFAULT_UPSTREAM: &str = "https://generativelanguage.googleapis.com";

/// The descriptor values above, which `name`, `route-prefix` and `default-upstream` override.
const DEFAULTS: Defaults<'static> =
    Defaults::new(DEFAULT_NAME, DEFAULT_ROUTE_PREFIX, DEFAULT_UPSTREAM);

/// How the adapter prepares requests; read from the plugin's `config` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `inject_thinking`: ask thinking-capable models to think and to return their thoughts.
    pub inject_thinking: bool,
    /// `thinking_budget`: `thinkingBudget` for Gemini 2.5 models and the `-latest` aliases
    /// (`-1` lets the model decide, `0` turns thinking off where the model allows it).
    pub thinking_budget: i32,
    /// `thinking_level`: `thinkingLevel` for Gemini 3 models (`low`, `high`, ...).
    pub thinking_level: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            inject_thinking: true,
            // 16384: the original gateway's budget; inside every 2.5 model's accepted range
            // (Pro 128-32768, Flash 0-24576, Flash-Lite 512-24576).
            thinking_budget: 16384,
            thinking_level: "high".to_owned(),
        }
    }
}

impl Settings {
    /// Builds settings from a configuration lookup, keeping the default for every absent or
    /// invalid value. Returns the settings and one message per invalid value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> (Self, Vec<String>) {
        let mut settings = Self::default();
        let mut problems = Vec::new();
        if let Some(raw) = get("inject_thinking") {
            match config::parse_bool(&raw, config::TRUE_FALSE) {
                Ok(on) => settings.inject_thinking = on,
                Err(e) => problems.push(format!(
                    "inject_thinking: {e}, got \"{raw}\"; using {}",
                    settings.inject_thinking
                )),
            }
        }
        if let Some(raw) = get("thinking_budget") {
            match config::parse_int::<i32>(&raw, -1) {
                Ok(budget) => settings.thinking_budget = budget,
                Err(e) => problems.push(format!(
                    "thinking_budget: {e}, got \"{raw}\"; using {}",
                    settings.thinking_budget
                )),
            }
        }
        if let Some(raw) = get("thinking_level") {
            let level = raw.trim();
            if level.is_empty() {
                problems.push(format!(
                    "thinking_level: expected a level such as high, got an empty value; using {}",
                    settings.thinking_level
                ));
            } else {
                level.clone_into(&mut settings.thinking_level);
            }
        }
        (settings, problems)
    }

    /// The settings from the host's configuration, read on this instance's first request.
    /// Invalid values fall back to their defaults silently here; `describe` (the load-time call)
    /// reports them once. An instance never sees another configuration (a changed manifest is a
    /// new plugin version with new instances), so reading them once saves host calls per request.
    fn from_host() -> &'static Self {
        static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();
        SETTINGS.get_or_init(|| Self::from_lookup(host::config_get).0)
    }
}

/// Builds the descriptor from a configuration lookup (`name`, `route-prefix` and
/// `default-upstream` override the defaults; the host validates them).
pub fn descriptor(get: impl Fn(&str) -> Option<String>) -> Descriptor {
    let Overrides {
        name,
        route_prefix,
        default_upstream,
    } = DEFAULTS.trimmed(get);
    Descriptor {
        name,
        route_prefix,
        default_upstream,
        // The google-genai SDKs send `x-goog-api-key`; REST examples and older clients use `?key=`.
        credential_sources: vec![
            CredentialSource::Header("x-goog-api-key".to_owned()),
            CredentialSource::Query("key".to_owned()),
        ],
    }
}

/// The exported component.
struct Adapter;

impl Guest for Adapter {
    fn describe() -> Descriptor {
        // Called once at load time and as the smoke call of a reload: the one place where a bad
        // configuration value is worth a log line.
        for problem in Settings::from_lookup(host::config_get).1 {
            host::log(LogLevel::Warn, &format!("invalid configuration: {problem}"));
        }
        descriptor(host::config_get)
    }

    fn transform_request(request: RequestInfo, body: Vec<u8>) -> Result<RequestPlan, AdapterError> {
        request::transform(Settings::from_host(), &request, &body)
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
    use mnemom_plugin_sdk::testing::config as lookup;

    #[test]
    fn settings_default_without_config() {
        let (settings, problems) = Settings::from_lookup(lookup(&[]));
        assert_eq!(settings, Settings::default());
        assert!(settings.inject_thinking);
        assert_eq!(settings.thinking_budget, 16384);
        assert_eq!(settings.thinking_level, "high");
        assert!(problems.is_empty());
    }

    #[test]
    fn settings_read_from_config() {
        let (settings, problems) = Settings::from_lookup(lookup(&[
            ("inject_thinking", "FALSE"),
            ("thinking_budget", " -1 "),
            ("thinking_level", "low"),
        ]));
        assert_eq!(
            settings,
            Settings {
                inject_thinking: false,
                thinking_budget: -1,
                thinking_level: "low".into()
            }
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn invalid_settings_keep_defaults_and_are_reported() {
        let (settings, problems) = Settings::from_lookup(lookup(&[
            ("inject_thinking", "yes"),
            ("thinking_budget", "-2"),
            ("thinking_level", "  "),
        ]));
        assert_eq!(settings, Settings::default());
        assert_eq!(problems.len(), 3);
        assert!(problems[0].starts_with("inject_thinking:"));
        assert!(problems[1].starts_with("thinking_budget:"));
        assert!(problems[2].starts_with("thinking_level:"));
    }

    #[test]
    fn descriptor_defaults_and_overrides() {
        let d = descriptor(lookup(&[]));
        assert_eq!(d.name, "gemini");
        assert_eq!(d.route_prefix, "/gemini");
        assert_eq!(
            d.default_upstream,
            "https://generativelanguage.googleapis.com"
        );
        assert!(matches!(
            d.credential_sources.as_slice(),
            [CredentialSource::Header(h), CredentialSource::Query(q)] if h == "x-goog-api-key" && q == "key"
        ));

        let d = descriptor(lookup(&[
            ("name", "google"),
            ("route-prefix", "/google"),
            ("default-upstream", "http://127.0.0.1:9999"),
        ]));
        assert_eq!(d.name, "google");
        assert_eq!(d.route_prefix, "/google");
        assert_eq!(d.default_upstream, "http://127.0.0.1:9999");
    }
}
