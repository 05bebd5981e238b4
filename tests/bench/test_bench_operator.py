"""Operator benchmark on the local control plane: how fast `suanli run` binds ComputeJobs.

Fleet: 10 ComputeCenters in 5 regions x 2 pools (A100 GPU, Ascend910B NPU) x 8 kwok nodes x 48
accelerators = 7,680 accelerators. Jobs ask for 1 accelerator of either type, so all three phases
(3 x 2,000 jobs) fit at once: the benchmark measures the operator's binding, not churn through
kwok and the Job controller (whose default 20 QPS would otherwise pace it). Pods complete after 2 s.

Phase "paced": 2,000 ComputeJobs created at 50/s (a bounded loop feeding a 16-thread pool so
the client is not the bottleneck) — the observed bind rate is capped at ~50/s by construction.
Phase "burst": 2,000 more created as fast as 32 threads can (bounded) — the bind rate the
operator sustains while jobs arrive.
Phase "backlog": the operator is stopped, 2,000 more are created, and it starts again (a restart
with a queue): how fast it drains the queue when the API server is not also absorbing the
test's creates — on a 2-core machine shared by the API server, etcd, kwok, the controllers and
this client, the load generator competes with the system under test in the other phases. Its
clock starts at the new process's start (priming the cache with every job, Job and pod
included); the sustained rate is first bind to last. Latency is create-to-bound per job: the test's own clock when
its create call returned, to the first watch event showing Bound (or later) — millisecond
resolution, unlike creationTimestamp/boundTime (1 s); the boundTime-based figure is reported too.
A second watch on batch Jobs checks that "Bound" is real: every phase waits until each job's Job
exists, and the report gives create→Job-created latency and Bound→Job delay.
Phase "replay" is the same-run baseline: with the operator stopped, 2,000 more jobs are created and
the test itself makes, for each, the writes the operator made for the matching backlog job (the
same status patch, the same Event, the same batch Job built by the operator's own code, and the
patch that pins each of its gated pods to its node and lifts the gate — for the earlier phases' pods
too, which the Job controller is still making: the restarted operator releases them while it drains,
and kube-scheduler, kwok and the Job controller then do the same work in both phases), through
the operator's own write path (`suanli.kube.client.Api`, its thread pools and tickets), without
watching, caching or planning anything: what these writes reach on this host, in this run, without
an operator's other work. The report gives the backlog's rate as a share of it, a figure the host's
speed (which varies ~1.5x between runs here) mostly cancels out of.

Knobs (environment): SUANLI_BENCH_OPERATOR_JOBS (2000 per phase), SUANLI_BENCH_OPERATOR_RATE (50/s),
SUANLI_BENCH_OPERATOR_CONFIG (a `suanli run --config` settings file), SUANLI_BENCH_PYSPY (a py-spy
binary: a flame graph of the operator during the burst in reports/bench/operator-burst-profile.svg;
SUANLI_BENCH_PYSPY_PHASE=backlog samples the restarted operator draining the backlog instead, into
operator-backlog-profile.*; SUANLI_BENCH_PYSPY_FORMAT=raw writes collapsed stacks (.txt) instead;
SUANLI_BENCH_PYSPY_ARGS adds py-spy options, e.g. --gil to sample only the thread holding the GIL).

Targets: >= 100 jobs/s sustained, p99 < 2 s, peak RSS < 300 MB. Kueue's published baseline is
15,000 workloads in about 351 s (~43/s). Results: reports/bench/operator.{json,md}.

The local cluster can be shared with other test sessions running their own operators; the report
says how many of the jobs this operator bound (its suanli_binds_total) so a race is visible.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import json
import multiprocessing
import os
import platform
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.cluster.pytest_plugin import core_v1, fake_nodes, kube  # noqa: F401  (fixtures)
from tests.e2e.test_operator_leader import OperatorProcess

pytestmark = [pytest.mark.bench, pytest.mark.cluster]

GROUP, VERSION = "suanli.io", "v1alpha1"
CENTERS, NODES_PER_POOL, PER_NODE = 10, 8, 48
REGIONS = ("cn-beijing", "cn-shanghai", "cn-guizhou", "cn-gansu", "cn-neimenggu")
JOBS = int(os.environ.get("SUANLI_BENCH_OPERATOR_JOBS", "2000"))
RATE = float(os.environ.get("SUANLI_BENCH_OPERATOR_RATE", "50"))
PHASE_TIMEOUT_S = float(os.environ.get("SUANLI_BENCH_OPERATOR_TIMEOUT_SECONDS", "300"))
TARGETS = {"throughput_jobs_per_s": 100.0, "p99_seconds": 2.0, "rss_mb": 300.0}
KUEUE = {"workloads": 15000, "seconds": 351, "jobs_per_s": round(15000 / 351, 1),
         "source": "Kueue performance test baseline (15,000 workloads in ~351 s)"}
DONE = ("Bound", "Running", "Succeeded", "Failed")
REPORT_DIR = Path(__file__).resolve().parents[2] / "reports" / "bench"


def center(i: int, prefix: str = "bench-c", regions: tuple[str, ...] = REGIONS,
           nodes: int = NODES_PER_POOL) -> dict[str, Any]:
    """Center `i` of a fleet: named `prefix` + i, in one of `regions` (linked to the others), two
    pools (A100, Ascend910B) of `nodes` nodes of PER_NODE accelerators."""
    name = f"{prefix}{i:02d}"
    region = regions[i % len(regions)]
    links = [{"region": r, "bandwidthGbps": 10 + 10 * k, "latencyMs": 20} for k, r in enumerate(regions) if r != region]
    pools = [
        {"name": "a100", "acceleratorType": "GPU", "model": "A100", "resourceName": "nvidia.com/gpu",
         "nodeSelector": {"suanli.io/pool": f"{name}-a100"},
         "expected": {"nodes": nodes, "acceleratorsPerNode": PER_NODE}},
        {"name": "ascend", "acceleratorType": "NPU", "model": "Ascend910B", "resourceName": "huawei.com/Ascend910",
         "nodeSelector": {"suanli.io/pool": f"{name}-ascend"},
         "expected": {"nodes": nodes, "acceleratorsPerNode": PER_NODE}},
    ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ComputeCenter", "metadata": {"name": name},
        "spec": {
            "region": region,
            "network": {"defaultBandwidthGbps": 10, "links": links},
            "energy": {"timeZone": "Asia/Shanghai", "pue": round(1.1 + 0.02 * i, 2),
                       "carbonIntensity": {"gramsPerKWh": 200 + 50 * (i % 6)}, "pricePerKWh": {"value": 0.4}},
            "pools": pools,
        },
    }


def job(name: str, ns: str, i: int, regions: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Job `i` of a phase: 1 accelerator of either type, its data in one of REGIONS (or of `regions`,
    then allowed nowhere else: the jobs of one fleet)."""
    doc: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ComputeJob", "metadata": {"name": name, "namespace": ns},
        "spec": {
            "accelerators": {"count": 1, "types": ["GPU", "NPU"], "precision": "bf16"},
            "images": {"GPU": "registry.example.com/bench:cuda12", "NPU": "registry.example.com/bench:cann8"},
            "template": {
                "metadata": {"annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": "2s",
                                             "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "3s"}},
                "spec": {"containers": [{"name": "main", "command": ["bench"]}], "restartPolicy": "Never"},
            },
            "runtime": {"estimatedDuration": f"{10 + i % 50}m"},
            "data": {"region": (regions or REGIONS)[i % len(regions or REGIONS)], "sizeGiB": 1 + i % 20},
            "priority": i % 3,
        },
    }
    if regions:
        doc["spec"]["data"]["allowedRegions"] = list(regions)
    return doc


