"""Preemption in the replay: the operator's rules (`placement/preemption.py`), asked at the points where
a waiting job of a queue that allows it cannot run. Pure: the replay applies what it proposes.

A queue's jobs are asked about preemption only when it could help: `reclaimBorrowed` while the queue
is under its nominal quota in an accelerator dimension of a pool the job could use and another queue
of its cohort borrows; `withinQueue: LowerPriority` while the queue runs a job of lower priority than
its waiting head. A question that found no victims is not asked again until the cohort's usage has
changed (the same running jobs give the same answer).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence

from suanli.api import queue as queue_api
from suanli.ledger import capacity as capacity_mod
from suanli.ledger import quota as quota_mod
from suanli.placement import decision as decision_mod
from suanli.placement import preemption
from suanli.scoring import demand as demand_mod

JobKey = tuple[str, str]


class Preemptor:
    def __init__(self, queues: Mapping[str, queue_api.ComputeQueueSpec]):
        self.policies = preemption.policies(queues)
        self.priorities: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        self._refused: dict[JobKey, tuple[object, ...]] = {}  # job -> the cohort usage at which none was found
        self.preemptions = 0

    def started(self, queue: str | None, priority: int) -> None:
        if queue:
            self.priorities[queue][priority] += 1

    def stopped(self, queue: str | None, priority: int) -> None:
        if queue:
            counts = self.priorities[queue]
            counts[priority] -= 1
            if counts[priority] <= 0:
                del counts[priority]

    def may_help(self, quotas: quota_mod.QuotaLedger | None, queue: str, need: int, priority: int,
                 dimensions: Sequence[str]) -> bool:
        """Whether asking could find victims for a waiting job of `queue` (cheap; see the module docstring)."""
        policy = self.policies.get(queue)
        if policy is None or quotas is None or not quotas.has(queue):
            return False
        if policy.within_queue and any(p < priority for p in self.priorities.get(queue, ())):
            return True
        if not policy.reclaim_borrowed:
            return False
        cohort = quotas.quota(queue).cohort
        if cohort is None:
            return False
        limits, usage = quotas.quota(queue).limits, quotas.usage(queue)
        under = any(
            usage.get(dim, 0.0) + need <= limit.nominal
            for dim, limit in limits.items()
            if any(d == dim or d.startswith(dim + "/") for d in dimensions)
        )
        return under and any(
            any(v > 1e-9 for v in quotas.borrowed(other).values())
            for other in quotas.queues()
            if other != queue and quotas.quota(other).cohort == cohort
        )

    def propose(self, decision: decision_mod.Decision, capacity: capacity_mod.CapacityLedger,
                quotas: quota_mod.QuotaLedger, running: Sequence[preemption.Running]) -> preemption.Proposal | None:
        """Victims that let the Queued job of `decision` run, or None (remembered until the cohort's usage moves)."""
        job: demand_mod.JobDemand = decision.job
        if not decision.reclaimable or not job.queue:
            return None
        signature = self._signature(quotas, job.queue)
        if self._refused.get(job.key) == signature:
            return None
        demands = dict(decision.reclaimable)
        proposal = preemption.propose(job, list(demands), capacity, quotas, running, self.policies,
                                      lambda pool: demands[pool])
        if proposal is None:
            self._refused[job.key] = signature
        else:
            self._refused.pop(job.key, None)
            self.preemptions += len(proposal.victims)
        return proposal

    @staticmethod
    def _signature(quotas: quota_mod.QuotaLedger, queue: str) -> tuple[object, ...]:
        cohort = quotas.quota(queue).cohort
        members = [q for q in quotas.queues() if q == queue or (cohort is not None and quotas.quota(q).cohort == cohort)]
        return tuple((q, tuple(sorted((d, round(v, 6)) for d, v in quotas.usage(q).items()))) for q in members)
