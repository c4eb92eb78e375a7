//! `shell-guard`: an example deterministic AIP policy (world `aip-policy-pure`, built with the
//! SDK's `policy-pure` feature). It flags destructive shell commands the model plans in its
//! thinking or passes to a tool (`rm -rf /`, `mkfs`, `dd of=/dev/sda`, a fork bomb,
//! `git push --force` to main, `DROP TABLE`, `terraform destroy`, `curl … | sh`, …) as
//! `destructive_command` concerns: critical ones make the verdict `boundary_violation`, high
//! ones `review_needed`.
//!
//! This file is the thin WIT glue; the logic lives in modules that native tests call:
//! [`tokenize`] (a forgiving shell tokeniser), [`rules`] (the command rules), [`patterns`]
//! (fork bomb, SQL), [`scan`] (one text) and [`check`] (one response → report), configured by
//! [`settings`].

pub mod check;
pub mod patterns;
pub mod rules;
pub mod scan;
pub mod settings;
pub mod tokenize;

use mnemom_plugin_sdk::policy::{
    CheckInput, Config, Guest, PolicyDescriptor, PolicyError, Report, host,
};

/// The policy's name: list it in `MNEMOM_AIP_POLICIES` and use it as the manifest's `name`.
pub const NAME: &str = "shell-guard";
/// What `describe` says the policy checks.
pub const DESCRIPTION: &str = "flags destructive shell commands planned in thinking or tool calls (rm -rf /, mkfs, dd to a disk, force push to main, DROP TABLE, terraform destroy, curl | sh)";

/// The descriptor `describe` returns.
pub fn descriptor() -> PolicyDescriptor {
    PolicyDescriptor::new(NAME, env!("CARGO_PKG_VERSION"), DESCRIPTION)
}

struct ShellGuard;

impl Guest for ShellGuard {
    fn describe() -> PolicyDescriptor {
        // Called once per load: the place to report configuration mistakes, once.
        settings::Settings::from_config(&Config::host());
        descriptor()
    }

    fn check(input: CheckInput) -> Result<Report, PolicyError> {
        let config = Config::new(host::config_get, |_| {});
        let settings = settings::Settings::from_config(&config);
        Ok(check::check(&settings, &input))
    }
}

mnemom_plugin_sdk::export_policy!(ShellGuard);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_names_the_policy() {
        let d = descriptor();
        assert_eq!(d.name, "shell-guard");
        assert!(mnemom_plugin_sdk::config::is_valid_name(&d.name));
        assert_eq!(d.version, env!("CARGO_PKG_VERSION"));
    }
}
