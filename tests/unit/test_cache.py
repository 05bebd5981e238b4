"""Cache accounting (pure): capacity from nodes and pods, assumptions, queue, invalid jobs."""

from __future__ import annotations

import copy

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from suanli.kube import cache as cache_mod
from suanli.kube import records, workloads
from suanli.placement import planner

NOW = 1_790_000_000.0
CENTER = {
    "apiVersion": "suanli.io/v1alpha1",
    "kind": "ComputeCenter",
    "metadata": {"name": "c1", "generation": 1},
    "spec": {
        "region": "cn-guizhou",
        "energy": {"timeZone": "Asia/Shanghai", "pue": 1.2, "carbonIntensity": {"gramsPerKWh": 400}, "budget": {"kWh": 100000, "period": "Day"}},
        "pools": [
            {
                "name": "a100",
                "acceleratorType": "GPU",
                "model": "A100",
                "resourceName": "nvidia.com/gpu",
                "nodeSelector": {"suanli.io/pool": "c1-a100"},
                "expected": {"nodes": 2, "acceleratorsPerNode": 8},
            }
        ],
    },
}


def node(name, ready=True, gpus=8, pool="c1-a100", unschedulable=False):
    return {
        "metadata": {"name": name, "labels": {"suanli.io/pool": pool}},
        "spec": {"unschedulable": unschedulable},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "32"},
        },
    }


def pod(name, node_name, gpus, phase="Running", ns="team-a", job=None):
    labels = {workloads.LABEL_JOB: job} if job else {}
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node_name, "containers": [{"name": "main", "resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}]},
        "status": {"phase": phase},
    }


def cjob(name, replicas=1, count=8, ns="team-a", status=None, models=None):
    doc = {
        "apiVersion": "suanli.io/v1alpha1",
        "kind": "ComputeJob",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "generation": 1, "resourceVersion": "1"},
        "spec": {
            "replicas": replicas,
            "accelerators": {"count": count, "types": ["GPU"], **({"models": models} if models else {})},
            "images": {"GPU": "img"},
        },
    }
    if status:
        doc["status"] = status
    return doc


@pytest.fixture
def cache():
    c = cache_mod.Cache()
    c.upsert_center(CENTER)
    c.upsert_node(node("n1"))
    c.upsert_node(node("n2"))
    return c


def usage(cache):
    """(capacity, taken: allocated by pods + reserved for bound replicas, free, ready nodes, expected nodes)."""
    (u,) = cache.snapshot(NOW).usage
    assert u.capacity == u.allocated + u.reserved + u.free
    return (u.capacity, u.allocated + u.reserved, u.free, u.ready_nodes, u.expected_nodes)


def test_allocated_is_what_pods_request_and_reserved_what_bound_replicas_hold(cache):
    """The status's `allocated` is the pods' requests alone (what anyone can check against the pods);
    what bound replicas hold without a running pod is `reserved`."""
    cache.upsert_job(cjob("gang", replicas=2), NOW)
    cache.assume(("team-a", "gang"), records.Binding("c1", "a100", "GPU", replicas=2, count=8, energy_kwh=1.0,
                                                     carbon_kg=0.4))
    cache.upsert_pod(pod("gang-0", "n1", 8, job="gang"))
    (u,) = cache.snapshot(NOW).usage
    assert (u.allocated, u.reserved, u.free) == (8, 8, 0)
    cache.upsert_pod(pod("gang-0", "n1", 8, phase="Succeeded", job="gang"))  # done; the job's phase not written yet
    (u,) = cache.snapshot(NOW).usage
    assert (u.allocated, u.reserved, u.free) == (0, 16, 0)


def test_capacity_counts_ready_schedulable_matching_nodes_only(cache):
    cache.upsert_node(node("n3", ready=False))
    cache.upsert_node(node("n4", unschedulable=True))
    cache.upsert_node(node("other", pool="elsewhere"))
    assert usage(cache) == (16, 0, 16, 2, 2)


def test_pods_allocate_until_they_terminate(cache):
    cache.upsert_pod(pod("p1", "n1", 4))
    cache.upsert_pod(pod("p2", "n2", 8))
    assert usage(cache) == (16, 12, 4, 2, 2)
    cache.upsert_pod(pod("p2", "n2", 8, phase="Succeeded"))
    assert usage(cache) == (16, 4, 12, 2, 2)
    cache.delete_pod(("team-a", "p1"))
    assert usage(cache) == (16, 0, 16, 2, 2)


