"""`make demo`: the example fleet and jobs on a hub and two member clusters, with the operator, live.

What it does, in order (every wait has a deadline; errors say what to look at):

1. installs the CRDs of ``crds/`` (server-side apply) on the hub and waits until they are Established;
2. writes a demo copy of ``crds/examples/centers.yaml`` with at most ``--nodes-per-pool``
   nodes per pool (``expected.nodes`` reduced, so the centers report Ready) and of
   ``crds/examples/jobs.yaml`` with kwok completion delays of 10-40 s in each pod template
   (demo time: a six-hour job "runs" for about 25 s); both go to ``.cluster/demo/``, the
   examples themselves are never edited;
3. asks ``suanli plan`` what should happen to these jobs on that reduced fleet, now;
4. brings up (or reuses) the member clusters of ``--members`` (default ``demo-west,demo-east``:
   local control planes of their own, ``CLUSTER=NAME tests/cluster/up.sh``) and spreads the western
   "East Data, West Computing" hubs of the fleet over them, west to east (the other centers stay
   in the hub's own cluster, so the fleet is mixed); ``--members none`` is the single-cluster demo;
5. makes the fake (kwok) nodes of each center in its cluster, the namespaces and the
   ComputeCenters on the hub, removes the jobs of an earlier demo run (in the hub and in the
   members, with nodes of centers that moved), runs ``suanli join`` for every member center
   (the kubeconfig Secrets go to ``--operator-namespace``), starts ``suanli run --namespace``
   that namespace (log: ``.cluster/logs/operator-demo.log``; ``--no-operator`` reuses one already
   running) and applies the jobs;
6. shows a live table (plain lines when not on a terminal, or with ``--no-live``) until
   every job has finished or waits by design (Queued/Deferred with nothing left running),
   or ``--timeout`` passes; its cluster column says which cluster each job runs in;
7. prints a summary (where each job ran, in which cluster, energy and carbon, against the plan)
   and how to explore further; ``--summary-json`` writes it for tests.

When the demo succeeds, the operator it started keeps running (its pid in
``.cluster/pids/suanli-operator.pid``), so a job applied afterwards is placed too: the demo writes
one to try (``.cluster/demo/one-more-job.yaml``). ``make demo-down`` (``--stop`` here, then the
clusters' down.sh) stops it and the clusters; ``make cluster-down`` stops it with the hub. A failed
or interrupted demo stops its operator on exit; ``--stop-operator`` stops it after a good run too.
A new demo stops the operator an earlier one left running before it starts its own.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import copy
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from suanli.settings import ScoringSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_nodes  # (this folder's library, importable when run as a script)

REPO = Path(__file__).resolve().parents[2]
# Where the local clusters keep their state (as in lib.sh): the default one in the root, named ones
# (CLUSTER=NAME, the member clusters too) in its subfolders.
CLUSTERS_ROOT = Path(os.environ.get("SUANLI_CLUSTER_DIR", REPO / ".cluster"))
HUB_CLUSTER_NAME = os.environ.get("SUANLI_CLUSTER") or os.environ.get("CLUSTER") or ""
# The hub's state: the default cluster, or the named one of CLUSTER=NAME.
CLUSTER_DIR = CLUSTERS_ROOT / HUB_CLUSTER_NAME
GROUP, VERSION = "suanli.io", "v1alpha1"
CRD_NAMES = ("computecenters.suanli.io", "computejobs.suanli.io")
DELAY_ANNOTATION = "pod-complete.stage.kwok.x-k8s.io/delay"
JITTER_ANNOTATION = "pod-complete.stage.kwok.x-k8s.io/jitter-delay"
FINAL = ("Succeeded", "Failed")
WAITING = ("Queued", "Deferred")
# What the same kWh would emit "anywhere": the reference grid the scoring compares with (China's
# national average for 2022, 536.6 g/kWh, MEE and NBS; docs/carbon.md), one figure everywhere.
NATIONAL_GRAMS_PER_KWH = ScoringSettings().reference_grid_grams_per_kwh
# The operator a successful demo leaves running (tests/cluster/components.sh stops it with the hub).
OPERATOR_PID_FILE = CLUSTER_DIR / "pids" / "suanli-operator.pid"
OPERATOR_STOP_GRACE_S = 15.0
# The job the summary suggests applying after the demo (a renamed copy of a job the plan binds).
ONE_MORE_JOB = "one-more"
SETTLE_SECONDS = 3.0  # the end state must hold this long (a Queued job may be admitted next tick)
OPERATOR_READY_TIMEOUT_S = 60.0
NODE_READY_TIMEOUT_S = 90.0
DELETE_TIMEOUT_S = 120.0
FLEET_IDLE_TIMEOUT_S = 120.0  # leftover pods of an earlier run must be gone before jobs are applied
API_OUTAGE_S = 30.0  # the watch tolerates API errors this long
MEMBER_UP_TIMEOUT_S = float(os.environ.get("SUANLI_MEMBER_UP_TIMEOUT_SECONDS", "300"))
JOIN_TIMEOUT_S = 120.0

# Member clusters: local control planes (tests/cluster/up.sh with CLUSTER=NAME) unless given a kubeconfig.
DEFAULT_MEMBERS = "demo-west,demo-east"
OPERATOR_NAMESPACE = "suanli-system"  # the operator's namespace on the hub: the members' kubeconfig Secrets
# The western hubs of "East Data, West Computing" (Gansu/Qingyang, Guizhou/Gui'an, Ningxia/Zhongwei,
# Inner Mongolia): the demo's member clusters take the fleet's centers in these regions.
WESTERN_REGIONS = ("cn-gansu", "cn-guizhou", "cn-ningxia", "cn-neimenggu")
HUB = "hub"  # how the demo names the hub's own cluster
CLUSTER_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
RESERVED_CLUSTER_NAMES = ("bin", "etcd", "logs", "pids", "pki", "demo")  # lib.sh: DEFAULT_STATE_SUBDIRS
# What makes up.sh act on the hub (its name and ports): never passed on when bringing up a member.
HUB_ONLY_ENV = ("CLUSTER", "SUANLI_CLUSTER", "SUANLI_CLUSTER_LOCKED", "SUANLI_APISERVER_PORT",
                "SUANLI_ETCD_CLIENT_PORT", "SUANLI_ETCD_PEER_PORT", "SUANLI_CONTROLLER_MANAGER_PORT",
                "SUANLI_SCHEDULER_PORT", "SUANLI_KWOK_PORT")  # fmt: skip
JOB_LABEL = "suanli.io/job"  # suanli.kube.workloads.LABEL_JOB: on the batch Jobs and pods the operator makes


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what went wrong and where to look."""


# --- the demo copies of the examples ---------------------------------------------------


def go_duration_seconds(text: str) -> float:
    """Seconds of a Go duration such as ``1h30m`` or ``90s``."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * unit[u] for n, u in parts)


def demo_delay_seconds(estimated_seconds: float, shortest: float = 10.0, longest: float = 36.0) -> int:
    """Demo run time for a job: 30 minutes or less -> ``shortest``, 72 hours or more -> ``longest``, log scale between."""
    low, high = math.log(1800.0), math.log(72 * 3600.0)
    frac = (math.log(max(estimated_seconds, 1.0)) - low) / (high - low)
    return round(shortest + min(max(frac, 0.0), 1.0) * (longest - shortest))


def read_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def reduce_centers(docs: list[dict[str, Any]], nodes_per_pool: int) -> list[dict[str, Any]]:
    """A copy of the ComputeCenter docs with every pool's ``expected.nodes`` capped at ``nodes_per_pool``."""
    out = copy.deepcopy(docs)
    for doc in out:
        if doc.get("kind") != "ComputeCenter":
            continue
        for pool in (doc.get("spec") or {}).get("pools") or []:
            expected = pool.setdefault("expected", {})
            expected["nodes"] = min(int(expected.get("nodes", nodes_per_pool)), nodes_per_pool)
    return out


