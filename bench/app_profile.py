"""flaskops.stack `make bench-profile`: where the shipped app's uWSGI workers
spend a row's requests, on the host `make bench` left running.

wrk loads the row's URL inside the host as the bench does (its threads and
connections); meanwhile py-spy, from this machine, samples every uWSGI
worker of the shipped app (wall clock, idle included, without pausing them:
time spent waiting on PostgreSQL counts). Each sample is put in the first
stage below whose frames it holds, in the order of the list;
samples outside Flask's call are the worker in uWSGI's own loop (waiting
for a request, reading it, writing the answer). It samples twice, SECONDS
each: wall clock (every sample, waiting on PostgreSQL or for a CPU
included), then only the samples in which a worker is on a CPU.

Prints the share of each stage and writes it, with the raw samples, to
bench/results/profile-<row>-<date>.txt (<date>-2... for a later run that day), .wall.raw and .cpu.raw (.json: the
run's settings and wrk's req/s).
usage: app_profile.py [ROW]  (B, C or G, default G; BENCH_HOST, BENCH_PROFILE_SECONDS (10));
app_profile.py --report bench/results/profile-ROW-DATE.json renders a saved one.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import CONNECTIONS, HOST, RESULTS, ROOT, ROWS, THREADS, log, new_stem  # bench/bench.py

SECONDS = int(os.environ.get("BENCH_PROFILE_SECONDS", "10"))
RATE = 100  # samples per second and worker
APP = "flaskapp"  # the shipped app: its uWSGI instance is /etc/uwsgi/flaskapp.ini
# The rows that instance serves (the others: uWSGI instances of bench/extras.yml, or nginx alone).
SERVED_BY_APP = ("B", "C", "G")
PY_SPY = ROOT / ".cache" / "chart-venv" / "bin" / "py-spy"  # requirements/bench.txt
# (stage, pattern a frame of the sample matches), tried in this order: a
# sample in the pre-ping is also in the pool checkout, and both are inside
# the query's call.
STAGES = [
    ("session end: rollback and return of the connection", r"_teardown_session|\bremove \([^;]*scoping"),
    ("pool checkout: pre-ping (a query per checkout)", r"\b_?do_ping|_do_ping_w_event"),
    ("pool checkout: the rest", r"\b_checkout \([^;]*pool/base|_ConnectionFairy"),
    ("ORM: rows to Note objects", r"orm/loading\.py"),
    ("query: execute and fetch (psycopg, PostgreSQL)", r"psycopg/"),
    ("query: SQLAlchemy compiling and running the statement", r"sqlalchemy/(engine|sql)/"),
    ("serialising: to_dict and jsonify", r"\bto_dict \(|json/"),
    ("the rest of the app and Flask", r"."),
]
# A sample outside Flask's call: the worker in uWSGI's own loop.
OUTSIDE = "uWSGI's own loop: waiting for a request, reading it, writing the answer"


def workers() -> list[str]:
    """PIDs, as this machine sees them, of the shipped app's uWSGI workers."""
    out = subprocess.run(["docker", "top", HOST, "-eo", "pid,ppid,args"], text=True, capture_output=True,
                         check=True).stdout.splitlines()[1:]
    procs = [line.split(None, 2) for line in out]
    uwsgi = {pid: ppid for pid, ppid, args in procs if args.endswith(f"--ini /etc/uwsgi/{APP}.ini")}
    # Workers are the children of the app's master (a uwsgi whose parent is not a uwsgi).
    masters = {pid for pid, ppid in uwsgi.items() if ppid not in uwsgi}
    return [pid for pid, ppid in uwsgi.items() if ppid in masters]


def sample(pids: list[str], wall: bool) -> str:
    """py-spy's raw samples of the workers over SECONDS: every sample (wall
    clock) or only those in which a worker was on a CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        spies = [subprocess.Popen([str(PY_SPY), "record", "--pid", pid, "--duration", str(SECONDS), "--rate",
                                   str(RATE), *(["--idle"] if wall else []), "--nonblocking", "--format", "raw",
                                   "--output", f"{tmp}/{pid}.raw"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for pid in pids]
        failed = [spy.communicate()[1] for spy in spies if spy.wait()]
        if failed:
            # It needs root (ptrace) and the workers' PIDs as this machine sees them.
            raise SystemExit("py-spy failed:\n" + failed[0])
        return "".join(Path(f"{tmp}/{pid}.raw").read_text() for pid in pids)


def stages(raw: str) -> collections.Counter:
    """Samples per stage (STAGES, else OUTSIDE) of py-spy's raw output."""
    counts: collections.Counter = collections.Counter()
    for line in raw.splitlines():
        stack, _space, n = line.rpartition(" ")
        in_app = re.search(r"Flask\.__call__", stack)
        counts[next((name for name, pattern in STAGES if re.search(pattern, stack)), OUTSIDE) if in_app
               else OUTSIDE] += int(n)
    return counts


