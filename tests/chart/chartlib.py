"""Shared helpers of the chart tests: tool locations, the guide's scenarios, cached `helm template`
renders, Kubernetes object look-ups, label selectors and a small NetworkPolicy evaluator."""

from __future__ import annotations

import base64
import concurrent.futures
import copy
import dataclasses
import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHART = ROOT / "charts" / "mnemom-gateway"
SCENARIOS_DIR = HERE / "scenarios"
TOOLS = Path(os.environ.get("MNEMOM_CHART_TOOLS", ROOT / "target" / "chart-tools"))

# The Helm versions the chart supports (tests/chart/setup.sh installs them).
HELM_VERSIONS = ["3.12", "3.19", "4"]
# Kubernetes versions every render is validated against: the guide's minimum and the newest
# schema kubernetes-validate bundles (resolved at run time).
KUBE_MINIMUM = "1.27.0"

RELEASE = "smoltbot"
NAMESPACE = "smoltbot"
FULLNAME = f"{RELEASE}-mnemom-gateway"
GATEWAY = f"{FULLNAME}-gateway"
OBSERVER = f"{FULLNAME}-observer"
BINARY_IN_IMAGE = "/usr/local/bin/mnemom-gateway"


def helm_path(version: str) -> Path:
    return TOOLS / f"helm-{version}" / "helm"


