"""Chart to process: the rendered gateway and observer containers, run as the kubelet would run them
(command, args, environment from the rendered ConfigMap/Secret/env, the pod's security context,
a read-only root with the chart's emptyDir volumes, plugin ConfigMaps in the kubelet's layout), with
the real `mnemom-gateway` binary, against the machine's PostgreSQL and Redis; every probe the
Deployments declare must answer as the kubelet expects. See podrun.py for the emulation and
localstores.py for the datastores.

Each test emulates what `helm install --wait` does in order: the pre-install hook Jobs (the
migration Job for a database outside the release), then every pod's init containers (for the
internal PostgreSQL: wait for it, then `mnemom-gateway migrate`, all pods at once), then the
containers, whose probes must pass; then what `helm upgrade` runs first (the pre-upgrade Job),
which must find nothing to do. Each test has a fresh database.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import chartlib as cl
import localstores as ls
import podrun
from chartlib import FULLNAME, GATEWAY, OBSERVER

HELM = "3.19"
MIGRATE = f"{FULLNAME}-migrate"
# The migrations the binary embeds (migrations/postgres/NNNN_name.sql).
MIGRATIONS = sorted(int(f.name.split("_")[0]) for f in (cl.ROOT / "migrations" / "postgres").glob("*.sql"))
APPLIED = re.compile(r"applied (\d+) migrations?")
NOTHING = "nothing to apply"

# These tests need root (unshare, mount, chroot, setpriv), as the project's machines and CI have,
# and the machine's PostgreSQL and Redis (localstores.py).


@pytest.fixture(scope="module")
def binary() -> Path:
    return cl.gateway_binary()


@pytest.fixture(scope="module", autouse=True)
def datastores_up() -> None:
    assert ls.psql("SELECT 1") == "1", f"PostgreSQL at {ls.ADMIN_URL} is needed"
    assert ls.redis_ping(ls.REDIS_PORT), f"Redis at 127.0.0.1:{ls.REDIS_PORT} is needed"


@pytest.fixture
def fresh_db() -> Iterator[ls.FreshDatabase]:
    db = ls.FreshDatabase()
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture(scope="module")
def real_plugins(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real adapter plugins: the OpenAI adapter deployed as OpenAI-compatible providers (as
    docs/plugins.md shows) named `groq` (chart values), `deepseek` (an existing ConfigMap) and
    `mistral` (added by the hot-reload test)."""
    d = tmp_path_factory.mktemp("plugins")
    cl.run([str(binary), "plugins", "export", str(d / "export")]).check()
    wasm = (d / "export" / "openai.wasm").read_bytes()
    sha = hashlib.sha256(wasm).hexdigest()
    for name in ("groq", "mistral", "deepseek"):
        (d / f"{name}.wasm").write_bytes(wasm)
        (d / f"{name}.wasm.b64").write_text(base64.b64encode(wasm).decode())
        (d / f"{name}.plugin.toml").write_text(
            f'name = "{name}"\nworld = "provider-adapter"\nwasm = "{name}.wasm"\nsha256 = "{sha}"\n'
            f'upstream = "https://api.{name}.example.com/openai"\nfailure_mode = "fail-open"\n\n'
            f'[config]\nname = "{name}"\n"route-prefix" = "/{name}"\ninject_reasoning = "false"\n'
        )
    return d


def _render(*args: str) -> cl.Objects:
    return cl.render(HELM, *args)


# A Secret the user creates before installing with secrets.existingSecret (scenario existing-secret).
USER_SECRET = {
    ("Secret", "my-smoltbot-secrets"): {
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "MNEMOM_LICENSE_JWT": "eyJ.test",
        "SUPABASE_URL": "https://example.supabase.co",
        "SUPABASE_KEY": "service-role",
    }
}


def _extra(real_plugins: Path | None = None) -> dict[tuple[str, str], Any]:
    extra: dict[tuple[str, str], Any] = dict(USER_SECRET)
    if real_plugins is not None:
        # plugins.existingConfigMaps: the user's own ConfigMap (created with kubectl), holding `deepseek`.
        extra[("ConfigMapObject", "policy-plugins")] = {
            "data": {"deepseek.plugin.toml": (real_plugins / "deepseek.plugin.toml").read_text()},
            "binaryData": {"deepseek.wasm": (real_plugins / "deepseek.wasm.b64").read_text()},
        }
        extra[("ConfigMapObject", "more-plugins")] = {"data": {}}  # everything-on: an empty one is fine too
    return extra


