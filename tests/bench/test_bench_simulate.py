"""Benchmark: the full default Alibaba trace over the example fleet, first-fit vs balanced vs green.

Writes reports/bench/simulate.json and reports/bench/simulate.md with the wall time, per-policy
metrics, green's carbon reduction against first-fit and the growth of the mean wait. Targets:
under 60 s for the three replays on a 2-core machine; green cuts carbon by >= 30% vs first-fit
with the mean wait growing by <= 10%. The numbers are recorded as measured; the targets are
checked and reported, and only the hard properties (conservation, no oversubscription, time)
fail the test.
"""

from __future__ import annotations

import json
import pathlib
import time

import pytest

from suanli.commands import simulate as simulate_cmd

REPO = pathlib.Path(__file__).resolve().parents[2]
TRACE = REPO.parent / "shared" / "data" / "alibaba-gpu-v2023" / "openb_pod_list_default.csv"
CENTERS = REPO / "crds" / "examples" / "simulate" / "centers.yaml"
OUT = REPO / "reports" / "bench"
POLICIES = ("first-fit", "balanced", "green")
WALL_LIMIT_S = 60.0


@pytest.mark.bench
@pytest.mark.skipif(not TRACE.exists(), reason=f"Alibaba trace not found at {TRACE} (../shared/data beside the repo)")
def test_bench_simulate_alibaba_default() -> None:
    began = time.perf_counter()
    fleet, trace, _ = simulate_cmd.load([str(CENTERS)], [str(TRACE)], "alibaba-gpu-2023", [])
    loaded = time.perf_counter()
    doc, runs = simulate_cmd.simulate(fleet, trace, POLICIES)
    wall = time.perf_counter() - began
    per = doc["policies"]
    ff, green = per["first-fit"], per["green"]
    reduction = 1 - green["carbonKg"] / ff["carbonKg"]
    wait_growth = green["meanWaitSeconds"] / ff["meanWaitSeconds"] - 1 if ff["meanWaitSeconds"] else 0.0
    result = {
        "trace": TRACE.name,
        "tasks": len(trace.jobs) + sum(trace.skipped.values()),
        "jobs": len(trace.jobs),
        "skipped": trace.skipped,
        "fleet": {"centers": len(fleet.centers), "pools": fleet.size,
                  "accelerators": sum(p.expected_nodes * p.accelerators_per_node for p in fleet.pools)},
        "wallSeconds": round(wall, 2),
        "loadSeconds": round(loaded - began, 2),
        "events": {r.policy: r.events for r in runs},
        "policies": per,
        "greenCarbonReductionVsFirstFit": round(reduction, 4),
        "greenMeanWaitGrowthVsFirstFit": round(wait_growth, 4),
        "targets": {
            "wallSeconds<60": wall < WALL_LIMIT_S,
            "carbonReduction>=0.30": reduction >= 0.30,
            "meanWaitGrowth<=0.10": wait_growth <= 0.10,
        },
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "simulate.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    keys = ["completed", "energyKWh", "carbonKg", "cost", "meanWaitSeconds", "p95WaitSeconds", "meanJCTSeconds",
            "utilization", "maxPoolOversubscription"]
    lines = [
        "# suanli simulate benchmark",
        "",
        f"Trace `{TRACE.name}`: {result['tasks']} tasks, {len(trace.jobs)} GPU jobs replayed "
        f"(left out: {', '.join(f'{k} {v}' for k, v in trace.skipped.items())}); fleet "
        f"`crds/examples/simulate/centers.yaml` ({result['fleet']['accelerators']} GPUs, "
        f"{result['fleet']['centers']} centers); default trace options (arrivals compressed 18x).",
        "",
        f"Wall time for loading and three replays: **{wall:.1f} s** (target < {WALL_LIMIT_S:.0f} s).",
        "",
        "| policy | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for name, row in per.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:,}" for k in keys) + " |")
    lines += [
        "",
        f"Green vs first-fit: carbon **{reduction:+.1%}** reduction (target >= 30%), "
        f"mean wait **{wait_growth:+.1%}** (target <= +10%).",
    ]
    (OUT / "simulate.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    for row in per.values():
        assert row["completed"] + row["unschedulable"] + row["stillQueued"] == row["jobs"]
        assert row["maxPoolOversubscription"] == 0
    assert wall < WALL_LIMIT_S, f"three replays took {wall:.1f} s"
