"""Jobs set aside (kube/set_aside.py): a waiting job that cannot start now and has its Queued status
stays out of the scheduling cycle, so `operator.max_jobs_per_cycle` goes to jobs that can start
(no head-of-line blocking), until capacity it could use frees up, its spec changes, or it may preempt."""

from __future__ import annotations

import copy
from typing import Any

from tests.unit.test_cache import CENTER, NOW, cjob, node, pod
from tests.unit.test_tenants_operator import queue

from suanli.kube import cache as cache_mod
from suanli.placement import planner

QUEUED = {"phase": "Queued", "message": "waiting: no pool can take the job now", "observedGeneration": 1}


def waiting(name: str, replicas: int = 1, count: int = 8, created: int = 0, **kw: Any) -> dict[str, Any]:
    doc = cjob(name, replicas=replicas, count=count, status=dict(QUEUED), **kw)
    doc["metadata"]["creationTimestamp"] = f"2026-01-01T00:{created // 60:02d}:{created % 60:02d}Z"
    return doc


def full_fleet() -> cache_mod.Cache:
    """Pool a100: two 8-GPU nodes, all but one GPU (on n1) taken by pods."""
    c = cache_mod.Cache()
    c.upsert_center(CENTER)
    c.upsert_node(node("n1"))
    c.upsert_node(node("n2"))
    c.upsert_pod(pod("busy-1", "n1", 7))
    c.upsert_pod(pod("busy-2", "n2", 8))
    return c


def test_a_job_that_fits_is_planned_behind_two_thousand_gangs_that_cannot_start() -> None:
    c = full_fleet()
    assert c.settings.operator.max_jobs_per_cycle == 2000
    for i in range(2001):
        c.upsert_job(waiting(f"gang-{i:04d}", created=0), NOW)
    c.upsert_job(waiting("small", count=1, created=59), NOW)  # last in queue order
    snap = c.snapshot(NOW)
    assert [j.name for j in snap.queue] == ["small"]
    assert (snap.set_aside, snap.truncated) == (2001, 0)
    reply = planner.plan(planner.PlanRequest(fleet=snap.fleet, capacity=snap.capacity, energy=snap.energy,
                                             jobs=snap.queue, now=NOW, ready=snap.ready))
    assert [(d.job.name, d.phase) for d in reply.decisions] == [("small", "Bound")]


def test_set_aside_jobs_come_back_when_capacity_they_could_use_frees_up() -> None:
    c = full_fleet()
    c.upsert_job(waiting("gang", count=8), NOW)
    assert c.snapshot(NOW).set_aside == 1
    done = pod("busy-2", "n2", 8, phase="Succeeded")
    c.upsert_pod(done)
    snap = c.snapshot(NOW)
    assert [j.name for j in snap.queue] == ["gang"] and snap.set_aside == 0


def test_a_job_without_its_decision_or_with_a_changed_spec_is_planned_even_if_it_cannot_start() -> None:
    c = full_fleet()
    fresh = cjob("fresh", count=8)  # no status yet: it gets its Queued reason
    changed = waiting("changed", count=8)
    changed["metadata"]["generation"] = 2  # its Queued status is for generation 1
    deferred = waiting("deferred", count=8)
    deferred["status"]["phase"] = "Deferred"
    silent = waiting("silent", count=8)
    silent["status"]["message"] = ""
    for doc in (fresh, changed, deferred, silent):
        c.upsert_job(doc, NOW)
    c.upsert_job(waiting("decided", count=8), NOW)
    snap = c.snapshot(NOW)
    assert sorted(j.name for j in snap.queue) == ["changed", "deferred", "fresh", "silent"]
    assert snap.set_aside == 1


def test_a_job_on_a_pool_that_is_not_ready_or_of_a_model_it_refuses_stays_aside() -> None:
    c = full_fleet()
    c.upsert_pod(pod("busy-2", "n2", 8, phase="Succeeded"))  # n2 free: 8 GPUs, but of model A100 only
    c.upsert_job(waiting("h100-only", count=8, models=["H100"]), NOW)
    c.upsert_job(waiting("a100", count=8), NOW)
    snap = c.snapshot(NOW)
    assert [j.name for j in snap.queue] == ["a100"] and snap.set_aside == 1
    c.upsert_node(node("n2", ready=False))
    assert c.snapshot(NOW).set_aside == 2


