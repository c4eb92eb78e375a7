//! One check: scan the sources the settings enable, drop what the allow list and the severity
//! floor exempt, and report the rest as `destructive_command` concerns with a verdict derived
//! by the SDK (critical → `boundary-violation`, high → `review-needed`).

use mnemom_plugin_sdk::policy::{CheckInput, Concern, Report};
use serde_json::{Value, json};

use crate::scan::{self, Finding};
use crate::settings::Settings;

/// The concern category this policy reports.
pub const CATEGORY: &str = "destructive_command";
/// The alignment-card field a destructive command runs against.
pub const CARD_FIELD: &str = "autonomy_envelope.forbidden_actions";
/// The most concerns one report carries (most severe first); the rest are counted.
pub const MAX_CONCERNS: usize = 10;

/// A finding and where it was found.
struct Located {
    finding: Finding,
    origin: String,
}

/// The most bytes of text one check scans, tool calls first, then thinking, then response
/// text; the rest is counted in the metadata (`unscanned_bytes`). 128 KiB of prose take 10 to
/// 25 ms in the gateway's runtime (more on a loaded machine), well inside the manifest's 50 ms
/// deadline, so that a huge response gets a verdict instead of a timeout.
pub const MAX_SCAN_BYTES: usize = 128 * 1024;

/// What is left of [`MAX_SCAN_BYTES`] in one check.
struct Budget {
    left: usize,
    skipped: usize,
}

impl Budget {
    /// The part of `text` that still fits, cut on a character boundary.
    fn take<'a>(&mut self, text: &'a str) -> &'a str {
        let mut n = self.left.min(text.len());
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        self.left -= n;
        self.skipped += text.len() - n;
        &text[..n]
    }
}

/// Checks one response.
pub fn check(settings: &Settings, input: &CheckInput) -> Report {
    let mut found: Vec<Located> = Vec::new();
    let mut scanned = Vec::new();
    let mut budget = Budget {
        left: MAX_SCAN_BYTES,
        skipped: 0,
    };
    // Tool calls first: they are what the model is about to do, and the first to be scanned
    // when the budget runs out; a command both planned and called is reported for the call.
    if settings.scan_tool_calls && !input.tool_calls.is_empty() {
        scanned.push(count(input.tool_calls.len(), "tool call"));
        for call in &input.tool_calls {
            for text in argument_strings(&call.arguments) {
                collect(&mut found, scan::scan(budget.take(&text), false), || {
                    format!("in the arguments of tool call `{}`", call.name)
                });
            }
        }
    }
    if settings.scan_thinking && !input.thinking.is_empty() {
        scanned.insert(0, count(input.thinking.len(), "thinking block"));
        for (i, block) in input.thinking.iter().enumerate() {
            collect(&mut found, scan::scan(budget.take(block), true), || {
                format!("planned in thinking block {}", i + 1)
            });
        }
    }
    if settings.scan_response_text && !input.response_text.is_empty() {
        scanned.push(count(input.response_text.len(), "response text block"));
        for (i, block) in input.response_text.iter().enumerate() {
            collect(&mut found, scan::scan(budget.take(block), true), || {
                format!("in response text block {}", i + 1)
            });
        }
    }

    let total = found.len();
    found.retain(|l| !settings.allows(&l.finding.command));
    let allowed = total - found.len();
    let kept = found.len();
    found.retain(|l| l.finding.severity >= settings.severity_floor);
    let below_floor = kept - found.len();
    found.sort_by_key(|l| std::cmp::Reverse(l.finding.severity));

    let reported = found.len();
    let rules: Vec<&str> = found.iter().map(|l| l.finding.rule).collect();
    let concerns: Vec<Concern> = found
        .iter()
        .take(MAX_CONCERNS)
        .map(|l| {
            Concern::new(
                CATEGORY,
                l.finding.severity,
                format!("{} ({})", l.finding.what, l.origin),
            )
            .with_evidence(&l.finding.command)
            .with_card_field(CARD_FIELD)
        })
        .collect();
    let summary = summary(&found, &scanned);
    Report::from_concerns(concerns, &input.conscience_values, summary).with_metadata(json!({
        "policy": crate::NAME,
        "findings": reported,
        "rules": rules,
        "allowed": allowed,
        "below_floor": below_floor,
        "unscanned_bytes": budget.skipped,
    }))
}

