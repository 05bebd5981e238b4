"""spec.suspend on a waiting job and on a running one, and resuming (issue #16), on the mock API of
tests/unit/test_lifecycle.py (the e2e test, tests/e2e/test_training.py, runs it on a real cluster)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from tests.unit import test_lifecycle as lc
from tests.unit import test_write_priority as wp


def suspend(doc: dict[str, Any], value: bool = True) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["spec"]["suspend"] = value
    out["metadata"]["generation"] = int(out["metadata"].get("generation") or 1) + 1
    return out


def test_a_running_job_suspended_has_its_job_deleted_its_hold_released_and_its_energy_so_far_settled() -> None:
    async def go() -> tuple[Any, Any]:
        sched, api, _, _ = lc.make(requeue_limit=2)
        api.stored[lc.KEY] = suspend(api.stored[lc.KEY])  # what the status patch answers with
        running = lc.bound_job("Running")
        running["status"]["startTime"] = lc.clock_mod_rfc(lc.NOW - 1800)
        sched.cache.upsert_job(suspend(running), lc.NOW)
        sched.cache.upsert_workload(lc.job_object())
        await lc.step(sched)
        return sched, api

    sched, api = asyncio.run(go())
    assert api.deleted == [("team-a", "cj-a", f"job-{lc.UID}-0")]
    (patch,) = api.patches
    assert patch["phase"] == "Suspended" and patch["binding"] is None and patch["requeueAt"] is None
    assert patch["suspensions"] == 1 and "requeues" not in patch
    assert [(a["attempt"], a["outcome"]) for a in patch["attempts"]] == [(0, "Suspended")]
    assert patch["message"] == ("suspended by spec.suspend; its attempt on c1/a100 was stopped, its accelerators and "
                                "energy reservation released; set spec.suspend to false to put it back in the queue")
    (ended,) = patch["endedAttempts"]
    assert ended["reason"] == "Suspended" and ended["center"] == "c1" and ended["kWh"] > 0  # half an hour on 8 A100s
    assert ended["acceleratorHours"] == 4.0
    assert patch["conditions"][0]["type"] == "Suspended"
    assert ("main", "event", "Suspended") in api.writes
    # The status read back: it holds nothing and is not planned while spec.suspend stays true.
    record = sched.cache.jobs[lc.KEY]
    assert record.phase == "Suspended" and sched.cache.binding(record) is None
    snap = sched.cache.snapshot(lc.NOW)
    assert snap.queue == ()
    assert not list(sched.cache.placed_records())


def test_suspensions_do_not_count_against_the_requeue_limit() -> None:
    """requeue_limit 2: a job suspended once (attempts 1, suspensions 1) whose next attempt is lost is
    requeued, not failed."""
    async def go() -> Any:
        sched, api, clock, _ = lc.make(requeue_limit=2, pods_ready_timeout_seconds=300)
        doc = lc.bound_job()
        doc["status"].update(suspensions=1, attempts=[
            {"attempt": 0, "center": "c1", "pool": "a100", "ended": lc.clock_mod_rfc(lc.NOW), "outcome": "Suspended"}])
        sched.cache.upsert_job(doc, lc.NOW)
        sched.cache.upsert_workload(lc.job_object(attempt=1))
        sched.cache.upsert_pod(lc.pod_object(phase="Pending", node=None, attempt=1))
        clock.advance(301)
        await lc.step(sched)
        return api

    api = asyncio.run(go())
    (patch,) = api.patches
    assert patch["phase"] == "Queued" and patch["requeues"] == 1, patch
    assert [(a["attempt"], a["outcome"]) for a in patch["attempts"]] == [(0, "Suspended"), (1, "Requeued")]


def test_a_waiting_job_suspended_is_not_planned_and_resumed_it_is() -> None:
    async def go() -> tuple[Any, Any, Any]:
        sched, api, _, _ = lc.make()
        waiting = wp.cjob("a", count=8)
        waiting["status"] = {"phase": "Queued", "message": "waiting"}
        sched.cache.upsert_job(suspend(waiting), lc.NOW)
        await sched.cycle()
        await wp.settle(sched)
        await lc.step(sched)
        suspended_patches = list(api.patches)
        # resumed
        api.patches.clear()
        resumed = suspend(waiting, False)
        resumed["status"] = {"phase": "Suspended", "message": "suspended"}
        resumed["metadata"]["generation"] = 3
        sched.cache.upsert_job(resumed, lc.NOW)
        await sched.cycle()
        await wp.settle(sched)
        return sched, suspended_patches, api.patches

    _, suspended, after = asyncio.run(go())
    (patch,) = suspended
    assert patch["phase"] == "Suspended" and "attempts" not in patch and "suspensions" not in patch
    assert patch["message"] == "suspended by spec.suspend; set spec.suspend to false to put it back in the queue"
    assert [p["phase"] for p in after] == ["Bound"], after


def test_a_waiting_jobs_new_priority_is_planned_by_at_the_next_cycle() -> None:
    """Two jobs wait for the only 8 GPUs, a (earlier) before b; b's priority raised (a new generation): the
    next cycle binds b, not a. Only the spec and its generation change, as `kubectl patch` does."""
    async def go() -> list[str]:
        sched, api = wp.make(gpus=8)
        for name, created in (("a", "2026-09-21T00:00:00Z"), ("b", "2026-09-21T00:01:00Z")):
            doc = wp.cjob(name, count=8, created=created)
            doc["status"] = {"phase": "Queued", "message": "waiting"}
            sched.cache.upsert_job(doc, lc.NOW)
        raised = wp.cjob("b", count=8, priority=10, created="2026-09-21T00:01:00Z")
        raised["metadata"].update(generation=2, resourceVersion="2")
        raised["status"] = {"phase": "Queued", "message": "waiting"}
        sched.cache.upsert_job(raised, lc.NOW)
        await sched.cycle()
        await wp.settle(sched)
        return [m["metadata"]["name"] for m in api.created]  # the batch Jobs made: cj-<name>

    assert asyncio.run(go()) == ["cj-b"]
