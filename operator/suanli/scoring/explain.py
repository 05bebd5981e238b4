"""Human-readable reasons: why a pool cannot take a job, in words an on-call person can act on."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping

import numpy as np

from suanli.scoring import demand as demand_mod
from suanli.scoring import engine
from suanli.scoring import fleet as fleet_mod


def _hours(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reason(
    fleet: fleet_mod.Fleet,
    state: fleet_mod.FleetState,
    job: demand_mod.JobDemand,
    evaluation: engine.Evaluation,
    row: int,
    pool_index: int,
    quota: Mapping[int, str] | None = None,
) -> str:
    """Every failed filter of one (job, pool), most fundamental first, joined by '; '. `quota`: the
    queue's sentence per pool it cannot cover (placement/tenancy.py)."""
    bits = engine.Reject(int(evaluation.reasons[row, pool_index]))
    info = fleet.pools[pool_index]
    parts: list[str] = []
    if engine.Reject.TYPE in bits:
        accepted = ", ".join(job.types) or "nothing (no image for any accepted type)"
        parts.append(f"pool is {info.accelerator_type}; job accepts {accepted} (a type needs an image)")
    if engine.Reject.MODEL in bits:
        parts.append(f"model {info.model} is not in accelerators.models ({', '.join(job.models)})")
    if engine.Reject.PRECISION in bits:
        supported = ", ".join(sorted(info.peak_tflops)) or "none"
        parts.append(f"{info.model} has no {job.precision} support (it has {supported})")
    if engine.Reject.MEMORY in bits:
        parts.append(
            f"needs {job.min_memory_gib:g} GiB per accelerator; {info.model} has {info.memory_gib:g} GiB"
        )
    if engine.Reject.REGION in bits:
        parts.append(f"region {info.region} is not in data.allowedRegions ({', '.join(job.allowed_regions)})")
    if engine.Reject.NEVER_FITS in bits:
        idle = int(state.idle_slots[pool_index, min(job.count, fleet_mod.MAX_PER_NODE)])
        parts.append(
            f"gang of {job.replicas}x{job.count} never fits: even empty the pool holds {idle} replica(s) of "
            f"{job.count} ({info.accelerators_per_node} accelerators per node)"
        )
    if engine.Reject.CAPACITY in bits:
        free = int(state.slots[pool_index, min(job.count, fleet_mod.MAX_PER_NODE)])
        parts.append(
            f"not enough free accelerators now: gang of {job.replicas}x{job.count} needs {job.replicas} node slot(s) "
            f"with {job.count} free, {free} available"
        )
    if engine.Reject.NOT_READY in bits:
        parts.append(f"not ready: {state.not_ready_reason[pool_index] or 'center is not Ready'}")
    kwh = float(evaluation.energy_kwh[row, pool_index])
    if engine.Reject.BUDGET in bits:
        left = float(state.budget_remaining_kwh[info_center(fleet, pool_index)])
        period = state.budget_period[info_center(fleet, pool_index)] if state.budget_period else "this period"
        parts.append(
            f"center energy budget: job needs {kwh:,.0f} kWh, {max(left, 0):,.0f} kWh left in {period}"
        )
    if engine.Reject.MAX_KWH in bits:
        parts.append(f"estimated {kwh:,.1f} kWh exceeds energy.maxKWh {job.max_kwh:,.1f}")
    if engine.Reject.MAX_CARBON in bits:
        carbon = float(evaluation.carbon_kg[row, pool_index])
        parts.append(f"estimated {carbon:,.1f} kg CO2e exceeds energy.maxCarbonKg {job.max_carbon_kg:,.1f}")
    if engine.Reject.DEADLINE in bits:
        start = float(evaluation.start_epoch[row])
        transfer = float(evaluation.transfer_s[row, pool_index])
        runtime = float(evaluation.runtime_s[row, pool_index])
        finish = start + transfer + runtime
        deadline = _when(job.deadline_epoch) if math.isfinite(job.deadline_epoch) else "never"
        parts.append(
            f"cannot meet the deadline: transfer {_hours(transfer)} + runtime {_hours(runtime)} "
            f"ends {_when(finish)}, after {deadline}"
        )
    if engine.Reject.QUOTA in bits:
        parts.append((quota or {}).get(pool_index, "the job's ComputeQueue cannot cover it"))
    return "; ".join(parts) if parts else "feasible"


def info_center(fleet: fleet_mod.Fleet, pool_index: int) -> int:
    return int(fleet.pool_center[pool_index])


def summary(evaluation: engine.Evaluation, row: int) -> dict[str, int]:
    """How many pools each filter rejected, by filter name (for 'why does it wait')."""
    out: dict[str, int] = {}
    reasons = evaluation.reasons[row]
    for flag in engine.Reject:
        hits = int(np.count_nonzero(reasons & int(flag)))
        if hits:
            out[str(flag.name)] = hits
    return out
