"""The `--report-dir` report: a Markdown page with PNG plots (matplotlib, Agg backend), self-contained.

Plots: carbon and energy settled over time per policy, queue length over time, accelerators
busy per center over time, the wait-time distribution per policy, and the Pareto view (carbon
against mean wait, one point per policy, the carbon oracle as a line).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from suanli.sim import replay

HOURS = 3600.0


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(run: replay.Run) -> tuple[np.ndarray, ...]:
    t = np.array([s.time for s in run.samples])
    start = min((r.arrival for r in run.records), default=0.0)
    return (
        (t - start) / HOURS,
        np.array([s.carbon_kg for s in run.samples]),
        np.array([s.energy_kwh for s in run.samples]),
        np.array([s.queued for s in run.samples]),
    )


def _pareto(plt: Any, doc: Mapping[str, Any], out: pathlib.Path) -> tuple[str, str]:
    """Carbon against mean wait per policy; the policies no other beats on both are joined (the front)."""
    points = [(name, float(row["carbonKg"]), float(row["meanWaitSeconds"])) for name, row in doc["policies"].items()]
    front = sorted((p for p in points if not any(q[1] <= p[1] and q[2] <= p[2] and q[1:] != p[1:] for q in points)),
                   key=lambda p: p[1])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, carbon, wait in points:
        ax.scatter([carbon], [wait], zorder=3)
        ax.annotate(name, (carbon, wait), textcoords="offset points", xytext=(5, 4))
    if len(front) > 1:
        ax.plot([p[1] for p in front], [p[2] for p in front], linestyle="--", color="grey", zorder=2,
                label="Pareto front")
    bound = doc.get("oracle", {}).get("carbonKg")
    if bound:
        ax.axvline(bound, color="green", linestyle=":", label=f"carbon oracle {bound:,.0f} kg (no capacity, no wait)")
    ax.set(title="Carbon against mean wait", xlabel="kg CO2e", ylabel="mean wait (s)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=100)
    plt.close(fig)
    return ("Carbon against mean wait (Pareto view)", "pareto.png")


def _plots(runs: Sequence[replay.Run], out: pathlib.Path, doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    plt = _pyplot()
    made: list[tuple[str, str]] = [_pareto(plt, doc, out)] if doc.get("policies") else []

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for run in runs:
        hours, carbon, energy, _ = _series(run)
        axes[0].step(hours, carbon, where="post", label=run.policy)
        axes[1].step(hours, energy, where="post", label=run.policy)
    axes[0].set(title="Carbon settled (kg CO2e)", xlabel="hours since first arrival", ylabel="kg CO2e")
    axes[1].set(title="Energy settled (kWh, PUE included)", xlabel="hours since first arrival", ylabel="kWh")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "carbon_energy.png", dpi=100)
    plt.close(fig)
    made.append(("Carbon and energy over time", "carbon_energy.png"))

    fig, ax = plt.subplots(figsize=(12, 3.5))
    for run in runs:
        hours, _, _, queued = _series(run)
        ax.step(hours, queued, where="post", label=run.policy)
    ax.set(title="Jobs waiting in the queue", xlabel="hours since first arrival", ylabel="jobs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "queue.png", dpi=100)
    plt.close(fig)
    made.append(("Queue length", "queue.png"))

    centers = [c.name for c in runs[0].fleet.centers] if runs else []
    sizes = np.zeros(len(centers))
    for p in runs[0].fleet.pools if runs else ():
        sizes[runs[0].fleet.pool_center[p.index]] += p.expected_nodes * p.accelerators_per_node
    fig, axes = plt.subplots(len(runs), 1, figsize=(12, 2.6 * max(len(runs), 1)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        hours = _series(run)[0]
        busy = np.array([s.busy_by_center for s in run.samples], dtype=np.float64)
        if busy.size:
            for ci, name in enumerate(centers):
                ax.step(hours, busy[:, ci] / max(sizes[ci], 1), where="post", label=name)
        ax.set(title=f"{run.policy}: share of each center's accelerators busy", ylabel="busy", ylim=(0, 1.05))
    if runs:
        axes[-1, 0].set_xlabel("hours since first arrival")
        axes[0, 0].legend(ncol=4, fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "utilization.png", dpi=100)
    plt.close(fig)
    made.append(("Utilisation per center", "utilization.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    for run in runs:
        waits = np.sort([r.start - r.arrival for r in run.records if r.start == r.start])
        if waits.size:
            ax.step(waits / 60.0, np.arange(1, waits.size + 1) / waits.size, where="post", label=run.policy)
    ax.set(title="Wait before start (CDF)", xlabel="minutes (log)", ylabel="share of jobs", xscale="symlog")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "waits.png", dpi=100)
    plt.close(fig)
    made.append(("Wait-time distribution", "waits.png"))
    return made


def write(
    out_dir: str,
    doc: Mapping[str, Any],
    runs: Sequence[replay.Run],
    header: Sequence[str],
    centers: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> pathlib.Path:
    """Write report.md, summary.json-style tables and the PNGs into out_dir; returns report.md."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(runs, out, doc)
    lines = ["# suanli simulate", "", *header, "", "## Per policy", ""]
    if doc.get("oracle"):
        lines[-1:-1] = [f"Carbon oracle (a lower bound: {doc['oracle']['rule']}): {doc['oracle']['carbonKg']:,.2f} kg CO2e "
                        "for every job; `carbonVsOracle`: a policy's carbon over the bound for the jobs it completed.", ""]
    first = next(iter(doc["policies"].values())) if doc["policies"] else {}
    keys = [k for k, v in first.items() if isinstance(v, int | float)]
    lines.append("| policy | " + " | ".join(keys) + " |")
    lines.append("|---|" + "---|" * len(keys))
    for name, row in doc["policies"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:,}" if isinstance(row[k], int) else f"{row[k]:,.2f}" for k in keys) + " |")
    lines += ["", "## Per center (energy kWh / carbon kg / cost)", ""]
    names = sorted({c for per in centers.values() for c in per})
    lines.append("| center | " + " | ".join(centers) + " |")
    lines.append("|---|" + "---|" * len(centers))
    for c in names:
        cells = [
            "{energyKWh:,.0f} / {carbonKg:,.0f} / {cost:,.0f}".format(**centers[p][c]) if c in centers[p] else "-"
            for p in centers
        ]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    for name, row in doc["policies"].items():
        if row.get("queues"):
            lines += _queues(name, row)
    for title, file in plots:
        lines += ["", f"## {title}", "", f"![{title}]({file})"]
    page = out / "report.md"
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return page


def _queues(policy: str, row: Mapping[str, Any]) -> list[str]:
    """The per-queue table of one policy, with the busy period's fairness."""
    f = row["fairness"]
    lines = ["", f"## Queues under {policy}", "",
             f"Busy period (every queue with jobs had one waiting): {f['busySeconds'] / 3600:,.1f} h; "
             f"Jain's index of the busy-period shares {f['jainIndex']}, time-weighted {f['meanJainIndex']}; "
             f"largest share / smallest - 1: {f['shareSpread']}.", ""]
    keys = [k for k, v in row["queues"][0].items() if k != "name" and isinstance(v, int | float)]
    lines.append("| queue | " + " | ".join(keys) + " |")
    lines.append("|---|" + "---|" * len(keys))
    for q in row["queues"]:
        lines.append(f"| {q['name']} | " + " | ".join(f"{q[k]:,}" if isinstance(q[k], int) else f"{q[k]:,.4g}"
                                                      for k in keys) + " |")
    return lines
