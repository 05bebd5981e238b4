"""The chart against a real API server: server-side dry run, `helm install`, and the RBAC it grants.

The Deployment never becomes ready here (kwok runs no containers and there is no image), so
nothing waits for it. What is checked: the API server accepts every rendered object; the
release creates them; `kubectl auth can-i` as the chart's ServiceAccount allows what the
operator needs and refuses the rest; and acting AS the ServiceAccount (a TokenRequest token,
tests/tools/sa_kubeconfig.py), the operator can patch metadata and status of a ComputeJob but
the admission policy refuses any spec change.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e.helpers import kubectl  # noqa: E402
from tests.tools import helmkit, sa_kubeconfig  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

HELM_TIMEOUT_S = 180
# Kinds whose CRDs (prometheus-operator's) the local API server does not have.
NOT_SERVED = {"ServiceMonitor", "PrometheusRule"}


@pytest.fixture(scope="module")
def release(kube: Any) -> Iterator[dict[str, str]]:
    """The chart installed with `helm install` into a fresh namespace; uninstalled afterwards."""
    suffix = uuid.uuid4().hex[:6]
    name, namespace = f"suanli-{suffix}", f"suanli-system-{suffix}"
    env_kubeconfig = ["--kubeconfig", kube.kubeconfig]
    proc = helmkit.helm_run(
        [
            "install",
            name,
            str(helmkit.CHART),
            "--namespace",
            namespace,
            "--create-namespace",
            "--timeout",
            f"{HELM_TIMEOUT_S}s",
            *env_kubeconfig,
        ],
        timeout=HELM_TIMEOUT_S + 30,
    )
    assert proc.returncode == 0, f"helm install failed:\n{proc.stdout}\n{proc.stderr}"
    info = {
        "name": name,
        "namespace": namespace,
        "sa": name,
        "kubeconfig": kube.kubeconfig,
        "notes": proc.stdout,
    }
    try:
        yield info
    finally:
        helmkit.helm_run(
            ["uninstall", name, "--namespace", namespace, "--timeout", "60s", *env_kubeconfig], timeout=120
        )
        kubectl(kube.kubeconfig, "delete", "namespace", namespace, "--wait=false", "--ignore-not-found")


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"replicaCount": 1, "networkPolicy": {"enabled": False}},
        {"admissionPolicy": {"enabled": False}},
    ],
    ids=["defaults", "ha-off", "admission-policy-off"],
)
def test_server_side_dry_run_accepts_every_object(kube: Any, values: dict[str, Any], tmp_path: Path) -> None:
    objects = helmkit.render(values, namespace="default", tmp_dir=tmp_path, extra=["--skip-crds"])
    served = [obj for obj in objects if obj["kind"] not in NOT_SERVED]
    assert len(served) >= 10
    manifest = yaml.safe_dump_all(served, sort_keys=False)
    proc = kubectl(kube.kubeconfig, "apply", "--dry-run=server", "-f", "-", stdin=manifest)
    assert proc.returncode == 0, f"the API server refused the rendered chart:\n{proc.stderr}"
    assert proc.stdout.count("(server dry run)") == len(served), proc.stdout


def test_install_creates_the_objects(release: dict[str, str]) -> None:
    ns, name = release["namespace"], release["name"]
    for kind, obj_name, namespaced in [
        ("deployment", name, True),
        ("serviceaccount", name, True),
        ("configmap", f"{name}-config", True),
        ("configmap", f"{name}-dashboard", True),
        ("service", f"{name}-metrics", True),
        ("poddisruptionbudget", name, True),
        ("networkpolicy", name, True),
        ("role", name, True),
        ("rolebinding", name, True),
        ("clusterrole", name, False),
        ("clusterrolebinding", name, False),
        ("validatingadmissionpolicy", f"{name}-no-spec-writes", False),
        ("validatingadmissionpolicybinding", f"{name}-no-spec-writes", False),
        ("crd", "computejobs.suanli.io", False),
        ("crd", "computecenters.suanli.io", False),
    ]:
        args = ["get", kind, obj_name, "-o", "name"] + (["-n", ns] if namespaced else [])
        proc = kubectl(release["kubeconfig"], *args)
        assert proc.returncode == 0, f"{kind} {obj_name} missing after helm install: {proc.stderr}"
    assert "Suanli" in release["notes"] and ns in release["notes"]


def _can_i(release: dict[str, str], verb: str, resource: str, *scope: str) -> bool:
    user = f"system:serviceaccount:{release['namespace']}:{release['sa']}"
    proc = kubectl(release["kubeconfig"], "auth", "can-i", verb, resource, *scope, "--as", user)
    assert proc.stdout.strip() in {"yes", "no"}, f"kubectl auth can-i: {proc.stdout} {proc.stderr}"
    return proc.stdout.strip() == "yes"


ALLOWED = [
    ("list", "computejobs.suanli.io", "--all-namespaces"),
    ("watch", "computejobs.suanli.io", "--all-namespaces"),
    ("patch", "computejobs.suanli.io", "-n", "team-a"),
    ("patch", "computejobs.suanli.io/status", "-n", "team-a"),
    ("get", "computejobs.suanli.io/status", "-n", "team-a"),
    ("list", "computecenters.suanli.io"),
    ("patch", "computecenters.suanli.io"),
    ("patch", "computecenters.suanli.io/status"),
    ("list", "nodes"),
    ("watch", "pods", "--all-namespaces"),
    ("patch", "pods", "-n", "team-a"),
    ("create", "jobs.batch", "-n", "team-a"),
    ("delete", "jobs.batch", "-n", "team-b"),
    ("patch", "jobs.batch", "-n", "team-b"),
    ("create", "services", "-n", "team-a"),
    ("delete", "services", "-n", "team-b"),
    ("watch", "resourceslices.resource.k8s.io"),
    ("list", "deviceclasses.resource.k8s.io"),
    ("watch", "resourceclaims.resource.k8s.io", "--all-namespaces"),
    ("create", "resourceclaimtemplates.resource.k8s.io", "-n", "team-a"),
    ("delete", "resourceclaimtemplates.resource.k8s.io", "-n", "team-b"),
    ("create", "events", "-n", "default"),
    ("create", "events.events.k8s.io", "-n", "team-a"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
]
DENIED = [
    ("update", "computejobs.suanli.io", "-n", "team-a"),
    ("create", "computejobs.suanli.io", "-n", "team-a"),
    ("delete", "computejobs.suanli.io", "-n", "team-a"),
    ("update", "computejobs.suanli.io/status", "-n", "team-a"),
    ("update", "computecenters.suanli.io"),
    ("delete", "computecenters.suanli.io"),
    ("get", "secrets", "-n", "default"),
    ("get", "secrets", "-n", "kube-system"),
    ("list", "secrets", "--all-namespaces"),
    ("get", "configmaps", "-n", "default"),
    ("create", "deployments.apps", "-n", "team-a"),
    ("create", "pods", "-n", "team-a"),
    ("delete", "pods", "-n", "team-a"),
    ("patch", "services", "-n", "team-a"),
    ("list", "services", "--all-namespaces"),
    ("create", "resourceslices.resource.k8s.io"),
    ("patch", "resourceclaims.resource.k8s.io", "-n", "team-a"),
    ("create", "resourceclaims.resource.k8s.io", "-n", "team-a"),
    ("create", "deviceclasses.resource.k8s.io"),
    ("list", "resourceclaimtemplates.resource.k8s.io", "--all-namespaces"),
    ("delete", "nodes"),
    ("patch", "nodes"),
    ("create", "leases.coordination.k8s.io", "-n", "default"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("impersonate", "serviceaccounts", "-n", "default"),
    ("create", "serviceaccounts/token", "-n", "default"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
]


@pytest.mark.parametrize("check", ALLOWED, ids=lambda c: " ".join(c))
def test_service_account_can(release: dict[str, str], check: tuple[str, ...]) -> None:
    assert _can_i(release, *check), f"the operator's ServiceAccount cannot {' '.join(check)}"


@pytest.mark.parametrize("check", DENIED, ids=lambda c: " ".join(c))
def test_service_account_cannot(release: dict[str, str], check: tuple[str, ...]) -> None:
    assert not _can_i(release, *check), f"the operator's ServiceAccount must not {' '.join(check)}"


def test_secrets_and_lease_only_in_the_release_namespace(release: dict[str, str]) -> None:
    ns = release["namespace"]
    assert _can_i(release, "get", "secrets", "-n", ns)
    assert not _can_i(release, "create", "secrets", "-n", ns)
    assert not _can_i(release, "delete", "secrets", "-n", ns)
    assert _can_i(release, "create", "leases.coordination.k8s.io", "-n", ns)
    assert _can_i(release, "update", "leases.coordination.k8s.io/suanli-operator-leader", "-n", ns)
    assert not _can_i(release, "update", "leases.coordination.k8s.io/kube-controller-manager", "-n", ns)


JOB = {
    "apiVersion": "suanli.io/v1alpha1",
    "kind": "ComputeJob",
    "metadata": {"name": "rbac-probe"},
    "spec": {
        "replicas": 1,
        "accelerators": {"count": 1, "types": ["GPU"]},
        "images": {"GPU": "registry.example.com/probe:1"},
        "template": {"spec": {"containers": [{"name": "main"}], "restartPolicy": "Never"}},
    },
}


def test_acting_as_the_service_account(
    release: dict[str, str], namespace: str, tmp_path: Path, wait_for: Any
) -> None:
    """What kopf and the operator write is allowed; a spec change is refused by the admission policy."""
    admin = release["kubeconfig"]
    proc = kubectl(admin, "apply", "-n", namespace, "-f", "-", stdin=json.dumps(JOB))
    assert proc.returncode == 0, f"could not create the probe ComputeJob: {proc.stderr}"
    sa = str(
        sa_kubeconfig.write(admin, release["namespace"], release["sa"], tmp_path / "sa.kubeconfig", "10m")
    )

    def as_sa(*args: str) -> subprocess.CompletedProcess[str]:
        return kubectl(sa, *args)

    listed = as_sa("get", "computejobs.suanli.io", "-A", "-o", "name")
    assert listed.returncode == 0 and "rbac-probe" in listed.stdout, listed.stderr
    denied = as_sa("get", "secrets", "-n", "default")
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()

    # kopf: finalizer and its annotations (merge patch on the main resource).
    meta = {
        "metadata": {
            "finalizers": ["kopf.zalando.org/KopfFinalizerMarker"],
            "annotations": {"kopf.zalando.org/last-handled-configuration": "{}"},
        }
    }
    ok = as_sa(
        "patch", "computejob.suanli.io", "rbac-probe", "-n", namespace, "--type=merge", "-p", json.dumps(meta)
    )
    assert ok.returncode == 0, f"the operator could not patch finalizers/annotations: {ok.stderr}"
    # The operator: status through the status subresource.
    status = {"status": {"phase": "Queued", "message": "rbac probe"}}
    ok = as_sa(
        "patch",
        "computejob.suanli.io",
        "rbac-probe",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    assert ok.returncode == 0, f"the operator could not patch status: {ok.stderr}"

    # Never spec: the ValidatingAdmissionPolicy refuses it (it may take a moment to be enforced).
    def spec_patch_refused() -> str | None:
        out = as_sa(
            "patch",
            "computejob.suanli.io",
            "rbac-probe",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"priority": 7}}),
        )
        if out.returncode == 0:
            # Enforcement not active yet: undo as admin and try again.
            kubectl(
                admin,
                "patch",
                "computejob.suanli.io",
                "rbac-probe",
                "-n",
                namespace,
                "--type=json",
                "-p",
                '[{"op": "remove", "path": "/spec/priority"}]',
            )
            return None
        return out.stderr

    refused = wait_for(spec_patch_refused, 30, "the admission policy to refuse a spec patch by the operator")
    assert "must not change the spec" in refused, refused
    # The admin (a person, Git) still may.
    ok = kubectl(
        admin,
        "patch",
        "computejob.suanli.io",
        "rbac-probe",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"priority": 7}}),
    )
    assert ok.returncode == 0, ok.stderr
    # Let the namespace go: remove the finalizer nobody will process here.
    kubectl(
        admin,
        "patch",
        "computejob.suanli.io",
        "rbac-probe",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"metadata": {"finalizers": null}}',
    )
