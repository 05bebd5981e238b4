"""Benchmark: the scoring core on 10,000 jobs x 1,000 pools against a plain per-pair Python loop.

The plain loop implements the same formulas one (job, pool) pair at a time; it is measured in the
same run on a slice of the jobs, and it doubles as an oracle: its scores must equal the core's.
Targets (issue 2): at least 10 million evaluations per second and at least 20x the plain loop.
"""

from __future__ import annotations

import math
import platform
import random
import time
from typing import Any

import numpy as np
import pytest
from tests.unit import builders as b

from suanli import settings as settings_mod
from suanli.api import objects
from suanli.catalog import accelerators
from suanli.scoring import demand as demand_mod
from suanli.scoring import engine
from suanli.scoring import fleet as fleet_mod

pytestmark = pytest.mark.bench

N_JOBS, N_CENTERS, POOLS_PER_CENTER = 10_000, 100, 10
CHUNK = 500
LOOP_JOBS = 40
REGIONS = [f"cn-r{i}" for i in range(20)]
MODELS = [(a.type, a.name) for a in accelerators.CATALOG.values()]


def _fleet(rng: random.Random) -> list[objects.ComputeCenter]:
    centers = []
    for c in range(N_CENTERS):
        pools = []
        for p in range(POOLS_PER_CENTER):
            type_, model = rng.choice(MODELS)
            pools.append(
                b.pool(
                    f"p{p}", type_=type_, model=model, nodes=rng.randint(1, 32), per_node=rng.choice([4, 8])
                )
            )
        links = [{"region": r, "bandwidthGbps": rng.uniform(1, 100)} for r in rng.sample(REGIONS, 5)]
        centers.append(
            b.center(
                f"c{c:03d}",
                region=rng.choice(REGIONS),
                pools=pools,
                pue=rng.uniform(1.1, 1.6),
                grams=rng.uniform(100, 800),
                price=rng.uniform(0.3, 0.9),
                links=links,
                budget_kwh=rng.choice([None, 1e5]),
            )
        )
    return centers


def _jobs(rng: random.Random) -> list[demand_mod.JobDemand]:
    out = []
    for i in range(N_JOBS):
        j = b.job(
            f"j{i}",
            count=rng.choice([1, 2, 4, 8]),
            replicas=rng.randint(1, 4),
            types=tuple(rng.sample(["GPU", "NPU", "DCU", "MLU"], rng.randint(1, 3))),
            precision=rng.choice(["fp16", "bf16", "fp32"]),
            min_memory=rng.choice([0, 24, 40]),
            duration=rng.choice(["30m", "2h", "8h"]),
            data={"region": rng.choice(REGIONS), "sizeGiB": rng.uniform(0, 2000)},
            profile=rng.choice(["balanced", "green", "fast", "local"]),
        )
        out.append(b.demand(j))
    return out


def _plain_loop(
    fleet: fleet_mod.Fleet,
    state: fleet_mod.FleetState,
    jobs: list[demand_mod.JobDemand],
    scoring: settings_mod.ScoringSettings,
) -> tuple[list[list[float]], list[list[int]]]:
    """The same outputs as the core (every filter's verdict, estimates, factors, score), one pair at a time."""
    R = engine.Reject
    scores, reasons = [], []
    for job in jobs:
        ref = demand_mod.reference_tflops(job.reference_model, job.precision)
        ref_watts = accelerators.CATALOG[job.reference_model].board_watts
        ref_kwh = job.replicas * job.count * ref_watts * job.runtime_seconds / 3.6e6 * scoring.reference_pue
        rc = ref_kwh * scoring.reference_grid_grams_per_kwh / 1000
        rp = ref_kwh * scoring.reference_price_per_kwh
        score_row, reason_row = [], []
        for p in fleet.pools:
            center = fleet.centers[int(fleet.pool_center[p.index])]
            peak = p.peak_tflops.get(job.precision)
            bits = 0
            if p.accelerator_type not in job.types:
                bits |= R.TYPE
            if job.models and p.model not in job.models:
                bits |= R.MODEL
            if peak is None:
                bits |= R.PRECISION
            if p.memory_gib < job.min_memory_gib:
                bits |= R.MEMORY
            if job.allowed_regions and p.region not in job.allowed_regions:
                bits |= R.REGION
            if int(state.idle_slots[p.index, job.count]) < job.replicas:
                bits |= R.NEVER_FITS
            elif int(state.slots[p.index, job.count]) < job.replicas:
                bits |= R.CAPACITY
            if not bool(state.ready[p.index]):
                bits |= R.NOT_READY
            speed = (peak if peak is not None else 1.0) / ref
            runtime = job.runtime_seconds / speed
            transfer = 0.0
            if job.data_gib > 0 and job.data_region is not None and job.data_region != p.region:
                ri = fleet.region_index(job.data_region)
                ri = ri if ri >= 0 else len(fleet.regions)
                transfer = (
                    job.data_gib * fleet_mod.GIB_TO_GBIT / fleet.bandwidth_gbps[p.index, ri]
                    + fleet.latency_s[p.index, ri]
                )
            kwh = job.replicas * job.count * p.power_watts * runtime / 3.6e6 * p.pue
            carbon = kwh * float(fleet.carbon_base[center.index]) / 1000
            cost = kwh * float(fleet.price_base[center.index])
            if kwh > state.budget_remaining_kwh[center.index] + 1e-9:
                bits |= R.BUDGET
            if kwh > job.max_kwh:
                bits |= R.MAX_KWH
            if carbon > job.max_carbon_kg:
                bits |= R.MAX_CARBON
            if b.NOW + transfer + runtime > job.deadline_epoch:
                bits |= R.DEADLINE
            energy = scoring.carbon_share * rc / (rc + carbon) + (1 - scoring.carbon_share) * rp / (rp + cost)
            w = job.weights
            score = w[0] * speed / (1 + speed) + w[1] * runtime / (runtime + transfer) + w[2] * energy
            score_row.append(score if bits == 0 else -1.0)
            reason_row.append(int(bits))
        scores.append(score_row)
        reasons.append(reason_row)
    return scores, reasons


