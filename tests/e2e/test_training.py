"""Training jobs end to end (issue #16) on the local control plane, with the operator as a subprocess.

- Rendezvous: a 4-replica gang's pods each carry the launcher environment (world size, rank from the
  pod's completion index, MASTER_ADDR naming replica 0 through the job's headless Service), the pods'
  hostname and subdomain make `<job>-<i>.<service>` names, and the EndpointSlice controller publishes
  each replica under its hostname (what cluster DNS answers `MASTER_ADDR` from). The Service goes
  with the ComputeJob. (kwok runs no container, so the environment is checked as the kubelet would
  resolve it: the value, or the field it is read from and that field's value on the pod.)
- Suspend and resume with `kubectl patch`: a running gang's Job, Service and pods go, the pool's free
  count comes back, phase Suspended; resumed, it runs again and succeeds; and the same with the operator
  SIGKILLed while the job is suspended, started again before the resume.
- Retry: kwok fails a gang's pods with exit code 42 in its first two attempts (the pod-fail stage,
  by the pods' suanli.io/attempt label) and lets the third complete: spec.retry {maxAttempts: 3,
  onExitCodes: [42]} ends Succeeded with three attempts listed; a code it does not list fails at once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.helpers import (
    EXPECT_TIMEOUT_S,
    GROUP,
    VERSION,
    Operator,
    centers_fixture,  # noqa: F401  (the `centers` fixture)
    get_center,
    job_status,
    kubectl,
    wait_for_phase,
    workload_gone,
)
from tests.e2e.test_queues import fleet_of_one, job

from suanli.kube import workloads

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


def resolved_env(pod: Any, container: Any) -> dict[str, str]:
    """A container's environment as the kubelet would set it (values, and annotation field references)."""
    out = {}
    for e in container.env or []:
        if e.value_from is not None:
            path = e.value_from.field_ref.field_path  # metadata.annotations['k'] or metadata.labels['k']
            field, _, key = path.removeprefix("metadata.").removesuffix("']").partition("['")
            out[e.name] = (getattr(pod.metadata, field) or {})[key]
        else:
            out[e.name] = e.value
    return out


def test_a_gangs_replicas_find_each_other_through_its_headless_service(
    kube: Any, tmp_path: Any, fake_nodes: Any, centers: Any, namespace: str, core_v1: Any, custom_objects: Any,
    wait_for: Any,
) -> None:
    center, tag = fleet_of_one("e2e-rdv", 4, fake_nodes, centers)
    name = f"gang-{tag}"
    doc = job(name, namespace, center, run="600s")
    doc["spec"]["replicas"] = 4
    doc["spec"]["rendezvous"] = {"port": 23456}
    op = Operator(kube.kubeconfig, tmp_path)
    op.start()
    try:
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)
        wait_for_phase(custom_objects, namespace, name, "Running", what="the gang running")
        workload = f"cj-{name}"
        selector = f"{workloads.LABEL_JOB}={name}"
        pods = core_v1.list_namespaced_pod(namespace, label_selector=selector).items
        assert len(pods) == 4
        indexes = []
        for pod in pods:
            index = pod.metadata.annotations[workloads.COMPLETION_INDEX]
            indexes.append(index)
            assert (pod.spec.hostname, pod.spec.subdomain) == (f"{workload}-{index}", workload)
            (main,) = pod.spec.containers
            env = resolved_env(pod, main)
            assert env["RANK"] == env["SUANLI_REPLICA_INDEX"] == index
            assert env["WORLD_SIZE"] == env["SUANLI_REPLICAS"] == "4"
            assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == (f"{workload}-0.{workload}", "23456")
            assert env["NPROC_PER_NODE"] == env["SUANLI_ACCELERATORS_PER_REPLICA"] == "8"
            assert (env["SUANLI_CENTER"], env["SUANLI_ACCELERATOR_TYPE"], env["SUANLI_ACCELERATOR_MODEL"]) == (
                center["metadata"]["name"], "GPU", "A100")
            assert env["SUANLI_POOL"] == center["spec"]["pools"][0]["name"]
        assert sorted(indexes) == ["0", "1", "2", "3"]

        service = core_v1.read_namespaced_service(workload, namespace)
        assert service.spec.cluster_ip == "None" and service.spec.publish_not_ready_addresses
        assert [r.kind for r in service.metadata.owner_references] == ["Job"]
        # The EndpointSlice controller publishes each replica under its hostname: cluster DNS answers
        # <job>-0.<service> (MASTER_ADDR) with replica 0's address from it.
        by_index = {p.metadata.annotations[workloads.COMPLETION_INDEX]: p for p in pods}

        def published() -> dict[str, list[str]] | None:
            from kubernetes import client as k8s

            slices = k8s.DiscoveryV1Api(core_v1.api_client).list_namespaced_endpoint_slice(
                namespace, label_selector=f"kubernetes.io/service-name={workload}").items
            hosts = {e.hostname: e.addresses for s in slices for e in s.endpoints or []}
            return hosts if len(hosts) == 4 else None

        hosts = wait_for(published, EXPECT_TIMEOUT_S, "the EndpointSlices of the gang's Service")
        for index, pod in by_index.items():
            assert hosts[f"{workload}-{index}"] == [pod.status.pod_ip], (index, hosts)

        custom_objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", name)
        wait_for(lambda: not core_v1.list_namespaced_service(
            namespace, field_selector=f"metadata.name={workload}").items or None,
            EXPECT_TIMEOUT_S, "the Service gone with the ComputeJob")
    finally:
        op.stop()