def render(stem: Path) -> str:
    """The report of a saved profile (stem.json, stem.wall.raw, stem.cpu.raw), written to stem.txt."""
    run = json.loads(stem.with_suffix(".json").read_text())
    counts = {mode: stages(stem.with_suffix(f".{mode}.raw").read_text()) for mode in ("wall", "cpu")}
    in_app = sum(v for k, v in counts["cpu"].items() if k != OUTSIDE)
    lines = [f"Row {run['row']} ({run['url']}), {run['date']}: py-spy over the {run['workers']} uWSGI workers of "
             f"the shipped app, {run['rate']} samples/s each, without pausing them, while wrk ({THREADS} threads, "
             f"{CONNECTIONS} connections) served {run['rps']} req/s.", "",
             f"wall: share of every sample of {run['seconds']} s (waiting on PostgreSQL or for a CPU included). "
             f"cpu: share of the samples of the next {run['seconds']} s in which the worker ran the app's Python "
             "code on a CPU (py-spy cannot tell uWSGI's own C loop waiting from working, so samples outside "
             "Flask's call are left out of this column).", "", "  wall    cpu  stage"]
    for name in [name for name, _pattern in STAGES] + [OUTSIDE]:
        wall = f"{counts['wall'][name] / max(sum(counts['wall'].values()), 1):5.1%}"
        cpu = f"{counts['cpu'][name] / max(in_app, 1):5.1%}" if name != OUTSIDE else "    -"
        lines.append(f"{wall}  {cpu}  {name}")
    if run["rps"]:
        per_request = in_app / run["rate"] / (run["rps"] * run["seconds"]) * 1e6
        lines += ["", f"The app's Python code on a CPU: {in_app} samples, {in_app / run['rate']:.1f} s of the "
                  f"workers' time in {run['seconds']} s, about {per_request:.0f} us per request at {run['rps']} "
                  "req/s."]
    report = "\n".join(lines) + "\n"
    stem.with_suffix(".txt").write_text(report)
    return report


def main() -> int:
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if sys.argv[1:2] == ["--report"] and len(sys.argv) == 3:
        print(render(Path(sys.argv[2]).with_suffix("")))
        return 0
    row = sys.argv[1] if sys.argv[1:] else "G"
    if row not in SERVED_BY_APP:
        raise SystemExit(f"row {row}: the shipped app's workers serve rows {', '.join(SERVED_BY_APP)} only")
    url = next(u for key, _label, u, _counted in ROWS if key == row)
    pids = workers()
    if not pids:
        raise SystemExit(f"no uWSGI worker of the shipped app in {HOST}: run `make bench` first")
    log(f"row {row}: wrk {2 * SECONDS + 4} s on {url}; py-spy {SECONDS} s wall clock, then {SECONDS} s on CPU, "
        f"on workers {' '.join(pids)}")
    load = subprocess.Popen(["docker", "exec", HOST, "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}",
                             f"-d{2 * SECONDS + 4}s", url], stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    raw = {mode: sample(pids, mode == "wall") for mode in ("wall", "cpu")}
    wrk_out = load.communicate()[0]
    rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk_out)
    run = {"row": row, "url": url, "date": dt.date.today().isoformat(), "workers": len(pids), "seconds": SECONDS,
           "rate": RATE, "rps": float(rps.group(1)) if rps else None}
    stem = RESULTS / new_stem(run["date"], f"profile-{row.replace(chr(39), 'p')}-")
    stem.with_suffix(".json").write_text(json.dumps(run, indent=2) + "\n")
    for mode, text in raw.items():
        stem.with_suffix(f".{mode}.raw").write_text(text)
    report = render(stem)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
