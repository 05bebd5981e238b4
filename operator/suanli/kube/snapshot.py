"""The snapshot the scheduler plans on: exactly the inputs of `placement.planner.plan`, built from
the cache at one instant, plus the per-pool usage the status writers publish. No I/O, no clock:
`now` is passed in.

Capacity comes from Ready, schedulable Nodes matching each pool's nodeSelector minus the
accelerator requests of non-terminated Pods on them, minus the replicas of bound jobs whose pods
are not on a node yet.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from suanli.kube import objects as kobj
from suanli.ledger import capacity as capacity_mod
from suanli.ledger import energy as energy_mod
from suanli.placement import queue as queue_mod
from suanli.placement import validation
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod

if TYPE_CHECKING:
    from suanli.kube import cache as cache_mod

Key = kobj.Key
UNSUPPORTED_MEMBER = "member clusters (spec.cluster) are not supported by this operator version yet"


@dataclasses.dataclass(frozen=True)
class PoolUsage:
    center: str
    pool: str
    capacity: int
    allocated: int
    free: int
    ready_nodes: int
    expected_nodes: int


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The planner's inputs at one instant, plus what the status writers need."""

    now: float
    fleet: fleet_mod.Fleet
    capacity: capacity_mod.CapacityLedger
    energy: energy_mod.EnergyLedger
    ready: np.ndarray
    not_ready_reason: tuple[str, ...]
    queue: tuple[demand_mod.JobDemand, ...]
    invalid: tuple[tuple[Key, str, str], ...]  # (job, field, message) not yet marked Invalid
    usage: tuple[PoolUsage, ...]
    truncated: int = 0  # queued jobs left out of `queue` by operator.max_jobs_per_cycle


def build(cache: cache_mod.Cache, now: float) -> Snapshot:
    """The planner's inputs now."""
    fleet = cache.fleet()
    specs, nodes = cache.pool_members(fleet)
    used = cache.node_used
    free_by_pool, cap_by_pool = [], []
    for info, members in zip(fleet.pools, nodes, strict=True):
        caps = [min(n.allocatable.get(info.resource_name, 0), capacity_mod.MAX_PER_NODE) for n in members]
        frees = [max(0, c - used.get((n.name, info.resource_name), 0)) for n, c in zip(members, caps, strict=True)]
        cap_by_pool.append(caps)
        free_by_pool.append(frees)
    capacity = capacity_mod.CapacityLedger(free_by_pool, cap_by_pool)

    energy = energy_mod.EnergyLedger((c.name, c.zone, c.budget_kwh, c.budget_period) for c in fleet.centers)
    energy.roll(now)
    for account in energy.accounts():
        kwh, carbon = cache.settled.total(account.name, account.period_start)
        if kwh > 0:
            energy.add_used(account.name, kwh, carbon)
    waiting = cache.waiting()
    for account in energy.accounts():
        held = cache.holds.held_kwh.get(account.name)
        if held:
            energy.hold(account.name, sum(held.values()))
    queue: list[demand_mod.JobDemand] = []
    invalid: list[tuple[Key, str, str]] = []
    models = [p.model for p in fleet.pools]
    for key in sorted(waiting):
        record = cache.jobs[key]
        if record.demand is None or record.parse_error is not None:
            if record.phase != "Invalid" and record.parse_error is not None:
                invalid.append((key, *record.parse_error))
            continue
        if not cache.schedulable(record):
            continue
        problem = validation.invalid_models(record.demand.models, models)
        if problem is not None:
            invalid.append((key, *problem))
            continue
        queue.append(record.demand)
    # Replicas bound but not on a node yet, bigger ones first (the ones fragmentation would strand);
    # what does not fit was placed on nodes that are gone or full of others' pods: nothing to hold.
    for (center_name, pool_name, count), replicas in sorted(
        cache.holds.pending.items(), key=lambda item: (-item[0][2], item[0])
    ):
        pool = fleet.pool_index(center_name, pool_name)
        if pool is not None:
            capacity.fill(pool, replicas, count)

    ready = np.zeros(fleet.size, dtype=np.bool_)
    reasons: list[str] = []
    usage: list[PoolUsage] = []
    for p, info in enumerate(fleet.pools):
        center = cache.centers[info.center]
        if center.spec.cluster is not None:
            reasons.append(UNSUPPORTED_MEMBER)
        elif not nodes[p]:
            reasons.append(
                f"no Ready, schedulable node has the labels {dict(specs[p].node_selector)} of pool {info.pool}"
            )
        elif capacity.capacity(p) == 0:
            reasons.append(f"the pool's nodes offer no {info.resource_name}")
        else:
            reasons.append("")
            ready[p] = True
        cap, free = capacity.capacity(p), capacity.free(p)
        usage.append(
            PoolUsage(info.center, info.pool, cap, cap - free, free, len(nodes[p]), info.expected_nodes)
        )
    # Cut after queue order (priority, then arrival), never by name: the head of the queue is planned.
    ordered = queue_mod.ordered(queue)
    limit = cache.settings.operator.max_jobs_per_cycle
    return Snapshot(
        now=now,
        fleet=fleet,
        capacity=capacity,
        energy=energy,
        ready=ready,
        not_ready_reason=tuple(reasons),
        queue=tuple(ordered[:limit]),
        invalid=tuple(invalid),
        usage=tuple(usage),
        truncated=max(0, len(ordered) - limit),
    )


def usage_by_center(snapshot: Snapshot) -> dict[str, list[PoolUsage]]:
    out: dict[str, list[PoolUsage]] = {}
    for u in snapshot.usage:
        out.setdefault(u.center, []).append(u)
    return out

