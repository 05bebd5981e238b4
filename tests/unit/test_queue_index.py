"""The waiting queue filed across cycles (kube/set_aside.py) and the placed jobs (kube/cache.py) against
the per-job passes they replaced: after every one of a few hundred random changes (jobs created, edited,
given a status, requeued, bound by this process or by their status, suspended, deleted, recreated under
their name with another uid; pods and nodes coming and going; ComputeQueues and namespaces' labels; the
clock moving on), a snapshot's queue, cut, set-aside count, skippable jobs, invalid jobs, next requeue and
oldest queued job, and the jobs holding accelerators, are exactly what a pass over every waiting (or
active) job computes from scratch on the same cache."""

from __future__ import annotations

import copy
import math
import random
from typing import Any

import pytest
from tests.unit.test_cache import CENTER, NOW, cjob, node, pod
from tests.unit.test_tenants_operator import namespace, queue

from suanli import settings as settings_mod
from suanli.kube import cache as cache_mod
from suanli.kube import records, snapshot
from suanli.placement import feasible, preemption, validation
from suanli.placement import queue as queue_mod
from suanli.scoring import fleet as fleet_mod

NAMES = [f"j{i}" for i in range(14)]
LIMIT = 4  # operator.max_jobs_per_cycle: small, so the cut is exercised