def pool_free(custom_objects: Any, center: dict[str, Any]) -> int | None:
    pools = (get_center(custom_objects, center["metadata"]["name"]).get("status") or {}).get("pools") or []
    return int(pools[0]["free"]) if pools else None


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restart-while-suspended"])
def test_suspend_stops_a_running_gang_and_resume_runs_it_to_success(
    restart: bool, kube: Any, tmp_path: Any, fake_nodes: Any, centers: Any, namespace: str, core_v1: Any,
    batch_v1: Any, custom_objects: Any, wait_for: Any,
) -> None:
    center, tag = fleet_of_one("e2e-sus", 2, fake_nodes, centers)
    name = f"pause-{tag}"
    doc = job(name, namespace, center, run="20s")
    doc["spec"]["replicas"] = 2
    op = Operator(kube.kubeconfig, tmp_path)
    op.start()
    try:
        wait_for(lambda: pool_free(custom_objects, center) == 16 or None, EXPECT_TIMEOUT_S, "the pool's 16 GPUs free")
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)
        wait_for_phase(custom_objects, namespace, name, "Running", what="the gang running")
        assert pool_free(custom_objects, center) is not None
        assert core_v1.read_namespaced_service(f"cj-{name}", namespace).spec.cluster_ip == "None"

        patch = json.dumps({"spec": {"suspend": True}})
        asked = time.monotonic()
        kubectl(kube.kubeconfig, "-n", namespace, "patch", "computejob", name, "--type=merge", "-p", patch).check_returncode()
        wait_for_phase(custom_objects, namespace, name, "Suspended", what="the job suspended")
        status = job_status(custom_objects, namespace, name)
        wait_for(lambda: workload_gone(batch_v1, core_v1, namespace, name) or None, EXPECT_TIMEOUT_S,
                 "the Job and its pods gone")
        wait_for(lambda: not core_v1.list_namespaced_service(namespace, field_selector=f"metadata.name=cj-{name}").items
                 or None, EXPECT_TIMEOUT_S, "the Service gone with the Job")
        suspended_in = time.monotonic() - asked
        assert status["suspensions"] == 1 and status.get("binding") is None, status
        assert [a["outcome"] for a in status["attempts"]] == ["Suspended"]
        assert [c["type"] for c in status["conditions"]] == ["Suspended"]
        wait_for(lambda: pool_free(custom_objects, center) == 16 or None, EXPECT_TIMEOUT_S,
                 lambda: get_center(custom_objects, center["metadata"]["name"]).get("status"),
                 what="the pool's free count restored")
        assert suspended_in < 30, f"suspending took {suspended_in:.1f}s"

        if restart:
            op.kill()
            op.start()
            # Restarted, it still leaves the job alone: suspended, nothing made for it.
            wait_for(lambda: "suanli_jobs{" in op.metrics() or None, EXPECT_TIMEOUT_S, "the restarted operator's gauges")
            assert job_status(custom_objects, namespace, name)["phase"] == "Suspended"
            assert workload_gone(batch_v1, core_v1, namespace, name)

        resume = json.dumps({"spec": {"suspend": False}})
        kubectl(kube.kubeconfig, "-n", namespace, "patch", "computejob", name, "--type=merge", "-p", resume).check_returncode()
        wait_for_phase(custom_objects, namespace, name, *("Bound", "Running", "Succeeded"), what="the job resumed")
        wait_for_phase(custom_objects, namespace, name, "Succeeded", what="the resumed job to succeed")
        final = job_status(custom_objects, namespace, name)
        assert final["suspensions"] == 1 and not final.get("requeues")
        assert [(a["attempt"], a["outcome"]) for a in final["attempts"]] == [(0, "Suspended"), (1, "Succeeded")]
        assert [a["reason"] for a in final.get("endedAttempts") or []] == ["Suspended"]
        assert " 403 " not in op.log_text()
    finally:
        op.stop()