class FirstSeen:
    """Watches one resource in the namespace in a thread (plain dictionaries through the custom
    objects API, built-in groups included); records, per object name, the test's clock when it was
    first seen in the wanted state (`accept`)."""

    def __init__(self, custom: Any, ns: str, group: str, version: str, plural: str, name: str):
        self.custom, self.ns = custom, ns
        self.resource = (group, version, ns, plural)
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"bench-watch-{name}", daemon=True)

    def __enter__(self) -> FirstSeen:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def accept(self, obj: dict[str, Any]) -> str | None:
        """The key an object is recorded under once it is in the wanted state, else None."""
        return str(obj["metadata"]["name"])

    def _record(self, obj: dict[str, Any]) -> None:
        key = self.accept(obj)
        if key is not None:
            with self.lock:
                if key not in self.seen:
                    self.seen[key] = time.time()
                    self.first_seen(key, obj)

    def first_seen(self, key: str, obj: dict[str, Any]) -> None:
        """Called under the lock when `key` is recorded."""

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        version = None
        while not self.stop.is_set():
            try:
                if version is None:
                    listing = self.custom.list_namespaced_custom_object(*self.resource)
                    for obj in listing["items"]:
                        self._record(obj)
                    version = listing["metadata"]["resourceVersion"]
                w = watch.Watch()
                for event in w.stream(self.custom.list_namespaced_custom_object, *self.resource,
                                      resource_version=version, timeout_seconds=5, allow_watch_bookmarks=True):
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion") or version
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(obj)
                    if self.stop.is_set():
                        w.stop()
                        break
            except ApiException as exc:
                if exc.status == 410:
                    version = None  # too old: list again
                else:
                    time.sleep(0.2)
            except Exception:
                time.sleep(0.2)

    def count(self, names: list[str]) -> int:
        with self.lock:
            return sum(1 for n in names if n in self.seen)

    def times(self, names: list[str]) -> dict[str, float]:
        with self.lock:
            return {n: self.seen[n] for n in names if n in self.seen}


class BoundWatcher(FirstSeen):
    """ComputeJobs: first seen Bound (or later), with the boundTime the operator wrote."""

    def __init__(self, custom: Any, ns: str):
        super().__init__(custom, ns, GROUP, VERSION, "computejobs", "bound")
        self.bound_time: dict[str, str] = {}

    def accept(self, obj: dict[str, Any]) -> str | None:
        return str(obj["metadata"]["name"]) if (obj.get("status") or {}).get("phase") in DONE else None

    def first_seen(self, key: str, obj: dict[str, Any]) -> None:
        if obj["status"].get("boundTime"):
            self.bound_time[key] = obj["status"]["boundTime"]


class WorkloadWatcher(FirstSeen):
    """batch/v1 Jobs the operator created: first seen, recorded under their ComputeJob's name (the
    Job's owner reference), so "Bound" is checked against a workload that exists."""

    def __init__(self, custom: Any, ns: str):
        super().__init__(custom, ns, "batch", "v1", "jobs", "workloads")

    def accept(self, obj: dict[str, Any]) -> str | None:
        owners = obj["metadata"].get("ownerReferences") or []
        return next((str(o["name"]) for o in owners if o.get("kind") == "ComputeJob"), None)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def parse_time(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_phase(
    custom: Any, ns: str, watcher: BoundWatcher, workloads: Any, prefix: str, offset: int,
    rate: float | None, before_wait: Any = None, jobs: int = JOBS, make: Any = job, times: dict[str, Any] | None = None,
    resource: tuple[str, str, str] = (GROUP, VERSION, "computejobs"), schedule: list[float] | None = None,
) -> dict[str, Any]:
    """Create `jobs` ComputeJobs (`make(name, ns, i)`; at `rate`/s, or as fast as 32 threads), then wait
    until all are seen bound and their batch Jobs exist (`workloads`: a WorkloadWatcher, or anything
    with its `count` and `times`). `before_wait()` runs between the two (the backlog phase starts
    the operator there) and returns the instant the bind clock starts; otherwise it starts at the
    first create. `times`, if given, receives each job's (created, first seen bound) instants by name.
    `resource` (group, version, plural) is what `make` builds: another kind (the Kueue benchmark
    creates batch Jobs) with its own `watcher` (anything with `count`, `times`, `lock`, `bound_time`).
    `schedule`, one offset (s) per job from the phase's start, submits job i then instead of at `rate`
    (replaying the instants another phase's creates were accepted)."""
    names = [f"{prefix}-{i:05d}" for i in range(jobs)]
    created: dict[str, float] = {}
    errors: list[str] = []

    def create(i: int, name: str) -> None:
        try:
            custom.create_namespaced_custom_object(resource[0], resource[1], ns, resource[2], make(name, ns, offset + i))
            created[name] = time.time()
        except Exception as exc:  # reported, not retried: the benchmark must stay bounded
            errors.append(f"{name}: {exc.__class__.__name__}: {str(exc)[:200]}")

    workers = 16 if rate and schedule is None else 32
    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-create") as pool:
        futures = []
        for i, name in enumerate(names):  # bounded: `jobs` iterations
            if schedule is not None or rate:
                delay = start + (schedule[i] if schedule is not None else i / rate) - time.time()
                if delay > 0:
                    time.sleep(delay)
            futures.append(pool.submit(create, i, name))
        concurrent.futures.wait(futures, timeout=PHASE_TIMEOUT_S)
    submitted = time.time()
    clock_start = before_wait() if before_wait is not None else start
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    while watcher.count(names) < len(created) and time.monotonic() < deadline:
        time.sleep(0.1)
    while workloads.count(names) < len(created) and time.monotonic() < deadline:
        time.sleep(0.1)
    seen, made = watcher.times(names), workloads.times(names)
    with watcher.lock:
        bound_time = {n: watcher.bound_time[n] for n in names if n in watcher.bound_time}
    latencies = [seen[n] - created[n] for n in seen if n in created]
    if times is not None:
        times.update({n: (created[n], seen[n]) for n in seen if n in created})
    to_workload = [made[n] - created[n] for n in made if n in created]
    bound_to_workload = [made[n] - seen[n] for n in made if n in seen]
    coarse = [parse_time(bound_time[n]) - created[n] for n in bound_time if n in created]
    last = max(seen.values()) if seen else float("nan")
    first = min(seen.values()) if seen else float("nan")
    span = last - clock_start
    return {
        "jobs": jobs,
        "created": len(created),
        "create_errors": errors[:5],
        "create_error_count": len(errors),
        "bound": len(seen),
        "submit_rate_target_per_s": rate,
        "submit_rate_observed_per_s": round(len(created) / max(1e-9, submitted - start), 1),
        "submit_seconds": round(submitted - start, 2),
        "first_create_to_last_bound_seconds": round(span, 2),
        "first_bound_to_last_bound_seconds": round(last - first, 2),
        "throughput_jobs_per_s": round(len(seen) / span, 1) if seen else 0.0,
        "sustained_jobs_per_s": round(len(seen) / (last - first), 1) if len(seen) > 1 and last > first else 0.0,
        "latency_p50_seconds": round(percentile(latencies, 50), 3),
        "latency_p90_seconds": round(percentile(latencies, 90), 3),
        "latency_p99_seconds": round(percentile(latencies, 99), 3),
        "latency_max_seconds": round(max(latencies), 3) if latencies else None,
        "workloads": len(made),
        "workload_latency_p50_seconds": round(percentile(to_workload, 50), 3),
        "workload_latency_p99_seconds": round(percentile(to_workload, 99), 3),
        "bound_to_workload_p50_seconds": round(percentile(bound_to_workload, 50), 3),
        "bound_to_workload_p99_seconds": round(percentile(bound_to_workload, 99), 3),
        "workload_sustained_jobs_per_s": round(len(made) / (max(made.values()) - min(made.values())), 1)
        if len(made) > 1 and max(made.values()) > min(made.values()) else 0.0,
        "boundtime_latency_p50_seconds_1s_resolution": round(percentile(coarse, 50), 1),
        "boundtime_latency_p99_seconds_1s_resolution": round(percentile(coarse, 99), 1),
    }


BOUND_KEYS = ("phase", "message", "binding", "estimates", "plannedStart", "candidates", "rejected",
              "observedGeneration", "conditions", "boundTime", "workloadRef")


def bound_status(status: dict[str, Any]) -> dict[str, Any]:
    """The status patch that bound a job (`suanli.kube.status.decided`), rebuilt from its status now
    (by then Running or Succeeded): the same binding, estimates, candidates, rejections and message."""
    out = {k: status.get(k) for k in BOUND_KEYS}
    out["phase"] = "Bound"
    out["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") == "Bound"]
    return out


