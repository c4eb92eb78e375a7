"""Runs a rendered container the way the kubelet and the container runtime would, without either:
the real gateway binary, with the container's command, args and environment (envFrom ConfigMaps and
Secrets, env values, secretKeyRef/configMapKeyRef, $(VAR) expansion), inside a private mount
namespace whose root is a read-only file system laid out like the image (the binary at its
`command` path, the Dockerfile's WORKDIR), with the pod's volumes mounted (emptyDir as tmpfs,
ConfigMaps in the kubelet's `..data` symlink layout) and the pod's security context applied
(uid/gid, fsGroup as supplementary group, no new privileges, no capabilities).

Init containers of the gateway image run the same way (`start(..., container_name=...)` looks in
`initContainers` too). An init container of another image (the PostgreSQL image's
`wait-for-postgresql`) runs its command on the host with the same uid/gid, no capabilities and
its rendered environment (`run_host_command`): the host has the PostgreSQL client tools.

Needs root (unshare, mount, chroot, setpriv) — as on the project's machines and CI.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import chartlib as cl

PATH_IN_IMAGE = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------- environment


def _object_data(objects: cl.Objects, kind: str, name: str, extra: dict[tuple[str, str], dict[str, str]]) -> dict[str, str] | None:
    if (kind, name) in extra:
        return extra[(kind, name)]
    o = objects.find(kind, name)
    if o is None:
        return None
    if kind == "Secret":
        return objects.secret_data(name)
    return dict(o.get("data") or {})


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, defined: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: earlier variables only; `$$` escapes; unknown stays as is."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return defined.get(m.group(1), m.group(0))

    return _REF.sub(sub, value)


def container_env(
    objects: cl.Objects,
    pod: dict[str, Any],
    c: dict[str, Any],
    image_env: dict[str, str],
    extra: dict[tuple[str, str], dict[str, str]] | None = None,
) -> dict[str, str]:
    """The environment the container starts with: the image's ENV, then envFrom in order, then env."""
    extra = extra or {}
    env: dict[str, str] = {"PATH": PATH_IN_IMAGE, **image_env, "HOSTNAME": pod["metadata"].get("name", "pod-0")}
    for ef in c.get("envFrom") or []:
        kind, ref = ("Secret", ef["secretRef"]) if "secretRef" in ef else ("ConfigMap", ef["configMapRef"])
        data = _object_data(objects, kind, ref["name"], extra)
        if data is None:
            if ref.get("optional"):
                continue
            raise AssertionError(f"envFrom {kind}/{ref['name']} does not exist: the pod would not start")
        env.update({ef.get("prefix", "") + k: v for k, v in data.items()})
    for e in c.get("env") or []:
        if "value" in e or "valueFrom" not in e:
            env[e["name"]] = expand(str(e.get("value", "")), env)
            continue
        vf = e["valueFrom"]
        if "secretKeyRef" in vf or "configMapKeyRef" in vf:
            kind, ref = ("Secret", vf["secretKeyRef"]) if "secretKeyRef" in vf else ("ConfigMap", vf["configMapKeyRef"])
            data = _object_data(objects, kind, ref["name"], extra)
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise AssertionError(f"env {e['name']}: {kind}/{ref['name']} key {ref['key']} does not exist")
            env[e["name"]] = data[ref["key"]]
        elif "fieldRef" in vf:
            path = vf["fieldRef"]["fieldPath"]
            env[e["name"]] = {"metadata.name": env["HOSTNAME"], "metadata.namespace": cl.NAMESPACE}.get(path, "10.0.0.1")
        else:
            raise AssertionError(f"env {e['name']}: unsupported valueFrom {vf}")
    return env


