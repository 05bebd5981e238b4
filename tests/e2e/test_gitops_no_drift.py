"""GitOps shows no drift: the operator never writes `spec`.

ComputeCenters and ComputeJobs are applied the way Argo CD's server-side apply does it
(`kubectl apply --server-side --field-manager=argocd-controller`); the operator (its own code, with
admin rights: the chart's admission policy is not there to hide a spec write) runs them to
completion. Then, for every object: `metadata.generation` is unchanged, the live `spec` is
byte-identical to what the API server stored at apply time and equal to the manifest once the
CRD's defaults are taken out, no field manager but argocd-controller owns any `f:spec` field, and
`kubectl diff --server-side --field-manager=argocd-controller` reports nothing (exit 0) outside
`status` (tests/tools/spec_diff.py). A spec patch by another manager is then caught by both checks.
Run it on a cluster no other operator test uses at the same time (an operator watches every
namespace, so another test's operator or unconstrained jobs would take part), e.g. a private one:
SUANLI_CLUSTER_DIR=/tmp/c2 SUANLI_APISERVER_PORT=37443 ... bash tests/cluster/up.sh, then KUBECONFIG=/tmp/c2/kubeconfig.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e import helpers
from tests.e2e.helpers import EXPECT_TIMEOUT_S, GROUP, REPO, VERSION
from tests.tools import sa_kubeconfig

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.timeout(600)]

MANAGER = "argocd-controller"
SPEC_DIFF = REPO / "tests" / "tools" / "spec_diff.py"
PLURAL = {"ComputeCenter": "computecenters", "ComputeJob": "computejobs"}


def _spec_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        version = next(v for v in crd["spec"]["versions"] if v["name"] == VERSION)
        out[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return out


def without_defaults(live: Any, manifest: Any, schema: dict[str, Any], path: str = "spec") -> Any:
    """``live`` minus the fields the API server defaulted from the CRD schema (absent from the
    manifest, with a schema ``default`` equal to the live value). A field the manifest lacks and the
    schema has no default for stays, so the comparison with the manifest then fails and names it."""
    if isinstance(live, dict) and isinstance(manifest, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else {}
        out = {}
        for key, value in live.items():
            sub = props.get(key, extra or {})
            if key not in manifest and "default" in sub and sub["default"] == value:
                continue
            out[key] = without_defaults(value, manifest.get(key), sub, f"{path}.{key}")
        return out
    if isinstance(live, list) and isinstance(manifest, list) and len(live) == len(manifest):
        items = schema.get("items") or {}
        return [without_defaults(v, m, items, f"{path}[{i}]") for i, (v, m) in enumerate(zip(live, manifest, strict=True))]
    return live


def json_numbers(value: Any) -> Any:
    """YAML's 41.0 comes back from the API server as the JSON number 41: compare numbers as JSON does."""
    if isinstance(value, dict):
        return {k: json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _spec_owners(obj: dict[str, Any]) -> dict[str, list[str]]:
    """Field manager -> the top-level f:spec keys it owns (from metadata.managedFields)."""
    owners = {}
    for entry in obj["metadata"].get("managedFields") or []:
        spec = (entry.get("fieldsV1") or {}).get("f:spec")
        if spec is not None:
            owners[f"{entry['manager']} ({entry['operation']}, {entry.get('subresource', 'main')})"] = sorted(spec)
    return owners


def git_diff(kubeconfig: str, path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`kubectl diff --server-side --field-manager=argocd-controller`, status left out of the comparison:
    the operator rewrites status all the time (a Deferred job's plannedStart on every re-plan), which
    races kubectl's two reads; status is the operator's, not Git's."""
    # kubectl passes on only flag arguments of KUBECTL_EXTERNAL_DIFF: a wrapper names the script.
    wrapper = path.parent / "spec-diff.sh"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{SPEC_DIFF}" "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "KUBECTL_EXTERNAL_DIFF": str(wrapper)}
    return subprocess.run(
        [sa_kubeconfig.kubectl(), "--kubeconfig", kubeconfig, "diff", "--server-side", f"--field-manager={MANAGER}",
         *flags, "-f", str(path)], capture_output=True, text=True, timeout=60, check=False, env=env,
    )


def test_operator_never_writes_spec_and_argocd_sees_no_drift(
    kube, namespace, custom_objects, fake_nodes, wait_for, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:5]
    fleet, _ = helpers.example_fleet(suffix, 4)
    fake_nodes(fleet, nodes_per_pool=None, max_nodes_per_pool=4)
    jobs = [doc for doc, _ in helpers.example_jobs(namespace)]
    manifests = [*fleet, *jobs]
    path = tmp_path / "git.yaml"
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    centers = [c["metadata"]["name"] for c in fleet]
    op = helpers.Operator(kube.kubeconfig, tmp_path, ["--namespace", namespace])
    try:
        applied = helpers.kubectl(kube.kubeconfig, "apply", "--server-side", f"--field-manager={MANAGER}", "-f", str(path))
        assert applied.returncode == 0, applied.stderr

        def live(doc: dict[str, Any]) -> dict[str, Any]:
            name, plural = doc["metadata"]["name"], PLURAL[doc["kind"]]
            if doc["kind"] == "ComputeJob":
                return custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
            return custom_objects.get_cluster_custom_object(GROUP, VERSION, plural, name)

        before = {(d["kind"], d["metadata"]["name"]): live(d) for d in manifests}
        op.start()

        def settled() -> dict[str, str] | None:
            phases = helpers.job_phases(custom_objects, namespace)
            busy = {n: p for n, p in phases.items() if p not in ("Succeeded", "Failed", "Queued", "Deferred", "Invalid")}
            centers_seen = all((live(c).get("status") or {}).get("observedGeneration") for c in fleet)
            return phases if not busy and centers_seen and len(phases) == len(jobs) else None

        phases = wait_for(settled, EXPECT_TIMEOUT_S, lambda: helpers.job_phases(custom_objects, namespace),
                          what="every job to finish, queue or defer")
        assert "Succeeded" in phases.values(), phases

        schemas = _spec_schemas()
        problems: list[str] = []
        for doc in manifests:
            key = (doc["kind"], doc["metadata"]["name"])
            now, then = live(doc), before[key]
            where = f"{doc['kind']} {doc['metadata']['name']}"
            if now["metadata"]["generation"] != then["metadata"]["generation"]:
                problems.append(f"{where}: generation {then['metadata']['generation']} -> {now['metadata']['generation']}")
            if json.dumps(now["spec"], sort_keys=True) != json.dumps(then["spec"], sort_keys=True):
                problems.append(f"{where}: spec changed after apply:\n  {then['spec']}\n  {now['spec']}")
            stripped = without_defaults(now["spec"], doc["spec"], schemas[doc["kind"]])
            if json.dumps(json_numbers(stripped), sort_keys=True) != json.dumps(json_numbers(doc["spec"]), sort_keys=True):
                problems.append(f"{where}: live spec (defaults removed) differs from Git:\n  {doc['spec']}\n  {stripped}")
            others = {m: f for m, f in _spec_owners(now).items() if not m.startswith(f"{MANAGER} ")}
            if others:
                problems.append(f"{where}: spec fields owned by other managers: {others}")
            if MANAGER not in " ".join(_spec_owners(now)):
                problems.append(f"{where}: {MANAGER} owns no spec field: {_spec_owners(now)}")
            observed = (now.get("status") or {}).get("observedGeneration")
            if observed != now["metadata"]["generation"]:
                problems.append(f"{where}: status.observedGeneration {observed} != generation {now['metadata']['generation']}")
        assert not problems, "\n".join(problems)

        diff = git_diff(kube.kubeconfig, path)
        assert diff.returncode == 0, f"kubectl diff found drift (exit {diff.returncode}):\n{diff.stdout}\n{diff.stderr}"

        # The checks can fail: a spec write by anyone else shows in managedFields and in the diff.
        target = jobs[0]["metadata"]["name"]
        patched = helpers.kubectl(kube.kubeconfig, "-n", namespace, "patch", "computejob.suanli.io", target, "--type=merge",
                              "--field-manager=intruder", "-p", json.dumps({"spec": {"priority": 1}}))
        assert patched.returncode == 0, patched.stderr
        owners = _spec_owners(live(jobs[0]))
        assert any(m.startswith("intruder ") and "f:priority" in f for m, f in owners.items()), owners
        diff = git_diff(kube.kubeconfig, path, "--force-conflicts")  # plain: exit 2, a conflict with "intruder"
        assert diff.returncode == 1 and "priority" in diff.stdout, (diff.returncode, diff.stdout, diff.stderr)
    finally:
        helpers.stop_and_clean_up(op, custom_objects, namespace, centers)
