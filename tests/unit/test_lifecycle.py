"""A bound attempt's life under faults: pods-ready timeout, disruptions, a deleted Job, the requeue
limit, identity (uid, attempt) and settlement from the job's own pool.

The scheduler runs against `FakeApi` (tests/unit/test_write_priority.py) with a manual clock and a
manual timer: a real API server cannot be made to hold a pod Pending for exactly 300 s, and these
tests need to step over deadlines and backoffs without waiting for them. The end-to-end versions
of the same cases run on the local control plane (tests/e2e/test_operator_faults.py).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from tests.unit import test_write_priority as wp

from suanli import clock as clock_mod
from suanli import settings as settings_mod
from suanli.kube import attempts, records, workloads, workqueue
from suanli.kube import cache as cache_mod
from suanli.kube import client as client_mod
from suanli.kube import objects as kobj
from suanli.kube import scheduler as scheduler_mod

NOW = wp.NOW
KEY = ("team-a", "a")
UID = "uid-team-a-a"


class Later:
    """A timer that fires only when told: `fire_due(now)` runs what is due by then."""

    class Handle:
        def __init__(self, at: float, fn: Callable[[], None]):
            self.at, self.fn, self.cancelled = at, fn, False

        def cancel(self) -> None:
            self.cancelled = True

    def __init__(self, clock: clock_mod.ManualClock):
        self.clock = clock
        self.handles: list[Later.Handle] = []

    def __call__(self, delay: float, fn: Callable[[], None]) -> Later.Handle:
        handle = Later.Handle(self.clock.now() + delay, fn)
        self.handles.append(handle)
        return handle

    def pending(self) -> list[float]:
        return sorted(h.at for h in self.handles if not h.cancelled)

    def fire_due(self) -> int:
        due = [h for h in self.handles if not h.cancelled and h.at <= self.clock.now()]
        self.handles = [h for h in self.handles if h not in due]
        for h in due:
            h.fn()
        return len(due)


class Api(wp.FakeApi):
    def __init__(self) -> None:
        super().__init__()
        self.deleted: list[tuple[str, str, str]] = []
        self.deleted_pods: list[tuple[str, str]] = []
        self.patches: list[dict[str, Any]] = []
        self.replaced = False  # the ComputeJob was recreated: uid-tested patches fail

    def patch_job_status(self, ns: str, name: str, status: dict[str, Any], answer: bool = True,
                         uid: str | None = None, whole: bool = False) -> dict[str, Any] | None:
        if self.replaced and uid is not None:
            raise client_mod.Replaced(f"{ns}/{name}")
        self.patches.append(status)
        return super().patch_job_status(ns, name, status, answer, uid, whole)

    def delete_job(self, ns: str, name: str, uid: str) -> bool:
        self.deleted.append((ns, name, uid))
        return True

    def delete_pod(self, ns: str, name: str, uid: str) -> bool:
        self.deleted_pods.append((ns, name))
        return True


def make(**operator: Any) -> tuple[scheduler_mod.Scheduler, Api, clock_mod.ManualClock, Later]:
    settings = settings_mod.Settings(operator=settings_mod.OperatorSettings(coalesce_seconds=0, **operator))
    cache = cache_mod.Cache(settings)
    cache.upsert_center(wp.CENTER)
    cache.upsert_node(copy.deepcopy(wp.NODE))
    clock = clock_mod.ManualClock(NOW)
    later = Later(clock)
    api = Api()
    sched = scheduler_mod.Scheduler(cache, api, settings, clock, later)  # type: ignore[arg-type]
    api.stored[KEY] = wp.cjob("a", count=8)  # what a status patch answers with (its status merged in)
    return sched, api, clock, later


def bound_job(phase: str = "Bound", attempts_so_far: int = 0, bound_at: float = NOW, pool: str = "a100") -> dict[str, Any]:
    doc = wp.cjob("a", count=8)
    doc["status"] = {
        "phase": phase,
        "binding": {"center": "c1", "pool": pool, "acceleratorType": "GPU", "model": "A100", "nodes": ["n1"]},
        "estimates": {"energyKWh": 2.0, "carbonKg": 0.8},
        "boundTime": clock_mod_rfc(bound_at),
        "attempts": attempts_so_far,
    }
    return doc


def clock_mod_rfc(epoch: float) -> str:
    from suanli.kube import status as status_mod

    return status_mod.rfc3339(epoch)


def job_object(attempt: int = 0, uid: str = UID, conditions: list[dict[str, Any]] | None = None,
               deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "cj-a", "namespace": "team-a", "uid": f"job-{uid}-{attempt}",
        "labels": {workloads.LABEL_JOB: "a", workloads.LABEL_POOL: "a100", workloads.LABEL_ATTEMPT: str(attempt),
                   workloads.LABEL_UID: uid},
        "ownerReferences": [{"apiVersion": "suanli.io/v1alpha1", "kind": "ComputeJob", "name": "a", "uid": uid,
                             "controller": True}],
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": meta, "status": {"active": 1, "conditions": conditions or []}}


def pod_object(name: str = "cj-a-0", phase: str = "Running", node: str | None = "n1", attempt: int = 0,
               uid: str = UID, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name, "namespace": "team-a",
        "labels": {workloads.LABEL_JOB: "a", workloads.LABEL_ATTEMPT: str(attempt), workloads.LABEL_UID: uid,
                   "batch.kubernetes.io/job-completion-index": "0"},
    }
    meta.update(extra.pop("meta", {}))
    spec: dict[str, Any] = {"containers": [{"name": "main", "resources": {"requests": {"nvidia.com/gpu": "8"}}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": meta, "spec": spec, "status": {"phase": phase, **extra}}


async def step(sched: scheduler_mod.Scheduler) -> None:
    sched.lifecycle.progress(KEY)
    await wp.settle(sched)


# --- the pure assessment ---------------------------------------------------------------


BINDING = records.Binding("c1", "a100", "GPU", replicas=2, count=4, energy_kwh=1.0, carbon_kg=0.4, bound_epoch=NOW)


def pinfo(phase: str = "Running", node: str | None = "n1", failure: str | None = None, deleting: bool = False,
          disruption: str | None = None) -> kobj.PodInfo:
    return kobj.PodInfo(("team-a", "p"), node, {}, phase in ("Succeeded", "Failed"), phase, "a", failure,
                        deleting=deleting, disruption=disruption)


def winfo(complete: bool = False, failed: str | None = None, disrupted: bool = False) -> kobj.WorkloadInfo:
    return kobj.WorkloadInfo(("team-a", "cj-a"), "a", 1, 0, 0, complete, failed, None, None, UID, disrupted=disrupted)


@pytest.mark.parametrize(
    ("phase", "workload", "pods", "lost", "now", "want"),
    [
        ("Bound", winfo(), [pinfo(), pinfo()], None, NOW, "progress"),  # all up: Running next
        ("Bound", winfo(), [pinfo(), pinfo("Pending", None)], None, NOW + 10, "wait"),
        ("Bound", winfo(), [pinfo(), pinfo("Pending", None)], None, NOW + 300, "requeue"),  # pods-ready timeout
        ("Running", None, [pinfo(), pinfo()], None, NOW, "requeue"),  # its Job deleted while it ran
        ("Bound", None, [], None, NOW, "ensure"),  # restart between the binding and the Job
        ("Bound", None, [pinfo("Pending", None)], None, NOW, "requeue"),  # Job deleted, its pods left
        ("Running", winfo(), [pinfo(), pinfo(disruption="node lost")], None, NOW, "requeue"),
        ("Running", winfo(), [pinfo(), pinfo(deleting=True)], None, NOW, "requeue"),  # pod deleted
        ("Running", winfo(), [pinfo()], "pod p was deleted while Running", NOW, "requeue"),
        # An application failure wins: the Job controller deletes the other replicas after it.
        ("Running", winfo(failed="BackoffLimitExceeded: x"), [pinfo("Failed", failure="exit 1"), pinfo(deleting=True)],
         None, NOW, "progress"),
        ("Running", winfo(failed="PodFailurePolicy: DisruptionTarget", disrupted=True), [pinfo()], None, NOW, "requeue"),
        ("Running", winfo(complete=True), [pinfo("Succeeded"), pinfo("Succeeded")], None, NOW, "progress"),
    ],
)
def test_assess(phase, workload, pods, lost, now, want):
    verdict = attempts.assess(phase=phase, binding=BINDING, workload=workload, pods=pods, lost=lost, assumed=False,
                              now=now, pods_ready_timeout=300)
    assert verdict.action == want
    if want == "wait":
        assert verdict.at == NOW + 300
    if want == "requeue":
        assert verdict.reason


def test_a_gang_that_can_never_start_where_it_was_placed_goes_back_before_the_timeout() -> None:
    pods = [pinfo(), pinfo("Pending", None)]
    verdict = attempts.assess(phase="Bound", binding=BINDING, workload=winfo(), pods=pods, lost=None, assumed=False,
                              now=NOW + 1, pods_ready_timeout=300, stranded="node n2 is gone")
    assert verdict == attempts.Verdict("requeue", "1 replica(s) cannot start where they were placed: node n2 is gone")
    # Running: its replicas are all up; what happens to a node later is a disruption, not this.
    verdict = attempts.assess(phase="Running", binding=BINDING, workload=winfo(), pods=[pinfo(), pinfo()], lost=None,
                              assumed=False, now=NOW + 1, pods_ready_timeout=300, stranded="node n2 is gone")
    assert verdict.action == "progress"


def test_a_bound_gang_whose_node_is_deleted_before_it_starts_is_requeued_at_once() -> None:
    from types import SimpleNamespace

    from suanli.handlers import mirror

    async def go() -> None:
        sched, api, _, later = make(pods_ready_timeout_seconds=300)
        sched.cache.upsert_job(bound_job(), NOW)
        sched.cache.upsert_workload(job_object())
        sched.cache.upsert_pod(pod_object(phase="Pending", node=None))
        await step(sched)
        assert later.pending() == [NOW + 300] and api.patches == []  # waits for its pod, as before
        sched.jobs_dirty.clear()
        memo = SimpleNamespace(cache=sched.cache, scheduler=sched)
        mirror.on_node({"type": "DELETED", "object": copy.deepcopy(wp.NODE)}, memo)
        assert KEY in sched.jobs_dirty  # the node's deletion looks at the jobs bound to it
        await step(sched)
        assert api.deleted == [("team-a", "cj-a", f"job-{UID}-0")]
        (patch,) = api.patches
        assert patch["phase"] == "Queued" and patch["requeues"] == 1
        assert [(a["attempt"], a["outcome"]) for a in patch["attempts"]] == [(0, "Requeued")]
        assert "1 replica(s) cannot start where they were placed: node n1 is gone" in patch["message"]

    asyncio.run(go())


# --- pods-ready timeout and the requeue limit --------------------------------------------


def test_a_gang_whose_pods_never_start_is_requeued_at_the_timeout_then_failed_at_the_limit() -> None:
    async def go() -> None:
        sched, api, clock, later = make(pods_ready_timeout_seconds=300, requeue_limit=2, requeue_backoff_seconds=10)
        sched.cache.upsert_job(bound_job(), NOW)
        sched.cache.upsert_workload(job_object())
        sched.cache.upsert_pod(pod_object(phase="Pending", node=None))
        await step(sched)
        assert later.pending() == [NOW + 300]  # a look at the deadline, nothing written
        assert api.patches == [] and api.deleted == []
        clock.advance(301)
        sched.jobs_dirty.clear()
        later.fire_due()
        assert KEY in sched.jobs_dirty
        await step(sched)
        assert api.deleted == [("team-a", "cj-a", f"job-{UID}-0")]
        (patch,) = api.patches
        assert patch["phase"] == "Queued" and patch["requeues"] == 1 and patch["binding"] is None
        (listed,) = patch["attempts"]
        assert (listed["attempt"], listed["center"], listed["pool"], listed["outcome"]) == (0, "c1", "a100", "Requeued")
        assert listed["bound"] == clock_mod_rfc(NOW) and listed["ended"] == clock_mod_rfc(NOW + 301)
        assert listed["message"] == patch["message"]
        assert "0 of 1 replica(s) running 300s after it was bound" in patch["message"]
        assert patch["requeueAt"] == clock_mod_rfc(NOW + 301 + 10)
        assert ("main", "event", "Requeued") in api.writes
        assert api.uids == [UID]
        # Back in the queue only after its backoff.
        queued = wp.cjob("a", count=8)
        queued["status"] = {**patch}
        sched.cache.upsert_job(queued, NOW)
        sched.cache.delete_workload(job_object())
        snap = sched.cache.snapshot(clock.now())
        assert snap.queue == () and snap.next_requeue == NOW + 311
        assert [d.key for d in sched.cache.snapshot(NOW + 312).queue] == [KEY]
        # The second attempt (attempt 1) times out too: the limit of 2 attempts is reached.
        api.patches.clear()
        sched.cache.upsert_job(bound_job(attempts_so_far=1, bound_at=clock.now()), NOW)
        sched.cache.upsert_workload(job_object(attempt=1))
        clock.advance(301)
        await step(sched)
        (failed,) = api.patches
        assert failed["phase"] == "Failed" and failed["requeues"] == 2
        assert [(a["attempt"], a["outcome"]) for a in failed["attempts"]] == [(1, "Failed")]  # a count before it
        assert failed["conditions"][0]["reason"] == "RequeueLimitReached"
        assert "gave up after 2 attempt(s)" in failed["message"]

    asyncio.run(go())


def test_a_job_the_job_controller_started_without_pods_is_made_again_once() -> None:
    """Mock API: a real Job controller produces this only in a race (a Job deleted and made again under
    its name just as kube-controller-manager restarts: it then holds back the new Job's pods until its
    expectations for the name expire, 5 minutes; seen in the chaos test). Started (status.startTime) and
    no pod 30 s later: the Job is deleted once (binding kept, nothing requeued or counted) and made again
    when gone; if the second Job has no pods either, the pods-ready timeout decides as for any gang."""
    async def go() -> None:
        sched, api, clock, later = make(pods_ready_timeout_seconds=300, workload_pods_timeout_seconds=30)
        sched.cache.upsert_job(bound_job(), NOW)
        podless = job_object()
        podless["status"] = {"startTime": clock_mod_rfc(NOW + 1)}
        sched.cache.upsert_workload(podless)
        await step(sched)
        assert later.pending() == [NOW + 31] and api.deleted == []  # looks again when the 30 s are up
        clock.advance(31)
        await step(sched)
        assert api.deleted == [("team-a", "cj-a", f"job-{UID}-0")] and api.patches == []
        (event,) = [w for w in api.writes if w[2] == "WorkloadRemade"]
        assert event == ("main", "event", "WorkloadRemade")
        # The deletion seen: the Job is made again (create_or_adopt), the binding kept.
        sched.cache.upsert_workload(job_object(deleting=True))
        sched.cache.delete_workload(job_object())
        await step(sched)
        assert [m["metadata"]["name"] for m in api.created] == ["cj-a"]
        # The new one is podless too: no second deletion; the pods-ready timeout requeues it.
        again = job_object()
        again["status"] = {"startTime": clock_mod_rfc(clock.now())}
        sched.cache.upsert_workload(again)
        clock.advance(100)
        await step(sched)
        assert len(api.deleted) == 1 and api.patches == []
        clock.advance(200)
        await step(sched)
        assert len(api.deleted) == 2 and api.patches[-1]["phase"] == "Queued"

    asyncio.run(go())


def test_assess_remakes_only_a_started_podless_job() -> None:
    started = dataclasses.replace(winfo(), active=0, start_time=NOW)
    kwargs: dict[str, Any] = dict(phase="Bound", binding=BINDING, lost=None, assumed=False, pods_ready_timeout=300)
    assert attempts.assess(workload=started, pods=[], now=NOW + 30, remake_after=30, **kwargs).action == "remake"
    assert attempts.assess(workload=started, pods=[], now=NOW + 29, remake_after=30, **kwargs).at == NOW + 30
    # Not started by the Job controller yet (a backlog), or a pod made, or remade already: wait for the timeout.
    unstarted = dataclasses.replace(started, start_time=None)
    assert attempts.assess(workload=unstarted, pods=[], now=NOW + 60, remake_after=30, **kwargs).at == NOW + 300
    one = [pinfo("Pending", None)]
    assert attempts.assess(workload=started, pods=one, now=NOW + 60, remake_after=30, **kwargs).at == NOW + 300
    assert attempts.assess(workload=started, pods=[], now=NOW + 60, remake_after=None, **kwargs).at == NOW + 300


def test_a_running_job_whose_batch_job_was_deleted_is_requeued_and_its_hold_released() -> None:
    async def go() -> None:
        sched, api, _, _ = make()
        sched.cache.upsert_job(bound_job("Running"), NOW)
        assert wp.cache_tests.usage(sched.cache)[1] == 8  # held: its pod is gone with its Job
        await step(sched)
        (patch,) = api.patches
        assert patch["phase"] == "Queued" and "batch Job was deleted while it ran" in patch["message"]
        requeued = wp.cjob("a", count=8)
        requeued["status"] = patch
        sched.cache.upsert_job(requeued, NOW)
        assert wp.cache_tests.usage(sched.cache)[1] == 0

    asyncio.run(go())


def test_a_replica_lost_to_a_disruption_sends_the_gang_back_but_an_exit_code_fails_it() -> None:
    async def go() -> None:
        sched, api, _, _ = make()
        sched.cache.upsert_job(bound_job("Running"), NOW)
        sched.cache.upsert_workload(job_object())
        disrupted = pod_object(conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                                            "message": "node n1 is gone"}])
        sched.cache.upsert_pod(disrupted)
        await step(sched)
        # Its replica still runs on a Ready node: deleted, and the job stays out of the queue until it stopped.
        assert api.deleted_pods == [("team-a", "cj-a-0")] and api.patches == []
        sched.cache.delete_pod(("team-a", "cj-a-0"))
        await step(sched)
        (patch,) = api.patches
        assert patch["phase"] == "Queued" and "DeletionByPodGC" in patch["message"]  # the first reason stands

        sched2, api2, _, _ = make()
        sched2.cache.upsert_job(bound_job("Running"), NOW)
        failed_job = job_object(conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                             "message": "Job has reached the specified backoff limit"}])
        sched2.cache.upsert_workload(failed_job)
        crashed = pod_object(phase="Failed", containerStatuses=[
            {"name": "main", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}])
        sched2.cache.upsert_pod(crashed)
        await step(sched2)
        (patch2,) = api2.patches
        assert patch2["phase"] == "Failed" and "exited with code 3" in patch2["message"]
        assert api2.deleted == []

    asyncio.run(go())


def test_a_pod_deleted_without_a_trace_is_a_lost_replica() -> None:
    async def go() -> None:
        sched, api, _, _ = make()
        sched.cache.upsert_job(bound_job("Running"), NOW)
        sched.cache.upsert_workload(job_object())
        sched.cache.upsert_pod(pod_object())
        sched.cache.delete_pod(("team-a", "cj-a-0"))  # its DELETED event is all we saw
        await step(sched)
        (patch,) = api.patches
        assert patch["phase"] == "Queued" and "was deleted while Running" in patch["message"]

    asyncio.run(go())


# --- identity ----------------------------------------------------------------------------


def test_a_job_recreated_under_its_name_never_sees_its_predecessors_job_or_pods() -> None:
    sched, _, _, _ = make()
    cache = sched.cache
    cache.upsert_job(bound_job(), NOW)
    cache.upsert_workload(job_object())
    cache.upsert_pod(pod_object())
    record = cache.jobs[KEY]
    assert cache.workload_of(record) is not None and len(cache.job_pods(record)) == 1
    cache.delete_job(KEY)
    again = bound_job()
    again["metadata"]["uid"] = "uid-new"
    record = cache.upsert_job(again, NOW)
    assert cache.workload_of(record) is None
    assert cache.job_pods(record) == []
    assert cache.stale_workload(record) is not None  # the predecessor's Job: deleted before a new one is made


def test_an_earlier_attempts_job_and_pods_are_not_the_current_attempts() -> None:
    sched, _, _, _ = make()
    cache = sched.cache
    record = cache.upsert_job(bound_job(attempts_so_far=1), NOW)
    cache.upsert_workload(job_object(attempt=0, deleting=True))
    cache.upsert_pod(pod_object(attempt=0))
    assert cache.workload_of(record) is None and cache.job_pods(record) == []


def test_a_decision_made_before_a_spec_edit_is_dropped_not_written() -> None:
    async def go() -> None:
        sched, api, _, _ = make()
        sched.cache.upsert_job(wp.cjob("a", count=1), NOW)
        snap = sched.cache.snapshot(NOW)
        from suanli.placement import planner

        reply = planner.plan(planner.PlanRequest(
            fleet=snap.fleet, capacity=snap.capacity, energy=snap.energy, jobs=list(snap.queue), now=NOW,
            settings=sched.settings, ready=snap.ready, not_ready_reason=snap.not_ready_reason))
        edited = wp.cjob("a", count=2)
        edited["metadata"]["generation"] = 2
        sched.cache.upsert_job(edited, NOW)  # edited while it was planned
        for d in reply.decisions:
            sched._apply(d, NOW, snap)
        await wp.settle(sched)
        assert api.patches == [] and KEY not in sched.cache.assumed

    asyncio.run(go())


def test_every_status_write_is_tested_against_the_jobs_uid_and_a_replaced_job_is_left_alone() -> None:
    async def go() -> None:
        sched, api, _, _ = make()
        sched.cache.upsert_job(wp.cjob("a", count=1), NOW)
        await sched.cycle()
        await wp.settle(sched)
        assert api.uids and set(api.uids) == {UID}
        # The job is recreated under its name while a write is on its way: nothing is retried for it.
        sched2, api2, _, later = make()
        sched2.cache.upsert_job(bound_job("Running"), NOW)
        api2.replaced = True
        await step(sched2)
        assert later.pending() == [] and not sched2.writes.failures

    asyncio.run(go())


def test_retries_and_checks_of_a_deleted_job_are_cancelled() -> None:
    clock = clock_mod.ManualClock(NOW)
    later = Later(clock)
    queue = workqueue.WorkQueue(settings_mod.OperatorSettings(), later)
    fired: list[str] = []
    queue.failed(KEY, "u1", lambda: fired.append("retry"))
    queue.check_at(KEY, "u1", 5, lambda: fired.append("check"))
    assert queue.uid_of(KEY) == "u1" and KEY in queue.pending()
    queue.drop(KEY)
    clock.advance(100)
    later.fire_due()
    assert fired == [] and queue.pending() == set()


# --- settlement from the job's own pool ---------------------------------------------------


def test_a_job_whose_pool_left_the_fleet_settles_its_estimate_with_the_reason() -> None:
    async def go() -> None:
        sched, api, _, _ = make()
        sched.cache.upsert_job(bound_job("Running", pool="gone-pool"), NOW)
        done = job_object(conditions=[{"type": "Complete", "status": "True", "lastTransitionTime": clock_mod_rfc(NOW + 60)}])
        done["metadata"]["labels"][workloads.LABEL_POOL] = "gone-pool"
        sched.cache.upsert_workload(done)
        sched.cache.upsert_pod(pod_object(phase="Succeeded"))
        await step(sched)
        (patch,) = api.patches
        assert patch["phase"] == "Succeeded"
        assert patch["energy"]["kWh"] == 2.0  # the estimate made at binding, not 0 and not another pool's
        assert "no longer in the fleet" in patch["energy"]["reason"]

    asyncio.run(go())


# --- adoption ---------------------------------------------------------------------------------


def manifest(attempt: int = 0, pool: str = "a100") -> dict[str, Any]:
    cj = {"metadata": {"name": "a", "namespace": "team-a", "uid": UID},
          "spec": {"accelerators": {"count": 1}, "images": {"GPU": "img"}}}
    return workloads.build_job(cj, center="c1", pool=pool, accelerator_type="GPU", resource_name="nvidia.com/gpu",
                               node_selector={}, tolerations=[], attempt=attempt)


@pytest.mark.parametrize(
    ("existing", "want"),
    [
        (manifest(), "current"),
        (manifest(attempt=1), "stale"),  # an earlier (or later) attempt's
        (manifest(pool="h100"), "stale"),  # bound elsewhere since
        ({**manifest(), "metadata": {**manifest()["metadata"], "deletionTimestamp": "x"}}, "stale"),
        ({**manifest(), "metadata": {**manifest()["metadata"], "ownerReferences": [
            {"apiVersion": "suanli.io/v1alpha1", "kind": "ComputeJob", "name": "a", "uid": "old", "controller": True}]}},
         "stale"),  # a predecessor's of the same name
        ({"metadata": {"name": "cj-a", "labels": {}}}, "foreign"),
        ({"metadata": {"name": "cj-a", "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "CronJob", "name": "x", "uid": "y", "controller": True}]}}, "foreign"),
    ],
)
def test_existing_job_is_adopted_only_when_it_is_this_attempts(existing, want):
    assert workloads.existing_job(existing, manifest(), UID) == want


# --- nothing swallowed ---------------------------------------------------------------------


def test_a_background_write_that_raises_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    from suanli import metrics

    async def go() -> None:
        sched, _, _, _ = make()

        async def broken() -> None:
            raise RuntimeError("a bug in a write")

        before = metrics.TASK_ERRORS._value.get()
        sched.spawn(broken())
        await wp.settle(sched)
        assert metrics.TASK_ERRORS._value.get() == before + 1

    with caplog.at_level("ERROR", logger="suanli.scheduler"):
        asyncio.run(go())
    assert any("a bug in a write" in r.getMessage() or "a bug in a write" in str(r.exc_info) for r in caplog.records)


def test_an_operator_loop_that_ends_stops_the_process_so_it_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    from suanli.commands import run as run_cmd

    exits: list[int] = []
    monkeypatch.setattr(run_cmd.os, "_exit", exits.append)
    monkeypatch.setattr(run_cmd.logging, "shutdown", lambda: None)  # pytest's own log handlers stay open

    async def go() -> None:
        async def scheduler() -> None:
            raise RuntimeError("scheduler bug")

        async def forever() -> None:
            await asyncio.Event().wait()

        tasks = [asyncio.create_task(scheduler(), name="scheduler"), asyncio.create_task(forever(), name="watch")]
        for task in tasks:
            task.add_done_callback(lambda task: run_cmd._died(task, tasks))
        await asyncio.gather(*tasks, return_exceptions=True)
        assert tasks[1].cancelled()

    asyncio.run(go())
    assert exits == [run_cmd.TASK_DIED_EXIT_CODE]


def test_a_compute_job_being_deleted_is_never_bound_again_nor_given_a_job() -> None:
    """Foreground deletion keeps a ComputeJob (with deletionTimestamp) until its Job is gone. Before,
    the operator requeued it once its Job was being deleted, bound it again and made a new Job, which
    held the deletion up again (the chaos suite's orphan-job finding)."""
    async def go() -> None:
        sched, api, _, _ = make()
        doc = bound_job("Running")
        doc["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
        record = sched.cache.upsert_job(doc, NOW)
        sched.cache.upsert_workload(job_object(deleting=True))
        assert record.deleting
        await step(sched)  # its Job is going: no requeue, no status, no new Job
        assert api.patches == [] and api.created == [] and api.deleted == []
        queued = wp.cjob("a", count=8)
        queued["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
        queued["status"] = {"phase": "Queued"}
        sched.cache.upsert_job(queued, NOW)
        assert sched.cache.snapshot(NOW).queue == ()  # never planned again

    asyncio.run(go())


def test_a_busy_loop_sets_the_gauges_at_most_once_a_second_and_wakes_to_set_the_last_state() -> None:
    """Cycles close together publish the queue and pool gauges once; a skipped publication sets the
    timer so a cycle runs when it is due (nothing stays unpublished). (Fails on the loop that walked
    every job to set them on every cycle.)"""
    sched, _, clock, _ = make()
    published: list[float] = []
    sched.publish = lambda snap: published.append(clock.monotonic())  # type: ignore[method-assign]
    asyncio.run(sched.cycle())
    clock.advance(0.25)
    asyncio.run(sched.cycle())
    asyncio.run(sched.cycle())
    assert published == [0.0]
    assert sched.timer <= clock.now() + scheduler_mod.PUBLISH_SECONDS - 0.25 + 1e-9
    clock.advance(0.75)
    asyncio.run(sched.cycle())
    assert published == [0.0, 1.0]