def replay_bindings(kubeconfig: str, ns: str, statuses: dict[str, dict[str, Any]],
                    pools: dict[tuple[str, str], tuple[str, dict[str, str]]], outcome: dict[str, Any],
                    pins: dict[str, list[str]] | None = None) -> None:
    """The replay phase's writer: for each ComputeJob in `statuses` (name → the status patch to write),
    what the operator does once it has decided a binding (`binder.Binder.bind`): the uid-tested status
    patch and then the batch Job on the binding pool under one ticket, the Event on the main pool,
    and, as its pods appear (a pod watch, as the operator's), the patch that pins each gated pod to
    its binding's node and lifts the gate (`gates.Lifter`), through `suanli.kube.client.Api` with the
    operator's default thread counts. `pins`: the binding nodes of the jobs bound earlier (name →
    nodes): their gated pods are released the same way, as the operator releases them while it drains
    (without it, the replay's cluster would be spared the scheduling and running of those pods, and the
    baseline would be cheaper than the work it is compared with). `pools`: (center, pool) →
    (resourceName, nodeSelector). Records how many it found and its errors in `outcome`."""
    import asyncio
    import threading

    from kubernetes.client.exceptions import ApiException

    from suanli.kube import client as client_mod
    from suanli.kube import gates, workloads
    from suanli.settings import Settings

    workers = Settings().operator.write_workers
    api = client_mod.Api(client_mod.api_client(kubeconfig, pool_size=workers * 2), workers)
    lifted: list[concurrent.futures.Future[None]] = []
    stop = threading.Event()

    seen: set[str] = set()  # pods whose gate-lifting patch was submitted

    def consider(pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        job = (meta.get("labels") or {}).get(workloads.LABEL_JOB)
        if stop.is_set() or meta.get("namespace") != ns or meta.get("name") in seen:
            return
        if job in statuses:
            nodes = statuses[job]["binding"].get("nodes") or []
        elif pins and job in pins:
            nodes = pins[job]
        else:
            return
        index = int((meta.get("labels") or {}).get(workloads.COMPLETION_INDEX, -1))
        ops = gates.operations(pod, nodes[index] if 0 <= index < len(nodes) else None)
        if ops is not None:
            seen.add(meta["name"])
            lifted.append(api.pool.submit(api.patch_pod, ns, meta["name"], ops))

    def lift_gates(version: str) -> None:
        """Follow pods from `version` (LIST again when it is too old, as the operator's watch does);
        pin and release each gated pod of a replayed job once, until the bindings are all written (the
        operator's drain, too, lifts the gates of the pods that the Job controller makes while it
        binds; the rest come later, at the controller's pace, outside either measurement)."""
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while not stop.is_set() and time.monotonic() < deadline:
            if not version:
                items, token, version = api.page("pods")
                while True:
                    for pod in items:
                        consider(pod)
                    if not token:
                        break
                    items, token, _ = api.page("pods", token)
            try:
                for events in api.watch("pods", version, 60):
                    for event in events:
                        pod = event.get("object") or {}
                        if event.get("type") == "ERROR":  # 410 Gone: the version left the watch window
                            version = ""
                            break
                        version = (pod.get("metadata") or {}).get("resourceVersion") or version
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            consider(pod)
                    if not version or stop.is_set():
                        break
            except ApiException as exc:
                if exc.status != 410:
                    raise
                version = ""

    try:
        cjs = [cj for cj in api.pages("jobs") if cj["metadata"]["namespace"] == ns and cj["metadata"]["name"] in statuses]
        # From a LIST, as the restarted operator primes its cache: the pods made while nothing ran are released too.
        watcher = threading.Thread(target=lift_gates, args=("",), name="replay-gates", daemon=True)
        watcher.start()

        async def bind(cj: dict[str, Any], events: list[asyncio.Future[None]]) -> None:
            name, uid = cj["metadata"]["name"], cj["metadata"]["uid"]
            status = statuses[name]
            ticket = api.ticket()
            await api.run_binding(ticket, api.patch_job_status, ns, name, status, answer=False, uid=uid, whole=True)
            events.append(asyncio.ensure_future(api.run(api.event, ("ComputeJob", ns, name, uid), "Bound", status["message"])))
            b = status["binding"]
            resource_name, selector = pools[(b["center"], b["pool"])]
            manifest = workloads.build_job(cj, center=b["center"], pool=b["pool"], accelerator_type=b["acceleratorType"],
                                           resource_name=resource_name, node_selector=selector, tolerations=[])
            await api.run_binding(ticket, api.create_or_adopt_job, manifest, uid)

        async def main() -> list[Any]:
            events: list[asyncio.Future[None]] = []
            results = await asyncio.gather(*(bind(cj, events) for cj in cjs), return_exceptions=True)
            await asyncio.gather(*events, return_exceptions=True)
            return results

        results = asyncio.run(main())
        stop.set()  # the watch thread leaves at its next event (a daemon: never waited for)
        lift_errors = [f.exception() for f in concurrent.futures.as_completed(lifted, timeout=120) if f.exception()]
        outcome["jobs"] = len(cjs)
        outcome["gates_lifted"] = len(lifted) - len(lift_errors)
        outcome["errors"] = [f"{r.__class__.__name__}: {str(r)[:200]}" for r in [*results, *lift_errors]
                             if isinstance(r, BaseException)]
    except Exception as exc:  # reported by the phase's count check, with the reason
        outcome["errors"] = [f"{exc.__class__.__name__}: {str(exc)[:300]}"]
    finally:
        stop.set()
        api.close()


def replay_process(kubeconfig: str, ns: str, statuses: dict[str, dict[str, Any]],
                   pools: dict[tuple[str, str], tuple[str, dict[str, str]]], out: str,
                   pins: dict[str, list[str]] | None = None) -> None:
    """`replay_bindings` in a process of its own, as the operator is (the test's watches would
    otherwise share its interpreter lock); writes the outcome, with its CPU seconds, to `out`."""
    import suanli.kube.client
    import suanli.kube.workloads
    import suanli.settings  # noqa: F401  (imported before the clock: the operator's were before its first bind)

    outcome: dict[str, Any] = {}
    before = os.times()
    replay_bindings(kubeconfig, ns, statuses, pools, outcome, pins)
    after = os.times()
    outcome["cpu_seconds"] = round(after.user + after.system - before.user - before.system, 1)
    Path(out).write_text(json.dumps(outcome))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def component_cpu(cluster: Any, state_dir: Path | None = None) -> dict[str, float]:
    """CPU seconds so far of each local control-plane process (none on an external cluster) and of
    this test's own process (the load generator and its watches, on the same cores). `state_dir`: a
    named local cluster's (default: the cluster under test's)."""
    from tests.cluster.pytest_plugin import LOCAL_STATE_DIR

    out = {"the test (creates, watches)": cpu_seconds(os.getpid())}
    if cluster.external:
        return out
    for pidfile in sorted(((state_dir or LOCAL_STATE_DIR) / "pids").glob("*.pid")):
        with contextlib.suppress(OSError, ValueError):
            out[pidfile.stem] = cpu_seconds(int(pidfile.read_text().strip()))
    return out


def api_requests(api_client: Any) -> dict[str, float]:
    """apiserver_request_total by "VERB resource[/subresource]" (mutating verbs only), from the API
    server's own /metrics: which writes a phase cost."""
    verb, url, headers, _, _ = api_client.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    response = api_client.call_api(verb, url, headers)
    response.read()
    text = response.data.decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.rindex("}")].split(",") if "=" in part)
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("verb") not in ("POST", "PATCH", "PUT", "DELETE", "APPLY"):
            continue
        name = f"{labels['verb']} {labels.get('resource', '')}" + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before[name], 1) for name in before if name in after}


