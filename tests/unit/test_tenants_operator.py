"""ComputeQueues in the operator (kube/tenants.py, kube/queue_status.py): the cache resolves each
waiting job's queue from spec.queue or its namespace's labels, the scheduler admits up to the queue's
quota and writes the queue into the job's status, a restart rebuilds the same usage from those
statuses, and the queue's status says usage against quota. The API is faked (tests/unit/
test_write_priority.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.unit import test_write_priority as wp

from suanli.kube import queue_status
from suanli.kube import status as status_mod


def queue(name: str, gpus: int, labels: dict[str, str] | None = None, **quota: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"quota": {"accelerators": [{"type": "GPU", "count": gpus}], **quota}}
    if labels is not None:
        body["namespaceSelector"] = {"matchLabels": labels}
    return {"apiVersion": "suanli.io/v1alpha1", "kind": "ComputeQueue",
            "metadata": {"name": name, "uid": f"uid-{name}", "generation": 1}, "spec": body}


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def recording(api: wp.FakeApi) -> dict[str, dict[str, Any]]:
    """The last status written for each job, by name."""
    written: dict[str, dict[str, Any]] = {}
    real = api.patch_job_status

    def patch_job_status(ns: str, name: str, status: dict[str, Any], **kwargs: Any) -> Any:
        written[name] = status
        return real(ns, name, status, **kwargs)

    api.patch_job_status = patch_job_status  # type: ignore[method-assign]
    return written


def run_cycle(sched: Any) -> None:
    async def go() -> None:
        await sched.cycle()
        await wp.settle(sched)

    asyncio.run(go())


def test_a_queue_admits_up_to_its_quota_and_the_next_job_waits_naming_it() -> None:
    sched, api = wp.make(gpus=8)
    cache = sched.cache
    cache.tenants.upsert_queue(queue("vision", 4, labels={"team": "vision"}))
    cache.tenants.upsert_namespace(namespace("team-a", team="vision"))
    for name in ("a", "b", "c"):
        cache.upsert_job(wp.cjob(name, count=2, created=f"2026-12-01T00:00:0{ord(name) - 96}Z"), wp.NOW)
    run_cycle(sched)
    bound = {k[1] for k, b in cache.assumed.items()}
    assert bound == {"a", "b"}
    assert all(b.queue == "vision" for b in cache.assumed.values())
    assert {c[2][1] for c in api.calls("patch_job_status")} == {"a", "b", "c"}
    snap = cache.snapshot(wp.NOW)
    (waiting,) = snap.queue
    assert waiting.name == "c" and waiting.queue == "vision"
    assert snap.quotas is not None and snap.quotas.usage("vision")["accelerators/GPU"] == 4


def test_the_queue_in_a_bound_status_rebuilds_the_same_usage_after_a_restart() -> None:
    sched, _ = wp.make(gpus=8)
    cache = sched.cache
    cache.tenants.upsert_queue(queue("vision", 4))
    doc = wp.cjob("a", count=2)
    doc["spec"]["queue"] = "vision"
    doc["status"] = {"phase": "Running", "queue": "vision",
                     "binding": {"center": "c1", "pool": "a100", "acceleratorType": "GPU", "model": "A100", "nodes": ["n1"]},
                     "estimates": {"energyKWh": 1.0, "carbonKg": 0.5}}
    record = cache.upsert_job(doc, wp.NOW)
    assert record.recorded is not None and record.recorded.queue == "vision"
    ledger = cache.snapshot(wp.NOW).quotas
    assert ledger is not None and ledger.usage("vision")["accelerators/GPU"] == 2


def test_a_missing_queue_holds_the_job_and_says_so() -> None:
    sched, api = wp.make(gpus=8)
    cache = sched.cache
    cache.tenants.upsert_queue(queue("vision", 4))
    doc = wp.cjob("a", count=2)
    doc["spec"]["queue"] = "nlp"
    cache.upsert_job(doc, wp.NOW)
    written = recording(api)
    run_cycle(sched)
    assert not cache.assumed
    assert written["a"]["phase"] == "Queued" and written["a"]["queue"] == "nlp"
    assert written["a"]["rejected"][0]["reason"] == "ComputeQueue nlp (spec.queue) does not exist; create it or fix spec.queue"


def test_queue_status_reads_usage_against_quota() -> None:
    sched, _ = wp.make(gpus=8)
    cache = sched.cache
    cache.tenants.upsert_queue(queue("vision", 4, labels={"team": "vision"}, carbon={"kg": 10}))
    cache.tenants.upsert_namespace(namespace("team-a", team="vision"))
    cache.upsert_job(wp.cjob("a", count=2), wp.NOW)
    run_cycle(sched)
    snap = cache.snapshot(wp.NOW)
    st = queue_status.build("vision", 1, snap.quotas, admitted=1, waiting=0, problem=None, current={}, now=wp.NOW)
    assert st["accelerators"] == "2/4 GPU" and st["admittedJobs"] == 1
    assert st["carbon"].endswith("/10 kg") and st["period"].startswith("Month ")
    assert st["conditions"][0]["status"] == "True"
    assert not status_mod.center_changed(st, queue_status.build("vision", 1, snap.quotas, 1, 0, None, st, wp.NOW + 60))
    bad = queue_status.build("vision", 2, None, 0, 0, "spec.weight: must be > 0", st, wp.NOW)
    assert bad["conditions"][0]["reason"] == "InvalidSpec" and bad["conditions"][0]["status"] == "False"


def test_an_invalid_queue_admits_nothing_and_its_jobs_wait_with_the_reason() -> None:
    sched, api = wp.make(gpus=8)
    cache = sched.cache
    broken = queue("vision", 4)
    broken["spec"]["weight"] = 0
    cache.tenants.upsert_queue(broken)
    assert "weight" in cache.tenants.invalid["vision"].error
    cache.tenants.upsert_queue(queue("other", 4))
    doc = wp.cjob("a", count=2)
    doc["spec"]["queue"] = "vision"
    cache.upsert_job(doc, wp.NOW)
    written = recording(api)
    run_cycle(sched)
    assert not cache.assumed
    assert "ComputeQueue vision is invalid (spec.weight: " in written["a"]["rejected"][0]["reason"]


def test_jobs_of_a_namespace_an_invalid_queue_selects_wait_instead_of_running_unrestricted() -> None:
    """The queue is the only one and is refused (weight 0); its namespaceSelector still says whose jobs it
    holds back. On the old code the refused queue was dropped, tenancy was off, and team-a's job ran
    outside any quota. A namespace it does not select runs as before; fixing the queue admits the job."""
    sched, api = wp.make(gpus=8)
    cache = sched.cache
    broken = queue("vision", 4, labels={"team": "vision"})
    broken["spec"]["weight"] = 0
    cache.tenants.upsert_queue(broken)
    cache.tenants.upsert_namespace(namespace("team-a", team="vision"))
    cache.tenants.upsert_namespace(namespace("team-b", team="speech"))
    cache.upsert_job(wp.cjob("a", count=2), wp.NOW)
    cache.upsert_job(wp.cjob("b", ns="team-b", count=2), wp.NOW)
    written = recording(api)
    run_cycle(sched)
    assert written["b"]["phase"] == "Bound"
    assert written["a"]["phase"] == "Queued"
    reason = written["a"]["rejected"][0]["reason"]
    assert "ComputeQueue vision is invalid (spec.weight: " in reason
    assert "namespaceSelector selects namespace team-a" in reason
    cache.tenants.upsert_queue(queue("vision", 4, labels={"team": "vision"}))
    run_cycle(sched)
    assert written["a"]["phase"] == "Bound" and written["a"]["queue"] == "vision"


def test_an_invalid_queue_whose_selector_cannot_be_read_holds_jobs_no_valid_queue_selects() -> None:
    from suanli.placement import tenancy

    broken = tenancy.InvalidQueue("spec.namespaceSelector.matchExpressions.0.operator: bad", readable=False)
    valid = {"speech": queue_spec("speech", {"team": "speech"})}
    held = tenancy.resolve(None, "team-a", {"team": "vision"}, valid, {"vision": broken})
    assert held.queue == "vision" and "cannot be read, so it may select namespace team-a" in held.problem
    assert tenancy.resolve(None, "team-b", {"team": "speech"}, valid, {"vision": broken}) == tenancy.Resolution("speech")
    no_selector = tenancy.InvalidQueue("spec.weight: must be > 0")
    assert tenancy.resolve(None, "team-a", {"team": "vision"}, valid, {"vision": no_selector}) == tenancy.Resolution(None)
    named = tenancy.resolve("vision", "team-a", {}, valid, {"vision": no_selector})
    assert "spec.queue names it" in named.problem


def queue_spec(name: str, labels: dict[str, str]) -> Any:
    from suanli.api import objects

    return objects.ComputeQueue.model_validate(queue(name, 4, labels=labels)).spec


def test_a_higher_priority_job_of_the_queue_preempts_a_lower_one_whose_attempt_ends_preempted() -> None:
    """Queue team allows LowerPriority preemption; its priority-0 job runs on the only 8-GPU node. Its
    priority-5 job arrives: the running one's Job is deleted and it goes back to the queue with a
    Preempted condition naming the preemptor, its attempt counted; nothing more is proposed while it
    stops. With withinQueue Never nothing is preempted."""
    from tests.unit import test_lifecycle as lc

    async def go(policy: str) -> tuple[Any, Any]:
        sched, api, _, _ = lc.make()
        cache = sched.cache
        cache.tenants.upsert_queue({**queue("team", 16), "spec": {
            "quota": {"accelerators": [{"type": "GPU", "count": 16}]}, "preemption": {"withinQueue": policy}}})
        running = lc.bound_job("Running")
        running["spec"]["queue"] = "team"
        running["status"]["queue"] = "team"
        cache.upsert_job(running, lc.NOW)
        cache.upsert_workload(lc.job_object())
        urgent = wp.cjob("b", count=8, priority=5)
        urgent["spec"]["queue"] = "team"
        cache.upsert_job(urgent, lc.NOW)
        await sched.cycle()
        await wp.settle(sched)
        for _ in range(3):  # the lifecycle's turn: it ends the preempted attempt
            for key in sorted(sched.jobs_dirty):
                sched.lifecycle.progress(key)
            sched.jobs_dirty.clear()
            await wp.settle(sched)
        return sched, api

    sched, api = asyncio.run(go("LowerPriority"))
    assert api.deleted and api.deleted[0][1] == "cj-a"  # the victim's Job
    (patch,) = [p for p in api.patches if p.get("phase") == "Queued" and "preempted" in p.get("message", "")]
    assert patch["requeues"] == 1 and patch["conditions"][0]["type"] == "Preempted"
    assert [a["outcome"] for a in patch["attempts"]] == ["Preempted"]
    assert "preempted by team-a/b (a job of higher priority in its queue) to run on c1/a100" in patch["message"]
    assert ("team-a", "b") in sched.preempting.waiting_for
    sched, api = asyncio.run(go("Never"))
    assert api.deleted == [] and not sched.preempting.waiting_for


def test_a_relabelled_namespace_or_a_changed_queue_changes_which_queue_admits_its_jobs() -> None:
    """Queue resolution is worked out once per (spec.queue, namespace) and done again when a queue or a
    namespace's labels change."""
    sched, _ = wp.make(gpus=8)
    tenants = sched.cache.tenants
    tenants.upsert_queue(queue("vision", 4, labels={"team": "vision"}))
    tenants.upsert_queue(queue("speech", 4, labels={"team": "speech"}))
    tenants.upsert_namespace(namespace("team-a", team="vision"))
    record = sched.cache.upsert_job(wp.cjob("a", count=2), wp.NOW)
    assert record.demand is not None
    assert tenants.resolve(record.demand, None).queue == "vision"
    tenants.upsert_namespace(namespace("team-a", team="speech"))
    assert tenants.resolve(record.demand, None).queue == "speech"
    tenants.delete_queue("speech")
    assert tenants.resolve(record.demand, None).queue is None
    broken = queue("vision", 4, labels={"team": "vision"})
    broken["spec"]["weight"] = 0
    tenants.upsert_queue(broken)
    assert "ComputeQueue vision is invalid" in tenants.resolve(record.demand, "vision").queue_problem


