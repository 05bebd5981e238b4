"""The operator's API calls (suanli.kube.client.Api) against a real API server: plain-JSON
requests, paged LISTs, metadata-only key listings for the relist, GETs that tell gone from
there, status merge patches, Job create-or-adopt and Events."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from tests.e2e.helpers import compute_job

from suanli.kube import client as client_mod
from suanli.kube import transport, workloads

pytestmark = pytest.mark.cluster
GROUP, VERSION = "suanli.io", "v1alpha1"


@pytest.fixture
def api(kube: Any) -> Any:
    client = client_mod.Api(client_mod.api_client(kube.kubeconfig, pool_size=4), workers=2)
    yield client
    client.close()


def test_lists_come_in_pages_and_key_listings_carry_names_and_uids_only(
    api: Any, custom_objects: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                       compute_job(f"page-{i}", namespace, count=1))
    monkeypatch.setattr(transport, "PAGE", 2)  # five objects: three pages, two continue tokens
    mine = [j for j in api.pages("jobs") if j["metadata"]["namespace"] == namespace]
    assert sorted(j["metadata"]["name"] for j in mine) == [f"page-{i}" for i in range(5)]
    assert all(j["spec"]["accelerators"]["count"] == 1 for j in mine)  # whole objects
    keys = api.list_keys()
    assert {(namespace, j["metadata"]["name"], j["metadata"]["uid"]) for j in mine} <= keys["jobs"]
    assert set(keys) == set(client_mod.COLLECTIONS)
    assert all(ns == "" for ns, _, _ in keys["nodes"] | keys["centers"])  # cluster-scoped: no namespace
    assert all(uid for kind in keys.values() for _, _, uid in kind)


def test_a_kind_the_server_does_not_serve_is_not_served_not_an_error(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster without DRA's API group answers its LIST with 404: that kind is `NotServed` (the watcher
    and the priming LIST take it as none), and the relist's key listing has it empty. (A group this
    server does not serve stands in for resource.k8s.io on an older cluster.)"""
    monkeypatch.setitem(transport.COLLECTIONS, "slices", ("/apis/nothere.suanli.io/v1/resourceslices", None))
    with pytest.raises(client_mod.NotServed, match=r"does not serve /apis/nothere\.suanli\.io/v1/resourceslices"):
        api.page("slices")
    assert api.list_keys(("slices", "nodes"))["slices"] == set()
    monkeypatch.setitem(transport.COLLECTIONS, "nodes", ("/apis/nothere.suanli.io/v1/nodes", None))
    with pytest.raises(ApiException) as refused:  # a kind that must be served stays an error
        api.page("nodes")
    assert refused.value.status == 404


def test_exists_tells_a_deleted_object_from_a_present_one(api: Any, custom_objects: Any, namespace: str) -> None:
    created = custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                             compute_job("here", namespace, count=1))
    found = api.exists("jobs", (namespace, "here"))
    assert found is not None and found["metadata"]["uid"] == created["metadata"]["uid"]  # the whole object
    assert found["spec"]["accelerators"]["count"] == 1
    assert api.exists("jobs", (namespace, "never-created")) is None
    assert api.exists("pods", (namespace, "never-created")) is None
    assert api.exists("workloads", (namespace, "never-created")) is None
    assert api.exists("centers", ("", "never-created")) is None


def test_status_patch_job_create_adopt_and_event(
    api: Any, custom_objects: Any, core_v1: Any, batch_v1: Any, namespace: str
) -> None:
    created = custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                             compute_job("write", namespace, count=1))
    answer = api.patch_job_status(namespace, "write", {"phase": "Queued", "message": "waiting"})
    assert answer is not None and answer["status"] == {"phase": "Queued", "message": "waiting"}
    assert api.patch_job_status(namespace, "write", {"message": "still waiting"}, False) is None
    stored = custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", "write")
    assert stored["status"] == {"phase": "Queued", "message": "still waiting"}  # merged, not replaced

    manifest = workloads.build_job(created, center="c1", pool="a100", accelerator_type="GPU",
                                   resource_name="nvidia.com/gpu", node_selector={"suanli.io/pool": "none"},
                                   tolerations=[])
    job, fresh = api.create_or_adopt_job(manifest, created["metadata"]["uid"])
    assert fresh and job["metadata"]["name"] == manifest["metadata"]["name"]
    again, fresh = api.create_or_adopt_job(manifest, created["metadata"]["uid"])  # 409: adopted
    assert not fresh and again["metadata"]["uid"] == job["metadata"]["uid"]
    # A ComputeJob recreated under the name (another uid) finds its predecessor's Job: it is deleted with
    # its pods, and the new one is created once it is gone.
    with pytest.raises(client_mod.WorkloadBusy, match="being deleted"):
        api.create_or_adopt_job(manifest, "a-successor-uid")
    leftover = batch_v1.list_namespaced_job(namespace).items
    assert all(j.metadata.deletion_timestamp is not None for j in leftover), "the predecessor's Job is going"
    # Someone's own Job under the name is never touched.
    foreign = copy.deepcopy(manifest)
    foreign["metadata"] = {"name": "cj-other", "namespace": namespace}
    batch_v1.create_namespaced_job(namespace, foreign)
    mine = copy.deepcopy(manifest)
    mine["metadata"]["name"] = "cj-other"
    with pytest.raises(ValueError, match="not owned by this ComputeJob"):
        api.create_or_adopt_job(mine, created["metadata"]["uid"])
    assert batch_v1.read_namespaced_job("cj-other", namespace).metadata.deletion_timestamp is None

    api.event(("ComputeJob", namespace, "write", created["metadata"]["uid"]), "Bound", "bound to c1/a100")
    events = core_v1.list_namespaced_event(namespace).items
    assert any(e.reason == "Bound" and e.involved_object.name == "write" for e in events)


