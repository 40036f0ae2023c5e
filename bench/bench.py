"""flaskops.stack `make bench`: provisioning and serving speed, measured in one run.

1. The reference recipe done by hand (bench/recipe-by-hand.sh) on a fresh
   container host, alone on the machine, timed to its first 200 through
   nginx; then that host is removed. A fresh container host from the same
   image (scripts/local-host.sh create) gets the whole stack from
   playbooks/site.yml with the shipped defaults: the cold converge, then a
   warm re-run that must report changed=0, then the same warm re-run under
   Mitogen's strategy. Wall time and time per role of each, and where apt
   spent its time on both fresh hosts (their apt and dpkg logs).
2. bench/extras.yml adds the endpoints of the rows the shipped site does not
   have (raw uWSGI, plain HTTP, TCP, the reference recipe's uWSGI settings
   behind this collection's nginx, and the whole recipe: its own nginx
   configuration, bench/recipe-nginx.conf, in front of those settings), and
   row G0: row G's page from the sample app of BASELINE_REF.
3. wrk runs inside the container against its own 127.0.0.1, the same
   connections and threads for every row, ROUNDS rounds after a warm-up.
   Rows whose ratio has a target run back to back (A' then B, R then C then
   RN, E then F, G0 then G; the other way round in every other round), and each round
   starts one group later, so a slow minute of a shared machine hits both
   rows of a ratio alike. A ratio is taken per round, from the two rows' runs
   of that round; a target on it is met only when its lowest round meets it.
4. bench/results/<date>.json, .md and .png (<date>-2 for the day's second
   run, and so on); docs/benchmarks.md shows the
   table and chart of the latest run between its bench markers.

The exit status is 1 when a row saw errors, a target was missed or the
recipe by hand failed.
`bench.py --report bench/results/<date>.json` renders a saved run again (rewriting
that .json, its .md and docs/benchmarks.md); `bench.py --help` prints this.
Settings (environment): BENCH_ROUNDS (5), BENCH_DURATION seconds per run (10),
BENCH_CONNECTIONS (50), BENCH_THREADS (2), BENCH_HOST (flaskops-bench).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = os.environ.get("BENCH_HOST", "flaskops-bench")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
LUA = "/root/wrk-report.lua"
# Runs wrk and reports the CPU time of each process name in the host over the run.
CPU_AROUND = "/root/cpu-around.py"
# Process names whose CPU time per request each row reports (name prefixes,
# any case: uWSGI may rename its processes); the rest is "other".
CPU_NAMES = ("nginx", "uwsgi", "postgres", "wrk")
# Row RN's nginx configuration: the reference recipe's, with each change
# marked by a "# adjusted:" comment line, which the report lists.
RECIPE_NGINX = ROOT / "bench" / "recipe-nginx.conf"
ADJUSTED = re.compile(r"^\s*# adjusted: (.+)$", re.MULTILINE)
# A header that only the recipe's server block sends: proves that row RN's
# port is answered by it, not by one of this collection's sites.
RECIPE_NGINX_HEADER = "X-XSS-Protection"

DYNAMIC = "/api/client"  # a Flask view without database access, Cache-Control: no-store
# Rows: key, label, URL inside the host, whether targets count it.
# The ceiling is row A': uWSGI answering HTTP itself with keep-alive
# (http11-socket), as wrk keeps its connections to nginx alive. Row A is the
# plain http-socket: it closes the connection after each response without
# saying so, and wrk counts a read error per request there (a reconnect, not
# a failed request), so read errors are not failures for row A.
# Rows R and RN are the reference recipe beside the shipped site (C): R is
# the recipe's uWSGI settings behind this collection's nginx, RN the same
# uWSGI behind the recipe's own nginx configuration (R + the recipe's Nginx;
# no other key starts with R, and S would read as an unrelated next row).
# Row G0's app: the sample app of the commit before its reads went from four
# round trips to PostgreSQL to one (pool pre-ping, a transaction around each
# read), served beside row G by the same venv, uWSGI settings and nginx site
# configuration (bench/extras.yml).
BASELINE_REF = "1cc28b83959c5c3323fbc4dfab289e9b3da9c9cd"
BASELINE_DIR = "/srv/bench-baseline"
RECONNECTING = {"A"}
ROWS = [
    ("A", "raw uWSGI http-socket (reconnects)", "http://127.0.0.1:9090" + DYNAMIC, True),
    ("A'", "raw uWSGI http11-socket, keep-alive (the ceiling)", "http://127.0.0.1:9091" + DYNAMIC, True),
    ("B", "nginx -> unix socket, HTTP", "http://127.0.0.1:8081" + DYNAMIC, True),
    ("C", "nginx -> unix socket, HTTPS keep-alive (shipped site)", "https://127.0.0.1" + DYNAMIC, True),
    ("D", "nginx -> uWSGI over TCP loopback", "http://127.0.0.1:8082" + DYNAMIC, True),
    ("E", "static file from nginx (/static/css/app.css)", "http://127.0.0.1:8081/static/css/app.css", True),
    ("F", "cached dynamic page (uwsgi_cache HIT)", "http://127.0.0.1:8081/api/info", True),
    ("G", "page reading 50 rows from PostgreSQL", "http://127.0.0.1:8081/api/notes", True),
    ("G0", f"row G's page from the sample app of {BASELINE_REF[:7]} (pre-ping, reads in a transaction)",
     "http://127.0.0.1:8084/api/notes", True),
    ("R", "reference recipe's uWSGI settings behind this collection's nginx, HTTPS", "https://127.0.0.1:8443" + DYNAMIC,
     True),
    ("RN", "whole reference recipe: its nginx server block and uWSGI settings, HTTPS", "https://127.0.0.1:8444" + DYNAMIC,
     True),
]
# Rows measured back to back in each round (see measure()). C sits between
# R and RN so that both C/R and C/RN are back to back; R/RN is one run apart.
GROUPS = [("A'", "B"), ("R", "C", "RN"), ("E", "F"), ("A",), ("D",), ("G0", "G")]
# name, numerator, denominator, lower bound (None: reported only)
RATIOS = [("B/A'", "B", "A'", 0.85), ("B/A", "B", "A", None), ("C/B", "C", "B", None), ("D/B", "D", "B", None),
          ("F/E", "F", "E", 0.80), ("C/R", "C", "R", 1.25), ("C/RN", "C", "RN", None), ("R/RN", "R", "RN", None),
          ("G/G0", "G", "G0", 1.5)]
P99_LIMIT_MS = {"C": 50.0}
# Provisioning runs: key in the results, label in the reports.
PHASES = {"cold": "cold converge", "warm": "warm re-run", "warm_mitogen": "warm re-run, Mitogen strategy"}
WARM_PHASES = ("warm", "warm_mitogen")  # each must report changed=0
# Wall-time limit of each provisioning run, seconds (issue 20's targets).
PHASE_LIMIT_S = {"cold": 75.0, "warm": 30.0, "warm_mitogen": 15.0}
# Actions that run on the controller only: no module goes to the host.
CONTROLLER_ACTIONS = {"debug", "set_fact", "assert", "fail", "meta", "include_tasks", "import_tasks",
                      "include_role", "import_role", "include_vars", "add_host", "group_by", "pause",
                      "set_stats", "validate_argument_spec"}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def sh(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, text=True, **kw)


def untar_into(host: str, directory: str, archive: bytes) -> None:
    """Unpacks a tar archive into a directory of a container host, owned by root."""
    subprocess.run(["docker", "exec", "-i", host, "tar", "-x", "--no-same-owner", "-C", directory],
                   input=archive, check=True)


def in_host(script: str) -> str:
    done = subprocess.run(["docker", "exec", HOST, "bash", "-euo", "pipefail", "-c", script],
                          text=True, capture_output=True, check=False)
    if done.returncode:
        raise SystemExit(f"in {HOST}: {script}\n{done.stdout}{done.stderr}")
    return done.stdout


# --- Provisioning ----------------------------------------------------------------

def _seconds(duration: dict) -> float:
    if "end" not in duration:  # a task that never ran on a host (meta, empty include)
        return 0.0
    end, start = (dt.datetime.fromisoformat(duration[k].replace("Z", "+00:00")) for k in ("end", "start"))
    return (end - start).total_seconds()


def mitogen() -> tuple[dict, list[str]]:
    """Environment and arguments that run a playbook under Mitogen's linear strategy.

    Mitogen replaces the connection only when it is named by its short name
    (`docker`, `ssh`), so the inventory's community.docker.docker is overridden.
    """
    import ansible_mitogen  # pylint: disable=import-outside-toplevel  # in .venv (requirements/controller.txt)

    plugins = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return ({"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear"},
            ["-e", "ansible_connection=docker"])


def host_task_runs(result: dict) -> int:
    """How many times a task's action ran on the host: once per loop item
    and per retry; not where skipped, delegated to the controller, or an
    action that stays on the controller (set_fact, assert, include_*...).
    An action such as template or copy counts once, though it sends more
    than one module (a stat, then the copy when the file differs)."""
    action = result.get("action", "").rsplit(".", 1)[-1]
    if not result or action in CONTROLLER_ACTIONS:
        return 0

    def ran(one: dict) -> int:
        delegated = (one.get("_ansible_delegated_vars") or {}).get("ansible_connection") == "local"
        return 0 if one.get("skipped") or delegated else int(one.get("attempts", 1))

    if "results" in result:
        return sum(ran(item) for item in result["results"])
    return ran(result)


def converge(label: str, playbook: str, env_extra: dict | None = None, args: tuple | list = (),
             inventory: Path = ROOT / "bench" / "inventory") -> dict:
    """Runs a playbook against an inventory's hosts (the bench host's by
    default); its JSON report, summarised over every host: changed and ok
    summed, task runs counted on each host. controller_cpu_s is the user +
    system CPU time of ansible-playbook and its forks on the controller."""
    # The JSON report on stdout; timer (text after it) instead of profile_tasks.
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.timer", **(env_extra or {}))
    cmd = ["ansible-playbook", "-i", str(inventory), *args, str(ROOT / playbook)]
    log(f"{label}: {' '.join(cmd[1:])}")
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, text=True, capture_output=True, cwd=ROOT, check=False)
    wall = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    (ROOT / ".cache" / "bench").mkdir(parents=True, exist_ok=True)
    (ROOT / ".cache" / "bench" / f"{label}.json").write_text(done.stdout)
    try:
        report = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("{"):])[0]
    except ValueError:
        raise SystemExit(f"{label}: no JSON report (exit {done.returncode})\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    stats = {key: sum(host[key] for host in report["stats"].values())
             for key in ("changed", "ok", "failures", "unreachable")}
    if done.returncode or stats["failures"] or stats["unreachable"]:
        raise SystemExit(f"{label}: the playbook failed (see .cache/bench/{label}.json)")
    per_role: dict[str, float] = {}
    host_runs: dict[str, int] = {}
    tasks = []
    apt_s = 0.0
    for play in report["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"]
            role = name.split(" : ")[0].removeprefix("flaskops.stack.") if " : " in name else "(play)"
            seconds = _seconds(task["task"]["duration"])
            per_role[role] = per_role.get(role, 0.0) + seconds
            tasks.append((seconds, name))
            if any(r.get("action", "").rsplit(".", 1)[-1] == "apt" for r in task["hosts"].values()):
                apt_s += seconds
            runs = sum(host_task_runs(result) for result in task["hosts"].values())
            if runs:
                host_runs[role] = host_runs.get(role, 0) + runs
    tasks.sort(reverse=True)
    return {
        "wall_s": round(wall, 1),
        "controller_cpu_s": round(cpu, 1),
        "changed": stats["changed"],
        "ok": stats["ok"],
        "tasks": len(tasks),
        "per_role_s": {k: round(v, 1) for k, v in sorted(per_role.items(), key=lambda kv: -kv[1])},
        "host_task_runs": sum(host_runs.values()),
        "host_task_runs_per_role": dict(sorted(host_runs.items(), key=lambda kv: -kv[1])),
        "slowest_tasks": [{"task": n, "s": round(s, 1)} for s, n in tasks[:6]],
        "apt_tasks_s": round(apt_s, 1),
    }


RECIPE_HOST = HOST + "-recipe"  # the fresh host the recipe is done on by hand
RECIPE_BY_HAND = ROOT / "bench" / "recipe-by-hand.sh"


def recipe_by_hand() -> dict:
    """The reference recipe done by hand (bench/recipe-by-hand.sh) on a fresh
    host from the image the cold converge starts from: its wall time and the
    apt profile of that host. It runs before the bench host exists, alone on
    the machine. The app's source (the working tree's, which the converge
    deploys too), the script, the recipe's server block and the machine's
    extra CA (which the bench host gets from the base role) go in before the
    clock starts. A failure is recorded, not raised."""
    sh([str(ROOT / "scripts" / "local-host.sh"), "create", RECIPE_HOST])
    try:
        archive = subprocess.run(["tar", "-c", "-C", str(ROOT), "sample_app/app", "sample_app/wsgi.py",
                                  "sample_app/requirements.txt"], check=True, capture_output=True).stdout
        untar_into(RECIPE_HOST, "/root", archive)
        for src, dest in ((RECIPE_NGINX, "/root/recipe-nginx.conf"), (RECIPE_BY_HAND, "/root/recipe-by-hand.sh")):
            sh(["docker", "cp", str(src), f"{RECIPE_HOST}:{dest}"])
        ca = os.environ.get("FLASKOPS_EXTRA_CA_FILE")
        if ca:
            sh(["docker", "cp", ca, f"{RECIPE_HOST}:/usr/local/share/ca-certificates/flaskops-extra.crt"])
            sh(["docker", "exec", RECIPE_HOST, "update-ca-certificates"], capture_output=True)
        log(f"the reference recipe by hand on {RECIPE_HOST}")
        since = host_clock(RECIPE_HOST)
        started = time.monotonic()
        done = subprocess.run(["docker", "exec", "-e", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                               RECIPE_HOST, "bash", "/root/recipe-by-hand.sh"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if done.returncode:
            log(f"the recipe by hand failed (exit {done.returncode})")
            return {"error": f"exit {done.returncode}: " + (done.stdout + done.stderr)[-2000:]}
        return {"wall_s": round(wall, 1), "apt": apt_profile(RECIPE_HOST, since)}
    finally:
        subprocess.run(["docker", "rm", "-f", RECIPE_HOST], capture_output=True, check=False)


def host_clock(host: str) -> dt.datetime:
    """The host's clock to the second, in the time zone its apt and dpkg logs use."""
    return dt.datetime.fromisoformat(subprocess.run(["docker", "exec", host, "date", "+%F %T"], check=True,
                                                    capture_output=True, text=True).stdout.strip())


