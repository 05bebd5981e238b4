"""Preemption (suanli.placement.preemption): over random fleets, queues and running jobs, a proposal
only stops jobs its policy allows, frees enough for the waiting job to fit its pool and its queue,
stops no job it could spare (minimal), is never refused when stopping every allowed job would make
room, and cannot start a cycle (no victim may preempt its preemptor back)."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit import builders as b

from suanli.ledger import capacity as capacity_mod
from suanli.ledger import quota as quota_mod
from suanli.ledger import quota_terms
from suanli.placement import preemption
from suanli.scoring import demand as demand_mod

GPU = "accelerators/GPU"
QUEUES = ("a", "b", "c")


def demand_of(name: str, queue: str, priority: int, count: int, replicas: int = 1) -> demand_mod.JobDemand:
    base = b.demand(b.job(name, count=count, replicas=replicas, priority=priority))
    return dataclasses.replace(base, queue=queue)


@st.composite
def scenario(draw: Any) -> dict[str, Any]:
    nodes = draw(st.integers(1, 4))
    nominal = {q: draw(st.integers(0, 16)) for q in QUEUES}
    lending = {q: draw(st.one_of(st.none(), st.integers(0, nominal[q]))) for q in QUEUES}
    quotas = quota_mod.QuotaLedger(
        quota_terms.QueueQuota(q, cohort="research" if q != "c" else None,
                               limits={GPU: quota_terms.Limit(float(nominal[q]), None,
                                                              None if lending[q] is None else float(lending[q]))})
        for q in QUEUES)
    capacity = capacity_mod.CapacityLedger([[8] * nodes])
    running: list[preemption.Running] = []
    for i in range(draw(st.integers(0, 8))):
        queue, count = draw(st.sampled_from(QUEUES)), draw(st.sampled_from([1, 2, 4, 8]))
        key = ("ns", f"r{i}")
        if quotas.check(queue, {GPU: count}) is not None:
            continue
        try:
            allocation = capacity.reserve(0, 1, count)
        except capacity_mod.CapacityError:
            continue
        quotas.admit(queue, key, {GPU: float(count)})
        running.append(preemption.Running(key, queue, draw(st.integers(0, 3)), float(i), allocation))
    job = demand_of("w", draw(st.sampled_from(QUEUES)), draw(st.integers(0, 4)), draw(st.sampled_from([1, 2, 4, 8])))
    policies = {q: preemption.Policy(draw(st.booleans()), draw(st.booleans())) for q in QUEUES}
    return {"capacity": capacity, "quotas": quotas, "running": running, "job": job, "policies": policies}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_a_proposal_is_allowed_sufficient_minimal_and_cycle_free(s: dict[str, Any]) -> None:
    job, capacity, quotas, running, policies = s["job"], s["capacity"], s["quotas"], s["running"], s["policies"]
    demand = {GPU: float(job.accelerators_total)}
    before = (capacity.free_per_node(0), quotas.usage(job.queue))
    proposal = preemption.propose(job, [0], capacity, quotas, running, policies, lambda pool: demand)
    assert (capacity.free_per_node(0), quotas.usage(job.queue)) == before  # the ledgers are not changed
    allowed = preemption.candidates(job, running, quotas, policies)
    if proposal is None:
        # Refused only when it fits as things are, or stopping every allowed job would not make room.
        assert (preemption.fits(job, 0, demand, capacity, quotas, []) or not allowed
                or not preemption.fits(job, 0, demand, capacity, quotas, allowed))
        return
    by_key = {r.key: r for r in running}
    victims = [(by_key[k], why) for k, why in proposal.victims]
    assert not preemption.fits(job, 0, demand, capacity, quotas, [])  # only proposed when needed
    assert victims and set(proposal.victims) <= {(r.key, why) for r, why in allowed}
    for r, why in victims:
        if why == preemption.WITHIN_QUEUE:
            assert r.queue == job.queue and r.priority < job.priority and policies[job.queue].within_queue
        else:
            assert r.queue != job.queue and policies[job.queue].reclaim_borrowed
            assert quotas.quota(r.queue).cohort == quotas.quota(job.queue).cohort is not None
    assert preemption.fits(job, 0, demand, capacity, quotas, victims)  # sufficient
    for item in victims:  # minimal: every victim is needed
        assert not preemption.fits(job, 0, demand, capacity, quotas, [v for v in victims if v is not item])
    # No cycle: once the preemption is done, no victim (back in the queue) may preempt the preemptor.
    cap, q = capacity.copy(), quotas.copy()
    for r, _ in victims:
        cap.release(r.allocation)
        q.release(r.key)
    allocation = cap.reserve(0, job.replicas, job.count)
    q.admit(job.queue, job.key, demand)
    now_running = [r for r in running if r.key not in dict(proposal.victims)]
    now_running.append(preemption.Running(job.key, job.queue, job.priority, 1e9, allocation))
    for r, _ in victims:
        again = dataclasses.replace(demand_of(r.key[1], r.queue or "", r.priority, r.allocation.count))
        assert job.key not in {c.key for c, _ in preemption.candidates(again, now_running, q, policies)}


def test_the_cheapest_victims_go_first_and_no_more_than_needed() -> None:
    """One 8-GPU node full of queue a's jobs: priorities 0, 1 and 0 (the last started latest). A job of
    priority 5 needing 4 GPUs stops the two priority-0 jobs (2 GPUs each), not the priority-1 one."""
    quotas = quota_mod.QuotaLedger([quota_terms.QueueQuota("a", limits={GPU: quota_terms.Limit(16.0)})])
    capacity = capacity_mod.CapacityLedger([[8]])
    running = []
    for i, (prio, count) in enumerate([(0, 2), (1, 4), (0, 2)]):
        allocation = capacity.reserve(0, 1, count)
        quotas.admit("a", ("ns", f"r{i}"), {GPU: float(count)})
        running.append(preemption.Running(("ns", f"r{i}"), "a", prio, float(i), allocation))
    job = demand_of("w", "a", 5, 4)
    policies = {"a": preemption.Policy(within_queue=True)}
    proposal = preemption.propose(job, [0], capacity, quotas, running, policies, lambda pool: {GPU: 4.0})
    assert proposal is not None
    assert sorted(k[1] for k, _ in proposal.victims) == ["r0", "r2"]
    assert preemption.propose(job, [0], capacity, quotas, running, {"a": preemption.Policy()},
                              lambda pool: {GPU: 4.0}) is None  # Never: nothing is preempted
    lower = demand_of("w", "a", 0, 4)  # not higher than anyone's priority: nothing to preempt
    assert preemption.propose(lower, [0], capacity, quotas, running, policies, lambda pool: {GPU: 4.0}) is None


def test_reclaiming_takes_back_only_what_the_queue_is_owed() -> None:
    """b lent a its 8 GPUs (a runs 16 of its nominal 8); b, reclaiming, may stop one of a's jobs to run
    within its own nominal 8, but not to go beyond it."""
    quotas = quota_mod.QuotaLedger([
        quota_terms.QueueQuota("a", cohort="r", limits={GPU: quota_terms.Limit(8.0)}),
        quota_terms.QueueQuota("b", cohort="r", limits={GPU: quota_terms.Limit(8.0)}),
    ])
    capacity = capacity_mod.CapacityLedger([[8, 8]])
    running = []
    for i in range(2):
        allocation = capacity.reserve(0, 1, 8)
        quotas.admit("a", ("ns", f"a{i}"), {GPU: 8.0})
        running.append(preemption.Running(("ns", f"a{i}"), "a", 0, float(i), allocation))
    policies = {"b": preemption.Policy(reclaim_borrowed=True)}
    job = demand_of("w", "b", 0, 8)
    proposal = preemption.propose(job, [0], capacity, quotas, running, policies, lambda pool: {GPU: 8.0})
    assert proposal is not None and proposal.victims == ((("ns", "a1"), preemption.RECLAIM),)  # the later one
    greedy = demand_of("w", "b", 0, 8, replicas=2)  # 16 > b's nominal 8: would borrow by preempting
    assert preemption.propose(greedy, [0], capacity, quotas, running, policies, lambda pool: {GPU: 16.0}) is None