def test_a_gangs_job_comes_with_its_headless_service_which_goes_with_it(
    api: Any, custom_objects: Any, core_v1: Any, batch_v1: Any, namespace: str
) -> None:
    """A 4-replica Job is created with a headless Service of its name, owned by the Job (adopting the Job
    keeps the Service); a Service left by an earlier Job of the name is deleted and the create is retried
    (WorkloadBusy); a Service that is someone else's is refused, never touched; a one-replica Job has none."""
    doc = compute_job("gang", namespace, count=1)
    doc["spec"]["replicas"] = 4
    created = custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)
    uid = created["metadata"]["uid"]
    manifest = workloads.build_job(created, center="c1", pool="a100", accelerator_type="GPU", accelerator_model="A100",
                                   resource_name="nvidia.com/gpu", node_selector={"suanli.io/pool": "none"},
                                   tolerations=[])
    job, fresh = api.create_or_adopt_job(manifest, uid)
    svc = core_v1.read_namespaced_service("cj-gang", namespace)
    assert fresh and svc.spec.cluster_ip == "None" and svc.spec.publish_not_ready_addresses
    assert [(r.kind, r.uid) for r in svc.metadata.owner_references] == [("Job", job["metadata"]["uid"])]
    assert svc.spec.selector == {workloads.LABEL_JOB: "gang", workloads.LABEL_UID: uid, workloads.LABEL_ATTEMPT: "0"}
    assert job["spec"]["template"]["spec"]["subdomain"] == "cj-gang"
    _, fresh = api.create_or_adopt_job(manifest, uid)  # adopted: the Service is this Job's, left as it is
    assert not fresh and core_v1.read_namespaced_service("cj-gang", namespace).metadata.uid == svc.metadata.uid

    # A Service of Suanli's under the name that is not this Job's (an earlier Job's, orphaned: no garbage
    # collector will take it) is deleted, and the Job's own made on the next try.
    core_v1.delete_namespaced_service("cj-gang", namespace)
    stale = workloads.build_service(job)
    stale["metadata"].pop("ownerReferences")
    stale = core_v1.create_namespaced_service(namespace, stale)
    with pytest.raises(client_mod.WorkloadBusy, match=r"Service .*being deleted"):
        api.create_or_adopt_job(manifest, uid)
    assert not [s for s in core_v1.list_namespaced_service(namespace, field_selector="metadata.name=cj-gang").items
                if s.metadata.uid == stale.metadata.uid and not s.metadata.deletion_timestamp]
    _, fresh = api.create_or_adopt_job(manifest, uid)
    svc2 = core_v1.read_namespaced_service("cj-gang", namespace)
    assert not fresh and [r.uid for r in svc2.metadata.owner_references] == [job["metadata"]["uid"]]

    # Someone's own Service under the name is refused and left alone.
    other = dict(doc, metadata={"name": "taken", "namespace": namespace})
    taken = custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", other)
    core_v1.create_namespaced_service(namespace, {"metadata": {"name": "cj-taken"}, "spec": {
        "ports": [{"port": 80}], "selector": {"app": "web"}}})
    manifest3 = workloads.build_job(taken, center="c1", pool="a100", accelerator_type="GPU",
                                    resource_name="nvidia.com/gpu", node_selector={}, tolerations=[])
    with pytest.raises(ValueError, match=r"Service .*cj-taken already exists and is not Suanli's"):
        api.create_or_adopt_job(manifest3, taken["metadata"]["uid"])
    assert core_v1.read_namespaced_service("cj-taken", namespace).spec.selector == {"app": "web"}
    left = batch_v1.list_namespaced_job(namespace, field_selector="metadata.name=cj-taken").items
    assert all(j.metadata.deletion_timestamp for j in left), "the Job made for it is deleted again: nothing runs"

    solo = custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                          compute_job("solo", namespace, count=1))
    api.create_or_adopt_job(workloads.build_job(solo, center="c1", pool="a100", accelerator_type="GPU",
                                                resource_name="nvidia.com/gpu", node_selector={}, tolerations=[]),
                            solo["metadata"]["uid"])
    assert not core_v1.list_namespaced_service(namespace, field_selector="metadata.name=cj-solo").items


