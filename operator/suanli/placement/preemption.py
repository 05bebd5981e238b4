"""Preemption, gang-atomic and pure: which running jobs to stop so that a waiting job can run.

Two policies of the waiting job's ComputeQueue allow it (`spec.preemption`):
- `withinQueue: LowerPriority`: jobs of its own queue with a strictly lower priority;
- `reclaimBorrowed: true`: jobs of other queues of its cohort that are borrowing (their queue uses more
  than its nominal quota in some dimension), and only when the waiting job then fits its own queue's
  nominal quota in every concurrent dimension (it takes back what is its own, never borrows by
  preempting).
Neither can cycle: a victim of the first has a lower priority in the same queue, so it can never preempt
its preemptor; a victim of the second belongs to a borrowing queue, and its preemptor's queue is within
its nominal quota, so there is nothing the victim's queue could reclaim from it.

The victims are whole jobs (a gang is stopped or not), enough to let the waiting job fit one pool (its
capacity and its queue's quota) and no more: chosen greedily, cheapest first (lowest priority, then
the most recently started: the least work lost), then every victim whose removal still lets the job
fit is given back (a minimal set). Among pools, the one needing the fewest victims, then the cheapest.
A preemption is only proposed if it lets the job run: never one that frees too little.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

from suanli.api import queue as queue_api
from suanli.ledger import capacity as capacity_mod
from suanli.ledger import quota as quota_mod
from suanli.scoring import demand as demand_mod

JobKey = tuple[str, str]
WITHIN_QUEUE = "LowerPriority"
RECLAIM = "ReclaimBorrowed"


@dataclasses.dataclass(frozen=True)
class Running:
    """A placed job that might be preempted."""

    key: JobKey
    queue: str | None
    priority: int
    started: float  # epoch it was bound: later = less work lost
    allocation: capacity_mod.Allocation  # its gang's pool and nodes
    created: float = 0.0  # its creation: the later of two bound in the same second goes first


@dataclasses.dataclass(frozen=True)
class Policy:
    """A queue's `spec.preemption`."""

    within_queue: bool = False
    reclaim_borrowed: bool = False


@dataclasses.dataclass(frozen=True)
class Proposal:
    """Stop `victims` (each with its reason, WITHIN_QUEUE or RECLAIM) and the job fits on `pool`."""

    pool: int
    victims: tuple[tuple[JobKey, str], ...]


def policies(queues: Mapping[str, queue_api.ComputeQueueSpec]) -> dict[str, Policy]:
    """Each queue's `spec.preemption` as the core reads it."""
    return {name: Policy(spec.preemption.within_queue == "LowerPriority", spec.preemption.reclaim_borrowed)
            for name, spec in queues.items()}


def release(capacity: capacity_mod.CapacityLedger, quotas: quota_mod.QuotaLedger, r: Running) -> bool:
    """Give a stopped job's gang and quota back on working copies of the ledgers; False if its gang was not
    counted on this capacity ledger (nothing to give back there)."""
    quotas.release(r.key)
    try:
        capacity.release(r.allocation)
    except capacity_mod.CapacityError:
        return False
    return True


def _cost(r: Running) -> tuple[int, float, float, JobKey]:
    return (r.priority, -r.started, -r.created, r.key)


def candidates(job: demand_mod.JobDemand, running: Sequence[Running], quotas: quota_mod.QuotaLedger | None,
               policies: Mapping[str, Policy]) -> list[tuple[Running, str]]:
    """The jobs the waiting job's queue may preempt, and why; cheapest first."""
    if not job.queue or quotas is None or not quotas.has(job.queue):
        return []
    policy = policies.get(job.queue, Policy())
    cohort = quotas.quota(job.queue).cohort
    out: list[tuple[Running, str]] = []
    for r in running:
        if r.key == job.key or not r.queue or not quotas.has(r.queue):
            continue
        if r.queue == job.queue:
            if policy.within_queue and r.priority < job.priority:
                out.append((r, WITHIN_QUEUE))
        elif policy.reclaim_borrowed and cohort is not None and quotas.quota(r.queue).cohort == cohort \
                and any(v > 1e-9 for v in quotas.borrowed(r.queue).values()):
            out.append((r, RECLAIM))
    return sorted(out, key=lambda item: _cost(item[0]))


