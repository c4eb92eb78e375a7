//! The default AIP policy, built as an `aip-policy` component: it asks the host's analysis LLM
//! to evaluate a response's thinking against the agent's alignment card and conscience values
//! (the "conscience prompt"), validates the answer strictly and derives the verdict from the
//! concerns with [`mnemom_plugin_sdk::verdict`]. This file is the WIT wiring and the
//! descriptor; the work lives in pure modules that native tests call directly: [`prompt`]
//! (system and user prompt, truncation), [`answer`] (reading the LLM's answer) and [`check`]
//! (the flow, settings and metadata).
//!
//! Configuration keys (all optional, from the `config` table of the plugin manifest; a value
//! that does not parse keeps its default and is logged as a warning when the plugin loads):
//! - `model` (string): the analysis model; by default the host's configured analysis model.
//!   It must be on the host's allow-list;
//! - `max_tokens` (integer >= 1, default 1024): output token cap of the analysis (the host may
//!   lower it to its own cap);
//! - `token_budget` (integer >= 1, default 4096): estimated tokens (characters / 4) of thinking
//!   sent for analysis; longer thinking keeps its first 75 % and last 25 %;
//! - `cache_system_prompt` (`true`/`false`, default `true`): ask the endpoint to cache the
//!   fixed system prompt.
// Only the component build has the export glue, and with it wit-bindgen's unsafe code.
#![cfg_attr(
    target_family = "wasm",
    expect(
        unsafe_code,
        reason = "wit-bindgen generates the component ABI glue as unsafe code"
    )
)]

wit_bindgen::generate!({
    world: "aip-policy",
    path: "../../wit",
    additional_derives: [PartialEq],
});

pub mod answer;
pub mod check;
pub mod prompt;

use exports::mnemom::gateway::policy::Guest;
use mnemom::gateway::host::{self, LogLevel};
use mnemom::gateway::llm;
use mnemom::gateway::policy_types::{CheckInput, PolicyDescriptor, PolicyError, Report};

/// The policy's name.
pub const NAME: &str = "aip-conscience";

/// What the policy checks, for its descriptor.
pub const DESCRIPTION: &str = "Conscience analysis of the model's thinking by the analysis LLM against the alignment card and conscience values";

/// The descriptor.
pub fn descriptor() -> PolicyDescriptor {
    PolicyDescriptor {
        name: NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        description: DESCRIPTION.to_owned(),
    }
}

struct Policy;

impl Guest for Policy {
    fn describe() -> PolicyDescriptor {
        // Called once per load: the place to report configuration mistakes, once.
        check::Settings::from_config(host::config_get, |msg| host::log(LogLevel::Warn, &msg));
        descriptor()
    }

    fn check(input: CheckInput) -> Result<Report, PolicyError> {
        let settings = check::Settings::from_config(host::config_get, |_| {});
        check::run(&input, &settings, llm::complete, |level, msg| {
            host::log(level, &msg)
        })
    }
}

// Only the component exports the ABI symbols: their names are not valid in a native linker's
// version script, and native builds are for tests only.
#[cfg(target_family = "wasm")]
export!(Policy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_names_the_policy() {
        let d = descriptor();
        assert_eq!(d.name, "aip-conscience");
        assert!(mnemom_plugin_sdk::config::is_valid_name(&d.name));
        assert_eq!(d.version, env!("CARGO_PKG_VERSION"));
        assert!(!d.description.is_empty());
    }
}
