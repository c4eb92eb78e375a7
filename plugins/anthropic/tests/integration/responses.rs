//! `parse-response` against every recorded Messages response.

use mnemom_adapter_anthropic::mnemom::gateway::types::AdapterError;
use mnemom_adapter_anthropic::response;

use crate::support::{expected_for, extraction_json, json_fixtures, read};

#[test]
fn every_response_fixture_matches_its_expected_extraction() {
    let fixtures: Vec<_> = json_fixtures("messages-");
    assert_eq!(
        fixtures.len(),
        5,
        "response fixtures were added or removed: {fixtures:?}"
    );
    for path in fixtures {
        let extraction =
            response::parse(&read(&path)).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        assert_eq!(
            extraction_json(&extraction),
            expected_for(&path),
            "{}",
            path.display()
        );
    }
}

#[test]
fn tool_arguments_are_compact_json_in_provider_order() {
    let path = crate::support::fixtures().join("messages-tool-use.json");
    let extraction = response::parse(&read(&path)).unwrap();
    let arguments = &extraction.tool_calls[0].arguments;
    // The fixture is pretty-printed; the arguments are the wire's compact text, keys unsorted.
    assert!(arguments.starts_with(r#"{"elements":[{"location":"San Francisco","temperature":-5,"#));
}

#[test]
fn non_json_is_unsupported() {
    assert!(matches!(
        response::parse(b"<html>502 Bad Gateway</html>"),
        Err(AdapterError::Unsupported(_))
    ));
}

#[test]
fn every_response_fixture_summarizes_to_what_its_parse_reads() {
    let fixtures: Vec<_> = json_fixtures("messages-");
    assert!(!fixtures.is_empty());
    for path in fixtures {
        let body = read(&path);
        let full = response::parse(&body).unwrap();
        let summary = response::summarize(&body).unwrap();
        let name = path.display();
        assert_eq!(summary.tool_calls as usize, full.tool_calls.len(), "{name}");
        assert_eq!(summary.model, full.model, "{name}");
        assert_eq!(summary.stop_reason, full.stop_reason, "{name}");
        assert_eq!(
            format!("{:?}", summary.usage),
            format!("{:?}", full.usage),
            "{name}"
        );
    }
}
