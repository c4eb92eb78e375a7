//! Provider adapter for the Anthropic Messages API, built as a `provider-adapter-with-summary`
//! component: the WIT wiring, the descriptor and the plugin's configuration. The translation
//! itself lives in pure modules that native tests (and the host's benchmarks) call directly:
//! [`request`] (`transform-request`), [`response`] (`parse-response`, `summarize-response`), [`stream`]
//! (`parse-event`) and [`error`] (`map-error`).
//!
//! Configuration keys (all optional, from the `config` table of the plugin manifest):
//! - `name`, `route-prefix`, `default-upstream`: override the descriptor, so that the same
//!   component can serve an Anthropic-compatible provider on another prefix;
//! - `inject_thinking` (`true`/`false`, default `true`): inject extended thinking where valid;
//! - `thinking_budget_tokens` (integer, default 10000): the thinking budget to inject.
// Only the component build has the export glue, and with it wit-bindgen's unsafe code.
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
mod wire;

use exports::mnemom::gateway::adapter::Guest;
use mnemom::gateway::host::{self, LogLevel};
use mnemom::gateway::types::{
    AdapterError, CredentialSource, Descriptor, Extraction, GatewayError, RequestInfo, RequestPlan,
    SseEvent, StreamDelta,
};
use mnemom_plugin_sdk::config::{self, Defaults, Overrides};

/// Provider name used when the `name` key is not configured.
pub const DEFAULT_NAME: &str = "anthropic";
/// Route prefix used when `route-prefix` is not configured.
pub const DEFAULT_ROUTE_PREFIX: &str = "/anthropic";
/// Upstream used when `default-upstream` is not configured.
pub const DEFAULT_UPSTREAM: &str = "https://api.anthropic.com";

/// The descriptor values above, which `name`, `route-prefix` and `default-upstream` override.
const DEFAULTS: Defaults<'static> =
    Defaults::new(DEFAULT_NAME, DEFAULT_ROUTE_PREFIX, DEFAULT_UPSTREAM);

/// What the request transformation may do, read from the plugin configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Whether to inject `thinking` into requests where that is valid (`inject_thinking`).
    pub inject_thinking: bool,
    /// The thinking budget to inject (`thinking_budget_tokens`); lowered per request so that
    /// the answer keeps at least [`request::MIN_ANSWER_TOKENS`] of `max_tokens`.
    pub thinking_budget_tokens: u64,
}

impl Default for Settings {
    /// Parity with the gateway we replace: thinking on, 10 000 tokens of budget.
    fn default() -> Self {
        Self {
            inject_thinking: true,
            thinking_budget_tokens: 10_000,
        }
    }
}

impl Settings {
    /// Reads the settings through `get` (the host's `config-get`, or a map in tests). A value
    /// that does not parse keeps its default and is reported through `warn`.
    pub fn from_config(get: impl Fn(&str) -> Option<String>, mut warn: impl FnMut(String)) -> Self {
        let mut settings = Self::default();
        if let Some(raw) = get("inject_thinking") {
            match config::parse_bool(&raw, config::TRUE_FALSE_1_0) {
                Ok(on) => settings.inject_thinking = on,
                Err(_) => warn(format!(
                    "config inject_thinking=\"{raw}\" is not true/false; using {}",
                    settings.inject_thinking
                )),
            }
        }
        if let Some(raw) = get("thinking_budget_tokens") {
            match config::parse_int::<u64>(&raw, 0) {
                Ok(budget) => {
                    settings.thinking_budget_tokens = budget;
                    if budget < request::MIN_THINKING_BUDGET {
                        warn(format!(
                            "config thinking_budget_tokens={budget} is below Anthropic's minimum of {}; thinking will never be injected",
                            request::MIN_THINKING_BUDGET
                        ));
                    }
                }
                Err(_) => warn(format!(
                    "config thinking_budget_tokens=\"{raw}\" is not a non-negative integer; using {}",
                    settings.thinking_budget_tokens
                )),
            }
        }
        settings
    }
}

