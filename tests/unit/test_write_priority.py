"""Scheduler writes: terminating namespaces, binding writes ahead of the rest, queue truncation,
failed writes retried with backoff.

The API is a fake (`FakeApi`): the tests need failures on demand — a real API server cannot be
held with a namespace "terminating" (the namespace controller finishes the deletion within
seconds) and cannot be made to stall its progress writes while binding writes go through.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import json
import re
import threading
import time
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from tests.unit import test_cache as cache_tests

from suanli import clock as clock_mod
from suanli import settings as settings_mod
from suanli.kube import cache as cache_mod
from suanli.kube import client as client_mod
from suanli.kube import errors, priority_pool
from suanli.kube import scheduler as scheduler_mod

NOW = 1_790_000_000.0
# The cache tests' center with one node per pool instead of two.
CENTER = copy.deepcopy(cache_tests.CENTER)
CENTER["spec"]["pools"][0]["expected"]["nodes"] = 1
NODE = {
    "metadata": {"name": "n1", "labels": {"suanli.io/pool": "c1-a100"}},
    "spec": {},
    "status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "allocatable": {"nvidia.com/gpu": "8", "cpu": "32"},
    },
}


def cjob(
    name: str, ns: str = "team-a", priority: int | None = None, count: int = 1, created: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "uid": f"uid-{ns}-{name}",
        "generation": 1,
        "resourceVersion": "1",
    }
    if created:
        meta["creationTimestamp"] = created
    spec: dict[str, Any] = {
        "replicas": 1,
        "accelerators": {"count": count, "types": ["GPU"]},
        "images": {"GPU": "img"},
    }
    if priority is not None:
        spec["priority"] = priority
    return {"apiVersion": "suanli.io/v1alpha1", "kind": "ComputeJob", "metadata": meta, "spec": spec}


def terminating(ns: str) -> ApiException:
    exc = ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps(
        {
            "kind": "Status",
            "status": "Failure",
            "message": f'jobs.batch "x" is forbidden: unable to create new content in namespace {ns} '
            f"because it is being terminated",
            "reason": "Forbidden",
            "details": {
                "name": "x",
                "group": "batch",
                "kind": "jobs",
                "causes": [{"reason": "NamespaceTerminating"}],
            },
            "code": 403,
        }
    )
    return exc


def namespace_not_found(ns: str) -> ApiException:
    exc = ApiException(status=404, reason="Not Found")
    exc.body = json.dumps(
        {
            "kind": "Status",
            "message": f'namespaces "{ns}" not found',
            "reason": "NotFound",
            "details": {"name": ns, "kind": "namespaces"},
            "code": 404,
        }
    )
    return exc


class FakeApi:
    """Records writes; `create_error` fails Job creates; `block_main` stalls the main pool."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str, Any]] = []  # (pool, call, detail)
        self.create_error: BaseException | None = None
        self.patch_error: BaseException | None = None
        self.block_main = asyncio.Event()
        self.block_main.set()
        self.issued = 0  # binding-pool tickets handed out
        self.created: list[dict[str, Any]] = []  # the Job manifests created
        self.stored: dict[tuple[str, str], dict[str, Any]] = {}  # ComputeJobs a status patch answers with
        self.uids: list[str | None] = []  # the uid precondition of each status patch

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        await self.block_main.wait()
        return self._call("main", fn, *args, **kwargs)

    def ticket(self) -> int:
        self.issued += 1
        return self.issued

    async def run_binding(self, ticket: int, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self._call(f"binding#{ticket}", fn, *args, **kwargs)

    def _call(self, pool: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        name = fn.__name__
        detail = {"event": lambda: args[1], "create_or_adopt_job": lambda: args[0]["metadata"]["name"]}.get(
            name, lambda: args[:2]
        )()
        self.writes.append((pool, name, detail))
        return fn(*args, **kwargs)

    def patch_job_status(
        self, ns: str, name: str, status: dict[str, Any], answer: bool = True, uid: str | None = None,
        whole: bool = False,
    ) -> dict[str, Any] | None:
        if self.patch_error is not None:
            raise self.patch_error
        self.uids.append(uid)
        if not answer:
            return None
        stored = self.stored.get((ns, name))
        if stored is None:
            return {"metadata": {"namespace": ns, "name": name}, "status": status}
        return {**stored, "status": {**(stored.get("status") or {}), **status}}

    def create_or_adopt_job(self, manifest: dict[str, Any], uid: str, create_namespace: bool = False,
                            claim: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        if self.create_error is not None:
            raise self.create_error
        self.created.append(manifest)
        return manifest, True

    def event(self, *args: Any) -> None:
        return None

    def calls(self, name: str) -> list[tuple[str, str, Any]]:
        return [w for w in self.writes if w[1] == name]


def make(max_jobs: int = 2000, gpus: int = 8, **operator: Any) -> tuple[scheduler_mod.Scheduler, FakeApi]:
    settings = settings_mod.Settings(
        operator=settings_mod.OperatorSettings(max_jobs_per_cycle=max_jobs, coalesce_seconds=0, **operator)
    )
    cache = cache_mod.Cache(settings)
    cache.upsert_center(CENTER)
    node = json.loads(json.dumps(NODE))
    node["status"]["allocatable"]["nvidia.com/gpu"] = str(gpus)
    cache.upsert_node(node)
    api = FakeApi()
    sched = scheduler_mod.Scheduler(cache, api, settings, clock_mod.ManualClock(NOW))  # type: ignore[arg-type]
    return sched, api


async def settle(sched: scheduler_mod.Scheduler) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
        if not sched.tasks:
            return
    await asyncio.gather(*list(sched.tasks), return_exceptions=True)


# --- 1. terminating namespaces ---------------------------------------------------------


@pytest.mark.parametrize("error", [terminating("team-a"), namespace_not_found("team-a")])
def test_namespace_gone_is_recognised(error: ApiException) -> None:
    assert errors.namespace_gone(error)


def test_other_errors_are_not_namespace_gone() -> None:
    forbidden = ApiException(status=403, reason="Forbidden")
    forbidden.body = json.dumps(
        {"message": 'jobs.batch is forbidden: User "x" cannot create', "details": {"kind": "jobs"}}
    )
    missing = ApiException(status=404, reason="Not Found")
    missing.body = json.dumps({"message": 'jobs.batch "x" not found', "details": {"kind": "jobs"}})
    assert not errors.namespace_gone(forbidden)
    assert not errors.namespace_gone(missing)
    assert not errors.namespace_gone(ApiException(status=500))
    assert not errors.namespace_gone(ValueError("being terminated"))


@pytest.mark.parametrize("error", [terminating("team-a"), namespace_not_found("team-a")])
def test_terminating_namespace_is_not_requeued(error: ApiException, caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        sched, api = make()
        sched.cache.upsert_job(cjob("a"), NOW)
        api.create_error = error
        for _ in range(5):  # several cycles and progress checks: no second bind, no second create
            await sched.cycle()
            await settle(sched)
            sched.lifecycle.progress(("team-a", "a"))
            await settle(sched)
        assert len(api.calls("create_or_adopt_job")) == 1
        patches = api.calls("patch_job_status")
        assert len(patches) == 1  # the Bound status only: no unbind, no requeue
        assert not any(w[2] == "WorkloadFailed" for w in api.calls("event"))
        assert ("team-a", "a") in sched.abandoned
        # The Bound status arrives through the watch: still no second create.
        bound = cjob("a")
        bound["status"] = {
            "phase": "Bound",
            "binding": {"center": "c1", "pool": "a100", "acceleratorType": "GPU"},
        }
        sched.cache.upsert_job(bound, NOW)
        sched.lifecycle.progress(("team-a", "a"))
        await settle(sched)
        assert len(api.calls("create_or_adopt_job")) == 1
        # Deleted with its namespace; a namespace of that name comes back with a new job: scheduled as usual.
        sched.cache.delete_job(("team-a", "a"))
        api.create_error = None
        again = cjob("a")
        again["metadata"]["uid"] = "uid-new"
        sched.cache.upsert_job(again, NOW)
        await sched.cycle()
        await settle(sched)
        assert ("team-a", "a") not in sched.abandoned
        assert len(api.calls("create_or_adopt_job")) == 2

    with caplog.at_level("INFO", logger="suanli.scheduler"):
        asyncio.run(go())
    notes = [r for r in caplog.records if "is being deleted" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelname == "INFO"


def test_other_create_errors_still_requeue() -> None:
    async def go() -> None:
        sched, api = make()
        sched.cache.upsert_job(cjob("a"), NOW)
        api.create_error = ApiException(status=500, reason="Internal Server Error")
        await sched.cycle()
        await settle(sched)
        assert ("team-a", "a") not in sched.cache.assumed  # unbound: planned again
        assert sched.wake.is_set()
        assert [w[2] for w in api.calls("event")][-1] == "WorkloadFailed"
        assert len(api.calls("patch_job_status")) == 2  # Bound, then back to Queued

    asyncio.run(go())


# --- 2. binding writes ahead of the rest ---------------------------------------------------


def test_binding_writes_use_the_binding_pool_with_one_ticket_while_the_main_pool_is_stalled() -> None:
    async def go() -> None:
        sched, api = make()
        sched.cache.upsert_job(cjob("a"), NOW)
        sched.cache.upsert_job(cjob("b"), NOW)
        api.block_main.clear()  # progress patches and Events stuck behind a slow API server
        await sched.cycle()
        for _ in range(20):
            await asyncio.sleep(0)
        # Each job's status and Job share the ticket its binding took: its Job keeps its place in line.
        assert sorted(w[:2] for w in api.writes) == [
            ("binding#1", "create_or_adopt_job"),
            ("binding#1", "patch_job_status"),
            ("binding#2", "create_or_adopt_job"),
            ("binding#2", "patch_job_status"),
        ]
        api.block_main.set()
        await settle(sched)
        assert [w[2] for w in api.calls("event")] == ["Bound", "Bound"]
        assert all(w[0] == "main" for w in api.calls("event"))

    asyncio.run(go())


def test_failed_bound_write_still_undoes_the_assumption_and_requeues() -> None:
    async def go() -> None:
        sched, api = make()
        sched.cache.upsert_job(cjob("a"), NOW)
        api.patch_error = ApiException(status=500, reason="Internal Server Error")
        sched.wake.clear()
        await sched.cycle()
        await settle(sched)
        assert ("team-a", "a") not in sched.cache.assumed
        assert ("team-a", "a") not in sched.writes.in_flight
        assert sched.wake.is_set()
        assert [w[2] for w in api.calls("event")] == ["BindFailed"]
        assert not api.calls("create_or_adopt_job")

    asyncio.run(go())


def test_binding_pool_runs_while_the_main_pool_is_saturated() -> None:
    """The real client: every main-pool thread busy, a binding write still runs at once."""

    async def go() -> None:
        api = client_mod.Api(object(), workers=4)
        release = threading.Event()
        try:
            stuck = [asyncio.ensure_future(api.run(release.wait, 10)) for _ in range(20)]
            await asyncio.sleep(0.05)
            started = time.monotonic()
            assert await asyncio.wait_for(api.run_binding(api.ticket(), lambda: "bound"), 2) == "bound"
            assert time.monotonic() - started < 1
            assert not any(t.done() for t in stuck)
            release.set()
            await asyncio.gather(*stuck)
        finally:
            release.set()
            api.close()

    asyncio.run(go())


def test_binding_pool_matches_the_main_pool_with_a_floor_of_two() -> None:
    assert priority_pool.binding_workers(16) == 16
    assert priority_pool.binding_workers(1) == 2


# --- 3. queue truncation ------------------------------------------------------------------


def test_queue_is_cut_after_priority_order() -> None:
    sched, _ = make(max_jobs=2)
    for name in ("a", "b", "c"):
        sched.cache.upsert_job(cjob(name), NOW)
    sched.cache.upsert_job(cjob("z-urgent", priority=100), NOW)
    snap = sched.cache.snapshot(NOW)
    assert [d.name for d in snap.queue] == ["z-urgent", "a"]
    assert snap.truncated == 2


def test_a_cut_queue_wakes_the_scheduler_for_the_rest() -> None:
    async def go() -> None:
        sched, api = make(max_jobs=2)
        for name in ("a", "b", "c", "d", "e"):
            sched.cache.upsert_job(cjob(name), NOW)
        sched.wake.clear()
        await sched.cycle()
        assert sched.wake.is_set()  # three more queued
        await settle(sched)
        cycles = 1
        while sched.wake.is_set():
            sched.wake.clear()
            await sched.cycle()
            await settle(sched)
            cycles += 1
        assert sorted(w[2][1] for w in api.calls("patch_job_status")) == ["a", "b", "c", "d", "e"]
        assert len(api.calls("create_or_adopt_job")) == 5
        assert cycles == 3  # 2 + 2 + 1, then no more wake-ups

    asyncio.run(go())


def test_a_cut_queue_whose_head_cannot_be_placed_does_not_spin() -> None:
    async def go() -> None:
        sched, _ = make(max_jobs=1, gpus=8)
        sched.cache.upsert_job(cjob("big", count=16, priority=10), NOW)  # never fits: Queued
        sched.cache.upsert_job(cjob("small"), NOW)
        sched.wake.clear()
        await sched.cycle()
        await settle(sched)
        assert not sched.wake.is_set()

    asyncio.run(go())


def test_a_job_create_keeps_its_bindings_place_ahead_of_later_bindings_and_cancels_on_shutdown() -> None:
    """The real pool: the Job of the binding with ticket 1, submitted after bindings 2 and 3 were
    queued, still runs before them (no starvation of Jobs behind a stream of new bindings)."""
    pool = priority_pool.PriorityPool(1, "test-bind")
    gate, order = threading.Event(), []
    try:
        first = pool.submit(0, gate.wait)  # occupies the only thread
        binds = [pool.submit(t, lambda t=t: order.append(f"bind-{t}")) for t in (2, 3)]
        job = pool.submit(1, lambda: order.append("job-1"))
        failing = pool.submit(4, lambda: 1 / 0)
        gate.set()
        concurrent.futures.wait([first, job, *binds, failing], timeout=10)
        assert order == ["job-1", "bind-2", "bind-3"]
        with pytest.raises(ZeroDivisionError):
            failing.result()
        gate.clear()
        busy = pool.submit(5, gate.wait)
        pending = pool.submit(6, lambda: order.append("never"))
        time.sleep(0.05)
    finally:
        pool.shutdown()
        gate.set()
    assert busy.result(timeout=10) is True
    assert pending.cancelled() and "never" not in order


# --- 4. failed writes: retried with backoff, not at once ------------------------------------

UNAVAILABLE = ApiException(status=503, reason="Service Unavailable")


async def wait_until(predicate: Any, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def retry_delays(caplog: pytest.LogCaptureFixture, marker: str) -> list[float]:
    pattern = re.compile(marker + r" ([0-9.]+)s")
    return [float(m.group(1)) for r in caplog.records if (m := pattern.search(r.getMessage()))]


def test_a_failing_progress_write_is_retried_after_doubling_delays_then_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    """The API server answers 503 to every status patch: the Succeeded write is retried after 0.02,
    0.04, 0.08, 0.08 s (doubling, capped), not in a loop; once it answers, the write lands and the
    failure count is gone. (Before the backoff, the re-check after a failed write ran at once: an
    API server outage in the e2e drill drew ~1,600 failed writes in 70 s from one job.)"""

    async def go() -> None:
        sched, api = make(retry_seconds=0.02, retry_max_seconds=0.08)
        key = ("team-a", "a")
        sched.cache.upsert_job(cjob("a"), NOW)
        await sched.cycle()
        await settle(sched)
        bound = cjob("a")
        bound["status"] = {"phase": "Bound", "binding": {"center": "c1", "pool": "a100", "acceleratorType": "GPU"}}
        sched.cache.upsert_job(bound, NOW)
        api.stored[key] = bound
        done = copy.deepcopy(api.created[0])
        done["metadata"]["uid"] = "uid-job-a"
        done["status"] = {"succeeded": 1, "startTime": "2026-09-20T10:00:00Z", "completionTime": "2026-09-20T11:00:00Z",
                          "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-09-20T11:00:00Z"}]}
        sched.cache.upsert_workload(done)
        api.patch_error = UNAVAILABLE
        before = len(api.calls("patch_job_status"))
        jobs = asyncio.ensure_future(sched.run_jobs())
        try:
            started = time.monotonic()
            sched.job_changed(key)
            await wait_until(lambda: len(api.calls("patch_job_status")) - before >= 5)
            elapsed = time.monotonic() - started
            assert sched.writes.failures[key] >= 5
            delays = retry_delays(caplog, "retrying in")
            assert delays[:5] == [0.02, 0.04, 0.08, 0.08, 0.08]
            assert elapsed >= sum(delays[:4])  # no attempt came before its delay was over
            api.patch_error = None
            await wait_until(lambda: [w[2] for w in api.calls("event")][-1:] == ["Succeeded"])
            assert key not in sched.writes.failures
        finally:
            jobs.cancel()
            await asyncio.gather(jobs, return_exceptions=True)

    with caplog.at_level("WARNING", logger="suanli.scheduler"):
        asyncio.run(go())


def test_a_failed_binding_sits_out_planning_until_its_retry_while_others_bind() -> None:
    """The Bound status patch fails: the job goes back to the queue but is left out of planning until
    its backoff is over (a second cycle at once does not try it again, and the capacity it would have
    taken goes to the next job); then it is planned and bound."""

    async def go() -> None:
        sched, api = make(gpus=1, retry_seconds=0.05, retry_max_seconds=1)
        a, b = ("team-a", "a"), ("team-a", "b")
        sched.cache.upsert_job(cjob("a", priority=10), NOW)
        sched.cache.upsert_job(cjob("b", priority=0), NOW)
        api.patch_error = UNAVAILABLE
        await sched.cycle()
        await settle(sched)
        assert a in sched.writes.held and sched.writes.failures[a] == 1
        assert not api.created
        api.patch_error = None
        await sched.cycle()  # at once: `a` is held, so `b` gets the one GPU
        await settle(sched)
        assert [m["metadata"]["name"] for m in api.created] == ["cj-b"]
        assert b in sched.cache.assumed and a not in sched.cache.assumed
        sched.wake.clear()
        await wait_until(lambda: sched.wake.is_set())  # the retry is due: a wake-up, not a poll
        assert a not in sched.writes.held
        sched.cache.delete_job(b)  # b is gone: its GPU is free again
        await sched.cycle()
        await settle(sched)
        assert [m["metadata"]["name"] for m in api.created] == ["cj-b", "cj-a"]
        assert a in sched.cache.assumed and a not in sched.writes.failures

    asyncio.run(go())
