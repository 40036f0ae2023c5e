#!/usr/bin/env bash
# Runs the sample app's pytest suite against a real PostgreSQL server: the
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
cd "$REPO_ROOT/sample_app"
exec "$VENV/bin/python" -m pytest "$@"