/// The descriptor, with the `name`, `route-prefix` and `default-upstream` overrides read
/// through `get`. Values are passed through as configured: the host validates descriptors at
/// load time and reports a bad one against the operator's own value.
pub fn descriptor(get: impl Fn(&str) -> Option<String>) -> Descriptor {
    let Overrides {
        name,
        route_prefix,
        default_upstream,
    } = DEFAULTS.as_configured(get);
    Descriptor {
        name,
        route_prefix,
        default_upstream,
        // The official SDKs send `x-api-key`; OAuth and some compatible providers use Bearer.
        credential_sources: vec![
            CredentialSource::Header("x-api-key".to_owned()),
            CredentialSource::Bearer,
        ],
    }
}

/// The settings, read from the host on this instance's first request. An instance never sees
/// another configuration (a changed manifest is a new plugin version with new instances), so
/// reading them once saves two host calls per request.
fn settings() -> &'static Settings {
    static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();
    SETTINGS.get_or_init(|| Settings::from_config(host::config_get, |_| {}))
}

struct Adapter;

impl Guest for Adapter {
    fn describe() -> Descriptor {
        // Called once per load: the place to report configuration mistakes, once.
        Settings::from_config(host::config_get, |msg| host::log(LogLevel::Warn, &msg));
        descriptor(host::config_get)
    }

    fn transform_request(request: RequestInfo, body: Vec<u8>) -> Result<RequestPlan, AdapterError> {
        request::transform(settings(), &request, &body)
    }

    fn parse_response(body: Vec<u8>) -> Result<Extraction, AdapterError> {
        response::parse(&body)
    }

    fn parse_event(event: SseEvent) -> Result<StreamDelta, AdapterError> {
        stream::parse(&event)
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

// Only the component exports the ABI symbols: their names (`mnemom:gateway/adapter@0.1.0#…`)
// are not valid in a native linker's version script, and native builds are for tests only.
#[cfg(target_family = "wasm")]
export!(Adapter);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn default_descriptor() {
        let d = descriptor(|_| None);
        assert_eq!(d.name, "anthropic");
        assert_eq!(d.route_prefix, "/anthropic");
        assert_eq!(d.default_upstream, "https://api.anthropic.com");
        assert!(matches!(
            d.credential_sources.as_slice(),
            [CredentialSource::Header(h), CredentialSource::Bearer] if h == "x-api-key"
        ));
    }

    #[test]
    fn descriptor_overrides() {
        let map = config(&[
            ("name", "minimax"),
            ("route-prefix", "/minimax"),
            ("default-upstream", "https://api.minimax.io/anthropic"),
        ]);
        let d = descriptor(|k| map.get(k).cloned());
        assert_eq!(d.name, "minimax");
        assert_eq!(d.route_prefix, "/minimax");
        assert_eq!(d.default_upstream, "https://api.minimax.io/anthropic");
    }

    #[test]
    fn settings_from_config() {
        let mut warnings = Vec::new();
        assert_eq!(
            Settings::from_config(|_| None, |w| warnings.push(w)),
            Settings::default()
        );
        let map = config(&[
            ("inject_thinking", " False "),
            ("thinking_budget_tokens", "4096"),
        ]);
        let s = Settings::from_config(|k| map.get(k).cloned(), |w| warnings.push(w));
        assert_eq!(
            s,
            Settings {
                inject_thinking: false,
                thinking_budget_tokens: 4096
            }
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn bad_settings_keep_defaults_and_warn() {
        let mut warnings = Vec::new();
        let map = config(&[
            ("inject_thinking", "maybe"),
            ("thinking_budget_tokens", "-1"),
        ]);
        let s = Settings::from_config(|k| map.get(k).cloned(), |w| warnings.push(w));
        assert_eq!(s, Settings::default());
        assert_eq!(warnings.len(), 2);

        warnings.clear();
        let map = config(&[("thinking_budget_tokens", "512")]);
        let s = Settings::from_config(|k| map.get(k).cloned(), |w| warnings.push(w));
        assert_eq!(s.thinking_budget_tokens, 512);
        assert_eq!(warnings.len(), 1);
    }
}
