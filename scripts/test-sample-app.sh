#!/usr/bin/env bash
# Runs the sample apps' pytest suites against a real PostgreSQL server: the
# suite's fixture creates a throwaway cluster with the server binaries of
# Debian's postgresql package, installed here when missing.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FLASKOPS_VENV:-$REPO_ROOT/.venv}
LOG_TAG=sample-app
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"

if [ -z "${TEST_DATABASE_URL:-}" ] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  log "installing Debian's postgresql server for the tests"
  apt_install postgresql
fi
[ -x "$VENV/bin/python" ] || die "no venv at $VENV: make venv (scripts/venv.sh) creates it"
APPS=(sample_app sample_links)

# Each app's pinned requirements (its runtime and its tests'), installed into
# the venv when one is missing or at another version: scripts/venv.sh installs
# them too, but a venv may predate an app or a pin.
pins_missing() {
  "$VENV/bin/python" - "$@" <<'PY'
import re, sys
from importlib.metadata import PackageNotFoundError, version

missing = []
for path in sys.argv[1:]:
    for line in open(path, encoding="utf-8"):
        pin = re.match(r"\s*([A-Za-z0-9._-]+)(?:\[[^]]*\])?\s*==\s*([^\s;#]+)", line)
        if not pin:
            continue
        try:
            installed = version(pin[1])
        except PackageNotFoundError:
            installed = None
        if installed != pin[2]:
            missing.append(f"{pin[1]}=={pin[2]} (installed: {installed or 'none'})")
print("\n".join(missing))
sys.exit(0 if missing else 1)
PY
}
for app in "${APPS[@]}"; do
  reqs=("$REPO_ROOT/$app/requirements.txt" "$REPO_ROOT/$app/requirements-test.txt")
  if missing=$(pins_missing "${reqs[@]}"); then
    log "$app: installing its requirements into $VENV: ${missing//$'\n'/, }"
    args=()
    [ ! -f "$REPO_ROOT/requirements/constraints.txt" ] || args=(-c "$REPO_ROOT/requirements/constraints.txt")
    for r in "${reqs[@]}"; do args+=(-r "$r"); done
    retry 3 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}" \
      || die "pip install of $app's requirements into $VENV failed 3 times"
  fi
done

# Each app's suite in its own pytest process, from its own directory (both
# have a top-level package of their own); either failing fails the target.
status=0
for app in "${APPS[@]}"; do
  log "$app"
  (cd "$REPO_ROOT/$app" && "$VENV/bin/python" -m pytest "$@") || status=1
done
exit "$status"
