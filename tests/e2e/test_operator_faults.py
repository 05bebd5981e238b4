"""Faults during a job's life on the local control plane: nothing stays stuck, nothing runs twice.

- A Running job whose batch Job is deleted goes back to the queue and runs again (before: it stayed
  Running forever and held its accelerators).
- A node deleted under a running gang: the gang is requeued and reruns on another node.
- A gang whose pods can never start is requeued at the pods-ready timeout, and Failed with the
  reason once it has used its attempts (before: Bound forever).
- A ComputeJob deleted and recreated under the same name gets a Job of its own, never its
  predecessor's.

The operator runs with short timeouts (`operator.pods_ready_timeout_seconds`, backoffs) from a
config file, as a platform team would set them. Every wait has a deadline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from tests.e2e.helpers import (
    EXPECT_TIMEOUT_S,
    GROUP,
    VERSION,
    Operator,
    assert_ran_in_bound_pool,
    centers_fixture,  # noqa: F401  (the `centers` fixture)
    compute_job,
    get_job,
    job_status,
    only_on,
    small_center,
    wait_for_phase,
)

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

SETTINGS = {
    "operator": {
        "pods_ready_timeout_seconds": 8,
        "requeue_limit": 3,
        "requeue_backoff_seconds": 1,
        "requeue_backoff_max_seconds": 2,
        "retry_seconds": 0.5,
        "resync_seconds": 5,
    }
}


@pytest.fixture
def operator(kube: Any, tmp_path: Path) -> Any:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(SETTINGS))
    op = Operator(kube.kubeconfig, tmp_path, ["--config", str(config)])
    op.start()
    yield op
    op.stop()


def long_job(name: str, ns: str, seconds: int, count: int = 8, center: dict[str, Any] | None = None) -> dict[str, Any]:
    """A job whose kwok pods run `seconds`, acceptable to `center` alone (see `only_on`)."""
    doc = compute_job(name, ns, count=count, annotations={
        "pod-complete.stage.kwok.x-k8s.io/delay": f"{seconds}s",
        "pod-complete.stage.kwok.x-k8s.io/jitter-delay": f"{seconds}s",
    })
    if center is not None:
        only_on(center, doc)
    return doc


def center_alone(fake_nodes: Any, centers: Any, name: str, nodes: int = 1) -> tuple[dict[str, Any], list[str]]:
    """A one-pool center of `nodes` kwok nodes, in a region of its own (only its jobs go there): the
    center and its node names."""
    center = small_center(name, nodes_expected=nodes)
    only_on(center)
    names = fake_nodes(center, nodes_per_pool=nodes)
    centers([center])
    return center, names


def batch_jobs(batch_v1: Any, ns: str, name: str) -> list[Any]:
    return batch_v1.list_namespaced_job(ns, label_selector=f"suanli.io/job={name}").items


def test_a_running_jobs_deleted_batch_job_sends_it_back_and_it_runs_again(
    kube, operator, fake_nodes, centers, namespace, custom_objects, batch_v1, wait_for
):
    center, _ = center_alone(fake_nodes, centers, "faults-jobdel")
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", long_job("j", namespace, 15, center=center))
    wait_for_phase(custom_objects, namespace, "j", "Running", what="j to be Running")
    (first,) = batch_jobs(batch_v1, namespace, "j")
    batch_v1.delete_namespaced_job(first.metadata.name, namespace, propagation_policy="Background")

    def requeued() -> dict[str, Any] | None:
        status = job_status(custom_objects, namespace, "j")
        return status if status.get("requeues") == 1 else None

    status = wait_for(requeued, EXPECT_TIMEOUT_S, lambda: job_status(custom_objects, namespace, "j"),
                      what="the job to be requeued once")
    wait_for_phase(custom_objects, namespace, "j", "Succeeded", what="j to be Succeeded")
    final = job_status(custom_objects, namespace, "j")
    assert final["requeues"] == 1 and [a["outcome"] for a in final["attempts"]] == ["Requeued", "Succeeded"], final
    (again,) = batch_jobs(batch_v1, namespace, "j")
    assert again.metadata.uid != first.metadata.uid
    assert again.metadata.labels["suanli.io/attempt"] == "1"
    assert status  # the requeue was observed before success
    assert_ran_in_bound_pool(kube, namespace, "j")


@pytest.mark.timeout(600)  # the pod GC's quarantine, then a whole second run
def test_a_node_lost_under_a_running_gang_reruns_it_on_another_node(
    kube, operator, fake_nodes, centers, namespace, custom_objects, core_v1, wait_for
):
    center, names = center_alone(fake_nodes, centers, "faults-node", nodes=2)
    # The pod GC deletes pods of a deleted node after 40-60 s (its quarantine for orphans; 74 s was seen
    # on a loaded 2-core machine), marking them DisruptionTarget: the pods must still be running then, or
    # kwok completes them first and nothing is lost. Hence a run of twice the longest quarantine seen.
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", long_job("g", namespace, 150, center=center))
    wait_for_phase(custom_objects, namespace, "g", "Running", what="g to be Running")
    pods = core_v1.list_namespaced_pod(namespace, label_selector="suanli.io/job=g").items
    (lost,) = {p.spec.node_name for p in pods}
    core_v1.delete_node(lost)
    (other,) = set(names) - {lost}

    def rerun() -> dict[str, Any] | None:
        status = job_status(custom_objects, namespace, "g")
        return status if status.get("requeues") == 1 and status.get("phase") == "Succeeded" else None

    final = wait_for(rerun, EXPECT_TIMEOUT_S * 4, lambda: job_status(custom_objects, namespace, "g"),
                     what=f"the gang to rerun on {other} after {lost} was deleted, and succeed")
    assert final["binding"]["nodes"] == [other]


def test_a_gang_whose_pods_never_start_is_requeued_then_failed_with_the_reason(
    kube, operator, fake_nodes, centers, namespace, custom_objects, batch_v1, wait_for
):
    center, _ = center_alone(fake_nodes, centers, "faults-ready")
    doc = long_job("stuck", namespace, 5, count=1, center=center)
    doc["spec"]["template"]["spec"]["nodeSelector"] = {"example.com/no-such-label": "x"}  # no node will do
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)
    wait_for_phase(custom_objects, namespace, "stuck", "Failed", what="stuck to be Failed")
    status = job_status(custom_objects, namespace, "stuck")
    assert status["requeues"] == SETTINGS["operator"]["requeue_limit"], status
    assert [a["outcome"] for a in status["attempts"]] == ["Requeued"] * (status["requeues"] - 1) + ["Failed"]
    assert "running 8s after it was bound" in status["message"], status["message"]
    assert [c["reason"] for c in status["conditions"]] == ["RequeueLimitReached"]

    def no_jobs_left() -> bool:
        return not [j for j in batch_jobs(batch_v1, namespace, "stuck") if not j.metadata.deletion_timestamp]

    wait_for(no_jobs_left, EXPECT_TIMEOUT_S, lambda: batch_jobs(batch_v1, namespace, "stuck"),
             what="the failed job's batch Job to be deleted")


def test_a_job_recreated_under_its_name_gets_its_own_batch_job(
    kube, operator, fake_nodes, centers, namespace, custom_objects, batch_v1, wait_for
):
    center, _ = center_alone(fake_nodes, centers, "faults-recreate")
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", long_job("r", namespace, 30, center=center))
    wait_for_phase(custom_objects, namespace, "r", "Running", what="r to be Running")
    old_uid = get_job(custom_objects, namespace, "r")["metadata"]["uid"]
    custom_objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", "r",
                                                   propagation_policy="Background")

    def recreated() -> bool:
        try:
            custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                           long_job("r", namespace, 3, center=center))
        except ApiException as exc:
            if exc.status == 409:
                return False  # the old one is still being deleted
            raise
        return True

    wait_for(recreated, EXPECT_TIMEOUT_S, "the ComputeJob to be recreated under its name")
    new_uid = get_job(custom_objects, namespace, "r")["metadata"]["uid"]
    assert new_uid != old_uid
    wait_for_phase(custom_objects, namespace, "r", "Succeeded", what="r to be Succeeded")
    (job,) = batch_jobs(batch_v1, namespace, "r")
    assert [ref.uid for ref in job.metadata.owner_references] == [new_uid]
    assert job.metadata.labels["suanli.io/job-uid"] == new_uid
    final = job_status(custom_objects, namespace, "r")
    assert not final.get("requeues") and [a["outcome"] for a in final["attempts"]] == ["Succeeded"], final