def test_a_preempted_attempt_settles_the_energy_it_used_at_its_center_and_in_its_queue() -> None:
    """It ran an hour (status.startTime) on 8 A100s before it was preempted: 8 x board power x 1 h x PUE
    is in status.endedAttempts, and counts in the center's and the queue's sums for the period it ended
    in, before and after the status is read back (a restart rebuilds it from the status alone)."""
    from tests.unit import test_lifecycle as lc

    async def go() -> tuple[Any, Any]:
        sched, api, _, _ = lc.make()
        cache = sched.cache
        cache.tenants.upsert_queue(queue("team", 16))
        running = lc.bound_job("Running")
        running["spec"]["queue"] = "team"
        running["status"]["queue"] = "team"
        running["status"]["startTime"] = lc.clock_mod_rfc(lc.NOW - 3600)
        running["status"]["estimates"]["cost"] = 1.0  # 2 kWh estimated: 0.5 per kWh
        record = cache.upsert_job(running, lc.NOW)
        cache.upsert_workload(lc.job_object())
        assert sched.lifecycle.preempt(record, "preempted by team-a/b")
        await lc.step(sched)
        return sched, api

    sched, api = asyncio.run(go())
    (patch,) = [p for p in api.patches if p.get("phase") == "Queued"]
    (ended,) = patch["endedAttempts"]
    fleet = sched.cache.fleet()
    pool = fleet.pools[fleet.pool_index("c1", "a100")]
    pue = sched.cache.centers["c1"].spec.energy.pue
    kwh = 8 * pool.power_watts * 3600 * pue / 3.6e6
    assert ended["center"] == "c1" and ended["queue"] == "team" and ended["reason"] == "Preempted"
    assert ended["kWh"] == pytest.approx(kwh) and ended["carbonKg"] > 0
    # Read back as the watch delivers it (the only source after a restart).
    queued = lc.bound_job("Running")
    queued["spec"]["queue"] = "team"
    queued["status"] = {**patch}
    sched.cache.upsert_job(queued, lc.NOW)
    assert sched.cache.settled.total("c1", lc.NOW - 86400)[0] == pytest.approx(kwh)
    assert sched.cache.tenants.settled.total("team", lc.NOW - 86400)[0] == pytest.approx(kwh)
    assert sched.cache.settled.total("c1", lc.NOW + 60)[0] == 0  # a later period does not count it
    # The queue's status reads it as this period's settled use: energy, carbon, cost and accelerator-hours.
    start, label = queue_status.settled_period(None, "team", "UTC", lc.NOW)
    st = queue_status.build("team", 1, None, 0, 1, None, {}, lc.NOW, (label, sched.cache.tenants.settled.amounts("team", start)))
    assert st["settled"]["period"] == label and st["settled"]["energyKWh"] == pytest.approx(kwh)
    assert st["settled"]["cost"] == pytest.approx(kwh * 0.5) and st["settled"]["acceleratorHours"] == pytest.approx(8)
    sched.cache.delete_job(("team-a", "a"))
    assert sched.cache.settled.total("c1", lc.NOW - 86400)[0] == 0


