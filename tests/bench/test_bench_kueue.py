"""Suanli beside Kueue, in the same run on the same local control plane and the same fleet.

Kueue is the scheduler a platform team would otherwise pick. Its manager is built from its Go module
(`sigs.k8s.io/kueue/cmd/kueue` at KUEUE_VERSION in tests/cluster/versions.env) by
tests/cluster/build-kueue.sh into the control plane's binary cache (~/.cache/suanli/bin/kueue-<version>/,
with the CRDs its module ships); a machine without it builds it here first (about 7 minutes), and a
failed build fails the test.

Fleet (test_bench_operator's): 10 ComputeCenters x 2 pools (A100 GPU, Ascend910B NPU) x 8 kwok nodes x
48 accelerators = 7,680. Work: job i asks for 1 accelerator, a GPU when i is even and an NPU when odd
(Kueue has no "either type" request, so Suanli's jobs are narrowed to the same type); its pods complete
after 2-5 s. Everything fits at once: both schedulers are measured deciding and writing, not queueing.

- Suanli: `suanli run` (namespace-scoped), ComputeJobs. "Bound" = the first watch event showing the
  ComputeJob Bound (or later); its batch Job must exist too (the second watch).
- Kueue: its manager against the same API server, one ResourceFlavor per pool (nodeLabels: the pool's
  node selector; nominal quota = the pool's accelerators) and batch Jobs created suspended with
  `kueue.x-k8s.io/queue-name`. Queues (SUANLI_BENCH_KUEUE_QUEUES): "per-type" (default), a ClusterQueue
  and a LocalQueue per accelerator resource (nvidia.com/gpu over the ten A100 flavors,
  huawei.com/Ascend910 over the ten Ascend ones), the Job going to its type's; "one", the issue's single
  ClusterQueue (a resource group per resource) and single LocalQueue: Kueue v0.17 then cannot write that
  LocalQueue's status (its flavorsUsage/flavorsReservation allow at most 16 flavors, the ClusterQueue
  has 20) and retries it with backoff, errors the report counts. "Admitted" = the first watch event
  showing the Job's Workload with condition Admitted=True; the Job unsuspended must be seen too (the
  second watch). Job i has ComputeJob i's name and, when Suanli ran first (the default), is created at
  the instant ComputeJob i's create was accepted (its offset from the phase's first): the same arrivals
  for both, whatever pace the API server allowed either kind (ComputeJobs, with their schema and CEL
  rules, are slower to create on a loaded host); otherwise both are paced by RATE.

Each scheduler is measured alone, one after the other (SUANLI_BENCH_KUEUE_ORDER, default suanli,kueue),
over the same two phases: "paced", JOBS created at RATE/s, and "burst", JOBS more as fast as 32 threads
can. Then, still running, it gets until every one of its Jobs has completed (bounded): the next starts on
a cluster where the Job controller and kwok are done with the first's pods. Per phase: admitted/bound
per second, create→admitted/bound p50/p99 (the test's clock, ms resolution), the scheduler process's
CPU per job (/proc), the API writes per job the API server served (apiserver_request_total, every
client: the test's creates, the scheduler, the Job controller, kube-scheduler and kwok; Leases, i.e.
kwok's node heartbeats, left out of the per-job figure), and the ratio Suanli / Kueue of each; over the
whole lifecycle (first create to the last Job complete): CPU and writes per job again, completions
included, and the process's peak RSS (VmHWM).

How Kueue runs outside a cluster (its Configuration is written by `kueue_configuration`; every field
below is read from apis/config/v1beta2 of the module):
- `internalCertManagement.enable: false`: the built-in rotator would write a Secret and inject CA bundles
  into webhook configurations and CRDs that do not exist here. The webhook server still starts (on
  `webhook.host` 127.0.0.1, a free `webhook.port`, `webhook.certDir` with a self-signed certificate made
  here with openssl), but no Validating/MutatingWebhookConfiguration is registered, so the API server
  never calls it: the Jobs are created already suspended and labelled, which is what the defaulting
  webhook would have done; the validating webhooks (Workload, ClusterQueue, ...) are not exercised.
- With internal cert management off, the manager reads a metrics serving certificate from the fixed
  path /etc/kueue/metrics/certs (cmd/kueue/main.go) even when metrics are off. The test starts it in a
  private mount namespace (`unshare --mount`, or `--user --map-root-user --mount` when not root) with an
  overlay over /etc whose upper layer holds that certificate: nothing is written to the host's /etc.
- `metrics.bindAddress: "0"` (off: its metrics need a token with authorization, and are not used),
  `health.healthProbeBindAddress` on 127.0.0.1 (the test waits for /readyz), `leaderElection.leaderElect:
  false`, `integrations.frameworks: [batch/job]`, feature gate `VisibilityOnDemand: false` (an aggregated
  API server bound to 0.0.0.0:8082 by default, which would need an APIService; not used by admission).
- As shipped (config/components/manager/controller_manager_config.yaml): `clientConnection` qps 50, burst
  100 (SUANLI_BENCH_KUEUE_QPS / _BURST change it; a negative qps turns Kueue's client-side limit off) and
  its `controller.groupKindConcurrency` (Job.batch and Workload: 5 workers each; SUANLI_BENCH_KUEUE_WORKERS
  changes both). The kubeconfig is the cluster's admin one (KUBECONFIG).

Knobs (environment): SUANLI_BENCH_KUEUE_JOBS (200 per phase), SUANLI_BENCH_KUEUE_RATE (50/s),
SUANLI_BENCH_KUEUE_ORDER (suanli,kueue), SUANLI_BENCH_KUEUE_QUEUES (per-type or one),
SUANLI_BENCH_KUEUE_QPS (50), SUANLI_BENCH_KUEUE_BURST (100), SUANLI_BENCH_KUEUE_WORKERS (5),
SUANLI_BENCH_KUEUE_SETTLE_SECONDS (600: the
deadline for a scheduler's Jobs to complete), SUANLI_BENCH_KUEUE_BUILD_TIMEOUT_SECONDS (1800),
SUANLI_BENCH_OPERATOR_TIMEOUT_SECONDS (300, per phase). Results: reports/bench/kueue.{json,md}. Sanity
is asserted (every job created, admitted/bound, and its Job made or unsuspended), not speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.bench.test_bench_operator import (
    CENTERS,
    GROUP,
    NODES_PER_POOL,
    PER_NODE,
    VERSION,
    BoundWatcher,
    FirstSeen,
    WorkloadWatcher,
    api_requests,
    bench_namespace,  # noqa: F401  (fixture)
    center,
    component_cpu,
    cpu_delta,
    cpu_seconds,
    custom_objects,  # noqa: F401  (fixture)
    job,
    quiet,
    run_phase,
    urllib_metrics,
    vm,
)
from tests.cluster.pytest_plugin import (  # noqa: F401  (fixtures)
    CLUSTER_SCRIPTS,
    core_v1,
    fake_nodes,
    install_crds,
    kube,
    wait_for_value,
)
from tests.e2e.helpers import free_port, http_status
from tests.e2e.test_operator_leader import OperatorProcess

pytestmark = [pytest.mark.bench, pytest.mark.cluster]

JOBS = int(os.environ.get("SUANLI_BENCH_KUEUE_JOBS", "200"))
RATE = float(os.environ.get("SUANLI_BENCH_KUEUE_RATE", "50"))
ORDER = tuple(os.environ.get("SUANLI_BENCH_KUEUE_ORDER", "suanli,kueue").split(","))
KUEUE_QPS = float(os.environ.get("SUANLI_BENCH_KUEUE_QPS", "50"))
KUEUE_BURST = int(os.environ.get("SUANLI_BENCH_KUEUE_BURST", "100"))
SETTLE_S = float(os.environ.get("SUANLI_BENCH_KUEUE_SETTLE_SECONDS", "600"))
BUILD_TIMEOUT_S = float(os.environ.get("SUANLI_BENCH_KUEUE_BUILD_TIMEOUT_SECONDS", "1800"))
READY_TIMEOUT_S = 120.0
KUEUE_GROUP, KUEUE_API = "kueue.x-k8s.io", "v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
QUEUE = "bench-peer"  # the ClusterQueues' and LocalQueues' name (QUEUES=per-type: + "-gpu", "-npu")
# per-type: a ClusterQueue + LocalQueue per accelerator resource; one: the single ClusterQueue
# and LocalQueue (with 20 flavors its LocalQueue status cannot be written: at most 16 there).
QUEUES = os.environ.get("SUANLI_BENCH_KUEUE_QUEUES", "per-type")
# Per type: Suanli's accelerator type, the pools' resource name and image (as in test_bench_operator.center/job).
TYPES = (("GPU", "nvidia.com/gpu", "registry.example.com/bench:cuda12"),
         ("NPU", "huawei.com/Ascend910", "registry.example.com/bench:cann8"))
PHASES = (("paced", RATE), ("burst", None))
# controller.groupKindConcurrency of Kueue's shipped config/components/manager/controller_manager_config.yaml.
# SUANLI_BENCH_KUEUE_WORKERS replaces the 5 workers of its Job and Workload reconcilers.
KUEUE_WORKERS = int(os.environ.get("SUANLI_BENCH_KUEUE_WORKERS", "5"))
GROUP_KIND_CONCURRENCY = {"Job.batch": KUEUE_WORKERS, "Pod": 5, "Workload.kueue.x-k8s.io": KUEUE_WORKERS,
                          "LocalQueue.kueue.x-k8s.io": 1, "Cohort.kueue.x-k8s.io": 1, "ClusterQueue.kueue.x-k8s.io": 1,
                          "ResourceFlavor.kueue.x-k8s.io": 1}


# --- the work: the same jobs for both -----------------------------------------------------------


def kind_of(i: int) -> tuple[str, str, str]:
    """Job i's accelerator: (type, resource name, image); GPU for even i, NPU for odd."""
    return TYPES[i % 2]