def test_a_uid_tested_status_patch_never_lands_on_another_job_of_the_name(
    api: Any, custom_objects: Any, namespace: str
) -> None:
    created = custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                             compute_job("same-name", namespace, count=1))
    uid = created["metadata"]["uid"]
    # The first write sets the whole status (a JSON patch cannot add into a missing /status) ...
    api.patch_job_status(namespace, "same-name", {"phase": "Queued", "message": "waiting", "requeues": 0},
                         uid=uid, whole=True)
    # ... later ones set their keys, keeping the rest; None removes a key.
    api.patch_job_status(namespace, "same-name", {"message": "still waiting", "requeues": None}, uid=uid)
    stored = custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", "same-name")
    assert stored["status"] == {"phase": "Queued", "message": "still waiting"}
    with pytest.raises(client_mod.Replaced):
        api.patch_job_status(namespace, "same-name", {"phase": "Bound"}, uid="the-deleted-predecessor")
    stored = custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", "same-name")
    assert stored["status"]["phase"] == "Queued"
    with pytest.raises(client_mod.Replaced):
        api.patch_job_status(namespace, "gone", {"phase": "Bound"}, uid=uid)


def test_errors_carry_the_status_and_the_servers_words(api: Any, namespace: str) -> None:
    with pytest.raises(ApiException) as err:
        api.patch_job_status(namespace, "missing", {"phase": "Queued"})
    assert err.value.status == 404
    assert "missing" in str(err.value.body)


def test_a_dra_pools_job_comes_with_its_claim_template_which_is_its_own(
    api: Any, custom_objects: Any, batch_v1: Any, namespace: str
) -> None:
    """A Job for a DRA pool is created with a ResourceClaimTemplate of its name, owned by the Job, asking
    for the replica's devices (adopting the Job keeps it); someone else's template under the name is
    refused and left alone, and the Job made for it deleted again."""
    from kubernetes import client as k8s

    resource = k8s.CustomObjectsApi(custom_objects.api_client)
    created = custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                             compute_job("dra", namespace, count=4))
    uid = created["metadata"]["uid"]
    manifest = workloads.build_job(created, center="c1", pool="dra", accelerator_type="GPU",
                                   device_class_name="gpu.example.com", node_selector={"suanli.io/pool": "none"},
                                   tolerations=[])
    request = workloads.device_request("gpu.example.com", ['device.attributes["gpu.example.com"].model == "A100"'], 4)
    job, fresh = api.create_or_adopt_job(manifest, uid, claim=request)
    template = resource.get_namespaced_custom_object("resource.k8s.io", "v1", namespace, "resourceclaimtemplates", "cj-dra")
    assert fresh and [(r["kind"], r["uid"]) for r in template["metadata"]["ownerReferences"]] == [("Job", job["metadata"]["uid"])]
    (wanted,) = template["spec"]["spec"]["devices"]["requests"]
    assert (wanted["exactly"]["deviceClassName"], wanted["exactly"]["count"]) == ("gpu.example.com", 4)
    assert wanted["exactly"]["selectors"][0]["cel"]["expression"].endswith('== "A100"')
    _, fresh = api.create_or_adopt_job(manifest, uid, claim=request)
    again = resource.get_namespaced_custom_object("resource.k8s.io", "v1", namespace, "resourceclaimtemplates", "cj-dra")
    assert not fresh and again["metadata"]["uid"] == template["metadata"]["uid"]

    taken = custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                           compute_job("taken-dra", namespace, count=4))
    resource.create_namespaced_custom_object("resource.k8s.io", "v1", namespace, "resourceclaimtemplates", {
        "metadata": {"name": "cj-taken-dra"}, "spec": {"spec": request}})
    manifest2 = workloads.build_job(taken, center="c1", pool="dra", accelerator_type="GPU",
                                    device_class_name="gpu.example.com", node_selector={}, tolerations=[])
    with pytest.raises(ValueError, match=r"ResourceClaimTemplate .*cj-taken-dra already exists and is not Suanli's"):
        api.create_or_adopt_job(manifest2, taken["metadata"]["uid"], claim=request)
    left = batch_v1.list_namespaced_job(namespace, field_selector="metadata.name=cj-taken-dra").items
    assert all(j.metadata.deletion_timestamp for j in left), "the Job made for it is deleted again: nothing runs"
