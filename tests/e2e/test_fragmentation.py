"""Gang placement that kube-scheduler honours, end to end: the fragmentation scenario.

One pool of two kwok nodes with 8 GPUs each, and three gangs bound in one scheduling cycle (they
exist before the operator starts): 1x4, 1x4, then 1x8. The capacity ledger packs the two 4s on one
node and gives the 8 the other; kube-scheduler's default profile (NodeResourcesFit LeastAllocated)
spreads pods by their CPU and memory requests (the pods ask for CPUs in proportion to their GPUs):
the second 4 goes to the emptier node whenever it is scheduled before the 8, and the 8 is left
Pending until one of them finishes, while Suanli reports it Bound. With the pods gated and pinned to the nodes of `status.binding.nodes`
before the gate is lifted, every gang runs at once, on the nodes its status names, within seconds.
(Without the gate, the 8 strands: see the report of the change that added this test.)
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from tests.e2e.helpers import (
    GROUP,
    VERSION,
    Operator,
    centers_fixture,  # noqa: F401  (the `centers` fixture)
    compute_job,
    job_phases,
    only_on,
    small_center,
    stop_and_clean_up,
)

from suanli.kube import workloads

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

GANGS = (("a-four", 4), ("b-four", 4), ("c-eight", 8))  # queue order: arrival, then name
RUN_S = "45s"  # every pod runs this long: longer than the deadline below, so a stranded gang shows
RUNNING_DEADLINE_S = 30.0  # from the operator's start to every gang Running on its nodes
CPUS_PER_GPU = 8  # of the kwok nodes' 128


def test_gangs_run_on_the_nodes_their_status_names_and_none_strands(
    kube: Any, fake_nodes: Any, centers: Any, namespace: str, custom_objects: Any, core_v1: Any, wait_for: Any,
    tmp_path: Any,
) -> None:
    name = f"e2e-frag-{uuid.uuid4().hex[:5]}"
    doc = small_center(name, nodes_expected=2, per_node=8)
    only_on(doc)  # and each job below: other tests' centers never take them
    nodes = fake_nodes(doc, nodes_per_pool=2)
    centers([doc])
    for job, count in GANGS:
        cj = compute_job(job, namespace, replicas=1, count=count, annotations={
            "pod-complete.stage.kwok.x-k8s.io/delay": RUN_S, "pod-complete.stage.kwok.x-k8s.io/jitter-delay": RUN_S})
        # CPUs in proportion to the accelerators, as training pods ask: what kube-scheduler's default
        # scoring (LeastAllocated on cpu and memory) spreads by. (Without requests its scores tie on
        # the kwok nodes' 128 CPUs and 1 TiB, and it places at random instead of spreading.)
        cj["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": str(CPUS_PER_GPU * count)}}
        only_on(doc, cj)
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", cj)
    op = Operator(kube.kubeconfig, tmp_path)
    op.start()  # after the jobs exist: the first cycle binds all three
    started = time.monotonic()
    try:
        def pods_by_job() -> dict[str, list[Any]]:
            out: dict[str, list[Any]] = {job: [] for job, _ in GANGS}
            for pod in core_v1.list_namespaced_pod(namespace, label_selector=workloads.LABEL_JOB).items:
                out.setdefault(pod.metadata.labels[workloads.LABEL_JOB], []).append(pod)
            return out

        def state() -> dict[str, Any]:
            statuses = {i["metadata"]["name"]: i.get("status") or {} for i in custom_objects.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "computejobs")["items"]}
            return {
                job: {
                    "phase": statuses.get(job, {}).get("phase"),
                    "nodes": (statuses.get(job, {}).get("binding") or {}).get("nodes"),
                    "pods": [(p.metadata.name, p.spec.node_name, p.status.phase, bool(p.spec.scheduling_gates))
                             for p in pods],
                }
                for job, pods in pods_by_job().items()
            }

        def all_running_where_bound() -> dict[str, Any] | None:
            now = state()
            for entry in now.values():
                pods = entry["pods"]
                if entry["phase"] not in ("Bound", "Running") or not entry["nodes"] or len(pods) != 1:
                    return None
                (_, node, phase, gated) = pods[0]
                if gated or phase != "Running" or node != entry["nodes"][0]:
                    return None
            return now

        final = wait_for(all_running_where_bound, RUNNING_DEADLINE_S, state,
                         what="every gang Running at once, on the node its status.binding.nodes names")
        took = time.monotonic() - started
        # The ledger's decision, carried out: the two 4s share a node and the 8 has the other to itself.
        placed = {job: entry["nodes"][0] for job, entry in final.items()}
        assert placed["a-four"] == placed["b-four"] != placed["c-eight"], placed
        assert set(placed.values()) == set(nodes)
        # Every pod is pinned to that node by name (required node affinity), its gate lifted.
        for job, pods in pods_by_job().items():
            for pod in pods:
                affinity = pod.spec.affinity
                required = (affinity.node_affinity.required_during_scheduling_ignored_during_execution
                            if affinity is not None and affinity.node_affinity is not None else None)
                assert required is not None, f"pod {pod.metadata.name} of {job} is not pinned to a node"
                assert [[(f.key, f.values) for f in t.match_fields] for t in required.node_selector_terms] == [
                    [("metadata.name", [placed[job]])]]
        phases = job_phases(custom_objects, namespace)
        assert "Queued" not in phases.values(), phases
    finally:
        stop_and_clean_up(op, custom_objects, namespace, [name])
    print(f"all three gangs Running on their nodes {took:.1f}s after the operator started: {placed}")