# dpkg.log statuses that end a package's configure step: configured, or
# configured but for triggers that run later.
CONFIGURED = ("status installed", "status triggers-pending", "status triggers-awaited")


def apt_profile(host: str, since: dt.datetime) -> dict:
    """Where a host's apt transactions since `since` spent their time, from
    its own logs, to the second: /var/log/apt/history.log gives each
    transaction that installed or upgraded packages (its dpkg window, from
    its Start-Date to its End-Date; the package lists, downloads and apt's
    own work come before it), /var/log/dpkg.log what happened in that
    window: the time from each dpkg run's start to the next (unpacking or
    configuring, triggers included), each package's configure step (to the
    status that says it is configured), and the triggers run. An event in the second one
    window ends and the next starts counts in the later one only."""
    def stamp(text: str) -> dt.datetime:
        return dt.datetime.strptime(" ".join(text.split()), "%Y-%m-%d %H:%M:%S")

    def read(path: str) -> str:
        return subprocess.run(["docker", "exec", host, "cat", path], check=True, capture_output=True,
                              text=True).stdout

    spans = []
    for block in read("/var/log/apt/history.log").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line)
        changed = ", ".join(fields[k] for k in ("Install", "Upgrade") if k in fields)
        if changed and "End-Date" in fields and stamp(fields["Start-Date"]) >= since:
            spans.append((stamp(fields["Start-Date"]), stamp(fields["End-Date"]), len(re.findall(r"\)(?:, |$)", changed))))
    events = [(stamp(m[1]), m[2], m[3]) for m in re.finditer(
        r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (startup \w+ \w+|configure|status [\w-]+|trigproc) ?(\S*)",
        read("/var/log/dpkg.log"), re.MULTILINE)]
    phases = {"unpack": 0, "configure": 0}
    slowest: list[tuple[int, str]] = []
    triggers: dict[str, int] = {}
    transactions = []
    starts = [start for start, _end, _packages in spans[1:]] + [dt.datetime.max]
    for (start, end, packages), next_start in zip(spans, starts):
        inside = [e for e in events if start <= e[0] <= end and e[0] < next_start]
        startups = [(t, what.split()[-1]) for t, what, _package in inside if what.startswith("startup")]
        ends = [t for t, _what in startups[1:]] + [end]
        for (t, phase), t_next in zip(startups, ends):
            if phase in phases:
                phases[phase] += int((t_next - t).total_seconds())
        configures: dict[str, dt.datetime] = {}
        for t, what, package in inside:
            if what == "trigproc":
                triggers[package.split(":")[0]] = triggers.get(package.split(":")[0], 0) + 1
            elif what == "configure":
                configures[package] = t
            elif what in CONFIGURED and package in configures:
                slowest.append((int((t - configures.pop(package)).total_seconds()), package.split(":")[0]))
        transactions.append({"start": start.isoformat(sep=" "), "packages": packages,
                             "dpkg_s": int((end - start).total_seconds())})
    slowest.sort(reverse=True)
    return {"transactions": transactions, "dpkg_s": sum(t["dpkg_s"] for t in transactions),
            "packages": sum(t["packages"] for t in transactions), "phases_s": phases,
            "slowest_configures": [{"package": p, "s": s} for s, p in slowest[:5] if s],
            "triggers_run": triggers}