# --------------------------------------------------------------------------------------- scenarios


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One `helm template` invocation taken from the deployment guide (or a chart feature)."""

    name: str
    values: tuple[str, ...] = ()  # files under scenarios/
    set: tuple[str, ...] = ()
    set_string: tuple[str, ...] = ()
    set_file: tuple[str, ...] = ()  # "key=path" with path relative to the session's work dir
    guide: bool = True  # taken from the guide (validated like every other one either way)

    def args(self, workdir: Path) -> list[str]:
        out: list[str] = []
        for v in self.values:
            out += ["-f", str(SCENARIOS_DIR / v)]
        for s in self.set:
            out += ["--set", s]
        for s in self.set_string:
            out += ["--set-string", s]
        for s in self.set_file:
            key, path = s.split("=", 1)
            out += ["--set-file", f"{key}={workdir / path}"]
        return out


QUICK_INSTALL_SET = (
    "secrets.values.SUPABASE_URL=https://your-project.supabase.co",
    "secrets.values.SUPABASE_KEY=your-service-role-key",
    "secrets.values.ANTHROPIC_API_KEY=sk-ant-...",
    "secrets.values.MNEMOM_LICENSE_JWT=eyJ...",
    "secrets.values.DATABASE_URL=postgres://...",
    "secrets.values.REDIS_URL=redis://...",
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("defaults"),
        # Quick Install: the guide's exact --set flags.
        Scenario("quick-install", set=QUICK_INSTALL_SET),
        Scenario("inline-secrets", values=("secrets-inline.yaml",)),
        Scenario("existing-secret", values=("secrets-existing.yaml",)),
        Scenario("config", values=("config.yaml",)),
        Scenario("image-replicas", values=("image-replicas.yaml",)),
        Scenario("observer-replicas-2", values=("observer-replicas.yaml",)),
        Scenario("internal-datastores", values=("datastores-internal.yaml",)),
        Scenario("external-datastores", values=("datastores-external.yaml",)),
        Scenario("ingress-tls", values=("ingress-tls.yaml",)),
        Scenario("hpa", values=("hpa.yaml",)),
        Scenario("pdb", values=("pdb.yaml",)),
        Scenario("service-monitor", values=("service-monitor.yaml",)),
        Scenario("pod-security", values=("pod-security.yaml",)),
        Scenario("network-policy", values=("network-policy.yaml",)),
        Scenario("service-account", values=("service-account.yaml",)),
        Scenario("scheduling", values=("scheduling.yaml",)),
        Scenario("resources", values=("resources.yaml",)),
        Scenario("port-9090", set_string=("config.PORT=9090",)),
        # Chart features beyond the guide.
        Scenario("no-database", set=("postgresql.enabled=false", "redis.enabled=false"), guide=False),
        Scenario("redis-auth", set=("redis.auth.enabled=true",), guide=False),
        Scenario(
            "plugins",
            set=("plugins.existingConfigMaps[0]=policy-plugins",),
            set_file=(
                "plugins.configMaps.groq.files.groq\\.plugin\\.toml=plugins/groq.plugin.toml",
                "plugins.configMaps.groq.binaryFiles.groq\\.wasm=plugins/groq.wasm.b64",
            ),
            guide=False,
        ),
        Scenario("everything-on", values=("everything.yaml",), set_string=("config.PORT=9191",), guide=False),
    ]
}

# A small stand-in component for template tests (the chart does not look inside it); the
# chart-to-process tests use real components exported from the binary.
FAKE_WASM = b"\x00asm\x0d\x00\x01\x00" + bytes(range(256)) * 4
FAKE_MANIFEST = 'name = "groq"\nworld = "provider-adapter"\nwasm = "groq.wasm"\nsha256 = "%s"\n'


def prepare_workdir(workdir: Path) -> None:
    """Files the scenarios pass with --set-file."""
    import hashlib

    plugins = workdir / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "groq.wasm").write_bytes(FAKE_WASM)
    (plugins / "groq.wasm.b64").write_text(base64.b64encode(FAKE_WASM).decode() + "\n")
    (plugins / "groq.plugin.toml").write_text(FAKE_MANIFEST % hashlib.sha256(FAKE_WASM).hexdigest())


# --------------------------------------------------------------------------------------- rendering


@dataclasses.dataclass
class Result:
    cmd: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> "Result":
        if self.returncode != 0:
            raise AssertionError(f"{' '.join(self.cmd)} failed ({self.returncode}):\n{self.stderr}\n{self.stdout}")
        return self


def run(cmd: list[str], timeout: float = 120, **kw: Any) -> Result:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    return Result(cmd, p.returncode, p.stdout, p.stderr)


def helm(version: str, *args: str, timeout: float = 120) -> Result:
    return run([str(helm_path(version)), *args], timeout=timeout)


def template_args(chart: Path | str = CHART, release: str = RELEASE, namespace: str = NAMESPACE) -> list[str]:
    return ["template", release, str(chart), "--namespace", namespace]


def parse_manifests(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


class Renders:
    """Lint and template results for every (Helm version, scenario), computed once, in parallel."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        prepare_workdir(workdir)
        self._lock = threading.Lock()
        self._templates: dict[tuple[str, str], Result] = {}
        self._lints: dict[tuple[str, str], Result] = {}
        self._parsed: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.files: dict[tuple[str, str], Path] = {}

    def compute_all(self) -> None:
        jobs = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            for h in HELM_VERSIONS:
                for name, sc in SCENARIOS.items():
                    args = sc.args(self.workdir)
                    jobs.append((("template", h, name), pool.submit(helm, h, *template_args(), *args)))
                    jobs.append((("lint", h, name), pool.submit(helm, h, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, *args)))
            for (kind, h, name), fut in jobs:
                res = fut.result()
                if kind == "template":
                    self._templates[(h, name)] = res
                    if res.returncode == 0:
                        path = self.workdir / "rendered" / f"helm-{h}" / f"{name}.yaml"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text(res.stdout)
                        self.files[(h, name)] = path
                else:
                    self._lints[(h, name)] = res

    def template(self, helm_version: str, scenario: str) -> Result:
        return self._templates[(helm_version, scenario)]

    def lint(self, helm_version: str, scenario: str) -> Result:
        return self._lints[(helm_version, scenario)]

    def objects(self, helm_version: str, scenario: str) -> "Objects":
        key = (helm_version, scenario)
        with self._lock:
            if key not in self._parsed:
                self._parsed[key] = parse_manifests(self.template(helm_version, scenario).check().stdout)
            return Objects(copy.deepcopy(self._parsed[key]))


