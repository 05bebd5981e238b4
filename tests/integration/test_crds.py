"""The generated CRDs on a real API server: installed and Established, the examples apply,
invalid manifests are refused (schema or CEL) with a message that names the field.

Everything goes through the real `kubectl` (the local control plane's build, first on
PATH under `make integration`), as a user would run it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import pathlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from tests.unit import test_bad_manifests as bad

from suanli.api import manifests

pytestmark = pytest.mark.cluster

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "crds" / "examples"
CRD_NAMES = {"computecenters.suanli.io", "computejobs.suanli.io"}
KUBECTL_TIMEOUT_S = 60


def _kubectl_binary() -> str:
    local = REPO / ".cluster" / "bin" / "kubectl"
    if local.exists():
        return str(local)
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "kubectl not found: run `make cluster-up` (it builds one into .cluster/bin)", pytrace=False
        )
    return found


@pytest.fixture(scope="module")
def kubectl(kube: Any) -> Any:
    """`kubectl(*args, stdin=None)` against the cluster under test; returns the CompletedProcess."""
    binary = _kubectl_binary()
    env = {**os.environ, "KUBECONFIG": kube.kubeconfig}

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=KUBECTL_TIMEOUT_S,
            check=False,
        )

    return run


@pytest.fixture(scope="module")
def module_namespace(core_v1: Any) -> Iterator[str]:
    """One namespace for the many refusal cases (a namespace per case would be slow)."""
    from kubernetes.client.exceptions import ApiException

    name = f"t-crds-{uuid.uuid4().hex[:6]}"
    core_v1.create_namespace({"metadata": {"name": name, "labels": {"suanli.io/test": "true"}}})
    yield name
    with contextlib.suppress(ApiException):
        core_v1.delete_namespace(name)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (
        f"kubectl {proc.args[1:]} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
    )
    return proc.stdout


# --- the CRDs -----------------------------------------------------------------------


def test_crds_install_and_are_established(kube: Any) -> None:
    from kubernetes import client

    assert set(kube.crds) >= CRD_NAMES
    apiext = client.ApiextensionsV1Api(kube.api_client)
    for name in CRD_NAMES:
        conditions = {
            c.type: c.status for c in apiext.read_custom_resource_definition(name).status.conditions
        }
        assert conditions.get("Established") == "True", (name, conditions)
        assert conditions.get("NamesAccepted") == "True", (name, conditions)
        assert conditions.get("NonStructuralSchema") is None, (name, conditions)


def test_short_names_and_category(kubectl: Any) -> None:
    out = _ok(kubectl("api-resources", "--api-group=suanli.io", "-o", "wide"))
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "cc" in lines["computecenters"] and "false" in lines["computecenters"].split()
    assert "cj,cjob" in lines["computejobs"] and "true" in lines["computejobs"].split()
    assert "suanli" in lines["computecenters"] and "suanli" in lines["computejobs"]
    _ok(kubectl("get", "suanli", "-A"))  # the category resolves


def test_kubectl_explain_shows_the_model_descriptions(kubectl: Any) -> None:
    out = _ok(kubectl("explain", "cjob.spec.accelerators.count"))
    assert "Accelerators per replica, on one node." in out
    out = _ok(kubectl("explain", "cc.spec.energy.pue"))
    assert "Power usage effectiveness" in out
    for field, words in (("cjob.spec.suspend", "true pauses the job"),
                         ("cjob.spec.retry.onExitCodes", "Exit codes that are retried"),
                         ("cjob.spec.rendezvous.port", "MASTER_PORT"),
                         ("cjob.status.attempts.outcome", "Retried (spec.retry)"),
                         ("cc.spec.pools.deviceClassName", "ResourceClaimTemplate"),
                         ("cc.spec.pools.selectors.cel.expression", "device.driver")):
        assert words in _ok(kubectl("explain", field)), field


# --- the examples -------------------------------------------------------------------


def _example_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict))
    return docs


def _delete_examples(kubectl: Any, docs: list[dict[str, Any]], wait: bool) -> None:
    for doc in docs:
        if doc["kind"] in manifests.KINDS:
            args = [
                "delete",
                doc["kind"].lower() + ".suanli.io",
                doc["metadata"]["name"],
                "--ignore-not-found",
            ]
            if doc["metadata"].get("namespace"):
                args += ["-n", doc["metadata"]["namespace"]]
            if wait:
                kubectl(*args, "--wait=true", "--timeout=60s")
            else:
                kubectl(*args, "--wait=false")


@pytest.fixture
def applied_examples(kubectl: Any) -> Iterator[list[dict[str, Any]]]:
    """`kubectl apply -f crds/examples/` as docs/api.md says; the Suanli objects are deleted afterwards.

    Objects of the same names left by `make demo` or an interrupted run are deleted first (and waited
    for): `kubectl apply` would merge into them and the stored spec would carry their extra fields.
    The example namespaces (team-a, team-b) are left in place: deleting them takes a while
    and the next apply would find them terminating.
    """
    docs = _example_docs()
    _delete_examples(kubectl, docs, wait=True)
    try:
        yield docs
    finally:
        _delete_examples(kubectl, docs, wait=False)


def test_every_example_applies_with_kubectl(kubectl: Any, applied_examples: list[dict[str, Any]]) -> None:
    out = _ok(kubectl("apply", "--validate=strict", "-f", str(EXAMPLES)))
    for doc in applied_examples:
        if doc["kind"] not in manifests.KINDS:
            continue
        name = doc["metadata"]["name"]
        assert f"{doc['kind'].lower()}.suanli.io/{name}" in out, out
        args = ["get", doc["kind"].lower() + ".suanli.io", name, "-o", "json"]
        if doc["metadata"].get("namespace"):
            args += ["-n", doc["metadata"]["namespace"]]
        stored = json.loads(_ok(kubectl(*args)))
        # Nothing was pruned or defaulted: the schema knows every field the examples use.
        assert stored["spec"] == doc["spec"], f"{doc['kind']} {name}: the API server changed the spec"


def test_printer_columns_show_in_kubectl_get(kubectl: Any, applied_examples: list[dict[str, Any]]) -> None:
    _ok(kubectl("apply", "-f", str(EXAMPLES)))
    header = _ok(kubectl("get", "cjob", "-n", "team-a")).splitlines()[0].split()
    assert header == ["NAME", "PHASE", "CENTER", "POOL", "TYPE", "SCORE", "AGE"]
    header = _ok(kubectl("get", "cc")).splitlines()[0].split()
    assert header == ["NAME", "REGION", "PUE", "READY", "FREE", "AGE"]
    row = next(
        line.split() for line in _ok(kubectl("get", "cc")).splitlines() if line.startswith("yaan-hydro ")
    )
    assert row[1:3] == ["cn-sichuan", "1.2"]


# --- status subresource and printer columns with values ---------------------------------


def _job(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "accelerators": {"count": 8, "types": ["NPU"], "precision": "bf16"},
        "images": {"NPU": "registry.example.com/x:cann8"},
    }
    body.update(spec)
    return {
        "apiVersion": "suanli.io/v1alpha1",
        "kind": "ComputeJob",
        "metadata": {"name": name},
        "spec": body,
    }


def _center(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "region": "cn-test",
        "pools": [
            {
                "name": "ascend-910b",
                "acceleratorType": "NPU",
                "model": "Ascend910B",
                "resourceName": "huawei.com/Ascend910",
                "nodeSelector": {"suanli.io/pool": f"{name}-ascend-910b"},
                "expected": {"nodes": 2, "acceleratorsPerNode": 8},
            }
        ],
    }
    body.update(spec)
    return {
        "apiVersion": "suanli.io/v1alpha1",
        "kind": "ComputeCenter",
        "metadata": {"name": name},
        "spec": body,
    }


def _apply(
    kubectl: Any, obj: dict[str, Any], namespace: str | None = None
) -> subprocess.CompletedProcess[str]:
    args = ["apply", "--validate=strict", "-f", "-"]
    if namespace:
        args += ["-n", namespace]
    return kubectl(*args, stdin=yaml.safe_dump(obj))


@pytest.fixture
def centers_made(kubectl: Any) -> Iterator[list[str]]:
    """Names of ComputeCenters a test created; deleted afterwards (they are cluster-scoped)."""
    made: list[str] = []
    yield made
    for name in made:
        kubectl("delete", "computecenter.suanli.io", name, "--ignore-not-found", "--wait=false")


def _table(kube: Any, path: str) -> tuple[list[str], list[Any], dict[str, Any]]:
    """One object as the API server's Table (what `kubectl get` prints) with the object itself,
    from a single response, so the cells and the object are one consistent snapshot even if
    an operator writes the status meanwhile."""
    client = kube.api_client
    method, url, headers, body, post = client.param_serialize(
        "GET",
        path,
        query_params=[("includeObject", "Object")],
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    response = client.call_api(method, url, header_params=headers, body=body, post_params=post)
    response.read()
    table: dict[str, Any] = json.loads(response.data)
    names = [c["name"] for c in table["columnDefinitions"]]
    row = table["rows"][0]
    return names, row["cells"], row["object"]


def _patch_status(kubectl: Any, kind: str, name: str, status: dict[str, Any], *ns: str) -> dict[str, Any]:
    out = _ok(
        kubectl(
            "patch", kind, name, *ns, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}), "-o", "json",
        )
    )  # fmt: skip
    patched: dict[str, Any] = json.loads(out)
    return patched


BINDING = {
    "center": "yaan-hydro",
    "pool": "ascend-910b",
    "acceleratorType": "NPU",
    "model": "Ascend910B",
    "score": 0.763,
    "breakdown": {"accelerator": 0.51, "locality": 1.0, "energy": 0.77},
}


def test_status_is_a_subresource(kubectl: Any, namespace: str) -> None:
    _ok(_apply(kubectl, _job("columns"), namespace))
    # A status in the main resource is ignored: only the status subresource writes it.
    with_status = _job("columns")
    with_status["status"] = {"phase": "Failed", "message": "written through the main resource"}
    _ok(_apply(kubectl, with_status, namespace))
    stored = json.loads(_ok(kubectl("get", "cjob", "columns", "-n", namespace, "-o", "json")))
    assert (stored.get("status") or {}).get("message") != "written through the main resource"
    # The status subresource takes the whole status model (the patch answers with what was stored).
    patched = _patch_status(
        kubectl, "cjob", "columns", {"phase": "Bound", "binding": BINDING}, "-n", namespace
    )
    assert patched["status"]["binding"] == BINDING and patched["status"]["phase"] == "Bound"


def test_job_columns_show_the_status(kube: Any, kubectl: Any, namespace: str) -> None:
    _ok(_apply(kubectl, _job("cols"), namespace))
    _patch_status(kubectl, "cjob", "cols", {"phase": "Bound", "binding": BINDING}, "-n", namespace)
    names, cells, obj = _table(kube, f"/apis/suanli.io/v1alpha1/namespaces/{namespace}/computejobs/cols")
    assert names[:7] == ["Name", "Phase", "Center", "Pool", "Type", "Score", "Age"]
    status = obj.get("status") or {}
    binding = status.get("binding") or {}
    expected = [
        status.get("phase"),
        binding.get("center"),
        binding.get("pool"),
        binding.get("acceleratorType"),
    ]
    assert [c or None for c in cells[1:5]] == expected
    assert (cells[5] or None) == binding.get("score")
    assert cells[0] == "cols"


def test_status_is_validated_too(kubectl: Any, namespace: str) -> None:
    _ok(_apply(kubectl, _job("bad-status"), namespace))
    proc = kubectl(
        "patch", "cjob", "bad-status", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Sleeping"}}),
    )  # fmt: skip
    assert proc.returncode != 0 and "status.phase" in proc.stderr, proc.stderr


def test_center_columns_show_ready_and_free(kube: Any, kubectl: Any, centers_made: list[str]) -> None:
    name = f"it-cols-{uuid.uuid4().hex[:5]}"
    centers_made.append(name)
    _ok(_apply(kubectl, _center(name, energy={"pue": 1.15})))
    status = {"freeAccelerators": 12, "conditions": [{"type": "Ready", "status": "True"}]}
    patched = _patch_status(kubectl, "cc", name, status)
    assert patched["status"]["freeAccelerators"] == 12
    names, cells, obj = _table(kube, f"/apis/suanli.io/v1alpha1/computecenters/{name}")
    assert names[:6] == ["Name", "Region", "PUE", "Ready", "Free", "Age"]
    assert cells[1:3] == ["cn-test", 1.15]
    ready = [c["status"] for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
    assert (cells[3] or None) == (ready[0] if ready else None)
    assert cells[4] == obj.get("status", {}).get("freeAccelerators")


# --- refusals ---------------------------------------------------------------------------

SERVER_CASES = [c for c in bad.CASES if c.server != "-"]


def _refused_by_server(proc: subprocess.CompletedProcess[str]) -> bool:
    """Refused by the API server (422 Invalid or 400 strict decoding), not by kubectl itself."""
    return proc.returncode != 0 and ("is invalid:" in proc.stderr or "Error from server" in proc.stderr)


@pytest.mark.parametrize("case", SERVER_CASES, ids=lambda c: c.name)
def test_bad_manifest_is_refused_naming_the_field(
    case: bad.Case, kubectl: Any, module_namespace: str, centers_made: list[str]
) -> None:
    text = case.path.read_text(encoding="utf-8")
    with contextlib.suppress(yaml.YAMLError):
        doc = yaml.safe_load(text)
        if isinstance(doc, dict) and doc.get("kind") == "ComputeCenter":
            centers_made.append(doc["metadata"].get("name", ""))
    proc = kubectl("apply", "--validate=strict", "-n", module_namespace, "-f", "-", stdin=text)
    assert proc.returncode != 0, f"{case.path.name}: accepted, but {case.what}\n{proc.stdout}"
    assert case.server in proc.stderr, (
        f"{case.path.name}: the refusal does not name {case.server}:\n{proc.stderr}"
    )


def test_at_least_15_bad_manifests_are_refused_by_the_api_server(kubectl: Any, module_namespace: str) -> None:
    """Not kubectl's own checks (YAML, apiVersion mapping, names): the API server's schema and CEL."""
    refused = []
    for case in SERVER_CASES:
        proc = kubectl(
            "apply", "--validate=strict", "-n", module_namespace, "-f", "-", stdin=case.path.read_text()
        )
        if _refused_by_server(proc) and case.server in proc.stderr:
            refused.append(case.name)
    assert len(refused) >= 15, refused


def _refusal(kubectl: Any, obj: dict[str, Any], namespace: str | None = None) -> str:
    proc = _apply(kubectl, obj, namespace)
    assert _refused_by_server(proc), f"accepted: {yaml.safe_dump(obj)}\n{proc.stdout}{proc.stderr}"
    return proc.stderr


def test_cel_rules_beyond_the_table(kubectl: Any, centers_made: list[str]) -> None:
    name = f"it-cel-{uuid.uuid4().hex[:5]}"
    centers_made.append(name)
    pool = _center(name)["spec"]["pools"][0]

    unknown_key = _center(name, pools=[{**pool, "peakTFLOPS": {"fp8": 100}}])
    refusal = _refusal(kubectl, unknown_key)
    assert "spec.pools[0].peakTFLOPS" in refusal and "key fp8 is not a precision" in refusal, refusal
    custom_without_memory = _center(
        name,
        pools=[
            {
                **pool,
                "model": "MLU590",
                "acceleratorType": "MLU",
                "powerWatts": 350,
                "peakTFLOPS": {"fp16": 314},
            }
        ],
    )
    refusal = _refusal(kubectl, custom_without_memory)
    assert "spec.pools[0].model" in refusal and "MLU590 of pool ascend-910b" in refusal, refusal
    assert "memoryGiB" in refusal
    # A pool says how its accelerators are handed out: one of resourceName and deviceClassName, and
    # selectors only with a DeviceClass.
    dra = {k: v for k, v in pool.items() if k != "resourceName"}
    both = _center(name, pools=[{**pool, "deviceClassName": "npu.example.com"}])
    neither = _center(name, pools=[dra])
    stray_selectors = _center(name, pools=[{**pool, "selectors": [{"cel": {"expression": "true"}}]}])
    for obj in (both, neither):
        refusal = _refusal(kubectl, obj)
        assert "pool ascend-910b must give exactly one of resourceName" in refusal, refusal
    refusal = _refusal(kubectl, stray_selectors)
    assert "spec.pools[0].selectors" in refusal and "need deviceClassName" in refusal, refusal
    # Suanli agrees on all of them
    for obj in (unknown_key, custom_without_memory, both, neither, stray_selectors):
        with pytest.raises(manifests.InvalidManifests):
            manifests.parse_object(obj, "inline")


def test_cel_accepts_what_is_valid(kubectl: Any, namespace: str, centers_made: list[str]) -> None:
    """The rules do not refuse the valid corner cases: a custom model with its figures, zero data."""
    name = f"it-ok-{uuid.uuid4().hex[:5]}"
    centers_made.append(name)
    pool = _center(name)["spec"]["pools"][0]
    custom = {
        **pool,
        "name": "mlu590",
        "model": "MLU590",
        "acceleratorType": "MLU",
        "powerWatts": 350,
        "memoryGiB": 80,
        "peakTFLOPS": {"fp16": 314, "bf16": 314, "int8": 628},
    }
    dra = {**{k: v for k, v in pool.items() if k not in ("resourceName", "name")}, "name": "dra",
           "deviceClassName": "npu.example.com",
           "selectors": [{"cel": {"expression": 'device.attributes["npu.example.com"].model == "910B"'}}]}
    center = _center(name, pools=[pool, custom, dra], network={"links": [{"region": "cn-a", "bandwidthGbps": 10}]})
    _ok(_apply(kubectl, center))
    manifests.parse_object(copy.deepcopy(center), "inline")  # and Suanli agrees
    job = _job(
        "ok",
        data={"sizeGiB": 0},
        runtime={"estimatedDuration": "1h30m", "referenceModel": "H100"},
        schedule={"deadline": "2027-01-01T00:00:00+08:00"},
        policy={"profile": "green", "weights": {"energy": 1}},
    )
    _ok(_apply(kubectl, job, namespace))


def test_refusals_name_the_offending_value(kubectl: Any, namespace: str, centers_made: list[str]) -> None:
    name = f"it-msg-{uuid.uuid4().hex[:5]}"
    centers_made.append(name)
    pool = _center(name)["spec"]["pools"][0]
    wrong_type = _refusal(kubectl, _center(name, pools=[{**pool, "acceleratorType": "GPU"}]))
    assert "model Ascend910B is catalogued as NPU, not GPU; set acceleratorType: NPU" in wrong_type, (
        wrong_type
    )
    no_image = _refusal(
        kubectl, _job("no-dcu-image", accelerators={"count": 1, "types": ["NPU", "DCU"]}), namespace
    )
    assert "spec.images has no image for DCU" in no_image and "add images.DCU" in no_image, no_image


def test_region_is_immutable(kubectl: Any, centers_made: list[str]) -> None:
    name = f"it-region-{uuid.uuid4().hex[:5]}"
    centers_made.append(name)
    _ok(_apply(kubectl, _center(name)))
    _ok(_apply(kubectl, _center(name, energy={"pue": 1.3})))  # other fields may change
    proc = _apply(kubectl, _center(name, region="cn-elsewhere"))
    assert _refused_by_server(proc), proc.stdout
    assert "spec.region is immutable" in proc.stderr, proc.stderr


def test_what_placed_a_bound_job_cannot_change_until_it_is_suspended(kubectl: Any, namespace: str) -> None:
    """The API server refuses a change of a placement field while status.phase is Bound or Running, with a
    message saying what to do; priority and spec.suspend may change; once Suspended, anything may."""
    _ok(_apply(kubectl, _job("placed"), namespace))
    _patch_status(kubectl, "cjob", "placed", {"phase": "Running", "binding": BINDING}, "-n", namespace)

    def patch(spec: dict[str, Any]) -> Any:
        return kubectl("patch", "cjob", "placed", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec}))

    for spec, field in (({"replicas": 3}, "spec.replicas"), ({"accelerators": {"count": 2}}, "spec.accelerators"),
                        ({"data": {"region": "cn-elsewhere"}}, "spec.data"), ({"queue": "other"}, "spec.queue")):
        proc = patch(spec)
        assert proc.returncode != 0 and f"{field} cannot change while the job is Bound or Running" in proc.stderr, (
            spec, proc.stderr)
        assert "suspend the job first (spec.suspend: true)" in proc.stderr
    _ok(patch({"priority": 7}))
    _ok(patch({"suspend": True}))
    _patch_status(kubectl, "cjob", "placed", {"phase": "Suspended", "binding": None}, "-n", namespace)
    _ok(patch({"replicas": 3, "accelerators": {"count": 2}}))
    stored = json.loads(_ok(kubectl("get", "cjob", "placed", "-n", namespace, "-o", "json")))
    assert stored["spec"]["replicas"] == 3 and stored["spec"]["accelerators"]["count"] == 2


def test_a_status_written_when_attempts_was_a_count_stays_writable_and_reads_as_requeues(
    kube: Any, custom_objects: Any, namespace: str, wait_for: Any
) -> None:
    """Upgrade: a ComputeJob whose status.attempts is the count the CRD once had (an integer) under
    today's schema (a list). The API server ratchets validation (an update that leaves an invalid
    field as it was is not refused for it), so the operator's status writes go on; it reads the count
    as requeues with no history; writing the list replaces it. Played on a copy of the CRD in a group
    of its own, so the real one is never swapped under other tests."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from suanli.kube import cache as cache_mod

    group = f"upgrade{uuid.uuid4().hex[:6]}.suanli.io"
    new = yaml.safe_load((REPO / "crds" / "computejobs.suanli.io.yaml").read_text())
    new["metadata"] = {"name": f"computejobs.{group}"}
    new["spec"]["group"] = group
    new["spec"]["names"] = {k: v for k, v in new["spec"]["names"].items() if k not in ("shortNames", "categories")}
    old = copy.deepcopy(new)
    old_status = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    old_status["attempts"] = {"type": "integer", "minimum": 0, "description": "Times the job was requeued."}
    apiext = client.ApiextensionsV1Api(kube.api_client)
    apiext.create_custom_resource_definition(old)
    try:
        def established() -> bool:
            crd = apiext.read_custom_resource_definition(old["metadata"]["name"])
            return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

        wait_for(established, 30, "the old CRD established")
        version = new["spec"]["versions"][0]["name"]
        doc = {**compute_job_doc("upgraded", namespace), "apiVersion": f"{group}/{version}"}
        plural = new["spec"]["names"]["plural"]
        wait_for(lambda: _created(custom_objects, group, version, namespace, plural, doc), 30, "the job created")
        custom_objects.patch_namespaced_custom_object_status(
            group, version, namespace, plural, "upgraded", {"status": {"phase": "Queued", "attempts": 2}})

        current = apiext.read_custom_resource_definition(old["metadata"]["name"])
        new["metadata"]["resourceVersion"] = current.metadata.resource_version
        apiext.replace_custom_resource_definition(old["metadata"]["name"], new)

        probes = iter(range(3, 1000))

        def list_schema_in_force() -> bool:  # a changed count is refused once the list schema is served
            try:
                custom_objects.patch_namespaced_custom_object_status(
                    group, version, namespace, plural, "upgraded", {"status": {"attempts": next(probes)}})
            except ApiException as exc:
                return exc.status == 422
            return False

        wait_for(list_schema_in_force, 30, "the list schema in force")
        # The operator's writes that leave attempts alone go through (ratcheting) ...
        custom_objects.patch_namespaced_custom_object_status(
            group, version, namespace, plural, "upgraded", {"status": {"phase": "Running", "message": "running"}})
        stored = custom_objects.get_namespaced_custom_object(group, version, namespace, plural, "upgraded")
        count = stored["status"]["attempts"]  # 2, or a probe's count written before the list schema was served
        assert isinstance(count, int) and count >= 2 and stored["status"]["phase"] == "Running", stored["status"]
        # ... and the count reads as requeues, with no history.
        record = cache_mod.Cache().upsert_job({**stored, "apiVersion": "suanli.io/v1alpha1"}, 0.0)
        assert (record.requeues, record.attempts, record.history) == (count, count, [])
        # Writing the list replaces the count.
        listed = [{"attempt": 0, "center": "c1", "pool": "a100", "bound": "2026-12-01T10:00:00Z",
                   "ended": "2026-12-01T11:00:00Z", "outcome": "Requeued"}]
        custom_objects.patch_namespaced_custom_object_status(
            group, version, namespace, plural, "upgraded", {"status": {"attempts": listed, "requeues": 3}})
        stored = custom_objects.get_namespaced_custom_object(group, version, namespace, plural, "upgraded")
        assert stored["status"]["attempts"] == listed
    finally:
        apiext.delete_custom_resource_definition(old["metadata"]["name"])


def compute_job_doc(name: str, namespace: str) -> dict[str, Any]:
    from tests.e2e.helpers import compute_job

    return compute_job(name, namespace, count=1)


def _created(custom_objects: Any, group: str, version: str, namespace: str, plural: str, doc: dict[str, Any]) -> bool:
    """Create the object; False while the new kind is not served yet (404)."""
    from kubernetes.client.exceptions import ApiException

    try:
        custom_objects.create_namespaced_custom_object(group, version, namespace, plural, doc)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
