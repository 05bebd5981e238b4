"""`kubectl suanli ...`: the real kubectl finds kubectl-suanli (installed with the package) on PATH and the
plugin reads the kubeconfig as kubectl does ($KUBECONFIG, --kubeconfig, --context, -n, the context's
namespace), against the cluster under test. Works with any kubeconfig (tests/e2e/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.cluster.pytest_plugin import LOCAL_STATE_DIR
from tests.e2e.helpers import (  # noqa: F401  (centers_fixture, operator_fixture: fixtures)
    GROUP,
    VERSION,
    centers_fixture,
    compute_job,
    only_on,
    operator_fixture,
    small_center,
    wait_for_phase,
)
from tests.tools import sa_kubeconfig

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
PLUGIN = Path(sys.executable).parent / "kubectl-suanli"
UNREACHABLE = "https://127.0.0.1:1"  # nothing listens on port 1


def _kubectl_dir() -> str:
    local = LOCAL_STATE_DIR / "bin" / "kubectl"  # the cluster under test's (CLUSTER=NAME has its own)
    return str(local.parent if local.exists() else Path(sa_kubeconfig.kubectl()).parent)


def kubectl(*args: str, kubeconfig: str | None) -> subprocess.CompletedProcess[str]:
    """The real kubectl, with the plugin's folder on PATH and KUBECONFIG set (or unset) as a user's shell has it."""
    assert PLUGIN.exists(), f"{PLUGIN} is missing: `make venv` installs it ([project.scripts] in pyproject.toml)"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["PATH"] = os.pathsep.join([_kubectl_dir(), str(PLUGIN.parent), env.get("PATH", "")])
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    return subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60, check=False, env=env, cwd=REPO)


def two_context_kubeconfig(kubeconfig: str, namespace: str, path: Path) -> Path:
    """A copy of the kubeconfig whose current context, "elsewhere", points at no API server, and whose
    context "second" is the cluster under test with `namespace` as its namespace."""
    doc = yaml.safe_load(Path(kubeconfig).read_text())
    current = next(c for c in doc["contexts"] if c["name"] == doc["current-context"])
    for cluster in doc["clusters"]:  # inline certificate paths made absolute (the copy lives elsewhere)
        ca = cluster["cluster"].get("certificate-authority")
        if ca:
            cluster["cluster"]["certificate-authority"] = str((Path(kubeconfig).parent / ca).resolve())
    for user in doc["users"]:
        for key in ("client-certificate", "client-key", "tokenFile"):
            if user["user"].get(key):
                user["user"][key] = str((Path(kubeconfig).parent / user["user"][key]).resolve())
    doc["clusters"].append({"name": "nowhere", "cluster": {"server": UNREACHABLE, "insecure-skip-tls-verify": True}})
    doc["contexts"] = [
        {"name": "second", "context": {**current["context"], "namespace": namespace}},
        {"name": "elsewhere", "context": {"cluster": "nowhere", "user": current["context"]["user"]}},
    ]
    doc["current-context"] = "elsewhere"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubectl_finds_the_plugin_and_its_help_lists_the_commands() -> None:
    listed = kubectl("plugin", "list", kubeconfig=None)
    assert str(PLUGIN) in listed.stdout, listed.stdout + listed.stderr
    helped = kubectl("suanli", "--help", kubeconfig=None)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: kubectl suanli")
    for command in ("explain", "plan", "join"):
        assert f"    {command} " in helped.stdout, helped.stdout
    assert "    run " not in helped.stdout, "the operator is not a kubectl command"
    explained = kubectl("suanli", "explain", "--help", kubeconfig=None)
    assert all(flag in explained.stdout for flag in ("--kubeconfig", "--context", "-n NS, --namespace NS")), explained.stdout


def test_kubectl_suanli_plan_reads_manifests_without_a_cluster() -> None:
    proc = kubectl("suanli", "plan", "-f", "crds/examples/", "-o", "json", kubeconfig=str(REPO / "nonexistent"))
    assert proc.returncode == 0, proc.stderr
    assert '"phase": "Bound"' in proc.stdout


def test_kubectl_suanli_explain_on_a_live_job(
    kube: Any, tmp_path: Path, custom_objects: Any, namespace: str, fake_nodes: Any, centers: Any, operator: Any
) -> None:
    name = f"explained-{uuid.uuid4().hex[:5]}"
    job = compute_job(name, namespace)
    center = small_center(f"e2e-plugin-{uuid.uuid4().hex[:5]}", 1)
    only_on(center, job)
    center["spec"]["region"] = f"{center['metadata']['name']}-elsewhere"  # the job's region is no center's
    fake_nodes(center, nodes_per_pool=1)
    centers([center])
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", job)
    wait_for_phase(custom_objects, namespace, name, "Queued", what="the operator to queue the job (no center may take it)")
    heading = f"{namespace}/{name}: Queued"

    by_path = kubectl("suanli", "explain", f"{namespace}/{name}", kubeconfig=kube.kubeconfig)
    assert by_path.returncode == 0, by_path.stderr
    assert by_path.stdout.startswith(heading + "\n"), by_path.stdout
    assert len(by_path.stdout.splitlines()) > 1, "the explanation says why it waits"
    by_flag = kubectl("suanli", "explain", name, "-n", namespace, kubeconfig=kube.kubeconfig)
    assert (by_flag.returncode, by_flag.stdout) == (0, by_path.stdout), by_flag.stderr

    copy = str(two_context_kubeconfig(kube.kubeconfig, namespace, tmp_path / "kubeconfig"))
    # --context picks the context, and its namespace is the job's default namespace (no -n).
    picked = kubectl("suanli", "explain", name, "--kubeconfig", copy, "--context", "second", kubeconfig=None)
    assert picked.returncode == 0, picked.stderr
    assert picked.stdout.startswith(heading), picked.stdout
    # $KUBECONFIG is read as kubectl reads it.
    from_env = kubectl("suanli", "explain", name, "--context", "second", kubeconfig=copy)
    assert from_env.returncode == 0 and from_env.stdout.startswith(heading), from_env.stderr
    # Without --context the current context ("elsewhere", no API server) is used, and the error says which.
    current = kubectl("suanli", "explain", name, "-n", namespace, kubeconfig=copy)
    assert current.returncode == 1 and current.stdout == ""
    assert "cannot reach the cluster of context elsewhere" in current.stderr and "--context" in current.stderr

    wrong = kubectl("suanli", "explain", name, "--context", "nope", kubeconfig=copy)
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert f"context 'nope' is not in kubeconfig {copy} (from $KUBECONFIG); its contexts: elsewhere, second." in (
        wrong.stderr
    ), wrong.stderr
    assert "--context NAME" in wrong.stderr and "kubectl config get-contexts" in wrong.stderr

    missing = kubectl("suanli", "explain", "no-such-job", "-n", namespace, kubeconfig=kube.kubeconfig)
    assert missing.returncode == 1
    assert f"no ComputeJob {namespace}/no-such-job (kubectl get cjob -n {namespace}" in missing.stderr