def test_a_finished_run_settles_cost_and_accelerator_hours_with_its_energy() -> None:
    from tests.unit import test_lifecycle as lc

    from suanli.kube import records

    sched, _, _, _ = lc.make()
    done = lc.bound_job("Succeeded")
    done["spec"]["queue"] = "team"
    done["status"].update({
        "queue": "team", "startTime": lc.clock_mod_rfc(lc.NOW), "completionTime": lc.clock_mod_rfc(lc.NOW + 1800),
        "energy": {"kWh": 3.0, "carbonKg": 1.2, "source": "estimate"},
        "endedAttempts": [{"center": "c1", "queue": "team", "kWh": 1.0, "carbonKg": 0.4, "cost": 0.5,
                           "acceleratorHours": 4.0, "ended": lc.clock_mod_rfc(lc.NOW - 60), "reason": "Preempted"}],
    })
    done["status"]["estimates"]["cost"] = 1.0
    record = sched.cache.upsert_job(done, lc.NOW)
    (ended, run) = records.settlements(record)
    assert ended[0] == "c1" and ended[3].accelerator_hours == 4.0
    assert run[:3] == ("c1", "team", lc.NOW + 1800)
    assert run[3].cost == pytest.approx(1.5) and run[3].accelerator_hours == pytest.approx(4.0)  # 8 GPUs x 0.5 h
    used = sched.cache.tenants.settled.amounts("team", lc.NOW - 3600)
    assert (used.kwh, used.cost, used.accelerator_hours) == (pytest.approx(4.0), pytest.approx(2.0), pytest.approx(8.0))