def with_demo_delays(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """A copy of the job docs whose pod templates complete in demo time; returns it and ``ns/name -> seconds``."""
    out = copy.deepcopy(docs)
    delays: dict[str, int] = {}
    for doc in out:
        if doc.get("kind") != "ComputeJob":
            continue
        meta = doc["metadata"]
        spec = doc.setdefault("spec", {})
        try:
            estimated = go_duration_seconds((spec.get("runtime") or {}).get("estimatedDuration") or "1h")
        except ValueError:
            estimated = 3600.0
        delay = demo_delay_seconds(estimated)
        template = spec.setdefault("template", {})
        tmeta = template.setdefault("metadata", {}) or {}
        template["metadata"] = tmeta
        annotations = tmeta.setdefault("annotations", {}) or {}
        tmeta["annotations"] = annotations
        annotations[DELAY_ANNOTATION] = f"{delay}s"
        annotations[JITTER_ANNOTATION] = f"{delay + 4}s"  # kwok: delay + random(0, 4s)
        delays[f"{meta.get('namespace', 'default')}/{meta['name']}"] = delay + 4
    return out, delays


def write_docs(path: Path, docs: list[dict[str, Any]], header: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump_all(docs, sort_keys=False))


def one_more_job(
    job_docs: list[dict[str, Any]], predicted: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """The job the summary suggests applying after the demo: a copy, named ONE_MORE_JOB, of the
    smallest job the plan binds now (so it is placed at once while the operator keeps running)."""
    bound = [
        d
        for d in job_docs
        if d.get("kind") == "ComputeJob"
        and (predicted.get(f"{d['metadata']['namespace']}/{d['metadata']['name']}") or {}).get("phase")
        == "Bound"
    ]
    if not bound:
        return None
    doc = copy.deepcopy(
        min(bound, key=lambda d: int(((d.get("spec") or {}).get("accelerators") or {}).get("count", 1)))
    )
    doc["metadata"] = {"name": ONE_MORE_JOB, "namespace": doc["metadata"]["namespace"]}
    return doc


def plan(paths: list[Path], suanli: list[str]) -> dict[str, dict[str, Any]]:
    """``suanli plan -o json`` for these files: ``ns/name -> planned job``."""
    cmd = [*suanli, "plan", "-o", "json"]
    for p in paths:
        cmd += ["-f", str(p)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise DemoError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
    return {f"{j['namespace']}/{j['name']}": j for j in json.loads(proc.stdout)["jobs"]}


def planned_place(job: dict[str, Any] | None) -> str:
    """``center/pool`` for a planned job (``suanli plan -o json``) that binds, else its phase."""
    if not job:
        return "-"
    phase = job.get("phase") or "Pending"
    binding = job.get("binding") or {}
    if phase in ("Bound", "Running", "Succeeded", "Failed") and binding:
        return f"{binding.get('center')}/{binding.get('pool')}"
    return phase


def live_place(job: dict[str, Any] | None) -> str:
    """The same for a live ComputeJob (its status); a job that ran counts as bound where it ran."""
    return planned_place((job or {}).get("status") or {"phase": "Pending"})


def as_planned(planned: dict[str, Any] | None, job: dict[str, Any] | None) -> bool:
    """The live job ran where plan put it, or waits the way plan said (Queued/Deferred)."""
    return planned_place(planned) == live_place(job)


# --- the cluster ------------------------------------------------------------------------


@dataclass
class Cluster:
    kubeconfig: str
    kubectl: str
    api_client: Any = None
    name: str = HUB  # the hub, or a member cluster's name
    logs: Path = CLUSTER_DIR / "logs"  # where its control plane logs (a local one's)

    def __post_init__(self) -> None:
        from kubernetes import client, config

        self.api_client = config.new_client_from_config(config_file=self.kubeconfig)
        self.core = client.CoreV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.batch = client.BatchV1Api(self.api_client)

    def run_kubectl(self, *args: str, timeout: float = 120) -> str:
        cmd = [self.kubectl, "--kubeconfig", self.kubeconfig, *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise DemoError(f"`kubectl {' '.join(args)}` did not finish within {timeout:g}s") from None
        if proc.returncode != 0:
            raise DemoError(
                f"`kubectl {' '.join(args)}` failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )
        return proc.stdout

    def check_reachable(self) -> None:
        from kubernetes import client

        try:
            client.VersionApi(self.api_client).get_code(_request_timeout=10)
        except Exception as exc:
            up = "make cluster-up" + (f" CLUSTER={self.name}" if self.name != HUB else "")
            raise DemoError(
                f"cannot reach the API server of {self.kubeconfig} ({exc.__class__.__name__}: {str(exc)[:200]}). "
                f"Is the cluster up? `{up}` starts it; its logs are in {self.logs}/"
            ) from None

    def apply(self, path: Path) -> None:
        self.run_kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager", "suanli-demo", "-f", str(path)
        )

    def compute_jobs(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        items = self.custom.list_cluster_custom_object(GROUP, VERSION, "computejobs")["items"]
        found = {f"{i['metadata']['namespace']}/{i['metadata']['name']}": i for i in items}
        return {k: found[k] for k in keys if k in found}

    def centers(self, names: list[str]) -> dict[str, dict[str, Any]]:
        items = self.custom.list_cluster_custom_object(GROUP, VERSION, "computecenters")["items"]
        found = {i["metadata"]["name"]: i for i in items}
        return {n: found[n] for n in names if n in found}


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # the API may answer 404/409 while things settle
            value, last = None, exc
        if value:
            return value
        time.sleep(interval)
    raise DemoError(
        f"timed out after {timeout:g}s waiting for {what}" + (f" (last error: {last})" if last else "")
    )


def install_crds(cluster: Cluster) -> None:
    cluster.apply(REPO / "crds")
    cluster.run_kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in CRD_NAMES), timeout=90
    )


def ensure_fake_nodes(cluster: Cluster, centers: list[dict[str, Any]], demo_centers: set[str]) -> list[str]:
    """Fake nodes for these (reduced) centers in this cluster; nodes of the demo's centers left from an
    earlier run (a bigger one, or one that put the center in another cluster) are removed."""
    nodes = fake_nodes.nodes_for_centers(centers)
    wanted = set(fake_nodes.apply_nodes(cluster.core, nodes))
    ours = set(demo_centers)
    existing = cluster.core.list_node(label_selector=fake_nodes.FAKE_NODE_SELECTOR).items
    stale = [
        n.metadata.name
        for n in existing
        if (n.metadata.labels or {}).get(fake_nodes.CENTER_LABEL) in ours and n.metadata.name not in wanted
    ]
    fake_nodes.delete_nodes(cluster.core, stale)

    def all_ready() -> bool:
        ready = set()
        for n in cluster.core.list_node(label_selector=fake_nodes.FAKE_NODE_SELECTOR).items:
            if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or [])):
                ready.add(n.metadata.name)
        return wanted <= ready

    wait_until(
        all_ready,
        NODE_READY_TIMEOUT_S,
        f"{len(wanted)} fake nodes to be Ready in {cluster.name} (is kwok running? see {cluster.logs}/kwok.log)",
    )
    return sorted(wanted)


def ensure_namespaces(cluster: Cluster, names: list[str]) -> None:
    for ns in names:
        with contextlib.suppress(Exception):
            cluster.core.create_namespace({"metadata": {"name": ns}})
    for ns in names:  # pods are refused until the ServiceAccount controller made "default"
        wait_until(
            lambda ns=ns: cluster.core.read_namespaced_service_account("default", ns),
            60,
            f"ServiceAccount default in namespace {ns}",
        )


def remove_previous_jobs(cluster: Cluster, keys: list[str]) -> int:
    """Delete this demo's ComputeJobs left from an earlier run (with their Jobs and pods) and wait until gone."""
    from kubernetes.client.exceptions import ApiException

    present = cluster.compute_jobs(keys)
    for key in present:
        ns, name = key.split("/", 1)
        with contextlib.suppress(ApiException):
            cluster.custom.delete_namespaced_custom_object(
                GROUP, VERSION, ns, "computejobs", name, propagation_policy="Foreground"
            )
    if present:
        wait_until(
            lambda: not cluster.compute_jobs(keys),
            DELETE_TIMEOUT_S,
            "the previous demo's ComputeJobs to be deleted",
        )
    return len(present)


def wait_fleet_idle(cluster: Cluster, centers: list[dict[str, Any]], timeout: float) -> None:
    """Wait until the operator reports every pool of the demo fleet Ready and fully free.

    Pods of an earlier run (or of a test that used the same nodes) may still hold accelerators for a
    few seconds after their jobs are deleted; jobs applied before they are gone would land elsewhere
    than `suanli plan` says. The operator's own center status is the view that matters.
    """
    want = {
        (c["metadata"]["name"], p["name"]): int(p["expected"]["nodes"])
        * int(p["expected"]["acceleratorsPerNode"])
        for c in centers
        for p in c["spec"]["pools"]
    }
    busy: list[str] = []

    def idle() -> bool:
        busy.clear()
        for name in sorted({center for center, _ in want}):
            status = (
                cluster.custom.get_cluster_custom_object(GROUP, VERSION, "computecenters", name).get("status")
                or {}
            )
            seen = {p.get("name"): p for p in status.get("pools") or []}
            ready: dict[str, Any] = next(
                (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
            )
            why = (
                ""
                if ready.get("status") == "True"
                else f" (Ready {ready.get('status', '?')}: {ready.get('reason', '')} {ready.get('message', '')})"
            )
            for (center, pool), capacity in want.items():
                if center != name:
                    continue
                got = seen.get(pool, {})
                if got.get("capacity") != capacity or got.get("free") != capacity:
                    busy.append(
                        f"{center}/{pool} free {got.get('free', '?')}/{got.get('capacity', '?')} of {capacity}{why}"
                    )
        return not busy

    try:
        wait_until(idle, timeout, "the operator to report the demo fleet Ready and idle")
    except DemoError:
        raise DemoError(
            "the demo fleet is not idle: " + "; ".join(busy[:6]) + ". Pods of an earlier run still hold "
            "accelerators; wait a minute and run it again, or start clean: make cluster-down && make demo"
        ) from None


# --- the member clusters ---------------------------------------------------------------------


@dataclass
class Member:
    """A member cluster of the demo: a local control plane (``kubeconfig`` None until it is up) or a given one."""

    name: str
    kubeconfig: str | None = None
    local: bool = True
    centers: list[str] = field(default_factory=list)
    cluster: Cluster | None = None


def check_cluster_name(name: str) -> str:
    """``name`` if tests/cluster/up.sh takes it as CLUSTER=NAME, else DemoError saying why not."""
    if not CLUSTER_NAME_RE.fullmatch(name) or name in RESERVED_CLUSTER_NAMES:
        raise DemoError(
            f"{name!r} is not a usable cluster name: a lowercase DNS label (a-z, 0-9, '-', at most 63 "
            f"characters), none of {', '.join(RESERVED_CLUSTER_NAMES)}"
        )
    return name


def parse_members(text: str, hub_name: str = HUB_CLUSTER_NAME) -> list[Member]:
    """``--members``: ``NAME`` (a local cluster, brought up here) or ``NAME=KUBECONFIG`` (one that runs
    elsewhere), comma-separated; ``none`` (or empty): no members, the single-cluster demo."""
    if text.strip().lower() in ("", "none"):
        return []
    members: list[Member] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, path = (x.strip() for x in item.partition("="))
        if sep and not path:
            raise DemoError(f"--members: {item!r} names no kubeconfig (NAME or NAME=KUBECONFIG)")
        check_cluster_name(name)
        if name == HUB:
            raise DemoError(
                f"--members: {name!r} is what the demo calls the hub's own cluster; choose another name"
            )
        if not sep and name == hub_name:
            raise DemoError(f"--members: {name!r} is the hub (CLUSTER={hub_name}), not a member")
        if any(m.name == name for m in members):
            raise DemoError(f"--members: {name!r} is named twice")
        if sep:
            kubeconfig = Path(path).expanduser().resolve()
            if not kubeconfig.is_file():
                raise DemoError(f"--members: the kubeconfig of {name}, {kubeconfig}, is not a file")
            members.append(Member(name, str(kubeconfig), local=False))
        else:
            members.append(Member(name))
    return members


def assign_centers(centers: list[dict[str, Any]], members: list[str]) -> dict[str, str]:
    """Which member cluster each center goes to (``center -> member``; the others stay in the hub's).

    The centers in the western hubs' regions (``WESTERN_REGIONS``), from west to east, are split into
    one run per member, the first members taking one more when they do not divide evenly: with the
    examples and two members, Zhongwei and Gui'an go to the first, Ulanqab to the second. With fewer
    western centers than members, other centers (west to east) fill in; at least one center always
    stays in the hub's own cluster, so the fleet is mixed.
    """
    if not members:
        return {}

    def longitude(doc: dict[str, Any]) -> float:
        return float(((doc.get("spec") or {}).get("location") or {}).get("longitude") or 0.0)

    ordered = sorted(centers, key=longitude)
    western = [c for c in ordered if (c.get("spec") or {}).get("region") in WESTERN_REGIONS]
    others = [c for c in ordered if c not in western]
    movable = western + others[: max(0, len(members) - len(western))]
    movable = movable[: len(centers) - 1]  # one center at least stays in the hub
    if len(movable) < len(members):
        raise DemoError(
            f"{len(members)} member clusters need at least {len(members) + 1} ComputeCenters (one stays in the "
            f"hub); {len(centers)} given. Use fewer --members"
        )
    movable.sort(key=longitude)
    size, extra = divmod(len(movable), len(members))
    out: dict[str, str] = {}
    start = 0
    for i, member in enumerate(members):
        count = size + (1 if i < extra else 0)
        for doc in movable[start : start + count]:
            out[doc["metadata"]["name"]] = member
        start += count
    return out


def member_script_env(name: str) -> dict[str, str]:
    """The environment for tests/cluster/up.sh acting on member ``name``: this one without the hub's name and ports."""
    env = {key: value for key, value in os.environ.items() if key not in HUB_ONLY_ENV}
    env["SUANLI_CLUSTER"] = name
    env["SUANLI_CLUSTER_DIR"] = str(CLUSTERS_ROOT)
    return env


def bring_up_member(name: str, timeout: float = MEMBER_UP_TIMEOUT_S) -> tuple[str, float]:
    """``CLUSTER=name tests/cluster/up.sh`` (a healthy one is reused); its kubeconfig and the seconds it took."""
    start = time.monotonic()
    cmd = ["bash", str(REPO / "tests" / "cluster" / "up.sh")]
    try:
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            env=member_script_env(name),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DemoError(
            f"member cluster {name}: `CLUSTER={name} bash tests/cluster/up.sh` did not finish within {timeout:g}s "
            f"(SUANLI_MEMBER_UP_TIMEOUT_SECONDS); its logs: {CLUSTERS_ROOT / name}/logs/"
        ) from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise DemoError(
            f"member cluster {name}: `CLUSTER={name} bash tests/cluster/up.sh` failed (exit {proc.returncode}):\n{tail}"
        )
    kubeconfig = CLUSTERS_ROOT / name / "kubeconfig"
    if not kubeconfig.is_file():
        raise DemoError(f"member cluster {name}: up.sh succeeded but wrote no kubeconfig at {kubeconfig}")
    return str(kubeconfig), time.monotonic() - start


def remove_member_jobs(cluster: Cluster, keys: list[str], timeout: float = DELETE_TIMEOUT_S) -> int:
    """Delete the batch Jobs a hub made in this member for the demo's jobs (an earlier run's; the hub
    deletes them itself only while an operator runs) and wait until they and their pods are gone."""
    by_ns: dict[str, list[str]] = {}
    for key in keys:
        ns, name = key.split("/", 1)
        by_ns.setdefault(ns, []).append(name)
    selectors = {ns: f"{JOB_LABEL} in ({','.join(sorted(names))})" for ns, names in by_ns.items()}
    removed = 0
    for ns, selector in selectors.items():
        jobs = cluster.batch.list_namespaced_job(ns, label_selector=selector).items
        removed += len(jobs)
        if jobs:
            cluster.batch.delete_collection_namespaced_job(
                ns, label_selector=selector, propagation_policy="Background"
            )

    def gone() -> bool:
        for ns, selector in selectors.items():
            if cluster.batch.list_namespaced_job(ns, label_selector=selector).items:
                return False
            if cluster.core.list_namespaced_pod(ns, label_selector=selector).items:
                return False
        return True

    wait_until(
        gone, timeout, f"the previous demo's Jobs and pods in member cluster {cluster.name} to be deleted"
    )
    return removed


def join(suanli: list[str], center: str, member: Member, hub_kubeconfig: str, namespace: str) -> str:
    """``suanli join CENTER --member-kubeconfig ... --kubeconfig HUB --namespace NS``; its output."""
    assert member.kubeconfig is not None
    cmd = [*suanli, "join", center, "--member-kubeconfig", member.kubeconfig, "--kubeconfig", hub_kubeconfig,
           "--namespace", namespace]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=JOIN_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise DemoError(
            f"`suanli join {center}` (member {member.name}) did not finish within {JOIN_TIMEOUT_S:g}s"
        ) from None
    if proc.returncode != 0:
        raise DemoError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr).strip()[-2000:]}"
        )
    return proc.stdout