def test_pods_without_accelerators_are_not_kept(cache):
    plain = pod("web", "n1", 0)
    plain["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    assert cache.upsert_pod(plain) is None
    assert ("team-a", "web") not in cache.pods


def test_queue_holds_unbound_jobs_and_invalid_ones_are_reported(cache):
    cache.upsert_job(cjob("a"), NOW)
    cache.upsert_job(cjob("typo", models=["A1OO"]), NOW)
    bad = cjob("bad")
    bad["spec"]["accelerators"]["count"] = 0
    cache.upsert_job(bad, NOW)
    snap = cache.snapshot(NOW)
    assert [d.key for d in snap.queue] == [("team-a", "a")]
    invalid = {key: field for key, field, _ in snap.invalid}
    assert invalid == {("team-a", "bad"): "spec.accelerators.count", ("team-a", "typo"): "spec.accelerators.models[0]"}


def test_assumed_binding_holds_capacity_until_its_pods_are_seen(cache):
    cache.upsert_job(cjob("gang", replicas=2), NOW)
    binding = records.Binding("c1", "a100", "GPU", replicas=2, count=8, energy_kwh=10.0, carbon_kg=4.0)
    cache.assume(("team-a", "gang"), binding)
    snap = cache.snapshot(NOW)
    assert snap.queue == ()
    assert usage(cache)[:3] == (16, 16, 0)
    assert snap.energy.account("c1").reserved_kwh == 10.0
    # One pod visible on a node: it counts itself, the other replica stays assumed.
    cache.upsert_pod(pod("gang-0", "n1", 8, job="gang"))
    assert usage(cache)[:3] == (16, 16, 0)
    cache.upsert_pod(pod("gang-1", "n2", 8, job="gang"))
    assert usage(cache)[:3] == (16, 16, 0)
    # Pods done: still held while the API shows the job Bound or Running (before this, the accelerators
    # were free the moment the pods finished, and the next job could be bound to them while the first
    # still read Running).
    cache.upsert_pod(pod("gang-0", "n1", 8, phase="Succeeded", job="gang"))
    cache.upsert_pod(pod("gang-1", "n2", 8, phase="Succeeded", job="gang"))
    assert usage(cache)[:3] == (16, 16, 0)
    # The terminal phase written: nothing is held any more.
    done = {"phase": "Succeeded", "binding": {"center": "c1", "pool": "a100", "acceleratorType": "GPU"},
            "estimates": {"energyKWh": 10.0, "carbonKg": 4.0}, "energy": {"kWh": 9.0, "carbonKg": 3.6}}
    cache.upsert_job(cjob("gang", replicas=2, status=done), NOW)
    assert usage(cache)[:3] == (16, 0, 16)


def test_forget_returns_the_job_to_the_queue(cache):
    cache.upsert_job(cjob("a"), NOW)
    cache.assume(("team-a", "a"), records.Binding("c1", "a100", "GPU", 1, 8, 1.0, 0.4))
    assert cache.snapshot(NOW).queue == ()
    cache.forget(("team-a", "a"))
    assert [d.key for d in cache.snapshot(NOW).queue] == [("team-a", "a")]


def test_restart_counts_bound_jobs_from_their_status(cache):
    status = {
        "phase": "Bound",
        "binding": {"center": "c1", "pool": "a100", "acceleratorType": "GPU", "model": "A100", "score": 0.5,
                    "breakdown": {"accelerator": 0.5, "locality": 1, "energy": 0.5}},
        "estimates": {"runtimeSeconds": 3600, "transferSeconds": 0, "energyKWh": 5.0, "carbonKg": 2.0, "cost": 1.0},
    }
    fresh = cache_mod.Cache()  # what a restarted operator builds from a LIST
    fresh.upsert_center(CENTER)
    fresh.upsert_node(node("n1"))
    fresh.upsert_node(node("n2"))
    fresh.upsert_job(cjob("running", status=status), NOW)
    fresh.upsert_job(cjob("waiting"), NOW)
    snap = fresh.snapshot(NOW)
    assert [d.key for d in snap.queue] == [("team-a", "waiting")]
    assert usage(fresh)[:3] == (16, 8, 8)
    assert snap.energy.account("c1").reserved_kwh == 5.0


def test_a_plan_on_the_snapshot_never_oversubscribes(cache):
    for i in range(5):
        cache.upsert_job(cjob(f"j{i}", count=4), NOW + i)
    snap = cache.snapshot(NOW)
    reply = planner.plan(planner.PlanRequest(
        fleet=snap.fleet, capacity=snap.capacity, energy=snap.energy, jobs=snap.queue, now=NOW,
        ready=snap.ready, not_ready_reason=snap.not_ready_reason,
    ))
    phases = [d.phase for d in reply.decisions]
    assert phases == ["Bound"] * 4 + ["Queued"]
    assert reply.capacity.oversubscription() == 0
    assert "not enough free accelerators" in reply.decisions[-1].message


def test_pool_without_nodes_is_not_ready_with_a_reason(cache):
    cache.delete_node("n1")
    cache.delete_node("n2")
    snap = cache.snapshot(NOW)
    assert not snap.ready[0]
    assert "suanli.io/pool" in snap.not_ready_reason[0]


def test_stale_job_events_do_not_undo_a_newer_status(cache):
    doc = cjob("a", status={"phase": "Queued"})
    cache.upsert_job(doc, NOW)
    newer = copy.deepcopy(doc)
    newer["metadata"]["resourceVersion"] = "5"
    newer["status"] = {"phase": "Succeeded"}
    cache.upsert_job(newer, NOW)
    cache.upsert_job(doc, NOW)  # an older LIST delivered late
    assert cache.jobs[("team-a", "a")].phase == "Succeeded"


def test_an_invalid_job_whose_spec_was_fixed_is_planned_again(cache):
    invalid = {"phase": "Invalid", "observedGeneration": 1, "message": "spec.accelerators.models[0]: unknown"}
    cache.upsert_job(cjob("typo", models=["A1OO"], status=invalid), NOW)
    snap = cache.snapshot(NOW)
    assert snap.queue == () and snap.invalid == ()  # already marked: not reported again
    fixed = cjob("typo", models=["A100"], status=invalid)
    fixed["metadata"].update(generation=2, resourceVersion="2")
    cache.upsert_job(fixed, NOW)
    assert [d.key for d in cache.snapshot(NOW).queue] == [("team-a", "typo")]


def test_the_cache_keeps_only_the_status_fields_it_reads(cache):
    status = {"phase": "Queued", "message": "waiting", "candidates": [{"center": "c1"}] * 50,
              "rejected": [{"center": "c2"}] * 50, "conditions": [{"type": "Bound"}]}
    doc = cjob("a", status=status)
    doc["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    record = cache.upsert_job(doc, NOW)
    assert record.status == {"phase": "Queued", "message": "waiting"}
    assert "managedFields" not in record.raw["metadata"] and "status" not in record.raw
    assert record.raw["spec"] == doc["spec"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["up", "del"]), st.integers(0, 5), st.sampled_from(["n1", "n2", None]),
                          st.integers(0, 8), st.sampled_from(["Pending", "Running", "Succeeded", "Failed"])),
                max_size=40))