def failing_job(name: str, ns: str, center: dict[str, Any], code: int, attempts: str) -> dict[str, Any]:
    doc = job(name, ns, center, run="2s")
    doc["spec"]["replicas"] = 2
    doc["spec"]["template"]["metadata"]["annotations"].update({
        "pod-fail.stage.kwok.x-k8s.io/delay": "2s",
        "pod-fail.stage.kwok.x-k8s.io/exit-code": str(code),
        "pod-fail.stage.kwok.x-k8s.io/attempts": attempts,
    })
    doc["spec"]["retry"] = {"maxAttempts": 3, "onExitCodes": [42]}
    return doc


def test_a_listed_exit_code_runs_the_gang_again_until_it_succeeds_and_another_fails_it(
    kube: Any, tmp_path: Path, fake_nodes: Any, centers: Any, namespace: str, custom_objects: Any, wait_for: Any,
) -> None:
    center, tag = fleet_of_one("e2e-retry", 2, fake_nodes, centers)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"operator": {"requeue_backoff_seconds": 1, "requeue_backoff_max_seconds": 2}}))
    op = Operator(kube.kubeconfig, tmp_path, ["--config", str(config)])
    op.start()
    try:
        flaky, broken = f"flaky-{tag}", f"broken-{tag}"
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                       failing_job(flaky, namespace, center, 42, "0,1"))
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                       failing_job(broken, namespace, center, 3, "0,1,2"))
        wait_for_phase(custom_objects, namespace, broken, "Failed", what="the job failing with a code not listed")
        failed = job_status(custom_objects, namespace, broken)
        assert "exited with code 3" in failed["message"] and "not an exit code spec.retry retries" in failed["message"]
        assert [(a["outcome"], a.get("exitCode")) for a in failed["attempts"]] == [("Failed", 3)]

        wait_for_phase(custom_objects, namespace, flaky, "Succeeded", what="the flaky job, after two retries")
        done = job_status(custom_objects, namespace, flaky)
        assert [(a["attempt"], a["outcome"], a.get("exitCode")) for a in done["attempts"]] == [
            (0, "Retried", 42), (1, "Retried", 42), (2, "Succeeded", None)], done["attempts"]
        assert done["retries"] == 2 and not done.get("requeues")
        assert all(a["center"] == center["metadata"]["name"] for a in done["attempts"])
        assert " 403 " not in op.log_text()
    finally:
        op.stop()