def unjoin_hub_centers(cluster: Cluster, names: list[str]) -> list[str]:
    """Centers that stay in the hub but an earlier run joined to a member: ``spec.cluster`` removed."""
    changed = []
    for name in names:
        spec = (
            cluster.custom.get_cluster_custom_object(GROUP, VERSION, "computecenters", name).get("spec") or {}
        )
        if spec.get("cluster"):
            cluster.custom.patch_cluster_custom_object(
                GROUP, VERSION, "computecenters", name, {"spec": {"cluster": None}}
            )
            changed.append(name)
    return changed


def job_cluster(job: dict[str, Any] | None) -> str | None:
    """The member cluster a job runs (ran) in, as its status names it (the member center); None: the hub's own."""
    st = (job or {}).get("status") or {}
    return (st.get("binding") or {}).get("cluster") or (st.get("workloadRef") or {}).get("cluster") or None


def member_job(cluster: Cluster, key: str) -> dict[str, Any] | None:
    """The batch Job of ComputeJob ``key`` in this member (by label), summed up; None when there is none."""
    ns, name = key.split("/", 1)
    jobs = cluster.batch.list_namespaced_job(ns, label_selector=f"{JOB_LABEL}={name}").items
    if not jobs:
        return None
    job = jobs[0]
    st = job.status
    return {
        "name": f"{ns}/{job.metadata.name}",
        "succeeded": int(st.succeeded or 0) if st else 0,
        "failed": int(st.failed or 0) if st else 0,
        "active": int(st.active or 0) if st else 0,
    }


