#!/usr/bin/env bash
# Runs `molecule test` for each scenario given, at most MOLECULE_JOBS at a
# time. SCENARIO@DISTRO runs it on that Debian release (FLASKOPS_DISTRO, which
# .config/molecule/config.yml turns into the image); a bare SCENARIO runs on
# FLASKOPS_DISTRO (default: bookworm), the primary release: tests that do not
# depend on the release run there only (on_primary_distro_only in
# molecule/shared/flaskops_testinfra.py). A scenario of several hosts
# (multinode) puts some of them on FLASKOPS_SECOND_DISTRO, the other release
# of the pair. Each run has its own ephemeral directory and containers, and
# two runs of one scenario never overlap.
# core@VERSION[,VERSION...] is not a scenario: it runs scripts/core-matrix.sh
# for those ansible-core lines (one controller container) in the same slots.
# make@TARGET is not a scenario either: it runs `make TARGET` in a slot.
# beside@TARGET runs `make TARGET` beside the slots, started at once, in a
# CPU cgroup of its own (beside_cgroup below): a check that needs no
# test-bed host and is mostly one process takes a small share of the CPU
# while the scenarios keep both slots busy, and what they leave idle (in a
# slot, it would leave a core to the one scenario beside it, which cannot
# always use it).
# Each run logs to .cache/molecule/<run>.log; for a failed run, its failed
# tasks and tests and the end of its log are shown at the end, and the exit
# status is 1 if any failed.
#
#   scripts/molecule-all.sh nginx postgres base default@trixie core@2.20,2.21 make@sanity
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=molecule
# shellcheck source=scripts/lib.sh
. "$REPO_ROOT/scripts/lib.sh"
[ "$#" -gt 0 ] || die "usage: $0 SCENARIO..."
jobs_max=${MOLECULE_JOBS:-2}
primary=${FLASKOPS_DISTRO:-bookworm}
# The other release of the pair: FLASKOPS_SECOND_DISTRO of a run on $1.
second_of() { if [ "$1" = bookworm ]; then echo trixie; else echo bookworm; fi; }
logs="$REPO_ROOT/.cache/molecule"
mkdir -p "$logs"
cd "$REPO_ROOT"
declare -A named=()
for spec in "$@"; do
  case "$spec" in
    core@?* | make@?* | beside@?*) run=$spec ;;
    *) [ -f "molecule/${spec%@*}/molecule.yml" ] || die "no scenario molecule/${spec%@*}/molecule.yml (from '$spec')"
       run=${spec%@"$primary"} ;;
  esac
  [ -z "${named[$run]:-}" ] || die "'$spec' and '${named[$run]}' are the same run"
  named[$run]=$spec
done

declare -A pid_of=() started_at=()
failed=()
passed=()

# The machine's CPU time, busy and idle, in clock ticks (the first line of
# /proc/stat: user nice system idle iowait irq softirq steal ...): how
# busy the slots kept the machine, which says whether more of them could
# use it. Waiting for I/O counts as idle; other work on the machine counts
# too. The CPUs counted are those /proc/stat lists.
cpu_ticks() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }
read -r busy_before idle_before < <(cpu_ticks)
run_started=$(date +%s)

# Waits until one running scenario has ended and records how it went.
reap() {
  local run status took
  while :; do
    for run in "${!pid_of[@]}"; do
      if ! kill -0 "${pid_of[$run]}" 2>/dev/null; then
        status=0
        wait "${pid_of[$run]}" || status=$?
        took=$(( $(date +%s) - started_at[$run] ))
        unset "pid_of[$run]"
        if [ "$status" -eq 0 ]; then
          log "$run passed in ${took}s"
          passed+=("$run")
        else
          log "$run FAILED in ${took}s (status $status): $logs/$run.log"
          failed+=("$run")
        fi
        return 0
      fi
    done
    sleep 2
  done
}

# Prints the CPU cgroup the beside@ runs go into (made here when missing),
# or nothing where none can be made (not root, no cpu controller): there
# they take a slot, as make@ runs. Its weight is an eighth of one ordinary
# process's (cgroup v1 cpu.shares 128; v2 cpu.weight 12), however many
# processes run in it: Ansible's worker processes each start a session,
# and the kernel's autogroups (sched_autogroup_enabled) weigh each session
# as one process whatever its nice, so outside it the host-free checks'
# workers each took as much CPU as a scenario's process. An eighth leaves
# the slots most of the CPU while both scenarios use it, and the beside
# runs all that the scenarios leave idle (waits for services, timers, held
# requests). Not much lower: a check starved for minutes fails its own
# timeouts (the wiring tests give a playbook run RUN_TIMEOUT).
beside_cgroup() {
  local dir file weight
  if [ -e /sys/fs/cgroup/cpu/cpu.shares ]; then
    dir=/sys/fs/cgroup/cpu/flaskops-beside file=cpu.shares weight=128
  elif grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
    dir=/sys/fs/cgroup/flaskops-beside file=cpu.weight weight=12
  else
    return 0
  fi
  mkdir -p "$dir" 2>/dev/null || return 0
  if echo "$weight" 2>/dev/null >"$dir/$file"; then echo "$dir"; else rmdir "$dir" 2>/dev/null || true; fi
}

# How many runs hold a slot (beside@ runs do not).
slots_taken() {
  local run n=0
  for run in "${!pid_of[@]}"; do [ "${run%%@*}" = beside ] || n=$(( n + 1 )); done
  echo "$n"
}

