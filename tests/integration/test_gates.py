"""Gated pods on a real API server (kube-scheduler, the Job controller and kwok running): the pods of
a Suanli batch Job are created gated, and the lifter (suanli.kube.gates) pins each replica to the node
its binding names and lifts the gate in one JSON patch, which the API server accepts for a gated pod
(an affinity added, or a requirement added to each existing term) and refuses for another pod uid."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from tests.e2e.helpers import compute_job, small_center

from suanli.kube import cache as cache_mod
from suanli.kube import client as client_mod
from suanli.kube import gates, workloads

pytestmark = pytest.mark.cluster
GROUP, VERSION = "suanli.io", "v1alpha1"
TIMEOUT_S = 60.0


@pytest.fixture
def api(kube: Any) -> Any:
    client = client_mod.Api(client_mod.api_client(kube.kubeconfig, pool_size=4), workers=2)
    yield client
    client.close()


def gated_pods(core_v1: Any, namespace: str, label: str, replicas: int) -> list[dict[str, Any]] | None:
    """The Job's pods as plain dicts, once all exist (None before)."""
    pods = core_v1.list_namespaced_pod(namespace, label_selector=f"{workloads.LABEL_JOB}={label}",
                                       _preload_content=False)
    items = json.loads(pods.data)["items"]
    return items if len(items) == replicas else None


@pytest.mark.parametrize("user_terms", [False, True], ids=["no affinity", "the template's own required terms"])
def test_gated_replicas_are_pinned_to_their_nodes_and_released(
    api: Any, core_v1: Any, custom_objects: Any, namespace: str, fake_nodes: Any, wait_for: Any,
    user_terms: bool,
) -> None:
    center = small_center(f"gates-{uuid.uuid4().hex[:5]}")
    pool = center["spec"]["pools"][0]
    n0, n1 = fake_nodes(center, nodes_per_pool=2)
    doc = compute_job("gang", namespace, replicas=2, count=4)
    if user_terms:
        doc["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {gates.REQUIRED: {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "type", "operator": "In", "values": ["kwok"]}]},
            {"matchExpressions": [{"key": "suanli.io/center", "operator": "In", "values": [center["metadata"]["name"]]}]},
        ]}}}
    cj = custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)
    manifest = workloads.build_job(cj, center=center["metadata"]["name"], pool=pool["name"], accelerator_type="GPU",
                                   resource_name=pool["resourceName"], node_selector=pool["nodeSelector"], tolerations=[])
    api.create_or_adopt_job(manifest, cj["metadata"]["uid"])
    label = workloads.label_value("gang")
    pods = wait_for(lambda: gated_pods(core_v1, namespace, label, 2), TIMEOUT_S, "the Job's two pods")
    for pod in pods:
        assert pod["spec"]["schedulingGates"] == [{"name": workloads.GATE}]
        assert not pod["spec"].get("nodeName")  # gated: no scheduler placed it

    # The precondition holds on the real server: a patch computed for another pod uid is refused.
    stale = copy.deepcopy(pods[0])
    stale["metadata"]["uid"] = str(uuid.uuid4())
    ops = gates.operations(stale, n0)
    assert ops is not None
    with pytest.raises(ApiException) as refused:
        api.patch_pod(namespace, pods[0]["metadata"]["name"], ops)
    assert refused.value.status == 422

    # What the operator's cache knows: the center, the nodes, the job bound with the nodes of its
    # replicas (replica 0 on the second node, replica 1 on the first: not what spreading would pick
    # by name), and the gated pods.
    cache = cache_mod.Cache()
    cache.upsert_center(center)
    for node in api.pages("nodes"):
        cache.upsert_node(node)
    status = {"phase": "Bound", "binding": {"center": center["metadata"]["name"], "pool": pool["name"],
                                            "acceleratorType": "GPU", "nodes": [n1, n0]},
              "estimates": {"energyKWh": 1.0, "carbonKg": 0.5}}
    cache.upsert_job({**cj, "status": status}, 0.0)
    lifter = gates.Lifter(cache, api)
    patches: list[list[dict[str, Any]]] = []
    real_patch = api.patch_pod

    def recording_patch(ns: str, name: str, operations: list[dict[str, Any]]) -> None:
        real_patch(ns, name, operations)
        patches.append(operations)  # accepted

    api.patch_pod = recording_patch

    async def release() -> None:
        for pod in pods:
            key = (namespace, pod["metadata"]["name"])
            cache.upsert_pod(pod)
            lifter.wake(key, pod)
        while lifter.tasks:
            await asyncio.gather(*list(lifter.tasks))

    asyncio.run(release())
    assert len(patches) == 2, patches
    expected = {}
    for pod in pods:
        index = int(pod["metadata"]["labels"][workloads.COMPLETION_INDEX])
        expected[pod["metadata"]["name"]] = [n1, n0][index]

    def placed() -> dict[str, str] | None:
        now = {p.metadata.name: p.spec.node_name for p in core_v1.list_namespaced_pod(
            namespace, label_selector=f"{workloads.LABEL_JOB}={label}").items}
        return now if now == expected else None

    wait_for(placed, TIMEOUT_S, lambda: {p.metadata.name: (p.spec.node_name, p.status.phase) for p in
                                        core_v1.list_namespaced_pod(namespace, label_selector=f"{workloads.LABEL_JOB}={label}").items},
             what=f"each replica scheduled on its node {expected}")
    for pod in pods:
        live = core_v1.read_namespaced_pod(pod["metadata"]["name"], namespace)
        node = expected[pod["metadata"]["name"]]
        assert not live.spec.scheduling_gates
        terms = live.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
        assert len(terms) == (2 if user_terms else 1)  # narrowed, never widened
        for term in terms:
            assert [(f.key, f.operator, f.values) for f in term.match_fields] == [("metadata.name", "In", [node])]
            assert bool(term.match_expressions) == user_terms
