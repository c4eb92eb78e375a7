//! Builds the plugin components (the default adapters and the test programs) for
//! `wasm32-wasip2` so the gateway can embed the defaults and the tests can load the real `.wasm`
//! files. The nested cargo uses its own directory under the workspace target dir, so it never
//! waits on the outer build's lock and is a no-op when nothing changed.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The plugin crates: (package name, artifact stem, constant suffix).
const PLUGINS: &[(&str, &str, &str)] = &[
    (
        "mnemom-adapter-anthropic",
        "mnemom_adapter_anthropic",
        "ANTHROPIC",
    ),
    ("mnemom-adapter-openai", "mnemom_adapter_openai", "OPENAI"),
    ("mnemom-adapter-gemini", "mnemom_adapter_gemini", "GEMINI"),
    (
        "mnemom-testkit-adapter",
        "mnemom_testkit_adapter",
        "TESTKIT",
    ),
    (
        "mnemom-policy-conscience",
        "mnemom_policy_conscience",
        "AIP_CONSCIENCE",
    ),
    (
        "mnemom-policy-shell-guard",
        "mnemom_policy_shell_guard",
        "SHELL_GUARD",
    ),
    (
        "mnemom-testkit-policy",
        "mnemom_testkit_policy",
        "TESTKIT_POLICY",
    ),
];

fn main() {
    if let Err(message) = run() {
        // A build script reports failure by exiting non-zero with the reason on stderr.
        #[expect(clippy::print_stderr, reason = "build scripts report errors on stderr")]
        {
            eprintln!("error: {message}");
        }
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest_dir
        .parent()
        .ok_or("host crate has no parent directory")?
        .to_path_buf();
    // The root manifest holds the `plugin` profile the components are built with.
    for watched in [
        "wit",
        "sdk/src",
        "sdk/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for dir in [
        "anthropic",
        "openai",
        "gemini",
        "testkit",
        "aip-conscience",
        "testkit-policy",
        "shell-guard",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            root.join("plugins").join(dir).join("src").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            root.join("plugins").join(dir).join("Cargo.toml").display()
        );
    }
    println!("cargo:rerun-if-env-changed=MNEMOM_PREBUILT_PLUGINS");
    // `sqlx::migrate!` embeds the migrations but only notices edits to files it already saw.
    println!(
        "cargo:rerun-if-changed={}",
        root.join("migrations").display()
    );

    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let artifacts = match env::var_os("MNEMOM_PREBUILT_PLUGINS") {
        // Container builds and offline packagers may hand in components built beforehand.
        Some(dir) => PathBuf::from(dir),
        None => build_plugins(&root)?,
    };
    for (_, stem, constant) in PLUGINS {
        let built = artifacts.join(format!("{stem}.wasm"));
        let copied = out_dir.join(format!("{stem}.wasm"));
        std::fs::copy(&built, &copied).map_err(|e| format!("copying {}: {e}", built.display()))?;
        println!(
            "cargo:rustc-env=MNEMOM_PLUGIN_WASM_{constant}={}",
            copied.display()
        );
    }
    Ok(())
}

fn build_plugins(root: &Path) -> Result<PathBuf, String> {
    let target_root = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target_dir = target_root.join("plugin-build");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .arg("build")
        .arg("--quiet")
        .arg("--profile")
        .arg("plugin")
        .arg("--target")
        .arg("wasm32-wasip2")
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _, _) in PLUGINS {
        command.arg("-p").arg(package);
    }
    // The outer cargo's settings (clippy wrapper, host rustflags, profile overrides) must not leak
    // into the wasm build.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let inherited = key.starts_with("CARGO_") && key != "CARGO_HOME"
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS";
        if inherited {
            command.env_remove(key);
        }
    }
    // 128-bit SIMD (every wasmtime host runs it): the adapters' response summaries find string
    // ends 16 bytes at a time with it (`mnemom_plugin_sdk::skim`).
    command.env(
        "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
        "-Ctarget-feature=+simd128",
    );
    let status = command
        .status()
        .map_err(|e| format!("running cargo for the plugin components: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the plugin components failed ({status}); is the target installed? run `rustup target add wasm32-wasip2`"
        ));
    }
    Ok(target_dir.join("wasm32-wasip2").join("plugin"))
}
