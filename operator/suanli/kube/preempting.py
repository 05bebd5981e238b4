"""Preemption in the operator: after each plan, a waiting job of a ComputeQueue that allows it may have
running jobs stopped to make room (the choice is the pure core's, placement/preemption.py). Victims'
attempts end as any ended attempt does (kube/lifecycle.py: Job and pods deleted, back in the queue after
a backoff, the attempt counted) with a Preempted condition and Event naming the preemptor; the
preemptor is planned normally once their accelerators are free, and proposes nothing more meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from suanli import logs
from suanli.kube import records
from suanli.ledger import capacity as capacity_mod
from suanli.placement import decision as decision_mod
from suanli.placement import preemption

if TYPE_CHECKING:
    from suanli.kube import scheduler as scheduler_mod
    from suanli.kube import snapshot as snapshot_mod
    from suanli.placement import planner

LOG = logging.getLogger("suanli.scheduler.preemption")
Key = records.Key


class Preempting:
    def __init__(self, ctx: scheduler_mod.Scheduler):
        self.ctx = ctx
        # preemptor -> (its uid, victims still placed, monotonic when they had all stopped or None)
        self.waiting_for: dict[Key, tuple[str, set[Key], float | None]] = {}

    def consider(self, reply: planner.PlanReply, snap: snapshot_mod.Snapshot) -> None:
        """Propose preemptions for the plan's waiting jobs whose queue allows it."""
        self._forget_done()
        if reply.quotas is None:
            return
        policies = preemption.policies(self.ctx.cache.tenants.queues)
        waiting = [d for d in reply.decisions if d.phase == "Queued" and d.reclaimable and d.job.queue
                   and d.job.key not in self.waiting_for
                   and (policies.get(d.job.queue) or preemption.Policy()) != preemption.Policy()]
        if not waiting:
            return
        capacity, quotas = reply.capacity.copy(), reply.quotas.copy()
        running = self._running(snap)
        LOG.debug("preemption candidates: %s", [(r.key, r.queue, r.priority, r.started, r.allocation) for r in running])
        for d in waiting:
            demands = dict(d.reclaimable)
            proposal = preemption.propose(d.job, list(demands), capacity, quotas, running, policies,
                                          lambda pool, demands=demands: demands[pool])  # type: ignore[misc]
            if proposal is None:
                continue
            victims = {key for key, _ in proposal.victims}
            for r in running:
                if r.key in victims:
                    preemption.release(capacity, quotas, r)
            running = [r for r in running if r.key not in victims]
            self._preempt(d, proposal, snap)

    def _preempt(self, d: decision_mod.Decision, proposal: preemption.Proposal, snap: snapshot_mod.Snapshot) -> None:
        ctx = self.ctx
        preemptor = ctx.cache.jobs.get(d.job.key)
        if preemptor is None:
            return
        pool = snap.fleet.pools[proposal.pool]
        stopped: set[Key] = set()
        for key, why in proposal.victims:
            record = ctx.cache.jobs.get(key)
            if record is None:
                continue
            how = ("a job of higher priority in its queue" if why == preemption.WITHIN_QUEUE
                   else f"queue {d.job.queue} taking back the quota it lent")
            reason = (f"preempted by {d.job.namespace}/{d.job.name} ({how}) to run on {pool.center}/{pool.pool}")
            if ctx.lifecycle.preempt(record, reason):
                stopped.add(key)
        if not stopped:
            return
        self.waiting_for[d.job.key] = (preemptor.uid, stopped, None)
        names = ", ".join(f"{k[0]}/{k[1]}" for k in sorted(stopped))
        message = f"preempting {names} to run on {pool.center}/{pool.pool}; planned once their accelerators are free"
        LOG.info("%s/%s: %s", *d.job.key, message, extra=logs.about(d.job.key))
        ctx.spawn(ctx.api.run(ctx.api.event, ctx.ref(preemptor), "Preempting", message, False, ctx.clock.now()))

    def _running(self, snap: snapshot_mod.Snapshot) -> list[preemption.Running]:
        """Placed jobs of a queue whose replicas' nodes are known, as the core sees them."""
        ctx = self.ctx
        index: dict[int, Mapping[str, int]] = {}
        out: list[preemption.Running] = []
        for record, binding in ctx.cache.placed_records():
            if not binding.queue or record.demand is None or not binding.nodes or record.key in ctx.lifecycle.ending:
                continue
            pool = snap.fleet.pool_index(binding.center, binding.pool)
            if pool is None:
                continue
            names = index.setdefault(pool, {n: i for i, n in enumerate(snap.node_names[pool])})
            nodes: Sequence[int | None] = [names.get(n) for n in binding.nodes]
            if any(i is None for i in nodes):
                continue  # a replica's node left the pool: its accounting is not on this ledger
            out.append(preemption.Running(record.key, binding.queue, record.demand.priority,
                                          binding.bound_epoch or 0.0,
                                          capacity_mod.Allocation(pool, tuple(i for i in nodes if i is not None), binding.count),
                                          record.created))
        return out

    def _forget_done(self) -> None:
        """A preemptor proposes nothing more until it is bound (or gone), or until
        operator.resync_seconds after its victims all stopped without it being bound (someone else took
        the room meanwhile): their pods' deletion reaches the cache a moment after their requeue, and a
        preemptor asking again then would stop more jobs than it needs."""
        cache, now = self.ctx.cache, self.ctx.clock.monotonic()
        for key in list(self.waiting_for):
            uid, victims, stopped_at = self.waiting_for[key]
            record = cache.jobs.get(key)
            if record is None or record.uid != uid or cache.binding(record) is not None:
                del self.waiting_for[key]
                continue
            victims.intersection_update(k for k in victims if k in cache.jobs and cache.binding(cache.jobs[k]) is not None)
            if victims:
                continue
            if stopped_at is None:
                self.waiting_for[key] = (uid, victims, now)
            elif now - stopped_at >= self.ctx.settings.operator.resync_seconds:
                del self.waiting_for[key]
