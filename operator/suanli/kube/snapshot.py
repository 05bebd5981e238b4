"""The snapshot the scheduler plans on: exactly the inputs of `placement.planner.plan`, built from
the cache at one instant, plus the per-pool usage the status writers publish. No I/O, no clock:
`now` is passed in.

Capacity comes from Ready, schedulable Nodes matching each pool's nodeSelector (a node matching
two pools' selectors counts in the earlier pool only, and the later pool is refused:
kube/pool_overlap.py) minus the accelerator requests of non-terminated Pods on them (for a pool declared with
`deviceClassName`: the devices of the nodes' ResourceSlices that the class and the pool's selectors
select, minus those ResourceClaims hold: kube/devices.py), minus the
replicas of bound jobs whose pods are not on a node yet: on the very nodes their binding names
(`status.binding.nodes`), or, for a binding written before that field existed, best-fit. The
ledger's node order of each pool is kept (`node_names`): it is how the planner's node indices
become node names.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from suanli.kube import objects as kobj
from suanli.ledger import capacity as capacity_mod
from suanli.ledger import energy as energy_mod
from suanli.ledger import quota as quota_mod
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod

if TYPE_CHECKING:
    from suanli.kube import cache as cache_mod

Key = kobj.Key


@dataclasses.dataclass(frozen=True)
class PoolUsage:
    center: str
    pool: str
    capacity: int
    allocated: int
    free: int
    ready_nodes: int
    expected_nodes: int
    refused: str = ""  # why the pool is refused (its nodeSelector overlaps an earlier pool's), "" if it is not
    reserved: int = 0  # held for bound jobs' replicas not running on a node (yet, or any more): not free either


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
    set_aside: int = 0  # queued jobs left out because none of their pools has room now (kube/set_aside.py)
    skippable: Mapping[Key, np.ndarray] | None = None  # planned jobs the planner may skip (PlanRequest.skippable)
    next_requeue: float = math.inf  # when the first requeued job's backoff ends (epoch)
    node_names: tuple[tuple[str, ...], ...] = ()  # per pool: its nodes' names in the capacity ledger's order
    quotas: quota_mod.QuotaLedger | None = None  # ComputeQueues' usage (kube/tenants.py); None without queues


def nodes_of(snapshot: Snapshot, allocation: capacity_mod.Allocation) -> tuple[str, ...]:
    """The node name of each replica of a gang the planner placed on this snapshot's ledger."""
    names = snapshot.node_names[allocation.pool]
    return tuple(names[i] for i in allocation.nodes)