# --------------------------------------------------------------------------------------- datastores


def rendered_env(objects: cl.Objects, workload: dict[str, Any], container: str | None = None) -> dict[str, str]:
    """The container's environment as rendered (in-cluster hosts at 127.0.0.1), before the test
    points the datastores anywhere."""
    pod = podrun.pod_of(workload)
    c = podrun.find_container(pod, container)
    return podrun.rewrite_cluster_hosts(podrun.container_env(objects, pod, c, {}, _extra()), objects)


Transform = Callable[[dict[str, str]], dict[str, str]]


@contextlib.contextmanager
def local_stores(objects: cl.Objects, db: ls.FreshDatabase) -> Iterator[Transform]:
    """Points the rendered DATABASE_URL at a fresh database (owned by the role it names) and
    REDIS_URL at the local Redis (or, when the URL carries a password, at a private redis-server
    requiring that password). Yields the environment transform for podrun."""
    env = rendered_env(objects, objects.get("Deployment", GATEWAY))
    database_url, redis_url = env.get("DATABASE_URL", ""), env.get("REDIS_URL", "")
    if database_url.startswith(ls.POSTGRES_SCHEMES):
        db.create_for(database_url)
    with contextlib.ExitStack() as stack:
        redis_port = ls.REDIS_PORT
        if redis_url and ls.urlsplit(redis_url).password:
            redis_port = stack.enter_context(ls.redis_server(ls.urlsplit(redis_url).password))

        def transform(e: dict[str, str]) -> dict[str, str]:
            e = dict(e)
            if e.get("DATABASE_URL", "").startswith(ls.POSTGRES_SCHEMES):
                e["DATABASE_URL"] = db.point(e["DATABASE_URL"])
            if e.get("REDIS_URL"):
                e["REDIS_URL"] = ls.point_redis(e["REDIS_URL"], redis_port)
            return e

        yield transform


def unreachable(e: dict[str, str]) -> dict[str, str]:
    """The datastores are down: their ports refuse connections."""
    e = dict(e)
    if e.get("DATABASE_URL", "").startswith(ls.POSTGRES_SCHEMES):
        u = ls.urlsplit(e["DATABASE_URL"])
        e["DATABASE_URL"] = e["DATABASE_URL"].replace(u.netloc, f"{u.netloc.rpartition('@')[0]}@127.0.0.1:{ls.unreachable_port()}")
    if e.get("REDIS_URL"):
        e["REDIS_URL"] = ls.point_redis(e["REDIS_URL"], ls.unreachable_port())
    return e


# --------------------------------------------------------------------------------------- what Helm and the kubelet run


def hook_jobs(objects: cl.Objects, phase: str) -> list[dict[str, Any]]:
    """The hook Jobs of one phase, in Helm's order (weight, then name)."""
    jobs = [o for o in objects.hooks() if o["kind"] == "Job" and phase in o["metadata"]["annotations"]["helm.sh/hook"].split(",")]
    return sorted(jobs, key=lambda o: (int(o["metadata"]["annotations"].get("helm.sh/hook-weight", "0")), o["metadata"]["name"]))


def _is_gateway_image(c: dict[str, Any]) -> bool:
    return (c.get("command") or [cl.BINARY_IN_IMAGE])[0] == cl.BINARY_IN_IMAGE


def run_host_init(objects: cl.Objects, workload: dict[str, Any], c: dict[str, Any], transform: Transform | None) -> None:
    res = podrun.run_host_command(objects, workload, c["name"], transform, timeout=30)
    assert res.returncode == 0, f"{workload['metadata']['name']}/{c['name']} failed ({res.returncode}):\n{res.stdout}{res.stderr}"