# True when a run of the scenario of $1 is under way.
scenario_running() {
  local run
  for run in "${!pid_of[@]}"; do [ "${run%@*}" != "${1%@*}" ] || return 0; done
  return 1
}

queue=()
beside_group=
beside_runs=0
for spec in "$@"; do [ "${spec%%@*}" != beside ] || { beside_group=$(beside_cgroup); break; }; done
for spec in "$@"; do
  case "$spec" in
    beside@?*)
      if [ -z "$beside_group" ]; then
        log "no CPU cgroup for $spec (not root, or no cpu controller): it takes a slot"
        queue+=("make@${spec#beside@}")
        continue
      fi
      log "starting $spec beside the slots, in $beside_group (log: $logs/$spec.log)"
      started_at[$spec]=$(date +%s)
      (
        exec >"$logs/$spec.log" 2>&1
        echo "$BASHPID" 2>/dev/null >"$beside_group/cgroup.procs" || echo "[molecule] not moved into $beside_group"
        exec make --no-print-directory -C "$REPO_ROOT" "${spec#beside@}"
      ) &
      pid_of[$spec]=$!
      beside_runs=$(( beside_runs + 1 ))
      ;;
    *) queue+=("$spec") ;;
  esac
done
while [ "${#queue[@]}" -gt 0 ]; do
  while [ "$(slots_taken)" -ge "$jobs_max" ]; do reap; done
  # The first queued run whose scenario is not running (else wait for one).
  next=-1
  for i in "${!queue[@]}"; do
    if ! scenario_running "${queue[$i]}"; then next=$i; break; fi
  done
  if [ "$next" -lt 0 ]; then reap; continue; fi
  spec=${queue[$next]}
  queue=("${queue[@]:0:$next}" "${queue[@]:$((next + 1))}")
  scenario=${spec%@*}
  distro=$primary
  [ "$spec" = "$scenario" ] || distro=${spec#*@}
  run=$scenario
  [ "$distro" = "$primary" ] || run=$scenario@$distro
  if [ "$scenario" = core ]; then
    run=$spec
    log "starting $run: ansible-core ${spec#core@} (log: $logs/$run.log)"
    started_at[$run]=$(date +%s)
    "$REPO_ROOT/scripts/core-matrix.sh" "${spec#core@}" >"$logs/$run.log" 2>&1 &
  elif [ "$scenario" = make ]; then
    run=$spec
    log "starting $run (log: $logs/$run.log)"
    started_at[$run]=$(date +%s)
    make --no-print-directory -C "$REPO_ROOT" "${spec#make@}" >"$logs/$run.log" 2>&1 &
  else
    log "starting $run on $distro (log: $logs/$run.log)"
    started_at[$run]=$(date +%s)
    rm -rf "${logs:?}/$run.d"
    second=$(second_of "$distro")
    [ "$distro" != "$primary" ] || second=${FLASKOPS_SECOND_DISTRO:-$second}
    FLASKOPS_DISTRO=$distro FLASKOPS_SECOND_DISTRO=$second FLASKOPS_PRIMARY_DISTRO=$primary \
      MOLECULE_EPHEMERAL_DIRECTORY="$logs/$run.d" \
      molecule test -s "$scenario" >"$logs/$run.log" 2>&1 &
  fi
  pid_of[$run]=$!
done
while [ "${#pid_of[@]}" -gt 0 ]; do reap; done
# (Empty once its runs are over; a process they left keeps it.)
[ -z "$beside_group" ] || rmdir "$beside_group" 2>/dev/null || true
read -r busy_after idle_after < <(cpu_ticks)
busy=$(( busy_after - busy_before )) idle=$(( idle_after - idle_before ))
log "$# runs in $(( $(date +%s) - run_started ))s, $(( $# - beside_runs )) of them $jobs_max at a time and $beside_runs beside them:" \
    "the $(grep -c '^cpu[0-9]' /proc/stat) CPUs were busy $(( 100 * busy / (busy + idle > 0 ? busy + idle : 1) ))% of the time" \
    "($(( idle / $(getconf CLK_TCK) ))s of CPU idle)"

for run in "${failed[@]}"; do
  # What failed comes before the destroy step's output: the failed Ansible
  # tasks and pytest's failures, then the end of the log.
  echo "===== $run: failed tasks and tests in $logs/$run.log" >&2
  sed 's/\x1b\[[0-9;]*m//g' "$logs/$run.log" |
    awk '{ line = $0; sub(/^ *│ */, "", line) }
         line ~ /^(fatal|failed): |^ERROR! |^\[ERROR\]: /{ print; n = 6; next }
         line ~ /=+ (FAILURES|ERRORS) =+/{ p = 1 }
         p { print; if (line ~ /(passed|failed|error).* in [0-9.]+s/) p = 0; next }
         n > 0 { print; n-- }' | head -n 400 >&2 || true  # (head ends a long list early)
  echo "===== $run: last 60 lines of $logs/$run.log" >&2
  sed 's/\x1b\[[0-9;]*m//g' "$logs/$run.log" | tail -n 60 >&2
done
[ "${#failed[@]}" -eq 0 ] || die "failed: ${failed[*]} (passed: ${passed[*]:-none})"
[ "${#passed[@]}" -eq "$#" ] || die "only ${#passed[@]} of $# scenarios reported back"
log "all passed: ${passed[*]}"
