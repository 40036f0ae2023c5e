"""flaskops.stack `make bench`: runs a command (wrk) inside the bench host and
prints, after the command's own output, one line `cpu {json}`: the CPU time
(user + system, seconds) each process name used while it ran, from /proc
in the host's PID namespace (the container's processes only) (utime + stime of every process, read before and after), and
the command's own, from its rusage, under the command's name. The time is
taken per process: one that starts during the run counts from zero, and
one that ends before the run does (a recycled worker) is not counted; the
services a row measures (nginx, uWSGI, PostgreSQL) keep their processes
for the whole run.

usage: python3 cpu-around.py COMMAND [ARG...]
"""

from __future__ import annotations

import collections
import json
import os
import resource
import subprocess
import sys

TICK = os.sysconf("SC_CLK_TCK")


def ticks_per_process() -> dict[tuple[str, str], tuple[str, int]]:
    """(PID, start time): (name, utime + stime in clock ticks) of every
    process; the start time tells a reused PID from the process before it."""
    ticks = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
                line = stat.read()
        except OSError:  # gone since listdir
            continue
        # The name is between the first "(" and the last ")"; it may hold spaces.
        name = line[line.index("(") + 1:line.rindex(")")]
        fields = line[line.rindex(")") + 2:].split()
        # utime, stime and starttime: fields 14, 15 and 22 of stat.
        ticks[(pid, fields[19])] = (name, int(fields[11]) + int(fields[12]))
    return ticks


def main() -> int:
    before = ticks_per_process()
    done = subprocess.run(sys.argv[1:], check=False)
    after = ticks_per_process()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Per process, then per name: a process that started during the run
    # counts from 0; one that ended (a worker recycled) counts nothing.
    used: collections.Counter = collections.Counter()
    for process, (name, ticks) in after.items():
        used[name] += ticks - before.get(process, (name, 0))[1]
    cpu = {name: round(ticks / TICK, 2) for name, ticks in used.items() if ticks > 0}
    cpu[os.path.basename(sys.argv[1])] = round(usage.ru_utime + usage.ru_stime, 2)
    print("cpu " + json.dumps(cpu), flush=True)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
