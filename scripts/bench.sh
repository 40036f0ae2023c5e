#!/usr/bin/env bash
# `make bench`: provisioning and serving speed of the stack on a fresh local
# container host (bench/bench.py says what is measured). With a driver as
# first argument, the others: `make bench-scale` (bench/scale.py),
# provisioning time against the number of app hosts; `make bench-profile`
# (bench/app_profile.py ROW), where the app's workers spend a row's requests.
# Needs the controller venv on PATH (the Makefile sees to it); builds the
# chart venv itself.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The chart's own venv (matplotlib, and py-spy for the profile), from wheels only.
CHART_VENV="$REPO_ROOT/.cache/chart-venv"
FLASKOPS_VENV="$CHART_VENV" PIP_ONLY_BINARY=:all: "$REPO_ROOT/scripts/venv.sh" "$REPO_ROOT/requirements/bench.txt"

"$REPO_ROOT/scripts/testbed.sh" engine
"$REPO_ROOT/scripts/testbed.sh" image bookworm >/dev/null
BENCH_CHART_PYTHON="$CHART_VENV/bin/python" exec python3 "$REPO_ROOT/${1:-bench/bench.py}" "${@:2}"
