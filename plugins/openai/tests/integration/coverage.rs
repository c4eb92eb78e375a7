//! The fixture tree is the compatibility matrix: every file in `plugins/fixtures/openai/` must be
//! exercised by a golden test, and every expected file must belong to a fixture.

use std::collections::BTreeSet;

use mnemom_plugin_sdk::testing;

use crate::support::fixtures_dir;
use crate::{errors, requests, responses, streams};

fn files_in(dir: &str) -> BTreeSet<String> {
    let mut names = testing::file_names(&fixtures_dir().join(dir));
    names.remove("README.md");
    names
}

#[test]
fn every_fixture_has_a_golden_test() {
    let covered: BTreeSet<String> = responses::STEMS
        .iter()
        .chain(errors::STEMS)
        .map(|s| format!("{s}.json"))
        .chain(streams::STEMS.iter().map(|s| format!("{s}.sse")))
        .collect();
    let present = files_in(".");
    let uncovered: Vec<_> = present.difference(&covered).collect();
    assert!(
        uncovered.is_empty(),
        "fixtures without a golden test: {uncovered:?}"
    );
    let missing: Vec<_> = covered.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "tests naming absent fixtures: {missing:?}"
    );
}

#[test]
fn every_expected_file_belongs_to_a_fixture() {
    let want: BTreeSet<String> = responses::STEMS
        .iter()
        .chain(streams::STEMS)
        .map(|s| format!("{s}.json"))
        .collect();
    assert_eq!(files_in("expected"), want);
}

#[test]
fn every_request_file_is_in_the_manifest() {
    let mut listed: BTreeSet<String> = requests::cases()
        .into_iter()
        .flat_map(|(_, files)| files)
        .collect();
    listed.insert("cases.json".into());
    assert_eq!(files_in("requests"), listed);
}
