"""Benchmark: `suanli simulate` on the Alibaba traces, first-fit vs balanced vs green, and green's wait over
region draws (issue #17, part 3).

Scenarios (each: the three policies and the carbon oracle):
  default            the default trace on the example fleet (crds/examples/simulate/)
  gpuspec33          the trace whose jobs are tied to GPU models, same fleet
  default-west-first the example fleet declared west first (first-fit then fills the clean centers first)
  default-30x        the default trace with arrivals compressed 30x instead of 18x (a deeper queue)
Draws: first-fit and green on the default scenario with the jobs' data regions redrawn (trace option `seed`,
SUANLI_BENCH_SIM_DRAWS draws, default 8): the mean wait of this trace is decided in one saturated burst and
moves with such details, so one draw's ratio is not enough to judge a placement rule.

Writes reports/bench/simulate.json and simulate.md. Targets (checked and reported; only the hard properties,
conservation and no oversubscription, and the wall time fail the test): the default scenario's three replays
in under 30 s; green's carbon at most 0.40x first-fit's on default and 0.45x on gpuspec33; green's mean wait
at most 1.00x first-fit's in every scenario.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import time
from typing import Any

import pytest

from suanli.commands import simulate as simulate_cmd

REPO = pathlib.Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "alibaba-gpu-v2023"
TRACE = DATA / "openb_pod_list_default.csv"
CENTERS = REPO / "crds" / "examples" / "simulate" / "centers.yaml"
OUT = REPO / "reports" / "bench"
POLICIES = ("first-fit", "balanced", "green")
WALL_LIMIT_S = 60.0  # fails the test (a loaded machine); the target reported is 30 s
WALL_TARGET_S = 30.0
CARBON_TARGET = {"default": 0.40, "gpuspec33": 0.45}
DRAWS = int(os.environ.get("SUANLI_BENCH_SIM_DRAWS", "8"))


def _west_first(tmp: pathlib.Path) -> pathlib.Path:
    """The example fleet with its centers declared in reverse (west first)."""
    docs = CENTERS.read_text(encoding="utf-8").split("\n---\n")
    path = tmp / "west-first.yaml"
    path.write_text("\n---\n".join(reversed(docs[1:])) + "\n", encoding="utf-8")
    return path


def _ratios(per: dict[str, Any], policy: str) -> dict[str, float]:
    ff, row = per["first-fit"], per[policy]
    return {
        "carbon": round(row["carbonKg"] / ff["carbonKg"], 3),
        "meanWait": round(row["meanWaitSeconds"] / ff["meanWaitSeconds"], 3) if ff["meanWaitSeconds"] else 0.0,
        "waitPerAccelerator": round(row["acceleratorWeightedWaitSeconds"] / ff["acceleratorWeightedWaitSeconds"], 3)
        if ff["acceleratorWeightedWaitSeconds"] else 0.0,
    }


def _scenario(centers: pathlib.Path, trace: pathlib.Path, options: list[str], policies: tuple[str, ...]) -> dict[str, Any]:
    began = time.perf_counter()
    fleet, loaded, _ = simulate_cmd.load([str(centers)], [str(trace)], "alibaba-gpu-2023", options)
    doc, runs = simulate_cmd.simulate(fleet, loaded, policies)
    wall = time.perf_counter() - began
    per = doc["policies"]
    for row in per.values():
        assert row["completed"] + row["unschedulable"] + row["stillQueued"] == row["jobs"]
        assert row["maxPoolOversubscription"] == 0
    return {
        "trace": trace.name, "centers": centers.name, "options": options, "jobs": len(loaded.jobs),
        "skipped": loaded.skipped, "wallSeconds": round(wall, 2), "oracleCarbonKg": doc["oracle"]["carbonKg"],
        "policies": per, "vsFirstFit": {p: _ratios(per, p) for p in policies if p != "first-fit"},
        "events": {r.policy: r.events for r in runs},
    }


@pytest.mark.bench
def test_bench_simulate_alibaba(tmp_path: pathlib.Path) -> None:
    # The benchmark is this trace: without it there is nothing to report, which must not pass as a skip.
    assert TRACE.exists(), f"Alibaba trace not found at {TRACE}: put the shared data (../shared/data) beside the repo"
    scenarios = {
        "default": _scenario(CENTERS, TRACE, [], POLICIES),
        "gpuspec33": _scenario(CENTERS, DATA / "openb_pod_list_gpuspec33.csv", [], POLICIES),
        "default-west-first": _scenario(_west_first(tmp_path), TRACE, [], POLICIES),
        "default-30x": _scenario(CENTERS, TRACE, ["compression=30"], POLICIES),
    }
    draws = [_scenario(CENTERS, TRACE, [f"seed={s}"], ("first-fit", "green"))["vsFirstFit"]["green"]
             for s in range(1, DRAWS + 1)]
    wall = scenarios["default"]["wallSeconds"]
    targets = {
        f"default three replays < {WALL_TARGET_S:.0f} s": wall < WALL_TARGET_S,
        **{f"{name} green carbon <= {limit:.2f}x": scenarios[name]["vsFirstFit"]["green"]["carbon"] <= limit
           for name, limit in CARBON_TARGET.items()},
        **{f"{name} green mean wait <= 1.00x": s["vsFirstFit"]["green"]["meanWait"] <= 1.0
           for name, s in scenarios.items()},
    }
    summary = {k: {"min": min(d[k] for d in draws), "mean": round(statistics.fmean(d[k] for d in draws), 3),
                   "max": max(d[k] for d in draws)} for k in ("carbon", "meanWait", "waitPerAccelerator")} if draws else {}
    result = {"scenarios": scenarios, "greenOverRegionDraws": {"draws": draws, "summary": summary}, "targets": targets}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "simulate.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    lines = ["# suanli simulate benchmark", "",
             "Each ratio is the policy's figure over first-fit's in the same run. Oracle: every job alone on its "
             "cleanest allowed pool and hour (a lower bound for carbon).", "",
             "| scenario | policy | kg CO2e | × first-fit | × oracle | mean wait s | × first-fit | wait per accelerator s | × first-fit | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in scenarios.items():
        for policy, row in s["policies"].items():
            r = s["vsFirstFit"].get(policy, {"carbon": 1.0, "meanWait": 1.0, "waitPerAccelerator": 1.0})
            lines.append(
                f"| {name} | {policy} | {row['carbonKg']:,.0f} | {r['carbon']:.3f} | {row['carbonVsOracle']:.2f} | "
                f"{row['meanWaitSeconds']:,.0f} | {r['meanWait']:.2f} | {row['acceleratorWeightedWaitSeconds']:,.0f} | "
                f"{r['waitPerAccelerator']:.2f} | {s['wallSeconds'] if policy == 'first-fit' else ''} |")
    if summary:
        lines += ["", f"Green over first-fit on {len(draws)} region draws of the default scenario (min / mean / max): "
                  + "; ".join(f"{k} {v['min']:.2f} / {v['mean']:.2f} / {v['max']:.2f}" for k, v in summary.items()) + "."]
    lines += ["", "Targets: " + "; ".join(f"{k}: {'met' if ok else 'NOT met'}" for k, ok in targets.items()) + "."]
    (OUT / "simulate.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert wall < WALL_LIMIT_S, f"the default scenario's three replays took {wall:.1f} s"
