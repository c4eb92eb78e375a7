"""Fixtures of the chart tests. The tools come from tests/chart/setup.sh (tests/chart/run.sh runs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chartlib as cl  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    missing = [str(cl.helm_path(v)) for v in cl.HELM_VERSIONS if not cl.helm_path(v).is_file()]
    if missing:
        raise pytest.UsageError(f"chart tools missing ({', '.join(missing)}): run tests/chart/setup.sh first")


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chart")


@pytest.fixture(scope="session")
def renders(workdir: Path) -> cl.Renders:
    r = cl.Renders(workdir)
    r.compute_all()
    return r


@pytest.fixture(scope="session")
def kube_versions() -> list[str]:
    import kubernetes_validate

    latest = kubernetes_validate.latest_version()
    return [cl.KUBE_MINIMUM, latest]


@pytest.fixture(scope="session")
def crd_results(renders: cl.Renders) -> dict[str, list[dict]]:
    """ServiceMonitor (and any other prometheus-operator object) of every render, validated in one
    node process against the CRD schemas."""
    node_dir = cl.TOOLS / "node"
    script = node_dir / "validate_crs.mjs"
    shutil.copyfile(cl.HERE / "validate_crs.mjs", script)
    files = [str(p) for p in renders.files.values()]
    p = subprocess.run(["node", str(script), *files], capture_output=True, text=True, timeout=300)
    out: dict[str, list[dict]] = {f: [] for f in files}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            out[r["file"]].append(r)
    if p.returncode not in (0, 1) or p.stderr.strip():
        raise AssertionError(f"CRD validator crashed ({p.returncode}): {p.stderr}")
    return out


@pytest.fixture(scope="session")
def default_objects(renders: cl.Renders) -> cl.Objects:
    return renders.objects("3.19", "defaults")


@pytest.fixture(scope="session")
def kube_validate():
    """kubernetes-validate --strict, memoised by (object, version): the three Helm versions render
    the same objects (test_same_render_with_every_helm_version), so each is checked once."""
    import kubernetes_validate

    cache: dict[tuple[str, str], str | None] = {}

    def validate(obj: dict, version: str) -> str | None:
        key = (json.dumps(obj, sort_keys=True), version)
        if key not in cache:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
                cache[key] = None
            except Exception as e:  # noqa: BLE001 - reported by the test
                cache[key] = f"{type(e).__name__}: {e}"
        return cache[key]

    return validate
