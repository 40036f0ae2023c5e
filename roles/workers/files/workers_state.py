"""Which release each worker of an app runs, and whether they all run the live one.

Run by the `workers` role on the app host (python3 -c, as nothing installed):

    state CURRENT UNIT...
        prints {"target": release, "units": {unit: {...}}} as JSON: the
        release CURRENT points at, and for each unit its state, main PID,
        restart count and the release its process started on (read from its
        FLASKOPS_RELEASE, which flaskops-run-release sets).
    check CURRENT SETTLE TIMEOUT UNIT...
        waits until every unit is running the release CURRENT points at
        and has stayed up SETTLE seconds without a restart; after TIMEOUT
        seconds, exits 1 naming the units that did not, with the end of
        their journal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

PROPERTIES = ("ActiveState", "SubState", "MainPID", "NRestarts", "ExecMainStartTimestampMonotonic")


def target_release(current: str) -> str:
    path = os.path.realpath(current)
    return os.path.basename(path) if os.path.isdir(path) else ""


def process_release(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            for item in environ.read().split(b"\0"):
                if item.startswith(b"FLASKOPS_RELEASE="):
                    return item.split(b"=", 1)[1].decode(errors="replace")
    except OSError:
        pass
    return ""


def unit_state(unit: str) -> dict:
    shown = subprocess.run(["systemctl", "show", unit, *(f"--property={name}" for name in PROPERTIES)],
                           check=True, capture_output=True, text=True).stdout
    props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    pid = int(props.get("MainPID") or 0)
    started = int(props.get("ExecMainStartTimestampMonotonic") or 0)
    return {
        "active": props.get("ActiveState", ""), "sub": props.get("SubState", ""), "pid": pid,
        "restarts": int(props.get("NRestarts") or 0),
        "release": process_release(pid) if pid else "",
        "up_seconds": round(time.clock_gettime(time.CLOCK_MONOTONIC) - started / 1e6, 1) if pid and started else 0,
    }


def state(current: str, units: list[str]) -> dict:
    return {"target": target_release(current), "units": {unit: unit_state(unit) for unit in units}}


def check(current: str, settle: float, timeout: float, units: list[str]) -> int:
    deadline = time.monotonic() + timeout
    first = {unit: unit_state(unit)["restarts"] for unit in units}
    while True:
        seen = state(current, units)
        waiting = {unit: got for unit, got in seen["units"].items()
                   if not (got["active"] == "active" and got["sub"] == "running" and got["release"] == seen["target"]
                           and got["up_seconds"] >= settle)}
        if not waiting:
            print(json.dumps(seen))
            return 0
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    for unit, got in waiting.items():
        print(f"{unit}: {got['active']}/{got['sub']}, release {got['release'] or 'none'} "
              f"(wanted {seen['target']} for {settle:g} s), up {got['up_seconds']} s, "
              f"{got['restarts'] - first[unit]} restarts in {timeout:g} s", file=sys.stderr)
        journal = subprocess.run(["journalctl", "--unit", unit, "--lines", "15", "--no-pager", "--output", "cat"],
                                 check=False, capture_output=True, text=True).stdout
        print("\n".join("  " + line for line in journal.splitlines()), file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "state":
        print(json.dumps(state(argv[1], argv[2:])))
        return 0
    if len(argv) >= 4 and argv[0] == "check":
        return check(argv[1], float(argv[2]), float(argv[3]), argv[4:])
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
