"""DRA pools in the cache and the snapshot: capacity from the ResourceSlices the DeviceClass and the
pool's selectors select, used from ResourceClaims; the Job's devices claimed through a template."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.unit.test_cache import CENTER, NOW, cjob, node

from suanli.api import manifests
from suanli.kube import cache as cache_mod
from suanli.kube import devices as devices_mod
from suanli.kube import workloads

DRIVER = "gpu.example.com"


def dra_center(selectors: list[str] | None = None, class_name: str = DRIVER) -> dict[str, Any]:
    center = copy.deepcopy(CENTER)
    pool = center["spec"]["pools"][0]
    del pool["resourceName"]
    pool["deviceClassName"] = class_name
    if selectors:
        pool["selectors"] = [{"cel": {"expression": e}} for e in selectors]
    return center


def device_class(name: str = DRIVER, driver: str = DRIVER, uid: str = "dc1") -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": uid},
            "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]}}


def resource_slice(node_name: str, models: list[str], generation: int = 1, driver: str = DRIVER,
                   name: str | None = None, pool: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name or f"{node_name}-{driver}", "uid": f"uid-{name or node_name}-{generation}"},
        "spec": {"driver": driver, "nodeName": node_name,
                 "pool": {"name": pool or node_name, "generation": generation, "resourceSliceCount": 1},
                 "devices": [{"name": f"gpu-{i}", "attributes": {"model": {"string": m}}} for i, m in enumerate(models)]},
    }


def claim(name: str, devices: list[tuple[str, str]], ns: str = "team-a", driver: str = DRIVER) -> dict[str, Any]:
    """A claim allocated `devices` ((pool, device) of `driver`)."""
    results = [{"request": "accelerators", "driver": driver, "pool": p, "device": d} for p, d in devices]
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
            "status": {"allocation": {"devices": {"results": results}}}}


def bare_node(name: str) -> dict[str, Any]:
    """A Ready node of the pool without any extended resource (its accelerators are DRA devices)."""
    raw = node(name)
    raw["status"]["allocatable"] = {"cpu": "32"}
    return raw


@pytest.fixture
def cache() -> cache_mod.Cache:
    c = cache_mod.Cache()
    c.upsert_center(dra_center())
    for name in ("n1", "n2"):
        c.upsert_node(bare_node(name))
    c.devices.upsert_class(device_class())
    return c


def usage(cache: cache_mod.Cache) -> tuple[int, int, int]:
    (u,) = cache.snapshot(NOW).usage
    return u.capacity, u.allocated, u.free


def test_capacity_is_the_devices_the_slices_publish_and_claims_take_them(cache: cache_mod.Cache) -> None:
    assert usage(cache) == (0, 0, 0)
    snap = cache.snapshot(NOW)
    assert not snap.ready[0] and "offer no devices of DeviceClass gpu.example.com" in snap.not_ready_reason[0]
    cache.devices.upsert_slice(resource_slice("n1", ["A100"] * 4))
    cache.devices.upsert_slice(resource_slice("n2", ["A100"] * 8))
    assert usage(cache) == (12, 0, 12)
    assert list(cache.snapshot(NOW).capacity.free_per_node(0)) == [4, 8]
    assert cache.devices.upsert_claim(claim("c1", [("n2", "gpu-0"), ("n2", "gpu-1")]))
    assert usage(cache) == (12, 2, 10)
    assert not cache.devices.upsert_claim(claim("c1", [("n2", "gpu-0"), ("n2", "gpu-1")]))  # nothing changed
    cache.devices.upsert_claim(claim("c2", [("n2", "gpu-1")]))  # a device held twice is one device used
    assert usage(cache) == (12, 2, 10)
    cache.devices.delete_claim(("team-a", "c1"))
    assert usage(cache) == (12, 1, 11)
    cache.devices.upsert_claim(claim("c2", []))  # deallocated
    assert usage(cache) == (12, 0, 12)


def test_a_claim_on_another_drivers_device_of_the_same_name_takes_nothing(cache: cache_mod.Cache) -> None:
    cache.devices.upsert_slice(resource_slice("n1", ["A100"] * 2))
    cache.devices.upsert_claim(claim("c1", [("n1", "gpu-0")], driver="nic.example.com"))
    assert usage(cache) == (2, 0, 2)


def test_only_the_newest_generation_of_a_drivers_pool_counts(cache: cache_mod.Cache) -> None:
    cache.devices.upsert_slice(resource_slice("n1", ["A100"] * 8, generation=1, name="old"))
    cache.devices.upsert_slice(resource_slice("n1", ["A100"] * 2, generation=2, name="new"))
    assert usage(cache) == (2, 0, 2)
    cache.devices.delete_slice("new")
    assert usage(cache) == (8, 0, 8)


def test_the_class_and_the_pools_selectors_must_all_select_a_device() -> None:
    c = cache_mod.Cache()
    c.upsert_center(dra_center([f'device.attributes["{DRIVER}"].model == "A100"']))
    c.upsert_node(bare_node("n1"))
    c.devices.upsert_class(device_class())
    c.devices.upsert_slice(resource_slice("n1", ["A100", "H100", "A100"]))
    c.devices.upsert_slice(resource_slice("n1", ["A100"], driver="other.example.com"))
    assert usage(c) == (2, 0, 2)


def test_a_missing_class_or_a_failing_selector_is_said_where_the_pool_is_not_ready() -> None:
    c = cache_mod.Cache()
    c.upsert_center(dra_center([f'device.attributes["{DRIVER}"].memory > 1']))
    c.upsert_node(bare_node("n1"))
    c.devices.upsert_slice(resource_slice("n1", ["A100"]))
    snap = c.snapshot(NOW)
    assert "DeviceClass gpu.example.com does not exist in the operator's cluster" in snap.not_ready_reason[0]
    c.devices.upsert_class(device_class())
    snap = c.snapshot(NOW)
    assert not snap.ready[0]
    assert "device gpu-0 of ResourceSlice n1-gpu.example.com" in snap.not_ready_reason[0]
    assert "failed" in snap.not_ready_reason[0]
    c.devices.delete_class(DRIVER)
    assert "does not exist" in c.snapshot(NOW).not_ready_reason[0]


def test_devices_not_of_one_node_are_not_counted(cache: cache_mod.Cache) -> None:
    shared = resource_slice("n1", ["A100"] * 4)
    del shared["spec"]["nodeName"]
    shared["spec"]["allNodes"] = True
    cache.devices.upsert_slice(shared)
    assert usage(cache) == (0, 0, 0)
    per_device = resource_slice("n1", ["A100"] * 2, name="per-device")
    del per_device["spec"]["nodeName"]
    per_device["spec"]["perDeviceNodeSelection"] = True
    per_device["spec"]["devices"][0]["nodeName"] = "n2"
    cache.devices.upsert_slice(per_device)
    assert list(cache.snapshot(NOW).capacity.free_per_node(0)) == [0, 1]


def test_a_member_clusters_devices_are_its_own_and_go_with_it() -> None:
    c = cache_mod.Cache()
    center = dra_center()
    center["spec"]["cluster"] = {"kubeconfigSecretRef": {"namespace": "suanli", "name": "c1"}}
    c.upsert_center(center)
    c.upsert_node(bare_node("n1"), "c1")
    c.devices.upsert_class(device_class(), "c1")
    c.devices.upsert_slice(resource_slice("n1", ["A100"] * 4), "c1")
    c.devices.upsert_slice(resource_slice("n1", ["A100"] * 8))  # the hub's own node n1: not the member's
    c.devices.upsert_claim(claim("c1", [("n1", "gpu-0")]), "c1")
    assert usage(c) == (4, 1, 3)
    assert c.accelerators_on(c.fleet().pools[0], "c1/n1") == (4, 1)
    c.drop_cluster("c1")
    assert not c.devices.slices.keys() - {("", "n1-gpu.example.com")} and not c.devices.claims and not c.devices.allocated


def test_the_gate_lifter_sees_a_dra_nodes_free_devices(cache: cache_mod.Cache) -> None:
    from suanli.kube import gates, records

    cache.devices.upsert_slice(resource_slice("n1", ["A100"] * 4))
    cache.devices.upsert_claim(claim("other", [("n1", "gpu-0")]))
    binding = records.Binding(center="c1", pool="a100", accelerator_type="GPU", replicas=1, count=4, energy_kwh=0.0,
                               carbon_kg=0.0, nodes=("n1",))
    problem = gates._node_problem(cache, binding, "n1", set())
    assert problem is not None and not problem.lasting
    assert problem.text == ("node n1 has 3 devices of DeviceClass gpu.example.com free; the 1 replica(s) bound to it "
                            "and not started need 4")
    cache.devices.delete_claim(("team-a", "other"))
    assert gates._node_problem(cache, binding, "n1", set()) is None


def test_a_dra_pools_job_claims_its_devices_through_a_template_its_job_owns() -> None:
    cj = cjob("train", replicas=2, count=4)
    manifest = workloads.build_job(cj, center="c1", pool="a100", accelerator_type="GPU", device_class_name=DRIVER,
                                   node_selector={"suanli.io/pool": "c1-a100"}, tolerations=[])
    pod = manifest["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    assert main["resources"] == {"claims": [{"name": workloads.CLAIM}]}  # no extended resource
    assert pod["resourceClaims"] == [{"name": workloads.CLAIM, "resourceClaimTemplateName": "cj-train"}]
    job = {**manifest, "metadata": {**manifest["metadata"], "uid": "job-uid"}}
    assert workloads.claims_devices(job)
    template = workloads.build_claim_template(job, workloads.device_request(DRIVER, ['device.attributes["x"].y'], 4))
    assert template["metadata"]["ownerReferences"][0]["uid"] == "job-uid"
    assert template["spec"]["spec"]["devices"]["requests"] == [{"name": "accelerators", "exactly": {
        "deviceClassName": DRIVER, "allocationMode": "ExactCount", "count": 4,
        "selectors": [{"cel": {"expression": 'device.attributes["x"].y'}}]}}]
    plain = workloads.build_job(cj, center="c1", pool="a100", accelerator_type="GPU", resource_name="nvidia.com/gpu",
                                node_selector={}, tolerations=[])
    assert not workloads.claims_devices(plain)
    assert "resourceClaims" not in plain["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"resourceName": "nvidia.com/gpu", "deviceClassName": DRIVER}, "must give exactly one of resourceName"),
        ({}, "must give exactly one of resourceName"),
        ({"resourceName": "nvidia.com/gpu", "selectors": [{"cel": {"expression": "true"}}]},
         "selectors need deviceClassName"),
        ({"deviceClassName": DRIVER, "selectors": [{"cel": {"expression": "device.driver =="}}]},
         "is not a valid CEL expression"),
    ],
)
def test_a_pool_says_how_its_accelerators_are_counted_or_is_refused(change: dict[str, Any], message: str) -> None:
    center = copy.deepcopy(CENTER)
    pool = center["spec"]["pools"][0]
    del pool["resourceName"]
    pool.update(change)
    with pytest.raises(manifests.InvalidManifests, match=message):
        manifests.parse_object(center, "test")


def test_alike_devices_are_judged_once() -> None:
    index = devices_mod.Devices()
    index.upsert_class(device_class())
    for n in range(50):
        index.upsert_slice(resource_slice(f"n{n}", ["A100"] * 8))
    selected = index.selected("", DRIVER, ())
    assert sum(len(ids) for ids in selected.by_node.values()) == 400
    assert len(index._verdicts) == 1  # one verdict per distinct (driver, attributes, capacity), not per device
