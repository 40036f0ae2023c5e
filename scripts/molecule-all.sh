#!/usr/bin/env bash
# Runs `molecule test` for each scenario given, at most MOLECULE_JOBS at a
# time (their containers have scenario-specific names, so they do not clash).
# Each scenario logs to .cache/molecule/<scenario>.log; the log of a failed
# scenario is shown at the end, and the exit status is 1 if any failed.
#
#   scripts/molecule-all.sh app nginx postgres base
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=molecule
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"
[ "$#" -gt 0 ] || die "usage: $0 SCENARIO..."
jobs_max=${MOLECULE_JOBS:-2}
logs="$REPO_ROOT/.cache/molecule"
mkdir -p "$logs"
cd "$REPO_ROOT"

declare -A pid_of=() started_at=()
failed=()
passed=()

# Waits until one running scenario has ended and records how it went.
reap() {
  local scenario status took
  while :; do
    for scenario in "${!pid_of[@]}"; do
      if ! kill -0 "${pid_of[$scenario]}" 2>/dev/null; then
        status=0
        wait "${pid_of[$scenario]}" || status=$?
        took=$(( $(date +%s) - started_at[$scenario] ))
        unset "pid_of[$scenario]"
        if [ "$status" -eq 0 ]; then
          log "$scenario passed in ${took}s"
          passed+=("$scenario")
        else
          log "$scenario FAILED in ${took}s (status $status): $logs/$scenario.log"
          failed+=("$scenario")
        fi
        return 0
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
[ "${#failed[@]}" -eq 0 ] || die "failed: ${failed[*]} (passed: ${passed[*]:-none})"
[ "${#passed[@]}" -eq "$#" ] || die "only ${#passed[@]} of $# scenarios reported back"
log "all passed: ${passed[*]}"
