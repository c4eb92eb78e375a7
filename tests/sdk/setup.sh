#!/usr/bin/env bash
# Creates the virtualenv for tests/sdk/check_sdks.py with the SDKs pinned in requirements.txt, or reuses it when
# it was built from the same requirements (and the same Python). Prints the venv's python path on the last line,
# so callers can do:  PY="$(tests/sdk/setup.sh | tail -n 1)"
#
#   MNEMOM_SDK_VENV  where the venv lives (default target/sdk-venv; a relative path is relative to the repo root)
#   PYTHON           interpreter to build it with (default python3; must be >= 3.11)
#
# Needs only python3 and pip (and network access to the package index for the first run). All progress goes to
# stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
requirements="$here/requirements.txt"
python="${PYTHON:-python3}"
venv="${MNEMOM_SDK_VENV:-target/sdk-venv}"
case "$venv" in
  /*) ;;
  *) venv="$root/$venv" ;;
esac
venv_python="$venv/bin/python"
stamp="$venv/.requirements.sha256"

log() { echo "sdk-setup: $*" >&2; }

if ! command -v "$python" >/dev/null 2>&1; then
  log "$python not found (set PYTHON to a Python >= 3.11)"
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  log "$("$python" --version 2>&1) is too old: google-genai needs Python >= 3.11 (set PYTHON)"
  exit 1
fi

# The stamp covers the requirements file and the interpreter version the venv was built with.
wanted="$("$python" - "$requirements" <<'PY'
import hashlib, sys
digest = hashlib.sha256(open(sys.argv[1], "rb").read())
digest.update(sys.version.encode())
print(digest.hexdigest())
PY
)"

mkdir -p "$(dirname "$venv")"
# Two runs at once (parallel CI jobs) must not build the same venv concurrently.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$venv.lock"
  flock 9
fi

if [ -x "$venv_python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] \
  && "$venv_python" -c 'import anthropic, openai, google.genai' >/dev/null 2>&1; then
  log "reusing $venv (requirements unchanged)"
  echo "$venv_python"
  exit 0
fi

log "creating $venv"
rm -rf "$venv"
if "$python" -m venv "$venv" >&2; then
  pip=("$venv_python" -m pip)
else
  # Debian-style Pythons without ensurepip (no python3-venv package): make the venv without pip and install
  # into it with the host's pip (pip >= 22.3 has --python).
  log "python -m venv failed; retrying without pip and using the host's pip"
  rm -rf "$venv"
  "$python" -m venv --without-pip "$venv" >&2
  pip=("$python" -m pip --python "$venv_python")
fi
"${pip[@]}" install --disable-pip-version-check --no-input --quiet -r "$requirements" >&2
"$venv_python" -c 'import anthropic, openai, google.genai' >&2
echo "$wanted" >"$stamp"
log "installed: $("$venv_python" -m pip --version >/dev/null 2>&1 && "$venv_python" -m pip freeze 2>/dev/null | grep -Ei '^(anthropic|openai|google-genai)==' | tr '\n' ' ' || echo "see $requirements")"
echo "$venv_python"