def test_a_job_whose_queue_may_preempt_is_always_planned() -> None:
    c = full_fleet()
    preempting = queue("vision", 16)
    preempting["spec"]["preemption"] = {"reclaimBorrowed": True}
    c.tenants.upsert_queue(preempting)
    c.tenants.upsert_queue(queue("plain", 16))
    mine = waiting("mine", count=8)
    mine["spec"]["queue"] = "vision"
    other = copy.deepcopy(waiting("other", count=8))
    other["spec"]["queue"] = "plain"
    for doc in (mine, other):
        c.upsert_job(doc, NOW)
    snap = c.snapshot(NOW)
    assert [j.name for j in snap.queue] == ["mine"] and snap.set_aside == 1


def test_the_planner_skips_a_decided_job_once_earlier_jobs_took_the_room_it_could_use() -> None:
    c = full_fleet()
    c.upsert_pod(pod("busy-2", "n2", 8, phase="Succeeded"))  # n2 free: room for one 1x8 gang
    c.upsert_job(waiting("first", count=8, created=0), NOW)
    c.upsert_job(waiting("second", count=8, created=1), NOW)
    new = cjob("new", count=8)  # no decision yet: it gets one even when nothing fits
    new["metadata"]["creationTimestamp"] = "2026-01-01T00:00:02Z"
    c.upsert_job(new, NOW)
    snap = c.snapshot(NOW)
    assert [j.name for j in snap.queue] == ["first", "second", "new"]
    assert snap.skippable is not None and set(snap.skippable) == {("team-a", "first"), ("team-a", "second")}
    reply = planner.plan(planner.PlanRequest(fleet=snap.fleet, capacity=snap.capacity, energy=snap.energy,
                                             jobs=snap.queue, now=NOW, ready=snap.ready, skippable=snap.skippable))
    assert [(d.job.name, d.phase) for d in reply.decisions] == [("first", "Bound"), ("new", "Queued")]
    assert reply.skipped == 1  # "second": its status already says Queued, and stays as it is


def test_a_small_job_behind_more_gangs_than_a_cycle_plans_is_bound_in_the_cycle_after_capacity_frees_up() -> None:
    """max_jobs_per_cycle 5, twelve 1x8 gangs Queued ahead of a 1x4 job, the fleet full: nothing is planned.
    A 4-GPU pod completes: the next cycle plans the small job at position 13 and binds it, the gangs
    staying aside (4 free GPUs fit none of them), across cycles as the queue is kept filed."""
    from suanli import settings as settings_mod

    c = cache_mod.Cache(settings_mod.Settings(operator=settings_mod.OperatorSettings(max_jobs_per_cycle=5)))
    c.upsert_center(CENTER)
    c.upsert_node(node("n1"))
    c.upsert_node(node("n2"))
    c.upsert_pod(pod("busy-1", "n1", 4))
    c.upsert_pod(pod("busy-1b", "n1", 4))
    c.upsert_pod(pod("busy-2", "n2", 8))
    for i in range(12):
        c.upsert_job(waiting(f"gang-{i:02d}", count=8, created=i), NOW)
    c.upsert_job(waiting("small", count=4, created=59), NOW)

    def cycle() -> list[tuple[str, str]]:
        snap = c.snapshot(NOW)
        reply = planner.plan(planner.PlanRequest(fleet=snap.fleet, capacity=snap.capacity, energy=snap.energy,
                                                 jobs=snap.queue, now=NOW, ready=snap.ready, skippable=snap.skippable))
        return [(d.job.name, d.phase) for d in reply.decisions]

    assert cycle() == [] and c.snapshot(NOW).set_aside == 13
    c.upsert_pod(pod("busy-1b", "n1", 4, phase="Succeeded"))
    snap = c.snapshot(NOW)
    assert ([j.name for j in snap.queue], snap.set_aside, snap.truncated) == (["small"], 12, 0)
    assert cycle() == [("small", "Bound")]