def propose(
    job: demand_mod.JobDemand,
    pools: Sequence[int],
    capacity: capacity_mod.CapacityLedger,
    quotas: quota_mod.QuotaLedger | None,
    running: Sequence[Running],
    policies: Mapping[str, Policy],
    demand_on: Callable[[int], Mapping[str, float]],
) -> Proposal | None:
    """The cheapest minimal set of victims that lets `job` run on one of `pools` (pools where only free
    capacity or its queue's quota keeps it out), or None. `demand_on(pool)`: what the job would hold in
    its queue there. The ledgers are not changed."""
    allowed = candidates(job, running, quotas, policies)
    if not allowed or quotas is None or not job.queue:
        return None
    best: tuple[tuple[int, tuple[tuple[int, float, float, JobKey], ...]], Proposal] | None = None
    for pool in pools:
        demand = demand_on(pool)
        if fits(job, pool, demand, capacity, quotas, []):
            continue  # it fits there as things are: nothing to preempt for
        chosen = _greedy(job, pool, demand, capacity, quotas, allowed)
        if chosen is None:
            continue
        chosen = _minimal(job, pool, demand, capacity, quotas, chosen)
        rank = (len(chosen), tuple(sorted(_cost(r) for r, _ in chosen)))
        if best is None or rank < best[0]:
            best = (rank, Proposal(pool, tuple((r.key, why) for r, why in chosen)))
    return best[1] if best is not None else None


def fits(job: demand_mod.JobDemand, pool: int, demand: Mapping[str, float], capacity: capacity_mod.CapacityLedger,
         quotas: quota_mod.QuotaLedger, victims: Sequence[tuple[Running, str]]) -> bool:
    """Whether the job fits `pool` (capacity) and its queue (quota) once `victims` are stopped; a
    reclaiming preemption also needs the job within its queue's nominal quota."""
    work = _Trial(capacity, quotas)
    for r, _ in victims:
        work.stop(r)
    return work.fits(job, pool, demand, any(why == RECLAIM for _, why in victims))


class _Trial:
    """Copies of the ledgers on which victims are stopped (and given back) one at a time: a greedy pass
    over n candidates costs n ledger updates, not n copies of n."""

    def __init__(self, capacity: capacity_mod.CapacityLedger, quotas: quota_mod.QuotaLedger):
        self.source = quotas
        self.capacity, self.quotas = capacity.copy(), quotas.copy()
        self.freed: set[JobKey] = set()  # victims whose gang was counted on the capacity ledger

    def stop(self, r: Running) -> None:
        if release(self.capacity, self.quotas, r):
            self.freed.add(r.key)

    def resume(self, r: Running) -> None:
        """Undo `stop(r)`."""
        if r.key in self.freed:
            self.capacity.reserve_on(r.allocation)
            self.freed.discard(r.key)
        self.quotas.rebook(r.key, self.source)

    def fits(self, job: demand_mod.JobDemand, pool: int, demand: Mapping[str, float], reclaiming: bool) -> bool:
        if self.capacity.slots(pool, job.count) < job.replicas:
            return False
        assert job.queue is not None
        if self.quotas.check(job.queue, demand) is not None:
            return False
        if reclaiming:
            usage = self.quotas.usage(job.queue)
            limits = self.quotas.quota(job.queue).limits
            for dimension, need in demand.items():
                limit = limits.get(dimension)
                if limit is not None and usage.get(dimension, 0.0) + need > limit.nominal + 1e-9:
                    return False
        return True


def _greedy(job: demand_mod.JobDemand, pool: int, demand: Mapping[str, float], capacity: capacity_mod.CapacityLedger,
            quotas: quota_mod.QuotaLedger, allowed: Sequence[tuple[Running, str]]) -> list[tuple[Running, str]] | None:
    """Cheapest first until the job fits; None if even all of them do not make room."""
    chosen: list[tuple[Running, str]] = []
    useful = [(r, why) for r, why in allowed if r.allocation.pool == pool or why == RECLAIM or _holds_quota(r, job)]
    work = _Trial(capacity, quotas)
    reclaiming = False
    for item in useful:
        chosen.append(item)
        work.stop(item[0])
        reclaiming = reclaiming or item[1] == RECLAIM
        if work.fits(job, pool, demand, reclaiming):
            return chosen
    return None


def _holds_quota(r: Running, job: demand_mod.JobDemand) -> bool:
    """A job of the same queue frees quota wherever it runs."""
    return r.queue == job.queue


def _minimal(job: demand_mod.JobDemand, pool: int, demand: Mapping[str, float], capacity: capacity_mod.CapacityLedger,
             quotas: quota_mod.QuotaLedger, chosen: list[tuple[Running, str]]) -> list[tuple[Running, str]]:
    """Give back every victim (most expensive first) whose stopping is not needed."""
    work = _Trial(capacity, quotas)
    for r, _ in chosen:
        work.stop(r)
    kept = list(chosen)
    for item in sorted(chosen, key=lambda it: _cost(it[0]), reverse=True):
        trial = [k for k in kept if k is not item]
        work.resume(item[0])
        if work.fits(job, pool, demand, any(why == RECLAIM for _, why in trial)):
            kept = trial
        else:
            work.stop(item[0])
    return kept


def waste(victims: Sequence[Running], now: float) -> float:
    """Accelerator-seconds of work the victims lose (for reports)."""
    return math.fsum(r.allocation.accelerators * max(0.0, now - r.started) for r in victims)
