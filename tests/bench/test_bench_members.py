"""Member-cluster benchmark: one operator binding jobs to a fleet split over its own cluster and two
member clusters (each a local control plane of its own: API server, etcd, controllers, scheduler,
kwok), against a same-run baseline: a fleet of the same shape all in its own cluster.

Fleets (the same shape: CENTERS centers x 2 pools (A100, Ascend910B) x NODES kwok nodes x 48
accelerators; each center in a region of its own):
- "local", the baseline: every center in the operator's own cluster;
- "members": half the centers in the operator's own cluster, one in member cluster bench-west and one
  in bench-east, joined with the real `suanli join` (a member center is one cluster: DESIGN.md).
Jobs ask for 1 accelerator of either type, with their data in one of their fleet's regions and
allowed nowhere else (spec.data.allowedRegions), so one operator serves both fleets and each phase
measures one; data locality and energy spread a member phase's jobs over the three clusters (the
report says how many went where). A job counts once it is Bound and its batch Job exists, in the
cluster its binding names.

Phases:
- "paced": 2 x JOBS created at RATE/s, the two fleets' jobs alternating in one stream (both see the
  same host at the same moment): create→bound latency per fleet (the test's clock when its create
  returned → the first watch event showing Bound);
- "backlog", each fleet in turn: the operator stopped, JOBS created, the operator started again: its
  drain rate, first bind to last (the restart reconnects to the members: their LIST and sync are in
  the clock).
Jobs carry DATA_GIB of data in one of their fleet's regions, so data locality spreads them evenly
over the fleet's centers (members included).
The report gives each member figure as a ratio to the local fleet's in the same run.

Per member connection: the operator's resident memory and CPU while idle, after the fleets' own-cluster
centers are synced, then again once the two member centers are joined and Ready; the difference / 2.

Knobs: SUANLI_BENCH_MEMBERS_JOBS (1000 per fleet and phase), SUANLI_BENCH_MEMBERS_RATE (10/s, both fleets together);
SUANLI_BENCH_PYSPY with SUANLI_BENCH_PYSPY_PHASE=members-backlog-members (or -local) profiles that
restart (tests/bench/test_bench_operator.py). Results: reports/bench/members.{json,md}.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from tests.bench.test_bench_operator import (
    GROUP,
    PER_NODE,
    VERSION,
    BoundWatcher,
    FirstSeen,
    WorkloadWatcher,
    bench_namespace,  # noqa: F401  (fixture)
    center,
    cpu_seconds,
    job,
    percentile,
    profiler,
    run_phase,
    vm,
)
from tests.cluster import fake_nodes as fake_nodes_module
from tests.cluster.pytest_plugin import core_v1, fake_nodes, kube, member_cluster  # noqa: F401  (fixtures)
from tests.e2e.helpers import SUANLI, stop_and_clean_up
from tests.e2e.test_operator_leader import OperatorProcess

from suanli.kube import workloads
from suanli.members import access

pytestmark = [pytest.mark.bench, pytest.mark.cluster]

JOBS = int(os.environ.get("SUANLI_BENCH_MEMBERS_JOBS", "1000"))
RATE = float(os.environ.get("SUANLI_BENCH_MEMBERS_RATE", "10"))
CENTERS, NODES = 4, 6
MEMBERS = ("bench-west", "bench-east")  # member clusters: `make cluster-up CLUSTER=...` names
HUB_NAMESPACE = "suanli-bench-hub"  # the operator's namespace: the members' kubeconfig Secrets
FLEETS = {"local": ("bl-", ("bl-beijing", "bl-shanghai", "bl-guizhou", "bl-gansu")),
          "members": ("bm-", ("bm-beijing", "bm-shanghai", "bm-guizhou", "bm-gansu"))}
IDLE_S = 20.0  # the window over which idle CPU is measured
DATA_GIB = 4000.0


class MemberJobs(FirstSeen):
    """batch Jobs in a member cluster, recorded under their ComputeJob's name (the label the operator
    puts on them: no owner reference crosses clusters)."""

    def __init__(self, custom: Any, ns: str, cluster: str):
        super().__init__(custom, ns, "batch", "v1", "jobs", f"jobs-{cluster}")

    def accept(self, obj: dict[str, Any]) -> str | None:
        return (obj["metadata"].get("labels") or {}).get(workloads.LABEL_JOB)


class AnyCluster:
    """The Job watchers of several clusters as one (`count`, `times`): a job's Job is in one of them."""

    def __init__(self, *watchers: FirstSeen):
        self.watchers = watchers

    def times(self, names: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for w in self.watchers:
            for name, seen in w.times(names).items():
                out[name] = min(seen, out.get(name, seen))
        return out

    def count(self, names: list[str]) -> int:
        return len(self.times(names))


def fleet_job(kind: str) -> Callable[[str, str, int], dict[str, Any]]:
    """Jobs of one fleet: data in one of its regions (in turn), allowed nowhere else, and big enough
    (DATA_GIB) that data locality decides: each center of the fleet takes a quarter of them."""
    regions = FLEETS[kind][1]

    def make(name: str, ns: str, i: int) -> dict[str, Any]:
        doc = job(name, ns, i, regions)
        doc["spec"]["data"]["sizeGiB"] = DATA_GIB
        return doc

    return make


def paced_job(name: str, ns: str, i: int) -> dict[str, Any]:
    """The paced stream: even jobs the local fleet's, odd ones the members fleet's."""
    return fleet_job(list(FLEETS)[i % 2])(name, ns, i // 2)


def fleet_share(paced: dict[str, Any], times: dict[str, tuple[float, float]], k: int, custom: Any,
                ns: str) -> dict[str, Any]:
    """The paced phase's figures for fleet `k` (its jobs: every other one, from the k-th)."""
    mine = {name: t for name, t in times.items() if int(name.rsplit("-", 1)[1]) % 2 == k}
    latencies = [seen - created for created, seen in mine.values()]
    firsts, lasts = [c for c, _ in mine.values()], [s for _, s in mine.values()]
    span = max(lasts) - min(lasts) if len(lasts) > 1 else 0.0
    return {
        "created": paced["created"] // 2, "bound": len(mine), "workloads": paced["workloads"] // 2,
        "submit_rate_target_per_s": RATE / 2,
        "submit_rate_observed_per_s": round(len(firsts) / max(1e-9, max(firsts) - min(firsts)), 1) if firsts else 0.0,
        "sustained_jobs_per_s": round(len(mine) / span, 1) if span else 0.0,
        "latency_p50_seconds": round(percentile(latencies, 50), 3),
        "latency_p99_seconds": round(percentile(latencies, 99), 3),
        "latency_max_seconds": round(max(latencies), 3) if latencies else None,
        "workload_latency_p99_seconds": paced["workload_latency_p99_seconds"],
        "operator_cpu_seconds": paced["operator_cpu_seconds"], "jobs_for_cpu": paced["bound"],  # both fleets'
        "clusters": placed(custom, ns, "paced", parity=k),
    }


def idle(pid: int, seconds: float = IDLE_S) -> dict[str, float]:
    """The operator's CPU share (of one core) over `seconds` of no jobs arriving (the window of the
    measurement, not a wait for something), and its resident memory at the end."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return {"cpu_percent": round(100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0), 2),
            "rss_mb": vm(pid, "VmRSS")}


def capacity_seen(op: OperatorProcess, centers: list[str]) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in op.metrics().splitlines()
               if line.startswith("suanli_pool_accelerators{") and 'state="capacity"' in line
               and any(f'center="{c}"' in line for c in centers))


def wait_capacity(op: OperatorProcess, centers: list[str], timeout: float = 180.0) -> float:
    want = len(centers) * 2 * NODES * PER_NODE
    deadline, seen = time.monotonic() + timeout, 0.0
    while time.monotonic() < deadline:
        seen = capacity_seen(op, centers)
        if seen >= want:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"the operator saw {seen:g} of the {want} accelerators of {centers} after {timeout:g}s:\n"
                         f"{op.log_tail()}")


def join(kubeconfig: str, name: str, member: Any) -> None:
    done = subprocess.run([str(SUANLI), "join", name, "--member-kubeconfig", member.kubeconfig,
                           "--kubeconfig", kubeconfig, "--namespace", HUB_NAMESPACE],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"suanli join {name} failed:\n{done.stdout}\n{done.stderr}"


def placed(custom: Any, ns: str, prefix: str, parity: int | None = None) -> dict[str, int]:
    """How many of a phase's jobs (with `parity`: of its even or odd ones) were bound to each cluster
    ("hub": the operator's own)."""
    out: dict[str, int] = {}
    for cj in custom.list_namespaced_custom_object(GROUP, VERSION, ns, "computejobs")["items"]:
        binding = (cj.get("status") or {}).get("binding") or {}
        name = cj["metadata"]["name"]
        if parity is not None and name.startswith(prefix + "-") and int(name.rsplit("-", 1)[1]) % 2 != parity:
            continue
        if name.startswith(prefix + "-") and binding:
            cluster = binding.get("cluster") or "hub"
            out[cluster] = out.get(cluster, 0) + 1
    return dict(sorted(out.items()))


def test_operator_binds_over_member_clusters_against_a_local_fleet(
    kube: Any, tmp_path: Path, fake_nodes: Any, core_v1: Any, member_cluster: Callable[..., Any],  # noqa: F811
    bench_namespace: str, write_report: Any,  # noqa: F811
) -> None:
    ns = bench_namespace
    custom = k8s.CustomObjectsApi(core_v1.api_client)
    members = {name: member_cluster(name) for name in MEMBERS}
    fleets = {kind: [center(i, prefix, regions, NODES) for i in range(CENTERS)] for kind, (prefix, regions) in FLEETS.items()}
    remote = {fleets["members"][CENTERS - 1 - k]["metadata"]["name"]: cluster for k, cluster in enumerate(MEMBERS)}
    names = [doc["metadata"]["name"] for docs in fleets.values() for doc in docs]
    member_core = {cluster: k8s.CoreV1Api(m.api_client) for cluster, m in members.items()}
    member_nodes: dict[str, list[str]] = {}
    with contextlib.suppress(k8s.ApiException):
        core_v1.create_namespace({"metadata": {"name": HUB_NAMESPACE}})
    for docs in fleets.values():
        for doc in docs:
            name = doc["metadata"]["name"]
            if name in remote:
                nodes = fake_nodes_module.nodes_for_centers([doc], nodes_per_pool=NODES)
                member_nodes[remote[name]] = fake_nodes_module.apply_nodes(member_core[remote[name]], nodes)
            else:
                fake_nodes(doc, nodes_per_pool=NODES)
            with contextlib.suppress(k8s.ApiException):
                custom.delete_cluster_custom_object(GROUP, VERSION, "computecenters", name)
            custom.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)
    op = OperatorProcess(kube.kubeconfig, tmp_path, "members", ["--namespace", HUB_NAMESPACE]).start()
    data: dict[str, Any] = {}
    try:
        local_centers = [n for n in names if n not in remote]
        wait_capacity(op, local_centers)
        assert op.proc is not None
        before = idle(op.proc.pid)
        for name, cluster in remote.items():
            join(kube.kubeconfig, name, members[cluster])
        wait_capacity(op, names)
        after = idle(op.proc.pid)
        member_custom = {cluster: k8s.CustomObjectsApi(m.api_client) for cluster, m in members.items()}
        phases: dict[str, dict[str, Any]] = {}
        rss: list[float] = []
        spies: list[Any] = []
        with BoundWatcher(custom, ns) as bound, WorkloadWatcher(custom, ns) as hub_jobs, \
                MemberJobs(member_custom[MEMBERS[0]], ns, MEMBERS[0]) as west, \
                MemberJobs(member_custom[MEMBERS[1]], ns, MEMBERS[1]) as east:
            made = AnyCluster(hub_jobs, west, east)
            # Paced: both fleets' jobs alternate in one stream, so both see the same host at the same time.
            times: dict[str, tuple[float, float]] = {}
            cpu0 = cpu_seconds(op.proc.pid)
            paced = run_phase(custom, ns, bound, made, "paced", 0, RATE, jobs=2 * JOBS, make=paced_job, times=times)
            paced["operator_cpu_seconds"] = round(cpu_seconds(op.proc.pid) - cpu0, 1)
            for k, kind in enumerate(FLEETS):
                phases[f"paced-{kind}"] = fleet_share(paced, times, k, custom, ns)
            for step, kind in enumerate(FLEETS):
                def restart(kind: str = kind) -> float:
                    started = time.time()
                    op.start()
                    spies.append(profiler(op.proc.pid, 60, f"members-backlog-{kind}") if op.proc else None)
                    return started

                rss.append(vm(op.proc.pid, "VmHWM"))
                op.stop()
                phase = run_phase(custom, ns, bound, made, f"backlog-{kind}", (2 + step) * JOBS, None,
                                  before_wait=restart, jobs=JOBS, make=fleet_job(kind))
                phase["operator_cpu_seconds"] = round(cpu_seconds(op.proc.pid), 1)  # since its start
                phase["clusters"] = placed(custom, ns, f"backlog-{kind}")
                phases[f"backlog-{kind}"] = phase
            rss.append(vm(op.proc.pid, "VmHWM"))
            for spy in spies:
                if spy is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        spy.wait(timeout=90)
        data = summary(phases, before, after, rss)
    finally:
        stop_and_clean_up(op, custom, None, names)
        for cluster, nodes in member_nodes.items():
            with contextlib.suppress(Exception):
                fake_nodes_module.delete_nodes(member_core[cluster], nodes)
            with contextlib.suppress(Exception):
                member_core[cluster].delete_namespace(ns, propagation_policy="Background")
        for name in remote:
            with contextlib.suppress(Exception):
                core_v1.delete_namespaced_secret(access.secret_name(name), HUB_NAMESPACE)
    path = write_report("members", data, markdown(data))
    print(f"\n{path.read_text()}")
    for name, phase in data["phases"].items():
        assert phase["bound"] == phase["created"] == phase["workloads"] == JOBS, (name, phase)
    assert set(data["phases"]["backlog-members"]["clusters"]) == {"hub", *remote}, data["phases"]["backlog-members"]
    assert set(data["phases"]["backlog-local"]["clusters"]) == {"hub"}, data["phases"]["backlog-local"]


def summary(phases: dict[str, dict[str, Any]], before: dict[str, float], after: dict[str, float],
            rss: list[float]) -> dict[str, Any]:
    def ratio(key: str, kind: str) -> float | None:
        base, member = phases[f"{kind}-local"][key], phases[f"{kind}-members"][key]
        return round(member / base, 2) if base else None

    for phase in phases.values():
        jobs = phase.get("jobs_for_cpu", phase["bound"])
        phase["operator_cpu_ms_per_job"] = round(1000 * phase["operator_cpu_seconds"] / max(1, jobs), 1)
    return {
        "fleet": {"centers_per_fleet": CENTERS, "nodes_per_pool": NODES, "accelerators_per_node": PER_NODE,
                  "member_clusters": list(MEMBERS)},
        "jobs_per_phase": JOBS, "paced_rate_per_s": RATE,
        "phases": phases,
        "members_over_local": {
            "backlog_sustained_jobs_per_s": ratio("sustained_jobs_per_s", "backlog"),
            "paced_latency_p50_seconds": ratio("latency_p50_seconds", "paced"),
            "paced_latency_p99_seconds": ratio("latency_p99_seconds", "paced"),
            "backlog_operator_cpu_ms_per_job": ratio("operator_cpu_ms_per_job", "backlog"),
        },
        "per_member_connection": {
            "idle_cpu_percent": round((after["cpu_percent"] - before["cpu_percent"]) / len(MEMBERS), 2),
            "rss_mb": round((after["rss_mb"] - before["rss_mb"]) / len(MEMBERS), 1),
            "idle_before": before, "idle_after": after,
        },
        "operator_peak_rss_mb": max(rss),
        "host": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1)},
    }


