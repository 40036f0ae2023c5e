#!/usr/bin/env bash
# Creates (or refreshes) the project venv .venv with the pinned controller
# tooling and the sample app's dependencies. Never touches the system Python.
# The venv is rebuilt only when a requirements file changed (stamp file).
#
#   scripts/venv.sh                                    .venv, pinned by requirements/constraints.txt
#   FLASKOPS_VENV=DIR scripts/venv.sh REQUIREMENTS...  another venv from fully pinned files
#                                                      (make bench's chart venv)
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FLASKOPS_VENV:-$REPO_ROOT/.venv}
PYTHON=${PYTHON:-python3}
LOG_TAG=venv
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"
if [ $# -gt 0 ]; then
  REQS=("$@")
  CONSTRAINTS=""
else
  REQS=("$REPO_ROOT/requirements/controller.txt" "$REPO_ROOT/sample_app/requirements.txt" "$REPO_ROOT/sample_app/requirements-test.txt"
        "$REPO_ROOT/sample_links/requirements.txt")
  CONSTRAINTS="$REPO_ROOT/requirements/constraints.txt"
fi
stamp="$VENV/.requirements.sha256"
want=$(cat "${REQS[@]}" ${CONSTRAINTS:+"$CONSTRAINTS"} | sha256sum | cut -d' ' -f1)

if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  log "$PYTHON lacks venv/ensurepip: installing python3-venv"
  apt_install python3-venv
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
args=()
[ -z "$CONSTRAINTS" ] || args=(-c "$CONSTRAINTS")
for r in "${REQS[@]}"; do args+=(-r "$r"); done
retry 3 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}" \
  || die "pip install into $VENV failed 3 times"
echo "$want" >"$stamp"
log "$VENV is ready"