def run_job(objects: cl.Objects, job: dict[str, Any], binary: Path, transform: Transform | None, **kw: Any) -> tuple[int, str]:
    """One attempt of a Job's pod: its init containers, then its container. (exit code, output)"""
    pod = podrun.pod_of(job)
    for c in pod["spec"].get("initContainers") or []:
        if _is_gateway_image(c):
            run = podrun.start(objects, job, binary, container_name=c["name"], extra=_extra(), env_transform=transform, **kw)
            try:
                assert run.wait(60) == 0, run.logs()
            finally:
                run.cleanup()
        else:
            run_host_init(objects, job, c, transform)
    (c,) = pod["spec"]["containers"]
    run = podrun.start(objects, job, binary, container_name=c["name"], extra=_extra(), env_transform=transform, **kw)
    try:
        return run.wait(job["spec"]["activeDeadlineSeconds"]), run.logs()
    finally:
        run.cleanup()


def pod_replicas(objects: cl.Objects) -> list[dict[str, Any]]:
    """One entry per pod the Deployments start (at most two per Deployment)."""
    out = []
    for d in objects.of_kind("Deployment"):
        out += [d] * min(2, d["spec"].get("replicas", 2))
    return out


def install(objects: cl.Objects, binary: Path, transform: Transform) -> list[str]:
    """What `helm install --wait` runs before the containers can serve: the pre-install hook Jobs
    (each must succeed, or the install stops), then the init containers of every pod, the pods
    started together as the ReplicaSets create them. Returns the migration reports."""
    reports = []
    for job in hook_jobs(objects, "pre-install"):
        code, out = run_job(objects, job, binary, transform)
        assert code == 0, f"pre-install Job {job['metadata']['name']} failed ({code}):\n{out}"
        reports.append(out)
    pods = pod_replicas(objects)
    for d in pods:
        for c in d["spec"]["template"]["spec"].get("initContainers") or []:
            if not _is_gateway_image(c):
                run_host_init(objects, d, c, transform)
    running = [
        podrun.start(objects, d, binary, container_name=c["name"], extra=_extra(), env_transform=transform)
        for d in pods
        for c in d["spec"]["template"]["spec"].get("initContainers") or []
        if _is_gateway_image(c)
    ]
    try:
        for run in running:
            assert run.wait(60) == 0, f"init container {run.container['name']} failed:\n{run.logs()}"
            reports.append(run.logs())
    finally:
        for run in running:
            run.cleanup()
    return reports


def upgrade_hooks(objects: cl.Objects, binary: Path, transform: Transform) -> list[str]:
    """The pre-upgrade hook Jobs of the same release, against the installed database."""
    reports = []
    for job in hook_jobs(objects, "pre-upgrade"):
        code, out = run_job(objects, job, binary, transform)
        assert code == 0, f"pre-upgrade Job {job['metadata']['name']} failed ({code}):\n{out}"
        reports.append(out)
    return reports


def assert_migrated_once(db: ls.FreshDatabase, reports: list[str]) -> None:
    """The database is at the binary's schema, applied by exactly one of the runs; every other
    run (concurrent or later) found nothing to do."""
    assert db.migrations() == [(v, True) for v in MIGRATIONS]
    applied = [int(m.group(1)) for r in reports for m in [APPLIED.search(r)] if m]
    assert applied == [len(MIGRATIONS)], reports
    assert sum(NOTHING in r for r in reports) == len(reports) - 1, reports
    if db.owner:
        assert set(db.table_owners().values()) == {db.owner}, "migrated as the URL's role"


@contextlib.contextmanager
def _running(objects: cl.Objects, name: str, binary: Path, **kw: Any) -> Iterator[podrun.Running]:
    pod = podrun.start(objects, objects.get("Deployment", name), binary, **kw)
    try:
        yield pod
    finally:
        pod.cleanup()


def serve_and_probe(pod: podrun.Running, deployment: dict[str, Any]) -> dict[str, Any]:
    """The kubelet's view: the startup probe first, then liveness and readiness; returns the
    readiness body."""
    declared = [k for k in ("startup", "liveness", "readiness") if f"{k}Probe" in pod.container]
    assert declared == ["startup", "liveness", "readiness"]
    status, _ = pod.wait_probe("startup", limit=60)
    assert status == 200
    assert pod.probe("liveness")[0] == 200
    status, body = pod.wait_probe("readiness", limit=10)
    assert status == 200, body
    assert pod.get("/metrics")[0] == 200
    return json.loads(body)