def cohorted(name: str, gpus: int) -> dict[str, Any]:
    doc = queue(name, gpus)
    doc["spec"]["cohort"] = "c"
    return doc


@pytest.mark.parametrize("seed", range(6))
def test_the_ledger_kept_across_cycles_equals_one_built_from_scratch(seed: int) -> None:
    """Random cycles of jobs bound, moved to another pool or queue, finished and gone, and a queue edited:
    after each, the kept ledger (only changes booked) reads the same as a ledger built from every placed
    job, in every queue and dimension."""
    import random

    from suanli.kube import records
    from suanli.kube import tenants as tenants_mod

    rng = random.Random(seed)
    sched, _ = wp.make(gpus=64)
    cache = sched.cache
    fleet = cache.fleet()
    kept = tenants_mod.Tenants(cache.settings)
    specs = {"a": cohorted("a", 16), "b": cohorted("b", 8), "solo": queue("solo", 8)}
    for doc in specs.values():
        kept.upsert_queue(doc)
    demand = cache.upsert_job(wp.cjob("x", count=2), wp.NOW).demand
    assert demand is not None
    placed: dict[tuple[str, str], tuple[records.JobRecord, records.Binding]] = {}
    for cycle in range(40):
        for _ in range(rng.randint(1, 4)):
            key = ("team-a", f"j{rng.randint(0, 11)}")
            if key in placed and rng.random() < 0.4:
                del placed[key]  # finished or deleted
                continue
            record = records.JobRecord(key=key, raw={}, demand=demand, parse_error=None, created=wp.NOW)
            binding = records.Binding("c1", "a100", "GPU", replicas=1, count=rng.choice([1, 2, 4]),
                                      energy_kwh=1.0, carbon_kg=0.5, queue=rng.choice(["a", "b", "solo", None]))
            placed[key] = (record, binding)
        if cycle == 20:
            kept.upsert_queue(cohorted("b", 12))  # edited: built again
        now = wp.NOW + cycle
        got = kept.ledger(fleet, list(placed.values()), now)
        fresh = tenants_mod.Tenants(cache.settings)
        for doc in (*specs.values(), *([cohorted("b", 12)] if cycle >= 20 else [])):
            fresh.upsert_queue(doc)
        want = fresh.ledger(fleet, list(placed.values()), now)
        assert got is not None and want is not None
        for name in want.queues():
            assert got.usage(name) == pytest.approx(want.usage(name)), (cycle, name)
            assert got.borrowed(name) == pytest.approx(want.borrowed(name)), (cycle, name)
        # What the caller does with its copy does not reach the kept ledger.
        got.release(next(iter(placed), ("none", "none")))
        again = kept.ledger(fleet, list(placed.values()), now)
        assert again is not None and all(again.usage(n) == pytest.approx(want.usage(n)) for n in want.queues())