# --- the operator ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def suanli_command() -> list[str]:
    exe = Path(sys.executable).parent / "suanli"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "suanli.cli"]


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


@dataclass
class Operator:
    """``suanli run`` as a subprocess on loopback ports, logging to ``log``."""

    kubeconfig: str
    log: Path
    namespace: str = (
        OPERATOR_NAMESPACE  # its namespace: the only one whose Secrets (member kubeconfigs) it reads
    )
    proc: subprocess.Popen[bytes] | None = None
    health_port: int = 0
    metrics_port: int = 0
    kept: bool = False  # left running after the demo (its pid in OPERATOR_PID_FILE)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.health_port, self.metrics_port = _free_port(), _free_port()
        cmd = [
            *suanli_command(),
            "run",
            "--kubeconfig",
            self.kubeconfig,
            "--namespace",
            self.namespace,
            "--metrics-port",
            str(self.metrics_port),
            "--metrics-address",
            "127.0.0.1",
            "--health-port",
            str(self.health_port),
            "--health-address",
            "127.0.0.1",
        ]
        with open(self.log, "wb") as out:  # this run only: its tail is what an error shows
            out.write(f"--- started by tests/cluster/demo.py: {' '.join(cmd)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + OPERATOR_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check()
            with contextlib.suppress(OSError):
                if (
                    urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1).status
                    == 200
                ):
                    return
            time.sleep(0.3)
        raise DemoError(
            f"the operator's /healthz did not answer within {OPERATOR_READY_TIMEOUT_S:g}s; last 20 lines of {self.log}:\n{log_tail(self.log)}"
        )

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            self.proc = None
            raise DemoError(
                f"the operator exited (code {code}); last 20 lines of its log {self.log}:\n{log_tail(self.log)}"
            )

    def keep(self) -> None:
        """Leave it running after the demo: its pid goes where ``--stop`` and the cluster's down.sh look."""
        if self.proc is None or self.proc.poll() is not None:
            return
        OPERATOR_PID_FILE.parent.mkdir(parents=True, exist_ok=True)
        OPERATOR_PID_FILE.write_text(f"{self.proc.pid}\n")
        self.kept = True

    def stop(self, grace_seconds: float = 5.0) -> bool:
        """SIGTERM, then SIGKILL after ``grace_seconds`` (all its state is in the API; a second Ctrl-C kills at once)."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        print(f"stopping the operator (pid {self.proc.pid})...", flush=True)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=grace_seconds)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            self.proc.kill()
            self.proc.wait(timeout=15)
        return True


def _is_operator(pid: int) -> bool:
    """Whether ``pid`` is a running ``suanli run`` (a stale pid file may name an unrelated process)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = next(
            (
                ln.split()[1]
                for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                if ln.startswith("State:")
            ),
            "",
        )
    except OSError:
        return False
    return state != "Z" and b"run" in args and any(a.endswith((b"suanli", b"suanli.cli")) for a in args)


def stop_kept_operator(grace_seconds: float = OPERATOR_STOP_GRACE_S) -> int | None:
    """Stop the operator an earlier demo left running (SIGTERM, SIGKILL after ``grace_seconds``).

    Returns its pid, or None when none runs. The pid file goes either way."""
    try:
        text = OPERATOR_PID_FILE.read_text().strip()
    except FileNotFoundError:
        return None
    OPERATOR_PID_FILE.unlink(missing_ok=True)
    if not text.isdigit() or not _is_operator(int(text)):
        return None
    pid = int(text)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while _is_operator(pid):
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    return pid


# --- watching ---------------------------------------------------------------------------------


@dataclass
class Snapshot:
    elapsed: float
    jobs: dict[str, dict[str, Any]]
    centers: dict[str, dict[str, Any]]
    events: list[str] = field(default_factory=list)


def phase_of(job: dict[str, Any] | None) -> str:
    return ((job or {}).get("status") or {}).get("phase") or "Pending"


def settled(snap: Snapshot, keys: list[str]) -> bool:
    """Every job finished, or waits by design (Queued/Deferred) with nothing left to run."""
    phases = [phase_of(snap.jobs.get(k)) for k in keys]
    return all(p in FINAL or p in WAITING for p in phases) and len(snap.jobs) == len(keys)


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    from datetime import datetime

    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    return None


