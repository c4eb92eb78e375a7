"""The chart against the deployment guide, for Helm 3.12, 3.19 and 4: lint, render, schema
validation (Kubernetes 1.27 and the newest bundled, ServiceMonitor CRD), and one assertion per
promise of the guide."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import chartlib as cl
from chartlib import FULLNAME, GATEWAY, HELM_VERSIONS, OBSERVER, SCENARIOS, Endpoint, allowed

ALL = [(h, s) for h in HELM_VERSIONS for s in SCENARIOS]
ids = [f"helm{h}-{s}" for h, s in ALL]
helms = pytest.mark.parametrize("h", HELM_VERSIONS, ids=[f"helm{h}" for h in HELM_VERSIONS])


def annotations(o: dict[str, Any]) -> dict[str, str]:
    return o["metadata"].get("annotations") or {}


# ===================================================================================== tooling


@pytest.mark.parametrize("h,scenario", ALL, ids=ids)
def test_lint_strict(renders: cl.Renders, h: str, scenario: str) -> None:
    res = renders.lint(h, scenario)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[WARNING]" not in res.stdout and "[ERROR]" not in res.stdout, res.stdout


@pytest.mark.parametrize("kube", ["minimum", "latest"])
@pytest.mark.parametrize("h,scenario", ALL, ids=ids)
def test_kubernetes_validate_strict(renders: cl.Renders, kube_versions: list[str], kube_validate, h: str, scenario: str, kube: str) -> None:
    version = kube_versions[0] if kube == "minimum" else kube_versions[1]
    objects = renders.objects(h, scenario)
    assert objects, "nothing rendered"
    errors = []
    for o in objects:
        if o["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: validated against its own schema (test_crd_schema)
        error = kube_validate(o, version)
        if error:
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {error}")
    assert not errors, f"Kubernetes {version}:\n" + "\n".join(errors)


@pytest.fixture(scope="module")
def kube_validate_cli(renders: cl.Renders, kube_versions: list[str]) -> dict[str, cl.Result]:
    """The kubernetes-validate command line itself, once per Kubernetes version (both at once) over
    every scenario's render. test_kubernetes_validate_strict runs the same validation in-process
    for every Helm version; the renders of the three versions are equal
    (test_same_render_with_every_helm_version), so the command line checks one set."""
    import subprocess

    files = [str(p) for (h, _), p in renders.files.items() if h == "3.19"]
    exe = str(cl.TOOLS / "venv" / "bin" / "kubernetes-validate")
    procs = {v: subprocess.Popen([exe, "--strict", "--quiet", "-k", v, *files], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for v in kube_versions}
    return {v: cl.Result(p.args, p.wait(timeout=600), p.stdout.read(), "") for v, p in procs.items()}


@pytest.mark.parametrize("kube", ["minimum", "latest"])
def test_kubernetes_validate_cli(kube_validate_cli: dict[str, cl.Result], kube_versions: list[str], renders: cl.Renders, kube: str) -> None:
    version = kube_versions[0] if kube == "minimum" else kube_versions[1]
    res = kube_validate_cli[version]
    assert res.returncode == 0, res.stdout
    # The only remark allowed: no built-in schema for the ServiceMonitor CRD (test_crd_schema covers it).
    remarks = [line for line in res.stdout.splitlines() if line.strip() and "kind ServiceMonitor" not in line]
    assert not remarks, "\n".join(remarks)
    assert len(res.cmd) - 5 == len(SCENARIOS), "every scenario rendered and was validated"


@pytest.mark.parametrize("h,scenario", ALL, ids=ids)
def test_crd_schema(renders: cl.Renders, crd_results: dict[str, list[dict]], h: str, scenario: str) -> None:
    objects = renders.objects(h, scenario)
    expected = sorted(o["metadata"]["name"] for o in objects if o["apiVersion"].startswith("monitoring.coreos.com/"))
    results = crd_results[str(renders.files[(h, scenario)])]
    assert sorted(r["name"] for r in results) == expected
    bad = [r for r in results if not r["ok"]]
    assert not bad, bad
    if scenario == "service-monitor":
        assert [r["kind"] for r in results] == ["ServiceMonitor"]


def test_validators_reject_invalid_objects(default_objects: cl.Objects, kube_versions: list[str], workdir: Path) -> None:
    """Negative controls: the validators are not silently passing everything."""
    import kubernetes_validate
    import subprocess

    deployment = copy.deepcopy(default_objects.get("Deployment", GATEWAY))
    deployment["spec"]["template"]["spec"]["containers"][0]["bogusField"] = True
    for version in kube_versions:
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(deployment, version, strict=True)
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "bad"},
        "spec": {"selector": {}, "endpoints": [{"port": "http", "interval": "30 seconds"}]},
    }
    path = workdir / "bad-servicemonitor.yaml"
    path.write_text(yaml.safe_dump(bad))
    p = subprocess.run(["node", str(cl.TOOLS / "node" / "validate_crs.mjs"), str(path)], capture_output=True, text=True)
    assert p.returncode == 1 and '"ok":false' in p.stdout, p.stdout + p.stderr


SECRET_RANDOM = {f"{FULLNAME}-postgresql", f"{FULLNAME}-redis"}


def _normalised(text: str) -> list[dict[str, Any]]:
    out = []
    for o in cl.parse_manifests(text):
        if o["kind"] == "Secret" and o["metadata"]["name"] in SECRET_RANDOM:
            o["data"] = {k: "<generated>" for k in o.get("data", {})}
        out.append(o)
    return out


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_same_render_with_every_helm_version(renders: cl.Renders, scenario: str) -> None:
    first = _normalised(renders.template(HELM_VERSIONS[0], scenario).check().stdout)
    for h in HELM_VERSIONS[1:]:
        assert _normalised(renders.template(h, scenario).check().stdout) == first, f"Helm {h} renders {scenario} differently"


@helms
def test_kube_version_constraint(h: str) -> None:
    assert cl.helm(h, *cl.template_args(), "--kube-version", "1.27.0").returncode == 0
    res = cl.helm(h, *cl.template_args(), "--kube-version", "1.26.9")
    assert res.returncode != 0 and "kubeVersion" in (res.stderr + res.stdout)


BAD_VALUES = {
    "unknown-top-level-key": ["--set", "replicas=3"],
    "unknown-nested-key": ["--set", "hpa.targetCpu=70"],
    "log-level": ["--set", "config.LOG_LEVEL=loud"],
    "gateway-role": ["--set", "config.SMOLTBOT_ROLE=observer"],
    "port-not-a-number": ["--set", "config.PORT=http"],
    "redis-architecture": ["--set", "redis.architecture=replication"],
    "postgres-url-scheme": ["--set", "postgresql.externalUrl=mysql://db:3306/x"],
    "target-cpu-type": ["--set", "hpa.targetCPU=high"],
    "pull-policy": ["--set", "image.pullPolicy=Sometimes"],
    "secret-name": ["--set", "secrets.values.not-an-env-name=x"],
    "plugin-configmap-name": ["--set", "plugins.configMaps.Bad_Name.files.a=b"],
    "existing-and-inline-secrets": ["--set", "secrets.existingSecret=mine", "--set", "secrets.values.ANTHROPIC_API_KEY=x"],
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
@helms
def test_bad_values_are_rejected(h: str, case: str) -> None:
    res = cl.helm(h, *cl.template_args(), *BAD_VALUES[case])
    assert res.returncode != 0, f"{case} was accepted"


DRAFT7_KEYWORDS = {
    "$schema", "$id", "$ref", "$comment", "title", "description", "default", "readOnly", "writeOnly", "examples",
    "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
    "additionalItems", "items", "maxItems", "minItems", "uniqueItems", "contains", "maxProperties", "minProperties",
    "required", "additionalProperties", "definitions", "properties", "patternProperties", "dependencies",
    "propertyNames", "const", "enum", "type", "format", "contentMediaType", "contentEncoding", "if", "then", "else",
    "allOf", "anyOf", "oneOf", "not",
}


def test_values_schema_is_draft_07_and_accepts_the_defaults() -> None:
    import jsonschema

    schema = json.loads((cl.CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)

    def keywords(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                assert k in DRAFT7_KEYWORDS, f"{path}: `{k}` is not a draft-07 keyword"
                if k in ("properties", "definitions", "patternProperties"):
                    for name, sub in v.items():
                        keywords(sub, f"{path}.{k}.{name}")
                elif k in ("enum", "const", "required", "examples", "default", "type"):
                    continue
                else:
                    keywords(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                keywords(sub, f"{path}[{i}]")

    keywords(schema, "#")
    values = yaml.safe_load((cl.CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)


# ===================================================================================== the guide's values


GUIDE_DEFAULTS: dict[str, Any] = {
    # "Image", "Replicas"
    "image.repository": "ghcr.io/mnemom/gateway",
    "image.pullPolicy": "IfNotPresent",
    "image.tag": "",
    "replicaCount": 2,
    "observer.replicas": 1,
    # "Secrets"
    "secrets.existingSecret": "",
    **{f"secrets.values.{k}": "" for k in ("SUPABASE_URL", "SUPABASE_KEY", "ANTHROPIC_API_KEY", "MNEMOM_LICENSE_JWT", "DATABASE_URL", "REDIS_URL")},
    # "Non-sensitive Configuration"
    "config.LOG_LEVEL": "info",
    "config.SMOLTBOT_ROLE": "gateway",
    "config.PORT": "8787",
    # "Redis", "PostgreSQL" (internal by default)
    "redis.enabled": True,
    "redis.architecture": "standalone",
    "redis.auth.enabled": False,
    "redis.externalUrl": "",
    "postgresql.enabled": True,
    "postgresql.auth.database": "mnemom",
    "postgresql.auth.username": "mnemom",
    "postgresql.externalUrl": "",
    # "TLS / Ingress" (off by default)
    "ingress.enabled": False,
    "ingress.className": "",
    "ingress.annotations": {},
    "ingress.tls": [],
    # "Scaling"
    "hpa.enabled": False,
    "hpa.minReplicas": 2,
    "hpa.maxReplicas": 10,
    "hpa.targetCPU": 70,
    "hpa.targetMemory": "",
    "pdb.enabled": True,
    "pdb.minAvailable": 1,
    # "Monitoring" (off by default)
    "metrics.serviceMonitor.enabled": False,
    "metrics.serviceMonitor.labels": {},
    "metrics.serviceMonitor.interval": "30s",
    "metrics.serviceMonitor.path": "/metrics",
    "metrics.serviceMonitor.port": "http",
    # "Security"
    "networkPolicy.enabled": True,
    "serviceAccount.create": True,
    "serviceAccount.annotations": {},
    # "Advanced Configuration"
    "topologySpreadConstraints": [],
    "nodeSelector": {},
    "tolerations": [],
    "affinity": {},
}
GUIDE_POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 65534, "fsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"}}
GUIDE_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
GUIDE_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
GUIDE_OBSERVER_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}


def test_values_yaml_has_the_guide_defaults() -> None:
    values = yaml.safe_load((cl.CHART / "values.yaml").read_text())
    flat = cl.flatten(values)
    for key, want in GUIDE_DEFAULTS.items():
        assert key in flat, f"{key} missing from values.yaml"
        assert flat[key] == want, f"{key}: {flat[key]!r} != guide {want!r}"
    assert values["podSecurityContext"] == GUIDE_POD_SECURITY
    assert values["containerSecurityContext"] == GUIDE_CONTAINER_SECURITY
    assert values["resources"] == GUIDE_RESOURCES
    assert values["observer"]["resources"] == GUIDE_OBSERVER_RESOURCES
    assert values["ingress"]["hosts"] == [{"host": "gateway.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}]


def test_readme_values_table_covers_every_key() -> None:
    readme = (cl.CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.M))
    values = yaml.safe_load((cl.CHART / "values.yaml").read_text())
    keys = list(cl.flatten(values))

    def covered(key: str) -> bool:  # the key itself, or a documented parent (`resources`, `probes.startup`)
        parts = key.split(".")
        return any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1))

    missing = [k for k in keys if not covered(k)]
    assert not missing, f"README.md values table lacks {missing}"
    stale = [d for d in documented if not any(k == d or k.startswith(d + ".") for k in keys)]
    assert not stale, f"README.md documents keys values.yaml does not have: {stale}"


def test_chart_metadata_matches_the_workspace() -> None:
    chart = yaml.safe_load((cl.CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "mnemom-gateway"
    cargo = (cl.ROOT / "Cargo.toml").read_text()
    version = re.search(r'\[workspace\.package\][^\[]*?\nversion = "([^"]+)"', cargo).group(1)
    assert chart["appVersion"] == version, "appVersion (the default image tag) must follow the gateway version"


# ===================================================================================== names, images


@helms
def test_names_match_the_guide_commands(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "defaults")
    # `kubectl rollout status deployment/smoltbot-mnemom-gateway-gateway` and `…-observer`
    assert objects.names("Deployment") == [GATEWAY, OBSERVER]
    assert objects.names("Service") == sorted([FULLNAME, OBSERVER, f"{FULLNAME}-postgresql", f"{FULLNAME}-redis"])
    assert objects.names("StatefulSet") == [f"{FULLNAME}-postgresql", f"{FULLNAME}-redis"]
    for o in objects:
        assert len(o["metadata"]["name"]) <= 63
        assert o["metadata"]["labels"]["app.kubernetes.io/instance"] == cl.RELEASE


@helms
def test_image_defaults_to_app_version(renders: cl.Renders, h: str) -> None:
    app_version = yaml.safe_load((cl.CHART / "Chart.yaml").read_text())["appVersion"]
    objects = renders.objects(h, "defaults")
    for name in (GATEWAY, OBSERVER):
        c = objects.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert c["image"] == f"ghcr.io/mnemom/gateway:{app_version}"
        assert c["imagePullPolicy"] == "IfNotPresent"
    job = objects.get("Job", f"{FULLNAME}-migrate")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/mnemom/gateway:{app_version}"
    tagged = cl.render(h, "--set", "image.tag=1.2.3")
    assert tagged.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/mnemom/gateway:1.2.3"
    everything = renders.objects(h, "everything-on")
    pod = everything.get("Deployment", GATEWAY)["spec"]["template"]
    assert pod["spec"]["containers"][0]["image"].startswith("ghcr.io/mnemom/gateway@sha256:")
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


@helms
def test_commands_run_the_binary(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "defaults")
    for name in (GATEWAY, OBSERVER):
        c = objects.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert c["command"] == [cl.BINARY_IN_IMAGE] and c["args"] == ["serve"]
    job = objects.get("Job", f"{FULLNAME}-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == [cl.BINARY_IN_IMAGE] and job["args"] == ["migrate"]
    assert cl.dockerfile_runtime()["entrypoint"] == [cl.BINARY_IN_IMAGE]


# ===================================================================================== replicas, HPA, PDB


@helms
def test_replicas(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "defaults")
    assert objects.get("Deployment", GATEWAY)["spec"]["replicas"] == 2
    assert objects.get("Deployment", OBSERVER)["spec"]["replicas"] == 1
    assert renders.objects(h, "observer-replicas-2").get("Deployment", OBSERVER)["spec"]["replicas"] == 2
    assert cl.render(h, "--set", "replicaCount=5").get("Deployment", GATEWAY)["spec"]["replicas"] == 5
    assert "Deployment" not in [o["kind"] for o in cl.render(h, "--set", "observer.enabled=false") if o["metadata"]["name"] == OBSERVER]


@helms
def test_hpa_owns_the_replica_count(renders: cl.Renders, h: str) -> None:
    assert renders.objects(h, "defaults").of_kind("HorizontalPodAutoscaler") == []
    objects = renders.objects(h, "hpa")
    assert "replicas" not in objects.get("Deployment", GATEWAY)["spec"], "replicaCount must be ignored when the HPA is on"
    hpa = objects.get("HorizontalPodAutoscaler", GATEWAY)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": GATEWAY}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]
    with_memory = cl.render(h, "-f", str(cl.SCENARIOS_DIR / "hpa.yaml"), "--set", "hpa.targetMemory=80")
    metrics = with_memory.get("HorizontalPodAutoscaler", GATEWAY)["spec"]["metrics"]
    assert [m["resource"]["name"] for m in metrics] == ["cpu", "memory"]
    assert metrics[1]["resource"]["target"]["averageUtilization"] == 80


@helms
def test_pdb_is_on_by_default(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "defaults")
    pdb = objects.get("PodDisruptionBudget", GATEWAY)
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    gateway_labels = objects.get("Deployment", GATEWAY)["spec"]["template"]["metadata"]["labels"]
    observer_labels = objects.get("Deployment", OBSERVER)["spec"]["template"]["metadata"]["labels"]
    assert cl.selects(pdb["spec"]["selector"], gateway_labels)
    assert not cl.selects(pdb["spec"]["selector"], observer_labels)
    assert cl.render(h, "--set", "pdb.enabled=false").of_kind("PodDisruptionBudget") == []


# ===================================================================================== secrets and config


@helms
def test_secrets_empty_values_are_omitted(renders: cl.Renders, h: str) -> None:
    defaults = renders.objects(h, "defaults")
    assert defaults.find("Secret", FULLNAME) is None, "no chart Secret when every value is empty"
    for name in (GATEWAY, OBSERVER):
        env_from = defaults.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert env_from == [{"configMapRef": {"name": FULLNAME}}]
    partial = cl.render(h, "--set", "secrets.values.ANTHROPIC_API_KEY=sk-ant-x", "--set", "secrets.values.OPENAI_API_KEY=sk-o")
    assert partial.secret_data(FULLNAME) == {"ANTHROPIC_API_KEY": "sk-ant-x", "OPENAI_API_KEY": "sk-o"}


@helms
def test_quick_install_secrets(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "quick-install")
    assert objects.secret_data(FULLNAME) == {
        "SUPABASE_URL": "https://your-project.supabase.co",
        "SUPABASE_KEY": "your-service-role-key",
        "ANTHROPIC_API_KEY": "sk-ant-...",
        "MNEMOM_LICENSE_JWT": "eyJ...",
        "DATABASE_URL": "postgres://...",
        "REDIS_URL": "redis://...",
    }
    for name in (GATEWAY, OBSERVER):
        c = objects.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert {"secretRef": {"name": FULLNAME}} in c["envFrom"]
        # The inline URLs win: nothing in `env` overrides them, and no internal instance is deployed.
        assert "DATABASE_URL" not in cl.env_map(c) and "REDIS_URL" not in cl.env_map(c)
    assert objects.of_kind("StatefulSet") == []


@helms
def test_existing_secret(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "existing-secret")
    assert objects.find("Secret", FULLNAME) is None
    assert objects.find("Secret", "my-smoltbot-secrets") is None, "the user's Secret is not the chart's"
    for name in (GATEWAY, OBSERVER):
        env_from = objects.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert env_from == [{"configMapRef": {"name": FULLNAME}}, {"secretRef": {"name": "my-smoltbot-secrets"}}]
    job = objects.get("Job", f"{FULLNAME}-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "my-smoltbot-secrets"}} in job["envFrom"]


@helms
def test_config_map_and_roles(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "config")
    assert objects.get("ConfigMap", FULLNAME)["data"] == {"LOG_LEVEL": "info", "SMOLTBOT_ROLE": "gateway", "PORT": "8787"}
    gw = cl.env_map(objects.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0])
    ob = cl.env_map(objects.get("Deployment", OBSERVER)["spec"]["template"]["spec"]["containers"][0])
    assert gw["SMOLTBOT_ROLE"]["value"] == "gateway"
    assert ob["SMOLTBOT_ROLE"]["value"] == "observer", "the observer Deployment always runs the observer role"
    extra = cl.render(h, "--set", "config.AIP_ENABLED=false", "--set", "config.LOG_LEVEL=debug")
    assert extra.get("ConfigMap", FULLNAME)["data"]["AIP_ENABLED"] == "false"
    assert extra.get("ConfigMap", FULLNAME)["data"]["LOG_LEVEL"] == "debug"


@helms
def test_config_and_secret_changes_roll_the_pods(h: str) -> None:
    def checksums(objects: cl.Objects) -> dict[str, str]:
        return {k: v for k, v in annotations(objects.get("Deployment", GATEWAY)["spec"]["template"]).items() if k.startswith("checksum/")}

    base = checksums(cl.render(h))
    assert set(base) == {"checksum/config", "checksum/secret", "checksum/datastores"}
    assert checksums(cl.render(h, "--set", "config.LOG_LEVEL=debug"))["checksum/config"] != base["checksum/config"]
    assert checksums(cl.render(h, "--set", "secrets.values.ANTHROPIC_API_KEY=x"))["checksum/secret"] != base["checksum/secret"]
    ext = checksums(cl.render(h, "--set", "redis.externalUrl=redis://a:6379"))
    assert ext["checksum/datastores"] != base["checksum/datastores"]
    assert checksums(cl.render(h)) == base, "renders must be deterministic (generated passwords are not checksummed)"


# ===================================================================================== datastores


def _env(objects: cl.Objects, deployment: str = GATEWAY) -> dict[str, dict[str, Any]]:
    return cl.env_map(objects.get("Deployment", deployment)["spec"]["template"]["spec"]["containers"][0])


@helms
def test_internal_datastores(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "defaults")
    env = _env(objects)
    assert env["REDIS_URL"]["value"] == f"redis://{FULLNAME}-redis:6379"
    assert env["DATABASE_URL"]["value"] == f"postgres://mnemom:$(MNEMOM_POSTGRES_PASSWORD)@{FULLNAME}-postgresql:5432/mnemom?sslmode=disable"
    names = [e["name"] for e in objects.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.index("MNEMOM_POSTGRES_PASSWORD") < names.index("DATABASE_URL"), "$(VAR) only expands earlier variables"
    assert env["MNEMOM_POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULLNAME}-postgresql", "key": "password"}
    assert len(objects.secret_data(f"{FULLNAME}-postgresql")["password"]) >= 24
    for store, port, size in (("redis", 6379, "1Gi"), ("postgresql", 5432, "8Gi")):
        sts = objects.get("StatefulSet", f"{FULLNAME}-{store}")
        assert sts["spec"]["serviceName"] == f"{FULLNAME}-{store}"
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == size
        svc = objects.get("Service", f"{FULLNAME}-{store}")
        assert svc["spec"]["ports"][0]["port"] == port
        assert cl.selects({"matchLabels": svc["spec"]["selector"]}, sts["spec"]["template"]["metadata"]["labels"])
    pg = objects.get("StatefulSet", f"{FULLNAME}-postgresql")["spec"]["template"]["spec"]["containers"][0]
    assert cl.env_map(pg)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{FULLNAME}-postgresql"
    assert annotations(objects.get("Secret", f"{FULLNAME}-postgresql"))["helm.sh/resource-policy"] == "keep"
    given = renders.objects(h, "internal-datastores")
    assert given.secret_data(f"{FULLNAME}-postgresql") == {"password": "a-strong-password"}


@helms
def test_internal_redis_auth(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "redis-auth")
    env = _env(objects)
    assert env["REDIS_URL"]["value"] == f"redis://:$(MNEMOM_REDIS_PASSWORD)@{FULLNAME}-redis:6379"
    assert env["MNEMOM_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULLNAME}-redis", "key": "password"}
    redis = objects.get("StatefulSet", f"{FULLNAME}-redis")["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    assert cl.env_map(redis)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{FULLNAME}-redis"


@helms
def test_external_datastores(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "external-datastores")
    assert objects.of_kind("StatefulSet") == []
    assert objects.find("Service", f"{FULLNAME}-redis") is None and objects.find("Service", f"{FULLNAME}-postgresql") is None
    data = objects.secret_data(f"{FULLNAME}-datastores")
    assert data == {
        "REDIS_URL": "redis://my-redis-cluster.example.com:6379",
        "DATABASE_URL": "postgres://user:pass@rds.example.com:5432/mnemom?sslmode=require",
    }
    for name in (GATEWAY, OBSERVER):
        env = _env(objects, name)
        for key in ("REDIS_URL", "DATABASE_URL"):
            assert env[key]["valueFrom"]["secretKeyRef"] == {"name": f"{FULLNAME}-datastores", "key": key}
    job = objects.get("Job", f"{FULLNAME}-migrate")
    assert annotations(job)["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert objects.secret_data(f"{FULLNAME}-migrate")["DATABASE_URL"] == data["DATABASE_URL"]


@helms
def test_no_database_skips_the_migration(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "no-database")
    assert objects.of_kind("Job") == []
    assert [o["kind"] for o in objects.hooks()] == ["Pod"], "no hook-owned Secret/ServiceAccount either; only the test pod"
    env = _env(objects)
    assert "DATABASE_URL" not in env and "REDIS_URL" not in env
    assert cl.render(h, "--set", "migration.enabled=false").of_kind("Job") == []


# ===================================================================================== migration hook


def _phases(o: dict[str, Any]) -> set[str]:
    return set(annotations(o)["helm.sh/hook"].split(","))


def _weight(o: dict[str, Any]) -> int:
    return int(annotations(o).get("helm.sh/hook-weight", "0"))


MIGRATION_SCENARIOS = ["defaults", "quick-install", "inline-secrets", "external-datastores", "existing-secret", "internal-datastores", "everything-on"]


@pytest.mark.parametrize("scenario", MIGRATION_SCENARIOS)
@helms
def test_migration_hook(renders: cl.Renders, h: str, scenario: str) -> None:
    objects = renders.objects(h, scenario)
    job = objects.get("Job", f"{FULLNAME}-migrate")
    a = annotations(job)
    internal = cl.env_map(job["spec"]["template"]["spec"]["containers"][0]).get("DATABASE_URL", {}).get("value", "").find(f"@{FULLNAME}-postgresql:") > 0
    # The internal PostgreSQL is a release resource: it does not exist during pre-install, and a
    # post-install hook would deadlock `helm install --wait` (the pods refuse to start on an
    # un-migrated schema; Helm runs post-install hooks only once they are ready). So the Job runs
    # pre-upgrade only, and the pods migrate the internal database on a first install
    # (test_install_order_migrates_before_serving).
    assert a["helm.sh/hook"] == ("pre-upgrade" if internal else "pre-install,pre-upgrade")
    assert "before-hook-creation" in a["helm.sh/hook-delete-policy"]
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["activeDeadlineSeconds"] == 300
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    # Everything the Job's pod refers to exists when the hook runs: a hook object of the same
    # phases with a lower weight, a release object when the phases come after install, or a
    # Secret the user creates beforehand (not rendered by the chart).
    user_provided = {yaml.safe_load((cl.SCENARIOS_DIR / "secrets-existing.yaml").read_text())["secrets"]["existingSecret"]}
    refs: list[tuple[str, str]] = [("ServiceAccount", pod["serviceAccountName"])]
    for c in cl.containers({"spec": pod}):
        for ef in c.get("envFrom") or []:
            if "secretRef" in ef:
                refs.append(("Secret", ef["secretRef"]["name"]))
            if "configMapRef" in ef:
                refs.append(("ConfigMap", ef["configMapRef"]["name"]))
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if "secretKeyRef" in vf:
                refs.append(("Secret", vf["secretKeyRef"]["name"]))
            if "configMapKeyRef" in vf:
                refs.append(("ConfigMap", vf["configMapKeyRef"]["name"]))
    for v in pod.get("volumes") or []:
        if "secret" in v:
            refs.append(("Secret", v["secret"]["secretName"]))
        if "configMap" in v:
            refs.append(("ConfigMap", v["configMap"]["name"]))
    for kind, name in refs:
        if name in user_provided or (kind == "ServiceAccount" and name == "default"):
            assert objects.find(kind, name) is None
            continue
        dep = objects.find(kind, name)
        assert dep is not None, f"the migration Job needs {kind}/{name}, which the chart does not render"
        if "helm.sh/hook" in annotations(dep):
            assert _phases(job) <= _phases(dep), f"{kind}/{name} is not created in every phase the Job runs"
            assert _weight(dep) < _weight(job), f"{kind}/{name} must be created before the Job (lower hook weight)"
        else:
            assert "pre-install" not in _phases(job), f"{kind}/{name} does not exist yet at pre-install"
    # The Job knows where its database is.
    env = cl.env_map(pod["containers"][0])
    hook_secret = objects.secret_data(f"{FULLNAME}-migrate")
    assert "DATABASE_URL" in env or "DATABASE_URL" in hook_secret or any(n in user_provided for _, n in refs)
    # Its NetworkPolicy exists when it runs too (a release policy would not at pre-install): a hook
    # of the same phases and a lower weight, which isolates the Job's pods.
    if objects.of_kind("NetworkPolicy"):
        migrate_labels = job["spec"]["template"]["metadata"]["labels"]
        policies = [np for np in objects.of_kind("NetworkPolicy") if cl.selects(np["spec"]["podSelector"], migrate_labels)]
        assert [np["metadata"]["name"] for np in policies] == [f"{FULLNAME}-migrate"]
        assert _phases(job) <= _phases(policies[0]) and _weight(policies[0]) < _weight(job)
        assert "hook-succeeded" in annotations(policies[0])["helm.sh/hook-delete-policy"]


@helms
def test_migration_waits_for_the_internal_database(renders: cl.Renders, h: str) -> None:
    pod = renders.objects(h, "defaults").get("Job", f"{FULLNAME}-migrate")["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["name"] == "wait-for-postgresql" and "pg_isready" in " ".join(init["command"])
    assert cl.env_map(init)["PGHOST"]["value"] == f"{FULLNAME}-postgresql"
    assert "initContainers" not in renders.objects(h, "external-datastores").get("Job", f"{FULLNAME}-migrate")["spec"]["template"]["spec"]


def _phases_of_job(objects: cl.Objects) -> set[str]:
    job = objects.find("Job", f"{FULLNAME}-migrate")
    return _phases(job) if job else set()


def _uses_postgres(objects: cl.Objects, container: dict[str, Any]) -> bool:
    """Does the container's DATABASE_URL (env, or the chart Secret through envFrom) name PostgreSQL?"""
    env = cl.env_map(container)
    if "DATABASE_URL" in env:
        e = env["DATABASE_URL"]
        if "value" in e:
            return e["value"].startswith(("postgres://", "postgresql://"))
        ref = e["valueFrom"]["secretKeyRef"]
        return objects.secret_data(ref["name"])[ref["key"]].startswith(("postgres://", "postgresql://"))
    for ef in container.get("envFrom") or []:
        if "secretRef" in ef and objects.find("Secret", ef["secretRef"]["name"]):
            if objects.secret_data(ef["secretRef"]["name"]).get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
                return True
    return False