def stamp(epoch: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reference(cache: cache_mod.Cache, snap: snapshot.Snapshot, now: float) -> dict[str, Any]:
    """What the snapshot's pass over every waiting job gave before the queue was filed across cycles."""
    fleet, tenants = snap.fleet, cache.tenants
    models = [p.model for p in fleet.pools]
    queue_: list[Any] = []
    invalid: list[tuple[Any, str, str]] = []
    next_requeue = math.inf
    for key in sorted(cache.waiting()):
        record = cache.jobs[key]
        if record.demand is None or record.parse_error is not None:
            if record.phase != "Invalid" and record.parse_error is not None:
                invalid.append((key, *record.parse_error))
            continue
        if not cache.schedulable(record):
            continue
        problem = validation.invalid_models(record.demand.models, models)
        if problem is not None:
            invalid.append((key, *problem))
            continue
        requeue_at = record.requeue_at
        if requeue_at is not None and requeue_at > now:
            next_requeue = min(next_requeue, requeue_at)
            continue
        queue_.append(tenants.resolve(record.demand, (record.raw.get("spec") or {}).get("queue")) if tenants.active
                      else record.demand)
    preempting = {name for name, policy in preemption.policies(tenants.queues).items() if policy != preemption.Policy()}
    slots = fleet_mod.FleetState.slot_table(snap.capacity.histogram())
    plan, aside, skippable = [], 0, {}
    masks = feasible.pools(fleet, queue_, cache.settings, gang=False) if queue_ else []
    for job, mask in zip(queue_, masks, strict=True):
        record = cache.jobs[job.key]
        status = record.status
        decided = (record.phase == "Queued" and bool(status.get("message"))
                   and status.get("observedGeneration") == record.generation and job.queue not in preempting)
        if not decided:
            plan.append(job)
        elif feasible.room(mask, snap.ready, slots, job.replicas, job.count):
            plan.append(job)
            skippable[job.key] = mask
        else:
            aside += 1
    ordered = queue_mod.ordered(plan)
    head = ordered[:LIMIT]
    queued = [r.created for k in cache.waiting() if (r := cache.jobs[k]).phase == "Queued" and cache.schedulable(r)]
    return {"queue": head, "truncated": max(0, len(ordered) - LIMIT), "aside": aside,
            "skippable": {j.key: skippable[j.key].tolist() for j in head if j.key in skippable},
            "invalid": invalid, "next_requeue": next_requeue, "oldest": min(queued, default=None)}


def observed(cache: cache_mod.Cache, snap: snapshot.Snapshot) -> dict[str, Any]:
    return {"queue": list(snap.queue), "truncated": snap.truncated, "aside": snap.set_aside,
            "skippable": {k: m.tolist() for k, m in (snap.skippable or {}).items()},
            "invalid": list(snap.invalid), "next_requeue": snap.next_requeue, "oldest": cache.oldest_queued()}


class World:
    """A cache and the random changes made to it."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.now = NOW
        settings = settings_mod.Settings(operator=settings_mod.OperatorSettings(max_jobs_per_cycle=LIMIT))
        self.cache = cache_mod.Cache(settings)
        self.cache.upsert_center(CENTER)
        for name in ("n1", "n2", "n3"):
            self.cache.upsert_node(node(name))
        self.uids: dict[str, int] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self.rv = 1

    def job(self, name: str) -> dict[str, Any]:
        rng = self.rng
        doc = self.docs.get(name)
        if doc is None or rng.random() < 0.15:  # new, or recreated under its name (another uid)
            self.uids[name] = self.uids.get(name, 0) + 1
            doc = cjob(name, replicas=rng.choice((1, 1, 2)), count=rng.choice((1, 2, 4, 8)),
                       ns=rng.choice(("team-a", "team-b")))
            doc["metadata"]["uid"] = f"uid-{name}-{self.uids[name]}"
            doc["metadata"]["creationTimestamp"] = stamp(self.now - rng.randrange(0, 3600))
            doc["spec"]["priority"] = rng.choice((0, 0, 5))
            if rng.random() < 0.1:
                doc["spec"]["accelerators"]["models"] = [rng.choice(("H100", "NoSuchModel"))]
            if rng.random() < 0.1:
                doc["spec"]["data"] = {"region": rng.choice(("cn-beijing", "cn-gansu"))}  # a new region: a new fleet
            if rng.random() < 0.2:
                doc["spec"]["queue"] = rng.choice(("plain", "reclaim", "missing"))
        doc = copy.deepcopy(doc)
        meta = doc["metadata"]
        if rng.random() < 0.2:  # the spec edited
            meta["generation"] += 1
            doc["spec"]["accelerators"]["count"] = rng.choice((1, 2, 4, 8))
        if rng.random() < 0.05:
            doc["spec"]["replicas"] = 0  # refused by the schema: Invalid
        elif doc["spec"].get("replicas") == 0:
            doc["spec"]["replicas"] = 1
        doc["spec"]["suspend"] = rng.random() < 0.05
        if rng.random() < 0.05:
            meta["deletionTimestamp"] = stamp(self.now)
        doc["status"] = self.status(doc)
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self.docs[name] = doc
        return doc

    def status(self, doc: dict[str, Any]) -> dict[str, Any]:
        rng, gen = self.rng, doc["metadata"]["generation"]
        kind = rng.choice(("none", "queued", "queued", "queued", "silent", "stale", "deferred", "requeued", "bound",
                           "succeeded", "invalid"))
        if kind == "none":
            return {}
        if kind == "bound":
            return {"phase": "Bound", "observedGeneration": gen,
                    "binding": {"center": "c1", "pool": "a100", "acceleratorType": "GPU"}}
        if kind == "succeeded":
            return {"phase": "Succeeded", "observedGeneration": gen}
        if kind == "invalid":
            return {"phase": "Invalid", "observedGeneration": gen, "message": "bad"}
        status = {"phase": "Deferred" if kind == "deferred" else "Queued",
                  "message": "" if kind == "silent" else "waiting: no pool can take the job now",
                  "observedGeneration": gen - 1 if kind == "stale" else gen}
        if kind == "requeued" or rng.random() < 0.1:
            status["requeueAt"] = stamp(self.now + rng.randrange(-60, 300))
        return status

    def step(self) -> None:
        rng, cache = self.rng, self.cache
        roll = rng.random()
        if roll < 0.45:
            cache.upsert_job(self.job(rng.choice(NAMES)), self.now)
        elif roll < 0.52:
            name = rng.choice(NAMES)
            if self.docs.pop(name, None) is not None:
                cache.delete_job((rng.choice(("team-a", "team-b")), name))
                cache.delete_job(("team-a", name))
                cache.delete_job(("team-b", name))
        elif roll < 0.6:
            key = rng.choice(sorted(cache.jobs)) if cache.jobs else None
            if key is not None:
                if key in cache.assumed or rng.random() < 0.3:
                    cache.forget(key)
                else:
                    cache.assume(key, records.Binding("c1", "a100", "GPU", replicas=1, count=8, energy_kwh=1.0,
                                                      carbon_kg=0.1))
        elif roll < 0.75:
            name = rng.choice(("n1", "n2", "n3"))
            cache.upsert_pod(pod(f"busy-{name}", name, rng.choice((0, 4, 7, 8)),
                                 phase=rng.choice(("Running", "Running", "Succeeded"))))
        elif roll < 0.8:
            cache.upsert_node(node(rng.choice(("n1", "n2", "n3")), ready=rng.random() < 0.8))
        elif roll < 0.85:
            reclaim = queue("reclaim", 16)
            reclaim["spec"]["preemption"] = {"reclaimBorrowed": rng.random() < 0.5}
            cache.tenants.upsert_queue(rng.choice((queue("plain", 16), reclaim)))
            if rng.random() < 0.2:
                cache.tenants.delete_queue(rng.choice(("plain", "reclaim")))
        elif roll < 0.88:
            cache.tenants.upsert_namespace(namespace("team-b", tier=rng.choice(("a", "b"))))
        else:
            self.now += rng.choice((0, 5, 30, 120))


@pytest.mark.parametrize("seed", range(12))
def test_the_filed_queue_is_what_a_pass_over_every_waiting_job_gives(seed: int) -> None:
    world = World(random.Random(seed))
    checked = 0
    placed_seen = 0
    for _ in range(300):
        world.step()
        cache = world.cache
        # The placed index against a pass over every active job (what Cache._placed_jobs did before).
        every = [(k, cache.binding(cache.jobs[k])) for k in sorted(cache.active) if cache.binding(cache.jobs[k])]
        assert list(cache.placed_records()) == [(cache.jobs[k], b) for k, b in every], (seed, "placed")
        placed_seen += len(every)
        if world.rng.random() < 0.4:
            snap = world.cache.snapshot(world.now)
            assert observed(world.cache, snap) == reference(world.cache, snap, world.now), (seed, checked)
            checked += 1
    assert checked > 50
    assert placed_seen > 0  # jobs were bound and the index was exercised


def test_a_job_recreated_under_its_name_is_filed_as_the_new_job() -> None:
    """Same name, another uid, another shape: the cycle sees the new job, never the old one's filing."""
    settings = settings_mod.Settings(operator=settings_mod.OperatorSettings(max_jobs_per_cycle=LIMIT))
    cache = cache_mod.Cache(settings)
    cache.upsert_center(CENTER)
    cache.upsert_node(node("n1"))
    queued = {"phase": "Queued", "message": "waiting", "observedGeneration": 1}
    cache.upsert_job(cjob("a", count=8, status=dict(queued)), NOW)
    cache.upsert_pod(pod("busy", "n1", 4))  # 4 free: the 1x8 job is set aside
    snap = cache.snapshot(NOW)
    assert (snap.queue, snap.set_aside) == ((), 1)
    again = cjob("a", count=2, status=dict(queued))
    again["metadata"]["uid"] = "uid-a-2"
    cache.delete_job(("team-a", "a"))
    cache.upsert_job(again, NOW)
    snap = cache.snapshot(NOW)
    assert [(j.name, j.count) for j in snap.queue] == [("a", 2)] and snap.set_aside == 0
    assert snap.queue[0] is cache.jobs[("team-a", "a")].demand
    cache.delete_job(("team-a", "a"))
    snap = cache.snapshot(NOW)
    assert (snap.queue, snap.set_aside, cache.oldest_queued()) == ((), 0, None)


def test_a_requeued_job_comes_back_when_its_backoff_ends_and_not_before() -> None:
    cache = cache_mod.Cache()
    cache.upsert_center(CENTER)
    cache.upsert_node(node("n1"))
    cache.upsert_job(cjob("r", count=1, status={"phase": "Queued", "message": "requeued", "observedGeneration": 1,
                                               "requeueAt": stamp(NOW + 30)}), NOW)
    snap = cache.snapshot(NOW)
    assert (snap.queue, snap.next_requeue) == ((), NOW + 30)
    snap = cache.snapshot(NOW + 30)
    assert [j.name for j in snap.queue] == ["r"] and snap.next_requeue == math.inf
    snap = cache.snapshot(NOW + 10)  # the clock went back: filed again from scratch
    assert (snap.queue, snap.next_requeue) == ((), NOW + 30)


def test_a_burst_of_jobs_is_filed_as_one_by_one() -> None:
    """Hundreds of jobs changed between two cycles (a burst of creates, a relist) are sorted in at once:
    the same queue as a pass over every waiting job gives."""
    world = World(random.Random(99))
    names = [f"burst-{i:03d}" for i in range(300)]
    for rounds in range(3):
        for name in names[rounds * 50:]:
            world.cache.upsert_job(world.job(name), world.now)
        snap = world.cache.snapshot(world.now)
        assert observed(world.cache, snap) == reference(world.cache, snap, world.now), rounds
    assert snap.truncated + len(snap.queue) + snap.set_aside > 100  # the burst was filed, not lost
