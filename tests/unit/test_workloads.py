"""The batch Job built for a bound ComputeJob: names, labels, owner, resources, pool placement."""

from __future__ import annotations

import copy

import pytest

from suanli.kube import workloads

CJ = {
    "apiVersion": "suanli.io/v1alpha1",
    "kind": "ComputeJob",
    "metadata": {"name": "llm-finetune", "namespace": "team-a", "uid": "u-1"},
    "spec": {
        "replicas": 2,
        "accelerators": {"count": 8, "types": ["GPU", "NPU"]},
        "images": {"GPU": "img:cuda", "NPU": "img:cann"},
        "template": {
            "metadata": {"annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": "3s"}},
            "spec": {
                "containers": [{"name": "sidecar", "image": "busybox"}, {"name": "main", "command": ["train"]}],
                "nodeSelector": {"disk": "ssd"},
            },
        },
    },
}


def build(cj=CJ, **kw):
    args = dict(
        center="guian-ai",
        pool="ascend-910b",
        accelerator_type="NPU",
        resource_name="huawei.com/Ascend910",
        node_selector={"suanli.io/pool": "guian-ai-ascend-910b"},
        tolerations=[{"key": "huawei.com/Ascend910", "operator": "Exists", "effect": "NoSchedule"}],
    )
    args.update(kw)
    return workloads.build_job(cj, **args)


def test_job_is_indexed_gang_owned_by_the_compute_job():
    job = build()
    assert job["metadata"]["name"] == "cj-llm-finetune"
    assert job["metadata"]["namespace"] == "team-a"
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == ("Indexed", 2, 2, 0)
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "suanli.io/v1alpha1",
        "kind": "ComputeJob",
        "name": "llm-finetune",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert workloads.owned_by(job, "u-1") and not workloads.owned_by(job, "other")


def test_main_container_gets_image_and_accelerators_as_request_and_limit():
    pod = build()["spec"]["template"]["spec"]
    sidecar, main = pod["containers"]
    assert sidecar == {"name": "sidecar", "image": "busybox"}
    assert main["image"] == "img:cann"
    assert main["resources"] == {
        "requests": {"huawei.com/Ascend910": "8"},
        "limits": {"huawei.com/Ascend910": "8"},
    }


def test_first_container_is_main_when_none_is_named_main():
    cj = copy.deepcopy(CJ)
    cj["spec"]["template"]["spec"]["containers"] = [{"name": "trainer"}]
    main = build(cj, accelerator_type="GPU", resource_name="nvidia.com/gpu")["spec"]["template"]["spec"]["containers"][0]
    assert main["image"] == "img:cuda"
    assert main["resources"]["limits"] == {"nvidia.com/gpu": "8"}


def test_pool_selector_tolerations_labels_and_annotations_are_merged():
    job = build()
    tmpl = job["spec"]["template"]
    assert tmpl["spec"]["nodeSelector"] == {"disk": "ssd", "suanli.io/pool": "guian-ai-ascend-910b"}
    assert tmpl["spec"]["tolerations"] == [{"key": "huawei.com/Ascend910", "operator": "Exists", "effect": "NoSchedule"}]
    assert tmpl["spec"]["restartPolicy"] == "Never"
    labels = {
        "suanli.io/job": "llm-finetune",
        "suanli.io/center": "guian-ai",
        "suanli.io/pool": "ascend-910b",
        "suanli.io/job-uid": "u-1",
        "suanli.io/attempt": "0",
    }
    assert job["metadata"]["labels"] == labels
    assert tmpl["metadata"]["labels"] == labels
    assert tmpl["metadata"]["annotations"] == {"pod-complete.stage.kwok.x-k8s.io/delay": "3s"}
    assert "resources" not in CJ["spec"]["template"]["spec"]["containers"][1], "the input must not be modified"


@pytest.mark.parametrize("length", [1, 49, 50, 80, 253])
def test_names_are_deterministic_and_short_enough(length):
    name = "a" * length
    assert workloads.job_name(name) == workloads.job_name(name)
    assert len(workloads.job_name(name)) <= workloads.MAX_JOB_NAME
    assert len(workloads.label_value(name)) <= 63
    if length > 60:
        assert workloads.job_name(name) != workloads.job_name(name[:-1] + "b")


def test_the_attempt_is_labelled_and_disruptions_fail_the_job_through_its_pod_failure_policy():
    job = workloads.build_job(
        CJ, center="guian-ai", pool="ascend-910b", accelerator_type="NPU", resource_name="huawei.com/Ascend910",
        node_selector={}, tolerations=[], attempt=3,
    )
    assert job["metadata"]["labels"]["suanli.io/attempt"] == "3"
    assert job["spec"]["template"]["metadata"]["labels"]["suanli.io/attempt"] == "3"
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules == [{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]


def test_on_failure_restarts_get_no_pod_failure_policy():
    cj = {**CJ, "spec": {**CJ["spec"], "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main"}]}}}}
    job = workloads.build_job(
        cj, center="guian-ai", pool="ascend-910b", accelerator_type="NPU", resource_name="huawei.com/Ascend910",
        node_selector={}, tolerations=[],
    )
    assert "podFailurePolicy" not in job["spec"]  # the API refuses it unless restartPolicy is Never


@pytest.mark.parametrize(
    ("template_gates", "expected"),
    [
        (None, [{"name": workloads.GATE}]),
        ([{"name": "example.com/quota"}], [{"name": "example.com/quota"}, {"name": workloads.GATE}]),
        ([{"name": workloads.GATE}], [{"name": workloads.GATE}]),  # never twice
    ],
    ids=["none", "the user's kept", "already there"],
)
def test_pods_are_created_gated_until_each_is_pinned_to_its_node(template_gates, expected):
    cj = copy.deepcopy(CJ)
    if template_gates is not None:
        cj["spec"]["template"]["spec"]["schedulingGates"] = template_gates
    job = build(cj)
    assert job["spec"]["template"]["spec"]["schedulingGates"] == expected
    assert "schedulingGates" not in (CJ["spec"]["template"]["spec"])  # the ComputeJob is not changed
