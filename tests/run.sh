#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the build needs (the wasm32-wasip2
# target; the Python SDK virtualenv is created by the SDK test itself via tests/sdk/setup.sh),
# checks formatting and lints, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

log "toolchain: $(rustc --version)"
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    log "installing the wasm32-wasip2 target (plugins are built for it)"
    rustup target add wasm32-wasip2
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo test"
cargo test --workspace --locked


log "chart tests (Helm 3.12/3.19/4 lint+template, kubernetes-validate 1.27/newest, CRD schema, chart-to-process)"
tests/chart/run.sh