def where_it_runs(job: dict[str, Any] | None, placement: dict[str, str]) -> str:
    """The cluster a bound job runs in, for people: the member center its status names (with the demo's
    name of that member cluster, when it differs), or "hub"; "-" while it is not bound."""
    st = (job or {}).get("status") or {}
    if phase_of(job) not in ("Bound", "Running", "Succeeded", "Failed") or not st.get("binding"):
        return "-"
    member = job_cluster(job)
    if member is None:
        return HUB
    plane = placement.get(member)
    return f"{member} ({plane})" if plane and plane != member else member


def cluster_as_placed(job: dict[str, Any] | None, placement: dict[str, str]) -> bool:
    """The status names the member cluster the demo put the job's center in (none for a hub center)."""
    center = (((job or {}).get("status") or {}).get("binding") or {}).get("center")
    if center is None or phase_of(job) not in ("Bound", "Running", "Succeeded", "Failed"):
        return True
    return job_cluster(job) == (center if center in placement else None)


def describe_change(key: str, job: dict[str, Any], placement: dict[str, str] | None = None) -> str:
    status = job.get("status") or {}
    phase = phase_of(job)
    b = status.get("binding") or {}
    if phase in ("Bound", "Running", "Succeeded", "Failed") and b:
        text = (
            f"{phase:<9} {b.get('center')}/{b.get('pool')} ({b.get('model')}) score {b.get('score', 0):.3f}"
            f" in cluster {where_it_runs(job, placement or {})}"
        )
    elif phase == "Deferred":
        text = f"{phase:<9} until {status.get('plannedStart')} on {b.get('center')}/{b.get('pool')}"
    else:
        text = phase
    if phase in (*WAITING, "Failed") and status.get("message"):
        text += f" - {status['message']}"
    return f"{key}: {text}"


def render(
    snap: Snapshot,
    keys: list[str],
    delays: dict[str, int],
    predicted: dict[str, dict[str, Any]],
    timeout: float,
    wide: bool = True,
    placement: dict[str, str] | None = None,
) -> Any:
    """The live view; a narrow terminal (``wide=False``) drops the runner-up and plan columns.
    ``placement``: center -> the member cluster the demo put it in (the others are in the hub's)."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    placement = placement or {}
    head = Table(title="centers (live)", title_justify="left", expand=False, box=None, padding=(0, 1))
    for col in ("center", "cluster", "free/capacity accelerators per pool", "energy used kWh (demo time)"):
        head.add_column(col)
    for name, cc in sorted(snap.centers.items(), key=lambda item: (placement.get(item[0], ""), item[0])):
        st = cc.get("status") or {}
        pools = ", ".join(
            f"{p.get('name')} {p.get('free', '?')}/{p.get('capacity', '?')}" for p in st.get("pools") or []
        )
        used = (st.get("energy") or {}).get("usedKWh")
        head.add_row(
            name,
            placement.get(name, HUB),
            pools or "-",
            f"{used:.2f}" if isinstance(used, (int, float)) else "-",
        )

    table = Table(title=f"ComputeJobs - {snap.elapsed:.0f}s (deadline {timeout:.0f}s)", title_justify="left")
    columns = ("job", "phase", "where (model)", "cluster", "score", "runner-up", "est. kWh", "est. kgCO2e",
               "progress / why", "plan said")  # fmt: skip
    shown = [i for i, col in enumerate(columns) if wide or col not in ("runner-up", "plan said")]
    for i in shown:
        table.add_column(columns[i], overflow="fold", no_wrap=columns[i] in ("job", "phase", "score"))
    now = time.time()
    colours = {
        "Succeeded": "green",
        "Failed": "red",
        "Running": "cyan",
        "Bound": "blue",
        "Queued": "yellow",
        "Deferred": "magenta",
    }
    for key in keys:
        job = snap.jobs.get(key) or {}
        st = job.get("status") or {}
        phase = phase_of(job)
        b = st.get("binding") or {}
        est = st.get("estimates") or {}
        cands = st.get("candidates") or []
        where = f"{b.get('center')}/{b.get('pool')} ({b.get('model')})" if b else "-"
        runner = f"{cands[1]['center']}/{cands[1]['pool']} {cands[1]['score']:.3f}" if len(cands) > 1 else "-"
        progress: Any = "-"
        if phase == "Running":
            started = _parse_time(st.get("startTime") or st.get("boundTime")) or now
            total = float(delays.get(key, 30))
            progress = Table.grid(padding=(0, 1))
            progress.add_row(
                ProgressBar(total=total, completed=min(now - started, total * 0.99), width=16),
                f"{now - started:.0f}s/~{total:.0f}s",
            )
        elif phase == "Succeeded":
            s, e = _parse_time(st.get("startTime")), _parse_time(st.get("completionTime"))
            progress = f"done in {e - s:.0f}s (demo time)" if s and e else "done"
        elif phase in (*WAITING, "Failed"):
            progress = st.get("message") or (f"until {st['plannedStart']}" if st.get("plannedStart") else "-")
            if not wide and len(progress) > 70:  # the summary shows it whole
                progress = progress[:69] + "…"
        said = planned_place(predicted.get(key))
        match = phase == "Pending" or as_planned(predicted.get(key), job)
        cells = (
            key,
            Text(phase, style=colours.get(phase, "")),
            where,
            Text(
                where_it_runs(job, placement), style="" if cluster_as_placed(job, placement) else "bold red"
            ),
            f"{b['score']:.3f}" if "score" in b else "-",
            runner,
            f"{est['energyKWh']:.1f}" if "energyKWh" in est else "-",
            f"{est['carbonKg']:.1f}" if "carbonKg" in est else "-",
            progress,
            Text(said, style="" if match else "bold red"),
        )
        table.add_row(*(cells[i] for i in shown))
    return Group(head, table)


def watch(
    cluster: Cluster,
    operator: Operator | None,
    keys: list[str],
    centers: list[str],
    delays: dict[str, int],
    predicted: dict[str, dict[str, Any]],
    timeout: float,
    live: bool,
    console: Any,
    placement: dict[str, str] | None = None,
) -> tuple[Snapshot, bool]:
    """Poll once a second until the jobs settle or the deadline; returns the last snapshot and whether it settled."""
    t0 = time.monotonic()
    last_lines: dict[str, str] = {}
    settled_since: float | None = None

    def snapshots() -> Iterator[Snapshot]:
        last_ok, previous = time.monotonic(), Snapshot(0.0, {}, {})
        while True:
            if operator is not None:
                operator.check()
            try:
                previous = Snapshot(
                    time.monotonic() - t0, cluster.compute_jobs(keys), cluster.centers(centers)
                )
                last_ok = time.monotonic()
            except Exception as exc:  # an API hiccup: show the last state, give up after API_OUTAGE_S
                if time.monotonic() - last_ok > API_OUTAGE_S:
                    raise DemoError(
                        f"the API server has not answered for {API_OUTAGE_S:g}s ({exc.__class__.__name__}: "
                        f"{str(exc)[:200]}); see {CLUSTER_DIR}/logs/kube-apiserver.log"
                    ) from None
                previous.elapsed = time.monotonic() - t0
            yield previous

    def step(snap: Snapshot) -> bool:
        nonlocal settled_since
        if not live:
            for key in keys:
                job = snap.jobs.get(key)
                if job is None:
                    continue
                # not the message: plannedStart may tick
                state = f"{phase_of(job)} {live_place(job)} {job_cluster(job)}"
                if last_lines.get(key) != state:
                    last_lines[key] = state
                    console.print(
                        f"[{snap.elapsed:5.0f}s] {describe_change(key, job, placement)}",
                        highlight=False,
                        soft_wrap=True,
                    )
        if settled(snap, keys):
            settled_since = settled_since if settled_since is not None else time.monotonic()
            return time.monotonic() - settled_since >= SETTLE_SECONDS
        settled_since = None
        return False

    snap = Snapshot(0.0, {}, {})
    if live:
        from rich.live import Live

        with Live(console=console, refresh_per_second=4, transient=False) as view:
            for snap in snapshots():
                view.update(
                    render(
                        snap, keys, delays, predicted, timeout, wide=console.width >= 150, placement=placement
                    )
                )
                if step(snap):
                    return snap, True
                if snap.elapsed >= timeout:
                    return snap, False
                time.sleep(1.0)
    for snap in snapshots():
        if step(snap):
            return snap, True
        if snap.elapsed >= timeout:
            return snap, False
        time.sleep(1.0)
    return snap, False


# --- the summary ------------------------------------------------------------------------------------


def summarize(
    snap: Snapshot,
    keys: list[str],
    predicted: dict[str, dict[str, Any]],
    finished: bool,
    placement: dict[str, str] | None = None,
    clusters: dict[str, Any] | None = None,
    member_jobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary (``--summary-json``). ``placement``: center -> member cluster; ``clusters``: the hub
    and the members (``{"hub": {...}, "members": [{"name", "kubeconfig", "local", "centers"}]}``);
    ``member_jobs``: job -> its batch Job as found in the member it ran in."""
    placement, member_jobs = placement or {}, member_jobs or {}
    clusters = clusters or {"hub": {"name": HUB, "centers": sorted(snap.centers)}, "members": []}
    rows = []
    ran_in: dict[str, int] = {HUB: 0, **{m["name"]: 0 for m in clusters["members"]}}
    total_kwh = total_kg = 0.0
    for key in keys:
        job = snap.jobs.get(key) or {}
        st = job.get("status") or {}
        b = st.get("binding") or {}
        est = st.get("estimates") or {}
        phase = phase_of(job)
        said = predicted.get(key) or {}
        ran = phase in ("Bound", "Running", "Succeeded", "Failed")
        if ran:
            total_kwh += float(est.get("energyKWh") or 0.0)
            total_kg += float(est.get("carbonKg") or 0.0)
        s, e = _parse_time(st.get("startTime")), _parse_time(st.get("completionTime"))
        member = job_cluster(job) if ran and b else None
        cluster_name = (placement.get(member) or member) if member else (HUB if ran and b else None)
        if cluster_name is not None:
            ran_in[cluster_name] = ran_in.get(cluster_name, 0) + 1
        rows.append(
            {
                "job": key,
                "phase": phase,
                "center": b.get("center"),
                "pool": b.get("pool"),
                "cluster": member,  # as the status says: the member center whose cluster runs it; None: the hub's
                "clusterName": cluster_name,  # the demo's name of that cluster ("hub", "demo-west", ...)
                "clusterAsPlaced": cluster_as_placed(job, placement),
                "memberJob": member_jobs.get(key),
                "model": b.get("model"),
                "score": b.get("score"),
                "message": st.get("message"),
                "plannedStart": st.get("plannedStart"),
                "estimatedKWh": est.get("energyKWh"),
                "estimatedCarbonKg": est.get("carbonKg"),
                "settledEnergy": st.get("energy"),
                "demoRunSeconds": round(e - s, 1) if s and e else None,
                "planned": {
                    "phase": said.get("phase"),
                    "center": (said.get("binding") or {}).get("center"),
                    "pool": (said.get("binding") or {}).get("pool"),
                    "plannedStart": said.get("plannedStart"),
                },
                "asPlanned": as_planned(said, job),
            }
        )
    reference_kg = total_kwh * NATIONAL_GRAMS_PER_KWH / 1000.0
    return {
        "finished": finished,
        "seconds": round(snap.elapsed, 1),
        "jobs": rows,
        "clusters": {**clusters, "count": 1 + len(clusters["members"]), "jobsRanIn": ran_in},
        "totals": {
            "estimatedKWh": round(total_kwh, 3),
            "estimatedCarbonKg": round(total_kg, 3),
            "nationalAverageCarbonKg": round(reference_kg, 3),
            "nationalAverageGramsPerKWh": NATIONAL_GRAMS_PER_KWH,
        },
    }