# --- Serving -----------------------------------------------------------------------

def copy_baseline() -> None:
    """Row G0's app: sample_app as of BASELINE_REF, into BASELINE_DIR of the host."""
    log(f"copying the sample app of {BASELINE_REF[:7]} into the host for row G0")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE_REF, "sample_app/app", "sample_app/wsgi.py"],
                             check=False, capture_output=True)
    if archive.returncode:
        raise SystemExit(f"row G0 needs commit {BASELINE_REF} in this clone (a shallow clone lacks it): "
                         + archive.stderr.decode(errors="replace").strip())
    in_host(f"rm -rf {BASELINE_DIR} && mkdir -p {BASELINE_DIR}")
    untar_into(HOST, BASELINE_DIR, archive.stdout)


def prepare_host() -> dict:
    log("installing wrk in the host")
    in_host("for i in 1 2 3; do apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk curl "
            ">/dev/null && exit 0; sleep 10; done; exit 1")
    sh(["docker", "cp", str(ROOT / "bench" / "wrk-report.lua"), f"{HOST}:{LUA}"])
    sh(["docker", "cp", str(ROOT / "bench" / "cpu-around.py"), f"{HOST}:{CPU_AROUND}"])
    log("writing 50 notes for row G")
    in_host("for i in $(seq 1 50); do curl -skf -o /dev/null -H 'Content-Type: application/json' "
            "-d \"{\\\"body\\\": \\\"bench note $i\\\"}\" https://127.0.0.1/api/notes; done")
    for key, _label, url, _counted in ROWS:
        code = in_host(f"curl -sk -o /dev/null -w '%{{http_code}}' {shlex.quote(url)}").strip()
        if code != "200":
            raise SystemExit(f"row {key}: {url} answers {code}, not 200")
    cache = in_host("curl -s -o /dev/null -D - http://127.0.0.1:8081/api/info")
    if not re.search(r"(?im)^X-Cache-Status: HIT", cache):
        raise SystemExit(f"row F: /api/info is not a cache hit:\n{cache}")
    recipe_url = next(url for key, _label, url, _counted in ROWS if key == "RN")
    recipe = in_host(f"curl -sk -o /dev/null -D - {shlex.quote(recipe_url)}")
    if not re.search(rf"(?im)^{RECIPE_NGINX_HEADER}:", recipe):
        raise SystemExit(f"row RN: no {RECIPE_NGINX_HEADER} header, not the recipe's server block:\n{recipe}")
    ini = {name: in_host(f"grep -E '^(processes|threads) ' /etc/uwsgi/{name}.ini").split("\n")
           for name in ("flaskapp", "benchbase", "recipe")}
    if ini["benchbase"] != ini["flaskapp"]:
        raise SystemExit(f"rows G0 and G run with other uWSGI workers: {ini['benchbase']} / {ini['flaskapp']}")
    return {
        "cpu": in_host("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "vcpus": int(in_host("nproc").strip()),
        "wrk": in_host("wrk -v 2>&1 | head -1 || true").strip(),
        "uwsgi_workers": {k: " ".join(line for line in v if line) for k, v in ini.items()},
    }


def wrk(url: str, seconds: int, reconnecting: bool = False) -> dict:
    out = in_host(f"python3 {CPU_AROUND} wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s --timeout 5s -s {LUA} "
                  f"{shlex.quote(url)}")
    line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
    run = json.loads(line)
    cpu: dict[str, float] = dict.fromkeys((*CPU_NAMES, "other"), 0.0)
    for name, seconds_used in json.loads(out.split("\ncpu ", 1)[1].splitlines()[0]).items():
        cpu[next((n for n in CPU_NAMES if name.lower().startswith(n)), "other")] += seconds_used
    lat = run["latency_us"]
    errors = run["errors"]
    return {
        "rps": round(run["requests"] / (run["duration_us"] / 1e6), 1),
        "p50_ms": round(lat["p50"] / 1000, 2),
        "p99_ms": round(lat["p99"] / 1000, 2),
        "errors": sum(v for k, v in errors.items() if not (reconnecting and k == "read")),
        "socket_errors": {k: v for k, v in errors.items() if k != "status"},
        "non_2xx": errors["status"],
        "requests": run["requests"],
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
    }


def measure() -> dict:
    log(f"warm-up: {len(ROWS)} rows x 3 s")
    for key, _label, url, _counted in ROWS:
        wrk(url, 3, key in RECONNECTING)
    urls = {key: url for key, _label, url, _counted in ROWS}
    runs: dict[str, list[dict]] = {row[0]: [] for row in ROWS}
    for rnd in range(ROUNDS):
        groups = GROUPS[rnd % len(GROUPS):] + GROUPS[:rnd % len(GROUPS)]
        order = [key for group in groups for key in (group if rnd % 2 == 0 else reversed(group))]
        for key in order:
            run = wrk(urls[key], DURATION, key in RECONNECTING)
            runs[key].append(run)
            log(f"round {rnd + 1}/{ROUNDS} row {key}: {run['rps']:.0f} req/s, p99 {run['p99_ms']} ms, "
                f"errors {run['errors']}")
    return runs


def target(what: str, measured: str, verdict_on: str, value: float, met: bool) -> dict:
    """A target row: the figures over the rounds, and the one the verdict uses."""
    return {"target": what, "measured": measured, "verdict_on": verdict_on, "value": value, "met": met}


def summarise(runs: dict[str, list[dict]]) -> tuple[dict, dict, list[dict]]:
    # A saved run from before a row existed has no rounds of it: that row,
    # and the ratios and targets that need it, are left out.
    rows = {}
    for key, label, url, counted in ROWS:
        if key not in runs:
            continue
        rps = [r["rps"] for r in runs[key]]
        p99 = [r["p99_ms"] for r in runs[key]]
        rows[key] = {
            "label": label, "url": url, "counted_in_targets": counted,
            "rps_median": round(statistics.median(rps), 1), "rps_min": min(rps), "rps_max": max(rps),
            "p50_ms_median": round(statistics.median(r["p50_ms"] for r in runs[key]), 2),
            "p99_ms_median": round(statistics.median(p99), 2), "p99_ms_min": min(p99), "p99_ms_max": max(p99),
            "requests": sum(r["requests"] for r in runs[key]),
            "errors": sum(r["errors"] for r in runs[key]),
            "non_2xx": sum(r["non_2xx"] for r in runs[key]),
            # CPU microseconds per request of each process name, median of the
            # rounds (runs saved before the bench measured it have none).
            "cpu_us_per_request": {name: round(statistics.median(r["cpu_s"][name] / max(r["requests"], 1) * 1e6
                                                                 for r in runs[key]))
                                   for name in (*CPU_NAMES, "other")} if all("cpu_s" in r for r in runs[key]) else {},
            "rounds": runs[key],
        }
    ratios = {}
    targets = []
    for name, num, den, bound in RATIOS:
        if num not in rows or den not in rows:
            continue
        # One ratio per round, from the two rows' runs of that round (back to back).
        per_round = [a["rps"] / b["rps"] for a, b in zip(runs[num], runs[den])]
        ratio = {"median": round(statistics.median(per_round), 3), "min": round(min(per_round), 3),
                 "max": round(max(per_round), 3), "target": bound, "rounds": [round(r, 3) for r in per_round]}
        ratios[name] = ratio
        if bound is not None:
            # The lowest round decides: a median of 1.28 over rounds down to
            # 1.20 does not show that the shipped settings are 25% faster.
            targets.append(target(f"{name} >= {bound}", f"{ratio['median']} ({ratio['min']}-{ratio['max']})",
                                  f"lowest round: {ratio['min']}", ratio["min"], min(per_round) >= bound))
    for key, limit in P99_LIMIT_MS.items():
        if key in rows:
            row = rows[key]
            targets.append(target(f"p99 of {key} < {limit:g} ms",
                                  f"{row['p99_ms_median']} ({row['p99_ms_min']}-{row['p99_ms_max']}), "
                                  "median of per-round p99",
                                  f"worst round: {row['p99_ms_max']}", row["p99_ms_max"], row["p99_ms_max"] < limit))
    for key, row in rows.items():
        if row["counted_in_targets"]:
            targets.append(target(f"row {key}: no errors, no non-2xx", str(row["errors"]),
                                  f"all rounds: {row['errors']}", row["errors"], row["errors"] == 0))
    return rows, ratios, targets


def recipe_adjustments() -> list[str]:
    """What row RN's nginx configuration changes in the recipe's (its "# adjusted:" lines)."""
    return ADJUSTED.findall(RECIPE_NGINX.read_text())


# --- Reports -------------------------------------------------------------------------

def markdown(result: dict) -> str:
    cfg = result["settings"]
    lines = [
        f"Run of {result['date']} on {cfg['vcpus']} vCPUs ({cfg['cpu']}); wrk {cfg['threads']} threads, "
        f"{cfg['connections']} connections, {cfg['rounds']} rounds of {cfg['duration_s']} s "
        "(the rows of a ratio back to back), inside the host against its own 127.0.0.1. "
        "req/s: median (min-max) of the rounds; p50 and p99: the median of the per-round p50 and of the "
        "per-round p99 (each round's wrk run has its own percentiles).",
        "",
        "| Row | What | req/s | p50 ms: median of per-round p50 | p99 ms: median of per-round p99 (max) | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, row in result["rows"].items():
        lines.append(f"| {key} | {row['label']} | {row['rps_median']:,.0f} ({row['rps_min']:,.0f}-{row['rps_max']:,.0f}) "
                     f"| {row['p50_ms_median']} | {row['p99_ms_median']} ({row['p99_ms_max']}) | {row['errors']} |")
    if any(row.get("cpu_us_per_request") for row in result["rows"].values()):
        lines += ["", "CPU time per request inside the host, microseconds (user + system from /proc over each "
                  "round's wrk run, divided by its requests; median of the rounds; total: the sum of those medians). The host has "
                  f"{cfg['vcpus']} vCPUs, so {cfg['vcpus']} s of CPU per second of wall time is all of it.", "",
                  "| Row | " + " | ".join(CPU_NAMES) + " | other | total |",
                  "|---|" + "---:|" * (len(CPU_NAMES) + 2)]
        for key, row in result["rows"].items():
            per = row.get("cpu_us_per_request")
            if per:
                lines.append(f"| {key} | " + " | ".join(str(per.get(n, 0)) for n in (*CPU_NAMES, "other"))
                             + f" | {sum(per.values())} |")
    adjustments = result.get("recipe_nginx_adjustments")
    if "RN" in result["rows"] and adjustments:
        lines += ["", "Row RN runs the reference recipe's own nginx configuration (bench/recipe-nginx.conf: its "
                  "upstream and both server blocks) in front of row R's uWSGI, changed only where nginx refuses "
                  "it or it cannot work on the bench host:", ""]
        lines += [f"- {a}" for a in adjustments]
    lines += ["", "| Ratio | median (min-max) of the paired per-round ratios | target |", "|---|---:|---|"]
    for name, ratio in result["ratios"].items():
        bound = f">= {ratio['target']} in its lowest round" if ratio["target"] is not None else "reported"
        lines.append(f"| {name} | {ratio['median']} ({ratio['min']}-{ratio['max']}) | {bound} |")
    lines += ["", "A target is judged on its worst round, not on the median: a ratio target is met only when "
              "the lowest of its paired per-round ratios meets it, the p99 limit only when the worst round's "
              "p99 stays under it, and a provisioning time limit only when its run stays under it. "
              "\"measured\" gives the median (min-max) of the rounds for ratios and p99, the sum over the "
              "rounds for errors.",
              "", "| Target | measured | verdict on | met |", "|---|---:|---:|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {t['verdict_on']} | {'yes' if t['met'] else '**no**'} |")
    prov = result["provisioning"]
    lines += ["", "| Provisioning | wall s | changed | time per role (s) | task runs on the host, per role |",
              "|---|---:|---:|---|---|"]
    for phase, what in PHASES.items():
        if phase in prov:
            p = prov[phase]
            roles = ", ".join(f"{k} {v}" for k, v in p["per_role_s"].items())
            runs = (f"{p['host_task_runs']}: " + ", ".join(f"{k} {v}" for k, v in p["host_task_runs_per_role"].items())
                    if "host_task_runs" in p else "not counted in this run")
            lines.append(f"| {what} | {p['wall_s']} | {p['changed']} | {roles} | {runs} |")
    slow = "; ".join(f"{t['task']} {t['s']} s" for t in prov["cold"]["slowest_tasks"][:4])
    lines += ["", f"Slowest tasks of the cold converge: {slow}."]
    if "recipe_by_hand" in prov:
        lines += ["", cold_against_recipe(prov["cold"], prov["recipe_by_hand"])]
    return "\n".join(lines) + "\n"


def cold_against_recipe(cold: dict, recipe: dict) -> str:
    """The cold converge beside the recipe done by hand, with where apt spent its time on each host."""
    def apt(profile: dict) -> str:
        slow = ", ".join(f"{c['package']} {c['s']} s" for c in profile["slowest_configures"][:3]) or "none over 1 s"
        ran = ", ".join(f"{k} x{v}" for k, v in profile["triggers_run"].items()) or "none"
        count = len(profile["transactions"])
        return (f"{count} apt transaction{'s' if count != 1 else ''} installed or upgraded {profile['packages']} "
                f"packages, in dpkg windows of {profile['dpkg_s']} s in all (dpkg runs unpacking: "
                f"{profile['phases_s']['unpack']} s, configuring with the triggers: {profile['phases_s']['configure']} s; "
                f"slowest configure steps: {slow}; triggers run: {ran})")

    if "error" in recipe:
        return f"The reference recipe done by hand (bench/recipe-by-hand.sh) failed in this run: {recipe['error']}"
    return (f"The reference recipe done by hand (bench/recipe-by-hand.sh, run first, alone, on a fresh host from "
            f"the same image) took {recipe['wall_s']} s to its first 200 through nginx; the cold converge took "
            f"{cold['wall_s']} s ({cold['wall_s'] / recipe['wall_s']:.2f} times as long) to a host that also has "
            "a firewall, backups with pgBackRest, TLS for PostgreSQL and the checks of every step, up to the end "
            f"of the playbook. Cold converge: {apt(cold['apt'])}; its apt tasks took {cold['apt_tasks_s']} s, "
            "whose time outside the dpkg windows (package lists, downloads, apt and Ansible's own work) is not "
            f"split further. By hand: {apt(recipe['apt'])}. From each host's apt history and dpkg logs, to "
            "the second.")


def new_stem(date: str, prefix: str = "") -> str:
    """The name of a new result of a run of date: <prefix><date>, or
    <prefix><date>-N for the day's N-th run, so that a run never replaces one
    the docs may cite."""
    stem, count = f"{prefix}{date}", 1
    while (RESULTS / f"{stem}.json").exists():
        count += 1
        stem = f"{prefix}{date}-{count}"
    return stem


DOC_MARKERS = ("<!-- bench:begin -->", "<!-- bench:end -->")  # the "Latest run" section


def publish(table: str, stem: str, alt: str, markers: tuple[str, str] = DOC_MARKERS) -> None:
    """Writes a result's .md, draws its .png (when BENCH_CHART_PYTHON names a
    Python with matplotlib) and puts both between the markers of
    docs/benchmarks.md."""
    (RESULTS / f"{stem}.md").write_text(table)
    png = RESULTS / f"{stem}.png"
    chart_python = os.environ.get("BENCH_CHART_PYTHON")
    if chart_python:
        sh([chart_python, str(ROOT / "bench" / "chart.py"), str(RESULTS / f"{stem}.json"), str(png)])
    begin, end = markers
    text = DOC.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{DOC} lacks the {begin} / {end} markers")
    body = table
    if png.exists():
        body += f"\n![{alt}, {stem}](../bench/results/{png.name})\n"
    body += f"\nRaw figures: [bench/results/{stem}.json](../bench/results/{stem}.json)\n"
    head, rest = text.split(begin, 1)
    DOC.write_text(head + begin + "\n" + body + end + rest.split(end, 1)[1])


def provisioning_targets(prov: dict) -> list[dict]:
    # One run per phase, so the worst run is that run. (No target on wheels
    # built from source: the roles run pip with only-binary, so a package
    # without a wheel fails the converge rather than compiling.)
    return [target(f"{PHASES[phase]} <= {limit:g} s", str(prov[phase]["wall_s"]),
                   f"the one run: {prov[phase]['wall_s']}", prov[phase]["wall_s"], prov[phase]["wall_s"] <= limit)
            for phase, limit in PHASE_LIMIT_S.items() if phase in prov]


def report(result: dict, stem: str) -> int:
    """Writes the .md, .png and docs section of a result; 1 if a target was
    missed or the recipe by hand failed."""
    table = markdown(result)
    publish(table, stem, "req/s per row")
    print(table)
    missed = [t["target"] for t in result["targets"] if not t["met"]]
    if "error" in result["provisioning"].get("recipe_by_hand", {}):
        missed.append("the reference recipe by hand ran to its end")
    if missed:
        log("missed: " + "; ".join(missed))
        return 1
    log(f"all targets met; results in bench/results/{stem}.*")
    return 0


def main() -> int:
    # Any other argument is refused rather than ignored: the plain command
    # creates a container and runs the whole benchmark.
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if sys.argv[1:] and not (sys.argv[1] == "--report" and len(sys.argv) == 3):
        raise SystemExit("usage: bench.py [--report bench/results/DATE.json | --help]")
    if sys.argv[1:2] == ["--report"]:
        # Re-render a saved run (same rounds, current rows/ratios/targets): bench.py --report FILE.json
        src = Path(sys.argv[2])
        result = json.loads(src.read_text())
        result["rows"], result["ratios"], result["targets"] = summarise(
            {key: row["rounds"] for key, row in result["rows"].items()})
        result["targets"] += provisioning_targets(result["provisioning"])
        src.write_text(json.dumps(result, indent=2) + "\n")
        return report(result, src.stem)
    started = time.monotonic()
    recipe = recipe_by_hand()
    sh([str(ROOT / "scripts" / "local-host.sh"), "create", HOST])
    cold_since = host_clock(HOST)
    provisioning = {"cold": converge("cold", "playbooks/site.yml")}
    provisioning["cold"]["apt"] = apt_profile(HOST, cold_since)
    provisioning["warm"] = converge("warm", "playbooks/site.yml")
    provisioning["warm_mitogen"] = converge("warm-mitogen", "playbooks/site.yml", *mitogen())
    provisioning["recipe_by_hand"] = recipe
    for phase in WARM_PHASES:
        if provisioning[phase]["changed"]:
            raise SystemExit(f"the {PHASES[phase]} reported changed={provisioning[phase]['changed']}")
    copy_baseline()
    converge("extras", "bench/extras.yml")
    host = prepare_host()
    runs = measure()
    rows, ratios, targets = summarise(runs)
    date = dt.date.today().isoformat()
    result = {
        "date": date,
        "settings": {**host, "rounds": ROUNDS, "duration_s": DURATION, "connections": CONNECTIONS,
                     "threads": THREADS},
        "provisioning": provisioning,
        "rows": rows, "ratios": ratios, "targets": targets + provisioning_targets(provisioning),
        "recipe_nginx_adjustments": recipe_adjustments(),
        "bench_wall_s": round(time.monotonic() - started),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = new_stem(date)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    return report(result, stem)


if __name__ == "__main__":
    sys.exit(main())
