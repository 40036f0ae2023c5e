"""Draws a `make bench` result as a PNG: req/s per row (median, min-max bars)
and p99 latency. Usage: chart.py RESULT.json OUT.png (runs in the chart venv
that scripts/bench.sh builds from requirements/bench.txt)."""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, out: str) -> None:
    result = json.load(open(src))
    rows = result["rows"]
    keys = list(rows)[::-1]
    labels = [f"{k}  {rows[k]['label']}" for k in keys]
    med = [rows[k]["rps_median"] for k in keys]
    low = [rows[k]["rps_median"] - rows[k]["rps_min"] for k in keys]
    high = [rows[k]["rps_max"] - rows[k]["rps_median"] for k in keys]
    p99 = [rows[k]["p99_ms_median"] for k in keys]
    colors = ["#9e9e9e" if not rows[k]["counted_in_targets"] else
              "#1e88e5" if k in ("A", "A'", "B", "C", "D", "G") else
              "#e53935" if k == "R" else "#009639" for k in keys]

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [3, 1.2]}, sharey=True)
    ax.barh(labels, med, xerr=[low, high], color=colors, capsize=3)
    for y, value in enumerate(med):
        ax.text(value, y, f"  {value:,.0f}", va="center", fontsize=8)
    ax.set_xlabel("requests/s (median of the rounds, bars: min-max)")
    ax.set_xlim(0, max(med) * 1.25)
    ax2.barh(labels, p99, color=colors)
    for y, value in enumerate(p99):
        ax2.text(value, y, f" {value:g}", va="center", fontsize=8)
    ax2.set_xlabel("p99 latency, ms")
    ax2.set_xlim(0, max(p99) * 1.35)
    cfg = result["settings"]
    fig.suptitle(f"flaskops.stack make bench, {result['date']}: {cfg['vcpus']} vCPUs, wrk {cfg['connections']} "
                 f"connections, {cfg['rounds']} rounds x {cfg['duration_s']} s", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