def suanli_job(name: str, ns: str, i: int) -> dict[str, Any]:
    """test_bench_operator's ComputeJob i, narrowed to job i's one accelerator type."""
    doc = job(name, ns, i)
    kind, _, image = kind_of(i)
    doc["spec"]["accelerators"]["types"] = [kind]
    doc["spec"]["images"] = {kind: image}
    return doc


def kueue_job(name: str, ns: str, i: int) -> dict[str, Any]:
    """The batch Job a Kueue user would create for ComputeJob i: suspended, in the LocalQueue, one pod
    asking for one accelerator of job i's type, completing after 2-5 s (the same kwok annotations)."""
    _, resource, image = kind_of(i)
    template = job(name, ns, i)["spec"]["template"]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "labels": {QUEUE_LABEL: queue_of(i)}},
        "spec": {
            "suspend": True, "parallelism": 1, "completions": 1, "backoffLimit": 0,
            "template": {
                "metadata": template["metadata"],
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "main", "image": image, "command": ["bench"],
                    "resources": {"requests": {resource: "1"}, "limits": {resource: "1"}}}]},
            },
        },
    }


def queue_of(i: int) -> str:
    """The LocalQueue job i goes to: one per accelerator resource (QUEUES=per-type), or the one."""
    return QUEUE if QUEUES == "one" else f"{QUEUE}-{kind_of(i)[0].lower()}"