def rewrite_cluster_hosts(env: dict[str, str], objects: cl.Objects, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Points in-cluster Services of the release to 127.0.0.1 (the machine's own Redis and
    PostgreSQL), in URLs and as whole values (PGHOST); `overrides` replaces whole variables."""
    services = objects.names("Service")
    out = {}
    for k, v in env.items():
        for svc in services:
            v = re.sub(rf"(?:(?<=[@/])|^){re.escape(svc)}(\.{cl.NAMESPACE}(\.svc(\.cluster\.local)?)?)?(?=[:/?]|$)", "127.0.0.1", v)
        out[k] = v
    out.update(overrides or {})
    return out


def pod_of(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod (template) of a Deployment/Job/StatefulSet, or the Pod itself, as a copy."""
    pod = workload["spec"]["template"] if "template" in workload.get("spec", {}) else workload
    pod = json.loads(json.dumps(pod))
    pod.setdefault("metadata", {}).setdefault("name", f"{workload['metadata']['name']}-0")
    return pod


def find_container(pod: dict[str, Any], name: str | None) -> dict[str, Any]:
    spec = pod["spec"]
    for c in list(spec["containers"]) + list(spec.get("initContainers") or []):
        if name in (None, c["name"]):
            return c
    raise AssertionError(f"no container {name}")


def security(pod: dict[str, Any], c: dict[str, Any], image_user: str) -> tuple[int, int, int | None]:
    """uid, gid and fsGroup of a container, as the kubelet resolves them."""
    psc = pod["spec"].get("securityContext") or {}
    csc = c.get("securityContext") or {}
    image_uid, _, image_gid = image_user.partition(":")
    uid = csc.get("runAsUser", psc.get("runAsUser", int(image_uid)))
    gid = csc.get("runAsGroup", psc.get("runAsGroup", int(image_gid or image_uid)))
    if csc.get("runAsNonRoot", psc.get("runAsNonRoot")):
        assert uid != 0, "runAsNonRoot with uid 0: the kubelet refuses to start it"
    return uid, gid, psc.get("fsGroup")


def run_host_command(
    objects: cl.Objects,
    workload: dict[str, Any],
    container_name: str,
    env_transform: Callable[[dict[str, str]], dict[str, str]] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Runs a container of another image than the gateway's (the PostgreSQL image's pg_isready
    loop) on the host: its command and args, its rendered environment with in-cluster hosts
    pointed at 127.0.0.1, the pod's uid/gid, no supplementary groups, no new privileges, no
    capabilities."""
    pod = pod_of(workload)
    c = find_container(pod, container_name)
    command = list(c.get("command") or []) + list(c.get("args") or [])
    assert command, f"{container_name}: no command (the image's entrypoint is not emulated)"
    env = rewrite_cluster_hosts(container_env(objects, pod, c, {}), objects)
    env["PATH"] = "/usr/bin:/bin"
    if env_transform:
        env = env_transform(env)
    uid, gid, _ = security(pod, c, "0")
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs", "--inh-caps=-all",
         "--bounding-set=-all", "--", *command],
        env=env, cwd="/", capture_output=True, text=True, timeout=timeout,
    )


# --------------------------------------------------------------------------------------- ConfigMap volumes


def write_configmap_dir(directory: Path, cm: dict[str, Any], mode: int = 0o444, fs_group: int | None = None) -> None:
    """The kubelet's atomic-writer layout: files in a timestamped directory, `..data` pointing at it,
    and one symlink per key through `..data`. Called again, it swaps `..data` atomically. Like the
    kubelet, directories belong to the pod's fsGroup (group-readable, setgid) and files get the
    volume's defaultMode."""
    directory.mkdir(parents=True, exist_ok=True)
    dir_mode = 0o2750 if fs_group is not None else 0o755

    def own(path: Path, m: int) -> None:
        if fs_group is not None:
            os.chown(path, 0, fs_group)
        os.chmod(path, m)

    own(directory, dir_mode)
    files: dict[str, bytes] = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
    files.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{time.time_ns() % 10**9:09d}"
    ts = directory / stamp
    ts.mkdir()
    for name, content in files.items():
        (ts / name).write_bytes(content)
        own(ts / name, mode)
    own(ts, dir_mode)
    old = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else None
    tmp = directory / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(stamp, tmp)
    os.rename(tmp, directory / "..data")
    for name in files:
        link = directory / name
        if not link.is_symlink():
            os.symlink(f"..data/{name}", link)
    for entry in directory.iterdir():
        if not entry.name.startswith(".") and entry.is_symlink() and entry.name not in files:
            entry.unlink()
    if old:
        shutil.rmtree(directory / old)


# --------------------------------------------------------------------------------------- the sandbox


@dataclasses.dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    base: Path  # everything of this run on the host: root/, container.log, configmaps/
    root: Path
    log: Path
    host_dirs: dict[str, Path]  # volume name -> host directory (ConfigMaps)
    fs_group: int | None
    env: dict[str, str]
    container: dict[str, Any]
    pod: dict[str, Any]
    last_probe_seconds: float = 0.0  # how long the last probe() took

    @property
    def pid(self) -> int:
        return self.proc.pid

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait(self, timeout: float) -> int:
        """Waits for the process to exit (a Job's or an init container's) and returns its code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout} s:\n{self.logs()}") from None

    def get(self, path: str, timeout: float = 3.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError):
            return 0, b""

    def probe(self, kind: str) -> tuple[int, bytes]:
        p = self.container[f"{kind}Probe"]["httpGet"]
        assert cl.port_of(self.container, p["port"]) == self.port
        began = time.monotonic()
        try:
            return self.get(p["path"], timeout=float(self.container[f"{kind}Probe"].get("timeoutSeconds", 1)))
        finally:
            self.last_probe_seconds = time.monotonic() - began

    def wait_probe(self, kind: str, limit: float | None = None) -> tuple[int, bytes]:
        """Polls like the kubelet until the probe succeeds (2xx/3xx) or its failure budget is spent."""
        spec = self.container[f"{kind}Probe"]
        budget = spec.get("initialDelaySeconds", 0) + spec.get("periodSeconds", 10) * spec.get("failureThreshold", 3)
        deadline = time.monotonic() + min(budget, limit or budget)
        status, body = 0, b""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the container exited with {self.proc.returncode}:\n{self.logs()}")
            status, body = self.probe(kind)
            if 200 <= status < 400:
                return status, body
            time.sleep(0.1)
        raise AssertionError(f"{kind} probe never succeeded (last {status} {body[:200]!r}):\n{self.logs()}")

    def status(self) -> dict[str, str]:
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            out[k] = v.strip()
        return out

    def mounts(self) -> dict[str, str]:
        """mount point (inside the sandbox) -> mount options, from the process' mountinfo."""
        out = {}
        for line in Path(f"/proc/{self.pid}/mountinfo").read_text().splitlines():
            fields = line.split()
            out[fields[4].replace("\\040", " ")] = fields[5]
        return out

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def start(
    objects: cl.Objects,
    workload: dict[str, Any],
    binary: Path,
    container_name: str | None = None,
    extra: dict[tuple[str, str], dict[str, str]] | None = None,
    env_overrides: dict[str, str] | None = None,
    drop_volumes: tuple[str, ...] = (),
    env_transform: Callable[[dict[str, str]], dict[str, str]] | None = None,
    host_volumes: dict[str, Path] | None = None,
) -> Running:
    """Starts one container (or init container) of a rendered workload (Deployment/Job/StatefulSet/
    Pod). `env_transform` rewrites the final environment (e.g. DATABASE_URL to a test database);
    `host_volumes` backs the named emptyDir volumes with host directories instead of tmpfs, so a
    test can look at (and lock) what the process writes there."""
    image = cl.dockerfile_runtime()
    pod = pod_of(workload)
    spec = pod["spec"]
    c = find_container(pod, container_name)
    command = (c.get("command") or image["entrypoint"]) + (c.get("args") if "args" in c else image.get("cmd", []))
    assert command[0] == cl.BINARY_IN_IMAGE, f"the image has only {cl.BINARY_IN_IMAGE}, the container runs {command[0]}"

    env = rewrite_cluster_hosts(container_env(objects, pod, c, image["env"], extra), objects, env_overrides)
    if env_transform:
        env = env_transform(env)
    port = int(env.get("PORT", "8787"))
    assert [p["containerPort"] for p in c.get("ports") or []] in ([], [port]), "containerPort differs from PORT"

    uid, gid, fs_group = security(pod, c, image["user"])
    csc = c.get("securityContext") or {}
    read_only = bool(csc.get("readOnlyRootFilesystem"))

    base = Path(tempfile.mkdtemp(prefix="podrun-"))
    root = base / "root"
    root.mkdir()
    host_dirs: dict[str, Path] = {}
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    script = [
        "set -euo pipefail",
        f"R={shlex.quote(str(root))}",
        'mount -t tmpfs -o mode=0755,size=16m rootfs "$R"',
        'mkdir -p "$R/usr" "$R/proc" "$R/dev" "$R/etc" "$R/var/lib/mnemom" "$R/var/cache/mnemom/plugins" "$R/etc/mnemom/plugins"',
        'chown 65534:65534 "$R/var/lib/mnemom" "$R/var/cache/mnemom/plugins" "$R/etc/mnemom/plugins"',
        'mount --rbind /usr "$R/usr"',
        'ln -s usr/bin "$R/bin"; ln -s usr/sbin "$R/sbin"; ln -s usr/lib "$R/lib"',
        'if [ -d /usr/lib64 ]; then ln -s usr/lib64 "$R/lib64"; fi',
        'mount --rbind /dev "$R/dev"',
        'mount --rbind /proc "$R/proc"',
        'for f in passwd group nsswitch.conf hosts resolv.conf ld.so.cache; do [ -e "/etc/$f" ] && cp -L "/etc/$f" "$R/etc/$f"; done',
        # The binary at its path in the image (a tmpfs hides the host's /usr/local/bin in here only).
        'mount -t tmpfs -o mode=0755,size=1m localbin "$R/usr/local/bin"',
        f'touch "$R{cl.BINARY_IN_IMAGE}"',
        f'mount --bind {shlex.quote(str(binary))} "$R{cl.BINARY_IN_IMAGE}"',
        f'mount -o remount,bind,ro "$R{cl.BINARY_IN_IMAGE}"',
        'mount -o remount,ro "$R/usr/local/bin"',
    ]
    for m in c.get("volumeMounts") or []:
        assert "subPath" not in m and "subPathExpr" not in m, "subPath mounts never receive ConfigMap updates"
        if m["name"] in drop_volumes:
            continue
        v = volumes[m["name"]]
        target = f'"$R"{shlex.quote(m["mountPath"])}'
        script.append(f"mkdir -p {target}")
        if "emptyDir" in v and m["name"] in (host_volumes or {}):
            host = Path(host_volumes[m["name"]])  # type: ignore[index]
            host.mkdir(parents=True, exist_ok=True)
            os.chown(host, 0, fs_group if fs_group is not None else 0)
            os.chmod(host, 0o2777)
            script.append(f"mount --bind {shlex.quote(str(host))} {target}")
        elif "emptyDir" in v:
            size = v["emptyDir"].get("sizeLimit", "64Mi").replace("Mi", "m").replace("Gi", "g")
            owner = f",gid={fs_group}" if fs_group is not None else ""
            script.append(f"mount -t tmpfs -o mode=2777,size={size}{owner} emptydir {target}")
        elif "configMap" in v:
            cm = objects.find("ConfigMap", v["configMap"]["name"]) or (extra or {}).get(("ConfigMapObject", v["configMap"]["name"]))
            assert cm is not None, f"ConfigMap {v['configMap']['name']} does not exist"
            host = base / "configmaps" / m["name"]
            write_configmap_dir(host, cm, v["configMap"].get("defaultMode", 0o644), fs_group)
            host_dirs[m["name"]] = host
            script.append(f"mount --bind {shlex.quote(str(host))} {target}")
            if m.get("readOnly"):
                script.append(f"mount -o remount,bind,ro {target}")
        else:
            raise AssertionError(f"volume type of {m['name']} not emulated: {v}")
    script.append('mount -o remount,bind,ro "$R/usr"')
    if read_only:
        script.append('mount -o remount,ro "$R"')
    groups = f"--groups={fs_group}" if fs_group is not None else "--clear-groups"
    workdir = c.get("workingDir") or image["workdir"]
    env_args = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    script.append(
        f'exec chroot "$R" /usr/bin/setpriv --reuid={uid} --regid={gid} {groups} --no-new-privs '
        f"--inh-caps=-all --bounding-set=-all -- /usr/bin/env -i -C {shlex.quote(workdir)} {env_args} "
        + " ".join(shlex.quote(a) for a in command)
    )
    log = base / "container.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "bash", "-c", "\n".join(script)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Running(proc, port, base, root, log, host_dirs, fs_group, env, c, pod)
