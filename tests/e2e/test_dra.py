"""DRA pools end to end (issue #16) on the local control plane, with the operator as a subprocess.

A center with a mixed fleet: pool `dra` declared with `deviceClassName` (and a CEL selector) on kwok
nodes that publish ResourceSlices as a DRA driver would (tests/cluster/fake_nodes.py), and pool
`plugin` counted from a device plugin's extended resource. The center's status counts the DRA pool's
capacity from the slices; a gang placed there gets a ResourceClaimTemplate (owned by its Job) and
kube-scheduler allocates each pod's claim devices from the very node the pod runs on; free follows the
claims, also for an operator killed and started again (a job submitted meanwhile waits for the
devices instead of being placed on them), and comes back when the jobs end; a driver republishing fewer devices shrinks the capacity. A
job for the device-plugin pool runs next to it, as before.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client as k8s
from tests.e2e.helpers import (
    EXPECT_TIMEOUT_S,
    GROUP,
    VERSION,
    Operator,
    centers_fixture,  # noqa: F401  (the `centers` fixture)
    get_center,
    job_status,
    only_on,
    small_center,
    wait_for_phase,
)
from tests.e2e.test_queues import job

from suanli.kube import workloads

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]
DRA = ("resource.k8s.io", "v1")


def mixed_center(name: str, device_class: str) -> dict[str, Any]:
    """Pool `dra` (2 nodes x 4 A100, DRA) and pool `plugin` (1 node x 8 H100, nvidia.com/gpu)."""
    center = small_center(name, nodes_expected=2, per_node=4, pool="dra", model="A100")
    dra = center["spec"]["pools"][0]
    del dra["resourceName"]
    dra["deviceClassName"] = device_class
    dra["memoryGiB"] = 80
    dra["selectors"] = [{"cel": {"expression": f'device.attributes["{device_class}"].model == "A100"'}}]
    plugin = small_center(name, nodes_expected=1, per_node=8, pool="plugin", model="H100")["spec"]["pools"][0]
    center["spec"]["pools"].append(plugin)
    only_on(center)
    return center


def pool_status(custom_objects: Any, center: str, pool: str) -> dict[str, Any]:
    pools = (get_center(custom_objects, center).get("status") or {}).get("pools") or []
    return next((p for p in pools if p.get("name") == pool), {})


def test_a_dra_pool_counts_its_slices_and_its_gangs_get_devices_from_their_own_nodes(
    kube: Any, tmp_path: Any, fake_nodes: Any, centers: Any, namespace: str, core_v1: Any, custom_objects: Any,
    wait_for: Any,
) -> None:
    tag = uuid.uuid4().hex[:5]
    device_class = f"gpu-{tag}.e2e.suanli.io"
    center = mixed_center(f"e2e-dra-{tag}", device_class)
    cname = center["metadata"]["name"]
    nodes = fake_nodes(center, nodes_per_pool=None)
    op = Operator(kube.kubeconfig, tmp_path)
    try:
        centers([center])
        op.start()
        # Capacity and free of the DRA pool come from the two nodes' slices (4 devices each).
        wait_for(lambda: ((s := pool_status(custom_objects, cname, "dra")).get("capacity") == 8 and s.get("free") == 8)
                 or None, EXPECT_TIMEOUT_S, lambda: pool_status(custom_objects, cname, "dra"),
                 what="the DRA pool counted from its ResourceSlices")

        gang = job(f"dra-{tag}", namespace, center, run="45s")
        gang["spec"]["replicas"] = 2
        gang["spec"]["accelerators"]["count"] = 4
        gang["spec"]["accelerators"]["models"] = ["A100"]
        plain = job(f"plugin-{tag}", namespace, center, run="3s")
        plain["spec"]["accelerators"]["models"] = ["H100"]
        for doc in (gang, plain):
            custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)
        name = gang["metadata"]["name"]
        wait_for_phase(custom_objects, namespace, name, "Running", what="the DRA gang running")
        status = custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", name)["status"]
        assert status["binding"]["pool"] == "dra", status

        workload = f"cj-{name}"
        template = k8s.CustomObjectsApi(core_v1.api_client).get_namespaced_custom_object(
            *DRA, namespace, "resourceclaimtemplates", workload)
        assert [r["kind"] for r in template["metadata"]["ownerReferences"]] == ["Job"]
        (request,) = template["spec"]["spec"]["devices"]["requests"]
        assert request["exactly"]["deviceClassName"] == device_class and request["exactly"]["count"] == 4

        pods = core_v1.list_namespaced_pod(namespace, label_selector=f"{workloads.LABEL_JOB}={name}").items
        assert len(pods) == 2 and len({p.spec.node_name for p in pods}) == 2, [p.spec.node_name for p in pods]
        custom = k8s.CustomObjectsApi(core_v1.api_client)
        for pod in pods:
            (main,) = pod.spec.containers
            assert [c.name for c in main.resources.claims] == [workloads.CLAIM]
            assert "nvidia.com/gpu" not in (main.resources.requests or {})
            (claim_status,) = pod.status.resource_claim_statuses
            claim = custom.get_namespaced_custom_object(*DRA, namespace, "resourceclaims",
                                                        claim_status.resource_claim_name)
            results = claim["status"]["allocation"]["devices"]["results"]
            # Four devices of the class's driver, all from the pool (the fake slice's) of the pod's own node.
            assert len(results) == 4, results
            assert {(r["driver"], r["pool"]) for r in results} == {(device_class, pod.spec.node_name)}, results

        wait_for(lambda: ((s := pool_status(custom_objects, cname, "dra")).get("free") == 0 and s.get("capacity") == 8)
                 or None, EXPECT_TIMEOUT_S, lambda: pool_status(custom_objects, cname, "dra"),
                 what="the DRA pool's devices held by the gang's claims")
        wait_for_phase(custom_objects, namespace, plain["metadata"]["name"], "Succeeded",
                       what="the device-plugin job next to it succeeded")
        plain_status = custom_objects.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "computejobs", plain["metadata"]["name"])["status"]
        assert plain_status["binding"]["pool"] == "plugin", plain_status

        # The operator killed while the gang holds every device, a job for them submitted meanwhile: the
        # restarted operator counts the devices from the claims it lists, and the job waits its turn.
        op.kill()
        late = job(f"late-{tag}", namespace, center, run="3s")
        late["spec"]["accelerators"]["count"] = 4
        late["spec"]["accelerators"]["models"] = ["A100"]
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", late)
        op.start()
        lname = late["metadata"]["name"]
        waiting = wait_for(lambda: (st := job_status(custom_objects, namespace, lname)).get("phase") == "Queued"
                           and st.get("message") and st, EXPECT_TIMEOUT_S,
                           lambda: job_status(custom_objects, namespace, lname), what="the late job waiting")
        assert job_status(custom_objects, namespace, name)["phase"] == "Running", "the gang ended too soon to tell"
        assert "binding" not in waiting, waiting
        wait_for_phase(custom_objects, namespace, name, "Succeeded", what="the DRA gang succeeded")
        wait_for_phase(custom_objects, namespace, lname, "Succeeded", what="the late job ran once the devices were free")
        assert job_status(custom_objects, namespace, lname)["binding"]["pool"] == "dra"
        wait_for(lambda: pool_status(custom_objects, cname, "dra").get("free") == 8 or None, EXPECT_TIMEOUT_S,
                 lambda: pool_status(custom_objects, cname, "dra"), what="the devices free again")

        # The driver republishes one node's slice with 1 device (a new generation): capacity follows.
        dra_nodes = [n for n in nodes if n.startswith(f"{cname}-dra-")]
        slice_name = f"{dra_nodes[0]}-{device_class.replace('.', '-')}"
        current = custom.get_cluster_custom_object(*DRA, "resourceslices", slice_name)
        current["spec"]["devices"] = current["spec"]["devices"][:1]
        current["spec"]["pool"]["generation"] += 1
        custom.replace_cluster_custom_object(*DRA, "resourceslices", slice_name, current)
        wait_for(lambda: pool_status(custom_objects, cname, "dra").get("capacity") == 5 or None, EXPECT_TIMEOUT_S,
                 lambda: pool_status(custom_objects, cname, "dra"), what="the capacity following the slices")
    finally:
        op.stop()
        k8s.CustomObjectsApi(core_v1.api_client).delete_cluster_custom_object(*DRA, "deviceclasses", device_class)