def kueue_queues(centers: list[dict[str, Any]], ns: str) -> list[tuple[str, dict[str, Any]]]:
    """(plural, object) to create, in order: one ResourceFlavor per pool (its node labels: the pool's
    nodeSelector), then the ClusterQueues and LocalQueues (in `ns`). QUEUES=per-type: a ClusterQueue
    and a LocalQueue per accelerator resource (GPU: the ten A100 flavors, NPU: the ten Ascend ones);
    QUEUES=one: one ClusterQueue with a resource group per resource, and one LocalQueue. Flavors in
    pool order, nominal quota = the pool's accelerators."""
    flavors: dict[str, list[dict[str, Any]]] = {resource: [] for _, resource, _ in TYPES}
    out: list[tuple[str, dict[str, Any]]] = []
    for doc in centers:
        for pool in doc["spec"]["pools"]:
            name = f"{doc['metadata']['name']}-{pool['name']}"
            out.append(("resourceflavors", {"apiVersion": f"{KUEUE_GROUP}/{KUEUE_API}", "kind": "ResourceFlavor",
                                            "metadata": {"name": name}, "spec": {"nodeLabels": pool["nodeSelector"]}}))
            quota = pool["expected"]["nodes"] * pool["expected"]["acceleratorsPerNode"]
            flavors[pool["resourceName"]].append(
                {"name": name, "resources": [{"name": pool["resourceName"], "nominalQuota": str(quota)}]})
    groups = {kind: [{"coveredResources": [resource], "flavors": flavors[resource]}] for kind, resource, _ in TYPES}
    queues = {QUEUE: [g for gs in groups.values() for g in gs]} if QUEUES == "one" else \
        {f"{QUEUE}-{kind.lower()}": gs for kind, gs in groups.items()}
    for name, resource_groups in queues.items():
        out.append(("clusterqueues", {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_API}", "kind": "ClusterQueue", "metadata": {"name": name},
            "spec": {"namespaceSelector": {}, "queueingStrategy": "BestEffortFIFO", "resourceGroups": resource_groups}}))
        out.append(("localqueues", {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_API}", "kind": "LocalQueue", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterQueue": name}}))
    return out


def remove_kueue_objects(custom: Any, objects: list[tuple[str, dict[str, Any]]], ns: str | None) -> None:
    """With Kueue stopped: the Workloads of `ns` (if given) and `objects` lose their finalizers (Kueue
    would have removed them; without it a namespace or a ClusterQueue never goes) and are deleted.
    One pass over each (bounded); a missing object is fine."""
    from kubernetes.client.exceptions import ApiException

    strip = {"metadata": {"finalizers": None}}
    if ns is not None:
        with contextlib.suppress(ApiException):
            for wl in custom.list_namespaced_custom_object(KUEUE_GROUP, KUEUE_API, ns, "workloads")["items"]:
                with contextlib.suppress(ApiException):
                    custom.patch_namespaced_custom_object(KUEUE_GROUP, KUEUE_API, ns, "workloads",
                                                          wl["metadata"]["name"], strip)
    for plural, doc in reversed(objects):
        name, where = doc["metadata"]["name"], doc["metadata"].get("namespace")
        with contextlib.suppress(ApiException):
            if where:
                custom.patch_namespaced_custom_object(KUEUE_GROUP, KUEUE_API, where, plural, name, strip)
                custom.delete_namespaced_custom_object(KUEUE_GROUP, KUEUE_API, where, plural, name)
            else:
                custom.patch_cluster_custom_object(KUEUE_GROUP, KUEUE_API, plural, name, strip)
                custom.delete_cluster_custom_object(KUEUE_GROUP, KUEUE_API, plural, name)


