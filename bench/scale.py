"""flaskops.stack `make bench-scale`: how provisioning time grows with app hosts.

For each size N of BENCH_SCALE_SIZES (1 2 4 8): fresh containers from the
test bed's Debian 12 image (scripts/local-host.sh create), one web host, one
database host and N app hosts, wired by playbooks/site.yml from the inventory
alone (the app hosts serve uWSGI over TCP on their private addresses, as in
the multinode scenario). A cold converge, then a warm re-run that must report
changed=0; then the containers are removed. Ansible runs with as many forks
as there are hosts (its default of 5 would take the hosts of the larger sizes
in batches), pipelining on (ansible.cfg).

Reported for each run: wall time, the controller's CPU time (ansible-playbook
and its forks), the CPU time the whole machine spent busy (the controller and
the containers share it: when that nears wall time x vCPUs, the machine's
CPUs are the limit), tasks and task runs on the hosts. For cold and warm: the least-squares slope
(seconds per app host) and the ratio of the largest size to the smallest.
Target (issue 20): the warm re-run over 8 app hosts takes less than twice the
time over 1. Exit status 1 when it is missed.

Writes bench/results/scale-<date>.json (<date>-2... for a later run that day), .md and .png, and the section of
docs/benchmarks.md between its bench-scale markers. `scale.py --report FILE`
renders a saved run again; `--help` prints this. BENCH_SCALE_SIZES chooses the
sizes (the target is judged only when 1 and 8 are among them).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml  # PyYAML, which Ansible brings into the controller venv

from bench import RESULTS, ROOT, converge, log, new_stem, publish, sh  # bench/bench.py, beside this file

PREFIX = "flaskops-scale"
SIZES = sorted({int(n) for n in os.environ.get("BENCH_SCALE_SIZES", "1 2 4 8").split()})
WARM_LIMIT = 2.0  # warm re-run over 8 app hosts < 2x the one over 1 (issue 20)
INVENTORY = ROOT / ".cache" / "bench-scale" / "inventory"
MARKERS = ("<!-- bench-scale:begin -->", "<!-- bench-scale:end -->")


def hosts(size: int) -> dict[str, list[str]]:
    return {"webservers": [f"{PREFIX}-web"], "dbservers": [f"{PREFIX}-db"],
            "appservers": [f"{PREFIX}-app{i}" for i in range(1, size + 1)]}


def write_inventory(groups: dict[str, list[str]]) -> None:
    """The bench's inventory (bench/inventory: connection, extra CA, database
    password) with this size's groups."""
    INVENTORY.mkdir(parents=True, exist_ok=True)
    bench_vars = yaml.safe_load((ROOT / "bench" / "inventory" / "hosts.yml").read_text())["all"]["vars"]
    inventory = {"all": {"vars": bench_vars,
                         "children": {g: {"hosts": {h: None for h in names}} for g, names in groups.items()}}}
    (INVENTORY / "hosts.yml").write_text(json.dumps(inventory, indent=2) + "\n")  # JSON is YAML
    link = INVENTORY / "group_vars"
    if not link.is_symlink():
        link.symlink_to(ROOT / "bench" / "inventory" / "group_vars")


def machine_busy_s() -> float:
    """CPU seconds this machine has spent busy since boot, all CPUs (/proc/stat:
    user, nice, system, irq, softirq, steal). The controller and the
    containers share the machine, so a run's difference is both."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def measured(label: str, forks: int) -> dict:
    """One site.yml run (bench.converge) with the machine's busy CPU time
    beside it: the rest of the machine (containers, dockerd) used that less
    the controller's share."""
    busy = machine_busy_s()
    run = converge(label, "playbooks/site.yml", args=["--forks", str(forks)], inventory=INVENTORY)
    run["machine_busy_s"] = round(machine_busy_s() - busy, 1)
    run["machine_busy_share"] = round(run["machine_busy_s"] / (run["wall_s"] * (os.cpu_count() or 1)), 2)
    return run


def remove(names: list[str]) -> None:
    subprocess.run(["docker", "rm", "-f", *names], capture_output=True, check=False)


def one_size(size: int) -> dict:
    groups = hosts(size)
    names = [h for group in groups.values() for h in group]
    remove(names)
    try:
        for name in names:
            sh([str(ROOT / "scripts" / "local-host.sh"), "create", name])
        write_inventory(groups)
        runs = {phase: measured(f"scale-{size}-{phase}", len(names)) for phase in ("cold", "warm")}
    finally:
        remove(names)
    if runs["warm"]["changed"]:
        raise SystemExit(f"{size} app hosts: the warm re-run reported changed={runs['warm']['changed']}")
    keep = ("wall_s", "controller_cpu_s", "machine_busy_s", "machine_busy_share", "changed", "tasks", "host_task_runs", "per_role_s")
    return {"app_hosts": size, "hosts": len(names), "forks": len(names),
            **{phase: {k: run[k] for k in keep} for phase, run in runs.items()}}


