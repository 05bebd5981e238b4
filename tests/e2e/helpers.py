"""Shared pieces of the operator's e2e tests: `suanli run` as a subprocess, object builders and
readers. Every wait has a deadline; nothing sleeps blindly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SUANLI = REPO / ".venv" / "bin" / "suanli"
GROUP, VERSION = "suanli.io", "v1alpha1"
FINAL = ("Succeeded", "Failed")
EXPECT_TIMEOUT_S = float(os.environ.get("SUANLI_E2E_TIMEOUT_SECONDS", "120"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    """`suanli run` in a subprocess; `kill()` is SIGKILL, `start()` starts a fresh one.

    `env` is added to the environment (e.g. SUANLI_CLOCK_OFFSET_FILE, test-only) and `args` to the
    command line (e.g. ["--config", path]).
    """

    def __init__(
        self, kubeconfig: str, log_dir: Path, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
    ):
        self.kubeconfig, self.log_dir = kubeconfig, log_dir
        self.env, self.args = dict(env or {}), list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path: Path | None = None

    def start(self) -> None:
        self.metrics_port, self.health_port = free_port(), free_port()
        self.starts += 1
        self.log_path = self.log_dir / f"operator-{self.starts}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(SUANLI), "run", "--kubeconfig", self.kubeconfig, "--metrics-port", str(self.metrics_port),
             "--metrics-address", "127.0.0.1", "--health-port", str(self.health_port), "--health-address", "127.0.0.1",
             *self.args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the operator exited; see {log.name}"
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1).status == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"the operator's /healthz did not answer within 60s; see {log.name}")

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def small_center(name: str, nodes_expected: int = 2, per_node: int = 8) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ComputeCenter",
        "metadata": {"name": name},
        "spec": {
            "region": "cn-guizhou",
            "energy": {"timeZone": "Asia/Shanghai", "pue": 1.2, "carbonIntensity": {"gramsPerKWh": 400}},
            "pools": [{
                "name": "a100", "acceleratorType": "GPU", "model": "A100", "resourceName": "nvidia.com/gpu",
                "nodeSelector": {"suanli.io/pool": f"{name}-a100"},
                "expected": {"nodes": nodes_expected, "acceleratorsPerNode": per_node},
            }],
        },
    }


def compute_job(name: str, ns: str, *, replicas: int = 1, count: int = 8, annotations: dict[str, str] | None = None):
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ComputeJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "accelerators": {"count": count, "types": ["GPU"]},
            "images": {"GPU": "registry.example.com/train:cuda12"},
            "template": {
                "metadata": {"annotations": annotations or {
                    "pod-complete.stage.kwok.x-k8s.io/delay": "2s",
                    "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "4s",
                }},
                "spec": {"containers": [{"name": "main", "command": ["train"]}], "restartPolicy": "Never"},
            },
            "runtime": {"estimatedDuration": "1h"},
        },
    }


def get_job(custom_objects: Any, ns: str, name: str) -> dict[str, Any]:
    return custom_objects.get_namespaced_custom_object(GROUP, VERSION, ns, "computejobs", name)


def get_center(custom_objects: Any, name: str) -> dict[str, Any]:
    return custom_objects.get_cluster_custom_object(GROUP, VERSION, "computecenters", name)


def phases(custom_objects: Any, ns: str) -> dict[str, str]:
    items = custom_objects.list_namespaced_custom_object(GROUP, VERSION, ns, "computejobs")["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "Pending") for i in items}
