//! Test program: a deterministic AIP policy (`aip-policy-pure`) whose answer is chosen by its
//! manifest config, so the gateway's tests can exercise the policy chain, failure modes and hot
//! reload with a real compiled component. Never shipped in the gateway binary.
//!
//! Config keys:
//! - `name`: what `describe` reports (default `testkit-policy`).
//! - `verdict`: `clear` (default), `review_needed` or `boundary_violation`; the report carries
//!   one concern of category `testkit` (severity medium for review, critical for a violation).
//! - `marker`: put into the reasoning summary (`testkit <marker>`), so a test can see which
//!   version answered.
//! - `mode`: `ok` (default), `trap` (panics in `check`), `loop` (spins forever), `grow`
//!   (allocates without bound), `fail` (returns `analysis-failed`), `describe-trap` (fails its
//!   own smoke call, so the gateway must reject it at load).
//! - `only-if`: when set, the configured verdict applies only to thinking containing this text;
//!   other thinking is `clear`.

// Only the component build has the export glue, and with it wit-bindgen's unsafe code.
#![cfg_attr(
    target_family = "wasm",
    expect(
        unsafe_code,
        reason = "wit-bindgen generates the component ABI glue as unsafe code"
    )
)]

wit_bindgen::generate!({
    world: "aip-policy-pure",
    path: "../../wit",
});

use exports::mnemom::gateway::policy::Guest;
use mnemom::gateway::host::config_get;
use mnemom::gateway::policy_types::{
    CheckInput, Concern, PolicyDescriptor, PolicyError, Report, Severity, Verdict,
};

struct TestkitPolicy;

fn setting(key: &str, default: &str) -> String {
    config_get(key).unwrap_or_else(|| default.to_owned())
}

fn misbehave(mode: &str) -> Option<PolicyError> {
    match mode {
        "trap" => panic!("testkit-policy: configured to trap"),
        "loop" => {
            let mut counter: u64 = 0;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        "grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "fail" => Some(PolicyError::AnalysisFailed(
            "testkit-policy: configured to fail".to_owned(),
        )),
        _ => None,
    }
}

/// The report for a configured verdict.
pub fn report(verdict: &str, marker: &str) -> Report {
    let (verdict, severity) = match verdict {
        "review_needed" => (Verdict::ReviewNeeded, Some(Severity::Medium)),
        "boundary_violation" => (Verdict::BoundaryViolation, Some(Severity::Critical)),
        _ => (Verdict::Clear, None),
    };
    Report {
        verdict,
        concerns: severity
            .map(|severity| Concern {
                category: "testkit".to_owned(),
                severity,
                description: format!("testkit-policy configured verdict ({marker})"),
                evidence: String::new(),
                relevant_card_field: None,
                relevant_conscience_value: None,
            })
            .into_iter()
            .collect(),
        reasoning_summary: format!("testkit {marker}"),
        conscience_context: None,
        metadata_json: Some(format!("{{\"marker\":\"{marker}\"}}")),
    }
}

impl Guest for TestkitPolicy {
    fn describe() -> PolicyDescriptor {
        if setting("mode", "ok") == "describe-trap" {
            panic!("testkit-policy: configured to fail describe");
        }
        PolicyDescriptor {
            name: setting("name", "testkit-policy"),
            version: "0.1.0".to_owned(),
            description: "Test policy with a configured verdict".to_owned(),
        }
    }

    fn check(input: CheckInput) -> Result<Report, PolicyError> {
        if let Some(error) = misbehave(&setting("mode", "ok")) {
            return Err(error);
        }
        let marker = setting("marker", "");
        let only_if = setting("only-if", "");
        let applies = only_if.is_empty() || input.thinking.iter().any(|t| t.contains(&only_if));
        let verdict = if applies {
            setting("verdict", "clear")
        } else {
            "clear".to_owned()
        };
        Ok(report(&verdict, &marker))
    }
}

#[cfg(target_family = "wasm")]
export!(TestkitPolicy);
