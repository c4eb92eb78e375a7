//! The binary's command line: `plugins export`, `plugin inspect`, and configuration errors that
//! name the variable.

use std::process::Command;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mnemom-gateway"))
}

#[test]
fn export_writes_loadable_plugins_and_inspect_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = gateway()
        .args(["plugins", "export"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = dir.path().join("aip-conscience.wasm");
    let out = gateway()
        .args(["plugin", "inspect"])
        .arg(&policy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("world:    aip-policy"), "{text}");
    assert!(text.contains("\"name\":\"aip-conscience\""), "{text}");
    for name in ["anthropic", "openai", "gemini"] {
        let wasm = dir.path().join(format!("{name}.wasm"));
        assert!(wasm.exists());
        let manifest =
            std::fs::read_to_string(dir.path().join(format!("{name}.plugin.toml"))).unwrap();
        assert!(manifest.contains("sha256 = "));
        let out = gateway()
            .args(["plugin", "inspect"])
            .arg(&wasm)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("world:    provider-adapter"), "{text}");
        assert!(text.contains("verdict:  accepted"), "{text}");
        // The built-in adapters all have the optional summary export.
        assert!(
            text.contains("mnemom:gateway/adapter-summary@0.1.0"),
            "{text}"
        );
        assert!(
            text.contains(&format!("\"route_prefix\":\"/{name}\"")),
            "{text}"
        );
    }
}

#[test]
fn inspect_rejects_what_the_gateway_would_reject() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm at all").unwrap();
    let out = gateway()
        .args(["plugin", "inspect", "--json"])
        .arg(&garbage)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["accepted"], false);
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains("not a valid WebAssembly component")
    );

    let testkit = env!("MNEMOM_PLUGIN_WASM_TESTKIT");
    let out = gateway()
        .args([
            "plugin",
            "inspect",
            testkit,
            "--config",
            "mode=describe-trap",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("REJECTED: smoke call failed"));
}

#[test]
fn bad_configuration_exits_64_naming_the_variable() {
    for (key, value) in [
        ("PORT", "http"),
        ("SMOLTBOT_ROLE", "janitor"),
        ("ANTHROPIC_BASE_URL", "not a url"),
        ("MNEMOM_PLUGIN_DIRS", "/definitely/not/here"),
    ] {
        let data = tempfile::tempdir().unwrap();
        let out = gateway()
            .arg("serve")
            .env(key, value)
            .env("MNEMOM_DATA_DIR", data.path())
            .env("MNEMOM_PLUGIN_CACHE_DIR", "off")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{key}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("invalid configuration") && stderr.contains(key),
            "{key}: {stderr}"
        );
    }
}

#[test]
fn migrate_is_idempotent_and_names_an_unreachable_database() {
    let data = tempfile::tempdir().unwrap();
    for run in 0..2 {
        let out = gateway()
            .arg("migrate")
            .env("MNEMOM_DATA_DIR", data.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(data.path().join("mnemom.db").exists());

    let out = gateway()
        .arg("migrate")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/mnemom")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");

    let out = gateway()
        .arg("migrate")
        .env("DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"));
}

#[test]
fn plugin_test_runs_policy_cases_and_fails_on_a_broken_expectation() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (wasm, dir) in [
        (env!("MNEMOM_PLUGIN_WASM_SHELL_GUARD"), "shell-guard"),
        (env!("MNEMOM_PLUGIN_WASM_AIP_CONSCIENCE"), "aip-conscience"),
    ] {
        let plugin = root.join("plugins").join(dir);
        let out = gateway()
            .args(["plugin", "test", wasm, "--cases"])
            .arg(plugin.join("cases.json"))
            .arg("--manifest")
            .arg(plugin.join("plugin.toml"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{dir}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(" passed, 0 failed"), "{text}");
        assert!(!text.contains("FAIL"), "{text}");
    }
    // A case whose expectation does not hold fails the run and says why.
    let cases = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cases.path(),
        r#"{"cases":[{"name":"wrong on purpose","input":{"thinking":["run rm -rf / now"]},"expect":{"verdict":"clear"}}]}"#,
    )
    .unwrap();
    let out = gateway()
        .args([
            "plugin",
            "test",
            env!("MNEMOM_PLUGIN_WASM_SHELL_GUARD"),
            "--cases",
        ])
        .arg(cases.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL wrong on purpose"), "{text}");
    assert!(
        text.contains("expected verdict clear, got boundary_violation"),
        "{text}"
    );
    // A cases file that is not valid names the problem.
    std::fs::write(cases.path(), r#"{"cases":[{"nam":"typo"}]}"#).unwrap();
    let out = gateway()
        .args([
            "plugin",
            "test",
            env!("MNEMOM_PLUGIN_WASM_SHELL_GUARD"),
            "--cases",
        ])
        .arg(cases.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cases file") && err.contains("nam"), "{err}");
}
