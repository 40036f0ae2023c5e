"""Draws a `make bench` result as a PNG: req/s per row (median, min-max bars)
and p99 latency (median of the per-round p99); a `make bench-scale` result
(it has "sizes") as provisioning time against app hosts. Usage: chart.py RESULT.json
OUT.png (runs in the chart venv that scripts/bench.sh builds from
requirements/bench.txt). Labels come from the result file; `bench.py
--report` brings a saved file's labels up to date first."""

from __future__ import annotations

import json
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Bar colours: rows served through uWSGI, the reference recipe's rows (its
# uWSGI settings behind this collection's nginx, and the whole recipe),
# rows nginx answers alone; grey: rows the targets do not count.
THROUGH_UWSGI = ("A", "A'", "B", "C", "D", "G", "G0")
RECIPE = ("R", "RN")
LABEL_WIDTH = 48  # characters per line of a row's label; longer ones wrap


def scale(result: dict, out: str) -> None:
    """Wall time of the cold converge and the warm re-run against app hosts,
    with the controller's CPU time of each run dashed and the whole machine's
    busy CPU time over its vCPUs dotted (reaching the wall time: CPU-bound)."""
    xs = [s["app_hosts"] for s in result["sizes"]]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for phase, color in (("cold", "#e53935"), ("warm", "#1e88e5")):
        wall = [s[phase]["wall_s"] for s in result["sizes"]]
        ax.plot(xs, wall, "o-", color=color, label=f"{phase}: wall time")
        ax.plot(xs, [s[phase]["controller_cpu_s"] for s in result["sizes"]], "x--", color=color,
                label=f"{phase}: controller CPU time")
        if all("machine_busy_s" in s[phase] for s in result["sizes"]):
            ax.plot(xs, [s[phase]["machine_busy_s"] / result["vcpus"] for s in result["sizes"]], "s:",
                    color=color, label=f"{phase}: machine busy CPU time / vCPUs")
        for x, y in zip(xs, wall):
            ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("app hosts (plus one web and one database host)")
    ax.set_ylabel("seconds")
    ax.set_ylim(0, None)
    ax.legend(fontsize=8)
    ax.set_title(f"flaskops.stack make bench-scale, {result['date']}: site.yml on {result['vcpus']} vCPUs",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(src: str, out: str) -> None:
    result = json.load(open(src))
    if "sizes" in result:
        scale(result, out)
        return
    rows = result["rows"]
    keys = list(rows)[::-1]
    labels = [textwrap.fill(f"{k}  {rows[k]['label']}", LABEL_WIDTH) for k in keys]
    med = [rows[k]["rps_median"] for k in keys]
    low = [rows[k]["rps_median"] - rows[k]["rps_min"] for k in keys]
    high = [rows[k]["rps_max"] - rows[k]["rps_median"] for k in keys]
    p99 = [rows[k]["p99_ms_median"] for k in keys]
    colors = ["#9e9e9e" if not rows[k]["counted_in_targets"] else
              "#1e88e5" if k in THROUGH_UWSGI else
              "#e53935" if k in RECIPE else "#009639" for k in keys]

    # Height grows with the rows (5.2 inches for the nine rows of the first runs).
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 0.5 * len(keys) + 1.5), gridspec_kw={"width_ratios": [3, 1.2]},
                                  sharey=True)
    ax.barh(labels, med, xerr=[low, high], color=colors, capsize=3)
    for y, value in enumerate(med):
        ax.text(value, y, f"  {value:,.0f}", va="center", fontsize=8)
    ax.set_xlabel("requests/s (median of the rounds, bars: min-max)")
    ax.set_xlim(0, max(med) * 1.25)
    ax2.barh(labels, p99, color=colors)
    for y, value in enumerate(p99):
        ax2.text(value, y, f" {value:g}", va="center", fontsize=8)
    ax2.set_xlabel("p99 latency, ms\n(median of per-round p99)")
    ax2.set_xlim(0, max(p99) * 1.35)
    cfg = result["settings"]
    fig.suptitle(f"flaskops.stack make bench, {result['date']}: {cfg['vcpus']} vCPUs, wrk {cfg['connections']} "
                 f"connections, {cfg['rounds']} rounds x {cfg['duration_s']} s", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
