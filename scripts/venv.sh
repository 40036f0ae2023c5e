#!/usr/bin/env bash
# Creates (or refreshes) the project venv .venv with the pinned controller
# tooling and the sample app's dependencies. Never touches the system Python.
# The venv is rebuilt only when a requirements file changed (stamp file).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FLASKOPS_VENV:-$REPO_ROOT/.venv}
PYTHON=${PYTHON:-python3}
REQS=("$REPO_ROOT/requirements/controller.txt" "$REPO_ROOT/sample_app/requirements.txt" "$REPO_ROOT/sample_app/requirements-test.txt")
CONSTRAINTS="$REPO_ROOT/requirements/constraints.txt"
stamp="$VENV/.requirements.sha256"
want=$(cat "${REQS[@]}" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)

if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "[venv] $PYTHON lacks venv/ensurepip: installing python3-venv" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
args=(-c "$CONSTRAINTS")
for r in "${REQS[@]}"; do args+=(-r "$r"); done
n=1
until "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"; do
  [ "$n" -ge 3 ] && { echo "[venv] pip install failed $n times" >&2; exit 1; }
  echo "[venv] pip install failed (attempt $n), retrying" >&2; sleep $((n * 10)); n=$((n + 1))
done
echo "$want" >"$stamp"
echo "[venv] $VENV is ready" >&2
