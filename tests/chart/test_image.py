"""The container image, as far as it can be checked without a Docker engine: the Dockerfile's
stages and runtime configuration agree with the chart, the build context keeps what the build
needs, and the binary needs nothing the runtime base lacks. (test_process.py runs the binary the
way the image and the chart together run it.)"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import yaml

import chartlib as cl

DOCKERFILE = cl.ROOT / "Dockerfile"


def _stages() -> list[list[tuple[str, str]]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        if instr.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instr.upper(), rest.strip()))
    return stages


def test_multi_stage_rust_build() -> None:
    stages = _stages()
    assert len(stages) >= 2, "a builder stage and a runtime stage"
    builder = stages[0]
    assert re.search(r"(^|/)rust:", builder[0][1]), builder[0]
    runs = [rest for instr, rest in builder if instr == "RUN"]
    target = next(i for i, r in enumerate(runs) if "rustup target add wasm32-wasip2" in r)
    build = next(i for i, r in enumerate(runs) if re.search(r"cargo build --release\b.*-p mnemom-gateway", r))
    assert target < build, "the plugins are built for wasm32-wasip2 by the host's build script"
    runtime = stages[-1]
    base = runtime[0][1]
    assert "debian" in base and "slim" in base or "distroless/cc" in base, base
    copies = [rest for instr, rest in runtime if instr == "COPY"]
    assert copies and all("--from=" in c for c in copies), "the runtime stage only takes the builder's output"


def test_runtime_matches_the_chart() -> None:
    image = cl.dockerfile_runtime()
    assert image["user"] == "65534:65534"
    assert image["expose"] == ["8787"]
    assert image["entrypoint"] == [cl.BINARY_IN_IMAGE]
    assert image["cmd"] == ["serve"]
    assert image["env"]["PORT"] == "8787"
    values = yaml.safe_load((cl.CHART / "values.yaml").read_text())
    assert image["env"]["MNEMOM_DATA_DIR"] == values["storage"]["data"]["mountPath"]
    assert image["env"]["MNEMOM_PLUGIN_CACHE_DIR"] == values["storage"]["pluginCache"]["mountPath"]
    # The chart's preStop hook execs /bin/sleep: the runtime base must have it (debian-slim does;
    # distroless does not).
    if "distroless" in image["from"]:
        assert "/bin/sleep" not in (cl.CHART / "templates" / "_helpers.tpl").read_text()
    text = DOCKERFILE.read_text()
    assert "plugins export /out/usr/share/mnemom/plugins" in text, "the default plugins ship as files too"


def _dockerignore_patterns() -> list[tuple[bool, str]]:
    out = []
    for line in (cl.ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        out.append((negate, line.lstrip("!").strip("/")))
    return out


def _ignored(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rules: the last matching pattern wins; a pattern matching a parent excludes it."""
    parts = path.split("/")
    ignored = False
    for negate, pattern in patterns:
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            regex = fnmatch.translate(pattern).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
            if pattern.startswith("**/"):
                hit = any(fnmatch.fnmatch("/".join(parts[j:i]), pattern[3:]) for j in range(i))
            else:
                hit = re.fullmatch(regex, prefix) is not None
            if hit:
                ignored = not negate
                break
    return ignored


def test_build_context_keeps_the_workspace() -> None:
    patterns = _dockerignore_patterns()
    cargo = (cl.ROOT / "Cargo.toml").read_text()
    members = re.findall(r'"([^"]+)"', re.search(r"members\s*=\s*\[(.*?)\]", cargo, re.S).group(1))
    needed = ["Cargo.toml", "Cargo.lock", "wit", "migrations", "host/build.rs"]
    needed += [f"{m}/Cargo.toml" for m in members] + [f"{m}/src" for m in members]
    needed += [str(p.relative_to(cl.ROOT)) for p in (cl.ROOT / "plugins").glob("*/plugin.toml")]  # include_str!
    kept = [p for p in needed if (cl.ROOT / p).exists()]
    assert "host/Cargo.toml" in kept
    leaked = [p for p in kept if _ignored(p, patterns)]
    assert not leaked, f".dockerignore drops what the build needs: {leaked}"
    for p in ("target", "target/release/mnemom-gateway", ".git", "charts/mnemom-gateway", "tests/chart/test_image.py"):
        assert _ignored(p, patterns), f"{p} should not be sent to the builder"


def test_binary_needs_only_what_the_runtime_base_has() -> None:
    binary = cl.gateway_binary()
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    libs = {Path(line.split()[0]).name for line in out.splitlines() if line.strip()}
    allowed = {"linux-vdso.so.1", "libc.so.6", "libm.so.6", "libgcc_s.so.1", "libpthread.so.0", "libdl.so.2",
               "librt.so.1", "ld-linux-x86-64.so.2"}
    assert libs <= allowed, f"needs libraries debian-slim/distroless-cc do not have: {libs - allowed}"
