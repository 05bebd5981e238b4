"""Ten times the work, with contention (issue #17, part 2): how the operator's cost grows with the queue
and the fleet.

Deep queue under churn, in process (`test_deep_queue_under_churn_in_process`): the benchmark fleet
(10 centers x 2 pools x 8 nodes x 48 = 7,680 accelerators) full of running gangs, and 2,000 / 10,000 /
40,000 waiting ComputeJobs of mixed gang shapes (1x1 to 4x8) with their Queued status. Jobs run a few
(simulated) seconds; each completion frees one gang and starts a scheduling cycle, as a completion
event does in the operator; every job bound is replaced in the queue by a new arrival, so the depth
holds. What runs is the operator's own code: the cache (`upsert_job`, `upsert_pod`, `assume`), the
snapshot, the planner and the status each decision writes (`kube/status.decided`), with the API
server's echo of each write (the status, the pods on their nodes, their completion) put into the cache
as its watch would. No API server: at 40,000 jobs, creating them through the local one takes 10+
minutes on these machines, and what grows with the queue is the operator's cycle, not the writes (which
are per bind and measured against the real API server in `test_churn_on_the_api_server`). Baseline in
the same run: the same churn with the jobs' Queued statuses held back (their message dropped), so every
cycle plans the head of the queue up to `operator.max_jobs_per_cycle`, as every cycle did before jobs
were set aside. Reported per size: cycles/s and binds per CPU second, the cycle's duration (snapshot +
plan) and CPU per bind (the whole driver: cache updates, snapshot, plan, statuses), and an exponent
fitted over the sizes (least squares of log y on log n).

Memory (`test_memory_at_forty_thousand_jobs_and_five_thousand_nodes`): a process of its own fills the
operator's Cache through its upsert methods with 100 ComputeCenters of one 50-node pool of 8
accelerators (5,000 nodes, 40,000 accelerators), a running pod per node, and 40,000 ComputeJobs (5,000 of
them bound, with their pods; the rest Queued), and takes a snapshot; its peak RSS is reported against
the 1 GB target.

Deep queue under churn, on the API server (`test_churn_on_the_api_server`): the local control plane,
`suanli run` and SUANLI_BENCH_SCALE_API_JOBS (1,000) jobs of the same shapes, about 1.4 times the fleet,
created while the operator is stopped; it binds them as gangs complete (pods run 2-3 s in kwok). Its
bind rate is compared with the same-run replay of the same writes (test_bench_operator's baseline), and,
from the first gang finished to the last bind, with the accelerators the finished gangs freed (nothing can
bind faster than capacity comes back), with the time from each finish to the next bind.

Big fleet (`test_big_fleet`): 100 ComputeCenters of one pool each, 5,000 kwok nodes of 8 accelerators
(40,000), on a local control plane of its own (CLUSTER=bench-big-fleet, started with 120 s node Leases
and the controller-manager at 200 QPS, removed afterwards; on an external cluster, that one): node
creation, the time until every node is Ready and untainted (the benchmark fails when the whole fleet is
not usable within its wait: it would measure a smaller one), the operator's priming, memory and cycle
time, and the ComputeCenter status writes per second while jobs are paced in.

Knobs (environment): SUANLI_BENCH_SCALE_QUEUES (2000,10000,40000), SUANLI_BENCH_SCALE_COMPLETIONS (300
cycles per size), SUANLI_BENCH_SCALE_BASELINE_COMPLETIONS (10), SUANLI_BENCH_SCALE_MEMORY_JOBS (40000),
SUANLI_BENCH_SCALE_MEMORY_NODES (5000), SUANLI_BENCH_SCALE_API_JOBS (1000; phases bounded by
SUANLI_BENCH_OPERATOR_TIMEOUT_SECONDS, 300), SUANLI_BENCH_SCALE_CENTERS (100),
SUANLI_BENCH_SCALE_NODES (5000), SUANLI_BENCH_SCALE_BIG_FLEET_JOBS (1500) and _RATE (15/s),
SUANLI_BENCH_SCALE_STEADY_SECONDS (60), SUANLI_BENCH_SCALE_READY_WAIT_SECONDS (600). Run one with
`make bench` or `.venv/bin/python -m pytest tests/bench/test_bench_scale.py -m bench -k NAME --timeout 1800`
(CLUSTER=NAME for a named local cluster).
"""

from __future__ import annotations

import bisect
import concurrent.futures
import contextlib
import dataclasses
import datetime
import heapq
import itertools
import json
import math
import multiprocessing
import os
import pathlib
import random
import resource
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.bench import test_bench_operator as ob
from tests.bench.test_bench_operator import bench_namespace, custom_objects  # noqa: F401  (fixtures)
from tests.cluster.pytest_plugin import core_v1, fake_nodes, kube  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.bench]

QUEUES = tuple(int(n) for n in os.environ.get("SUANLI_BENCH_SCALE_QUEUES", "2000,10000,40000").split(","))
COMPLETIONS = int(os.environ.get("SUANLI_BENCH_SCALE_COMPLETIONS", "300"))
BASELINE_COMPLETIONS = int(os.environ.get("SUANLI_BENCH_SCALE_BASELINE_COMPLETIONS", "10"))
MEMORY_JOBS = int(os.environ.get("SUANLI_BENCH_SCALE_MEMORY_JOBS", "40000"))
MEMORY_NODES = int(os.environ.get("SUANLI_BENCH_SCALE_MEMORY_NODES", "5000"))
SHAPES = ob.SHAPES  # (replicas, count): 1x1, 1x2, 1x4, 1x8, 2x8, 4x8
RUN_SECONDS = (2.0, 20.0)  # a job's simulated run, uniform
NS = "bench"


