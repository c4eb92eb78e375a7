//! The policy's configuration (the `[config]` table of its manifest):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `allow` | empty | comma-separated substrings, compared ignoring case; a command containing one is not flagged (e.g. `terraform destroy -target=module.sandbox, git reset --hard`) |
//! | `scan_thinking` | `true` | scan the thinking blocks (prose: refused commands are skipped) |
//! | `scan_tool_calls` | `true` | scan every string in the tool calls' JSON arguments (commands) |
//! | `scan_response_text` | `false` | scan the visible text too (prose); off because an answer *explaining* a command is not the model planning to run it |
//! | `severity_floor` | `high` | the least severe finding reported: `high` reports everything this policy flags, `critical` only irreversible destruction of a machine |

use mnemom_plugin_sdk::policy::{Config, Severity};

/// What the policy scans and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Lower-cased substrings that exempt a command (`allow`).
    pub allow: Vec<String>,
    /// Scan thinking blocks (`scan_thinking`).
    pub scan_thinking: bool,
    /// Scan tool-call arguments (`scan_tool_calls`).
    pub scan_tool_calls: bool,
    /// Scan visible response text (`scan_response_text`).
    pub scan_response_text: bool,
    /// Findings below this severity are dropped (`severity_floor`).
    pub severity_floor: Severity,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow: Vec::new(),
            scan_thinking: true,
            scan_tool_calls: true,
            scan_response_text: false,
            severity_floor: Severity::High,
        }
    }
}

impl Settings {
    /// Reads the settings; unusable values keep their default (and are reported by `config`).
    pub fn from_config(config: &Config) -> Settings {
        let defaults = Settings::default();
        Settings {
            allow: config
                .list("allow")
                .into_iter()
                .map(|item| item.to_lowercase())
                .collect(),
            scan_thinking: config.bool("scan_thinking", defaults.scan_thinking),
            scan_tool_calls: config.bool("scan_tool_calls", defaults.scan_tool_calls),
            scan_response_text: config.bool("scan_response_text", defaults.scan_response_text),
            severity_floor: config.severity("severity_floor", defaults.severity_floor),
        }
    }

    /// Whether `command` is exempted by the allow list.
    pub fn allows(&self, command: &str) -> bool {
        let command = command.to_lowercase();
        self.allow
            .iter()
            .any(|item| command.contains(item.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            Settings::from_config(&Config::from_pairs(&[])),
            Settings::default()
        );
        let s = Settings::from_config(&Config::from_pairs(&[
            (
                "allow",
                "Terraform Destroy -target=module.sandbox, git reset --hard",
            ),
            ("scan_thinking", "false"),
            ("scan-tool-calls", "0"),
            ("scan_response_text", "yes"),
            ("severity_floor", "critical"),
        ]));
        assert_eq!(
            s.allow,
            [
                "terraform destroy -target=module.sandbox",
                "git reset --hard"
            ]
        );
        assert!(!s.scan_thinking && !s.scan_tool_calls && s.scan_response_text);
        assert_eq!(s.severity_floor, Severity::Critical);
    }

    #[test]
    fn unusable_values_keep_defaults() {
        let s = Settings::from_config(&Config::from_pairs(&[
            ("scan_thinking", "sometimes"),
            ("severity_floor", "extreme"),
        ]));
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn allow_list_matches_substrings_ignoring_case() {
        let s = Settings {
            allow: vec!["git reset --hard".into()],
            ..Settings::default()
        };
        assert!(s.allows("GIT RESET --HARD origin/main"));
        assert!(!s.allows("git clean -fdx"));
        assert!(!Settings::default().allows("anything"));
    }
}