def test_the_queue_status_counts_every_waiting_job_not_only_the_cycles_cut() -> None:
    # One node of 8 GPUs, a cycle planning one job at most: "a" runs, "b" and "c" wait (the node is full).
    # The waiting count must not depend on how many jobs one cycle plans (or sets aside): it read 1 before.
    sched, api = wp.make(max_jobs=1, gpus=8)
    cache = sched.cache
    cache.tenants.upsert_queue(queue("vision", 64, labels={"team": "vision"}))
    cache.tenants.upsert_namespace(namespace("team-a", team="vision"))
    for i, name in enumerate("abc"):
        cache.upsert_job(wp.cjob(name, count=8, created=f"2026-12-01T00:00:0{i + 1}Z"), wp.NOW)
    run_cycle(sched)
    assert {k[1] for k in cache.assumed} == {"a"}
    written: dict[str, dict[str, Any]] = {}
    api.patch_queue_status = lambda name, status: written.__setitem__(name, status)  # type: ignore[attr-defined]
    asyncio.run(queue_status.QueueStatus(sched).write())
    assert written["vision"]["admittedJobs"] == 1 and written["vision"]["waitingJobs"] == 2, written
    assert cache.set_aside.waiting_by_queue() == {"vision": 2}
    cache.delete_job(("team-a", "c"))
    cache.snapshot(wp.NOW)
    assert cache.set_aside.waiting_by_queue() == {"vision": 1}
