#!/usr/bin/env bash
# The chart tests: installs the pinned chart tools (tests/chart/setup.sh, idempotent), then runs
# pytest over tests/chart — helm lint/template with Helm 3.12, 3.19 and 4, kubernetes-validate for
# Kubernetes 1.27 and the newest bundled, the ServiceMonitor CRD schema, the guide's promises, and
# the chart-to-process tests (which need root and the gateway binary: target/{debug,release} or a
# `cargo build`). Extra arguments go to pytest (e.g. `tests/chart/run.sh -k network_policy`).
set -euo pipefail
cd "$(dirname "$0")/../.."

tools="$(tests/chart/setup.sh | tail -n 1)"
export MNEMOM_CHART_TOOLS="$tools"
export PYTHONDONTWRITEBYTECODE=1
exec "$tools/venv/bin/python" -m pytest tests/chart -p no:cacheprovider -q -rs "$@"
