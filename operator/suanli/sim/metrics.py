"""Per-policy figures of a replay: the `suanli simulate -o json` contract, units in the names.

  jobs                     jobs in the trace (after the loader's documented skips)
  completed                jobs that ran to the end
  unschedulable            jobs no pool of the fleet could ever take (type, model, memory, region, gang)
  stillQueued              jobs waiting when nothing else could happen (budget or cap never allows them)
  energyKWh, carbonKg, cost   settled at completion (facility energy, PUE included), summed over centers
  meanWaitSeconds, p95WaitSeconds   start - arrival over jobs that started
  meanJCTSeconds           end - arrival over completed jobs (transfer + runtime + wait)
  utilization              busy accelerator-seconds / fleet accelerator-seconds, both over the arrival
                           window [first arrival, last arrival] (the long tail after it would dilute it)
  deadlineMisses           completed after their deadline, or never completed while having one
  maxPoolOversubscription  worst accelerators over capacity on any node or pool, checked after every event
  oracleCarbonKg           the carbon oracle (`sim/oracle.py`) summed over the jobs this run completed: each
                           on its cleanest allowed pool at its cleanest hour, capacity and wait ignored
  carbonVsOracle           carbonKg / oracleCarbonKg (>= 1; how far placement and timing are from the bound)

With ComputeQueues (`sim/tenants.py`):
  queues[]                 per queue: name, weight, jobs, completed, meanWaitSeconds, p95WaitSeconds,
                           computeUnitHours and acceleratorHours held, energyKWh, carbonKg, cost settled
                           by its jobs, busyComputeUnitHours (held over the busy period), busyShare (its weighted share of the compute units held over the
                           busy period), maxOverLimit (worst excess over nominal + borrowing, 0: never)
  fairness                 busySeconds (every queue had a job waiting), jainIndex of the busy shares,
                           meanJainIndex (time-weighted, of the instantaneous weighted holdings),
                           shareSpread (largest busy share / smallest - 1); null where there was no busy period
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from suanli.sim import replay
from suanli.sim import tenants as tenants_mod


def summary(run: replay.Run, floor: npt.NDArray[np.float64] | None = None) -> dict[str, Any]:
    """The run's figures; with `floor` (per job, `oracle.carbon_floor`) also the oracle's."""
    records = run.records
    started = [r for r in records if not math.isnan(r.start)]
    completed = [r for r in records if r.outcome == "completed"]
    waits = np.array([r.start - r.arrival for r in started], dtype=np.float64)
    sizes = np.array([_accelerators(run, r) for r in started], dtype=np.float64)
    jct = np.array([r.end - r.arrival for r in completed], dtype=np.float64)
    fleet_size = sum(p.expected_nodes * p.accelerators_per_node for p in run.fleet.pools)
    first = min((r.arrival for r in records), default=0.0)
    last = max((r.arrival for r in records), default=first)
    span = max(last - first, 1e-9)
    busy = sum(
        r.accelerators * max(0.0, min(r.end, last) - max(r.start, first))
        for r in records
        if not math.isnan(r.start) and not math.isnan(r.end)
    )
    misses = 0
    for r in records:
        deadline = run.jobs[r.index].deadline_epoch
        if math.isfinite(deadline) and (r.outcome != "completed" or r.end > deadline + 1e-6):
            misses += 1
    return {
        "jobs": len(records),
        "completed": len(completed),
        "unschedulable": sum(1 for r in records if r.outcome == "unschedulable"),
        "stillQueued": sum(1 for r in records if r.outcome == "queued"),
        "energyKWh": round(sum(run.center_energy_kwh.values()), 3),
        "carbonKg": round(sum(run.center_carbon_kg.values()), 3),
        "cost": round(sum(run.center_cost.values()), 3),
        "meanWaitSeconds": round(float(waits.mean()), 3) if waits.size else 0.0,
        "p95WaitSeconds": round(float(np.percentile(waits, 95)), 3) if waits.size else 0.0,
        # Each job's wait counted once per accelerator it asked for: a 1x8 gang weighs as eight
        # single-GPU jobs (the plain mean lets a policy look good by starving the gangs).
        "acceleratorWeightedWaitSeconds": round(float(waits @ sizes / sizes.sum()), 3) if waits.size else 0.0,
        "meanWaitSecondsByAccelerators": {str(int(n)): round(float(waits[sizes == n].mean()), 3)
                                          for n in np.unique(sizes)},
        "meanJCTSeconds": round(float(jct.mean()), 3) if jct.size else 0.0,
        "utilization": round(busy / (fleet_size * span), 4) if fleet_size else 0.0,
        "deadlineMisses": misses,
        "maxPoolOversubscription": run.max_pool_oversubscription,
        **(_oracle(run, floor) if floor is not None else {}),
        **(_tenants(run) if run.tenants is not None else {}),
    }


def _accelerators(run: replay.Run, record: replay.JobRecord) -> int:
    """Accelerators the job asked for: its replicas times accelerators per replica."""
    job = run.jobs[record.index]
    return job.replicas * job.count


def _oracle(run: replay.Run, floor: npt.NDArray[np.float64]) -> dict[str, Any]:
    bound = float(sum(floor[r.index] for r in run.records if r.outcome == "completed"))
    carbon = sum(run.center_carbon_kg.values())
    return {"oracleCarbonKg": round(bound, 3), "carbonVsOracle": round(carbon / bound, 3) if bound > 0 else 0.0}


def _waits(records: list[replay.JobRecord]) -> tuple[float, float]:
    waits = np.array([r.start - r.arrival for r in records if not math.isnan(r.start)], dtype=np.float64)
    if not waits.size:
        return 0.0, 0.0
    return round(float(waits.mean()), 3), round(float(np.percentile(waits, 95)), 3)


def _tenants(run: replay.Run) -> dict[str, Any]:
    watch = run.tenants
    assert watch is not None
    shares = watch.busy_shares()
    busy = watch.busy_seconds > 0
    rows = []
    for i, f in enumerate(watch.figures):
        mine = [r for r in run.records if r.queue == f.name]
        done = [r for r in mine if r.outcome == "completed"]
        mean_wait, p95_wait = _waits(mine)
        rows.append({
            "name": f.name,
            "weight": f.weight,
            "jobs": len(mine),
            "completed": len(done),
            "meanWaitSeconds": mean_wait,
            "p95WaitSeconds": p95_wait,
            "computeUnitHours": round(f.compute_unit_seconds / 3600, 3),
            "acceleratorHours": round(f.accelerator_seconds / 3600, 3),
            "energyKWh": round(sum(r.energy_kwh for r in done), 3),
            "carbonKg": round(sum(r.carbon_kg for r in done), 3),
            "cost": round(sum(r.cost for r in done), 3),
            "busyComputeUnitHours": round(f.busy_compute_unit_seconds / 3600, 3),
            "busyShare": round(float(shares[i]), 4) if busy else 0.0,
            "maxOverLimit": round(f.over_limit, 6),
            "maxOverLimitDimension": f.over_limit_dimension,
        })
    demanding = shares[watch.demanding]
    smallest = float(demanding.min()) if busy and demanding.size else 0.0
    fairness = {
        "busySeconds": round(watch.busy_seconds, 3),
        "jainIndex": round(tenants_mod.jain(demanding), 4) if busy else None,
        "meanJainIndex": round(watch.mean_jain(), 4) if busy else None,
        "shareSpread": round(float(demanding.max()) / smallest - 1, 4) if busy and smallest > 0 else None,
    }
    return {"queues": rows, "fairness": fairness}


def by_center(run: replay.Run) -> dict[str, dict[str, float]]:
    """Energy, carbon and cost settled at each center (for the report)."""
    return {
        name: {
            "energyKWh": round(run.center_energy_kwh[name], 3),
            "carbonKg": round(run.center_carbon_kg[name], 3),
            "cost": round(run.center_cost[name], 3),
        }
        for name in sorted(run.center_energy_kwh)
    }
