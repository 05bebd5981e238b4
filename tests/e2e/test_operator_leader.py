"""Two operators with Lease leader election on the local control plane (what the chart's two replicas do).

Exactly one schedules; SIGKILL the leader and the standby takes the Lease within the lease
duration and binds new jobs; no ComputeJob ever gets two batch Jobs. A leader whose Lease is
taken away exits non-zero at once, and a clean stop releases the Lease.
Every wait has a deadline; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
SUANLI = REPO / ".venv" / "bin" / "suanli"
GROUP, VERSION = "suanli.io", "v1alpha1"
TIMEOUT_S = float(os.environ.get("SUANLI_E2E_TIMEOUT_SECONDS", "120"))
TAKEOVER_S = 25.0  # lease 15 s + standby retry 2 s + startup; the brief says "within ~20 s"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


class OperatorProcess:
    """`suanli run` in a subprocess on 127.0.0.1 ports; the log goes to a file in the test's tmp dir."""

    def __init__(self, kubeconfig: str, log_dir: Path, name: str, extra: Sequence[str] = ()):
        self.kubeconfig, self.name, self.extra = kubeconfig, name, list(extra)
        self.log_path = log_dir / f"operator-{name}.log"
        self.metrics_port, self.health_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_healthy: bool = True) -> OperatorProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115  (the child writes it; closed with the process)
        self.proc = subprocess.Popen(
            [str(SUANLI), "run", "--kubeconfig", self.kubeconfig,
             "--metrics-port", str(self.metrics_port), "--metrics-address", "127.0.0.1",
             "--health-port", str(self.health_port), "--health-address", "127.0.0.1", *self.extra],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        if wait_healthy:
            deadline = time.monotonic() + 60
            while http_status(self.url("/healthz")) != 200:
                assert self.proc.poll() is None, f"operator {self.name} exited:\n{self.log_tail()}"
                assert time.monotonic() < deadline, f"operator {self.name}: no /healthz in 60s:\n{self.log_tail()}"
                time.sleep(0.2)
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.health_port}{path}"

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def operators(kube: Any, tmp_path: Path) -> Iterator[Any]:
    """`start(name, *extra)` starts an operator; all are stopped after the test."""
    made: list[OperatorProcess] = []

    def start(name: str, *extra: str, wait_healthy: bool = True) -> OperatorProcess:
        op = OperatorProcess(kube.kubeconfig, tmp_path, name, extra)
        made.append(op)
        return op.start(wait_healthy)

    yield start
    for op in made:
        op.stop()


@pytest.fixture
def center(custom_objects: Any, fake_nodes: Any) -> Iterator[str]:
    name = f"e2e-lease-{uuid.uuid4().hex[:5]}"
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ComputeCenter", "metadata": {"name": name},
        "spec": {
            "region": "cn-guizhou",
            "energy": {"timeZone": "Asia/Shanghai", "pue": 1.2, "carbonIntensity": {"gramsPerKWh": 400}},
            "pools": [{
                "name": "a100", "acceleratorType": "GPU", "model": "A100", "resourceName": "nvidia.com/gpu",
                "nodeSelector": {"suanli.io/pool": f"{name}-a100"},
                "expected": {"nodes": 4, "acceleratorsPerNode": 8},
            }],
        },
    }
    fake_nodes(doc, nodes_per_pool=4)
    custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)
    yield name
    with contextlib.suppress(Exception):
        custom_objects.delete_cluster_custom_object(GROUP, VERSION, "computecenters", name)


