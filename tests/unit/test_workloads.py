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
    assert {k: v for k, v in sidecar.items() if k != "env"} == {"name": "sidecar", "image": "busybox"}
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


def test_every_container_gets_the_launcher_environment_and_a_gang_its_subdomain():
    cj = copy.deepcopy(CJ)
    cj["spec"]["replicas"] = 4
    cj["spec"]["rendezvous"] = {"port": 23456}
    cj["spec"]["template"]["spec"]["initContainers"] = [{"name": "fetch"}]
    cj["spec"]["template"]["spec"]["containers"][1]["env"] = [{"name": "MASTER_PORT", "value": "1"}]
    pod = build(cj, accelerator_model="Ascend910B")["spec"]["template"]["spec"]
    assert pod["subdomain"] == "cj-llm-finetune"
    index = {"valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}
    want = {
        "WORLD_SIZE": {"value": "4"}, "SUANLI_REPLICAS": {"value": "4"}, "RANK": index, "SUANLI_REPLICA_INDEX": index,
        "MASTER_ADDR": {"value": "cj-llm-finetune-0.cj-llm-finetune"}, "MASTER_PORT": {"value": "23456"},
        "NPROC_PER_NODE": {"value": "8"}, "SUANLI_ACCELERATORS_PER_REPLICA": {"value": "8"},
        "SUANLI_CENTER": {"value": "guian-ai"}, "SUANLI_POOL": {"value": "ascend-910b"},
        "SUANLI_ACCELERATOR_TYPE": {"value": "NPU"}, "SUANLI_ACCELERATOR_MODEL": {"value": "Ascend910B"},
    }
    assert set(want) == set(workloads.ENV_DOC)
    # An Ascend NPU job also gets MindSpore's dynamic-networking variables (msrun reads them).
    want.update({
        "MS_SCHED_HOST": {"value": "cj-llm-finetune-0.cj-llm-finetune"}, "MS_SCHED_PORT": {"value": "23456"},
        "MS_WORKER_NUM": {"value": "32"}, "MS_LOCAL_WORKER": {"value": "8"}, "MS_NODE_RANK": index,
        "MS_SERVER_NUM": {"value": "0"},
    })
    assert set(want) == set(workloads.ENV_DOC) | set(workloads.STACK_ENV_DOC["NPU"])
    sidecar, main = pod["containers"]
    (init,) = pod["initContainers"]
    for container in (sidecar, init):
        assert {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in container["env"]} == want
    # a variable the template sets is left as the user wrote it, and not given twice
    assert [e for e in main["env"] if e["name"] == "MASTER_PORT"] == [{"name": "MASTER_PORT", "value": "1"}]
    assert len(main["env"]) == len(want)


@pytest.mark.parametrize("accelerator_type", ["GPU", "DCU", "MLU"])
def test_other_stacks_get_the_torchrun_variables_alone_and_nobody_gets_visible_devices(accelerator_type):
    cj = copy.deepcopy(CJ)
    cj["spec"]["images"] = {accelerator_type: "img"}
    pod = build(cj, accelerator_type=accelerator_type, resource_name="x.example.com/accel")["spec"]["template"]["spec"]
    names = {e["name"] for e in pod["containers"][1]["env"]}
    assert names == set(workloads.ENV_DOC)
    assert accelerator_type not in workloads.STACK_ENV_DOC
    npu = {e["name"] for e in build(CJ)["spec"]["template"]["spec"]["containers"][1]["env"]}
    assert not [n for n in names | npu if n.endswith("VISIBLE_DEVICES")]  # the device plugin's (or DRA driver's)


def test_one_replica_has_no_subdomain_and_its_master_is_its_own_host_name():
    cj = copy.deepcopy(CJ)
    cj["spec"]["replicas"] = 1
    job = build(cj)
    pod = job["spec"]["template"]["spec"]
    assert "subdomain" not in pod and not workloads.gang(job)
    env = {e["name"]: e.get("value") for e in pod["containers"][1]["env"]}
    assert env["MASTER_ADDR"] == "cj-llm-finetune-0" and env["WORLD_SIZE"] == "1" and env["MASTER_PORT"] == "29500"


def test_the_headless_service_is_owned_by_the_job_and_selects_its_attempts_pods():
    job = build(attempt=3)
    assert workloads.gang(job)
    job["metadata"]["uid"] = "job-uid"
    svc = workloads.build_service(job)
    assert svc["metadata"]["name"] == "cj-llm-finetune" and svc["metadata"]["namespace"] == "team-a"
    assert svc["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "cj-llm-finetune", "uid": "job-uid", "controller": True}]
    assert svc["spec"] == {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {
        workloads.LABEL_JOB: "llm-finetune", workloads.LABEL_UID: "u-1", workloads.LABEL_ATTEMPT: "3"}}
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


def test_a_service_name_is_a_dns_label_even_when_the_job_name_has_dots():
    name = workloads.service_name(workloads.job_name("v1.2-run"))
    assert "." not in name and len(name) <= 63 and name.startswith("cj-v1-2-run-")
    assert workloads.service_name("cj-plain") == "cj-plain"
