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
# The interpreter the venv is made from: PYTHON if set; else the
# distribution's /usr/bin/python3 when it is 3.11 or newer (the controller's
# floor for ansible-core 2.19), else python3 from PATH. Debian links its
# python3 statically with the interpreter's library; a build made with
# --enable-shared (pyenv's, on the machine this project is tested on) runs
# the same Ansible work with more CPU, and make test is CPU-bound.
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  if /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    PYTHON=/usr/bin/python3
  fi
fi
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

# A venv made from another interpreter than this one is made again.
home=$("$PYTHON" -c 'import os, sys; print(os.path.dirname(os.path.abspath(sys._base_executable)))')
made_from=$(sed -n 's/^home = //p' "$VENV/pyvenv.cfg" 2>/dev/null || true)
if [ -x "$VENV/bin/python" ] && [ "$made_from" = "$home" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  log "$PYTHON lacks venv/ensurepip: installing python3-venv"
  apt_install python3-venv
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
elif [ "$made_from" != "$home" ]; then
  log "$VENV was made from ${made_from:-an unknown Python}: making it again from $home"
  rm -f "$stamp"
  "$PYTHON" -m venv --clear "$VENV"
fi
args=()
[ -z "$CONSTRAINTS" ] || args=(-c "$CONSTRAINTS")
for r in "${REQS[@]}"; do args+=(-r "$r"); done
retry 3 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}" \
  || die "pip install into $VENV failed 3 times"
echo "$want" >"$stamp"
log "$VENV is ready"