class AdmittedWatcher(FirstSeen):
    """Kueue Workloads first seen with Admitted=True, recorded under their Job's name (the owner
    reference); `bound_time` keeps the condition's lastTransitionTime (1 s resolution), as
    BoundWatcher keeps boundTime."""

    def __init__(self, custom: Any, ns: str):
        super().__init__(custom, ns, KUEUE_GROUP, KUEUE_API, "workloads", "admitted")
        self.bound_time: dict[str, str] = {}

    def accept(self, obj: dict[str, Any]) -> str | None:
        conditions = (obj.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Admitted" and c.get("status") == "True" for c in conditions):
            return None
        owners = obj["metadata"].get("ownerReferences") or []
        return next((str(o["name"]) for o in owners if o.get("kind") == "Job"), None)

    def first_seen(self, key: str, obj: dict[str, Any]) -> None:
        for c in obj["status"]["conditions"]:
            if c.get("type") == "Admitted" and c.get("lastTransitionTime"):
                self.bound_time[key] = c["lastTransitionTime"]


class UnsuspendedWatcher(FirstSeen):
    """batch Jobs first seen with spec.suspend false (Kueue started them)."""

    def __init__(self, custom: Any, ns: str):
        super().__init__(custom, ns, "batch", "v1", "jobs", "unsuspended")

    def accept(self, obj: dict[str, Any]) -> str | None:
        return None if obj["spec"].get("suspend") else str(obj["metadata"]["name"])


# --- Kueue's manager as a local process ---------------------------------------------------------


def kueue_build() -> Path:
    """tests/cluster/build-kueue.sh: the binary folder (kueue, crds/); built first if missing."""
    try:
        proc = subprocess.run(["bash", str(CLUSTER_SCRIPTS / "build-kueue.sh")], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tests/cluster/build-kueue.sh did not finish within {BUILD_TIMEOUT_S:g}s "
                    "(SUANLI_BENCH_KUEUE_BUILD_TIMEOUT_SECONDS)", pytrace=False)
    assert proc.returncode == 0, f"tests/cluster/build-kueue.sh failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert (folder / "kueue").is_file() and (folder / "crds").is_dir(), proc.stdout + proc.stderr
    return folder


def self_signed(folder: Path) -> None:
    """tls.crt and tls.key in `folder`: a self-signed P-256 certificate for 127.0.0.1, valid one day."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
         "-sha256", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(folder / "tls.key"), "-out", str(folder / "tls.crt")],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"openssl could not make a certificate: {proc.stderr}"


def kueue_configuration(health_port: int, webhook_port: int, cert_dir: Path) -> dict[str, Any]:
    """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2) for a process outside a cluster: see the
    module docstring for why each field is what it is."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "controller": {"groupKindConcurrency": GROUP_KIND_CONCURRENCY},
        "clientConnection": {"qps": KUEUE_QPS, "burst": KUEUE_BURST},
        "integrations": {"frameworks": ["batch/job"]},
        "featureGates": {"VisibilityOnDemand": False},
    }