def print_summary(
    console: Any, summary: dict[str, Any], kubeconfig: str, operator: Operator | None, one_more: Path | None
) -> None:
    from rich.table import Table

    table = Table(
        title="where each job ran (estimates are for the job's declared runtime, not demo time)",
        title_justify="left",
    )
    for col in (
        "job",
        "phase",
        "where (model)",
        "cluster",
        "est. kWh",
        "est. kgCO2e",
        "demo run",
        "as planned",
        "why it waits",
    ):
        table.add_column(col, overflow="fold")
    for r in summary["jobs"]:
        where = f"{r['center']}/{r['pool']} ({r['model']})" if r["center"] else "-"
        why = "-"
        if r["phase"] in (*WAITING, "Failed"):
            why = r["message"] or (f"until {r['plannedStart']}" if r["plannedStart"] else "-")
        cluster = r["clusterName"] or "-"
        if r["cluster"] and r["cluster"] != r["clusterName"]:
            cluster = f"{r['cluster']} ({r['clusterName']})"
        if not r["clusterAsPlaced"]:
            cluster += " (not where the demo put the center!)"
        table.add_row(
            r["job"],
            r["phase"],
            where,
            cluster,
            f"{r['estimatedKWh']:.1f}" if r["estimatedKWh"] is not None and r["center"] else "-",
            f"{r['estimatedCarbonKg']:.1f}" if r["estimatedCarbonKg"] is not None and r["center"] else "-",
            f"{r['demoRunSeconds']:.0f}s" if r["demoRunSeconds"] is not None else "-",
            "yes"
            if r["asPlanned"]
            else f"no (plan: {r['planned']['center'] or r['planned']['phase']}/{r['planned']['pool'] or ''})",
            why,
        )
    console.print(table)
    cl = summary["clusters"]
    ran_in = cl.get("jobsRanIn") or {}
    members = cl["members"]
    parts = [f"{HUB} ({', '.join(cl['hub']['centers']) or 'no centers'})"]
    parts += [f"{m['name']} ({', '.join(m['centers'])})" for m in members]
    console.print(
        f"clusters: {cl['count']} - "
        + (f"the hub and {len(members)} member clusters: " if members else "the hub alone: ")
        + "; ".join(parts)
        + ". Jobs ran in: "
        + ", ".join(f"{name} {count}" for name, count in ran_in.items()),
        highlight=False,
    )
    astray = [r["job"] for r in summary["jobs"] if not r["clusterAsPlaced"]]
    missing = [r["job"] for r in summary["jobs"] if r["cluster"] and not r.get("memberJob")]
    if astray:
        console.print(f"[yellow]ran in another cluster than their center's: {', '.join(astray)}[/]")
    if missing:
        console.print(
            f"[yellow]no Job found in the member cluster their status names: {', '.join(missing)}[/]"
        )
    t = summary["totals"]
    saved = t["nationalAverageCarbonKg"] - t["estimatedCarbonKg"]
    pct = 100.0 * saved / t["nationalAverageCarbonKg"] if t["nationalAverageCarbonKg"] else 0.0
    console.print(
        f"energy: {t['estimatedKWh']:.1f} kWh, carbon: {t['estimatedCarbonKg']:.1f} kg CO2e for the jobs that ran "
        f"(the same kWh at China's national average grid, {NATIONAL_GRAMS_PER_KWH:g} g/kWh, would emit "
        f"{t['nationalAverageCarbonKg']:.1f} kg: {pct:.0f}% {'less' if saved >= 0 else 'more'})",
        highlight=False,
    )
    if not summary["finished"]:
        console.print(
            f"[bold red]deadline reached after {summary['seconds']:.0f}s before every job finished or settled.[/]"
        )
    mismatches = [r["job"] for r in summary["jobs"] if not r["asPlanned"]]
    if mismatches:
        console.print(f"[yellow]differs from `suanli plan`: {', '.join(mismatches)}[/]")

    def shown(path: Path | str) -> str:  # $PWD/... inside the repo (make demo runs there), else absolute
        text = str(path)
        return f"$PWD/{os.path.relpath(text, REPO)}" if text.startswith(str(REPO) + os.sep) else text

    rel = shown(kubeconfig)
    bin_dir = shown(CLUSTER_DIR / "bin")
    if operator is None:
        running = "  (with the operator you run yourself)"
    elif operator.kept and operator.proc is not None:
        running = (
            f"  (the operator keeps running: pid {operator.proc.pid}, log {shown(operator.log)}, "
            f"metrics http://127.0.0.1:{operator.metrics_port}/metrics)"
        )
    else:
        running = (
            "  (the operator started for the demo is stopped; the clusters stay up: jobs you apply wait)"
        )
    lines = ["", "explore further:" + running, f"  export KUBECONFIG={rel} PATH={bin_dir}:$PATH"]
    if one_more is not None:
        ns, name = summary["oneMoreJob"].split("/")
        lines += [
            f"  kubectl apply -f {shown(one_more)}   # one more job",
            f"  kubectl get cjob -n {ns} {name} -w   # ... placed within seconds (Ctrl-C to stop watching)",
        ]
    lines += [
        "  kubectl get cc                       # centers: free accelerators, energy",
        "  kubectl get computejobs -A           # or: kubectl get cjob -A  (plain `cj` is the built-in CronJob)",
        "  .venv/bin/suanli explain team-b/giant-pretrain --kubeconfig $KUBECONFIG",
        "  .venv/bin/suanli plan -f crds/examples   # the same decisions with no cluster at all",
        f"  make demo-down{f' CLUSTER={HUB_CLUSTER_NAME}' if HUB_CLUSTER_NAME else ''}"
        "   # stop the operator and the clusters (hub and members)",
    ]
    for m in members:
        lines.insert(
            -1,
            f"  kubectl --kubeconfig {shown(m['kubeconfig'])} get jobs,pods -A   # member {m['name']}: "
            "the Jobs the hub made there",
        )
    local = [m["name"] for m in members if m.get("local") and m["name"] not in DEFAULT_MEMBERS.split(",")]
    if local:
        lines.append(
            "  "
            + "; ".join(f"make cluster-down CLUSTER={name}" for name in local)
            + "   # stop the member clusters"
        )

    console.print("\n".join(lines), highlight=False, markup=False)


