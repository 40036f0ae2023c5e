"""flaskops.stack `make bench`: provisioning and serving speed, measured in one run.

1. A fresh container host (scripts/local-host.sh create) gets the whole stack
   from playbooks/site.yml with the shipped defaults: the cold converge, then
   a warm re-run that must report changed=0, then the same warm re-run under
   Mitogen's strategy. Wall time and time per role of each.
2. bench/extras.yml adds the endpoints of the rows the shipped site does not
   have (raw uWSGI, plain HTTP, TCP, the reference recipe's settings).
3. wrk runs inside the container against its own 127.0.0.1, the same
   connections and threads for every row, ROUNDS rounds after a warm-up.
   Rows whose ratio has a target run back to back (A' then B, C then R, E
   then F; the other way round in every other round), and each round starts
   one group later, so a slow minute of a shared machine hits both rows of a
   ratio alike.
4. bench/results/<date>.json, .md and .png; docs/benchmarks.md shows the
   table and chart of the latest run between its bench markers.

The exit status is 1 when a row saw errors or a target was missed.
`bench.py --report bench/results/<date>.json` renders a saved run again.
Settings (environment): BENCH_ROUNDS (5), BENCH_DURATION seconds per run (10),
BENCH_CONNECTIONS (50), BENCH_THREADS (2), BENCH_HOST (flaskops-bench).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
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

DYNAMIC = "/api/client"  # a Flask view without database access, Cache-Control: no-store
# Rows: key, label, URL inside the host, whether targets count it.
# The ceiling is row A': uWSGI answering HTTP itself with keep-alive
# (http11-socket), as wrk keeps its connections to nginx alive. Row A is the
# plain http-socket: it closes the connection after each response without
# saying so, and wrk counts a read error per request there (a reconnect, not
# a failed request), so read errors are not failures for row A.
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
    ("R", "reference recipe's basic settings, HTTPS", "https://127.0.0.1:8443" + DYNAMIC, True),
]
# Rows measured back to back in each round (see measure()).
GROUPS = [("A'", "B"), ("C", "R"), ("E", "F"), ("A",), ("D",), ("G",)]
# name, numerator, denominator, lower bound (None: reported only)
RATIOS = [("B/A'", "B", "A'", 0.90), ("B/A", "B", "A", None), ("C/B", "C", "B", None), ("D/B", "D", "B", None),
          ("F/E", "F", "E", 0.80), ("C/R", "C", "R", 1.25)]
P99_LIMIT_MS = {"C": 50.0}
WARM_LIMIT_S = 20.0  # warm re-run of the whole stack (changed=0)
# Provisioning runs: key in the results, label in the reports.
PHASES = {"cold": "cold converge", "warm": "warm re-run", "warm_mitogen": "warm re-run, Mitogen strategy"}
WARM_PHASES = ("warm", "warm_mitogen")  # each must report changed=0 and stay under WARM_LIMIT_S


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def sh(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, text=True, **kw)


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


def converge(label: str, playbook: str, env_extra: dict | None = None, args: tuple | list = ()) -> dict:
    """Runs a playbook against the bench host; its JSON report, summarised."""
    # The JSON report on stdout; timer (text after it) instead of profile_tasks.
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.timer", **(env_extra or {}))
    cmd = ["ansible-playbook", "-i", str(ROOT / "bench" / "inventory"), *args, str(ROOT / playbook)]
    log(f"{label}: {' '.join(cmd[1:])}")
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, text=True, capture_output=True, cwd=ROOT, check=False)
    wall = time.monotonic() - started
    (ROOT / ".cache" / "bench").mkdir(parents=True, exist_ok=True)
    (ROOT / ".cache" / "bench" / f"{label}.json").write_text(done.stdout)
    try:
        report = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("{"):])[0]
    except ValueError:
        raise SystemExit(f"{label}: no JSON report (exit {done.returncode})\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    stats = report["stats"][HOST]
    if done.returncode or stats["failures"] or stats["unreachable"]:
        raise SystemExit(f"{label}: the playbook failed (see .cache/bench/{label}.json)")
    per_role: dict[str, float] = {}
    tasks = []
    compiled = []
    for play in report["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"]
            role = name.split(" : ")[0].removeprefix("flaskops.stack.") if " : " in name else "(play)"
            seconds = _seconds(task["task"]["duration"])
            per_role[role] = per_role.get(role, 0.0) + seconds
            tasks.append((seconds, name))
            for result in task["hosts"].values():
                for item in result.get("results", [result]):
                    found = re.findall(r"Building wheel for (\S+)", str(item.get("stdout", "")))
                    compiled += [f"{pkg} ({name})" for pkg in found]
    tasks.sort(reverse=True)
    return {
        "wall_s": round(wall, 1),
        "changed": stats["changed"],
        "ok": stats["ok"],
        "tasks": len(tasks),
        "per_role_s": {k: round(v, 1) for k, v in sorted(per_role.items(), key=lambda kv: -kv[1])},
        "slowest_tasks": [{"task": n, "s": round(s, 1)} for s, n in tasks[:6]],
        "compiled_from_source": compiled,
    }


# --- Serving -----------------------------------------------------------------------

def prepare_host() -> dict:
    log("installing wrk in the host")
    in_host("for i in 1 2 3; do apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk curl "
            ">/dev/null && exit 0; sleep 10; done; exit 1")
    sh(["docker", "cp", str(ROOT / "bench" / "wrk-report.lua"), f"{HOST}:{LUA}"])
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
    ini = {name: in_host(f"grep -E '^(processes|threads) ' /etc/uwsgi/{name}.ini").split("\n")
           for name in ("flaskapp", "recipe")}
    return {
        "cpu": in_host("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "vcpus": int(in_host("nproc").strip()),
        "wrk": in_host("wrk -v 2>&1 | head -1 || true").strip(),
        "uwsgi_workers": {k: " ".join(line for line in v if line) for k, v in ini.items()},
    }


def wrk(url: str, seconds: int, reconnecting: bool = False) -> dict:
    out = in_host(f"wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s --timeout 5s -s {LUA} {shlex.quote(url)}")
    line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
    run = json.loads(line)
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


def summarise(runs: dict[str, list[dict]]) -> tuple[dict, dict, list[dict]]:
    rows = {}
    for key, label, url, counted in ROWS:
        rps = [r["rps"] for r in runs[key]]
        rows[key] = {
            "label": label, "url": url, "counted_in_targets": counted,
            "rps_median": round(statistics.median(rps), 1), "rps_min": min(rps), "rps_max": max(rps),
            "p50_ms_median": round(statistics.median(r["p50_ms"] for r in runs[key]), 2),
            "p99_ms_median": round(statistics.median(r["p99_ms"] for r in runs[key]), 2),
            "p99_ms_max": max(r["p99_ms"] for r in runs[key]),
            "requests": sum(r["requests"] for r in runs[key]),
            "errors": sum(r["errors"] for r in runs[key]),
            "non_2xx": sum(r["non_2xx"] for r in runs[key]),
            "rounds": runs[key],
        }
    ratios = {}
    targets = []
    for name, num, den, bound in RATIOS:
        # One ratio per round (a target's rows ran back to back), then their median.
        per_round = [a["rps"] / b["rps"] for a, b in zip(runs[num], runs[den])]
        ratios[name] = {"median": round(statistics.median(per_round), 3),
                        "min": round(min(per_round), 3), "max": round(max(per_round), 3), "target": bound}
        if bound is not None:
            targets.append({"target": f"{name} >= {bound}", "measured": ratios[name]["median"],
                            "met": ratios[name]["median"] >= bound})
    for key, limit in P99_LIMIT_MS.items():
        targets.append({"target": f"p99 of {key} < {limit:g} ms", "measured": rows[key]["p99_ms_median"],
                        "met": rows[key]["p99_ms_median"] < limit})
    for key, row in rows.items():
        if row["counted_in_targets"]:
            targets.append({"target": f"row {key}: no errors, no non-2xx", "measured": row["errors"],
                            "met": row["errors"] == 0})
    return rows, ratios, targets


# --- Reports -------------------------------------------------------------------------

def markdown(result: dict) -> str:
    cfg = result["settings"]
    lines = [
        f"Run of {result['date']} on {cfg['vcpus']} vCPUs ({cfg['cpu']}); wrk {cfg['threads']} threads, "
        f"{cfg['connections']} connections, {cfg['rounds']} rounds of {cfg['duration_s']} s "
        "(the rows of a ratio back to back), inside the host against its own 127.0.0.1. "
        "Medians, (min-max) over the rounds.",
        "",
        "| Row | What | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, row in result["rows"].items():
        lines.append(f"| {key} | {row['label']} | {row['rps_median']:,.0f} ({row['rps_min']:,.0f}-{row['rps_max']:,.0f}) "
                     f"| {row['p50_ms_median']} | {row['p99_ms_median']} | {row['errors']} |")
    lines += ["", "| Ratio | median (min-max of the rounds) | target |", "|---|---:|---|"]
    for name, ratio in result["ratios"].items():
        target = f">= {ratio['target']}" if ratio["target"] is not None else "reported"
        lines.append(f"| {name} | {ratio['median']} ({ratio['min']}-{ratio['max']}) | {target} |")
    lines += ["", "| Target | measured | met |", "|---|---:|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    prov = result["provisioning"]
    lines += ["", "| Provisioning | wall s | changed | time per role (s) |", "|---|---:|---:|---|"]
    for phase, what in PHASES.items():
        if phase in prov:
            p = prov[phase]
            roles = ", ".join(f"{k} {v}" for k, v in p["per_role_s"].items())
            lines.append(f"| {what} | {p['wall_s']} | {p['changed']} | {roles} |")
    slow = "; ".join(f"{t['task']} {t['s']} s" for t in prov["cold"]["slowest_tasks"][:4])
    lines += ["", f"Slowest tasks of the cold converge: {slow}.",
              f"Packages compiled from source: {', '.join(prov['cold']['compiled_from_source']) or 'none'}."]
    return "\n".join(lines) + "\n"


def update_doc(table: str, png: Path | None, stem: str) -> None:
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    text = DOC.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{DOC} lacks the {begin} / {end} markers")
    body = table
    if png is not None:
        body += f"\n![req/s per row, {stem}](../bench/results/{png.name})\n"
    body += f"\nRaw figures: [bench/results/{stem}.json](../bench/results/{stem}.json)\n"
    head, rest = text.split(begin, 1)
    DOC.write_text(head + begin + "\n" + body + end + rest.split(end, 1)[1])


def provisioning_targets(prov: dict) -> list[dict]:
    warm = [{"target": f"{PHASES[phase]} < {WARM_LIMIT_S:g} s", "measured": prov[phase]["wall_s"],
             "met": prov[phase]["wall_s"] < WARM_LIMIT_S}
            for phase in WARM_PHASES if phase in prov]
    return warm + [{"target": "cold converge compiles nothing a wheel provides",
                    "measured": len(prov["cold"]["compiled_from_source"]),
                    "met": not prov["cold"]["compiled_from_source"]}]


def report(result: dict, stem: str) -> int:
    """Writes the .md, .png and docs section of a result; 1 if a target was missed."""
    table = markdown(result)
    (RESULTS / f"{stem}.md").write_text(table)
    png = RESULTS / f"{stem}.png"
    chart_python = os.environ.get("BENCH_CHART_PYTHON")
    if chart_python:
        sh([chart_python, str(ROOT / "bench" / "chart.py"), str(RESULTS / f"{stem}.json"), str(png)])
    update_doc(table, png if png.exists() else None, stem)
    print(table)
    missed = [t["target"] for t in result["targets"] if not t["met"]]
    if missed:
        log("missed: " + "; ".join(missed))
        return 1
    log(f"all targets met; results in bench/results/{stem}.*")
    return 0


def main() -> int:
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
    sh([str(ROOT / "scripts" / "local-host.sh"), "create", HOST])
    provisioning = {"cold": converge("cold", "playbooks/site.yml"),
                    "warm": converge("warm", "playbooks/site.yml"),
                    "warm_mitogen": converge("warm-mitogen", "playbooks/site.yml", *mitogen())}
    for phase in WARM_PHASES:
        if provisioning[phase]["changed"]:
            raise SystemExit(f"the {PHASES[phase]} reported changed={provisioning[phase]['changed']}")
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
        "bench_wall_s": round(time.monotonic() - started),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{date}.json").write_text(json.dumps(result, indent=2) + "\n")
    return report(result, date)


if __name__ == "__main__":
    sys.exit(main())