def stamp(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def exponent(sizes: list[int], values: list[float]) -> float | None:
    """b of the least-squares fit log y = a + b log n (None with fewer than two positive points)."""
    points = [(math.log(n), math.log(v)) for n, v in zip(sizes, values, strict=True) if v > 0]
    if len(points) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return round(sum((x - mx) * (y - my) for x, y in points) / sxx, 3) if sxx else None


class Churn:
    """The operator's cache on the benchmark fleet, and the API server's echo of its writes, simulated."""

    def __init__(self, decided: bool, seed: int = 17):

        from suanli import settings as settings_mod

        self.decided = decided  # False: the baseline, Queued statuses without their message (never set aside)
        self.rng = random.Random(seed)
        self.settings = settings_mod.Settings()
        self.cache, _ = ob.fleet_cache(self.settings, [ob.center(i) for i in range(ob.CENTERS)], ob.NODES_PER_POOL)
        self.now = 1_800_000_000.0
        self.rv = itertools.count(1)
        self.serial = itertools.count()
        self.ends: list[tuple[float, int, tuple[str, str]]] = []  # (when it completes, tiebreak, job)
        self.pods: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.binds = 0
        self.status_writes = 0

    def add_job(self, shape: tuple[int, int] | None = None, queued: bool = False) -> None:
        i = next(self.serial)
        raw = ob.job(f"churn-{i:06d}", NS, i)
        replicas, count = shape or SHAPES[i % len(SHAPES)]
        raw["spec"]["replicas"], raw["spec"]["accelerators"]["count"] = replicas, count
        raw["metadata"].update(uid=f"uid-{i}", generation=1, resourceVersion=str(next(self.rv)),
                               creationTimestamp=stamp(self.now - 1.0 + i * 1e-6))
        if queued:
            raw["status"] = self.waiting_status({"phase": "Queued", "observedGeneration": 1,
                                                 "message": "waiting: no pool can take the job now: not enough free "
                                                            "accelerators"})
        self.cache.upsert_job(raw, self.now)

    def waiting_status(self, status: dict[str, Any]) -> dict[str, Any]:
        return status if self.decided else {**status, "message": ""}

    def write(self, key: tuple[str, str], status: dict[str, Any]) -> None:
        """The API server's echo of a status write, as the watch puts it into the cache."""
        record = self.cache.jobs[key]
        raw = dict(record.raw)
        raw["metadata"] = {**raw["metadata"], "resourceVersion": str(next(self.rv))}
        raw["status"] = status
        self.cache.upsert_job(raw, self.now)
        self.status_writes += 1

    def cycle(self) -> tuple[float, float, float, int, int]:
        """One scheduling cycle as the scheduler runs it, its writes echoed: (snapshot s, plan s, their CPU s,
        bound, decided)."""
        from suanli.kube import records, workloads
        from suanli.kube import snapshot as snapshot_mod
        from suanli.kube import status as status_mod

        cpu0 = time.process_time()
        snap, reply, t_snapshot, t_plan = ob.timed_cycle(self.cache, self.settings, self.now)
        cpu = time.process_time() - cpu0
        bound = 0
        for d in reply.decisions:
            key = d.job.key
            record = self.cache.jobs[key]
            if d.phase != "Bound":
                status = self.waiting_status(status_mod.decided(d, record.generation, self.now))
                if status_mod.waiting_changed(record.status, status):
                    self.write(key, status)
                continue
            assert d.binding is not None and d.allocation is not None
            nodes = snapshot_mod.nodes_of(snap, d.allocation)
            c = d.binding
            self.cache.assume(key, records.Binding(
                center=c.pool.center, pool=c.pool.pool, accelerator_type=c.pool.accelerator_type,
                replicas=d.job.replicas, count=d.job.count, energy_kwh=c.estimates.energy_kwh,
                carbon_kg=c.estimates.carbon_kg, bound_epoch=self.now, nodes=nodes, queue=d.job.queue or ""))
            status = status_mod.decided(d, record.generation, self.now, nodes)
            self.write(key, status)
            resource_name = snap.fleet.pools[d.allocation.pool].resource_name
            pods = [{"metadata": {"name": f"{record.label}-{i}", "namespace": NS, "uid": f"{record.uid}-{i}",
                                  "labels": {workloads.LABEL_JOB: record.label, workloads.LABEL_UID: record.uid,
                                             workloads.LABEL_ATTEMPT: "0", workloads.COMPLETION_INDEX: str(i)}},
                     "spec": {"nodeName": node, "containers": [
                         {"name": "main", "resources": {"requests": {resource_name: str(d.job.count)}}}]},
                     "status": {"phase": "Running"}} for i, node in enumerate(nodes)]
            for pod in pods:
                self.cache.upsert_pod(pod)
            self.pods[key] = pods
            self.write(key, {**status, "phase": "Running", "startTime": stamp(self.now)})
            heapq.heappush(self.ends, (self.now + self.rng.uniform(*RUN_SECONDS), next(self.serial), key))
            bound += 1
        self.binds += bound
        return t_snapshot, t_plan, cpu, bound, len(reply.decisions)

    def complete_next(self) -> None:
        """The earliest running job completes: its pods succeed, then its status says so."""
        when, _, key = heapq.heappop(self.ends)
        self.now = max(self.now, when)
        for pod in self.pods.pop(key):
            self.cache.upsert_pod({**pod, "status": {"phase": "Succeeded"}})
        record = self.cache.jobs[key]
        self.write(key, {**record.status, "phase": "Succeeded", "completionTime": stamp(self.now),
                         "energy": {"kWh": 1.0, "carbonKg": 0.3}})

    def fill(self) -> int:
        """Fill the fleet with running gangs of every shape (cycles until one binds nothing)."""
        for _ in range(50):
            for shape in SHAPES * 60:
                self.add_job(shape)
            bound = self.cycle()[3]
            if not bound:
                break
        self.now += 1.0
        # What did not fit waits too: with its Queued status, like the queue added next.
        return len(self.cache.waiting())


def churn(waiting: int, decided: bool, completions: int) -> dict[str, Any]:
    """A full fleet, `waiting` queued jobs, then `completions` completions each followed by a cycle."""
    c = Churn(decided)
    t0 = time.perf_counter()
    leftover = c.fill()
    for _ in range(max(0, waiting - leftover)):
        c.add_job(queued=True)
    c.cycle()  # the leftover fillers get their Queued status; every job is filed from here on
    setup_s = time.perf_counter() - t0
    running = len(c.ends)
    binds0, writes0 = c.binds, c.status_writes
    cycles: list[float] = []
    cycle_cpu: list[float] = []
    snapshots: list[float] = []
    queue_lengths: list[int] = []
    decided_per_cycle: list[int] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(completions):
        if not c.ends:
            break
        c.complete_next()
        t_snapshot, t_plan, t_cpu, bound, n_decided = c.cycle()
        for _ in range(bound):
            c.add_job()  # a new arrival for each job bound: the queue's depth holds
        cycles.append(t_snapshot + t_plan)
        cycle_cpu.append(t_cpu)
        snapshots.append(t_snapshot)
        decided_per_cycle.append(n_decided)
        queue_lengths.append(len(c.cache.holds.waiting))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    binds = c.binds - binds0
    cycles_sorted = sorted(cycles)
    return {
        "waiting": waiting, "decided": decided, "setup_seconds": round(setup_s, 1), "running_at_start": running,
        "cycles": len(cycles), "binds": binds, "status_writes": c.status_writes - writes0,
        "queue_min": min(queue_lengths, default=0), "queue_max": max(queue_lengths, default=0),
        "cycle_mean_seconds": round(statistics.fmean(cycles), 4) if cycles else None,
        "cycle_p50_seconds": round(ob.percentile(cycles_sorted, 50), 4) if cycles else None,
        "cycle_p99_seconds": round(ob.percentile(cycles_sorted, 99), 4) if cycles else None,
        "cycle_cpu_mean_seconds": round(statistics.fmean(cycle_cpu), 4) if cycle_cpu else None,
        "snapshot_mean_seconds": round(statistics.fmean(snapshots), 4) if snapshots else None,
        "decisions_per_cycle": round(statistics.fmean(decided_per_cycle), 1) if decided_per_cycle else None,
        "cpu_seconds": round(cpu, 2), "wall_seconds": round(wall, 2),
        "cpu_ms_per_bind": round(1000 * cpu / binds, 2) if binds else None,
        "binds_per_cpu_second": round(binds / cpu, 1) if cpu > 0 else None,
        "cycles_per_second": round(len(cycles) / wall, 1) if wall > 0 else None,
    }


def test_deep_queue_under_churn_in_process(write_report: Any) -> None:
    rows = []
    for n in QUEUES:
        aside = churn(n, decided=True, completions=COMPLETIONS)
        every = churn(n, decided=False, completions=BASELINE_COMPLETIONS)
        rows.append({"waiting": n, "set_aside": aside, "baseline": every})
        print(n, aside, every, flush=True)
    sizes = [r["waiting"] for r in rows]
    fits = {
        variant: {metric: exponent(sizes, [r[variant][metric] or 0.0 for r in rows])
                  for metric in ("cycle_mean_seconds", "cycle_cpu_mean_seconds", "cpu_ms_per_bind", "snapshot_mean_seconds")}
        for variant in ("set_aside", "baseline")
    }
    lines = [
        "# Deep queue under churn, in process (`tests/bench/test_bench_scale.py::test_deep_queue_under_churn_in_process`)",
        "",
        f"The benchmark fleet ({ob.CENTERS * 2} pools, {ob.CENTERS * 2 * ob.NODES_PER_POOL} nodes of {ob.PER_NODE}) full of "
        f"running gangs; the queue's gangs are {', '.join(f'{r}x{c}' for r, c in SHAPES)} in turn, with their Queued "
        f"status; a job runs {RUN_SECONDS[0]:g}-{RUN_SECONDS[1]:g} simulated seconds; each completion is followed by one "
        "scheduling cycle (snapshot + plan, the bound jobs' and Queued jobs' statuses and pods echoed into the cache as "
        "the watch would), and each job bound is replaced by a new arrival. The operator's cache, snapshot, planner and "
        "status code; no API server (see the module docstring). Baseline, same run: the same churn with the Queued "
        "statuses' message held back, so no job is ever set aside and every cycle plans the head of the queue (up to "
        "2,000), as before. CPU per bind: the whole driver (cache updates, snapshot, plan, statuses) over the churn.",
        "",
        "| waiting | cycles | binds | cycle mean s | cycle p99 s | cycle CPU mean s | snapshot mean s | decisions / cycle | "
        "CPU ms / bind | binds / CPU s | baseline cycle mean s (CPU) | baseline CPU ms / bind | baseline binds / CPU s | "
        "cycle ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, b = r["set_aside"], r["baseline"]
        ratio = round(a["cycle_mean_seconds"] / b["cycle_mean_seconds"], 3) if b["cycle_mean_seconds"] else None
        r["cycle_ratio"] = ratio
        lines.append(f"| {r['waiting']} | {a['cycles']} | {a['binds']} | {a['cycle_mean_seconds']} | {a['cycle_p99_seconds']} | "
                     f"{a['cycle_cpu_mean_seconds']} | {a['snapshot_mean_seconds']} | {a['decisions_per_cycle']} | "
                     f"{a['cpu_ms_per_bind']} | {a['binds_per_cpu_second']} | {b['cycle_mean_seconds']} "
                     f"({b['cycle_cpu_mean_seconds']}) | {b['cpu_ms_per_bind']} | {b['binds_per_cpu_second']} | {ratio} |")
    lines += [
        "",
        "Growth exponents over the sizes (least squares of log y on log n; 0 = flat, 1 = linear):",
        "",
        "| | cycle mean (wall) | cycle CPU | CPU per bind | snapshot |",
        "|---|---|---|---|---|",
        *(f"| {variant.replace('_', ' ')} | {fits[variant]['cycle_mean_seconds']} | {fits[variant]['cycle_cpu_mean_seconds']} | "
          f"{fits[variant]['cpu_ms_per_bind']} | {fits[variant]['snapshot_mean_seconds']} |"
          for variant in ("set_aside", "baseline")),
        "",
        "Measured on a 2-core machine shared with other sessions; ratios are same-run.",
        "",
    ]
    write_report("scale-churn-in-process", {"rows": rows, "exponents": fits, "completions": COMPLETIONS,
                                            "baseline_completions": BASELINE_COMPLETIONS}, "\n".join(lines))
    print("\n" + "\n".join(lines))
    for r in rows:
        a, b = r["set_aside"], r["baseline"]
        assert a["binds"] > 0 and b["binds"] > 0, r  # the churn binds: freed gangs are used
        assert a["cycles"] == COMPLETIONS, a
        assert a["queue_min"] >= 0.9 * r["waiting"], a  # the queue's depth held
        assert b["decisions_per_cycle"] > a["decisions_per_cycle"], r  # the baseline plans what set-aside skips


# --- memory --------------------------------------------------------------------------------------------


def big_center(i: int, nodes: int) -> dict[str, Any]:
    """Center `i` of the big fleet: one pool of `nodes` nodes of 8 A100s or Ascend910Bs."""
    name = f"big-c{i:03d}"
    region = ob.REGIONS[i % len(ob.REGIONS)]
    gpu = i % 2 == 0
    return {
        "apiVersion": f"{ob.GROUP}/{ob.VERSION}", "kind": "ComputeCenter", "metadata": {"name": name},
        "spec": {
            "region": region,
            "network": {"defaultBandwidthGbps": 10},
            "energy": {"timeZone": "Asia/Shanghai", "pue": 1.2, "carbonIntensity": {"gramsPerKWh": 300 + 2 * i}},
            "pools": [{"name": "a100" if gpu else "ascend", "acceleratorType": "GPU" if gpu else "NPU",
                       "model": "A100" if gpu else "Ascend910B",
                       "resourceName": "nvidia.com/gpu" if gpu else "huawei.com/Ascend910",
                       "nodeSelector": {"suanli.io/pool": f"{name}-pool"},
                       "expected": {"nodes": nodes, "acceleratorsPerNode": 8}}],
        },
    }


def fill_memory(jobs: int, nodes: int, out: Any) -> None:
    """In a process of its own: the Cache with `nodes` nodes (100 centers) and `jobs` ComputeJobs, then a
    snapshot; puts (peak RSS MB, RSS MB before the jobs, seconds) on `out`."""

    from suanli import settings as settings_mod
    from suanli.kube import workloads

    t0 = time.perf_counter()
    per_center = max(1, nodes // 100)
    centers = [big_center(i, per_center) for i in range(100)]
    cache, raws = ob.fleet_cache(settings_mod.Settings(), centers, per_center)
    rss_nodes_mb = ob.vm(os.getpid(), "VmRSS")
    now = 1_800_000_000.0
    bound = min(jobs, len(raws))
    for i in range(jobs):
        raw = ob.job(f"mem-{i:06d}", NS, i)
        raw["spec"]["replicas"], raw["spec"]["accelerators"]["count"] = SHAPES[i % 4]
        raw["metadata"].update(uid=f"uid-{i}", generation=1, resourceVersion=str(i + 1),
                               creationTimestamp=stamp(now - jobs + i))
        if i < bound:  # one job running on each node, with its pod
            node = raws[i]["metadata"]["name"]
            center_name = centers[i // per_center]["metadata"]["name"]
            pool = centers[i // per_center]["spec"]["pools"][0]
            raw["status"] = {"phase": "Running", "observedGeneration": 1, "message": "bound",
                             "binding": {"center": center_name, "pool": pool["name"], "acceleratorType": pool["acceleratorType"],
                                         "nodes": [node]},
                             "estimates": {"energyKWh": 1.0, "carbonKg": 0.3}, "boundTime": stamp(now),
                             "startTime": stamp(now)}
            raw["spec"]["replicas"], raw["spec"]["accelerators"]["count"] = 1, 8
            label = workloads.label_value(raw["metadata"]["name"])
            cache.upsert_pod({"metadata": {"name": f"{label}-0", "namespace": NS, "uid": f"pod-{i}",
                                           "labels": {workloads.LABEL_JOB: label, workloads.LABEL_UID: f"uid-{i}",
                                                      workloads.LABEL_ATTEMPT: "0", workloads.COMPLETION_INDEX: "0"}},
                              "spec": {"nodeName": node, "containers": [
                                  {"name": "main", "resources": {"requests": {pool["resourceName"]: "8"}}}]},
                              "status": {"phase": "Running"}})
        else:
            raw["status"] = {"phase": "Queued", "observedGeneration": 1, "message": "waiting: no pool can take the job now"}
        cache.upsert_job(raw, now)
    snap = cache.snapshot(now)
    out.put({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
             "rss_after_nodes_mb": rss_nodes_mb, "seconds": round(time.perf_counter() - t0, 1),
             "jobs": len(cache.jobs), "nodes": len(cache.nodes), "pods": len(cache.pods),
             "accelerators": sum(u.capacity for u in snap.usage), "waiting": len(cache.holds.waiting),
             "set_aside": snap.set_aside, "in_cycle": len(snap.queue)})


def test_memory_at_forty_thousand_jobs_and_five_thousand_nodes(write_report: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=fill_memory, args=(MEMORY_JOBS, MEMORY_NODES, out))
    proc.start()
    try:
        result = out.get(timeout=1200)
    finally:
        proc.join(timeout=60)
    baseline_q = ctx.Queue()  # the same process with the fleet and no job: what the jobs add
    base = ctx.Process(target=fill_memory, args=(0, MEMORY_NODES, baseline_q))
    base.start()
    try:
        empty = baseline_q.get(timeout=600)
    finally:
        base.join(timeout=60)
    data = {"jobs": MEMORY_JOBS, "nodes": MEMORY_NODES, "with_jobs": result, "without_jobs": empty,
            "target_mb": 1024,
            "kb_per_job": round((result["peak_rss_mb"] - empty["peak_rss_mb"]) * 1024 / max(1, MEMORY_JOBS), 1)}
    lines = [
        f"# Memory at {MEMORY_JOBS:,} jobs and {MEMORY_NODES:,} nodes "
        "(`tests/bench/test_bench_scale.py::test_memory_at_forty_thousand_jobs_and_five_thousand_nodes`)",
        "",
        "In process (a process of its own): the operator's Cache filled through its upsert methods from realistic "
        f"raw objects: 100 ComputeCenters, {result['nodes']} nodes of 8 accelerators ({result['accelerators']} "
        f"accelerators), {result['pods']} running pods, {result['jobs']} ComputeJobs ({result['jobs'] - result['waiting']} "
        f"running, {result['waiting']} Queued), then one snapshot. No API server, kopf or watch streams (the operator "
        "process adds its interpreter, kopf and client libraries: see the big-fleet report for a real process).",
        "",
        "| | peak RSS MB | RSS after nodes MB | seconds |",
        "|---|---|---|---|",
        f"| {MEMORY_JOBS} jobs, {MEMORY_NODES} nodes | {result['peak_rss_mb']} | {result['rss_after_nodes_mb']} | {result['seconds']} |",
        f"| no job, {MEMORY_NODES} nodes | {empty['peak_rss_mb']} | {empty['rss_after_nodes_mb']} | {empty['seconds']} |",
        "",
        f"About {data['kb_per_job']} KB per job. Target: under 1 GB at 40,000 jobs and 5,000 nodes: "
        + ("not measured at that size (knobs)" if MEMORY_JOBS < 40000 or MEMORY_NODES < 5000
           else "met" if result["peak_rss_mb"] < 1024 else "not met") + ".",
        "",
    ]
    write_report("scale-memory", data, "\n".join(lines))
    print("\n" + "\n".join(lines))
    assert result["jobs"] == MEMORY_JOBS and result["nodes"] == MEMORY_NODES, result
    assert result["in_cycle"] + result["set_aside"] + (result["jobs"] - result["waiting"]) >= MEMORY_JOBS - 1, result
    assert result["peak_rss_mb"] > empty["peak_rss_mb"], data  # the jobs are held


# --- on the API server -----------------------------------------------------------------------------------

API_JOBS = int(os.environ.get("SUANLI_BENCH_SCALE_API_JOBS", "1000"))
BIG_CENTERS = int(os.environ.get("SUANLI_BENCH_SCALE_CENTERS", "100"))
BIG_NODES = int(os.environ.get("SUANLI_BENCH_SCALE_NODES", "5000"))
BIG_JOBS = int(os.environ.get("SUANLI_BENCH_SCALE_BIG_FLEET_JOBS", "1500"))
BIG_RATE = float(os.environ.get("SUANLI_BENCH_SCALE_BIG_FLEET_RATE", "15"))
STEADY_SECONDS = float(os.environ.get("SUANLI_BENCH_SCALE_STEADY_SECONDS", "60"))
READY_WAIT_SECONDS = float(os.environ.get("SUANLI_BENCH_SCALE_READY_WAIT_SECONDS", "600"))
# The big fleet's own local cluster and its settings (tests/cluster/lib.sh): 120 s node Leases (5,000 are
# then 42 renewals a second, not 500) and the controller-manager at 200 QPS, so every node becomes usable.
BIG_CLUSTER = "bench-big-fleet"
BIG_CLUSTER_SETTINGS = {"SUANLI_NODE_LEASE_SECONDS": "120", "SUANLI_CONTROLLER_MANAGER_QPS": "200"}
BENCH_NODE_LABEL = "suanli.io/bench-scale"


def shaped_job(name: str, ns: str, i: int) -> dict[str, Any]:
    """Job `i` of the operator benchmark, as a gang of SHAPES[i % 6]; its pods complete 2-3 s after they run."""
    doc = ob.job(name, ns, i)
    doc["spec"]["replicas"], doc["spec"]["accelerators"]["count"] = SHAPES[i % len(SHAPES)]
    return doc


class FinishedWatcher(ob.FirstSeen):
    """batch/v1 Jobs the operator created, first seen finished (Complete or Failed), under their
    ComputeJob's name: when a gang's accelerators were freed."""

    def __init__(self, custom: Any, ns: str):
        super().__init__(custom, ns, "batch", "v1", "jobs", "finished")

    def accept(self, obj: dict[str, Any]) -> str | None:
        done = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                   for c in (obj.get("status") or {}).get("conditions") or [])
        owners = obj["metadata"].get("ownerReferences") or []
        return next((str(o["name"]) for o in owners if o.get("kind") == "ComputeJob"), None) if done else None


def capacity_paced(bound: dict[str, float], finished: dict[str, float], prefix: str) -> dict[str, Any]:
    """The churn as the fleet allows it: once the first gang has finished, jobs can only be bound as fast
    as finished gangs free accelerators. Over [first finish, last bind]: accelerators bound per second
    against accelerators freed per second (the same-run baseline under contention: nothing can bind
    faster than capacity comes back), and for each finish while jobs still waited, the time to the next
    bind (the operator's reaction; the pod pipeline's share is the rest of the gang's turn-around)."""

    def size(name: str) -> int:
        replicas, count = SHAPES[int(name.rsplit("-", 1)[1]) % len(SHAPES)]
        return replicas * count

    mine = {n: t for n, t in finished.items() if n.startswith(prefix)}
    if not mine or not bound:
        return {}
    start, end = min(mine.values()), max(bound.values())
    freed = sum(size(n) for n, t in mine.items() if start <= t <= end)
    taken = sum(size(n) for n, t in bound.items() if start < t <= end)
    binds = sorted(bound.values())
    reactions = []
    for t in sorted(mine.values()):
        later = bisect.bisect_right(binds, t)
        if later < len(binds):
            reactions.append(binds[later] - t)
    span = max(end - start, 1e-9)
    return {"window_seconds": round(span, 1), "accelerators_freed": freed, "accelerators_bound": taken,
            "freed_per_s": round(freed / span, 1), "bound_per_s": round(taken / span, 1),
            "bound_share_of_freed": round(taken / freed, 3) if freed else None,
            "finish_to_next_bind_p50_seconds": round(ob.percentile(reactions, 50), 3),
            "finish_to_next_bind_p99_seconds": round(ob.percentile(reactions, 99), 3),
            "finishes_followed_by_a_bind": len(reactions)}


def capacity_line(paced: dict[str, Any]) -> str:
    if not paced:
        return "Capacity-paced baseline: no gang was seen finished while jobs waited."
    share = paced["bound_share_of_freed"]
    return (
        f"Under contention the fleet sets the pace: over the {paced['window_seconds']} s from the first gang "
        f"finished to the last bind, the operator bound **{paced['bound_per_s']} accelerators/s** against "
        f"{paced['freed_per_s']} freed/s by finished gangs: **{share}** of the freed capacity (the same-run "
        f"baseline under churn, target >= 0.8: {'met' if share is not None and share >= 0.8 else 'not met'}). "
        f"A finished gang was followed by a bind within {paced['finish_to_next_bind_p50_seconds']} s (p50), "
        f"{paced['finish_to_next_bind_p99_seconds']} s (p99), over {paced['finishes_followed_by_a_bind']} finishes "
        "(from the test's watch of the batch Job to its watch of the ComputeJob)."
    )


def operator_figures(op: Any) -> dict[str, float]:
    text = ob.urllib_metrics(op)
    from tests.e2e.helpers import metric_value

    return {name: metric_value(text, name) for name in (
        "suanli_binds_total", "suanli_scheduling_cycle_seconds_count", "suanli_scheduling_cycle_seconds_sum",
        "suanli_queue_length", "suanli_queue_set_aside")}


def writes_between(before: dict[str, float], after: dict[str, float], top: int | None = 10) -> dict[str, float]:
    """API writes by "VERB resource" between two readings, the `top` most frequent (None: all)."""
    delta = {k: after[k] - before.get(k, 0.0) for k in after if after[k] > before.get(k, 0.0)}
    return dict(sorted(delta.items(), key=lambda kv: -kv[1])[:top])


@pytest.mark.cluster
def test_churn_on_the_api_server(
    kube: Any, tmp_path: Any, fake_nodes: Any, custom_objects: Any, bench_namespace: str,  # noqa: F811
    write_report: Any,
) -> None:
    """The benchmark fleet (7,680 accelerators) and API_JOBS ComputeJobs of mixed gang shapes (1x1 to
    4x8, 10.5 accelerators on average: 1,000 are 1.4 times the fleet), created while the operator is stopped; it starts, fills the fleet
    and binds the rest as gangs complete (their pods run 2-3 s in kwok): a contended queue drained
    under churn, through the real API server. Baseline, same run: the replay phase of
    test_bench_operator (the same status patches, Events, batch Jobs and gate-lifting pod patches, made
    by the test through the operator's write path, with nothing watched or planned) for as many jobs of
    the same shapes. The bind rate under churn as a share of it is the issue's target (>= 0.8)."""
    namespace = bench_namespace
    centers = [ob.center(i, prefix="scale-c") for i in range(ob.CENTERS)]
    fake_nodes(centers, nodes_per_pool=ob.NODES_PER_POOL)
    for doc in centers:
        with contextlib.suppress(Exception):
            custom_objects.delete_cluster_custom_object(ob.GROUP, ob.VERSION, "computecenters", doc["metadata"]["name"])
        custom_objects.create_cluster_custom_object(ob.GROUP, ob.VERSION, "computecenters", doc)
    pools = {(doc["metadata"]["name"], pool["name"]): (pool["resourceName"], pool["nodeSelector"])
             for doc in centers for pool in doc["spec"]["pools"]}
    op = ob.OperatorProcess(kube.kubeconfig, tmp_path, "scale", ["--namespace", namespace])
    marks: dict[str, Any] = {}
    statuses: dict[str, dict[str, Any]] = {}
    pins: dict[str, list[str]] = {}
    outcome: dict[str, Any] = {}

    def start_operator() -> float:
        marks["cluster"], marks["writes"] = ob.component_cpu(kube), ob.api_requests(kube.api_client)
        started = time.time()
        op.start()
        return started

    def start_replay() -> float:
        marks["replay_cluster"], marks["replay_writes"] = ob.component_cpu(kube), ob.api_requests(kube.api_client)
        started = time.time()
        marks["writer"] = multiprocessing.get_context("spawn").Process(
            target=ob.replay_process, name="scale-replay", daemon=True,
            args=(kube.kubeconfig, namespace, statuses, pools, str(tmp_path / "replay.json"), pins))
        marks["writer"].start()
        return started

    try:
        with ob.BoundWatcher(custom_objects, namespace) as watcher, ob.WorkloadWatcher(custom_objects, namespace) as made, \
                FinishedWatcher(custom_objects, namespace) as finished:
            churn_phase = ob.run_phase(custom_objects, namespace, watcher, made, "churn", 0, None,
                                       before_wait=start_operator, jobs=API_JOBS, make=shaped_job)
            assert op.proc is not None and op.proc.poll() is None, op.log_tail()
            cluster1, writes1 = ob.component_cpu(kube), ob.api_requests(kube.api_client)
            churn_phase["operator_cpu_seconds"] = round(ob.cpu_seconds(op.proc.pid), 1)  # since its start: priming too
            churn_phase["operator"] = operator_figures(op)
            churn_phase["peak_rss_mb"] = ob.vm(op.proc.pid, "VmHWM")
            with watcher.lock, finished.lock:
                churn_phase["capacity_paced"] = capacity_paced(
                    {n: t for n, t in watcher.seen.items() if n.startswith("churn-")}, dict(finished.seen), "churn-")
            op.stop()
            listing = custom_objects.list_namespaced_custom_object(ob.GROUP, ob.VERSION, namespace, "computejobs")
            for cj in listing["items"]:
                name = cj["metadata"]["name"]
                binding = (cj.get("status") or {}).get("binding")
                if name.startswith("churn-") and binding:
                    statuses["replay-" + name.split("-", 1)[1]] = ob.bound_status(cj["status"])
                    pins[name] = list(binding.get("nodes") or [])
            replay = ob.run_phase(custom_objects, namespace, watcher, made, "replay", 0, None,
                                  before_wait=start_replay, jobs=API_JOBS, make=shaped_job)
            marks["writer"].join(timeout=ob.PHASE_TIMEOUT_S)
            cluster2, writes2 = ob.component_cpu(kube), ob.api_requests(kube.api_client)
            with contextlib.suppress(OSError, ValueError):
                outcome.update(json.loads((tmp_path / "replay.json").read_text()))
            replay["operator_cpu_seconds"] = outcome.get("cpu_seconds", 0.0)  # the writer's
            replay["writer_errors"] = outcome.get("errors", ["the writer did not finish"])[:5]
    finally:
        op.stop()
        for doc in centers:
            with contextlib.suppress(Exception):
                custom_objects.delete_cluster_custom_object(ob.GROUP, ob.VERSION, "computecenters", doc["metadata"]["name"])
    churn_phase["control_plane_cpu_seconds"] = ob.cpu_delta(marks["cluster"], cluster1)
    replay["control_plane_cpu_seconds"] = ob.cpu_delta(marks["replay_cluster"], cluster2)
    churn_phase["api_writes"] = writes_between(marks["writes"], writes1)
    replay["api_writes"] = writes_between(marks["replay_writes"], writes2)
    for phase in (churn_phase, replay):
        phase["api_writes_total"] = sum(phase["api_writes"].values())
    cycles = churn_phase["operator"]["suanli_scheduling_cycle_seconds_count"]
    share = (round(churn_phase["sustained_jobs_per_s"] / replay["sustained_jobs_per_s"], 2)
             if replay["sustained_jobs_per_s"] else None)
    data = {"jobs": API_JOBS, "fleet_accelerators": ob.CENTERS * 2 * ob.NODES_PER_POOL * ob.PER_NODE,
            "gang_accelerators": sum(r * c for r, c in (SHAPES[i % len(SHAPES)] for i in range(API_JOBS))),
            "churn": churn_phase, "replay": replay, "churn_share_of_replay": share, "target_share": 0.8,
            "churn_share_of_freed_capacity": (churn_phase.get("capacity_paced") or {}).get("bound_share_of_freed"),
            "mean_cycle_seconds": round(churn_phase["operator"]["suanli_scheduling_cycle_seconds_sum"] / cycles, 4)
            if cycles else None,
            "operator_cpu_ms_per_bind": round(1000 * churn_phase["operator_cpu_seconds"] / max(1, churn_phase["bound"]), 1),
            "host": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1)}}
    lines = [
        "# Deep queue under churn, on the API server (`tests/bench/test_bench_scale.py::test_churn_on_the_api_server`)",
        "",
        f"Real API server (the local control plane, kwok nodes): the benchmark fleet ({data['fleet_accelerators']} "
        f"accelerators) and {API_JOBS} ComputeJobs of gangs 1x1 to 4x8 ({data['gang_accelerators']} accelerators "
        "in all), created while the operator is stopped; `suanli run` starts, fills the fleet and binds the rest "
        "as gangs complete (pods run 2-3 s in kwok). Baseline (same run): the replay of the same writes for as many "
        "jobs of the same shapes, made by the test through the operator's write path with nothing planned.",
        "",
        "| phase | jobs bound | sustained binds/s | first create → last bound s | operator CPU s | API writes |",
        "|---|---|---|---|---|---|",
        f"| churn (operator) | {churn_phase['bound']} | {churn_phase['sustained_jobs_per_s']} | "
        f"{churn_phase['first_create_to_last_bound_seconds']} | {churn_phase['operator_cpu_seconds']} | "
        f"{churn_phase['api_writes_total']:.0f} |",
        f"| replay (writes alone) | {replay['bound']} | {replay['sustained_jobs_per_s']} | "
        f"{replay['first_create_to_last_bound_seconds']} | {replay['operator_cpu_seconds']} (writer) | "
        f"{replay['api_writes_total']:.0f} |",
        "",
        f"Bind rate under churn: **{share}** of the same-run write baseline (target >= 0.8: "
        f"{'met' if share is not None and share >= 0.8 else 'not met'}). Operator: {int(cycles)} scheduling cycles, "
        f"mean {data['mean_cycle_seconds']} s; {data['operator_cpu_ms_per_bind']} ms of CPU per bind (priming "
        f"included); peak RSS {churn_phase['peak_rss_mb']} MB. Control-plane CPU s, churn: "
        f"{churn_phase['control_plane_cpu_seconds']}; replay: {replay['control_plane_cpu_seconds']}.",
        "",
        capacity_line(churn_phase.get("capacity_paced") or {}),
        "",
        "Measured on a 2-core machine; the ratios are same-run.",
        "",
    ]
    write_report("scale-churn-api-server", data, "\n".join(lines))
    print("\n" + "\n".join(lines))
    for phase in (churn_phase, replay):
        assert phase["bound"] == phase["created"] == phase["workloads"] == API_JOBS, phase


def apply_big_fleet(core: Any, nodes: list[dict[str, Any]]) -> tuple[float, int]:
    """Create the nodes (16 threads, bounded), labelled for cleanup: (seconds, how many already existed:
    an earlier run's, left when it was interrupted)."""
    from kubernetes.client.exceptions import ApiException

    def create(node: dict[str, Any]) -> bool:
        node["metadata"]["labels"][BENCH_NODE_LABEL] = "true"
        try:
            core.create_node(node)
        except ApiException as exc:
            if exc.status != 409:
                raise
            return False
        return True

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="scale-nodes") as pool:
        futures = [pool.submit(create, n) for n in nodes]
        made = sum(f.result() for f in concurrent.futures.as_completed(futures, timeout=1200))
    return time.monotonic() - t0, len(nodes) - made


def ready_nodes(core: Any) -> int:
    """The benchmark's nodes whose Ready condition is True now, without a taint (what the operator counts)."""
    items = core.list_node(label_selector=f"{BENCH_NODE_LABEL}=true").items
    return sum(1 for n in items if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
               and not n.spec.taints)


def delete_big_fleet(core: Any) -> None:
    with contextlib.suppress(Exception):
        core.delete_collection_node(label_selector=f"{BENCH_NODE_LABEL}=true")


def _big_cluster_words(cluster: BigFleetCluster) -> str:
    if cluster.state_dir is None:
        return "the cluster under test"
    settings = ", ".join(f"{k}={v}" for k, v in sorted(cluster.settings.items()))
    return f"a local control plane of its own, CLUSTER={BIG_CLUSTER} with {settings}"


@dataclasses.dataclass
class BigFleetCluster:
    """Where the big fleet runs: `kube` (kubeconfig, api_client, external), its clients, the jobs'
    namespace, and `state_dir` for a local cluster of its own (None: the cluster under test)."""

    kube: Any
    core_v1: Any
    custom_objects: Any
    namespace: str
    state_dir: pathlib.Path | None
    settings: dict[str, str]


@pytest.fixture
def big_fleet_cluster(kube: Any, request: pytest.FixtureRequest) -> Iterator[BigFleetCluster]:  # noqa: F811
    """On the local control plane: a named local cluster of its own (BIG_CLUSTER), started fresh with
    BIG_CLUSTER_SETTINGS and removed afterwards. 5,000 fake nodes need longer node Leases and a faster
    controller-manager than the default cluster's (tests/cluster/lib.sh), and removing the cluster spares
    the shared one minutes of garbage collection. On an external cluster (KUBECONFIG): that cluster, as it is."""
    from kubernetes import client, config
    from tests.cluster import pytest_plugin as plugin

    if kube.external:
        yield BigFleetCluster(kube, client.CoreV1Api(kube.api_client), client.CustomObjectsApi(kube.api_client),
                              request.getfixturevalue("bench_namespace"), None, {})
        return

    def script(name: str, timeout: float) -> None:
        proc = plugin._run_script(name, name=BIG_CLUSTER, timeout=timeout, settings=BIG_CLUSTER_SETTINGS)
        assert proc.returncode == 0, plugin._script_failed(proc, f"CLUSTER={BIG_CLUSTER} tests/cluster/{name}")

    script("down.sh", 120)  # an interrupted run's cluster, whatever it was started with
    try:
        script("up.sh", plugin.MEMBER_UP_TIMEOUT_S)
        state_dir = plugin.local_cluster_dir(BIG_CLUSTER)
        api_client = config.new_client_from_config(config_file=str(state_dir / "kubeconfig"))
        big = plugin.Kube(kubeconfig=str(state_dir / "kubeconfig"), api_client=api_client, external=False,
                          crds=plugin.install_crds(api_client))
        core = client.CoreV1Api(api_client)
        namespace = "bench-big-fleet"
        core.create_namespace({"metadata": {"name": namespace}})
        plugin.wait_for_value(lambda: core.read_namespaced_service_account("default", namespace), 60,
                              f"the default ServiceAccount in namespace {namespace} of CLUSTER={BIG_CLUSTER}")
        yield BigFleetCluster(big, core, client.CustomObjectsApi(api_client), namespace, state_dir,
                              dict(BIG_CLUSTER_SETTINGS))
    finally:
        script("down.sh", 120)


@pytest.mark.cluster
def test_big_fleet(big_fleet_cluster: BigFleetCluster, tmp_path: Any, write_report: Any) -> None:
    """100 ComputeCenters, 5,000 kwok nodes of 8 accelerators (40,000): the nodes' creation, the
    operator's priming (process start to every accelerator counted), its memory, its cycle time, and
    the ComputeCenter status writes per second while jobs (1x1 to 4x8 gangs, pods running 2-3 s) are
    paced in at BIG_RATE/s for STEADY_SECONDS."""
    cluster = big_fleet_cluster
    big, core, objects, namespace = cluster.kube, cluster.core_v1, cluster.custom_objects, cluster.namespace
    per_center = max(1, BIG_NODES // BIG_CENTERS)
    centers = [big_center(i, per_center) for i in range(BIG_CENTERS)]
    from tests.cluster import fake_nodes as fake_nodes_module

    nodes = fake_nodes_module.nodes_for_centers(centers, nodes_per_pool=per_center)
    total = len(nodes) * 8
    op = ob.OperatorProcess(big.kubeconfig, tmp_path, "big", ["--namespace", namespace])
    data: dict[str, Any] = {"centers": BIG_CENTERS, "nodes": len(nodes), "accelerators": total,
                            "cluster": {"own": cluster.state_dir is not None, "settings": cluster.settings}}
    try:
        seconds, existing = apply_big_fleet(core, nodes)
        data["nodes_create_seconds"], data["nodes_existing"] = round(seconds, 1), existing
        # kwok marks them Ready and renews a Lease per node; the controller-manager lifts their not-ready taint.
        # Wait (bounded) until every node is usable, or the count stops growing for a minute.
        t0 = time.monotonic()
        deadline = t0 + READY_WAIT_SECONDS
        trajectory: list[tuple[float, int]] = []
        while time.monotonic() < deadline:
            trajectory.append((round(time.monotonic() - t0), ready_nodes(core)))
            if trajectory[-1][1] >= len(nodes) or (
                    len(trajectory) > 4 and trajectory[-1][1] <= max(r for _, r in trajectory[:-4])):
                break
            time.sleep(15)
        data["nodes_ready"], data["nodes_ready_seconds"] = trajectory[-1][1], round(time.monotonic() - t0, 1)
        data["nodes_ready_trajectory"] = trajectory
        assert data["nodes_ready"] == len(nodes), (
            f"only {data['nodes_ready']} of {len(nodes)} nodes were Ready and untainted after "
            f"{data['nodes_ready_seconds']} s ({trajectory}): the big fleet would be measured smaller than it is. "
            "See kwok's and the controller-manager's logs; on a slow host raise SUANLI_BENCH_SCALE_READY_WAIT_SECONDS")
        for doc in centers:
            with contextlib.suppress(Exception):
                objects.delete_cluster_custom_object(ob.GROUP, ob.VERSION, "computecenters", doc["metadata"]["name"])
            objects.create_cluster_custom_object(ob.GROUP, ob.VERSION, "computecenters", doc)
        cluster0 = ob.component_cpu(big, cluster.state_dir)
        started = time.monotonic()
        op.start(wait_healthy=False)  # its priming is what is timed (bounded below), on a host that may be slow
        assert op.proc is not None
        capacity = 0.0
        deadline = started + 600
        while time.monotonic() < deadline and "cache primed:" not in op.log_text():  # bounded
            time.sleep(0.2)
        data["priming_seconds"] = round(time.monotonic() - started, 1)
        data["primed_log"] = next((line.split("cache primed:", 1)[1].strip() for line in op.log_text().splitlines()
                                   if "cache primed:" in line), None)
        while time.monotonic() < deadline:  # bounded: the first scheduling cycle's gauges count the fleet
            with contextlib.suppress(Exception):
                capacity = sum(float(line.rsplit(" ", 1)[1]) for line in ob.urllib_metrics(op).splitlines()
                               if line.startswith("suanli_pool_accelerators{") and 'center="big-c' in line
                               and 'state="capacity"' in line)
            if capacity > 0:
                break
            time.sleep(0.5)
        data["first_capacity_seconds"] = round(time.monotonic() - started, 1)
        data["operator_saw_capacity"] = capacity
        data["nodes_ready_at_start"] = ready_nodes(core)
        data["priming_operator_cpu_seconds"] = round(ob.cpu_seconds(op.proc.pid), 1)
        data["rss_after_priming_mb"] = ob.vm(op.proc.pid, "VmRSS")
        # Steady state: jobs paced in, gangs completing; what the operator writes to ComputeCenters meanwhile.
        writes0, cpu0, figures0 = ob.api_requests(big.api_client), ob.cpu_seconds(op.proc.pid), operator_figures(op)
        w0 = time.monotonic()
        jobs = min(BIG_JOBS, int(BIG_RATE * STEADY_SECONDS))
        with concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="big-create") as pool:
            futures = []
            for i in range(jobs):  # bounded: `jobs` creates at BIG_RATE/s
                delay = w0 + i / BIG_RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(objects.create_namespaced_custom_object, ob.GROUP, ob.VERSION,
                                           namespace, "computejobs", shaped_job(f"big-{i:05d}", namespace, i)))
            concurrent.futures.wait(futures, timeout=300)
        rest = STEADY_SECONDS - (time.monotonic() - w0)
        if rest > 0:
            time.sleep(rest)  # the window's length, not a synchronisation: its writes are counted below
        window = time.monotonic() - w0
        writes1, cpu1, figures1 = ob.api_requests(big.api_client), ob.cpu_seconds(op.proc.pid), operator_figures(op)
        cluster1 = ob.component_cpu(big, cluster.state_dir)
        writes = writes_between(writes0, writes1)
        center_writes = sum(v for k, v in writes_between(writes0, writes1, None).items() if k.endswith("computecenters/status"))
        cycles = figures1["suanli_scheduling_cycle_seconds_count"] - figures0["suanli_scheduling_cycle_seconds_count"]
        cycle_sum = figures1["suanli_scheduling_cycle_seconds_sum"] - figures0["suanli_scheduling_cycle_seconds_sum"]
        data.update({
            "steady_window_seconds": round(window, 1), "steady_jobs_created": jobs,
            "steady_binds": figures1["suanli_binds_total"] - figures0["suanli_binds_total"],
            "center_status_writes": center_writes,
            "center_status_writes_per_s": round(center_writes / window, 2),
            "api_writes": writes, "steady_cycles": cycles,
            "steady_mean_cycle_seconds": round(cycle_sum / cycles, 4) if cycles else None,
            "steady_operator_cpu_seconds": round(cpu1 - cpu0, 1),
            "peak_rss_mb": ob.vm(op.proc.pid, "VmHWM"), "rss_end_mb": ob.vm(op.proc.pid, "VmRSS"),
            "control_plane_cpu_seconds": ob.cpu_delta(cluster0, cluster1),
            "host": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1)},
        })
    finally:
        op.stop()
        if cluster.state_dir is None:  # the cluster under test stays: clean it (a cluster of its own is removed)
            with contextlib.suppress(Exception):
                objects.delete_collection_namespaced_custom_object(ob.GROUP, ob.VERSION, namespace, "computejobs")
            for doc in centers:
                with contextlib.suppress(Exception):
                    objects.delete_cluster_custom_object(ob.GROUP, ob.VERSION, "computecenters",
                                                         doc["metadata"]["name"])
            delete_big_fleet(core)
    lines = [
        "# Big fleet (`tests/bench/test_bench_scale.py::test_big_fleet`)",
        "",
        f"Real API server ({_big_cluster_words(cluster)}) and `suanli run`: {BIG_CENTERS} ComputeCenters, {data['nodes']} kwok "
        f"nodes of 8 accelerators ({total}); then {data.get('steady_jobs_created')} ComputeJobs (1x1 to 4x8 gangs, pods "
        f"running 2-3 s) paced at {BIG_RATE:g}/s over a {data.get('steady_window_seconds')} s window.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| nodes created (16 threads) s | {data.get('nodes_create_seconds')} ({data.get('nodes_existing')} were there "
        "from an earlier run) |",
        f"| nodes Ready and untainted (kwok), after s | {data.get('nodes_ready')} of {data['nodes']} after "
        f"{data.get('nodes_ready_seconds')} s; (s, Ready): {data.get('nodes_ready_trajectory')} |",
        f"| operator priming: start → cache primed (LIST of centers, nodes, pods, jobs), s | {data.get('priming_seconds')} "
        f"({data.get('primed_log')}) |",
        f"| start → first cycle's gauges, s; accelerators counted | {data.get('first_capacity_seconds')}; "
        f"{data.get('operator_saw_capacity'):.0f} (on {data.get('nodes_ready_at_start')} nodes Ready and untainted "
        f"then, of {data['nodes']}) |",
        f"| operator CPU until then s | {data.get('priming_operator_cpu_seconds')} |",
        f"| RSS after priming MB | {data.get('rss_after_priming_mb')} |",
        f"| peak RSS MB | {data.get('peak_rss_mb')} |",
        f"| scheduling cycles in the window, mean s | {data.get('steady_cycles')}, {data.get('steady_mean_cycle_seconds')} |",
        f"| binds in the window | {data.get('steady_binds')} |",
        f"| ComputeCenter status writes /s | {data.get('center_status_writes_per_s')} ({data.get('center_status_writes')} "
        "in the window) |",
        f"| operator CPU in the window s | {data.get('steady_operator_cpu_seconds')} |",
        "",
        f"API writes in the window: {data.get('api_writes')}. Control-plane CPU s: {data.get('control_plane_cpu_seconds')}.",
        "",
        "Measured on a 2-core machine shared with other sessions.",
        "",
    ]
    write_report("scale-big-fleet", data, "\n".join(lines))
    print("\n" + "\n".join(lines))
    assert data["nodes_create_seconds"] > 0 and data["primed_log"] is not None, data
    assert data["operator_saw_capacity"] > 0, data  # it counts the Ready nodes' accelerators
    assert data["steady_binds"] > 0, data