@pytest.mark.parametrize("scenario", MIGRATION_SCENARIOS + ["no-database", "redis-auth", "plugins"])
@helms
def test_install_order_migrates_before_serving(renders: cl.Renders, h: str, scenario: str) -> None:
    """`helm install --wait`: pre-install hooks, then the release's resources, then Helm waits for the
    pods to be ready, and only then runs post-install hooks. `serve` refuses to start on a
    PostgreSQL schema that is behind, so every pod serving on PostgreSQL must find it migrated by
    something that runs before it: a pre-install hook Job or an init container of its own — never a
    post-install hook (that would deadlock)."""
    objects = renders.objects(h, scenario)
    assert not [o for o in objects.hooks() if "post-install" in _phases(o)], "no post-install hooks: they run after --wait"
    pre_install = "pre-install" in _phases_of_job(objects)
    for name in (GATEWAY, OBSERVER):
        d = objects.find("Deployment", name)
        if d is None:
            continue
        pod = d["spec"]["template"]["spec"]
        main = pod["containers"][0]
        inits = [c["name"] for c in pod.get("initContainers") or []]
        if not _uses_postgres(objects, main):
            assert inits == [], f"{name}: no PostgreSQL to wait for"
            continue
        internal = f"@{FULLNAME}-postgresql:" in cl.env_map(main).get("DATABASE_URL", {}).get("value", "")
        if internal:
            # The database is created by this very install: the pod waits for it and migrates it.
            assert not pre_install
            assert inits == ["wait-for-postgresql", "migrate"], f"{name}: {inits}"
        else:
            # A database that exists before the release: migrated by the pre-install hook.
            assert pre_install and inits == [], f"{name}: {inits}"