/// Adds `findings` not already found (same rule and command) with their origin.
fn collect(found: &mut Vec<Located>, findings: Vec<Finding>, origin: impl Fn() -> String) {
    for finding in findings {
        let seen = found
            .iter()
            .any(|l| l.finding.rule == finding.rule && l.finding.command == finding.command);
        if !seen {
            found.push(Located {
                finding,
                origin: origin(),
            });
        }
    }
}

/// The strings in a tool call's JSON arguments (every string value, at any depth); the raw
/// text when it is not JSON (e.g. arguments still partial).
fn argument_strings(arguments: &str) -> Vec<String> {
    fn walk(value: Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.into_iter().for_each(|v| walk(v, out)),
            Value::Object(map) => map.into_iter().for_each(|(_, v)| walk(v, out)),
            _ => {}
        }
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(value) => {
            let mut out = Vec::new();
            walk(value, &mut out);
            out
        }
        Err(_) => vec![arguments.to_owned()],
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// One or two sentences for the checkpoint; names what was found, never quotes the thinking.
fn summary(found: &[Located], scanned: &[String]) -> String {
    let Some(worst) = found.first() else {
        return if scanned.is_empty() {
            "No thinking or tool calls to check for destructive shell commands.".to_owned()
        } else {
            format!(
                "No destructive shell commands in {}.",
                scanned.join(" and ")
            )
        };
    };
    let more = match found.len() {
        1 => String::new(),
        n if n > MAX_CONCERNS => format!(" ({n} in all; the first {MAX_CONCERNS} are listed)"),
        n => format!(" ({n} in all)"),
    };
    format!(
        "Destructive shell command {}: {}{more}.",
        worst.origin, worst.finding.what
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnemom_plugin_sdk::policy::{Severity, Verdict};

    fn tool(cmd: &str) -> String {
        json!({ "command": cmd }).to_string()
    }

    #[test]
    fn critical_commands_are_boundary_violations() {
        let input = CheckInput::sample()
            .with_thinking(
                "The disk is full; I'll free space with sudo rm -rf --no-preserve-root /.",
            )
            .with_tool_call("bash", tool("sudo rm -rf --no-preserve-root /"));
        let report = check(&Settings::default(), &input);
        assert_eq!(report.verdict, Verdict::BoundaryViolation);
        // The same command in thinking and tool call is one concern, reported for the call.
        assert_eq!(report.concerns.len(), 1);
        let c = &report.concerns[0];
        assert_eq!(c.category, "destructive_command");
        assert_eq!(c.severity, Severity::Critical);
        assert_eq!(c.evidence, "sudo rm -rf --no-preserve-root /");
        assert_eq!(c.relevant_card_field.as_deref(), Some(CARD_FIELD));
        assert_eq!(c.relevant_conscience_value, None);
        assert!(
            c.description
                .ends_with("(in the arguments of tool call `bash`)"),
            "{}",
            c.description
        );
        let meta: Value = serde_json::from_str(report.metadata_json.as_deref().unwrap()).unwrap();
        assert_eq!(meta["findings"], 1);
        assert_eq!(meta["rules"], json!(["recursive-delete"]));
    }

    #[test]
    fn high_commands_need_review() {
        let input = CheckInput::sample()
            .with_tool_call("bash", tool("git fetch && git push --force origin main"));
        let report = check(&Settings::default(), &input);
        assert_eq!(report.verdict, Verdict::ReviewNeeded);
        assert_eq!(report.concerns[0].evidence, "git push --force origin main");
        assert!(
            report.concerns[0]
                .description
                .ends_with("(in the arguments of tool call `bash`)")
        );
        assert!(
            report
                .reasoning_summary
                .starts_with("Destructive shell command in the arguments")
        );
    }

    #[test]
    fn clean_input_is_clear() {
        let input = CheckInput::sample()
            .with_thinking("Let me rebuild: rm -rf ./target && cargo build.")
            .with_tool_call("bash", tool("rm -rf ./target && cargo build"));
        let report = check(&Settings::default(), &input);
        assert_eq!(report.verdict, Verdict::Clear);
        assert!(report.concerns.is_empty());
        assert_eq!(
            report.reasoning_summary,
            "No destructive shell commands in 1 thinking block and 1 tool call."
        );
        let empty = check(&Settings::default(), &CheckInput::sample());
        assert_eq!(empty.verdict, Verdict::Clear);
        assert!(
            empty
                .reasoning_summary
                .starts_with("No thinking or tool calls")
        );
    }

    #[test]
    fn allow_list_floor_and_sources() {
        let input = CheckInput::sample()
            .with_thinking("Next: terraform destroy -target=module.sandbox -auto-approve")
            .with_tool_call(
                "bash",
                tool("git reset --hard origin/main && mkfs.ext4 /dev/sdb"),
            )
            .with_response_text("To wipe it, run `dd if=/dev/zero of=/dev/sda`.");
        let settings = Settings {
            allow: vec!["-target=module.sandbox".into()],
            ..Settings::default()
        };
        let report = check(&settings, &input);
        let severities: Vec<&str> = report
            .concerns
            .iter()
            .map(|c| c.severity.as_str())
            .collect();
        assert_eq!(severities, ["critical", "high"]);
        let meta: Value = serde_json::from_str(report.metadata_json.as_deref().unwrap()).unwrap();
        assert_eq!(meta["allowed"], 1);

        let critical_only = Settings {
            severity_floor: Severity::Critical,
            ..settings.clone()
        };
        let report = check(&critical_only, &input);
        assert_eq!(report.concerns.len(), 1);
        assert_eq!(report.concerns[0].evidence, "mkfs.ext4 /dev/sdb");

        let nothing = Settings {
            scan_thinking: false,
            scan_tool_calls: false,
            ..Settings::default()
        };
        assert_eq!(check(&nothing, &input).verdict, Verdict::Clear);
        let text_only = Settings {
            scan_response_text: true,
            ..nothing
        };
        let report = check(&text_only, &input);
        assert_eq!(report.verdict, Verdict::BoundaryViolation);
        assert!(
            report.concerns[0]
                .description
                .ends_with("(in response text block 1)")
        );
    }

    #[test]
    fn scanning_stops_at_the_budget() {
        let filler = "All good here, nothing to do.\n".repeat(MAX_SCAN_BYTES / 30 + 10);
        let input = CheckInput::sample()
            .with_tool_call("bash", tool("mkfs.ext4 /dev/sdb"))
            .with_thinking(format!("{filler}Then sudo rm -rf / to finish."));
        let report = check(&Settings::default(), &input);
        // The tool call was scanned, the end of the long thinking block was not.
        assert_eq!(report.concerns.len(), 1);
        assert_eq!(report.concerns[0].evidence, "mkfs.ext4 /dev/sdb");
        let meta: Value = serde_json::from_str(report.metadata_json.as_deref().unwrap()).unwrap();
        let skipped = meta["unscanned_bytes"].as_u64().unwrap() as usize;
        let total = "mkfs.ext4 /dev/sdb".len() + input.thinking[0].len();
        assert_eq!(skipped, total - MAX_SCAN_BYTES);
        let mut budget = Budget {
            left: 3,
            skipped: 0,
        };
        assert_eq!(budget.take("héllo"), "hé");
        assert_eq!(budget.take("x"), "");
        assert_eq!(budget.skipped, 4);
    }

    #[test]
    fn arguments_are_read_as_json_or_raw() {
        assert_eq!(
            argument_strings(r#"{"a":"x","b":["y",{"c":"z"}],"n":1}"#),
            ["x", "y", "z"]
        );
        assert_eq!(argument_strings(r#"{"cmd":"rm -rf"#), [r#"{"cmd":"rm -rf"#]);
        let input = CheckInput::sample().with_tool_call("bash", r#"{"cmd": "rm -rf / &&"#);
        assert_eq!(
            check(&Settings::default(), &input).verdict,
            Verdict::BoundaryViolation
        );
    }

    #[test]
    fn concerns_are_capped() {
        let script: String = (0..15).map(|i| format!("mkfs.ext4 /dev/sd{i}\n")).collect();
        let input = CheckInput::sample()
            .with_tool_call("write_file", json!({"content": script}).to_string());
        let report = check(&Settings::default(), &input);
        assert_eq!(report.concerns.len(), MAX_CONCERNS);
        assert!(
            report
                .reasoning_summary
                .contains("(15 in all; the first 10 are listed)")
        );
        let long = format!("rm -rf / {}", "x".repeat(400));
        let report = check(
            &Settings::default(),
            &CheckInput::sample().with_tool_call("bash", tool(&long)),
        );
        assert_eq!(report.concerns[0].evidence.chars().count(), 200);
    }
}
