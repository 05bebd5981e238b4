"""Real kube-scheduler, Job controller and garbage collector driving pods on kwok's fake NPU nodes.

Each test gets its own namespace and its own fake ComputeCenter pool (unique node
selector), so tests do not see each other's nodes or pods.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.cluster

NPU = "huawei.com/Ascend910"
NPUS_PER_NODE = 8
COMPLETE_DELAY = "pod-complete.stage.kwok.x-k8s.io/delay"
COMPLETE_JITTER = "pod-complete.stage.kwok.x-k8s.io/jitter-delay"
FAIL_DELAY = "pod-fail.stage.kwok.x-k8s.io/delay"
FAIL_JITTER = "pod-fail.stage.kwok.x-k8s.io/jitter-delay"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
TIMEOUT_S = 60


def npu_center() -> dict[str, Any]:
    """A ComputeCenter (as read from YAML) with one Ascend pool whose node selector is unique to the test."""
    name = f"it-{uuid.uuid4().hex[:6]}"
    return {
        "apiVersion": "suanli.io/v1alpha1",
        "kind": "ComputeCenter",
        "metadata": {"name": name},
        "spec": {
            "region": "cn-guizhou",
            "pools": [
                {
                    "name": "ascend-910b",
                    "acceleratorType": "NPU",
                    "model": "Ascend910B",
                    "resourceName": NPU,
                    "nodeSelector": {"suanli.io/pool": f"{name}-ascend-910b"},
                    "tolerations": [{"key": NPU, "operator": "Exists", "effect": "NoSchedule"}],
                    "memoryGiB": 64,
                    "expected": {"nodes": 16, "acceleratorsPerNode": NPUS_PER_NODE},
                }
            ],
        },
    }


def npu_job(name: str, pool: dict[str, Any], npus: int, annotations: dict[str, str]) -> dict[str, Any]:
    """A Job placed like the operator places one: the pool's selector, toleration and resource."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": pool["nodeSelector"],
                    "tolerations": pool["tolerations"],
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.example.com/suanli/noop:1",
                            "resources": {"limits": {pool["resourceName"]: str(npus)}},
                        }
                    ],
                },
            },
        },
    }


def job_condition(batch_v1: Any, namespace: str, name: str, kind: str) -> Any:
    job = batch_v1.read_namespaced_job(name, namespace)
    return next((c for c in job.status.conditions or [] if c.type == kind and c.status == "True"), None)


def job_pods(core_v1: Any, namespace: str, name: str) -> list[Any]:
    return core_v1.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={name}").items


def describe_pods(core_v1: Any, namespace: str, name: str) -> str:
    return (
        "; ".join(
            f"{p.metadata.name} phase={p.status.phase} node={p.spec.node_name} "
            f"conditions={[(c.type, c.status, c.reason) for c in p.status.conditions or []]}"
            for p in job_pods(core_v1, namespace, name)
        )
        or "no pods"
    )


def describe_job(batch_v1: Any, core_v1: Any, namespace: str, name: str) -> str:
    job = batch_v1.read_namespaced_job(name, namespace)
    conditions = [(c.type, c.status, c.reason) for c in job.status.conditions or []]
    return f"job conditions={conditions} active={job.status.active}; pods: {describe_pods(core_v1, namespace, name)}"


def test_npu_job_is_scheduled_on_a_fake_npu_node_and_completes_after_its_delay(
    core_v1: Any, batch_v1: Any, namespace: str, fake_nodes: Any, wait_for: Any
) -> None:
    center = npu_center()
    pool = center["spec"]["pools"][0]
    nodes = fake_nodes(center, nodes_per_pool=1)
    batch_v1.create_namespaced_job(
        namespace, npu_job("train", pool, NPUS_PER_NODE, {COMPLETE_DELAY: "2s", COMPLETE_JITTER: "2s"})
    )

    wait_for(
        lambda: job_condition(batch_v1, namespace, "train", "Complete"),
        TIMEOUT_S,
        lambda: describe_job(batch_v1, core_v1, namespace, "train"),
        what="Job train to complete",
    )
    [pod] = job_pods(core_v1, namespace, "train")
    assert pod.spec.node_name == nodes[0]
    assert pod.status.phase == "Succeeded"
    scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert scheduled.status == "True"
    [state] = [s.state.terminated for s in pod.status.container_statuses]
    assert state.exit_code == 0 and state.reason == "Completed"
    ran_for = (state.finished_at - pod.status.start_time).total_seconds()
    assert ran_for >= 2, f"pod ran {ran_for}s, expected at least the annotated 2s"