def test_accelerators_in_use_per_node_match_a_recount_after_any_pod_history(ops):
    c = cache_mod.Cache()
    for op, i, node_name, gpus, phase in ops:
        if op == "up":
            doc = pod(f"p{i}", node_name, gpus, phase=phase, job="j" if i % 2 else None)
            c.upsert_pod(doc)
        else:
            c.delete_pod(("team-a", f"p{i}"))
    recount: dict[tuple[str, str], int] = {}
    for info in c.pods.values():
        if not info.terminated and info.node is not None:
            for resource, amount in info.requests.items():
                recount[(info.node, resource)] = recount.get((info.node, resource), 0) + amount
    assert c.node_used == {k: v for k, v in recount.items() if v}


def test_finished_jobs_count_their_settled_energy_in_their_period_only(cache):
    def done(name, completed, kwh):
        return cjob(name, status={
            "phase": "Succeeded", "completionTime": completed, "energy": {"kWh": kwh, "carbonKg": kwh / 2},
            "binding": {"center": "c1", "pool": "a100", "acceleratorType": "GPU"},
            "estimates": {"energyKWh": 1.0, "carbonKg": 0.5},
        })

    # NOW is 2026-09-21 (Asia/Shanghai day starts 2026-09-20T16:00Z).
    cache.upsert_job(done("today", "2026-09-21T10:00:00Z", 7.0), NOW)
    cache.upsert_job(done("yesterday", "2026-09-19T10:00:00Z", 100.0), NOW)
    assert cache.snapshot(NOW).energy.account("c1").used_kwh == 7.0
    assert "today" not in {k[1] for k in cache.active}
    cache.upsert_job(done("later", "2026-09-21T11:00:00Z", 3.0), NOW)
    assert cache.snapshot(NOW).energy.account("c1").used_kwh == 10.0
    cache.delete_job(("team-a", "today"))
    assert cache.snapshot(NOW).energy.account("c1").used_kwh == 3.0
    # The next day starts from nothing.
    assert cache.snapshot(NOW + 86_400).energy.account("c1").used_kwh == 0.0


