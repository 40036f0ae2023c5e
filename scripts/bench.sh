#!/usr/bin/env bash
# `make bench`: provisioning and serving speed of the stack on a fresh local
# container host (bench/bench.py says what is measured); `make bench-scale`
# (scripts/bench.sh bench/scale.py): provisioning time against the number of
# app hosts. Needs the controller venv on PATH (the Makefile sees to it);
# builds the chart venv itself.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The chart's own venv (matplotlib), from wheels only.
CHART_VENV="$REPO_ROOT/.cache/chart-venv"
FLASKOPS_VENV="$CHART_VENV" PIP_ONLY_BINARY=:all: "$REPO_ROOT/scripts/venv.sh" "$REPO_ROOT/requirements/bench.txt"

"$REPO_ROOT/scripts/testbed.sh" engine
"$REPO_ROOT/scripts/testbed.sh" image bookworm >/dev/null
BENCH_CHART_PYTHON="$CHART_VENV/bin/python" exec python3 "$REPO_ROOT/${1:-bench/bench.py}"
