"""The one home of what the operator's e2e tests share: `suanli run` as a subprocess, the chart
installed with the real Helm, ComputeCenter/ComputeJob builders (the example fleet and jobs among
them), readers and waits, clean-up, and capturing live objects as Argo CD health fixtures (checked in
real Lua at once).

    op = helpers.Operator(kubeconfig, tmp_path, ["--namespace", ns])
    op.start(); ...; op.stop()

    with helpers.helm_release(admin_kubeconfig, tmp_path) as release:   # name, namespace, sa, config
        ...

Everything listens on 127.0.0.1 and every wait has a deadline; nothing sleeps blindly.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import pytest
import yaml
from tests.cluster.pytest_plugin import wait_for_value
from tests.tools import argocd_capture, helmkit, sa_kubeconfig

REPO = Path(__file__).resolve().parents[2]
SUANLI = REPO / ".venv" / "bin" / "suanli"
GROUP, VERSION = "suanli.io", "v1alpha1"
FINAL = ("Succeeded", "Failed")
BOUND_OR_LATER = ("Bound", "Running", "Succeeded")
EXPECT_TIMEOUT_S = float(os.environ.get("SUANLI_E2E_TIMEOUT_SECONDS", "120"))
HEALTH_TIMEOUT_S = 60.0
HELM_TIMEOUT_S = 180
# SUANLI_ARGOCD_CAPTURE=1: captured objects go to tests/unit/argocd_fixtures (to commit);
# otherwise to $SUANLI_ARGOCD_FIXTURES_DIR if set, else the test's tmp folder (checked, not kept).
CAPTURE_ENV = "SUANLI_ARGOCD_CAPTURE"


# --- processes: ports, HTTP, kubectl, the operator ------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str, timeout: float = 2) -> int | None:
    """The HTTP status of a GET (an error status too), or None if nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sa_kubeconfig.kubectl(), "--kubeconfig", kubeconfig, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def metric_value(text: str, name: str) -> float:
    """Sum of every sample of ``name`` (all label sets) in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Operator:
    """`suanli run` in a subprocess on fresh 127.0.0.1 ports at every start; `kill()` is SIGKILL,
    `stop()` SIGTERM then SIGKILL, and `start()` after either starts a fresh one.

    ``args`` go on the command line (e.g. ["--config", path]) and ``env`` into the environment (e.g.
    SUANLI_CLOCK_OFFSET_FILE, test-only). The n-th start logs to ``log_dir``/operator-<n>.log, or,
    with a ``name``, every start appends to operator-<name>.log.
    """

    stop_timeout_s = 15.0  # from SIGTERM to SIGKILL
    probe_timeout_s = 1.0  # one /healthz request while waiting for the start

    def __init__(
        self,
        kubeconfig: str,
        log_dir: Path,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ):
        self.kubeconfig, self.log_dir, self.name = kubeconfig, log_dir, name
        self.args, self.env = list(args), dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.metrics_port = self.health_port = 0
        self.log_path: Path | None = None
        self.log_paths: list[Path] = []

    def __str__(self) -> str:
        return f"operator {self.name}" if self.name else "the operator"

    def start(self, wait_healthy: bool = True) -> Self:
        self.metrics_port, self.health_port = free_port(), free_port()
        self.starts += 1
        self.log_path = self.log_dir / f"operator-{self.name or self.starts}.log"
        if self.log_path not in self.log_paths:
            self.log_paths.append(self.log_path)
        with open(self.log_path, "ab") as log:  # the child has its own handle
            self.proc = subprocess.Popen(
                [str(SUANLI), "run", "--kubeconfig", self.kubeconfig,
                 "--metrics-address", "127.0.0.1", "--metrics-port", str(self.metrics_port),
                 "--health-address", "127.0.0.1", "--health-port", str(self.health_port), *self.args],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
            )
        if wait_healthy:
            deadline = time.monotonic() + HEALTH_TIMEOUT_S
            while http_status(self.url("/healthz"), self.probe_timeout_s) != 200:
                assert self.proc.poll() is None, f"{self} exited ({self.proc.returncode}); {self.log_path}:\n{self.log_tail()}"
                assert time.monotonic() < deadline, (
                    f"{self}: /healthz did not answer within {HEALTH_TIMEOUT_S:g}s; {self.log_path}:\n{self.log_tail()}"
                )
                time.sleep(0.2)
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.health_port}{path}"

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()

    def metric(self, name: str) -> float:
        """Sum of every sample of ``name`` the operator exports now."""
        return metric_value(self.metrics(), name)

    def log_text(self) -> str:
        """Everything this operator logged, over all its starts."""
        return "\n".join(p.read_text(errors="replace") for p in self.log_paths if p.exists())

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
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


class OperatorProcess(Operator):
    """A named operator, one of several (leader election; tests/bench): its log is operator-<name>.log,
    and a clean stop (the Lease handed back) gets 20 s."""

    stop_timeout_s = 20.0
    probe_timeout_s = 2.0

    def __init__(self, kubeconfig: str, log_dir: Path, name: str, extra: Sequence[str] = ()):
        super().__init__(kubeconfig, log_dir, extra, name=name)


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


# --- objects: a small center, a job, the example fleet and jobs --------------------------------


def small_center(
    name: str, nodes_expected: int = 2, per_node: int = 8, *, pool: str = "a100", model: str = "A100"
) -> dict[str, Any]:
    """A ComputeCenter with one GPU pool ``pool`` of ``model`` nodes, selected by suanli.io/pool=<name>-<pool>."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ComputeCenter",
        "metadata": {"name": name},
        "spec": {
            "region": "cn-guizhou",
            "energy": {"timeZone": "Asia/Shanghai", "pue": 1.2, "carbonIntensity": {"gramsPerKWh": 400}},
            "pools": [{
                "name": pool, "acceleratorType": "GPU", "model": model, "resourceName": "nvidia.com/gpu",
                "nodeSelector": {"suanli.io/pool": f"{name}-{pool}"},
                "expected": {"nodes": nodes_expected, "acceleratorsPerNode": per_node},
            }],
        },
    }


