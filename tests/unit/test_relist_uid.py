"""The relist safety net compares uids, not only names (suanli.kube.relist): an object deleted and
recreated under the same name while the watch missed both events is replaced in the cache by the
one the confirming GET returned (DELETED for the old, then ADDED for the new), whatever its kind.
(The name-only sweep is tested in test_leader_relist.py.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from suanli.handlers import mirror
from suanli.kube import cache as cache_mod
from suanli.kube import relist

NOW = 1_790_000_000.0
HANDLERS = {"centers": mirror.on_center, "nodes": mirror.on_node, "pods": mirror.on_pod,
            "jobs": mirror.on_compute_job, "workloads": mirror.on_workload}


def cjob(name: str, uid: str, count: int = 8) -> dict[str, Any]:
    return {"apiVersion": "suanli.io/v1alpha1", "kind": "ComputeJob",
            "metadata": {"name": name, "namespace": "team-a", "uid": uid, "generation": 1, "resourceVersion": "1"},
            "spec": {"replicas": 1, "accelerators": {"count": count, "types": ["GPU"]}, "images": {"GPU": "img"}}}


def pod(name: str, uid: str, node: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "team-a", "uid": uid},
            "spec": {"nodeName": node, "containers": [{"name": "m", "resources": {"requests": {"nvidia.com/gpu": "4"}}}]},
            "status": {"phase": "Running"}}


def node(name: str, uid: str, gpus: int = 8) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": uid, "labels": {"suanli.io/pool": "c1-a100"}}, "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"nvidia.com/gpu": str(gpus)}}}


class FakeApi:
    """A LIST of (namespace, name, uid) keys, and GETs that answer with the object of that name now
    (None: 404); `on_get` runs inside a GET (what the watches deliver meanwhile)."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]], on_get: Any = None):
        self.objects = objects
        self.on_get = on_get
        self.checked: list[tuple[str, tuple[str, str]]] = []

    async def run(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def list_keys(self, kinds: tuple[str, ...] = relist.KINDS) -> dict[str, set[tuple[str, str, str]]]:
        out: dict[str, set[tuple[str, str, str]]] = {kind: set() for kind in relist.KINDS}
        for kind, items in self.objects.items():
            for obj in items:
                meta = obj["metadata"]
                out[kind].add((meta.get("namespace") or "", meta["name"], meta["uid"]))
        return out

    def exists(self, kind: str, key: tuple[str, str]) -> dict[str, Any] | None:
        self.checked.append((kind, key))
        if self.on_get is not None:
            self.on_get()
        return next((o for o in self.objects.get(kind, []) if (o["metadata"].get("namespace") or "", o["metadata"]["name"]) == key), None)


def runtime(cache: cache_mod.Cache) -> tuple[SimpleNamespace, list[tuple[str, str, str]]]:
    """A memo for the real mirror handlers, and handlers that record (kind, type, uid) and call them."""
    sched = SimpleNamespace(poke=lambda: None, center_changed=lambda: None, job_changed=lambda key: None,
                            job_deleted=lambda record: None)
    memo = SimpleNamespace(cache=cache, scheduler=sched, clock=SimpleNamespace(now=lambda: NOW))
    return memo, []


def recording(calls: list[tuple[str, str, str]]) -> dict[str, Any]:
    def handler(kind: str) -> Any:
        def handle(event: dict[str, Any], memo: Any) -> None:
            calls.append((kind, event["type"], event["object"]["metadata"].get("uid", "")))
            HANDLERS[kind](event, memo)

        return handle

    return {kind: handler(kind) for kind in relist.KINDS}


def test_a_compute_job_recreated_under_the_same_name_is_replaced_by_the_new_one() -> None:
    cache = cache_mod.Cache()
    cache.upsert_job(cjob("train", "uid-old", count=8), NOW)
    fresh = cjob("train", "uid-new", count=2)
    api = FakeApi({"jobs": [fresh]})
    memo, calls = runtime(cache)
    dropped = asyncio.run(relist.sweep(cache, api, recording(calls), memo))  # type: ignore[arg-type]
    record = cache.jobs[("team-a", "train")]
    assert record.uid == "uid-new" and record.demand is not None and record.demand.count == 2
    assert calls == [("jobs", "DELETED", "uid-old"), ("jobs", "ADDED", "uid-new")]
    assert dropped == [("jobs", ("team-a", "train"))]


def test_a_pod_and_a_node_recreated_unseen_are_replaced_and_their_accelerators_recounted() -> None:
    cache = cache_mod.Cache()
    cache.upsert_node(node("n1", "node-old", gpus=8))
    cache.upsert_pod(pod("p1", "pod-old", "n1"))
    assert cache.node_used == {("n1", "nvidia.com/gpu"): 4}
    new_node, new_pod = node("n1", "node-new", gpus=4), pod("p1", "pod-new", "n2")
    api = FakeApi({"nodes": [new_node], "pods": [new_pod]})
    memo, calls = runtime(cache)
    asyncio.run(relist.sweep(cache, api, recording(calls), memo))  # type: ignore[arg-type]
    assert cache.nodes["n1"].uid == "node-new" and cache.nodes["n1"].allocatable == {"nvidia.com/gpu": 4}
    assert cache.pods[("team-a", "p1")].uid == "pod-new"
    assert cache.node_used == {("n2", "nvidia.com/gpu"): 4}  # the old pod's 4 GPUs on n1 are free
    assert calls == [("nodes", "DELETED", "node-old"), ("nodes", "ADDED", "node-new"),
                     ("pods", "DELETED", "pod-old"), ("pods", "ADDED", "pod-new")]


def test_a_center_recreated_unseen_is_replaced() -> None:
    center = {"apiVersion": "suanli.io/v1alpha1", "kind": "ComputeCenter",
              "metadata": {"name": "c1", "uid": "cc-old", "creationTimestamp": "2026-01-01T00:00:00Z"},
              "spec": {"region": "cn-guizhou", "energy": {"timeZone": "Asia/Shanghai", "pue": 1.2,
                                                          "carbonIntensity": {"gramsPerKWh": 400}}, "pools": []}}
    cache = cache_mod.Cache()
    cache.upsert_center(center)
    again = {**center, "metadata": {**center["metadata"], "uid": "cc-new", "creationTimestamp": "2026-02-01T00:00:00Z"}}
    memo, calls = runtime(cache)
    asyncio.run(relist.sweep(cache, FakeApi({"centers": [again]}), recording(calls), memo))  # type: ignore[arg-type]
    assert cache.center_raw["c1"]["metadata"]["uid"] == "cc-new"
    assert calls == [("centers", "DELETED", "cc-old"), ("centers", "ADDED", "cc-new")]


def test_listed_uids_need_no_get_and_entries_without_a_uid_match_by_name() -> None:
    cache = cache_mod.Cache()
    cache.upsert_job(cjob("same", "uid-1"), NOW)
    no_uid = cjob("legacy", "x")
    del no_uid["metadata"]["uid"]
    cache.upsert_job(no_uid, NOW)
    api = FakeApi({"jobs": [cjob("same", "uid-1"), cjob("legacy", "uid-2")]})
    memo, calls = runtime(cache)
    assert asyncio.run(relist.sweep(cache, api, recording(calls), memo)) == []  # type: ignore[arg-type]
    assert api.checked == [] and calls == []


def test_a_replacement_the_watch_delivered_during_the_get_is_left_alone() -> None:
    cache = cache_mod.Cache()
    cache.upsert_job(cjob("train", "uid-old"), NOW)
    fresh = cjob("train", "uid-new", count=2)
    fresh["metadata"]["resourceVersion"] = "9"
    api = FakeApi({"jobs": [cjob("train", "uid-new", count=2)]}, on_get=lambda: cache.upsert_job(fresh, NOW))
    memo, calls = runtime(cache)
    assert asyncio.run(relist.sweep(cache, api, recording(calls), memo)) == []  # type: ignore[arg-type]
    assert calls == [] and cache.jobs[("team-a", "train")].raw["metadata"]["resourceVersion"] == "9"


def test_the_deleted_event_of_a_replaced_object_carries_the_old_uid() -> None:
    cache = cache_mod.Cache()
    event = relist.deleted_event(cache, "pods", ("team-a", "p1"), "pod-old")
    assert event == {"type": "DELETED", "object": {"metadata": {"name": "p1", "namespace": "team-a", "uid": "pod-old"}}}