def compute_job(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ComputeJob", "metadata": {"name": name, "namespace": ns},
        "spec": {
            "accelerators": {"count": 2, "types": ["GPU"]},
            "images": {"GPU": "registry.example.com/train:cuda12"},
            "template": {
                "metadata": {"annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": "1s",
                                             "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "2s"}},
                "spec": {"containers": [{"name": "main", "command": ["train"]}], "restartPolicy": "Never"},
            },
            "runtime": {"estimatedDuration": "1h"},
        },
    }


def phases(custom_objects: Any, ns: str) -> dict[str, str]:
    items = custom_objects.list_namespaced_custom_object(GROUP, VERSION, ns, "computejobs")["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "Pending") for i in items}


def lease_holder(kube: Any, ns: str, name: str) -> str | None:
    from kubernetes import client

    lease = client.CoordinationV1Api(kube.api_client).read_namespaced_lease(name, ns)
    return lease.spec.holder_identity


def lease_args(identity: str, lease: str, ns: str) -> list[str]:
    return ["--leader-election", "lease", "--identity", identity, "--lease-name", lease, "--lease-namespace", ns,
            "--namespace", ns]


def submit(custom_objects: Any, ns: str, names: list[str]) -> None:
    for name in names:
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, ns, "computejobs", compute_job(name, ns))


def bound(custom_objects: Any, ns: str, names: list[str]) -> bool:
    current = phases(custom_objects, ns)
    return all(current.get(n) in ("Bound", "Running", "Succeeded") for n in names)


def test_one_leader_schedules_and_the_standby_takes_over_after_sigkill(
    kube: Any, operators: Any, center: str, namespace: str, custom_objects: Any, batch_v1: Any, wait_for: Any
) -> None:
    lease = f"suanli-leader-{uuid.uuid4().hex[:5]}"
    a = operators("a", *lease_args("a", lease, namespace))
    wait_for(lambda: lease_holder(kube, namespace, lease) == "a", 30, a.log_tail, what="a to take the Lease")
    b = operators("b", *lease_args("b", lease, namespace))
    # b is a standby: alive (/healthz 200), not ready (/readyz 503), and says so in its log.
    assert http_status(b.url("/readyz")) == 503
    wait_for(lambda: "standby" in b.log_text(), 30, b.log_tail, what="b to log that it waits as a standby")

    first = [f"first-{i}" for i in range(6)]
    submit(custom_objects, namespace, first)
    wait_for(lambda: all(p == "Succeeded" for p in phases(custom_objects, namespace).values()) and
             len(phases(custom_objects, namespace)) == len(first), TIMEOUT_S,
             lambda: phases(custom_objects, namespace), what="the first jobs to succeed under leader a")
    # The operator is cluster-wide and the local cluster may be shared with other test sessions:
    # a counts their jobs too (>=); the standby must have bound nothing at all.
    assert a.metric("suanli_binds_total") >= len(first)
    assert b.metric("suanli_binds_total") == 0, "the standby must not schedule"
    assert "cache primed" not in b.log_text(), "the standby must not even fill its cache"
    assert lease_holder(kube, namespace, lease) == "a"

    killed = time.monotonic()
    a.kill()
    wait_for(lambda: lease_holder(kube, namespace, lease) == "b", TAKEOVER_S, b.log_tail, what="b to take over")
    takeover = time.monotonic() - killed
    second = [f"second-{i}" for i in range(6)]
    submit(custom_objects, namespace, second)
    wait_for(lambda: bound(custom_objects, namespace, second), TIMEOUT_S,
             lambda: phases(custom_objects, namespace), what="b to bind the new jobs")
    first_binds = time.monotonic() - killed
    wait_for(lambda: all(p == "Succeeded" for p in phases(custom_objects, namespace).values()), TIMEOUT_S,
             lambda: phases(custom_objects, namespace), what="every job to succeed")
    assert b.metric("suanli_binds_total") >= 1, b.log_tail()

    per_job: dict[str, int] = {}
    for wl in batch_v1.list_namespaced_job(namespace, label_selector="suanli.io/job").items:
        label = wl.metadata.labels["suanli.io/job"]
        per_job[label] = per_job.get(label, 0) + 1
    assert per_job == dict.fromkeys(first + second, 1), "one batch Job per ComputeJob, never two"
    print(f"lease takeover {takeover:.1f}s after SIGKILL; new jobs bound {first_binds:.1f}s after it", file=sys.stderr)

    # A clean stop hands the Lease back at once (holder cleared) instead of making a successor wait 15 s.
    b.stop()
    assert b.proc is not None and b.proc.returncode == 0, b.log_tail()
    assert lease_holder(kube, namespace, lease) is None


def test_a_leader_whose_lease_is_taken_exits_non_zero_within_the_lease_duration(
    kube: Any, operators: Any, namespace: str, wait_for: Any
) -> None:
    from kubernetes import client

    lease = f"suanli-leader-{uuid.uuid4().hex[:5]}"
    a = operators("a", *lease_args("a", lease, namespace))
    wait_for(lambda: lease_holder(kube, namespace, lease) == "a", 30, a.log_tail, what="a to take the Lease")
    coordination = client.CoordinationV1Api(kube.api_client)
    current = coordination.read_namespaced_lease(lease, namespace)
    current.spec.holder_identity = "intruder"  # e.g. another replica after a long pause of this one
    coordination.replace_namespaced_lease(lease, namespace, current)
    taken = time.monotonic()
    assert a.proc is not None
    wait_for(lambda: a.proc.poll() is not None, 15, a.log_tail, what="a to exit after losing its Lease")
    assert a.proc.returncode == 1, a.log_tail()
    assert "lost the leadership" in a.log_text()
    print(f"leader exited {time.monotonic() - taken:.1f}s after losing the Lease", file=sys.stderr)