def build(cache: cache_mod.Cache, now: float) -> Snapshot:
    """The planner's inputs now."""
    fleet = cache.fleet()
    specs, nodes, refused = cache.pool_members(fleet)
    free_by_pool, cap_by_pool = [], []
    for info, members in zip(fleet.pools, nodes, strict=True):
        counts = [cache.accelerators_on(info, n.name) for n in members]
        caps = [min(have, capacity_mod.MAX_PER_NODE) for have, _ in counts]
        frees = [max(0, c - in_use) for c, (_, in_use) in zip(caps, counts, strict=True)]
        cap_by_pool.append(caps)
        free_by_pool.append(frees)
    capacity = capacity_mod.CapacityLedger(free_by_pool, cap_by_pool)
    in_pods = [sum(caps) - sum(frees) for caps, frees in zip(cap_by_pool, free_by_pool, strict=True)]

    energy = energy_mod.EnergyLedger((c.name, c.zone, c.budget_kwh, c.budget_period) for c in fleet.centers)
    energy.roll(now)
    for account in energy.accounts():
        kwh, carbon = cache.settled.total(account.name, account.period_start)
        if kwh > 0:
            energy.add_used(account.name, kwh, carbon)
    cache.refresh_holds()
    tenants = cache.tenants
    for account in energy.accounts():
        held = cache.holds.held_kwh.get(account.name)
        if held:
            energy.hold(account.name, sum(held.values()))
    # The waiting jobs that changed since the last cycle are filed again (kube/set_aside.py): the queue
    # is not walked job by job.
    cache.set_aside.refresh(cache, fleet, now)
    # Replicas bound but not on a node yet. Those whose binding names their node hold that node (none
    # if it left the pool, only what is still free on it if others' pods took the rest). Then those of
    # bindings without nodes (older statuses), best-fit, bigger ones first (the ones fragmentation would
    # strand). What does not fit was placed on nodes that are gone or full of others' pods: nothing to hold.
    if cache.holds.pinned:
        _hold_pinned(cache.holds.pinned, fleet, nodes, capacity)
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
        member_problem = cache.member_state.problems.get(info.center)
        if member_problem is not None:
            reasons.append(member_problem[1])
        elif refused[p]:
            reasons.append(refused[p])
        elif not nodes[p]:
            reasons.append(
                f"no Ready, schedulable node has the labels {dict(specs[p].node_selector)} of pool {info.pool}"
            )
        elif capacity.capacity(p) == 0:
            devices_problem = cache.pool_problem(info)
            reasons.append(f"the pool's nodes offer no {info.resource}"
                           + (f": {devices_problem}" if devices_problem else ""))
        else:
            reasons.append("")
            ready[p] = True
        cap, free = capacity.capacity(p), capacity.free(p)
        usage.append(
            PoolUsage(
                info.center, info.pool, cap, in_pods[p], free, len(nodes[p]), info.expected_nodes, refused[p],
                reserved=max(0, cap - free - in_pods[p]),
            )
        )
    # Jobs that cannot start now and have their Queued status already wait outside the cycle
    # (kube/set_aside.py); the rest is cut after queue order (priority, then arrival), never by name.
    taken = cache.set_aside.take(fleet_mod.FleetState.slot_table(capacity.histogram()), ready,
                                 cache.settings.operator.max_jobs_per_cycle)
    return Snapshot(
        now=now,
        fleet=fleet,
        capacity=capacity,
        energy=energy,
        ready=ready,
        not_ready_reason=tuple(reasons),
        queue=tuple(taken.queue),
        invalid=tuple(cache.set_aside.invalid),
        usage=tuple(usage),
        truncated=taken.truncated,
        set_aside=taken.aside,
        skippable=taken.skippable,
        next_requeue=cache.set_aside.next_requeue(),
        node_names=tuple(tuple(n.name for n in members) for members in nodes),
        quotas=tenants.ledger(fleet, cache.placed_records(), now) if tenants.active else None,
    )


def _hold_pinned(
    pinned: dict[tuple[str, str, int], dict[str, int]],
    fleet: fleet_mod.Fleet,
    nodes: list[list[kobj.NodeInfo]],
    capacity: capacity_mod.CapacityLedger,
) -> None:
    """Take the replicas bound to named nodes off those nodes (bigger replicas first)."""
    where: dict[int, dict[str, int]] = {}  # pool -> node name -> ledger index, for pools with pinned replicas
    for (center_name, pool_name, count), per_node in sorted(pinned.items(), key=lambda item: (-item[0][2], item[0])):
        pool = fleet.pool_index(center_name, pool_name)
        if pool is None:
            continue
        index = where.get(pool)
        if index is None:
            index = where[pool] = {n.name: i for i, n in enumerate(nodes[pool])}
        free = capacity.free_per_node(pool)
        taken = np.zeros(len(free), dtype=np.int64)  # replicas per node
        for name, replicas in per_node.items():
            i = index.get(name)
            if i is not None:  # a node no longer in the pool holds nothing
                taken[i] += min(replicas, free[i] // count)
        if taken.any():
            capacity.take(pool, taken, count)


def usage_by_center(snapshot: Snapshot) -> dict[str, list[PoolUsage]]:
    out: dict[str, list[PoolUsage]] = {}
    for u in snapshot.usage:
        out.setdefault(u.center, []).append(u)
    return out