@helms
def test_pods_migrate_the_internal_database(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "defaults")
    job = objects.get("Job", f"{FULLNAME}-migrate")["spec"]["template"]["spec"]["containers"][0]
    for name in (GATEWAY, OBSERVER):
        pod = objects.get("Deployment", name)["spec"]["template"]["spec"]
        main = pod["containers"][0]
        wait, migrate = pod["initContainers"]
        assert wait["name"] == "wait-for-postgresql" and "pg_isready" in " ".join(wait["command"])
        assert cl.env_map(wait)["PGHOST"]["value"] == f"{FULLNAME}-postgresql"
        # The same command as the Job, the pod's own configuration and the main container's DATABASE_URL.
        assert migrate["name"] == "migrate"
        assert migrate["command"] == job["command"] == [cl.BINARY_IN_IMAGE] and migrate["args"] == job["args"] == ["migrate"]
        assert migrate["image"] == job["image"] and migrate["envFrom"] == main["envFrom"]
        env, main_env = cl.env_map(migrate), cl.env_map(main)
        for key in ("MNEMOM_POSTGRES_PASSWORD", "DATABASE_URL", "MNEMOM_DATA_DIR", "TMPDIR"):
            assert env[key] == main_env[key], key
        names = [e["name"] for e in migrate["env"]]
        assert names.index("MNEMOM_POSTGRES_PASSWORD") < names.index("DATABASE_URL")
        assert migrate["securityContext"] == main["securityContext"] == wait["securityContext"]
        assert migrate["resources"] == job["resources"]
        assert {m["mountPath"] for m in migrate["volumeMounts"]} == {"/tmp", "/var/lib/mnemom"}
        assert all("subPath" not in m for m in migrate["volumeMounts"])
    # Not for a database outside the release (the pre-install hook migrates it), nor without one,
    # nor when the chart is told not to migrate.
    for other in (renders.objects(h, "external-datastores"), renders.objects(h, "quick-install"), renders.objects(h, "no-database"),
                  cl.render(h, "--set", "migration.enabled=false")):
        for d in other.of_kind("Deployment"):
            assert "initContainers" not in d["spec"]["template"]["spec"], d["metadata"]["name"]
    custom = cl.render(h, "--set", "migration.command[0]=/usr/local/bin/mnemom-gateway", "--set", "migration.args={migrate,--verbose}",
                       "--set", "migration.image.tag=9.9.9")
    migrate = custom.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["initContainers"][1]
    assert migrate["args"] == ["migrate", "--verbose"] and migrate["image"] == "ghcr.io/mnemom/gateway:9.9.9"