BOUND_STATUS = {
    "binding": {"center": "c1", "pool": "a100", "acceleratorType": "GPU"},
    "estimates": {"energyKWh": 2.0, "carbonKg": 1.0},
    "completionTime": "2026-09-21T12:00:00Z",
    "energy": {"kWh": 1.5, "carbonKg": 0.5},
}
JOB_STEP = st.one_of(
    st.tuples(st.just("job"), st.integers(0, 2), st.sampled_from([None, "Queued", "Bound", "Running", "Succeeded"])),
    st.tuples(st.just("assume"), st.integers(0, 2)),
    st.tuples(st.just("forget"), st.integers(0, 2)),
    st.tuples(st.just("pod"), st.integers(0, 2), st.integers(0, 1), st.sampled_from(["n1", "n2", None]),
              st.sampled_from(["Pending", "Running", "Succeeded"])),
    st.tuples(st.just("delpod"), st.integers(0, 2), st.integers(0, 1)),
    st.tuples(st.just("workload"), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("deljob"), st.integers(0, 2)),
    st.tuples(st.just("snapshot"), st.just(0)),  # the books are brought up to date lazily, at snapshots
)


def workload(i, finished):
    conditions = [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-09-21T12:00:00Z"}] if finished else []
    return {"metadata": {"name": f"cj-j{i}", "namespace": "team-a", "labels": {workloads.LABEL_JOB: f"j{i}"}},
            "status": {"conditions": conditions}}


def books(c):
    snap = c.snapshot(NOW)
    account = snap.energy.account("c1")
    return ([(u.capacity, u.allocated, u.free) for u in snap.usage], round(account.reserved_kwh, 9),
            round(account.used_kwh, 9), [d.key for d in snap.queue], snap.capacity.free_per_node(0))


@settings(max_examples=300, deadline=None)
@given(st.lists(JOB_STEP, max_size=30))
@example([("job", 0, None), ("snapshot", 0), ("assume", 0)])  # a decision after the books were brought up to date
@example([("job", 1, "Bound"), ("snapshot", 0), ("pod", 1, 0, "n1", "Running"), ("snapshot", 0), ("workload", 1, True)])
@example([("job", 0, None), ("job", 1, None), ("job", 0, None), ("deljob", 1), ("job", 0, "Bound")])  # versions rise
def test_books_kept_step_by_step_equal_books_built_from_the_final_objects(steps):
    """The cache updates its sums as events arrive; a cache primed with only the final objects (a
    restart) must hold the same capacity, energy and queue."""
    live = cache_mod.Cache()
    for doc in (CENTER, node("n1"), node("n2")):
        (live.upsert_center if doc is CENTER else live.upsert_node)(doc)
    jobs, pods, loads = {}, {}, {}
    version = 100
    binding = records.Binding("c1", "a100", "GPU", replicas=2, count=4, energy_kwh=2.0, carbon_kg=1.0)
    for step in steps:
        kind, i = step[0], step[1]
        key = ("team-a", f"j{i}")
        if kind == "job":
            status = {"phase": step[2], **(BOUND_STATUS if step[2] in ("Bound", "Running", "Succeeded") else {})} if step[2] else None
            doc = cjob(f"j{i}", replicas=2, count=4, status=status)
            # Every write raises the version (the cache skips an event older than what it holds): one
            # counted from the number of jobs went back down after a deletion, and the live cache then
            # rightly ignored the next write as stale.
            version += 1
            doc["metadata"]["resourceVersion"] = str(version)
            jobs[key] = doc
            live.upsert_job(doc, NOW)
        elif kind == "assume" and key in live.jobs and live.schedulable(live.jobs[key]):
            live.assume(key, binding)
        elif kind == "forget":
            live.forget(key)
        elif kind == "pod":
            doc = pod(f"j{i}-{step[2]}", step[3], 4, phase=step[4], job=f"j{i}")
            pods[(i, step[2])] = doc
            live.upsert_pod(doc)
        elif kind == "delpod":
            pods.pop((i, step[2]), None)
            live.delete_pod(("team-a", f"j{i}-{step[2]}"))
        elif kind == "workload":
            loads[i] = workload(i, step[2])
            live.upsert_workload(loads[i])
        elif kind == "deljob":
            jobs.pop(key, None)
            live.delete_job(key)
        elif kind == "snapshot":
            live.snapshot(NOW)
    fresh = cache_mod.Cache()
    for doc in (CENTER, node("n1"), node("n2")):
        (fresh.upsert_center if doc is CENTER else fresh.upsert_node)(doc)
    for doc in jobs.values():
        fresh.upsert_job(doc, NOW)
    for key in live.assumed:
        fresh.assume(key, live.assumed[key])
    for doc in pods.values():
        fresh.upsert_pod(doc)
    for doc in loads.values():
        fresh.upsert_workload(doc)
    assert books(live) == books(fresh)
    assert live.phase_counts() == fresh.phase_counts()
    assert live.waiting() == fresh.waiting() == live.active - live.holds.holds.keys()


def test_dropped_jobs_pods_and_workloads_leave_no_reference_cycles(cache):
    """The operator freezes its primed cache out of the cyclic collector (commands/run.py
    `freeze_primed`): that is only safe if what the cache drops is freed by reference counting,
    i.e. its records form no cycles."""
    import gc

    for i in range(20):
        cache.upsert_job(cjob(f"j{i}", count=1), NOW)
        cache.upsert_pod(pod(f"j{i}-0", "n1", 1, job=f"j{i}"))
        cache.upsert_workload(workload(i, finished=i % 2 == 0))
    cache.assume(("team-a", "j1"), records.Binding("c1", "a100", "GPU", replicas=1, count=1, energy_kwh=1.0, carbon_kg=0.4))
    books(cache)
    gc.collect()
    gc.disable()
    try:
        gc.freeze()
        for i in range(20):
            cache.delete_pod(("team-a", f"j{i}-0"))
            cache.delete_workload(workload(i, finished=i % 2 == 0))
            cache.delete_job(("team-a", f"j{i}"))
        books(cache)
        gc.unfreeze()
        assert gc.collect() == 0
    finally:
        gc.unfreeze()
        gc.enable()


# --- replicas bound to named nodes (status.binding.nodes) ---------------------------------------


def ipod(index, node_name, phase="Running", job="gang"):
    """A replica's pod: its completion index labelled as the Job controller does."""
    doc = pod(f"{job}-{index}", node_name, 4, phase=phase, job=job)
    doc["metadata"]["labels"][workloads.COMPLETION_INDEX] = str(index)
    return doc


@pytest.mark.parametrize(
    ("nodes", "free"),
    [(("n2", "n2"), (4, 0)), (("n1", "n2"), (0, 4)), ((), (0, 4))],
    ids=["both on n2", "one each", "no nodes: best-fit, the half-full n1 first"],
)
def test_replicas_not_on_a_node_yet_are_held_on_the_nodes_their_binding_names(cache, nodes, free):
    cache.upsert_pod(pod("web", "n1", 4))  # n1: 4 of 8 free
    cache.upsert_job(cjob("gang", replicas=2, count=4), NOW)
    cache.assume(("team-a", "gang"), records.Binding("c1", "a100", "GPU", 2, 4, 1.0, 0.5, nodes=nodes))
    assert cache.snapshot(NOW).capacity.free_per_node(0) == free
    # A replica's pod on its node counts itself; its replica is no longer held: the same books.
    first = nodes[0] if nodes else "n1"
    cache.upsert_pod(ipod(0, first))
    assert cache.snapshot(NOW).capacity.free_per_node(0) == free
    assert cache.holds.holds[("team-a", "gang")].nodes == nodes[1:]  # replica 1's node (none without nodes)


def test_a_node_gone_from_the_pool_holds_nothing_and_a_full_one_what_is_left(cache):
    cache.upsert_node(node("n3"))
    cache.upsert_job(cjob("gang", replicas=3, count=4), NOW)
    cache.assume(("team-a", "gang"), records.Binding("c1", "a100", "GPU", 3, 4, 1.0, 0.5, nodes=("n1", "n2", "n2")))
    assert cache.snapshot(NOW).capacity.free_per_node(0) == (4, 0, 8)
    cache.upsert_node(node("n1", pool="elsewhere"))
    assert cache.snapshot(NOW).capacity.free_per_node(0) == (0, 8)  # n2, n3
    cache.upsert_pod(pod("web", "n2", 6))  # someone else's pod took n2: only 2 left, less than a replica
    assert cache.snapshot(NOW).capacity.free_per_node(0) == (2, 8)


PINNED_STEP = st.one_of(
    st.tuples(st.just("pod"), st.integers(0, 2), st.sampled_from(["n1", "n2", None]),
              st.sampled_from(["Pending", "Running", "Succeeded"])),
    st.tuples(st.just("delpod"), st.integers(0, 2)),
    st.tuples(st.just("node"), st.sampled_from(["n1", "n2"]), st.booleans()),
    st.tuples(st.just("bind"), st.sampled_from([("n1", "n2", "n2"), ("n2", "n2", "n1"), ()])),
    st.tuples(st.just("snapshot")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(PINNED_STEP, max_size=25))
def test_node_exact_holds_kept_step_by_step_equal_holds_built_from_the_final_objects(steps):
    """A gang of 3 x 4 bound to named nodes: whatever happens to its pods, nodes and binding, the
    books kept as events arrive are those a restarted operator builds from the final objects."""
    def fresh_cache():
        c = cache_mod.Cache()
        c.upsert_center(CENTER)
        c.upsert_job(cjob("gang", replicas=3, count=4), NOW)
        return c

    live, pods, present = fresh_cache(), {}, {"n1": True, "n2": True}
    for name in present:
        live.upsert_node(node(name))
    binding = None
    for step in steps:
        if step[0] == "pod":
            pods[step[1]] = ipod(step[1], step[2], phase=step[3])
            live.upsert_pod(pods[step[1]])
        elif step[0] == "delpod":
            pods.pop(step[1], None)
            live.delete_pod(("team-a", f"gang-{step[1]}"))
        elif step[0] == "node":
            present[step[1]] = step[2]
            if step[2]:
                live.upsert_node(node(step[1]))
            else:
                live.delete_node(step[1])
        elif step[0] == "bind":
            binding = records.Binding("c1", "a100", "GPU", 3, 4, 1.0, 0.5, nodes=step[1])
            live.assume(("team-a", "gang"), binding)
        else:
            live.snapshot(NOW)
    fresh = fresh_cache()
    for name, up in present.items():
        if up:
            fresh.upsert_node(node(name))
    if binding is not None:
        fresh.assume(("team-a", "gang"), binding)
    for doc in pods.values():
        fresh.upsert_pod(doc)
    assert books(live) == books(fresh)
    assert live.holds.pinned == fresh.holds.pinned
    assert live.snapshot(NOW).capacity.oversubscription() == 0


def test_a_job_in_a_region_the_fleet_knows_keeps_the_fleet_and_the_pools_claims(cache):
    """The fleet is rebuilt (and the pools' claims on nodes redone) only for a data region it has no word
    for: a job whose data sits in a center's own region, or in one an earlier job brought, changes
    nothing (before, any region no earlier job had rebuilt it: on a 5,000-node fleet, 0.6 s a time)."""
    fleet = cache.fleet()
    cache.pool_members(fleet)
    members = cache._members
    for name, region in (("home", "cn-guizhou"), ("far", "cn-tibet"), ("far-again", "cn-tibet")):
        doc = cjob(name)
        doc["spec"]["data"] = {"region": region, "sizeGiB": 1}
        cache.upsert_job(doc, NOW)
        if name == "far":
            assert cache.fleet() is not fleet and "cn-tibet" in cache.fleet().regions  # a word it lacked
            fleet = cache.fleet()
            cache.pool_members(fleet)
            members = cache._members
        else:
            assert cache.fleet() is fleet
            cache.pool_members(fleet)
            assert cache._members is members