def render(helm_version: str, *args: str, chart: Path | str = CHART) -> "Objects":
    """A one-off render with extra arguments (for tests that vary one value)."""
    return Objects(parse_manifests(helm(helm_version, *template_args(chart), *args).check().stdout))


def copy_chart(dest: Path) -> Path:
    target = dest / "mnemom-gateway"
    shutil.copytree(CHART, target)
    return target


# --------------------------------------------------------------------------------------- objects


class Objects(list):
    """The rendered objects, with look-ups."""

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self if o.get("kind") == kind]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        for o in self:
            if o.get("kind") == kind and o["metadata"]["name"] == name:
                return o
        return None

    def get(self, kind: str, name: str) -> dict[str, Any]:  # type: ignore[override]
        o = self.find(kind, name)
        if o is None:
            have = sorted(f"{x['kind']}/{x['metadata']['name']}" for x in self)
            raise AssertionError(f"{kind}/{name} not rendered; have {have}")
        return o

    def names(self, kind: str) -> list[str]:
        return sorted(o["metadata"]["name"] for o in self.of_kind(kind))

    def workloads(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(object, pod template-or-pod) for every object that runs pods."""
        out = []
        for o in self:
            kind = o.get("kind")
            if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                out.append((o, o["spec"]["template"]))
            elif kind == "CronJob":
                out.append((o, o["spec"]["jobTemplate"]["spec"]["template"]))
            elif kind == "Pod":
                out.append((o, o))
        return out

    def hooks(self) -> list[dict[str, Any]]:
        return [o for o in self if "helm.sh/hook" in (o["metadata"].get("annotations") or {})]

    def regular(self) -> "Objects":
        return Objects(o for o in self if "helm.sh/hook" not in (o["metadata"].get("annotations") or {}))

    def secret_data(self, name: str) -> dict[str, str]:
        s = self.get("Secret", name)
        out = {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
        out.update(s.get("stringData") or {})
        return out


def containers(pod: dict[str, Any], init: bool = True) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return list(spec.get("initContainers") or []) * init + list(spec["containers"])


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    for c in pod["spec"]["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def env_map(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env") or []}


def walk(obj: Any, path: str = "") -> Iterable[tuple[str, Any]]:
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk(v, f"{path}[{i}]")


# --------------------------------------------------------------------------------------- selectors


def selects(selector: dict[str, Any] | None, labels: dict[str, str] | None) -> bool:
    """Kubernetes LabelSelector semantics ({} selects everything; None selects nothing)."""
    if selector is None or labels is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclasses.dataclass
class Endpoint:
    """A traffic end: a pod (labels, namespace) or an IP outside the cluster."""

    labels: dict[str, str] | None = None
    namespace: str = NAMESPACE
    ip: str | None = None


def _policy_types(np: dict[str, Any]) -> list[str]:
    spec = np["spec"]
    if "policyTypes" in spec:
        return spec["policyTypes"]
    return ["Ingress"] + (["Egress"] if "egress" in spec else [])


def _ports_match(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        lo = p["port"]
        hi = p.get("endPort", lo)
        if isinstance(lo, int) and lo <= port <= hi:
            return True
    return False


def _peer_match(peers: list[dict[str, Any]] | None, peer: Endpoint, policy_ns: str) -> bool:
    if not peers:
        return True
    for p in peers:
        if "ipBlock" in p:
            if peer.ip is None:
                continue
            ip = ipaddress.ip_address(peer.ip)
            if ip in ipaddress.ip_network(p["ipBlock"]["cidr"]) and not any(
                ip in ipaddress.ip_network(x) for x in p["ipBlock"].get("except") or []
            ):
                return True
            continue
        if peer.labels is None:
            continue
        if "namespaceSelector" in p:
            if p["namespaceSelector"] != {}:
                continue  # the evaluator knows no namespace labels
        elif peer.namespace != policy_ns:
            continue
        if selects(p.get("podSelector", {}), peer.labels):
            return True
    return False


def allowed(objects: Objects, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
    """Would the release's NetworkPolicies let src open port/protocol on dst? Both the egress side
    (policies selecting src) and the ingress side (policies selecting dst) must allow it."""
    nps = objects.of_kind("NetworkPolicy")

    def side(pod: Endpoint, kind: str, other: Endpoint) -> bool:
        if pod.labels is None or pod.namespace != NAMESPACE:
            return True  # outside the release: not our policies
        applying = [np for np in nps if kind in _policy_types(np) and selects(np["spec"]["podSelector"], pod.labels)]
        if not applying:
            return True
        key, peer_key = ("egress", "to") if kind == "Egress" else ("ingress", "from")
        for np in applying:
            for rule in np["spec"].get(key) or []:
                if _ports_match(rule.get("ports"), port, protocol) and _peer_match(rule.get(peer_key), other, NAMESPACE):
                    return True
        return False

    return side(src, "Egress", dst) and side(dst, "Ingress", src)


def pod_labels(objects: Objects, component: str) -> dict[str, str]:
    for _, pod in objects.workloads():
        labels = pod["metadata"]["labels"]
        if labels.get("app.kubernetes.io/component") == component:
            return labels
    raise AssertionError(f"no pod of component {component}")


# --------------------------------------------------------------------------------------- misc


def port_of(c: dict[str, Any], name_or_number: Any) -> int:
    if isinstance(name_or_number, int):
        return name_or_number
    for p in c.get("ports") or []:
        if p.get("name") == name_or_number:
            return p["containerPort"]
    raise AssertionError(f"container {c['name']} has no port named {name_or_number}")


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf keys of values.yaml (a map or list value that is empty counts as a leaf)."""
    out: dict[str, Any] = {}
    if isinstance(values, dict) and values:
        for k, v in values.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = values
    return out


def tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


_BINARY_LOCK = threading.Lock()


def gateway_binary() -> Path:
    """The gateway binary for the chart-to-process tests: $MNEMOM_GATEWAY_BIN, else the newest of
    target/{debug,release}/mnemom-gateway, else a fresh `cargo build -p mnemom-gateway`."""
    with _BINARY_LOCK:
        if os.environ.get("MNEMOM_GATEWAY_BIN"):
            return Path(os.environ["MNEMOM_GATEWAY_BIN"])
        candidates = [ROOT / "target" / p / "mnemom-gateway" for p in ("debug", "release")]
        existing = [c for c in candidates if c.is_file()]
        if not existing:
            run(["cargo", "build", "--locked", "-p", "mnemom-gateway"], timeout=3600, cwd=ROOT).check()
            existing = [candidates[0]]
        return max(existing, key=lambda p: p.stat().st_mtime)


def dockerfile_runtime() -> dict[str, Any]:
    """USER, WORKDIR, ENV, ENTRYPOINT, CMD and EXPOSE of the Dockerfile's last stage."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instr, rest.strip()))
    final = stages[-1]
    out: dict[str, Any] = {"env": {}, "workdir": "/", "user": "0", "expose": [], "from": final[0][1]}
    import json
    import shlex

    for instr, rest in final:
        if instr == "ENV":
            for tok in shlex.split(rest):
                k, _, v = tok.partition("=")
                out["env"][k] = v
        elif instr == "WORKDIR":
            out["workdir"] = rest
        elif instr == "USER":
            out["user"] = rest
        elif instr == "EXPOSE":
            out["expose"] += rest.split()
        elif instr in ("ENTRYPOINT", "CMD"):
            out[instr.lower()] = json.loads(rest)
    return out