# ===================================================================================== probes, shutdown, storage


@pytest.mark.parametrize("scenario", ["defaults", "port-9090", "everything-on"])
@helms
def test_probes(renders: cl.Renders, h: str, scenario: str) -> None:
    objects = renders.objects(h, scenario)
    for d in objects.of_kind("Deployment"):
        c = d["spec"]["template"]["spec"]["containers"][0]
        paths = {kind: c[f"{kind}Probe"]["httpGet"]["path"] for kind in ("startup", "liveness", "readiness")}
        assert paths == {"startup": "/health/startup", "liveness": "/health/live", "readiness": "/health/ready"}
        for kind in ("startup", "liveness", "readiness"):
            assert cl.port_of(c, c[f"{kind}Probe"]["httpGet"]["port"]) == int(_env(objects, d["metadata"]["name"])["PORT"]["value"])
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "start-up may take a minute (plugin compilation)"


@helms
def test_probe_values(h: str) -> None:
    objects = cl.render(h, "--set", "probes.readiness.periodSeconds=7", "--set", "probes.liveness.enabled=false")
    c = objects.get("Deployment", OBSERVER)["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["periodSeconds"] == 7 and "livenessProbe" not in c


@helms
def test_shutdown_drains_streams(renders: cl.Renders, h: str) -> None:
    for scenario in ("defaults", "everything-on"):
        objects = renders.objects(h, scenario)
        for d in objects.of_kind("Deployment"):
            pod = d["spec"]["template"]["spec"]
            c = pod["containers"][0]
            sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
            assert c["lifecycle"]["preStop"]["exec"]["command"][0] == "/bin/sleep"
            grace = int(cl.env_map(c)["MNEMOM_SHUTDOWN_GRACE_SECONDS"]["value"])
            assert grace == 25
            assert pod["terminationGracePeriodSeconds"] > sleep + grace, "SIGTERM arrives after preStop; streams need the drain time"
    longer = cl.render(h, "--set", "shutdown.drainSeconds=120").get("Deployment", GATEWAY)["spec"]["template"]["spec"]
    assert longer["terminationGracePeriodSeconds"] == 135


@pytest.mark.parametrize("scenario", ["defaults", "plugins", "everything-on"])
@helms
def test_read_only_root_has_writable_emptydirs(renders: cl.Renders, h: str, scenario: str) -> None:
    objects = renders.objects(h, scenario)
    for obj, pod in objects.workloads():
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for claim in obj["spec"].get("volumeClaimTemplates") or []:
            volumes[claim["metadata"]["name"]] = {"persistentVolumeClaim": claim["spec"]}
        for c in cl.containers(pod, init=False):
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, f"{obj['metadata']['name']}/{c['name']}"
            if component == "test":
                continue  # curl writes nothing
            mounts = {m["mountPath"]: volumes[m["name"]] for m in c.get("volumeMounts") or []}
            assert "emptyDir" in mounts.get("/tmp", {}), f"{obj['metadata']['name']}/{c['name']}: no writable /tmp"
            env = cl.env_map(c)
            for var in ("MNEMOM_DATA_DIR", "MNEMOM_PLUGIN_CACHE_DIR", "TMPDIR"):
                if var in env:
                    assert "emptyDir" in mounts.get(env[var]["value"], {}), f"{var}={env[var]['value']} is not an emptyDir mount"
            if component in ("gateway", "observer"):
                assert {"MNEMOM_DATA_DIR", "MNEMOM_PLUGIN_CACHE_DIR"} <= set(env)


# ===================================================================================== security


RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


@pytest.mark.parametrize("scenario", ["defaults", "quick-install", "plugins", "redis-auth", "everything-on", "pod-security"])
@helms
def test_every_pod_meets_the_restricted_pod_security_standard(renders: cl.Renders, h: str, scenario: str) -> None:
    objects = renders.objects(h, scenario)
    pods = objects.workloads()
    assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for _, p in pods} >= {"gateway", "test"}
    for obj, pod in pods:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        spec = pod["spec"]
        psc = spec.get("securityContext") or {}
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host), where
        assert spec.get("automountServiceAccountToken") is False, f"{where}: token mounted"
        for v in spec.get("volumes") or []:
            assert set(v) - {"name"} <= RESTRICTED_VOLUMES, f"{where}: volume {v}"
        for c in cl.containers(pod):
            sc = c.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, f"{where}/{c['name']}"
            assert not sc.get("privileged"), where
            assert "ALL" in (sc.get("capabilities") or {}).get("drop", []), f"{where}/{c['name']}: capabilities"
            assert set((sc.get("capabilities") or {}).get("add", [])) <= {"NET_BIND_SERVICE"}, where
            assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{where}/{c['name']}: runAsNonRoot"
            uid = sc.get("runAsUser", psc.get("runAsUser"))
            assert isinstance(uid, int) and uid != 0, f"{where}/{c['name']}: needs a numeric non-root uid"
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            assert seccomp in ("RuntimeDefault", "Localhost"), f"{where}/{c['name']}: seccomp"
            for p in c.get("ports") or []:
                assert "hostPort" not in p, where


