//! Request rewrites: every case of `requests/cases.json` (request line, system notes, plugin
//! configuration, input body) goes through `transform`, and the plan must equal the case's
//! expectation, the rewritten body byte for byte.

use std::collections::HashMap;
use std::fs;

use mnemom_adapter_openai::{AdapterError, RequestInfo, RequestPlan, Settings, request};
use mnemom_plugin_sdk::testing::Expect;
use serde::Deserialize;

use crate::support::fixtures_dir;

#[derive(Deserialize)]
struct Case {
    name: String,
    method: String,
    path: String,
    #[serde(default)]
    system_notes: Vec<String>,
    #[serde(default)]
    config: HashMap<String, String>,
    input: Option<String>,
    expect: Expect,
}

/// The manifest, for tests elsewhere (coverage) that need the file list.
pub fn cases() -> Vec<(String, Vec<String>)> {
    load()
        .into_iter()
        .map(|c| {
            let files = c.input.iter().cloned().chain(match c.expect {
                Expect::Plan { body, .. } => body,
                Expect::Error { .. } => None,
            });
            (c.name, files.collect())
        })
        .collect()
}

fn load() -> Vec<Case> {
    serde_json::from_str(include_str!("../../../fixtures/openai/requests/cases.json")).unwrap()
}

fn read(file: &str) -> Vec<u8> {
    let path = fixtures_dir().join("requests").join(file);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run(case: &Case) -> Result<RequestPlan, AdapterError> {
    let settings = Settings::from_config(&|key| case.config.get(key).cloned(), &mut |w| {
        panic!("{}: config warning: {w}", case.name)
    });
    let info = RequestInfo {
        method: case.method.clone(),
        path: case.path.clone(),
        query: String::new(),
        headers: Vec::new(),
        system_notes: case.system_notes.clone(),
    };
    let body = case.input.as_deref().map(read).unwrap_or_default();
    request::transform(&settings, &info, &body)
}

#[test]
fn request_cases() {
    let cases = load();
    assert!(cases.len() >= 20, "manifest lost cases");
    let mut failures = Vec::new();
    for case in &cases {
        let got = run(case);
        let ok = match (&case.expect, &got) {
            (Expect::Error { error }, Err(AdapterError::Unsupported(_))) => error == "unsupported",
            (Expect::Error { error }, Err(AdapterError::Internal(_))) => error == "internal",
            (
                Expect::Plan {
                    body,
                    streaming,
                    model,
                    thinking_injected,
                    notes_applied,
                },
                Ok(plan),
            ) => {
                let want_body = body.as_deref().map(read);
                if let Some(out) = &plan.body {
                    // Whatever we send must still be one JSON object.
                    let parsed: serde_json::Value =
                        serde_json::from_slice(out).unwrap_or_else(|e| {
                            panic!("{}: rewritten body is not JSON: {e}", case.name)
                        });
                    assert!(parsed.is_object(), "{}", case.name);
                }
                plan.body == want_body
                    && plan.streaming == *streaming
                    && plan.model == *model
                    && plan.thinking_injected == *thinking_injected
                    && plan.notes_applied == *notes_applied
            }
            _ => false,
        };
        if !ok {
            let shown = got.map(|p| RequestPlan {
                body: None,
                ..p.clone()
            });
            let body = run(case)
                .ok()
                .and_then(|p| p.body)
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            failures.push(format!("{}: got {shown:?} with body {body:?}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rewrites_keep_every_member_of_the_caller() {
    // Independently of the byte-exact files: the rewritten object holds every member of the
    // input with the same value, except the members an edit is documented to touch.
    let touched = ["reasoning_effort", "reasoning", "instructions", "messages"];
    for case in load() {
        let (
            Some(input),
            Ok(RequestPlan {
                body: Some(out), ..
            }),
        ) = (case.input.as_deref(), run(&case))
        else {
            continue;
        };
        let before: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&read(input)).unwrap();
        let after: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&out).unwrap();
        for (key, value) in &before {
            if !touched.contains(&key.as_str()) {
                assert_eq!(after.get(key), Some(value), "{}: member {key}", case.name);
            }
        }
    }
}