# --- main ------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="demo.py", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--kubeconfig",
        default=str(CLUSTER_DIR / "kubeconfig"),
        help="cluster to use (default: the local control plane's .cluster/kubeconfig; $KUBECONFIG is ignored)",
    )
    p.add_argument(
        "--centers", type=Path, default=REPO / "crds/examples/centers.yaml", help="ComputeCenter manifests"
    )
    p.add_argument(
        "--jobs",
        type=Path,
        default=REPO / "crds/examples/jobs.yaml",
        help="ComputeJob (and Namespace) manifests",
    )
    p.add_argument(
        "--nodes-per-pool",
        type=int,
        default=4,
        metavar="N",
        help="at most N fake nodes per pool (4 keeps every example's expectation; default 4)",
    )
    p.add_argument(
        "--timeout", type=float, default=600.0, metavar="SECONDS", help="give up watching after this long"
    )
    p.add_argument(
        "--no-live",
        action="store_true",
        help="plain lines instead of the live table (automatic off a terminal)",
    )
    p.add_argument(
        "--no-operator", action="store_true", help="use the operator already running against this cluster"
    )
    p.add_argument(
        "--members",
        default=DEFAULT_MEMBERS,
        metavar="NAME[=KUBECONFIG],...",
        help="member clusters: NAME is a local control plane brought up (or reused) with CLUSTER=NAME "
        "tests/cluster/up.sh, NAME=KUBECONFIG one that runs elsewhere; 'none': the hub alone "
        f"(default: {DEFAULT_MEMBERS})",
    )
    p.add_argument(
        "--operator-namespace",
        default=OPERATOR_NAMESPACE,
        metavar="NS",
        help="the operator's namespace on the hub, where `suanli join` writes the members' kubeconfig "
        f"Secrets (created if missing; default {OPERATOR_NAMESPACE})",
    )
    p.add_argument(
        "--stop-operator",
        action="store_true",
        help="stop the operator the demo started when it ends (default: a successful demo leaves it running, "
        "so jobs applied afterwards are placed; `make demo-down` stops it and the clusters)",
    )
    p.add_argument(
        "--stop",
        action="store_true",
        help="only stop the operator an earlier demo left running (its pid file in .cluster/pids/), then exit",
    )
    p.add_argument("--summary-json", type=Path, metavar="FILE", help="also write the summary as JSON here")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=CLUSTER_DIR / "demo",
        help="where the demo copies of the manifests go",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    interactive = sys.stdout.isatty() and not args.no_live
    console = Console() if interactive else Console(width=200, force_terminal=False, no_color=True)
    started: list[Operator] = []
    if args.stop:
        pid = stop_kept_operator()
        print(
            f"stopped the operator the demo left running (pid {pid})"
            if pid
            else f"no operator left running by the demo ({OPERATOR_PID_FILE} names no running `suanli run`)",
            flush=True,
        )
        return 0
    try:
        return _demo(args, console, interactive, started.append)
    except KeyboardInterrupt:
        console.print("\ninterrupted.")
        return 130
    except DemoError as exc:
        console.print(f"\n[bold red]demo failed:[/] {exc}", highlight=False)
        return 1
    except Exception as exc:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        if not isinstance(exc, (ApiException, HTTPError)):
            raise
        console.print(
            f"\n[bold red]demo failed talking to the API server ({args.kubeconfig}):[/] "
            f"{exc.__class__.__name__}: {str(exc)[:500]}\nIs the cluster up (make cluster-up)? "
            f"Its logs: {CLUSTER_DIR}/logs/",
            highlight=False,
        )
        return 1
    finally:
        for operator in started:
            if operator.kept or not operator.stop():
                continue
            console.print(
                f"stopped the operator started for the demo (log: {operator.log}); the clusters are still up.",
                highlight=False,
            )