def test_job_wanting_more_accelerators_than_any_node_has_stays_unschedulable(
    core_v1: Any, batch_v1: Any, namespace: str, fake_nodes: Any, wait_for: Any
) -> None:
    center = npu_center()
    pool = center["spec"]["pools"][0]
    fake_nodes(center, nodes_per_pool=2)
    batch_v1.create_namespaced_job(
        namespace, npu_job("too-big", pool, NPUS_PER_NODE + 1, {COMPLETE_DELAY: "1s"})
    )

    def unschedulable() -> Any:
        pods = job_pods(core_v1, namespace, "too-big")
        conditions = [c for p in pods for c in p.status.conditions or []]
        return next(
            (
                c
                for c in conditions
                if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
            ),
            None,
        )

    condition = wait_for(
        unschedulable,
        TIMEOUT_S,
        lambda: describe_pods(core_v1, namespace, "too-big"),
        what="the scheduler to report the pod Unschedulable",
    )
    assert f"Insufficient {NPU}" in condition.message
    [pod] = job_pods(core_v1, namespace, "too-big")
    assert pod.status.phase == "Pending" and not pod.spec.node_name


def test_pod_annotated_to_fail_fails_and_fails_its_job(
    core_v1: Any, batch_v1: Any, namespace: str, fake_nodes: Any, wait_for: Any
) -> None:
    center = npu_center()
    pool = center["spec"]["pools"][0]
    fake_nodes(center, nodes_per_pool=1)
    batch_v1.create_namespaced_job(
        namespace, npu_job("doomed", pool, 4, {FAIL_DELAY: "1s", FAIL_JITTER: "1s"})
    )

    failed = wait_for(
        lambda: job_condition(batch_v1, namespace, "doomed", "Failed"),
        TIMEOUT_S,
        lambda: describe_job(batch_v1, core_v1, namespace, "doomed"),
        what="Job doomed to get a Failed condition",
    )
    assert failed.reason == "BackoffLimitExceeded"
    [pod] = job_pods(core_v1, namespace, "doomed")
    assert pod.status.phase == "Failed"
    [state] = [s.state.terminated for s in pod.status.container_statuses]
    assert state.exit_code == 1 and state.reason == "Error"
    assert "pod-fail" in state.message


def test_deleting_a_job_in_background_garbage_collects_its_pods(
    core_v1: Any, batch_v1: Any, namespace: str, fake_nodes: Any, wait_for: Any
) -> None:
    center = npu_center()
    pool = center["spec"]["pools"][0]
    fake_nodes(center, nodes_per_pool=1)
    job = npu_job("long", pool, 8, {COMPLETE_DELAY: "1h"})
    batch_v1.create_namespaced_job(namespace, job)
    wait_for(
        lambda: [p for p in job_pods(core_v1, namespace, "long") if p.status.phase == "Running"],
        TIMEOUT_S,
        lambda: describe_pods(core_v1, namespace, "long"),
        what="the Job's pod to run on the fake node",
    )
    [pod] = job_pods(core_v1, namespace, "long")
    assert pod.metadata.owner_references[0].kind == "Job"

    started = dt.datetime.now(dt.UTC)
    batch_v1.delete_namespaced_job("long", namespace, propagation_policy="Background")
    wait_for(
        lambda: not job_pods(core_v1, namespace, "long"),
        TIMEOUT_S,
        lambda: describe_pods(core_v1, namespace, "long"),
        what=f"the garbage collector to delete the pods of Job long (deleted at {started:%H:%M:%S})",
    )


def bare_pod(name: str, pool: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    job = npu_job(name, pool, 1, annotations)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **job["spec"]["template"]["metadata"]},
        "spec": job["spec"]["template"]["spec"],
    }


def test_bare_pod_completes_only_when_annotated(
    core_v1: Any, namespace: str, fake_nodes: Any, wait_for: Any
) -> None:
    center = npu_center()
    pool = center["spec"]["pools"][0]
    fake_nodes(center, nodes_per_pool=1)
    # Were the plain pod wrongly matched by pod-complete, kwok's default 1s would end it
    # before the annotated pod's 3s.
    core_v1.create_namespaced_pod(namespace, bare_pod("annotated", pool, {COMPLETE_DELAY: "3s"}))
    core_v1.create_namespaced_pod(namespace, bare_pod("plain", pool, {}))

    def phases() -> dict[str, str]:
        return {p.metadata.name: p.status.phase for p in core_v1.list_namespaced_pod(namespace).items}

    wait_for(
        lambda: phases().get("annotated") == "Succeeded",
        TIMEOUT_S,
        phases,
        what="the annotated pod to succeed",
    )
    assert phases()["plain"] == "Running"