def markdown(d: dict[str, Any]) -> str:
    p, r, c = d["phases"], d["members_over_local"], d["per_member_connection"]
    order = ("paced-local", "paced-members", "backlog-local", "backlog-members")

    def row(name: str, cell: Callable[[dict[str, Any]], str]) -> str:
        return f"| {name} | " + " | ".join(cell(p[k]) for k in order) + " |"

    return "\n".join([
        "# Member-cluster benchmark (`tests/bench/test_bench_members.py`)",
        "",
        f"Two fleets of {d['fleet']['centers_per_fleet']} centers × 2 pools × {d['fleet']['nodes_per_pool']} kwok nodes × "
        f"{d['fleet']['accelerators_per_node']} accelerators: \"local\" all in the operator's own cluster (the same-run "
        f"baseline); \"members\" half in it, one center in each of the member clusters {', '.join(d['fleet']['member_clusters'])} "
        "(local control planes of their own on the same host). Jobs of 1 accelerator, each phase's allowed only in its fleet.",
        "",
        "| | paced, local | paced, members | backlog (restart), local | backlog (restart), members |",
        "|---|---|---|---|---|",
        row("jobs created / bound / Jobs made", lambda x: f"{x['created']} / {x['bound']} / {x['workloads']}"),
        row("bound to (cluster: jobs)", lambda x: ", ".join(f"{k}: {v}" for k, v in x["clusters"].items())),
        row("submission", lambda x: f"{x['submit_rate_observed_per_s']}/s" if x["submit_rate_target_per_s"]
            else "all while the operator is stopped"),
        row("sustained bind rate (first → last bound)", lambda x: f"{x['sustained_jobs_per_s']} jobs/s"),
        row("create→bound p50 / p99", lambda x: f"{x['latency_p50_seconds']} / {x['latency_p99_seconds']} s"
            if x["submit_rate_target_per_s"] else "— (queued while stopped)"),
        row("create→Job created p99", lambda x: f"{x['workload_latency_p99_seconds']} s"
            if x["submit_rate_target_per_s"] else "—"),
        row("operator CPU per bound job (paced: both fleets' together; backlog: priming included)",
            lambda x: f"{x['operator_cpu_ms_per_job']} ms"),
        "",
        "| members ÷ local, same run | |",
        "|---|---|",
        f"| backlog drain rate | {r['backlog_sustained_jobs_per_s']} |",
        f"| paced create→bound p50 | {r['paced_latency_p50_seconds']} |",
        f"| paced create→bound p99 | {r['paced_latency_p99_seconds']} |",
        f"| backlog operator CPU per job (priming included) | {r['backlog_operator_cpu_ms_per_job']} |",
        "",
        f"Per member connection (idle, over {IDLE_S:g} s, before and after joining the two members): "
        f"{c['idle_cpu_percent']} % of a core, {c['rss_mb']} MB resident "
        f"(before: {c['idle_before']['cpu_percent']} %, {c['idle_before']['rss_mb']} MB; after: "
        f"{c['idle_after']['cpu_percent']} %, {c['idle_after']['rss_mb']} MB). Operator peak RSS {d['operator_peak_rss_mb']} MB.",
        f"Host: {d['host']['cpus']} CPUs, load average {d['host']['load_average_1m']} at the end; three control planes, "
        "the operator and the test share them.",
        "",
    ])