def compute_job(
    name: str, ns: str, *, replicas: int | None = 1, count: int = 8, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A GPU ComputeJob whose kwok pods complete after 2-6 s unless ``annotations`` say otherwise;
    ``replicas=None`` leaves the field out."""
    doc: dict[str, Any] = {
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
    if replicas is None:
        del doc["spec"]["replicas"]
    return doc


def only_on(center: dict[str, Any], *jobs: dict[str, Any]) -> None:
    """Make `jobs` acceptable to `center` alone: the center gets a region of its own name and the jobs
    allow only that region, so centers other tests left in a shared cluster never take them."""
    region = center["metadata"]["name"]
    center["spec"]["region"] = region
    for job in jobs:
        job["spec"]["data"] = {"region": region, "allowedRegions": [region]}


def short_job(name: str, ns: str) -> dict[str, Any]:
    """2 GPUs, pods done after 1-3 s, no replicas field (the leader and metrics tests' job)."""
    return compute_job(name, ns, replicas=None, count=2, annotations={
        "pod-complete.stage.kwok.x-k8s.io/delay": "1s", "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "2s"})


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def example_centers(max_nodes_per_pool: int | None = None) -> list[dict[str, Any]]:
    """crds/examples/centers.yaml's ComputeCenters, with `expected.nodes` cut to ``max_nodes_per_pool``
    if given (so the fake nodes are all the capacity there is, and no center is Degraded)."""
    centers = [d for d in load_yaml_docs(REPO / "crds" / "examples" / "centers.yaml") if d.get("kind") == "ComputeCenter"]
    if max_nodes_per_pool is not None:
        for center in centers:
            for pool in center["spec"]["pools"]:
                pool["expected"]["nodes"] = min(pool["expected"]["nodes"], max_nodes_per_pool)
    return centers


def example_fleet(suffix: str, max_nodes_per_pool: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """``example_centers(max_nodes_per_pool)`` with every center renamed `<name>-<suffix>` (node
    selectors too). Returns the centers and the map old name -> new name."""
    centers = example_centers(max_nodes_per_pool)
    names: dict[str, str] = {}
    for center in centers:
        old = center["metadata"]["name"]
        new = names[old] = f"{old}-{suffix}"
        center["metadata"]["name"] = new
        for pool in center["spec"]["pools"]:
            pool["nodeSelector"] = {"suanli.io/pool": f"{new}-{pool['name']}"}
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


# --- reading and waiting -------------------------------------------------------------------


def get_job(custom_objects: Any, ns: str, name: str) -> dict[str, Any]:
    return custom_objects.get_namespaced_custom_object(GROUP, VERSION, ns, "computejobs", name)


def job_status(custom_objects: Any, ns: str, name: str) -> dict[str, Any]:
    return get_job(custom_objects, ns, name).get("status") or {}


def get_center(custom_objects: Any, name: str) -> dict[str, Any]:
    return custom_objects.get_cluster_custom_object(GROUP, VERSION, "computecenters", name)


def job_phases(custom_objects: Any, ns: str) -> dict[str, str]:
    """Name -> phase of every ComputeJob in ``ns`` ("Pending" before the operator wrote a status)."""
    items = custom_objects.list_namespaced_custom_object(GROUP, VERSION, ns, "computejobs")["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "Pending") for i in items}


def center_conditions(center: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (center.get("status") or {}).get("conditions") or []}


def assert_example_outcomes(
    custom_objects: Any, batch_v1: Any, namespace: str, jobs: Sequence[tuple[dict[str, Any], str]],
    final: Mapping[str, str], planned: Mapping[str, Mapping[str, Any]], renamed: Mapping[str, str],
) -> list[str]:
    """The example jobs (``example_jobs``) after they settled in ``final`` phases: each whose `# expect:`
    names a pool Succeeded there (its center renamed as ``renamed`` says) through a batch Job the
    ComputeJob controls; each other one (Queued / Deferred depend on the hour) is in the phase
    `suanli plan` (``planned``) gave it now, Bound meaning Succeeded, with a status message. Returns
    the names of the jobs that were bound: those of the first kind, then the planned-Bound ones."""
    expected, by_plan = [], []
    for doc, expect in jobs:
        name = doc["metadata"]["name"]
        status = get_job(custom_objects, namespace, name)["status"]
        if "/" in expect:
            center, pool = expect.split("/")
            got = (final[name], status["binding"]["center"], status["binding"]["pool"])
            assert got == ("Succeeded", renamed[center], pool), (name, status.get("message"))
            workload = batch_v1.read_namespaced_job(f"cj-{name}", namespace)
            assert workload.metadata.owner_references[0].kind == "ComputeJob", workload.metadata.owner_references
            expected.append(name)
        else:
            want = planned[name]["phase"]
            assert final[name] == ("Succeeded" if want == "Bound" else want), (name, status, planned[name]["message"])
            assert status["message"], (name, status)
            if want == "Bound":
                by_plan.append(name)
    return expected + by_plan


def wait_for_phase(
    custom_objects: Any, ns: str, name: str, *wanted: str, timeout: float = EXPECT_TIMEOUT_S, what: str
) -> None:
    """Until ComputeJob ``name`` is in one of the ``wanted`` phases; a timeout shows its status."""
    wait_for_value(lambda: job_phases(custom_objects, ns).get(name) in wanted, timeout,
                   lambda: job_status(custom_objects, ns, name), what=what)


def workload_gone(batch_v1: Any, core_v1: Any, ns: str, name: str) -> bool:
    """ComputeJob ``name``'s batch Job (cj-<name>) and its pods are gone."""
    from kubernetes.client.exceptions import ApiException

    try:
        batch_v1.read_namespaced_job(f"cj-{name}", ns)
        return False
    except ApiException as exc:
        return exc.status == 404 and not core_v1.list_namespaced_pod(ns, label_selector=f"suanli.io/job={name}").items


# --- making and removing centers ---------------------------------------------------------


def delete_centers(custom_objects: Any, names: Sequence[str]) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            custom_objects.delete_cluster_custom_object(GROUP, VERSION, "computecenters", name)


@pytest.fixture(name="centers")
def centers_fixture(custom_objects: Any) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
    """``centers(docs)`` creates ComputeCenters (replacing any of the same name); deleted after the
    test. Use it with `from tests.e2e.helpers import centers_fixture  # noqa: F401`."""
    made: list[str] = []

    def make(docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            delete_centers(custom_objects, [doc["metadata"]["name"]])
            custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)
            made.append(doc["metadata"]["name"])

    yield make
    delete_centers(custom_objects, made)


@pytest.fixture(name="operator")
def operator_fixture(kube: Any, tmp_path: Path) -> Iterator[Operator]:
    """One `suanli run` for the test, stopped after it. Use it with
    `from tests.e2e.helpers import operator_fixture  # noqa: F401`."""
    op = Operator(kube.kubeconfig, tmp_path)
    op.start()
    yield op
    op.stop()


def workloads_per_job(batch_v1: Any, namespace: str) -> dict[str, int]:
    """How many batch Jobs the operator made for each ComputeJob (by its suanli.io/job label)."""
    jobs = batch_v1.list_namespaced_job(namespace, label_selector="suanli.io/job").items
    return dict(collections.Counter(wl.metadata.labels["suanli.io/job"] for wl in jobs))


def assert_ran_in_bound_pool(kube: Any, namespace: str, *job_names: str, exclusive: bool = False) -> None:
    """Each named ComputeJob has exactly one batch Job, counted by its label `suanli.io/job=<label
    value>` and controlled by it, labelled with the center and pool of the ComputeJob's
    `status.binding`; and that Job's pods (one per completion) all ran on nodes of that pool: nodes
    that carry the pool's nodeSelector from the ComputeCenter's spec. With ``exclusive``, no other
    ComputeJob has a batch Job in the namespace either. One LIST per kind, however many jobs."""
    from kubernetes import client

    from suanli.kube import workloads

    assert job_names, "name the ComputeJobs to check"
    custom, batch, core = (client.CustomObjectsApi(kube.api_client), client.BatchV1Api(kube.api_client),
                           client.CoreV1Api(kube.api_client))
    label = workloads.LABEL_JOB
    made: dict[str, list[Any]] = collections.defaultdict(list)
    for wl in batch.list_namespaced_job(namespace, label_selector=label).items:
        made[wl.metadata.labels[label]].append(wl)
    pods: dict[str, list[Any]] = collections.defaultdict(list)
    for pod in core.list_namespaced_pod(namespace, label_selector=label).items:
        pods[pod.metadata.labels[label]].append(pod)
    node_labels = {n.metadata.name: n.metadata.labels or {} for n in core.list_node().items}
    selectors: dict[tuple[str, str], dict[str, str] | None] = {}
    problems: list[str] = []
    for name in job_names:
        cj = get_job(custom, namespace, name)
        value = workloads.label_value(name)
        found = made.get(value, [])
        if len(found) != 1:
            problems.append(f"{name}: {len(found)} batch Jobs labelled {label}={value} "
                            f"({[wl.metadata.name for wl in found]}), expected exactly one")
            continue
        (wl,) = found
        controllers = [ref.uid for ref in wl.metadata.owner_references or [] if ref.controller]
        if controllers != [cj["metadata"]["uid"]]:
            problems.append(f"{name}: batch Job {wl.metadata.name} is controlled by {controllers}, not by the ComputeJob")
        binding = (cj.get("status") or {}).get("binding") or {}
        where = (binding.get("center", ""), binding.get("pool", ""))
        if not all(where):
            problems.append(f"{name}: has a batch Job but no status.binding: {cj.get('status')}")
            continue
        job_labels = wl.metadata.labels
        if (job_labels.get(workloads.LABEL_CENTER), job_labels.get(workloads.LABEL_POOL)) != tuple(
                workloads.label_value(part) for part in where):
            problems.append(f"{name}: batch Job labelled {job_labels}, but status.binding names {where[0]}/{where[1]}")
        if where not in selectors:
            center = get_center(custom, where[0])
            pool = next((p for p in center["spec"]["pools"] if p["name"] == where[1]), None)
            selectors[where] = None if pool is None else pool["nodeSelector"]
        selector = selectors[where]
        if selector is None:
            problems.append(f"{name}: status.binding names pool {where[1]}, which ComputeCenter {where[0]} does not have")
            continue
        mine = [p for p in pods.get(value, []) if any(r.uid == wl.metadata.uid for r in p.metadata.owner_references or [])]
        if len(mine) != len(pods.get(value, [])):
            problems.append(f"{name}: pods labelled {label}={value} that its batch Job did not make: "
                            f"{sorted(p.metadata.name for p in pods[value] if p not in mine)}")
        if len(mine) != wl.spec.completions:
            problems.append(f"{name}: {len(mine)} pods, expected one per completion ({wl.spec.completions})")
        for pod in mine:
            node = pod.spec.node_name
            labels = node_labels.get(node or "")
            if labels is None:
                problems.append(f"{name}: pod {pod.metadata.name} is on no existing node ({node!r})")
            elif any(labels.get(k) != v for k, v in selector.items()):
                problems.append(f"{name}: pod {pod.metadata.name} ran on {node}, outside pool {where[0]}/{where[1]} "
                                f"(nodeSelector {selector}, node labels {labels})")
    if exclusive:
        others = sorted(set(made) - {workloads.label_value(n) for n in job_names})
        if others:
            problems.append(f"batch Jobs in {namespace} of other ComputeJobs: {others}")
    assert not problems, "\n".join(problems)


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


def stop_and_clean_up(op: Operator, custom_objects: Any, namespace: str | None, centers: Sequence[str]) -> None:
    """The end of a test that runs its own operator: delete the centers while it still runs (it takes
    its finalizers off), stop it, then drop whatever finalizers are left."""
    delete_centers(custom_objects, centers)
    op.stop()
    release_finalizers(custom_objects, namespace, centers)


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
    replaces the file) and run the health script on it now, in gopher-lua as Argo CD does (luaharness)."""
    from tests.unit import test_argocd_health as health

    saved = argocd_capture.save(stable(obj), expected_status, message_contains, source=source, directory=capture_dir(tmp_dir))
    path = saved.replace(saved.with_name(f"{obj['kind'].lower()}-e2e-{label.lower()}.json"))
    code, results, stderr = health.run_harness(health.SCRIPTS[obj["kind"]], [path])
    assert code in (0, 1) and len(results) == 1, f"luaharness failed on {path} (exit {code}):\n{stderr}"
    status, message = results[0]["status"], results[0]["message"]
    assert (status, message_contains in message) == (expected_status, True), (
        f"Argo CD health of live {obj['kind']} {obj['metadata']['name']} "
        f"(phase {(obj.get('status') or {}).get('phase')}): {status} {message!r}, expected {expected_status}"
    )
    return path