def stop_in_time(pod: podrun.Running, deployment: dict[str, Any]) -> None:
    """SIGTERM (after the preStop sleep, which the kubelet runs) ends the process in time, cleanly."""
    started = time.monotonic()
    code = pod.stop(timeout=deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
    assert code == 0, pod.logs()
    assert time.monotonic() - started < int(pod.env["MNEMOM_SHUTDOWN_GRACE_SECONDS"]) + 5


def post(pod: podrun.Running, path: str, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{pod.port}{path}", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --------------------------------------------------------------------------------------- install, serve, upgrade


# Scenarios whose datastores the test points at the machine's: internal (defaults), inline
# (secrets.values), external (postgresql/redis.externalUrl, with sslmode=require), a user Secret,
# Redis with a password, everything at once, plugins.
PROCESS_SCENARIOS = ["defaults", "inline-secrets", "external-datastores", "existing-secret", "redis-auth", "everything-on", "plugins"]


def _scenario_args(name: str, workdir: Path, real_plugins: Path) -> list[str]:
    sc = cl.SCENARIOS[name]
    if name == "plugins":
        # Real components instead of the template tests' stand-in.
        return [
            "--set-file", f"plugins.configMaps.groq.binaryFiles.groq\\.wasm={real_plugins / 'groq.wasm.b64'}",
            "--set-file", f"plugins.configMaps.groq.files.groq\\.plugin\\.toml={real_plugins / 'groq.plugin.toml'}",
            "--set", "plugins.existingConfigMaps[0]=policy-plugins",
        ]
    return sc.args(workdir)


@pytest.mark.parametrize("scenario", PROCESS_SCENARIOS)
def test_probes_answer_as_the_kubelet_expects(binary: Path, real_plugins: Path, workdir: Path, fresh_db: ls.FreshDatabase, scenario: str) -> None:
    cl.prepare_workdir(workdir)
    port = podrun.free_port()
    objects = _render(*_scenario_args(scenario, workdir, real_plugins), "--set-string", f"config.PORT={port}")
    with local_stores(objects, fresh_db) as stores:
        reports = install(objects, binary, stores)
        assert_migrated_once(fresh_db, reports)
        internal = f"@{FULLNAME}-postgresql:" in cl.env_map(objects.get("Deployment", GATEWAY)["spec"]["template"]["spec"]["containers"][0]).get("DATABASE_URL", {}).get("value", "")
        # The internal PostgreSQL is migrated by the pods' init containers (all at once: one
        # applies, the others wait for the lock and find nothing to do); any other database by
        # the pre-install Job.
        assert len(reports) == (len(pod_replicas(objects)) if internal else 1)
        for name in (GATEWAY, OBSERVER):
            deployment = objects.find("Deployment", name)
            if deployment is None:
                assert scenario == "everything-on" and name == OBSERVER  # observer.enabled=false there
                continue
            with _running(objects, name, binary, extra=_extra(real_plugins), env_transform=stores) as pod:
                role = "observer" if name == OBSERVER else objects.get("ConfigMap", FULLNAME)["data"]["SMOLTBOT_ROLE"]
                assert pod.env["PORT"] == str(port) and pod.env["SMOLTBOT_ROLE"] == role
                ready = serve_and_probe(pod, deployment)
                assert ready["status"] == "ok", ready
                assert ready["checks"]["database"]["status"] == "ok" and ready["checks"]["database"]["backend"] == "postgres", ready
                assert ready["checks"]["cache"]["status"] == "ok" and ready["checks"]["cache"]["backend"] == "redis", ready
                loaded = {p["name"]: p for p in ready["checks"]["plugins"]["loaded"]}
                assert {"anthropic", "openai", "gemini"} <= set(loaded)
                if scenario == "plugins":
                    for plugin in ("groq", "deepseek"):
                        assert loaded[plugin]["prefix"] == f"/{plugin}" and loaded[plugin]["origin"] != "embedded", loaded
                stop_in_time(pod, deployment)
        # `helm upgrade` of the same release: the pre-upgrade Job finds the schema current.
        upgrade = upgrade_hooks(objects, binary, stores)
        assert len(upgrade) == 1 and NOTHING in upgrade[0], upgrade
        assert fresh_db.migrations() == [(v, True) for v in MIGRATIONS]


@pytest.mark.parametrize("case", ["quick-install", "external-datastores", "internal-outage"])
def test_pods_stay_ready_when_the_datastores_are_unreachable(binary: Path, workdir: Path, fresh_db: ls.FreshDatabase, case: str) -> None:
    """Readiness with PostgreSQL and Redis unreachable: 200 with both reported degraded, so an outage
    does not take the pods out of service (writes are buffered, the cache fails open).

    - quick-install: the guide's placeholder URLs (`postgres://...`, `redis://...`) and licence
      (`eyJ...`). The pre-install migration Job fails, naming DATABASE_URL, so `helm install` would
      stop there; the containers themselves start degraded, and proxied requests get 403
      license_error while the health endpoints answer.
    - external-datastores: the external database was migrated by the pre-install Job; the pods
      (re)start while it is unreachable (the rendered host names do not resolve here).
    - internal-outage: installed normally; then PostgreSQL and Redis go down and the containers
      restart (a container restart does not re-run the init containers), their ports refusing
      connections.
    """
    cl.prepare_workdir(workdir)
    port = podrun.free_port()
    scenario = {"internal-outage": "defaults"}.get(case, case)
    objects = _render(*cl.SCENARIOS[scenario].args(workdir), "--set-string", f"config.PORT={port}")
    with contextlib.ExitStack() as stack:
        transform: Transform | None = None
        if case == "quick-install":
            (job,) = hook_jobs(objects, "pre-install")
            code, out = run_job(objects, job, binary, None)
            assert code != 0 and "DATABASE_URL" in out, out
        elif case == "external-datastores":
            stores = stack.enter_context(local_stores(objects, fresh_db))
            assert_migrated_once(fresh_db, install(objects, binary, stores))
        else:
            stores = stack.enter_context(local_stores(objects, fresh_db))
            assert_migrated_once(fresh_db, install(objects, binary, stores))
            transform = unreachable
        for name in (GATEWAY, OBSERVER):
            deployment = objects.get("Deployment", name)
            with _running(objects, name, binary, extra=_extra(), env_transform=transform) as pod:
                ready = serve_and_probe(pod, deployment)
                # The readiness probe answers within the kubelet's timeout although the checks fail
                # (podrun's probe gives up at timeoutSeconds, which counts as a failure).
                assert pod.last_probe_seconds < pod.container["readinessProbe"]["timeoutSeconds"]
                assert ready["status"] == "degraded", ready
                assert ready["checks"]["database"]["status"] == "degraded", ready
                assert ready["checks"]["cache"]["status"] == "degraded", ready
                assert pod.probe("liveness")[0] == 200
                if case == "quick-install":
                    assert ready["checks"]["license"]["status"] == "error", ready
                    if name == GATEWAY:
                        status, body = post(pod, "/anthropic/v1/messages", b'{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[]}')
                        assert status == 403 and json.loads(body)["error"]["type"] == "license_error", body
                stop_in_time(pod, deployment)


# --------------------------------------------------------------------------------------- the migration Job


def _inspect_sandbox(run: podrun.Running, data_dir: str) -> None:
    """The process runs as uid/gid 65534 (fsGroup as supplementary group), without privileges, on a
    read-only root where only /tmp and MNEMOM_DATA_DIR are writable."""
    status = run.status()
    assert status["Uid"].split() == ["65534"] * 4, status["Uid"]
    assert status["Gid"].split() == ["65534"] * 4, status["Gid"]
    assert status["Groups"].split() == ["65534"]
    assert status["NoNewPrivs"] == "1"
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    mounts = run.mounts()
    assert "ro" in mounts["/"].split(","), "the root file system is read-only"
    writable = {m for m, opts in mounts.items() if "rw" in opts.split(",") and not m.startswith(("/proc", "/dev"))}
    assert writable == {"/tmp", data_dir}, writable
    assert run.env["MNEMOM_DATA_DIR"] == data_dir


def _wait_until(predicate: Callable[[], bool], run: podrun.Running, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert run.proc.poll() is None, f"exited ({run.proc.returncode}) instead of {what}:\n{run.logs()}"
        assert time.monotonic() < deadline, f"never {what}:\n{run.logs()}"
        time.sleep(0.05)


@pytest.mark.parametrize("scenario", ["defaults", "inline-secrets", "external-datastores", "existing-secret", "everything-on"])
def test_migration_job_migrates_the_local_postgres(binary: Path, workdir: Path, fresh_db: ls.FreshDatabase, scenario: str) -> None:
    """The rendered migration Job's container (command, args, env from its hook-owned Secret or the
    user's Secret, and the internal PostgreSQL's password) against a fresh database: while another
    session holds the migrator's lock it waits (and is seen running as uid 65534 with only /tmp and
    MNEMOM_DATA_DIR writable); then it applies every migration and exits 0; a second run (a retry,
    the next upgrade) applies nothing and exits 0."""
    cl.prepare_workdir(workdir)
    objects = _render(*cl.SCENARIOS[scenario].args(workdir))
    job = objects.get("Job", MIGRATE)
    data_dir = cl.env_map(job["spec"]["template"]["spec"]["containers"][0])["MNEMOM_DATA_DIR"]["value"]
    with local_stores(objects, fresh_db) as stores:
        for c in job["spec"]["template"]["spec"].get("initContainers") or []:
            run_host_init(objects, job, c, stores)  # wait-for-postgresql (internal PostgreSQL)
        with fresh_db.holding_migration_lock():
            run = podrun.start(objects, job, binary, container_name="migrate", extra=_extra(), env_transform=stores)
            try:
                _wait_until(lambda: fresh_db.lock_waiters() == 1, run, "waited for the migration lock")
                _inspect_sandbox(run, data_dir)
                assert fresh_db.migrations() == []
            except BaseException:
                run.cleanup()
                raise
        try:
            assert run.wait(job["spec"]["activeDeadlineSeconds"]) == 0, run.logs()
            first = run.logs()
        finally:
            run.cleanup()
        assert f"applied {len(MIGRATIONS)} migrations" in first and fresh_db.name in first, first
        password = ls.urlsplit(rendered_env(objects, job, "migrate").get("DATABASE_URL", "")).password or ""
        assert len(password) < 6 or password not in first, "the password is never echoed"
        code, second = run_job(objects, job, binary, stores)
        assert code == 0 and NOTHING in second, second
        assert_migrated_once(fresh_db, [first, second])


def test_migration_without_a_database_is_a_no_op(binary: Path, workdir: Path, tmp_path: Path) -> None:
    """secrets.existingSecret without internal or external PostgreSQL: the chart cannot know whether
    the user's Secret sets DATABASE_URL, so it renders the Job; when it does not, `migrate` must
    succeed without a database server (it only initialises the embedded SQLite file in the Job's own
    emptyDir, which the pods never see) — as uid 65534, writing only to MNEMOM_DATA_DIR."""
    cl.prepare_workdir(workdir)
    objects = _render(*cl.SCENARIOS["existing-secret"].args(workdir), "--set", "postgresql.enabled=false", "--set", "redis.enabled=false")
    job = objects.get("Job", MIGRATE)
    pod = job["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    env = rendered_env(objects, job, "migrate")
    assert "DATABASE_URL" not in env, "nothing in the rendered Job names a database"
    data_dir = env["MNEMOM_DATA_DIR"]
    # The Job's data emptyDir backed by a host directory, so the test can hold the SQLite migration
    # lock (`<db>.migrate.lock`, flock) and see what was written.
    host_data = tmp_path / "data"
    host_data.mkdir()
    os.chown(host_data, 0, 65534)
    lock_path = host_data / "mnemom.db.migrate.lock"
    lock_path.touch()
    os.chown(lock_path, 65534, 65534)
    with open(lock_path, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run = podrun.start(objects, job, binary, container_name="migrate", extra=_extra(), host_volumes={"data": host_data})
        try:
            # Blocked on the lock: look at it.
            _wait_until(lambda: _waits_for_flock(run.pid), run, "waited for the lock", timeout=10)
            _inspect_sandbox(run, data_dir)
        except BaseException:
            run.cleanup()
            raise
        fcntl.flock(held, fcntl.LOCK_UN)
    try:
        assert run.wait(60) == 0, run.logs()
        first = run.logs()
    finally:
        run.cleanup()
    assert "DATABASE_URL is unset" in first, first
    files = {p.name: p.stat() for p in host_data.iterdir()}
    assert "mnemom.db" in files and all(st.st_uid == 65534 for st in files.values()), {k: v.st_uid for k, v in files.items()}
    # Idempotent on the same volume; a retried Job is a new pod with a new, empty emptyDir, and
    # succeeds the same way.
    code, second = run_job(objects, job, binary, None, host_volumes={"data": host_data})
    assert code == 0 and NOTHING in second, second
    code, retry = run_job(objects, job, binary, None)
    assert code == 0, retry


def _waits_for_flock(pid: int) -> bool:
    """Is the process blocked on a flock()? (/proc/locks lists waiters as `N: -> FLOCK … <pid> …`)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "->" and fields[2] == "FLOCK" and fields[5] == str(pid):
            return True
    return False


# --------------------------------------------------------------------------------------- the image's promises


@contextlib.contextmanager
def _installed_defaults(binary: Path, db: ls.FreshDatabase, *args: str) -> Iterator[tuple[cl.Objects, Transform]]:
    """The default chart (internal PostgreSQL and Redis), installed against a fresh database."""
    objects = _render(*args)
    with local_stores(objects, db) as stores:
        assert_migrated_once(db, install(objects, binary, stores))
        yield objects, stores


def test_runs_as_65534_with_a_read_only_root(binary: Path, fresh_db: ls.FreshDatabase) -> None:
    """What the image can prove without a Docker engine: the binary, as uid/gid 65534 with the chart's
    security context, from the read-only working directory of the image, writes only to the
    chart's emptyDir volumes and serves its probes."""
    port = podrun.free_port()
    with _installed_defaults(binary, fresh_db, "--set-string", f"config.PORT={port}") as (objects, stores), \
            _running(objects, GATEWAY, binary, env_transform=stores) as pod:
        pod.wait_probe("startup", limit=60)
        assert pod.probe("readiness")[0] == 200 and pod.probe("liveness")[0] == 200
        status = pod.status()
        assert status["Uid"].split() == ["65534"] * 4, status["Uid"]
        assert status["Gid"].split() == ["65534"] * 4, status["Gid"]
        assert status["Groups"].split() == ["65534"], "fsGroup is a supplementary group"
        assert status["NoNewPrivs"] == "1"
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
        mounts = pod.mounts()
        assert "ro" in mounts["/"].split(","), "the root file system is read-only"
        writable = {m for m, opts in mounts.items() if "rw" in opts.split(",") and not m.startswith(("/proc", "/dev"))}
        assert writable == {"/tmp", "/var/lib/mnemom", "/var/cache/mnemom/plugins"}, writable
        workdir = cl.dockerfile_runtime()["workdir"]
        assert workdir == "/" and workdir not in writable
        cwd, expected = os.stat(f"/proc/{pod.pid}/cwd"), os.stat(f"/proc/{pod.pid}/root{workdir}")
        assert (cwd.st_dev, cwd.st_ino) == (expected.st_dev, expected.st_ino), "the working directory is the image's WORKDIR"
        # The plugin cache (an emptyDir) received the compiled artifacts.
        cache = Path(f"/proc/{pod.pid}/root/var/cache/mnemom/plugins")
        assert any(cache.iterdir()), "no compiled plugin artifacts in MNEMOM_PLUGIN_CACHE_DIR"
        assert "not usable" not in pod.logs()
        assert pod.stop() == 0


def test_read_only_root_is_enforced(binary: Path, fresh_db: ls.FreshDatabase) -> None:
    """Negative control: without the plugin-cache emptyDir, the read-only root refuses the gateway's
    writes (it then keeps compiled plugins in memory only, logged at debug level)."""
    port = podrun.free_port()
    with _installed_defaults(binary, fresh_db, "--set-string", f"config.PORT={port}", "--set", "config.LOG_LEVEL=debug") as (objects, stores), \
            _running(objects, GATEWAY, binary, env_transform=stores, drop_volumes=("plugin-cache",)) as pod:
        pod.wait_probe("startup", limit=60)
        assert pod.probe("readiness")[0] == 200
        assert "Read-only file system" in pod.logs(), pod.logs()
        assert not any(Path(f"/proc/{pod.pid}/root/var/cache/mnemom/plugins").iterdir())


def test_plugin_configmap_update_hot_reloads(binary: Path, real_plugins: Path, workdir: Path, fresh_db: ls.FreshDatabase) -> None:
    """A whole-volume ConfigMap mount receives the kubelet's atomic `..data` swap; the gateway picks
    the new plugin up without a restart."""
    port = podrun.free_port()
    args = _scenario_args("plugins", workdir, real_plugins)[:4]
    with _installed_defaults(binary, fresh_db, *args, "--set-string", f"config.PORT={port}") as (objects, stores), \
            _running(objects, GATEWAY, binary, env_transform=stores) as pod:
        pod.wait_probe("startup", limit=60)
        pod.wait_probe("readiness", limit=10)
        cm = objects.get("ConfigMap", f"{FULLNAME}-plugins-groq")
        updated = json.loads(json.dumps(cm))
        updated["data"]["mistral.plugin.toml"] = (real_plugins / "mistral.plugin.toml").read_text()
        updated["binaryData"]["mistral.wasm"] = (real_plugins / "mistral.wasm.b64").read_text()
        mount = next(m for m in pod.container["volumeMounts"] if m["mountPath"].endswith("/groq"))
        podrun.write_configmap_dir(pod.host_dirs[mount["name"]], updated, 0o444, pod.fs_group)
        deadline = time.monotonic() + 15
        names: set[str] = set()
        while time.monotonic() < deadline:
            status, body = pod.probe("readiness")
            if status == 200:
                names = {p["name"] for p in json.loads(body)["checks"]["plugins"]["loaded"]}
                if "mistral" in names:
                    break
            time.sleep(0.2)
        assert "mistral" in names, f"not reloaded: {names}\n{pod.logs()}"
        assert pod.proc.poll() is None, "the pod must not restart"
        assert pod.stop() == 0


def test_rewrites_in_cluster_hosts() -> None:
    objects = _render()
    env = podrun.rewrite_cluster_hosts(
        {
            "DATABASE_URL": f"postgres://mnemom:pw@{FULLNAME}-postgresql:5432/mnemom?sslmode=disable",
            "REDIS_URL": f"redis://{FULLNAME}-redis.smoltbot.svc.cluster.local:6379",
            "PGHOST": f"{FULLNAME}-postgresql",
            "OTHER": "https://api.anthropic.com",
            "PREFIX": f"{FULLNAME}-postgresql-backup",
        },
        objects,
    )
    assert env == {
        "DATABASE_URL": "postgres://mnemom:pw@127.0.0.1:5432/mnemom?sslmode=disable",
        "REDIS_URL": "redis://127.0.0.1:6379",
        "PGHOST": "127.0.0.1",
        "OTHER": "https://api.anthropic.com",
        "PREFIX": f"{FULLNAME}-postgresql-backup",
    }


def test_points_urls_at_the_local_datastores() -> None:
    db = ls.FreshDatabase()
    host, port = ls.urlsplit(ls.ADMIN_URL).hostname, ls.urlsplit(ls.ADMIN_URL).port or 5432
    assert db.point("postgres://user:pass@rds.example.com:5432/mnemom?sslmode=require") == \
        f"postgres://user:pass@{host}:{port}/{db.name}?sslmode=require"
    assert db.point("postgresql://app@db/x") == f"postgresql://app@{host}:{port}/{db.name}"
    assert ls.point_redis("redis://:pw@r.example.com:6380/2", 7000) == "redis://:pw@127.0.0.1:7000/2"
    assert ls.point_redis("rediss://r.example.com", 7000) == "rediss://127.0.0.1:7000"
    # sqlx's key for the migrator's advisory lock (its generate_lock_id), e.g. for database "mnemom".
    import zlib

    assert ls.sqlx_lock_id("mnemom") == 0x3D32AD9E * zlib.crc32(b"mnemom") < 2**63


def test_env_expansion_follows_kubernetes_rules() -> None:
    defined = {"A": "x", "B": "y"}
    assert podrun.expand("$(A)-$(B)-$(C)-$$(A)", defined) == "x-y-$(C)-$(A)"
    objects = _render()
    pod = objects.get("Deployment", GATEWAY)["spec"]["template"]
    env = podrun.container_env(objects, pod, pod["spec"]["containers"][0], {})
    password = objects.secret_data(f"{FULLNAME}-postgresql")["password"]
    assert env["DATABASE_URL"] == f"postgres://mnemom:{password}@{FULLNAME}-postgresql:5432/mnemom?sslmode=disable"
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