def listening(pid: int) -> list[str]:
    """The local addresses of the TCP sockets process `pid` listens on (`ss -ltnpH`)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=30, check=True).stdout
    return sorted(line.split()[3] for line in out.splitlines() if f"pid={pid}," in line)


class KueueProcess:
    """Kueue's manager in a private mount namespace (see the module docstring), logging to
    `folder`/kueue.log; `pid` is the manager's own (unshare and sh exec into it)."""

    def __init__(self, binary: Path, kubeconfig: str, folder: Path):
        self.binary, self.kubeconfig, self.folder = binary, kubeconfig, folder
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_port = 0
        self.config: dict[str, Any] = {}
        self.log = folder / "kueue.log"
        self.listening: list[str] = []  # its listening TCP sockets once ready

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> KueueProcess:
        upper, work = self.folder / "etc-upper", self.folder / "etc-work"
        self_signed(upper / "kueue" / "metrics" / "certs")
        self_signed(self.folder / "webhook-certs")
        work.mkdir(parents=True, exist_ok=True)
        self.health_port = free_port()
        self.config = kueue_configuration(self.health_port, free_port(), self.folder / "webhook-certs")
        config = self.folder / "kueue-config.yaml"
        config.write_text(yaml.safe_dump(self.config, sort_keys=False))
        unshare = shutil.which("unshare")
        assert unshare, "unshare (util-linux) is needed to give Kueue its /etc/kueue/metrics/certs without touching /etc"
        isolate = ["--mount", "--propagation", "private"] if os.geteuid() == 0 else \
            ["--user", "--map-root-user", "--mount", "--propagation", "private"]
        script = (f'mount -t overlay overlay -o "lowerdir=/etc,upperdir={upper},workdir={work}" /etc '
                  '&& exec "$0" "$@"')
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [unshare, *isolate, "sh", "-c", script, str(self.binary), f"--config={config}", "--zap-log-level=info"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": self.kubeconfig})
        deadline = time.monotonic() + READY_TIMEOUT_S
        while http_status(f"http://127.0.0.1:{self.health_port}/readyz", 2) != 200:
            assert self.proc.poll() is None, f"Kueue exited ({self.proc.returncode}); {self.log}:\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"Kueue's /readyz did not answer 200 within {READY_TIMEOUT_S:g}s:\n{self.log_tail()}"
            time.sleep(0.2)
        self.listening = listening(self.pid)
        assert self.listening and all(a.startswith("127.0.0.1:") for a in self.listening), (
            f"Kueue listens beyond 127.0.0.1: {self.listening}")
        return self

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def log_errors(self) -> dict[str, int]:
        """Its error-level log lines so far, counted by message (JSON lines; a line that is not is skipped)."""
        counts: dict[str, int] = {}
        for line in self.log.read_text(errors="replace").splitlines() if self.log.exists() else []:
            with contextlib.suppress(ValueError, AttributeError):
                entry = json.loads(line)
                if entry.get("level") == "error":
                    key = f"{entry.get('logger', '')}: {entry.get('msg', '')}"[:160]
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


# --- measuring ------------------------------------------------------------------------------------


def writes_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """API writes between two api_requests() readings, by request, largest first."""
    delta = {key: value - before.get(key, 0.0) for key, value in after.items() if value > before.get(key, 0.0)}
    return dict(sorted(delta.items(), key=lambda kv: -kv[1]))


def job_writes(writes: dict[str, float]) -> float:
    """The writes that are the jobs' work: all but Leases (kwok's node heartbeats, 160 nodes every ~10 s
    whatever runs, and leader election), which only measure how long a window lasted."""
    return sum(v for key, v in writes.items() if not key.endswith(" leases"))


def all_jobs_done(batch: Any, ns: str) -> tuple[int, int]:
    """(Jobs in `ns`, Jobs of them complete or failed)."""
    jobs = batch.list_namespaced_job(ns).items
    done = sum(1 for j in jobs if any(c.type in ("Complete", "Failed") and c.status == "True"
                                      for c in (j.status.conditions or [])))
    return len(jobs), done


def measure(cluster: Any, pid: int, ns: str, run: Callable[[str, int, float | None], dict[str, Any]]) -> dict[str, Any]:
    """One scheduler's measurement, its process `pid` running: wait (bounded) until it is idle, then
    PHASES one after the other through `run(name, offset, rate)` (run_phase's figures), each with the
    scheduler's CPU (/proc), the control plane's and the API writes of its window (first create to
    last bound/admitted); then, the scheduler still running, wait until every Job in `ns` completed,
    and the same figures over the whole lifecycle (first create to the last Job complete: the
    completions' status writes and quota releases included)."""
    from kubernetes import client

    idle = quiet(pid)
    cpu_start, cluster_start, writes_start = cpu_seconds(pid), component_cpu(cluster), api_requests(cluster.api_client)
    t_start = time.monotonic()
    phases: dict[str, dict[str, Any]] = {}
    for k, (name, rate) in enumerate(PHASES):
        cpu0, cluster0, writes0 = cpu_seconds(pid), component_cpu(cluster), api_requests(cluster.api_client)
        phase = run(name, k * JOBS, rate)
        cpu1, cluster1, writes1 = cpu_seconds(pid), component_cpu(cluster), api_requests(cluster.api_client)
        phase["api_writes"] = writes_delta(writes0, writes1)
        phase.update(cost(phase["created"], cpu1 - cpu0, phase["api_writes"]))
        phase["control_plane_cpu_seconds"] = cpu_delta(cluster0, cluster1)
        phases[name] = phase
    batch = client.BatchV1Api(cluster.api_client)
    wanted = sum(p["created"] for p in phases.values())
    wait_for_value(lambda: (lambda n: n[0] == n[1] == wanted)(all_jobs_done(batch, ns)), SETTLE_S,
                   lambda: f"(jobs, complete) = {all_jobs_done(batch, ns)} of {wanted}",
                   what=f"every Job in {ns} to complete (SUANLI_BENCH_KUEUE_SETTLE_SECONDS)")
    cpu_end, cluster_end, writes_end = cpu_seconds(pid), component_cpu(cluster), api_requests(cluster.api_client)
    lifecycle = {"jobs": wanted, "seconds": round(time.monotonic() - t_start, 1),
                 "api_writes": writes_delta(writes_start, writes_end),
                 "control_plane_cpu_seconds": cpu_delta(cluster_start, cluster_end)}
    lifecycle.update(cost(wanted, cpu_end - cpu_start, lifecycle["api_writes"]))
    return {"idle_before": idle, "phases": phases, "lifecycle": lifecycle, "peak_rss_mb": vm(pid, "VmHWM")}


def cost(jobs: int, cpu: float, writes: dict[str, float]) -> dict[str, Any]:
    """A window's scheduler CPU and API writes, in total and per job."""
    return {"scheduler_cpu_seconds": round(cpu, 2),
            "scheduler_cpu_ms_per_job": round(1000 * cpu / jobs, 2) if jobs else None,
            "api_writes_total": sum(writes.values()),
            "api_writes_per_job": round(job_writes(writes) / jobs, 2) if jobs else None}


def schedule(phase: str, times: dict[str, tuple[float, float]]) -> list[float] | None:
    """The instants (s from the first) at which the API server accepted the phase's creates, job by job
    (run_phase's names); None unless every job has one."""
    created = {name: pair[0] for name, pair in times.items()}
    names = [f"{phase}-{i:05d}" for i in range(JOBS)]
    if any(n not in created for n in names):
        return None
    first = min(created.values())
    return [round(created[n] - first, 4) for n in names]


def run_suanli(cluster: Any, custom: Any, tmp_path: Path, ns: str) -> dict[str, Any]:
    """Suanli's measurement: `suanli run` for `ns`, once it sees the whole fleet."""
    op = OperatorProcess(cluster.kubeconfig, tmp_path, "kueue-peer", ["--namespace", ns]).start()
    try:
        assert op.proc is not None and op.proc.poll() is None, op.log_tail()
        total = CENTERS * 2 * NODES_PER_POOL * PER_NODE

        def capacity() -> float:
            return sum(float(line.rsplit(" ", 1)[1]) for line in urllib_metrics(op).splitlines()
                       if line.startswith("suanli_pool_accelerators{") and 'center="bench-c' in line
                       and 'state="capacity"' in line)

        wait_for_value(lambda: capacity() >= total, 60, lambda: f"{capacity()} of {total} accelerators",
                       what="the operator to see the whole fleet")
        times: dict[str, dict[str, Any]] = {name: {} for name, _ in PHASES}
        with BoundWatcher(custom, ns) as watcher, WorkloadWatcher(custom, ns) as made:
            out = measure(cluster, op.proc.pid, ns, lambda name, offset, rate: run_phase(
                custom, ns, watcher, made, name, offset, rate, jobs=JOBS, make=suanli_job, times=times[name]))
        assert op.proc.poll() is None, op.log_tail()
        out["schedules"] = {name: schedule(name, t) for name, t in times.items()}
        out["bound_by_this_operator"] = int(op.metric("suanli_binds_total"))
    finally:
        op.stop()
    return {**out, "process": "suanli run (Python)"}


def run_kueue(cluster: Any, custom: Any, tmp_path: Path, ns: str, binary: Path,
              objects: list[tuple[str, dict[str, Any]]], schedules: dict[str, list[float] | None]) -> dict[str, Any]:
    """Kueue's measurement: its flavors and queues, then its manager, once every ClusterQueue is Active.
    A phase with a schedule (Suanli's, when it ran first) replays it; the others are paced at RATE."""
    remove_kueue_objects(custom, objects, None)  # a crashed earlier run's, if any
    for plural, doc in objects:
        if doc["metadata"].get("namespace"):
            custom.create_namespaced_custom_object(KUEUE_GROUP, KUEUE_API, ns, plural, doc)
        else:
            custom.create_cluster_custom_object(KUEUE_GROUP, KUEUE_API, plural, doc)
    queues = [doc["metadata"]["name"] for plural, doc in objects if plural == "clusterqueues"]
    kueue = KueueProcess(binary, cluster.kubeconfig, tmp_path)
    try:
        kueue.start()

        def inactive() -> list[str]:
            out = []
            for name in queues:
                cq = custom.get_cluster_custom_object(KUEUE_GROUP, KUEUE_API, "clusterqueues", name)
                if not any(c.get("type") == "Active" and c.get("status") == "True"
                           for c in (cq.get("status") or {}).get("conditions") or []):
                    out.append(name)
            return out

        wait_for_value(lambda: not inactive(), 60, lambda: f"not Active yet: {inactive()}",
                       what="every ClusterQueue to be Active")
        with AdmittedWatcher(custom, ns) as admitted, UnsuspendedWatcher(custom, ns) as started:
            out = measure(cluster, kueue.pid, ns, lambda name, offset, rate: run_phase(
                custom, ns, admitted, started, name, offset, rate, jobs=JOBS, make=kueue_job,
                resource=("batch", "v1", "jobs"), schedule=schedules.get(name)))
        assert kueue.proc is not None and kueue.proc.poll() is None, kueue.log_tail()
        out["log_errors"] = kueue.log_errors()
    finally:
        kueue.stop()
        remove_kueue_objects(custom, objects, ns)
    return {**out, "process": "kueue manager (Go)", "configuration": kueue.config, "queues": QUEUES,
            "listening": kueue.listening,
            "replayed_suanli_creates": {name: schedules.get(name) is not None for name, _ in PHASES}}


def test_suanli_beside_kueue_same_run(kube: Any, tmp_path: Path, fake_nodes: Any, custom_objects: Any,  # noqa: F811
                                      bench_namespace: str, core_v1: Any, write_report: Any) -> None:  # noqa: F811
    from kubernetes import client

    assert sorted(ORDER) == ["kueue", "suanli"], f"SUANLI_BENCH_KUEUE_ORDER must name suanli and kueue once each, not {ORDER}"
    assert QUEUES in ("per-type", "one"), f"SUANLI_BENCH_KUEUE_QUEUES is per-type or one, not {QUEUES!r}"
    folder = kueue_build()
    install_crds(kube.api_client, folder / "crds")
    centers = [center(i) for i in range(CENTERS)]
    fake_nodes(centers, nodes_per_pool=NODES_PER_POOL)
    custom = custom_objects
    kueue_ns = f"bench-kueue-{uuid.uuid4().hex[:5]}"
    core_v1.create_namespace({"metadata": {"name": kueue_ns, "labels": {"suanli.io/test": "true"}}})
    objects = kueue_queues(centers, kueue_ns)
    for doc in centers:
        with contextlib.suppress(Exception):
            custom.delete_cluster_custom_object(GROUP, VERSION, "computecenters", doc["metadata"]["name"])
        custom.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)
    sides: dict[str, dict[str, Any]] = {}
    try:
        for side in ORDER:  # each waits until its Jobs completed: the next starts on a quiet cluster
            if side == "suanli":
                sides[side] = run_suanli(kube, custom, tmp_path, bench_namespace)
            else:  # Suanli's creates replayed if it ran first
                schedules = sides.get("suanli", {}).get("schedules") or {}
                sides[side] = run_kueue(kube, custom, tmp_path, kueue_ns, folder / "kueue", objects, schedules)
    finally:
        for doc in centers:
            with contextlib.suppress(Exception):
                custom.delete_cluster_custom_object(GROUP, VERSION, "computecenters", doc["metadata"]["name"])
        with contextlib.suppress(Exception):
            client.BatchV1Api(kube.api_client).delete_collection_namespaced_job(kueue_ns, propagation_policy="Background")
        with contextlib.suppress(Exception):
            core_v1.delete_namespace(kueue_ns, propagation_policy="Background")
    sides["suanli"].pop("schedules", None)  # replayed or not, not part of the report
    data = report_data(sides)
    path = write_report("kueue", data, markdown(data))
    print(f"\n{path.read_text()}")
    for side, result in sides.items():
        for name, phase in result["phases"].items():
            assert phase["created"] == phase["bound"] == phase["workloads"] == JOBS, (side, name, phase)
        assert result["lifecycle"]["jobs"] == 2 * JOBS, (side, result["lifecycle"])


def ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) and b else None


RATIO_KEYS = ("throughput_jobs_per_s", "sustained_jobs_per_s", "latency_p50_seconds", "latency_p99_seconds",
              "scheduler_cpu_ms_per_job", "api_writes_per_job")


def report_data(sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    s, k = sides["suanli"], sides["kueue"]
    return {
        "jobs_per_phase": JOBS, "paced_rate_per_s": RATE, "order": list(ORDER),
        "fleet": {"centers": CENTERS, "pools": CENTERS * 2, "nodes": CENTERS * 2 * NODES_PER_POOL,
                  "accelerators": CENTERS * 2 * NODES_PER_POOL * PER_NODE},
        "kueue_version": os.environ.get("KUEUE_VERSION") or kueue_version(),
        "suanli": s, "kueue": k,
        "ratio_suanli_over_kueue": {
            **{name: {key: ratio(s["phases"][name][key], k["phases"][name][key]) for key in RATIO_KEYS}
               for name, _ in PHASES},
            "lifecycle": {key: ratio(s["lifecycle"][key], k["lifecycle"][key])
                          for key in ("seconds", "scheduler_cpu_ms_per_job", "api_writes_per_job")},
            "peak_rss_mb": ratio(s["peak_rss_mb"], k["peak_rss_mb"]),
        },
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
                 "load_average_1m": round(os.getloadavg()[0], 1)},
    }