@helms
def test_gateway_security_contexts_are_the_guides(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "defaults")
    for name in (GATEWAY, OBSERVER):
        pod = objects.get("Deployment", name)["spec"]["template"]["spec"]
        assert pod["securityContext"] == GUIDE_POD_SECURITY
        assert pod["containers"][0]["securityContext"] == GUIDE_CONTAINER_SECURITY
    uid = int(cl.dockerfile_runtime()["user"].split(":")[0])
    assert uid == GUIDE_POD_SECURITY["runAsUser"] == 65534


@helms
def test_service_account(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "service-account")
    sa = objects.get("ServiceAccount", FULLNAME)
    assert sa["automountServiceAccountToken"] is False
    assert annotations(sa) == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789:role/smoltbot-gateway"}
    for name in (GATEWAY, OBSERVER):
        assert objects.get("Deployment", name)["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME
    hook_sa = objects.get("ServiceAccount", f"{FULLNAME}-migrate")
    assert annotations(hook_sa)["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789:role/smoltbot-gateway"
    none = cl.render(h, "--set", "serviceAccount.create=false")
    assert none.of_kind("ServiceAccount") == []
    assert none.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["serviceAccountName"] == "default"
    assert none.get("Job", f"{FULLNAME}-migrate")["spec"]["template"]["spec"]["serviceAccountName"] == "default"


# ===================================================================================== network policy


def _ep(objects: cl.Objects, component: str) -> Endpoint:
    return Endpoint(labels=cl.pod_labels(objects, component))


@pytest.mark.parametrize("scenario", ["defaults", "network-policy", "port-9090", "quick-install", "external-datastores", "everything-on"])
@helms
def test_network_policy(renders: cl.Renders, h: str, scenario: str) -> None:
    objects = renders.objects(h, scenario)
    port = int(objects.get("ConfigMap", FULLNAME)["data"]["PORT"])
    gateway = _ep(objects, "gateway")
    anywhere = Endpoint(labels={"app": "ingress-nginx"}, namespace="ingress-nginx")
    internet = Endpoint(ip="203.0.113.10")
    kube_dns = Endpoint(labels={"k8s-app": "kube-dns"}, namespace="kube-system", ip="10.96.0.10")
    ingress_from = (yaml.safe_load((cl.SCENARIOS_DIR / "everything.yaml").read_text())["networkPolicy"]["ingressFrom"]
                    if scenario == "everything-on" else [])
    # Ingress: the gateway port only (from any source unless networkPolicy.ingressFrom says otherwise).
    if not ingress_from:
        assert allowed(objects, anywhere, gateway, port)
    assert not allowed(objects, anywhere, gateway, port + 1)
    # Egress: DNS, HTTPS, Redis and PostgreSQL; nothing else.
    for proto in ("UDP", "TCP"):
        assert allowed(objects, gateway, kube_dns, 53, proto)
    assert allowed(objects, gateway, internet, 443)
    assert not allowed(objects, gateway, internet, 80)
    redis_internal = objects.find("StatefulSet", f"{FULLNAME}-redis") is not None
    pg_internal = objects.find("StatefulSet", f"{FULLNAME}-postgresql") is not None
    if redis_internal:
        assert allowed(objects, gateway, _ep(objects, "redis"), 6379)
        assert not allowed(objects, gateway, internet, 6379), "internal Redis: egress scoped to its pods"
        assert not allowed(objects, anywhere, _ep(objects, "redis"), 6379)
    else:
        assert allowed(objects, gateway, Endpoint(ip="10.1.2.3"), 6379)
    if pg_internal:
        # The gateway and observer pods (whose init containers migrate it) and the pre-upgrade Job.
        assert allowed(objects, gateway, _ep(objects, "postgresql"), 5432)
        if objects.find("Deployment", OBSERVER):
            assert allowed(objects, _ep(objects, "observer"), _ep(objects, "postgresql"), 5432)
        assert allowed(objects, _ep(objects, "migrate"), _ep(objects, "postgresql"), 5432)
        assert not allowed(objects, _ep(objects, "migrate"), internet, 443), "the Job's pods are isolated"
        assert not allowed(objects, gateway, internet, 5432)
        assert not allowed(objects, anywhere, _ep(objects, "postgresql"), 5432)
    else:
        assert allowed(objects, gateway, Endpoint(ip="10.1.2.3"), 5432)
        if objects.find("Job", f"{FULLNAME}-migrate"):
            assert allowed(objects, _ep(objects, "migrate"), Endpoint(ip="10.1.2.3"), 5432)
            assert not allowed(objects, _ep(objects, "migrate"), internet, 443), "the Job's pods are isolated"
    if objects.find("Job", f"{FULLNAME}-migrate"):
        assert allowed(objects, _ep(objects, "migrate"), kube_dns, 53, "UDP")
    # `helm test` passes with the default NetworkPolicy: the test pod reaches DNS and the gateway port.
    test_pod = _ep(objects, "test")
    assert allowed(objects, test_pod, kube_dns, 53, "UDP")
    if not ingress_from:
        assert allowed(objects, test_pod, gateway, port)
    assert not allowed(objects, test_pod, internet, 443)


@helms
def test_network_policy_extras(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "everything-on")
    gateway = _ep(objects, "gateway")
    assert allowed(objects, gateway, Endpoint(ip="10.20.30.40"), 8000), "networkPolicy.extraEgress"
    np = objects.get("NetworkPolicy", FULLNAME)
    assert np["spec"]["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    # networkPolicy.ingressFrom restricts the sources: a pod of the release's namespace is refused.
    assert not allowed(objects, Endpoint(labels={"app": "x"}, namespace=cl.NAMESPACE), gateway, 9191)
    # An external datastore on a non-default port is allowed through (the port comes from its URL).
    odd = cl.render(h, "--set", "postgresql.externalUrl=postgres://u:p@db.example.com:6543/x", "--set", "redis.externalUrl=rediss://r.example.com:6380")
    for port in (6543, 6380, 5432, 6379):
        assert allowed(odd, _ep(odd, "gateway"), Endpoint(ip="10.9.9.9"), port)
    assert allowed(odd, _ep(odd, "migrate"), Endpoint(ip="10.9.9.9"), 6543)
    assert cl.render(h, "--set", "networkPolicy.enabled=false").of_kind("NetworkPolicy") == []


# ===================================================================================== PORT


@pytest.mark.parametrize("scenario,port", [("port-9090", 9090), ("everything-on", 9191), ("defaults", 8787)])
@helms
def test_port_drives_everything(renders: cl.Renders, h: str, scenario: str, port: int) -> None:
    objects = renders.objects(h, scenario)
    assert objects.get("ConfigMap", FULLNAME)["data"]["PORT"] == str(port)
    services = {s["metadata"]["name"]: s for s in objects.of_kind("Service")}
    for d in objects.of_kind("Deployment"):
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert cl.env_map(c)["PORT"]["value"] == str(port)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert cl.port_of(c, c[probe]["httpGet"]["port"]) == port
        for s in services.values():
            if cl.selects({"matchLabels": s["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"]):
                assert cl.port_of(c, s["spec"]["ports"][0]["targetPort"]) == port
    np = objects.get("NetworkPolicy", FULLNAME)
    assert [p["port"] for p in np["spec"]["ingress"][0]["ports"]] == [port]
    test_np = objects.get("NetworkPolicy", f"{FULLNAME}-test")
    assert test_np["spec"]["egress"][-1]["ports"] == [{"port": port, "protocol": "TCP"}]
    for sm in objects.of_kind("ServiceMonitor"):
        for ep in sm["spec"]["endpoints"]:
            assert any(p["name"] == ep["port"] for s in services.values() for p in s["spec"]["ports"])
    if port != 8787:
        # 8787 survives only as the Service's own port (service.port) and in URLs through it.
        service_port = services[FULLNAME]["spec"]["ports"][0]["port"]
        for o in objects:
            for path, value in cl.walk(o):
                if value == 8787 or (isinstance(value, str) and re.search(r"(?<!\d)8787(?!\d)", value)):
                    where = f"{o['kind']}/{o['metadata']['name']}{path}"
                    ok = (o["kind"] == "Service" and path.endswith(".port") and service_port == 8787) or (
                        o["kind"] == "Pod" and f"{FULLNAME}:8787/" in str(value)
                    )
                    assert ok, f"hard-coded 8787 at {where}"


# ===================================================================================== ingress, monitoring, scheduling


@helms
def test_ingress_with_tls(renders: cl.Renders, h: str) -> None:
    assert renders.objects(h, "defaults").of_kind("Ingress") == []
    ing = renders.objects(h, "ingress-tls").get("Ingress", FULLNAME)
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert annotations(ing) == {
        "cert-manager.io/cluster-issuer": "letsencrypt-prod",
        "nginx.ingress.kubernetes.io/ssl-redirect": "true",
        "nginx.ingress.kubernetes.io/proxy-body-size": "10m",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "300",
    }
    assert ing["spec"]["tls"] == [{"hosts": ["gateway.example.com"], "secretName": "gateway-tls"}]
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "gateway.example.com"
    assert rule["http"]["paths"] == [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": FULLNAME, "port": {"name": "http"}}}}
    ]


@helms
def test_service_monitor(renders: cl.Renders, h: str) -> None:
    assert renders.objects(h, "defaults").of_kind("ServiceMonitor") == []
    objects = renders.objects(h, "service-monitor")
    sm = objects.get("ServiceMonitor", FULLNAME)
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [cl.NAMESPACE]}
    scraped = sorted(s["metadata"]["name"] for s in objects.of_kind("Service") if cl.selects(sm["spec"]["selector"], s["metadata"]["labels"]))
    assert scraped == [FULLNAME, OBSERVER], "the gateway and the observer (cron metrics) are scraped, not the datastores"


@helms
def test_scheduling(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "scheduling")
    tolerations = [{"key": "dedicated", "operator": "Equal", "value": "ai-gateway", "effect": "NoSchedule"}]
    gw = objects.get("Deployment", GATEWAY)["spec"]["template"]["spec"]
    assert gw["topologySpreadConstraints"] == [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}},
    }]
    assert "topologySpreadConstraints" not in objects.get("Deployment", OBSERVER)["spec"]["template"]["spec"]
    for obj, pod in objects.workloads():
        assert pod["spec"]["nodeSelector"] == {"node-role.kubernetes.io/worker": ""}, obj["metadata"]["name"]
        assert pod["spec"]["tolerations"] == tolerations, obj["metadata"]["name"]
    # A constraint without a labelSelector gets the gateway's own selector.
    everything = renders.objects(h, "everything-on").get("Deployment", GATEWAY)["spec"]["template"]
    tsc = everything["spec"]["topologySpreadConstraints"][0]
    assert cl.selects(tsc["labelSelector"], everything["metadata"]["labels"])
    assert tsc["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == cl.RELEASE
    assert "podAntiAffinity" in everything["spec"]["affinity"]


@helms
def test_resources(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "resources")
    assert objects.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]["resources"] == GUIDE_RESOURCES
    assert objects.get("Deployment", OBSERVER)["spec"]["template"]["spec"]["containers"][0]["resources"] == GUIDE_OBSERVER_RESOURCES


