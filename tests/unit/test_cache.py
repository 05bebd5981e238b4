"""Cache accounting (pure): capacity from nodes and pods, assumptions, queue, invalid jobs."""

from __future__ import annotations

import copy

import pytest

from suanli.kube import cache as cache_mod
from suanli.kube import workloads
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
    (u,) = cache.snapshot(NOW).usage
    return (u.capacity, u.allocated, u.free, u.ready_nodes, u.expected_nodes)


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
    binding = cache_mod.Binding("c1", "a100", "GPU", replicas=2, count=8, energy_kwh=10.0, carbon_kg=4.0)
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
    # Pods done and the Job finished: nothing is held any more.
    cache.upsert_pod(pod("gang-0", "n1", 8, phase="Succeeded", job="gang"))
    cache.upsert_pod(pod("gang-1", "n2", 8, phase="Succeeded", job="gang"))
    assert usage(cache)[:3] == (16, 0, 16)


def test_forget_returns_the_job_to_the_queue(cache):
    cache.upsert_job(cjob("a"), NOW)
    cache.assume(("team-a", "a"), cache_mod.Binding("c1", "a100", "GPU", 1, 8, 1.0, 0.4))
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