def kueue_version() -> str:
    """KUEUE_VERSION as tests/cluster/versions.env pins it."""
    for line in (CLUSTER_SCRIPTS / "versions.env").read_text().splitlines():
        if line.startswith("KUEUE_VERSION="):
            return line.split(":-", 1)[1].split("}", 1)[0]
    return "?"


def markdown(d: dict[str, Any]) -> str:
    s, k, r = d["suanli"], d["kueue"], d["ratio_suanli_over_kueue"]
    names = [name for name, _ in PHASES]

    def cells(label: str, fmt: Callable[[dict[str, Any]], str], key: str | None = None) -> str:
        out = [label]
        for name in names:
            out += [fmt(s["phases"][name]), fmt(k["phases"][name]), "" if key is None else str(r[name][key] or "—")]
        return "| " + " | ".join(out) + " |"

    def ms(x: Any) -> str:
        return "—" if x is None else f"{x} ms"

    rows = [
        cells("jobs created / bound (Suanli), admitted (Kueue)", lambda x: f"{x['created']} / {x['bound']}"),
        cells("submission observed", lambda x: f"{x['submit_rate_observed_per_s']}/s"),
        cells("**bound / admitted per s** (first create → last)", lambda x: f"{x['throughput_jobs_per_s']}",
              "throughput_jobs_per_s"),
        cells("sustained per s (first → last bound / admitted)", lambda x: f"{x['sustained_jobs_per_s']}",
              "sustained_jobs_per_s"),
        cells("**create → bound / admitted p50**", lambda x: f"{x['latency_p50_seconds']} s", "latency_p50_seconds"),
        cells("create → bound / admitted p90", lambda x: f"{x['latency_p90_seconds']} s"),
        cells("**create → bound / admitted p99**", lambda x: f"{x['latency_p99_seconds']} s", "latency_p99_seconds"),
        cells("create → bound / admitted max", lambda x: f"{x['latency_max_seconds']} s"),
        cells("create → Job made (Suanli) / unsuspended (Kueue) p50 / p99",
              lambda x: f"{x['workload_latency_p50_seconds']} / {x['workload_latency_p99_seconds']} s"),
        cells("p50 / p99 from boundTime / Admitted's lastTransitionTime (1 s)",
              lambda x: f"{x['boundtime_latency_p50_seconds_1s_resolution']} / "
                        f"{x['boundtime_latency_p99_seconds_1s_resolution']} s"),
        cells("scheduler CPU (user + system)", lambda x: f"{x['scheduler_cpu_seconds']} s"),
        cells("**scheduler CPU per job**", lambda x: ms(x["scheduler_cpu_ms_per_job"]), "scheduler_cpu_ms_per_job"),
        *[cells(f"{c} CPU", lambda x, c=c: f"{x['control_plane_cpu_seconds'].get(c, '?')} s")
          for c in s["phases"][names[0]]["control_plane_cpu_seconds"]],
        cells("API writes, every client (Leases included)", lambda x: f"{x['api_writes_total']:.0f}"),
        cells("**API writes per job** (every client, Leases excluded)", lambda x: f"{x['api_writes_per_job']}",
              "api_writes_per_job"),
    ]
    sl, kl, rl = s["lifecycle"], k["lifecycle"], r["lifecycle"]
    requests = sorted({n for side in (sl, kl) for n in side["api_writes"]},
                      key=lambda n: -max(sl["api_writes"].get(n, 0), kl["api_writes"].get(n, 0)))
    header = " | ".join(f"{name} Suanli | {name} Kueue | {name} Suanli/Kueue" for name in names)
    cfg = k.get("configuration", {})
    queues = ("a ClusterQueue and a LocalQueue per accelerator resource (GPU: the ten A100 flavors; NPU: the ten "
              "Ascend ones)" if k.get("queues") == "per-type" else
              "one ClusterQueue (a resource group per accelerator resource) and one LocalQueue")
    lines = [
        f"# Suanli beside Kueue {d['kueue_version']}, same run (`tests/bench/test_bench_kueue.py`)",
        "",
        f"Fleet: {d['fleet']['centers']} ComputeCenters × 2 pools × {NODES_PER_POOL} kwok nodes × {PER_NODE} = "
        f"{d['fleet']['accelerators']} accelerators on one local control plane. Per phase {d['jobs_per_phase']} "
        "jobs of 1 accelerator (GPU for even, NPU for odd), pods done after 2-5 s; all fit at once. "
        f"Paced: created at {d['paced_rate_per_s']:g}/s; burst: as fast as 32 threads. Order: "
        f"{' then '.join(d['order'])}, each on a cluster where the other's Jobs had all completed. "
        + ("Kueue's Jobs were created at the instants Suanli's ComputeJobs had been accepted (job i at ComputeJob "
           "i's offset from the phase's first create), so both got the same arrivals."
           if all(k.get("replayed_suanli_creates", {}).values()) else
           "Both were paced by the same target; the observed submission rates (the API server's pace) differ."),
        "Suanli: the ComputeJob seen Bound (watch, test clock). Kueue: the Job's Workload seen Admitted=True "
        "(watch, test clock). Ratios are Suanli / Kueue.",
        "",
        f"| | {header} |",
        "|---|" + "---|" * (3 * len(names)),
        *rows,
        "",
        f"Whole lifecycle of the {sl['jobs']} jobs of each (first create → every Job complete, the scheduler "
        "running throughout: completions, status and quota release included):",
        "",
        "| | Suanli | Kueue | Suanli/Kueue |",
        "|---|---|---|---|",
        f"| seconds | {sl['seconds']} | {kl['seconds']} | {rl['seconds']} |",
        f"| scheduler CPU | {sl['scheduler_cpu_seconds']} s | {kl['scheduler_cpu_seconds']} s | |",
        f"| **scheduler CPU per job** | {ms(sl['scheduler_cpu_ms_per_job'])} | {ms(kl['scheduler_cpu_ms_per_job'])} | "
        f"{rl['scheduler_cpu_ms_per_job']} |",
        f"| **API writes per job** (every client, Leases excluded) | {sl['api_writes_per_job']} | "
        f"{kl['api_writes_per_job']} | {rl['api_writes_per_job']} |",
        f"| **peak RSS** (VmHWM of the process) | {s['peak_rss_mb']} MB | {k['peak_rss_mb']} MB | {r['peak_rss_mb']} |",
        f"| process | {s['process']} | {k['process']} | |",
        "| kube-apiserver CPU per API write (how fast this host is at that moment) | "
        + " | ".join(f"{1000 * x['control_plane_cpu_seconds'].get('kube-apiserver', 0) / max(1, x['api_writes_total']):.1f} ms"
                     for x in (sl, kl)) + " | |",
        "",
        "API writes the API server served over each lifecycle (apiserver_request_total, every client):",
        "",
        "| request | Suanli | Kueue |",
        "|---|---|---|",
        *[f"| {req} | {sl['api_writes'].get(req, 0):.0f} | {kl['api_writes'].get(req, 0):.0f} |" for req in requests],
        "",
        "Kueue ran as its own manager binary outside a cluster: internal cert management off; the webhook server "
        "on 127.0.0.1 with a self-signed certificate and no webhook configuration registered (the Jobs are "
        "created suspended and labelled, as its defaulting webhook would make them; the validating webhooks "
        "are not exercised); a self-signed metrics certificate at /etc/kueue/metrics/certs inside a private "
        "mount namespace (an overlay: the host's /etc untouched), metrics serving off; leader election off; "
        f"frameworks {cfg.get('integrations', {}).get('frameworks')}; feature gates {cfg.get('featureGates')}; "
        f"client qps {cfg.get('clientConnection', {}).get('qps')} / burst "
        f"{cfg.get('clientConnection', {}).get('burst')} (shipped: 50 / 100), groupKindConcurrency "
        f"{cfg.get('controller', {}).get('groupKindConcurrency')} (shipped: 5 for Job.batch and Workload). "
        f"One ResourceFlavor per pool (node labels = the pool's node selector), {queues}, nominal quota = the "
        f"pool's accelerators. Errors in Kueue's log during the run: {k.get('log_errors')}.",
        "Suanli's writes include its gate lifting (a patch per pod) and its Events; Kueue's, the Workload it "
        "creates per Job and its status. The test's creates, the Job controller, kube-scheduler and kwok are in "
        "both. Leases (kwok's node heartbeats) are counted in the table but not per job: they measure time. "
        "A phase's writes are those served in its window (first create → last bound/admitted): the longer the "
        "window, the more of the Job controller's and kwok's work for its jobs falls inside it, so the like-for-"
        "like writes per job are the lifecycle's.",
        f"Host: Python {d['host']['python']}, {d['host']['cpus']} CPUs ({d['host']['machine']}), load average "
        f"{d['host']['load_average_1m']} at the end; the control plane, the scheduler under test and the test "
        "share them (and, on a shared machine, other sessions).",
        "",
    ]
    return "\n".join(lines)
