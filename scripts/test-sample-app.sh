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
# Each app's suite in its own pytest process, from its own directory (both
# have a top-level package of their own); either failing fails the target.
status=0
for app in sample_app sample_links; do
  log "$app"
  (cd "$REPO_ROOT/$app" && "$VENV/bin/python" -m pytest "$@") || status=1
done
exit "$status"