def profiler(pid: int, seconds: float, phase: str) -> subprocess.Popen[bytes] | None:
    """SUANLI_BENCH_PYSPY=/path/to/py-spy: sample the operator during `phase` if it is the one
    SUANLI_BENCH_PYSPY_PHASE names (burst by default): a flame graph SVG, or collapsed stacks with
    SUANLI_BENCH_PYSPY_FORMAT=raw."""
    binary = os.environ.get("SUANLI_BENCH_PYSPY")
    if not binary or os.environ.get("SUANLI_BENCH_PYSPY_PHASE", "burst") != phase:
        return None
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    fmt = os.environ.get("SUANLI_BENCH_PYSPY_FORMAT", "flamegraph")
    out = REPORT_DIR / f"operator-{phase}-profile.{'svg' if fmt == 'flamegraph' else 'txt'}"
    return subprocess.Popen([binary, "record", "-p", str(pid), "-o", str(out), "-d", str(int(seconds)), "-r", "50",
                             "--nonblocking", "--format", fmt, *os.environ.get("SUANLI_BENCH_PYSPY_ARGS", "").split()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def vm(pid: int, field: str) -> float:
    """A VmXXX line of /proc/<pid>/status in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


@pytest.fixture
def bench_namespace(core_v1: Any) -> Iterator[str]:  # noqa: F811
    """A namespace for the jobs; deleted afterwards without waiting (garbage-collecting 4,000 Jobs
    and their pods takes minutes on a busy host: longer than the session's namespace deadline).
    Waits (bounded) for an earlier run's namespace to be gone first."""
    # A previous run's namespace still terminating would make its operator-visible jobs churn
    # (their batch Jobs vanish while the ComputeJobs linger): start on a quiet cluster.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and any(
        n.metadata.name.startswith("bench-") for n in core_v1.list_namespace().items
    ):
        time.sleep(2)
    name = f"bench-operator-{uuid.uuid4().hex[:5]}"
    core_v1.create_namespace({"metadata": {"name": name, "labels": {"suanli.io/test": "true"}}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            core_v1.read_namespaced_service_account("default", name)
            break
        time.sleep(0.5)
    yield name
    from kubernetes import client

    # ComputeJobs first (their Jobs and pods follow by owner reference), then the namespace.
    with contextlib.suppress(Exception):
        client.CustomObjectsApi(core_v1.api_client).delete_collection_namespaced_custom_object(
            GROUP, VERSION, name, "computejobs")
    with contextlib.suppress(Exception):
        core_v1.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def custom_objects(kube: Any) -> Any:  # noqa: F811
    """A client of its own with a connection pool as large as the create threads."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kube.kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 40
    return client.CustomObjectsApi(client.ApiClient(configuration))


def test_operator_bind_throughput_latency_and_memory(
    kube: Any, tmp_path: Path, fake_nodes: Any, custom_objects: Any, bench_namespace: str,  # noqa: F811
    write_report: Any,
) -> None:
    namespace = bench_namespace
    centers = [center(i) for i in range(CENTERS)]
    t0 = time.monotonic()
    fake_nodes(centers, nodes_per_pool=NODES_PER_POOL)
    nodes_seconds = time.monotonic() - t0
    for doc in centers:
        with contextlib.suppress(Exception):
            custom_objects.delete_cluster_custom_object(GROUP, VERSION, "computecenters", doc["metadata"]["name"])
        custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)
    extra = ["--namespace", namespace]
    if os.environ.get("SUANLI_BENCH_OPERATOR_CONFIG"):  # try settings, e.g. operator.max_jobs_per_cycle
        extra += ["--config", os.environ["SUANLI_BENCH_OPERATOR_CONFIG"]]
    op = OperatorProcess(kube.kubeconfig, tmp_path, "bench", extra).start()
    assert op.proc is not None and op.proc.poll() is None, op.log_tail()
    marks: dict[str, Any] = {}
    peaks: list[float] = []
    pools = {(doc["metadata"]["name"], pool["name"]): (pool["resourceName"], pool["nodeSelector"])
             for doc in centers for pool in doc["spec"]["pools"]}
    statuses: dict[str, dict[str, Any]] = {}
    pins: dict[str, list[str]] = {}  # every job bound before the replay: name -> its binding's nodes
    outcome: dict[str, Any] = {}

    def restart_operator() -> float:
        """Backlog phase: the jobs exist and the operator is stopped; start it now (the bind clock's
        start: priming its cache with the 6,000 jobs and their Jobs and pods is included)."""
        marks["cluster"], marks["writes"] = component_cpu(kube), api_requests(kube.api_client)
        started = time.time()
        op.start()
        marks["spy"] = profiler(op.proc.pid, 60, "backlog") if op.proc is not None else None
        return started

    def start_replay() -> float:
        """Replay phase: the jobs exist and the operator is stopped; the test makes its writes now."""
        marks["replay_cluster"], marks["replay_writes"] = component_cpu(kube), api_requests(kube.api_client)
        started = time.time()
        marks["writer"] = multiprocessing.get_context("spawn").Process(
            target=replay_process, name="bench-replay", daemon=True,
            args=(kube.kubeconfig, namespace, statuses, pools, str(tmp_path / "replay.json"), pins))
        marks["writer"].start()
        return started

    try:
        with BoundWatcher(custom_objects, namespace) as watcher, WorkloadWatcher(custom_objects, namespace) as made:
            # The operator sees the whole fleet before the paced clock starts.
            deadline = time.monotonic() + 60
            capacity = 0.0
            while time.monotonic() < deadline:
                capacity = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in urllib_metrics(op).splitlines()
                    if line.startswith("suanli_pool_accelerators{") and 'center="bench-c' in line
                    and 'state="capacity"' in line
                )
                if capacity >= CENTERS * 2 * NODES_PER_POOL * PER_NODE:
                    break
                time.sleep(0.5)
            rss_start = vm(op.proc.pid, "VmRSS")
            cpu0, cluster0, writes0 = cpu_seconds(op.proc.pid), component_cpu(kube), api_requests(kube.api_client)
            paced = run_phase(custom_objects, namespace, watcher, made, "paced", 0, RATE)
            cpu1, cluster1, writes1 = cpu_seconds(op.proc.pid), component_cpu(kube), api_requests(kube.api_client)
            binds_mid = op.metric("suanli_binds_total")
            spy = profiler(op.proc.pid, 60, "burst")
            burst = run_phase(custom_objects, namespace, watcher, made, "burst", JOBS, None)
            cpu2, cluster2, writes2 = cpu_seconds(op.proc.pid), component_cpu(kube), api_requests(kube.api_client)
            if spy is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy.wait(timeout=90)
            binds_after = op.metric("suanli_binds_total")
            cycles = op.metric("suanli_scheduling_cycle_seconds_count")
            cycle_sum = op.metric("suanli_scheduling_cycle_seconds_sum")
            peaks.append(vm(op.proc.pid, "VmHWM"))
            op.stop()
            backlog = run_phase(custom_objects, namespace, watcher, made, "backlog", 2 * JOBS, None,
                                before_wait=restart_operator)
            # the operator that bound the backlog is still the one running: its CPU and memory are its own
            if marks.get("spy") is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    marks["spy"].wait(timeout=90)
            assert op.proc is not None and op.proc.poll() is None, op.log_tail()
            cpu3, cluster3, writes3 = cpu_seconds(op.proc.pid), component_cpu(kube), api_requests(kube.api_client)
            backlog["operator_cpu_seconds"] = round(cpu3, 1)  # since its start: priming included
            backlog["bound_by_this_operator"] = int(op.metric("suanli_binds_total"))
            peaks.append(vm(op.proc.pid, "VmHWM"))
            rss_end = vm(op.proc.pid, "VmRSS")
            op.stop()
            # The replay writes, for replay-i, what the operator wrote for backlog-i (same spec).
            listing = custom_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs")
            for cj in listing["items"]:
                name = cj["metadata"]["name"]
                binding = (cj.get("status") or {}).get("binding")
                if name.startswith("backlog-") and binding:
                    statuses["replay-" + name.split("-", 1)[1]] = bound_status(cj["status"])
                if binding:
                    pins[name] = list(binding.get("nodes") or [])
            replay = run_phase(custom_objects, namespace, watcher, made, "replay", 2 * JOBS, None,
                               before_wait=start_replay)
            marks["writer"].join(timeout=PHASE_TIMEOUT_S)
            cluster4, writes4 = component_cpu(kube), api_requests(kube.api_client)
            with contextlib.suppress(OSError, ValueError):
                outcome.update(json.loads((tmp_path / "replay.json").read_text()))
            replay["operator_cpu_seconds"] = outcome.get("cpu_seconds", 0.0)  # the writer's
            replay["bound_by_this_operator"] = 0
            replay["writer_errors"] = outcome.get("errors", ["the writer did not finish"])[:5]
        paced["operator_cpu_seconds"] = round(cpu1 - cpu0, 1)
        burst["operator_cpu_seconds"] = round(cpu2 - cpu1, 1)
        paced["control_plane_cpu_seconds"] = cpu_delta(cluster0, cluster1)
        burst["control_plane_cpu_seconds"] = cpu_delta(cluster1, cluster2)
        backlog["control_plane_cpu_seconds"] = cpu_delta(marks["cluster"], cluster3)
        replay["control_plane_cpu_seconds"] = cpu_delta(marks["replay_cluster"], cluster4)
        for phase, before, after in ((paced, writes0, writes1), (burst, writes1, writes2),
                                     (backlog, marks["writes"], writes3), (replay, marks["replay_writes"], writes4)):
            delta = {k: after[k] - before.get(k, 0.0) for k in after if after[k] > before.get(k, 0.0)}
            phase["api_writes"] = dict(sorted(delta.items(), key=lambda kv: -kv[1])[:10])
            phase["api_writes_total"] = sum(delta.values())
        peak = max(peaks)
    finally:
        op.stop()
        for doc in centers:
            with contextlib.suppress(Exception):
                custom_objects.delete_cluster_custom_object(GROUP, VERSION, "computecenters", doc["metadata"]["name"])
    paced["bound_by_this_operator"] = int(binds_mid)
    burst["bound_by_this_operator"] = int(binds_after - binds_mid)
    data = {
        "fleet": {"centers": CENTERS, "pools": CENTERS * 2, "nodes": CENTERS * 2 * NODES_PER_POOL,
                  "accelerators": CENTERS * 2 * NODES_PER_POOL * PER_NODE, "operator_saw_capacity": capacity,
                  "fake_nodes_seconds": round(nodes_seconds, 1)},
        "backlog": backlog,
        "replay": replay,
        "operator_share_of_replay": round(backlog["sustained_jobs_per_s"] / replay["sustained_jobs_per_s"], 2)
        if replay["sustained_jobs_per_s"] else None,
        "paced": paced,
        "burst": burst,
        "operator": {"peak_rss_mb": peak, "peak_rss_mb_by_process": peaks, "rss_start_mb": rss_start,
                     "rss_end_mb": rss_end, "scheduling_cycles": int(cycles),
                     "mean_cycle_seconds": round(cycle_sum / cycles, 4) if cycles else None},
        "targets": TARGETS,
        "kueue_baseline": KUEUE,
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
                 "load_average_1m": round(os.getloadavg()[0], 1)},
    }
    data["meets"] = {
        "throughput": max(backlog["sustained_jobs_per_s"], burst["sustained_jobs_per_s"])
        >= TARGETS["throughput_jobs_per_s"],
        # The scenario: 2,000 jobs submitted at 50/s. In the burst, jobs arrive faster than any
        # bind rate this machine reaches, so its p99 is queueing time and reported beside, not judged.
        "p99": paced["latency_p99_seconds"] < TARGETS["p99_seconds"],
        "rss": peak < TARGETS["rss_mb"],
    }
    path = write_report("operator", data, markdown(data))
    print(f"\n{path.read_text()}")
    for phase in (paced, burst, backlog, replay):
        assert phase["bound"] == phase["created"] == phase["workloads"] == JOBS, phase


def urllib_metrics(op: OperatorProcess) -> str:
    import urllib.request

    return urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5).read().decode()


def markdown(d: dict[str, Any]) -> str:
    k, p, b, r, o, f = d["backlog"], d["paced"], d["burst"], d["replay"], d["operator"], d["fleet"]
    phases = (p, b, k, r)

    def ok(flag: bool) -> str:
        return "met" if flag else "NOT met"

    def row(name: str, cell: Any, queued: str | None = None) -> tuple[str, ...]:
        """A row over the four phases; `queued` replaces the cell of the two whose jobs were created
        while nothing was binding (the latency rows)."""
        return (name, cell(p), cell(b), *((queued, queued) if queued is not None else (cell(k), cell(r))))

    rows = [
        ("submission", f"{p['submit_rate_observed_per_s']}/s (target {p['submit_rate_target_per_s']:g}/s)",
         f"{b['submit_rate_observed_per_s']}/s (as fast as 32 threads)", "all while the operator is stopped",
         "all while the operator is stopped"),
        row("jobs created / bound", lambda x: f"{x['created']} / {x['bound']}"),
        row("bound by this operator", lambda x: "— (the test's writer)" if x is r else str(x["bound_by_this_operator"])),
        row("clock start → last bound", lambda x: f"{x['first_create_to_last_bound_seconds']} s"),
        row("first bound → last bound", lambda x: f"{x['first_bound_to_last_bound_seconds']} s"),
        row("bind throughput (clock start → last bound)", lambda x: f"{x['throughput_jobs_per_s']} jobs/s"),
        row("sustained (first → last bound)", lambda x: f"{x['sustained_jobs_per_s']} jobs/s"),
        row("operator CPU (user+system; replay: its writer's)", lambda x: f"{x['operator_cpu_seconds']} s"),
        row("operator CPU per bound job (the bind rate one core of it covers)",
            lambda x: "—" if not x["bound"] or not x["operator_cpu_seconds"] else
            f"{1000 * x['operator_cpu_seconds'] / x['bound']:.1f} ms ({x['bound'] / x['operator_cpu_seconds']:.0f} jobs/s)"),
        *[row(f"{name} CPU", lambda x, n=name: f"{x['control_plane_cpu_seconds'].get(n, '?')} s")
          for name in p["control_plane_cpu_seconds"]],
        *([row("kube-apiserver CPU per API write (how fast this machine is in this run)",
               lambda x: f"{1000 * x['control_plane_cpu_seconds']['kube-apiserver'] / max(1, x['api_writes_total']):.1f} ms")]
          if "kube-apiserver" in p["control_plane_cpu_seconds"] else []),
        *[row(f"create→bound {q}", lambda x, q=q: f"{x[f'latency_{q}_seconds']} s", "—")
          for q in ("p50", "p90", "p99", "max")],
        row("batch Jobs created", lambda x: str(x["workloads"])),
        *[row(f"create→Job created {q}", lambda x, q=q: f"{x[f'workload_latency_{q}_seconds']} s", "—")
          for q in ("p50", "p99")],
        row("Bound seen → its Job seen p50 / p99",
            lambda x: f"{x['bound_to_workload_p50_seconds']} / {x['bound_to_workload_p99_seconds']} s"),
        row("Jobs created, first → last", lambda x: f"{x['workload_sustained_jobs_per_s']} jobs/s"),
        row("p50 / p99 from boundTime (1 s resolution)",
            lambda x: f"{x['boundtime_latency_p50_seconds_1s_resolution']} / "
                      f"{x['boundtime_latency_p99_seconds_1s_resolution']} s", "—"),
    ]
    best = max((k, b), key=lambda x: x["sustained_jobs_per_s"])
    best_name = "backlog" if best is k else "burst"
    writes = sorted({n for x in phases for n in x["api_writes"]}, key=lambda n: -p["api_writes"].get(n, 0))
    lines = [
        "# Operator benchmark (`tests/bench/test_bench_operator.py`)",
        "",
        f"Fleet: {f['centers']} ComputeCenters × 2 pools (A100, Ascend910B) × {NODES_PER_POOL} kwok nodes × "
        f"{PER_NODE} accelerators = {f['accelerators']} accelerators on the local control plane; "
        f"jobs ask for 1 accelerator of either type, so all phases fit at once (binding is measured, not churn).",
        "Latency: the test's clock when its create call returned → the first watch event showing the job Bound.",
        "",
        "| | paced (50/s) | burst | backlog (restart) | replay (the same writes, no operator) |",
        "|---|---|---|---|---|",
        *[f"| {' | '.join(cells)} |" for cells in rows],
        "",
        f"Operator: peak RSS (VmHWM) {o['peak_rss_mb']} MB (paced + burst process, backlog process: "
        f"{' MB, '.join(str(x) for x in o['peak_rss_mb_by_process'])} MB; first process at start {o['rss_start_mb']} MB, "
        f"second at the end {o['rss_end_mb']} MB); paced + burst: {o['scheduling_cycles']} scheduling cycles, "
        f"mean {o['mean_cycle_seconds']} s.",
        "",
        "Writes the API server served during each phase (apiserver_request_total, every client):",
        "",
        "| request | paced | burst | backlog | replay |",
        "|---|---|---|---|---|",
        *[f"| {name} | " + " | ".join(f"{x['api_writes'].get(name, 0):.0f}" for x in phases) + " |" for name in writes],
        "",
        "| target | value | |",
        "|---|---|---|",
        f"| sustained bind throughput >= {TARGETS['throughput_jobs_per_s']:g} jobs/s (first to last bind, best of "
        f"burst and backlog: {best_name}) | {best['sustained_jobs_per_s']} jobs/s | {ok(d['meets']['throughput'])} |",
        f"| p99 create→bound < {TARGETS['p99_seconds']:g} s (paced at {p['submit_rate_target_per_s']:g}/s, the "
        f"issue's scenario; burst: {b['latency_p99_seconds']} s of queueing) | "
        f"{p['latency_p99_seconds']} s | {ok(d['meets']['p99'])} |",
        f"| the backlog's sustained rate as a share of the replay's (the same writes without the operator, on "
        f"this host in this run: {r['sustained_jobs_per_s']} jobs/s) | {d['operator_share_of_replay']} | |",
        f"| peak RSS < {TARGETS['rss_mb']:g} MB | {o['peak_rss_mb']} MB | {ok(d['meets']['rss'])} |",
        f"| Kueue baseline {KUEUE['jobs_per_s']} workloads/s ({KUEUE['workloads']} in ~{KUEUE['seconds']} s) | "
        f"{best['sustained_jobs_per_s']} jobs/s | "
        f"{'faster' if best['sustained_jobs_per_s'] > KUEUE['jobs_per_s'] else 'slower'} |",
        "",
        "The paced phase's throughput is capped by its 50/s submission; the burst phase shows what the "
        "operator sustains while the test creates jobs as fast as it can on the same cores; the backlog phase "
        "what it sustains draining a queue after a restart (its clock starts at the new process's start, "
        "priming included; sustained is first bind to last). Peak RSS is the larger of the two processes'. "
        "Latency is not reported for the backlog (its jobs waited for an operator that was not running). "
        f"The replay is the same-run baseline: the test itself writes, for each of {JOBS:,} more jobs, the status "
        "patch, Event and batch Job the operator wrote for the matching backlog job, through the operator's "
        "write path (`suanli.kube.client.Api`), with nothing watched, cached or planned: what the API server "
        "allows on this host now (the writer is a process of its own, as the operator is; its CPU is in the "
        "operator rows). The operator's CPU per bound job "
        "(the backlog's includes priming) says how fast it could bind with a core to itself, as on a real "
        "cluster where the API server runs elsewhere: one process, so one core is its ceiling. "
        "A negative Bound→Job delay means the Job's watch event reached the test before the ComputeJob's. "
        "Kueue's figure is from its own performance test on a different setup (real "
        "cluster, its own workload mix): an order-of-magnitude reference, not a like-for-like comparison.",
        f"Host: Python {d['host']['python']}, {d['host']['cpus']} CPUs ({d['host']['machine']}), load average "
        f"{d['host']['load_average_1m']} at the end; the API server, etcd, kwok, the controllers, the operator and "
        "the client share them (and, on a shared machine, other sessions' tests).",
        "",
    ]
    return "\n".join(lines)


EVENT_PODS, EVENT_ROUNDS = 500, 3


def quiet(pid: int, limit_s: float = 30.0) -> bool:
    """Wait (bounded) until a process uses under 2% of a CPU over a second; False if it never did."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        c0 = cpu_seconds(pid)
        time.sleep(1)  # the measurement window of one observation, inside a deadline-bound wait
        if cpu_seconds(pid) - c0 < 0.02:
            return True
    return False


def test_operator_cpu_per_watch_event(kube: Any, tmp_path: Path, core_v1: Any, bench_namespace: str,  # noqa: F811
                                      write_report: Any) -> None:
    """What one pod watch event costs the operator when there is nothing to do for it: reading the
    stream, JSON decoding and the mirror handler (kube/watch.py). 500 pods without accelerators
    (they stay Pending: their node selector matches no node) get their labels patched in rounds;
    every patch is one watch event the operator receives and ignores. Baseline: the same
    operator's CPU while idle for as long, measured just before. (When kopf delivered pod events,
    this was 0.54-0.64 ms per event.)"""
    def pod(i: int) -> dict[str, Any]:
        return {"metadata": {"name": f"idle-{i:04d}", "labels": {"round": "0"}},
                "spec": {"containers": [{"name": "main", "image": "none"}], "nodeSelector": {"suanli.io/none": "none"}}}

    op = OperatorProcess(kube.kubeconfig, tmp_path, "events", ["--namespace", bench_namespace, "--relist-seconds", "0"])
    op.start()
    assert op.proc is not None and op.proc.poll() is None, op.log_tail()
    pid = op.proc.pid
    rounds: list[dict[str, float]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="bench-events") as pool:
        try:
            list(pool.map(lambda i: core_v1.create_namespaced_pod(bench_namespace, pod(i)), range(EVENT_PODS)))
            for r in range(1, EVENT_ROUNDS + 1):  # bounded: EVENT_ROUNDS x EVENT_PODS patches
                quiet(pid)  # the previous round's (or the creates') events are processed
                c0, t0 = cpu_seconds(pid), time.monotonic()
                # A measurement window, not a wait: the idle baseline is the CPU this operator uses over
                # some wall time with nothing to do; there is no event to wait for.
                time.sleep(3)
                idle_rate = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
                c0, t0 = cpu_seconds(pid), time.monotonic()
                list(pool.map(lambda i, r=r: core_v1.patch_namespaced_pod(
                    f"idle-{i:04d}", bench_namespace, {"metadata": {"labels": {"round": str(r)}}}), range(EVENT_PODS)))
                # The operator has drained the events once its CPU use falls back to idle (observed, bounded).
                assert quiet(pid), f"the operator was still busy 30 s after round {r}'s {EVENT_PODS} patches"
                wall = time.monotonic() - t0
                used = cpu_seconds(pid) - c0
                rounds.append({"cpu_seconds": round(used, 2), "idle_cpu_seconds_same_wall": round(idle_rate * wall, 3),
                               "ms_per_event": round(1000 * (used - idle_rate * wall) / EVENT_PODS, 3)})
        finally:
            op.stop()
    per_event = sorted(r["ms_per_event"] for r in rounds)[len(rounds) // 2]
    data = {"pods": EVENT_PODS, "rounds": rounds, "median_ms_per_event": per_event,
            "host": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1)}}
    lines = [
        "# Operator CPU per watch event (`test_operator_cpu_per_watch_event`)",
        "",
        f"{EVENT_PODS} pods without accelerators, labels patched in {EVENT_ROUNDS} rounds: each patch is one watch "
        "event the operator receives (the pod watch stream, JSON, the mirror handler) and has nothing to do for. "
        "Idle baseline: the same operator's CPU over the same wall time just before each round. (Through kopf, "
        "before kube/watch.py: 0.54-0.64 ms per event.)",
        "",
        "| round | operator CPU | idle CPU, same wall time | per event |",
        "|---|---|---|---|",
        *[f"| {i} | {r['cpu_seconds']} s | {r['idle_cpu_seconds_same_wall']} s | {r['ms_per_event']} ms |"
          for i, r in enumerate(rounds, 1)],
        "",
        f"Median: {per_event} ms of operator CPU per watch event.",
        "",
    ]
    write_report("operator-events", data, "\n".join(lines))
    print("\n" + "\n".join(lines))
    assert all(r["cpu_seconds"] > r["idle_cpu_seconds_same_wall"] for r in rounds), rounds  # it saw the events


QUEUES = 4


def bench_queue(name: str, jobs: int) -> dict[str, Any]:
    """One of QUEUES ComputeQueues in one cohort, each with its share of `jobs` (1 accelerator each) as
    nominal GPU and NPU quota, compute units and an energy budget, so the quota filter, borrowing and
    the budget checks all run for every job (their share fits: every job is still bound)."""
    share = jobs // QUEUES
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ComputeQueue",
            "metadata": {"name": name, "uid": f"uid-{name}", "generation": 1},
            "spec": {"cohort": "bench", "weight": 1, "quota": {
                "accelerators": [{"type": "GPU", "count": share // 2}, {"type": "NPU", "count": share // 2}],
                "computeUnits": share * 4, "energy": {"kWh": 10**7, "period": "Month"}}}}


def fleet_cache(settings: Any, centers: list[dict[str, Any]], nodes_per_pool: int) -> tuple[Any, list[dict[str, Any]]]:
    """The operator's Cache holding these ComputeCenters and their kwok nodes, every node Ready: (cache, nodes)."""
    from tests.cluster import fake_nodes as fake_nodes_module

    from suanli.kube import cache as cache_mod

    cache = cache_mod.Cache(settings)
    for doc in centers:
        cache.upsert_center(doc)
    nodes = fake_nodes_module.nodes_for_centers(centers, nodes_per_pool=nodes_per_pool)
    for raw in nodes:
        raw["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        cache.upsert_node(raw)
    return cache, nodes


def timed_cycle(cache: Any, settings: Any, now: float) -> tuple[Any, Any, float, float]:
    """One scheduling cycle as the scheduler task runs it: (snapshot, plan reply, seconds of each)."""
    from suanli.placement import planner

    t0 = time.perf_counter()
    snap = cache.snapshot(now)
    t_snapshot = time.perf_counter() - t0
    t0 = time.perf_counter()
    reply = planner.plan(planner.PlanRequest(
        fleet=snap.fleet, capacity=snap.capacity, energy=snap.energy, jobs=snap.queue, now=now,
        settings=settings, ready=snap.ready, not_ready_reason=snap.not_ready_reason, quotas=snap.quotas,
        skippable=snap.skippable))
    return snap, reply, t_snapshot, time.perf_counter() - t0


def core_cycle(traced: bool, queues: int = 0) -> dict[str, Any]:
    """Build the operator's cache for the benchmark fleet and JOBS queued jobs, then run one
    scheduling cycle (snapshot + plan + assume) as the scheduler task does. With `queues`, the jobs
    are spread over that many ComputeQueues (`bench_queue`) and the plan applies their quotas. With
    `traced`, only the Python heap peak is meaningful (tracemalloc slows every allocation several times)."""
    import tracemalloc

    from suanli import settings as settings_mod
    from suanli.kube import records

    settings = settings_mod.Settings()
    if traced:
        tracemalloc.start()
    cache, _ = fleet_cache(settings, [center(i) for i in range(CENTERS)], NODES_PER_POOL)
    for q in range(queues):
        cache.tenants.upsert_queue(bench_queue(f"bench-q{q}", JOBS))
    now = time.time()
    stamp = datetime.datetime.fromtimestamp(now, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = time.perf_counter()
    for i in range(JOBS):
        raw = job(f"core-{i:05d}", "bench", i)
        raw["metadata"].update(uid=f"uid-{i}", generation=1, resourceVersion=str(i + 1), creationTimestamp=stamp)
        if queues:
            raw["spec"]["queue"] = f"bench-q{i % queues}"
        cache.upsert_job(raw, now)
    t_ingest = time.perf_counter() - t0
    _, reply, t_snapshot, t_plan = timed_cycle(cache, settings, now)
    bound = [d for d in reply.decisions if d.phase == "Bound"]
    for d in bound:
        assert d.binding is not None
        cache.assume(d.job.key, records.Binding(
            center=d.binding.pool.center, pool=d.binding.pool.pool, accelerator_type=d.binding.pool.accelerator_type,
            replicas=d.job.replicas, count=d.job.count, energy_kwh=d.binding.estimates.energy_kwh,
            carbon_kg=d.binding.estimates.carbon_kg, bound_epoch=now, queue=d.job.queue or ""))
    t0 = time.perf_counter()
    after = cache.snapshot(now)
    t_snapshot_bound = time.perf_counter() - t0
    peak_bytes = 0
    if traced:
        _, peak_bytes = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {
        "bound": len(bound), "queue_after": len(after.queue),
        "ingest_seconds": round(t_ingest, 3), "snapshot_seconds": round(t_snapshot, 3),
        "plan_seconds": round(t_plan, 3), "snapshot_with_all_bound_seconds": round(t_snapshot_bound, 3),
        "jobs_per_s_one_cycle": round(len(bound) / (t_snapshot + t_plan), 1),
        "traced_python_peak_mb": round(peak_bytes / 2**20, 1),
    }


def test_scheduler_core_rate_without_the_api_server(write_report: Any) -> None:
    """The operator's own ceiling: the same cache, snapshot and planner the scheduler task runs, on the
    benchmark's fleet and 2,000 queued jobs, with no API server, kopf or network (one process, one CPU).
    Timed untraced; the heap peak comes from a second, traced run. Then the same with the jobs spread
    over QUEUES ComputeQueues in a cohort (quota filter, borrowing, energy budget, fair-share order), in
    the same run: what tenancy costs a scheduling cycle."""
    timed = core_cycle(traced=False)
    memory = core_cycle(traced=True)
    tenants = core_cycle(traced=False, queues=QUEUES)
    tenants_memory = core_cycle(traced=True, queues=QUEUES)
    data = {"jobs": JOBS, **timed, "traced_python_peak_mb": memory["traced_python_peak_mb"],
            "with_queues": {"queues": QUEUES, **tenants, "traced_python_peak_mb": tenants_memory["traced_python_peak_mb"]}}
    cycle = timed["snapshot_seconds"] + timed["plan_seconds"]
    cycle_q = tenants["snapshot_seconds"] + tenants["plan_seconds"]
    data["with_queues"]["cycle_ratio_to_no_queues"] = round(cycle_q / cycle, 2) if cycle > 0 else None
    lines = [
        "# Scheduler core without the API server (`test_scheduler_core_rate_without_the_api_server`)",
        "",
        f"The benchmark fleet ({CENTERS * 2} pools, {CENTERS * 2 * NODES_PER_POOL} nodes) and {JOBS} queued jobs in the "
        "operator's cache; one snapshot + plan, as one scheduling cycle does. Second column: the same jobs "
        f"spread over {QUEUES} ComputeQueues of one cohort (GPU, NPU and compute-unit quota, an energy budget), "
        "measured in the same run.",
        "",
        f"| step | seconds | with {QUEUES} queues |",
        "|---|---|---|",
        f"| parse {JOBS} ComputeJobs into the cache | {timed['ingest_seconds']} | {tenants['ingest_seconds']} |",
        f"| snapshot (queue of {JOBS}) | {timed['snapshot_seconds']} | {tenants['snapshot_seconds']} |",
        f"| plan (bound: {timed['bound']} / {tenants['bound']}) | {timed['plan_seconds']} | {tenants['plan_seconds']} |",
        f"| snapshot with all assumed | {timed['snapshot_with_all_bound_seconds']} | "
        f"{tenants['snapshot_with_all_bound_seconds']} |",
        f"| Python heap peak, MB (traced run) | {memory['traced_python_peak_mb']} | {tenants_memory['traced_python_peak_mb']} |",
        "",
        f"One cycle binds {timed['jobs_per_s_one_cycle']} jobs/s of planning time without queues, "
        f"{tenants['jobs_per_s_one_cycle']} with them: a cycle (snapshot + plan) with queues takes "
        f"{data['with_queues']['cycle_ratio_to_no_queues']}x the time of one without.",
        "",
    ]
    write_report("operator-core", data, "\n".join(lines))
    print("\n" + "\n".join(lines))
    for run in (timed, memory, tenants, tenants_memory):
        assert run["bound"] == JOBS and run["queue_after"] == 0, run


DEEP_QUEUES = tuple(int(n) for n in os.environ.get("SUANLI_BENCH_DEEP_QUEUES", "2000,10000,40000").split(","))
SHAPES = ((1, 1), (1, 2), (1, 4), (1, 8), (2, 8), (4, 8))  # the deep queue's gangs (replicas, count)


def deep_queue_cycle(waiting: int, decided: bool) -> dict[str, Any]:
    """The benchmark fleet full (a pod holding every accelerator of every node), `waiting` queued jobs of
    mixed gang shapes with their Queued status (`decided`; else none: as if each were new), then one
    node's pod completes: the seconds of the snapshot and plan that follow, as the scheduler's cycle."""

    from suanli import settings as settings_mod

    settings = settings_mod.Settings()
    cache, nodes = fleet_cache(settings, [center(i) for i in range(CENTERS)], NODES_PER_POOL)
    for raw in nodes:
        resource = next(k for k in raw["status"]["allocatable"] if "/" in k)
        cache.upsert_pod({"metadata": {"name": f"busy-{raw['metadata']['name']}", "namespace": "other"},
                          "spec": {"nodeName": raw["metadata"]["name"], "containers": [
                              {"name": "main", "resources": {"requests": {resource: str(PER_NODE)}}}]},
                          "status": {"phase": "Running"}})
    now = time.time()
    stamp = datetime.datetime.fromtimestamp(now, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for i in range(waiting):
        raw = job(f"deep-{i:05d}", "bench", i)
        replicas, count = SHAPES[i % len(SHAPES)]
        raw["spec"]["replicas"], raw["spec"]["accelerators"]["count"] = replicas, count
        raw["metadata"].update(uid=f"uid-{i}", generation=1, resourceVersion=str(i + 1), creationTimestamp=stamp)
        if decided:
            raw["status"] = {"phase": "Queued", "observedGeneration": 1,
                             "message": "waiting: no pool can take the job now: not enough free accelerators"}
        cache.upsert_job(raw, now)
    cache.snapshot(now)  # the cycle before: the pools each job could use are known from it on
    first = nodes[0]["metadata"]["name"]
    done = {"metadata": {"name": f"busy-{first}", "namespace": "other"},
            "spec": {"nodeName": first, "containers": [
                {"name": "main", "resources": {"requests": {"nvidia.com/gpu": str(PER_NODE)}}}]},
            "status": {"phase": "Succeeded"}}
    cache.upsert_pod(done)
    snap, reply, t_snapshot, t_plan = timed_cycle(cache, settings, now)
    return {"waiting": waiting, "planned": len(snap.queue), "set_aside": snap.set_aside,
            "decided": len(reply.decisions), "skipped": reply.skipped,
            "bound": sum(1 for d in reply.decisions if d.phase == "Bound"),
            "snapshot_seconds": round(t_snapshot, 4), "plan_seconds": round(t_plan, 4),
            "cycle_seconds": round(t_snapshot + t_plan, 4)}


def test_a_cycle_after_one_node_frees_up_under_a_deep_queue(write_report: Any) -> None:
    """A full fleet, 2,000 / 10,000 / 40,000 waiting jobs (1x1 to 4x8 gangs) that already have their
    Queued status, and one node's 48 accelerators free again: the cycle takes only the jobs whose pools
    have room (the rest is set aside: kube/set_aside.py), and once the node is full again the planner
    skips the rest of them without scoring. Baseline in the same run: the same queue with no statuses
    yet, so every job is planned up to operator.max_jobs_per_cycle, as every cycle was before."""
    import suanli.placement.planner  # noqa: F401  (imported before the clock: the first row is not charged for it)

    rows = []
    for n in DEEP_QUEUES:
        aside = deep_queue_cycle(n, decided=True)
        every = deep_queue_cycle(n, decided=False)
        rows.append({"set_aside": aside, "baseline": every,
                     "ratio": round(aside["cycle_seconds"] / every["cycle_seconds"], 3) if every["cycle_seconds"] else None})
    lines = [
        "# A cycle after one node frees up, under a deep queue (`test_a_cycle_after_one_node_frees_up_under_a_deep_queue`)",
        "",
        f"The benchmark fleet ({CENTERS * 2} pools, {CENTERS * 2 * NODES_PER_POOL} nodes of {PER_NODE}) full; the queue's "
        f"gangs are {', '.join(f'{r}x{c}' for r, c in SHAPES)} in turn; one node's accelerators come free. Baseline "
        "(same run): the same jobs without their Queued status, planned as every cycle planned them before.",
        "",
        "| waiting | set aside | in the cycle | decided | bound | snapshot s | plan s | cycle s | baseline cycle s (decided) | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        a, b = row["set_aside"], row["baseline"]
        lines.append(f"| {a['waiting']} | {a['set_aside']} | {a['planned']} | {a['decided']} | {a['bound']} | "
                     f"{a['snapshot_seconds']} | {a['plan_seconds']} | {a['cycle_seconds']} | {b['cycle_seconds']} "
                     f"({b['decided']}) | {row['ratio']} |")
    write_report("operator-deep-queue", {"rows": rows}, "\n".join(lines))
    print("\n" + "\n".join(lines))
    for row in rows:
        a = row["set_aside"]
        assert a["bound"] >= 1, a  # the freed node is used
        assert a["decided"] + a["skipped"] == a["planned"] and a["decided"] < a["planned"], a  # once full, skipped
        assert row["baseline"]["decided"] == min(row["baseline"]["waiting"], 2000), row["baseline"]