def test_core_throughput(write_report: Any) -> None:
    rng = random.Random(7)
    scoring = settings_mod.ScoringSettings()
    centers = _fleet(rng)
    demands = _jobs(rng)
    fleet = fleet_mod.build(centers, extra_regions=REGIONS)
    state = fleet_mod.idle_state(fleet)
    assert fleet.size == N_CENTERS * POOLS_PER_CENTER

    batch_started = time.perf_counter()
    batches = [
        demand_mod.batch(demands[i : i + CHUNK], fleet, scoring.reference_pue)
        for i in range(0, N_JOBS, CHUNK)
    ]
    batch_seconds = time.perf_counter() - batch_started

    minutes = engine.local_start_minutes(fleet, np.full(CHUNK, b.NOW))
    best = []
    started = time.perf_counter()
    for jb in batches:
        ev = engine.evaluate(fleet, state, jb, b.NOW, scoring, start_minutes=minutes[: jb.size])
        best.append(ev.best())
    core_seconds = time.perf_counter() - started
    pairs = N_JOBS * fleet.size
    core_rate = pairs / core_seconds

    loop_started = time.perf_counter()
    plain, plain_reasons = _plain_loop(fleet, state, demands[:LOOP_JOBS], scoring)
    loop_seconds = time.perf_counter() - loop_started
    loop_rate = LOOP_JOBS * fleet.size / loop_seconds

    # The oracle: same scores from both implementations.
    check = engine.evaluate(
        fleet, state, batches[0], b.NOW, scoring, start_minutes=minutes[: batches[0].size]
    )
    assert np.allclose(check.score[:LOOP_JOBS], np.array(plain), atol=1e-9)
    assert np.array_equal(check.reasons[:LOOP_JOBS], np.array(plain_reasons))
    feasible_share = float(np.mean(check.feasible))
    assert all(int(x.max()) >= 0 for x in best), "some jobs should find a pool"

    ratio = core_rate / loop_rate
    data = {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.machine(),
            "numpy": np.__version__,
        },
        "jobs": N_JOBS,
        "pools": fleet.size,
        "pairs": pairs,
        "chunk": CHUNK,
        "coreSeconds": round(core_seconds, 3),
        "coreEvaluationsPerSecond": round(core_rate),
        "batchBuildSeconds": round(batch_seconds, 3),
        "plainLoopPairs": LOOP_JOBS * fleet.size,
        "plainLoopSeconds": round(loop_seconds, 3),
        "plainLoopEvaluationsPerSecond": round(loop_rate),
        "speedupOverPlainLoop": round(ratio, 1),
        "feasibleShare": round(feasible_share, 3),
        "targets": {"evaluationsPerSecond": 10_000_000, "speedup": 20},
    }
    md = (
        "| measure | value |\n|---|---|\n"
        f"| (job, pool) pairs | {pairs:,} ({N_JOBS:,} jobs x {fleet.size:,} pools) |\n"
        f"| core: wall time | {core_seconds:.2f} s |\n"
        f"| core: evaluations/s | {core_rate / 1e6:.1f} M (target >= 10 M) |\n"
        f"| plain per-pair loop: evaluations/s | {loop_rate / 1e3:.0f} k (same run, {LOOP_JOBS * fleet.size:,} pairs) |\n"
        f"| speedup over the plain loop | {ratio:.0f}x (target >= 20x) |\n"
        f"| building job arrays (not in the rate) | {batch_seconds:.2f} s |\n"
    )
    path = write_report("core", data, md)
    print(f"\n{md}\nwritten to {path}")
    assert math.isfinite(core_rate)
    assert core_rate >= 10_000_000, f"core evaluated {core_rate / 1e6:.1f} M pairs/s, target 10 M"
    assert ratio >= 20, f"core is {ratio:.1f}x the plain loop, target 20x"
