#!/usr/bin/env bash
# `make bench`: provisioning and serving speed of the stack on a fresh local
# container host (bench/bench.py says what is measured). Needs the controller
# venv on PATH (the Makefile sees to it); builds the chart venv itself.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LOG_TAG=bench
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"

CHART_VENV="$REPO_ROOT/.cache/chart-venv"
want=$(sha256sum "$REPO_ROOT/requirements/bench.txt" | cut -d' ' -f1)
if [ "$(cat "$CHART_VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  log "building the chart venv ($CHART_VENV)"
  python3 -m venv --clear "$CHART_VENV"
  retry 3 "$CHART_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --only-binary :all: -r "$REPO_ROOT/requirements/bench.txt" || die "pip install of the chart venv failed"
  echo "$want" >"$CHART_VENV/.requirements.sha256"
fi

"$REPO_ROOT/scripts/testbed.sh" engine
"$REPO_ROOT/scripts/testbed.sh" image bookworm >/dev/null
BENCH_CHART_PYTHON="$CHART_VENV/bin/python" exec python3 "$REPO_ROOT/bench/bench.py"