# ===================================================================================== plugins


def _plugin_mounts(pod: dict[str, Any]) -> tuple[list[dict], dict[str, dict]]:
    c = pod["spec"]["containers"][0]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    return [m for m in c["volumeMounts"] if "configMap" in volumes[m["name"]]], volumes


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@helms
def test_no_subpath_mounts(renders: cl.Renders, h: str, scenario: str) -> None:
    for path, _ in cl.walk(list(renders.objects(h, scenario))):
        assert not path.endswith(".subPath") and not path.endswith(".subPathExpr"), path


@helms
def test_plugins_from_values_and_existing_configmaps(renders: cl.Renders, h: str) -> None:
    objects = renders.objects(h, "plugins")
    cm = objects.get("ConfigMap", f"{FULLNAME}-plugins-groq")
    assert base64.b64decode(cm["binaryData"]["groq.wasm"]) == cl.FAKE_WASM
    assert cm["data"]["groq.plugin.toml"].startswith('name = "groq"')
    assert objects.find("ConfigMap", "policy-plugins") is None, "existing ConfigMaps are the user's"
    for name in (GATEWAY, OBSERVER):
        pod = objects.get("Deployment", name)["spec"]["template"]
        mounts, volumes = _plugin_mounts(pod)
        assert [(m["mountPath"], volumes[m["name"]]["configMap"]["name"], m.get("readOnly")) for m in mounts] == [
            ("/etc/mnemom/plugins/groq", f"{FULLNAME}-plugins-groq", True),
            ("/etc/mnemom/plugins/policy-plugins", "policy-plugins", True),
        ]
        env = cl.env_map(pod["spec"]["containers"][0])
        assert env["MNEMOM_PLUGIN_DIRS"]["value"] == "/etc/mnemom/plugins/groq:/etc/mnemom/plugins/policy-plugins"
        # Plugin ConfigMaps hot-reload: they are not part of the checksums that roll the pods.
        assert annotations(pod) == annotations(renders.objects(h, "defaults").get("Deployment", name)["spec"]["template"])
    assert "MNEMOM_PLUGIN_DIRS" not in _env(renders.objects(h, "defaults"))


