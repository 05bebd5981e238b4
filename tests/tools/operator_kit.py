"""Shared pieces of the operator e2e tests: `suanli run` as a subprocess, the chart installed with
the real Helm, and capturing live objects as Argo CD health fixtures (checked in real Lua at once).

    op = operator_kit.Operator(kubeconfig, tmp_path, extra_args=["--namespace", ns])
    op.start(); ...; op.stop()

    with operator_kit.helm_release(admin_kubeconfig, tmp_path) as release:   # name, namespace, sa
        ...

Everything listens on 127.0.0.1 and every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from tests.tools import argocd_capture, helmkit, sa_kubeconfig

REPO = Path(__file__).resolve().parents[2]
SUANLI = REPO / ".venv" / "bin" / "suanli"
GROUP, VERSION = "suanli.io", "v1alpha1"
HEALTH_TIMEOUT_S = 60.0
HELM_TIMEOUT_S = 180
# SUANLI_ARGOCD_CAPTURE=1: captured objects go to tests/unit/argocd_fixtures (to commit);
# otherwise to $SUANLI_ARGOCD_FIXTURES_DIR if set, else the test's tmp folder (checked, not kept).
CAPTURE_ENV = "SUANLI_ARGOCD_CAPTURE"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sa_kubeconfig.kubectl(), "--kubeconfig", kubeconfig, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Operator:
    """`suanli run` in a subprocess, listening on 127.0.0.1 only; `stop()` is SIGTERM then SIGKILL."""

    def __init__(self, kubeconfig: str, log_dir: Path, extra_args: Sequence[str] = ()):
        self.kubeconfig, self.log_dir, self.extra_args = kubeconfig, log_dir, list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = log_dir / "operator-0.log"

    def start(self) -> None:
        self.metrics_port, self.health_port = free_port(), free_port()
        self.starts += 1
        self.log_path = self.log_dir / f"operator-{self.starts}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 (the child writes it)
        self.proc = subprocess.Popen(
            [
                str(SUANLI), "run", "--kubeconfig", self.kubeconfig,
                "--metrics-address", "127.0.0.1", "--metrics-port", str(self.metrics_port),
                "--health-address", "127.0.0.1", "--health-port", str(self.health_port),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the operator exited ({self.proc.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1).status == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"the operator's /healthz did not answer within {HEALTH_TIMEOUT_S:g}s:\n{self.log_tail()}")

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log")))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)


@contextlib.contextmanager
def helm_release(admin_kubeconfig: str, tmp_dir: Path, values: dict[str, Any] | None = None) -> Iterator[dict[str, str]]:
    """`helm install` of helm/suanli into a fresh namespace; the Deployment scaled to 0 (kwok runs no
    containers and there is no image); uninstalled and the namespace deleted afterwards.

    Yields name, namespace, sa (the chart's ServiceAccount) and config (the chart's ConfigMap
    config.yaml written to a file, so a local operator runs with the chart's settings).
    """
    suffix = uuid.uuid4().hex[:6]
    name, namespace = f"suanli-{suffix}", f"suanli-system-{suffix}"
    kc = ["--kubeconfig", admin_kubeconfig]
    proc = helmkit.helm_run(
        ["install", name, str(helmkit.CHART), "--namespace", namespace, "--create-namespace",
         "--timeout", f"{HELM_TIMEOUT_S}s", *helmkit.values_args(values, tmp_dir), *kc],
        timeout=HELM_TIMEOUT_S + 30,
    )
    try:
        assert proc.returncode == 0, f"helm install failed:\n{proc.stdout}\n{proc.stderr}"
        scaled = kubectl(admin_kubeconfig, "-n", namespace, "scale", "deployment", name, "--replicas=0")
        assert scaled.returncode == 0, scaled.stderr
        cm = kubectl(admin_kubeconfig, "-n", namespace, "get", "configmap", f"{name}-config", "-o", "json")
        assert cm.returncode == 0, cm.stderr
        config = tmp_dir / "chart-config.yaml"
        config.write_text(json.loads(cm.stdout)["data"]["config.yaml"])
        yield {"name": name, "namespace": namespace, "sa": name, "config": str(config)}
    finally:
        helmkit.helm_run(["uninstall", name, "--namespace", namespace, "--timeout", "60s", *kc], timeout=120)
        kubectl(admin_kubeconfig, "delete", "namespace", namespace, "--wait=false", "--ignore-not-found")


def metric_value(text: str, name: str) -> float:
    """Sum of every sample of ``name`` (all label sets) in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def can_i_list(admin_kubeconfig: str, namespace: str, user: str) -> list[dict[str, Any]]:
    """`kubectl auth can-i --list --as USER -n NS` as rows {resources, urls, names, verbs}."""
    proc = kubectl(admin_kubeconfig, "auth", "can-i", "--list", "-n", namespace, "--as", user)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = lines[0]
    starts = [header.index(h) for h in ("Resources", "Non-Resource URLs", "Resource Names", "Verbs")]
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append({
            "resources": cells[0],
            "urls": cells[1].strip("[]"),
            "names": cells[2].strip("[]"),
            "verbs": cells[3].strip("[]").split(),
        })
    return rows


# --- Argo CD health fixtures from live objects ------------------------------------------


def capture_dir(tmp_dir: Path) -> Path:
    if os.environ.get(CAPTURE_ENV) == "1":
        return argocd_capture.FIXTURES
    extra = os.environ.get("SUANLI_ARGOCD_FIXTURES_DIR")
    return Path(extra) if extra else tmp_dir / "argocd_fixtures"


def stable(obj: dict[str, Any], namespace: str = "e2e") -> dict[str, Any]:
    """A live object with a fixed namespace and no random suffixes in names, so re-captures diff well."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    if "namespace" in meta:
        meta["namespace"] = namespace
    meta.pop("generateName", None)
    for key in ("finalizers",):
        meta.pop(key, None)
    return out


def capture(
    obj: dict[str, Any], expected_status: str, message_contains: str, *, label: str, source: str, tmp_dir: Path
) -> Path:
    """Save the object as ``<kind>-e2e-<label>.json`` (label: the phase or condition, so a re-capture
    replaces the file) and run the real Lua health script on it now."""
    from tests.unit import test_argocd_health as health

    saved = argocd_capture.save(stable(obj), expected_status, message_contains, source=source, directory=capture_dir(tmp_dir))
    path = saved.replace(saved.with_name(f"{obj['kind'].lower()}-e2e-{label.lower()}.json"))
    doc = json.loads(path.read_text())
    status, message = health.run_health(health.SCRIPTS[obj["kind"]], doc["object"])
    assert (status, message_contains in message) == (expected_status, True), (
        f"Argo CD health of live {obj['kind']} {obj['metadata']['name']} "
        f"(phase {(obj.get('status') or {}).get('phase')}): {status} {message!r}, expected {expected_status}"
    )
    return path


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


# --- the example fleet and jobs, made unique per test run -----------------------------------


def example_fleet(suffix: str, max_nodes_per_pool: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """crds/examples/centers.yaml with every center renamed `<name>-<suffix>` (node selectors too) and
    `expected.nodes` cut to ``max_nodes_per_pool`` (so the fake nodes are all the capacity there is,
    and no center is Degraded). Returns the centers and the map old name -> new name."""
    centers = [d for d in load_yaml_docs(REPO / "crds" / "examples" / "centers.yaml") if d.get("kind") == "ComputeCenter"]
    names: dict[str, str] = {}
    for center in centers:
        old = center["metadata"]["name"]
        new = names[old] = f"{old}-{suffix}"
        center["metadata"]["name"] = new
        for pool in center["spec"]["pools"]:
            pool["nodeSelector"] = {"suanli.io/pool": f"{new}-{pool['name']}"}
            pool["expected"]["nodes"] = min(pool["expected"]["nodes"], max_nodes_per_pool)
    return centers, names


def example_jobs(namespace: str, delay: str = "2s", jitter: str = "4s") -> list[tuple[dict[str, Any], str]]:
    """crds/examples/jobs.yaml's ComputeJobs moved to ``namespace`` with short kwok delays, each with
    its `# expect:` comment (`<center>/<pool>`, `Queued` or `Deferred`)."""
    out = []
    for chunk in (REPO / "crds" / "examples" / "jobs.yaml").read_text().split("\n---"):
        expect = next((line.split(":", 1)[1].strip() for line in chunk.splitlines() if line.startswith("# expect:")), None)
        doc = yaml.safe_load(chunk)
        if isinstance(doc, dict) and doc.get("kind") == "ComputeJob" and expect:
            doc["metadata"]["namespace"] = namespace
            ann = doc["spec"].setdefault("template", {}).setdefault("metadata", {}).setdefault("annotations", {})
            ann["pod-complete.stage.kwok.x-k8s.io/delay"] = delay
            ann["pod-complete.stage.kwok.x-k8s.io/jitter-delay"] = jitter
            out.append((doc, expect))
    return out


def job_phases(custom_objects: Any, namespace: str) -> dict[str, str]:
    items = custom_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs")["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "Pending") for i in items}


def center_conditions(center: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (center.get("status") or {}).get("conditions") or []}


def release_finalizers(custom_objects: Any, namespace: str | None, centers: Sequence[str]) -> None:
    """After the operator stopped: drop kopf's finalizers so the namespace and centers can go."""
    from kubernetes.client.exceptions import ApiException

    patch = {"metadata": {"finalizers": None}}
    if namespace:
        with contextlib.suppress(ApiException):
            for item in custom_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs")["items"]:
                with contextlib.suppress(ApiException):
                    custom_objects.patch_namespaced_custom_object(
                        GROUP, VERSION, namespace, "computejobs", item["metadata"]["name"], patch
                    )
    for name in centers:
        with contextlib.suppress(ApiException):
            custom_objects.patch_cluster_custom_object(GROUP, VERSION, "computecenters", name, patch)
        with contextlib.suppress(ApiException):
            custom_objects.delete_cluster_custom_object(GROUP, VERSION, "computecenters", name)
