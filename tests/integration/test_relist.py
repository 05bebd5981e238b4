"""The relist safety net (suanli.kube.relist.sweep) against a real API server: a ComputeJob and a pod
deleted and recreated under the same name while nothing watched are replaced in the cache by the new
objects (their new uids), and one deleted for good is dropped. The uid comparison itself is tested
in tests/unit/test_relist_uid.py."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from tests.e2e.helpers import compute_job

from suanli.handlers import mirror
from suanli.kube import cache as cache_mod
from suanli.kube import client as client_mod
from suanli.kube import relist

pytestmark = pytest.mark.cluster
GROUP, VERSION = "suanli.io", "v1alpha1"
HANDLERS = {"centers": mirror.on_center, "nodes": mirror.on_node, "pods": mirror.on_pod,
            "jobs": mirror.on_compute_job, "workloads": mirror.on_workload}


@pytest.fixture
def api(kube: Any) -> Any:
    client = client_mod.Api(client_mod.api_client(kube.kubeconfig, pool_size=4), workers=2)
    yield client
    client.close()


def pod(name: str) -> dict[str, Any]:
    """A pod asking for a GPU (so the cache keeps it) that stays Pending: no node matches."""
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": "none",
                                     "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}}],
                     "nodeSelector": {"suanli.io/none": "none"}}}


def gone(api: Any, kind: str, key: tuple[str, str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while api.exists(kind, key):
        assert time.monotonic() < deadline, f"{kind} {key} still there after {timeout:g}s"
        time.sleep(0.1)


def test_objects_recreated_unseen_are_replaced_and_deleted_ones_dropped(
    api: Any, custom_objects: Any, core_v1: Any, namespace: str
) -> None:
    cache = cache_mod.Cache()
    sched = SimpleNamespace(poke=lambda: None, center_changed=lambda: None, job_changed=lambda key: None,
                            job_deleted=lambda record: None)
    memo = SimpleNamespace(cache=cache, scheduler=sched, clock=SimpleNamespace(now=time.time))
    # What the watches delivered before they went quiet.
    first = custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                           compute_job("train", namespace, count=1))
    doomed = custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                            compute_job("doomed", namespace, count=1))
    first_pod = core_v1.api_client.sanitize_for_serialization(core_v1.create_namespaced_pod(namespace, pod("p1")))
    cache.upsert_job(first, time.time())
    cache.upsert_job(doomed, time.time())
    cache.upsert_pod(first_pod)
    assert cache.pods[(namespace, "p1")].uid == first_pod["metadata"]["uid"]

    # Nothing watches: "train" and "p1" are deleted and recreated under the same names, "doomed" deleted.
    for name in ("train", "doomed"):
        custom_objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", name)
        gone(api, "jobs", (namespace, name))
    core_v1.delete_namespaced_pod("p1", namespace, grace_period_seconds=0)
    gone(api, "pods", (namespace, "p1"))
    second = custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                            compute_job("train", namespace, count=2))
    second_pod = core_v1.api_client.sanitize_for_serialization(core_v1.create_namespaced_pod(namespace, pod("p1")))
    assert second["metadata"]["uid"] != first["metadata"]["uid"]

    dropped = asyncio.run(relist.sweep(cache, api, HANDLERS, memo))

    record = cache.jobs[(namespace, "train")]
    assert record.uid == second["metadata"]["uid"]
    assert record.demand is not None and record.demand.count == 2  # the new spec, not the stale one
    assert (namespace, "doomed") not in cache.jobs
    assert cache.pods[(namespace, "p1")].uid == second_pod["metadata"]["uid"]
    assert set(dropped) >= {("jobs", (namespace, "train")), ("jobs", (namespace, "doomed")), ("pods", (namespace, "p1"))}
    # A second sweep finds nothing more to do: the cache agrees with the API.
    again = asyncio.run(relist.sweep(cache, api, HANDLERS, memo))
    assert [d for d in again if d[1][0] == namespace] == []