@helms
def test_plugins_from_chart_files(h: str, tmp_path: Path) -> None:
    chart = cl.copy_chart(tmp_path)
    for d, name in (("alpha", "alpha"), ("groq", "groq")):
        (chart / "plugins" / d).mkdir(parents=True)
        (chart / "plugins" / d / f"{name}.wasm").write_bytes(cl.FAKE_WASM)
        (chart / "plugins" / d / f"{name}.plugin.toml").write_text(f'name = "{name}"\n')
    objects = cl.render(h, "--set", "plugins.existingConfigMaps[0]=zeta", chart=chart)
    cm = objects.get("ConfigMap", f"{FULLNAME}-plugins-groq")
    assert base64.b64decode(cm["binaryData"]["groq.wasm"]) == cl.FAKE_WASM
    assert cm["data"] == {"groq.plugin.toml": 'name = "groq"\n'}
    env = _env(objects)
    assert env["MNEMOM_PLUGIN_DIRS"]["value"] == "/etc/mnemom/plugins/alpha:/etc/mnemom/plugins/groq:/etc/mnemom/plugins/zeta"
    # The same name from the chart files and the values is refused.
    res = cl.helm(h, *cl.template_args(chart), "--set", "plugins.configMaps.groq.files.a=b")
    assert res.returncode != 0 and "listed twice" in res.stderr


