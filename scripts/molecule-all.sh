#!/usr/bin/env bash
# Runs `molecule test` for each scenario given, at most MOLECULE_JOBS at a
# time (their containers have scenario-specific names, so they do not clash).
# Each scenario logs to .cache/molecule/<scenario>.log; the log of a failed
# scenario is shown at the end.
#
#   scripts/molecule-all.sh app nginx postgres base
set -uo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=molecule
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"
jobs_max=${MOLECULE_JOBS:-2}
logs="$REPO_ROOT/.cache/molecule"
mkdir -p "$logs"
cd "$REPO_ROOT" || exit 1

declare -A pid_of started_at
failed=()
finish() {  # $1: scenario whose job ended with status $2
  local took=$(( $(date +%s) - started_at[$1] ))
  if [ "$2" -eq 0 ]; then
    log "$1 passed in ${took}s"
  else
    log "$1 FAILED in ${took}s (status $2): $logs/$1.log"
    failed+=("$1")
  fi
}
reap() {  # wait for one job to end, record how it went
  local s
  while :; do
    for s in "${!pid_of[@]}"; do
      if ! kill -0 "${pid_of[$s]}" 2>/dev/null; then
        wait "${pid_of[$s]}"; finish "$s" $?
        unset "pid_of[$s]"
        return
      fi
    done
    sleep 2
  done
}

for scenario in "$@"; do
  while [ "${#pid_of[@]}" -ge "$jobs_max" ]; do reap; done
  log "starting $scenario (log: $logs/$scenario.log)"
  started_at[$scenario]=$(date +%s)
  molecule test -s "$scenario" >"$logs/$scenario.log" 2>&1 &
  pid_of[$scenario]=$!
done
while [ "${#pid_of[@]}" -gt 0 ]; do reap; done

for scenario in "${failed[@]}"; do
  echo "===== $scenario: last 150 lines of $logs/$scenario.log" >&2
  sed 's/\x1b\[[0-9;]*m//g' "$logs/$scenario.log" | tail -n 150 >&2
done
[ "${#failed[@]}" -eq 0 ] || die "failed: ${failed[*]}"
log "all passed: $*"