def summarise(sizes: list[dict]) -> dict:
    """Slope (s per app host) and largest/smallest ratio of each phase; the target."""
    xs = [s["app_hosts"] for s in sizes]
    out: dict = {}
    for phase in ("cold", "warm"):
        ys = [s[phase]["wall_s"] for s in sizes]
        slope = statistics.linear_regression(xs, ys).slope if len(set(xs)) > 1 else None
        out[phase] = {"slope_s_per_app_host": None if slope is None else round(slope, 1),
                      f"ratio_{max(xs)}_to_{min(xs)}": round(ys[xs.index(max(xs))] / ys[xs.index(min(xs))], 2)}
    by_size = {s["app_hosts"]: s for s in sizes}
    if 1 in by_size and 8 in by_size:
        ratio = by_size[8]["warm"]["wall_s"] / by_size[1]["warm"]["wall_s"]
        out["target"] = {"target": f"warm re-run over 8 app hosts < {WARM_LIMIT:g}x the one over 1",
                         "measured": round(ratio, 2), "met": ratio < WARM_LIMIT}
    return out


def markdown(result: dict) -> str:
    lines = [f"Run of {result['date']} on {result['vcpus']} vCPUs: one web host, one database host and N app "
             "hosts, fresh containers for each N; forks = hosts. controller CPU: user + system seconds of "
             "ansible-playbook and its forks; machine busy: CPU seconds the whole machine spent busy during "
             "the run (the controller and every container), and its share of wall time x vCPUs.", "",
             "| app hosts | run | wall s | controller CPU s | machine busy s (share) | task runs on the hosts "
             "| tasks |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for s in result["sizes"]:
        for phase in ("cold", "warm"):
            r = s[phase]
            busy = (f"{r['machine_busy_s']} ({r['machine_busy_share']:.0%})" if "machine_busy_s" in r
                    else "not measured in this run")
            lines.append(f"| {s['app_hosts']} | {phase} | {r['wall_s']} | {r['controller_cpu_s']} | {busy} "
                         f"| {r['host_task_runs']} | {r['tasks']} |")
    summary = result["summary"]
    lines += ["", "| run | slope, s per app host (least squares) | largest / smallest size |", "|---|---:|---:|"]
    for phase in ("cold", "warm"):
        ratio = next(v for k, v in summary[phase].items() if k.startswith("ratio_"))
        lines.append(f"| {phase} | {summary[phase]['slope_s_per_app_host']} | {ratio} |")
    if "target" in summary:
        t = summary["target"]
        lines += ["", f"Target: {t['target']}: measured {t['measured']}x, "
                  f"{'met' if t['met'] else '**missed**'}."]
    return "\n".join(lines) + "\n"


def report(result: dict, stem: str) -> int:
    """Writes the .md, .png and docs section of a result; 1 if the target was missed."""
    table = markdown(result)
    publish(table, stem, "provisioning time against app hosts", MARKERS)
    print(table)
    target = result["summary"].get("target")
    if target and not target["met"]:
        log(f"missed: {target['target']} ({target['measured']}x)")
        return 1
    return 0


def main() -> int:
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if sys.argv[1:2] == ["--report"] and len(sys.argv) == 3:
        src = Path(sys.argv[2])
        result = json.loads(src.read_text())
        result["summary"] = summarise(result["sizes"])
        src.write_text(json.dumps(result, indent=2) + "\n")
        return report(result, src.stem)
    if sys.argv[1:]:
        raise SystemExit("usage: scale.py [--report bench/results/scale-DATE.json | --help]")
    if not SIZES or min(SIZES) < 1:
        raise SystemExit("BENCH_SCALE_SIZES: one or more app host counts of 1 or more, e.g. \"1 2 4 8\"")
    started = time.monotonic()
    sizes = []
    for size in SIZES:
        log(f"{size} app host(s)")
        sizes.append(one_size(size))
    date = dt.date.today().isoformat()
    result = {"date": date, "vcpus": os.cpu_count(), "sizes": sizes, "summary": summarise(sizes),
              "bench_wall_s": round(time.monotonic() - started)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = new_stem(date, "scale-")
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    return report(result, stem)


if __name__ == "__main__":
    sys.exit(main())