@helms
def test_plugin_configmap_size_limit(h: str, tmp_path: Path) -> None:
    big = tmp_path / "big.b64"
    big.write_text(base64.b64encode(b"\0" * (1024 * 1024 + 1)).decode())
    res = cl.helm(h, *cl.template_args(), "--set-file", f"plugins.configMaps.big.binaryFiles.big\\.wasm={big}")
    assert res.returncode != 0
    assert "1 MiB" in res.stderr and "--server-side" in res.stderr and "plugins.existingConfigMaps" in res.stderr


# ===================================================================================== NOTES.txt and docs


def _notes(h: str, tmp_path: Path, *args: str) -> str:
    """Renders NOTES.txt (helm template skips it) through a copy of the chart."""
    chart = cl.copy_chart(tmp_path)
    (chart / "notes").mkdir()
    (chart / "notes" / "NOTES.txt").write_text((chart / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rendered-notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes/NOTES.txt") . | toJson }}\n'
    )
    res = cl.helm(h, *cl.template_args(chart), "--show-only", "templates/zz-notes.yaml", *args).check()
    return yaml.safe_load(res.stdout)["data"]["notes"]


@helms
def test_notes(h: str, tmp_path: Path) -> None:
    notes = _notes(h, tmp_path / "a")
    assert f"kubectl rollout status deployment/{GATEWAY} -n smoltbot" in notes
    assert f"kubectl rollout status deployment/{OBSERVER} -n smoltbot" in notes
    assert f"kubectl port-forward service/{FULLNAME} 8787:8787" in notes
    assert "WARNING: required secrets are empty: ANTHROPIC_API_KEY, MNEMOM_LICENSE_JWT" in notes
    quick = _notes(h, tmp_path / "b", *[a for s in cl.QUICK_INSTALL_SET for a in ("--set", s)])
    assert "WARNING" not in quick
    ingress = _notes(h, tmp_path / "c", "-f", str(cl.SCENARIOS_DIR / "ingress-tls.yaml"))
    assert "https://gateway.example.com/" in ingress
    external = _notes(h, tmp_path / "d", "-f", str(cl.SCENARIOS_DIR / "datastores-external.yaml"))
    assert "postgres://***@rds.example.com" in external and "user:pass" not in external
    # How the schema gets migrated, as the templates do it.
    assert "init container `migrate`" in notes and "hook Job" not in notes
    assert f"Migrations ran as the pre-install,pre-upgrade hook Job {FULLNAME}-migrate." in external
    assert "run `mnemom-gateway migrate` against DATABASE_URL yourself" in _notes(h, tmp_path / "e", "--set", "migration.enabled=false")


def test_upgrade_guide() -> None:
    text = (cl.ROOT / "docs" / "upgrade.md").read_text()
    for needle in ("helm upgrade", "pre-install", "pre-upgrade", "backoffLimit", "activeDeadlineSeconds", "rollback",
                   "Breaking", f"deployment/{GATEWAY}", "mnemom-gateway migrate"):
        assert needle.lower() in text.lower(), f"docs/upgrade.md does not mention {needle}"


def test_chart_readme_documents_plugins() -> None:
    text = (cl.CHART / "README.md").read_text()
    for needle in ("1 MiB", "--server-side", "--set-file", "subPath", "plugins.existingConfigMaps", "docs/upgrade.md"):
        assert needle in text, needle
