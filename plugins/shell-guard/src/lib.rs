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
    use mnemom_plugin_sdk::policy::{ToolCall, Verdict};
    use serde_json::Value;

    /// Runs `cases.json` (the file `mnemom-gateway plugin test` reads) through the native
    /// logic, with the harness's defaults, so the file and the policy cannot drift apart.
    #[test]
    fn cases_file_expectations_hold() {
        let file: Value = serde_json::from_str(include_str!("../cases.json")).unwrap();
        let pairs: Vec<(String, String)> = file["config"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let settings = settings::Settings::from_config(&Config::from_pairs(&pairs));
        let cases = file["cases"].as_array().unwrap();
        assert!((8..=12).contains(&cases.len()));
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let input = &case["input"];
            let strings = |key: &str| -> Vec<String> {
                input[key]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default()
            };
            let mut check_input = CheckInput::sample();
            check_input.thinking = strings("thinking");
            check_input.response_text = strings("response_text");
            check_input.tool_calls = input["tool_calls"]
                .as_array()
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| ToolCall {
                            id: c["id"].as_str().map(str::to_owned),
                            name: c["name"].as_str().unwrap().to_owned(),
                            arguments: c["arguments"].as_str().unwrap().to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let report = check::check(&settings, &check_input);
            let expect = &case["expect"];
            assert_ne!(expect["error"], Value::Bool(true), "{name}");
            if let Some(verdict) = expect["verdict"].as_str() {
                assert_eq!(
                    report.verdict,
                    Verdict::parse(verdict).unwrap(),
                    "{name}: {report:?}"
                );
            }
            if let Some(categories) = expect["categories"].as_array() {
                for category in categories {
                    let category = category.as_str().unwrap();
                    assert!(
                        report.concerns.iter().any(|c| c.category == category),
                        "{name}: {category}"
                    );
                }
            }
            let n = report.concerns.len() as u64;
            if let Some(min) = expect["min_concerns"].as_u64() {
                assert!(n >= min, "{name}: {n} concerns");
            }
            if let Some(max) = expect["max_concerns"].as_u64() {
                assert!(n <= max, "{name}: {n} concerns: {report:?}");
            }
        }
    }

    #[test]
    fn descriptor_names_the_policy() {
        let d = descriptor();
        assert_eq!(d.name, "shell-guard");
        assert!(mnemom_plugin_sdk::config::is_valid_name(&d.name));
        assert_eq!(d.version, env!("CARGO_PKG_VERSION"));
    }
}
