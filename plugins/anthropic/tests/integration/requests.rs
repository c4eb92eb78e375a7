//! `transform-request` against the request cases of `requests/cases.json`.

use std::collections::BTreeMap;

use mnemom_adapter_anthropic::mnemom::gateway::types::{AdapterError, RequestInfo};
use mnemom_adapter_anthropic::{Settings, request};
use mnemom_plugin_sdk::testing::Expect;
use serde::Deserialize;
use serde_json::Value;

use crate::support::{fixtures, read};

/// One entry of `requests/cases.json`.
#[derive(Debug, Deserialize)]
struct Case {
    case: String,
    method: String,
    path: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
    system_notes: Vec<String>,
    body: String,
    expect: Expect,
}

fn cases() -> Vec<Case> {
    serde_json::from_slice(&read(&fixtures().join("requests/cases.json"))).unwrap()
}

#[test]
fn every_request_case_transforms_as_expected() {
    let cases = cases();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = &case.case;
        let settings = Settings::from_config(
            |k| case.config.get(k).cloned(),
            |w| panic!("{name}: config warning {w}"),
        );
        let info = RequestInfo {
            method: case.method.clone(),
            path: case.path.clone(),
            query: String::new(),
            headers: Vec::new(),
            system_notes: case.system_notes.clone(),
        };
        let input = read(&fixtures().join("requests").join(&case.body));
        let result = request::transform(&settings, &info, &input);
        match case.expect {
            Expect::Error { error } => {
                assert_eq!(error, "unsupported", "{name}");
                assert!(
                    matches!(result, Err(AdapterError::Unsupported(_))),
                    "{name}: {result:?}"
                );
            }
            Expect::Plan {
                body,
                streaming,
                model,
                thinking_injected,
                notes_applied,
            } => {
                let plan = result.unwrap_or_else(|e| panic!("{name}: {e:?}"));
                match body {
                    None => assert!(plan.body.is_none(), "{name}: body changed"),
                    Some(file) => {
                        let expected = read(&fixtures().join("requests").join(file));
                        let got = plan
                            .body
                            .unwrap_or_else(|| panic!("{name}: body unchanged"));
                        assert_eq!(
                            String::from_utf8(got.clone()).unwrap(),
                            String::from_utf8(expected).unwrap(),
                            "{name}"
                        );
                        check_valid_for_anthropic(name, &got);
                    }
                }
                assert_eq!(plan.streaming, streaming, "{name}: streaming");
                assert_eq!(plan.model, model, "{name}: model");
                assert_eq!(
                    plan.thinking_injected, thinking_injected,
                    "{name}: thinking"
                );
                assert_eq!(plan.notes_applied, notes_applied, "{name}: notes");
            }
        }
    }
}

/// Every edited body is valid JSON, has each key once, and, when it enables thinking, keeps the
/// budget within Anthropic's rules (at least 1024, below `max_tokens`).
fn check_valid_for_anthropic(name: &str, body: &[u8]) {
    let value: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{name}: {e}"));
    // `Value` keeps the last of duplicate keys, so count the keys of the text itself.
    let keys: TopLevelKeys = serde_json::from_slice(body).unwrap();
    assert_eq!(
        keys.0.len(),
        value.as_object().unwrap().len(),
        "{name}: {:?}",
        keys.0
    );
    if value["thinking"]["type"] == "enabled" {
        let budget = value["thinking"]["budget_tokens"].as_u64().unwrap();
        let max_tokens = value["max_tokens"].as_u64().unwrap();
        assert!(
            budget >= 1024 && budget < max_tokens,
            "{name}: {budget} / {max_tokens}"
        );
    }
}

#[test]
fn every_request_file_is_used() {
    let used: Vec<String> = cases()
        .iter()
        .flat_map(|c| {
            let mut files = vec![c.body.clone()];
            if let Expect::Plan { body: Some(b), .. } = &c.expect {
                files.push(b.clone());
            }
            files
        })
        .collect();
    for entry in std::fs::read_dir(fixtures().join("requests")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name == "cases.json" || name == "README.md" {
            continue;
        }
        assert!(
            used.contains(&name),
            "{name} is not referenced by cases.json"
        );
    }
}

/// The top-level keys of a JSON object, duplicates included.
struct TopLevelKeys(Vec<String>);

impl<'de> Deserialize<'de> for TopLevelKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = TopLevelKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TopLevelKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(TopLevelKeys(keys))
            }
        }
        d.deserialize_map(Keys)
    }
}