def _demo(args: argparse.Namespace, console: Any, interactive: bool, started: Any) -> int:
    t_start = time.monotonic()
    kubeconfig = str(Path(args.kubeconfig).resolve())
    if not Path(kubeconfig).exists():
        raise DemoError(
            f"no kubeconfig at {kubeconfig}: start the local control plane with `make cluster-up` (or run `make demo`)"
        )
    kubectl = (
        str(CLUSTER_DIR / "bin" / "kubectl")
        if (CLUSTER_DIR / "bin" / "kubectl").exists()
        else shutil.which("kubectl")
    )
    if not kubectl:
        raise DemoError(
            "kubectl not found: run `make cluster-up` (it puts one in .cluster/bin) or install kubectl"
        )
    members = parse_members(args.members)
    suanli = suanli_command()
    if not args.no_operator:
        earlier = stop_kept_operator()
        if earlier:
            console.print(
                f"stopped the operator an earlier demo left running (pid {earlier})", highlight=False
            )
        probe = subprocess.run(
            [*suanli, "run", "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        if probe.returncode != 0:
            raise DemoError(
                f"this suanli has no working `run` command (the operator): {probe.stderr.strip()[-500:]}"
            )

    def step(text: str) -> None:
        console.print(f"[{time.monotonic() - t_start:5.1f}s] {text}", highlight=False)

    # 1-3: the demo copies and what plan predicts for them
    center_docs = reduce_centers(read_docs(args.centers), args.nodes_per_pool)
    job_docs, delays = with_demo_delays(read_docs(args.jobs))
    work = args.work_dir
    note = "# Written by tests/cluster/demo.py from {}: {}. Edit the original, not this copy.\n"
    write_docs(
        work / "centers.yaml",
        center_docs,
        note.format(args.centers.name, f"expected.nodes capped at {args.nodes_per_pool}"),
    )
    write_docs(
        work / "jobs.yaml", job_docs, note.format(args.jobs.name, "kwok completion delays of demo seconds")
    )
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # two `suanli plan` runs at once: ~3 s each
        demo_plan = pool.submit(plan, [work / "centers.yaml", work / "jobs.yaml"], suanli)
        full_plan = pool.submit(plan, [args.centers, args.jobs], suanli)
        predicted, full = demo_plan.result(), full_plan.result()
    keys = list(predicted)
    more = one_more_job(job_docs, predicted)
    one_more: Path | None = None
    more_key = f"{more['metadata']['namespace']}/{ONE_MORE_JOB}" if more else ""
    if more is not None:
        one_more = work / "one-more-job.yaml"
        write_docs(
            one_more,
            [more],
            note.format(args.jobs.name, f"a copy named {ONE_MORE_JOB} to apply after the demo"),
        )
    differs = [k for k in keys if planned_place(predicted[k]) != planned_place(full.get(k))]
    step(
        f"suanli plan on the demo fleet ({args.nodes_per_pool} nodes per pool at most): "
        + ", ".join(f"{k.split('/')[1]} -> {planned_place(predicted[k])}" for k in keys)
    )
    if differs:
        console.print(
            f"[yellow]note: with {args.nodes_per_pool} nodes per pool the plan differs from the full fleet for "
            f"{', '.join(differs)}; try --nodes-per-pool 4 or more[/]"
        )

    cluster = Cluster(kubeconfig, kubectl)
    cluster.check_reachable()
    step("installing the CRDs (kubectl apply --server-side -f crds/)")
    install_crds(cluster)
    centers = [d for d in center_docs if d.get("kind") == "ComputeCenter"]
    demo_centers = {c["metadata"]["name"] for c in centers}

    # The member clusters and which centers go where.
    placement = assign_centers(centers, [m.name for m in members])
    for m in members:
        m.centers = [c["metadata"]["name"] for c in centers if placement.get(c["metadata"]["name"]) == m.name]
        if m.local:
            m.kubeconfig, seconds = bring_up_member(m.name)
            step(
                f"member cluster {m.name} up in {seconds:.0f}s (CLUSTER={m.name} tests/cluster/up.sh): {m.kubeconfig}"
            )
        assert m.kubeconfig is not None
        if Path(m.kubeconfig).resolve() == Path(kubeconfig):
            raise DemoError(
                f"member cluster {m.name} is the hub itself ({kubeconfig}); give another --kubeconfig or --members"
            )
        m.cluster = Cluster(m.kubeconfig, kubectl, name=m.name, logs=CLUSTERS_ROOT / m.name / "logs")
        m.cluster.check_reachable()
    hub_centers = [c for c in centers if c["metadata"]["name"] not in placement]
    nodes = ensure_fake_nodes(cluster, hub_centers, demo_centers)
    counts = [f"{len(nodes)} in the hub"]
    for m in members:
        assert m.cluster is not None
        member_nodes = ensure_fake_nodes(
            m.cluster, [c for c in centers if c["metadata"]["name"] in m.centers], demo_centers
        )
        counts.append(f"{len(member_nodes)} in {m.name}")
    step(f"fake accelerator nodes Ready (kwok) for {len(centers)} centers: {', '.join(counts)}")
    namespaces = sorted({k.split("/")[0] for k in keys})
    ensure_namespaces(cluster, [*namespaces, *([args.operator_namespace] if members else [])])
    removed = remove_previous_jobs(cluster, [*keys, *([more_key] if more_key else [])])
    if removed:
        step(f"removed {removed} ComputeJobs of an earlier demo run")
    for m in members:
        assert m.cluster is not None
        gone = remove_member_jobs(m.cluster, [*keys, *([more_key] if more_key else [])])
        if gone:
            step(f"removed {gone} Jobs of an earlier demo run in member cluster {m.name}")
    cluster.apply(work / "centers.yaml")
    others = sorted(
        i["metadata"]["name"]
        for i in cluster.custom.list_cluster_custom_object(GROUP, VERSION, "computecenters")["items"]
        if i["metadata"]["name"] not in demo_centers
    )
    if others:
        console.print(
            f"[yellow]note: this cluster has other ComputeCenters too ({', '.join(others[:5])}"
            f"{', ...' if len(others) > 5 else ''}); the operator may place demo jobs there. "
            "For a clean demo: make cluster-down && make demo[/]"
        )
    step(f"applied {len(centers)} ComputeCenters ({work / 'centers.yaml'})")
    unjoined = unjoin_hub_centers(cluster, [c["metadata"]["name"] for c in hub_centers])
    if unjoined:
        step(
            f"{', '.join(unjoined)}: in the hub's own cluster this time (spec.cluster of an earlier run removed)"
        )
    if members:
        jobs = [(center, m) for m in members for center in m.centers]
        with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
            list(pool.map(lambda cm: join(suanli, cm[0], cm[1], kubeconfig, args.operator_namespace), jobs))
        joined = "; ".join(f"{m.name} <- {', '.join(m.centers)}" for m in members)
        step(
            f"suanli join: {joined} "
            f"(kubeconfig Secrets in {args.operator_namespace}); "
            f"{', '.join(c['metadata']['name'] for c in hub_centers)} stay in the hub's own cluster"
        )
    operator: Operator | None = None
    if args.no_operator:
        step("using the operator already running (--no-operator)")
    else:
        operator = Operator(
            kubeconfig, CLUSTER_DIR / "logs" / "operator-demo.log", namespace=args.operator_namespace
        )
        started(operator)
        operator.start()
        step(
            f"operator running (suanli run --namespace {operator.namespace}, pid "
            f"{operator.proc.pid if operator.proc else '?'}, log {operator.log})"
        )
    wait_fleet_idle(cluster, centers, FLEET_IDLE_TIMEOUT_S)
    step(
        "the operator reports every pool Ready and free"
        + (", in the hub and in every member" if members else "")
    )
    cluster.apply(work / "jobs.yaml")
    step(f"applied {len(keys)} ComputeJobs ({work / 'jobs.yaml'}); each runs 10-40 s of demo time")

    center_names = [c["metadata"]["name"] for c in centers]
    snap, finished = watch(
        cluster,
        operator,
        keys,
        center_names,
        delays,
        predicted,
        args.timeout,
        interactive,
        console,
        placement,
    )
    by_center = {center: m for m in members for center in m.centers}
    member_jobs: dict[str, Any] = {}
    for key in keys:  # where the status says a job ran, its Job must be
        ran_in = by_center.get(job_cluster(snap.jobs.get(key)) or "")
        if ran_in is not None and ran_in.cluster is not None:
            try:
                member_jobs[key] = member_job(ran_in.cluster, key)
            except Exception as exc:  # a member that stopped answering: say so in the summary
                member_jobs[key] = {"error": f"{exc.__class__.__name__}: {str(exc)[:200]}"}
    clusters = {
        "hub": {
            "name": HUB,
            "kubeconfig": kubeconfig,
            "centers": [c["metadata"]["name"] for c in hub_centers],
        },
        "members": [
            {"name": m.name, "kubeconfig": m.kubeconfig, "local": m.local, "centers": m.centers}
            for m in members
        ],
    }
    summary = summarize(snap, keys, predicted, finished, placement, clusters, member_jobs)
    summary["totalSeconds"] = round(time.monotonic() - t_start, 1)
    if one_more is not None:
        summary["oneMoreJob"], summary["oneMoreJobFile"] = more_key, str(one_more)
    if operator is not None and finished and not args.stop_operator:
        operator.keep()
        summary["operatorPid"] = operator.proc.pid if operator.proc else None
    print_summary(console, summary, kubeconfig, operator, one_more)
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    step(f"demo done in {summary['totalSeconds']:.0f}s")
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
