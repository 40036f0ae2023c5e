#!/usr/bin/env bash
# Runs the sample app's pytest suite against a real PostgreSQL server: the
# suite's fixture creates a throwaway cluster with the server binaries of
# Debian's postgresql package, installed here when missing.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${FLASKOPS_VENV:-$REPO_ROOT/.venv}

if [ -z "${TEST_DATABASE_URL:-}" ] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  echo "[sample-app] installing Debian's postgresql server for the tests" >&2
  n=1
  until apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; do
    [ "$n" -ge 3 ] && exit 1
    sleep $((n * 5)); n=$((n + 1))
  done
fi
cd "$REPO_ROOT/sample_app"
exec "$VENV/bin/python" -m pytest "$@"
