"""The operator's in-memory mirror of the API, and the snapshot the scheduler plans on.

Handlers put API objects in (`upsert_*` / `delete_*`); the scheduler takes `snapshot(now)`:
the fleet, a capacity ledger per node, an energy ledger, the ready mask with reasons and the
queued jobs — exactly the inputs of `placement.planner.plan`. Capacity comes from Ready,
schedulable Nodes matching each pool's nodeSelector minus the accelerator requests of
non-terminated Pods on them, minus "assumed" accelerators of bound jobs whose pods are not
visible yet (gone as soon as the pods are seen or the job finishes).

Everything in here is rebuilt from the API after a restart: a bound job is one whose status
says so (or one this process bound a moment ago: `assume`). No I/O, no clock: `now` is passed in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from suanli import settings as settings_mod
from suanli.api import manifests, objects
from suanli.api import status as status_api
from suanli.kube import objects as kobj
from suanli.kube import workloads
from suanli.ledger import capacity as capacity_mod
from suanli.ledger import energy as energy_mod
from suanli.placement import queue as queue_mod
from suanli.placement import validation
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod

Key = kobj.Key
BOUND_PHASES = frozenset({"Bound", "Running"})
DONE_PHASES = frozenset({"Succeeded", "Failed"})
UNSUPPORTED_MEMBER = "member clusters (spec.cluster) are not supported by this operator version yet"


@dataclasses.dataclass
class Binding:
    """Where a job runs: enough to account for it without the pure core."""

    center: str
    pool: str
    accelerator_type: str
    replicas: int
    count: int
    energy_kwh: float
    carbon_kg: float
    bound_epoch: float | None = None


@dataclasses.dataclass
class JobRecord:
    """One ComputeJob as the operator knows it."""

    key: Key
    raw: dict[str, Any]
    obj: objects.ComputeJob | None
    parse_error: tuple[str, str] | None  # (field, message) when the spec does not validate
    created: float
    demand: demand_mod.JobDemand | None = None

    @property
    def uid(self) -> str:
        return str((self.raw.get("metadata") or {}).get("uid") or "")

    @property
    def generation(self) -> int | None:
        return (self.raw.get("metadata") or {}).get("generation")

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.raw.get("status") or {})

    @property
    def phase(self) -> str:
        return str(self.status.get("phase") or "Pending")

    @property
    def label(self) -> str:
        return workloads.label_value(self.key[1])


def binding_from_status(record: JobRecord) -> Binding | None:
    status = record.status
    b = status.get("binding")
    if record.phase not in BOUND_PHASES | DONE_PHASES or not b or record.obj is None:
        return None
    est = status.get("estimates") or {}
    return Binding(
        center=b.get("center", ""),
        pool=b.get("pool", ""),
        accelerator_type=b.get("acceleratorType", ""),
        replicas=record.obj.spec.replicas,
        count=record.obj.spec.accelerators.count,
        energy_kwh=float(est.get("energyKWh") or 0.0),
        carbon_kg=float(est.get("carbonKg") or 0.0),
        bound_epoch=kobj.parse_time(status.get("boundTime")),
    )


@dataclasses.dataclass(frozen=True)
class PoolUsage:
    center: str
    pool: str
    capacity: int
    allocated: int
    free: int
    ready_nodes: int
    expected_nodes: int


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The planner's inputs at one instant, plus what the status writers need."""

    now: float
    fleet: fleet_mod.Fleet
    capacity: capacity_mod.CapacityLedger
    energy: energy_mod.EnergyLedger
    ready: np.ndarray
    not_ready_reason: tuple[str, ...]
    queue: tuple[demand_mod.JobDemand, ...]
    invalid: tuple[tuple[Key, str, str], ...]  # (job, field, message) not yet marked Invalid
    usage: tuple[PoolUsage, ...]
    truncated: int = 0  # queued jobs left out of `queue` by operator.max_jobs_per_cycle


class Cache:
    """Mirror of centers, nodes, pods, ComputeJobs and Suanli's batch Jobs."""

    def __init__(self, settings: settings_mod.Settings | None = None):
        self.settings = settings or settings_mod.Settings()
        self.centers: dict[str, objects.ComputeCenter] = {}
        self.center_raw: dict[str, dict[str, Any]] = {}
        self.center_errors: dict[str, str] = {}
        self.nodes: dict[str, kobj.NodeInfo] = {}
        self.pods: dict[Key, kobj.PodInfo] = {}
        self.pods_by_job: dict[Key, set[Key]] = {}  # (namespace, job label) -> pods
        self.jobs: dict[Key, JobRecord] = {}
        self.workloads: dict[Key, kobj.WorkloadInfo] = {}  # by (namespace, job label)
        self.assumed: dict[Key, Binding] = {}  # bound by this process, status maybe not seen yet
        self._fleet: fleet_mod.Fleet | None = None
        self._fleet_regions: frozenset[str] = frozenset()

    # --- centers ----------------------------------------------------------------------

    def upsert_center(self, raw: Mapping[str, Any]) -> None:
        name = kobj.key_of(raw)[1]
        self.center_raw[name] = dict(raw)
        try:
            parsed = manifests.parse_object({k: v for k, v in raw.items() if k != "status"}, "API")
        except manifests.InvalidManifests as exc:
            self.center_errors[name] = str(exc.errors[0]) if exc.errors else str(exc)
            self.centers.pop(name, None)
            self._fleet = None
            return
        self.center_errors.pop(name, None)
        assert isinstance(parsed, objects.ComputeCenter)
        old = self.centers.get(name)
        if old is None or old.spec != parsed.spec:
            self._fleet = None
        self.centers[name] = parsed

    def delete_center(self, name: str) -> None:
        self.centers.pop(name, None)
        self.center_raw.pop(name, None)
        self.center_errors.pop(name, None)
        self._fleet = None

    # --- nodes and pods ---------------------------------------------------------------

    def upsert_node(self, raw: Mapping[str, Any]) -> bool:
        """Returns True when the change can matter for capacity."""
        info = kobj.node_info(raw)
        old = self.nodes.get(info.name)
        self.nodes[info.name] = info
        return old != info

    def delete_node(self, name: str) -> bool:
        return self.nodes.pop(name, None) is not None

    def upsert_pod(self, raw: Mapping[str, Any]) -> kobj.PodInfo | None:
        if not kobj.pod_relevant(raw):
            return None
        info = kobj.pod_info(raw)
        self.pods[info.key] = info
        if info.job_key is not None:
            self.pods_by_job.setdefault(info.job_key, set()).add(info.key)
        return info

    def delete_pod(self, key: Key) -> kobj.PodInfo | None:
        info = self.pods.pop(key, None)
        if info is not None and info.job_key is not None:
            members = self.pods_by_job.get(info.job_key)
            if members is not None:
                members.discard(key)
                if not members:
                    del self.pods_by_job[info.job_key]
        return info

    def job_pods(self, record: JobRecord) -> list[kobj.PodInfo]:
        keys = self.pods_by_job.get((record.key[0], record.label), set())
        return [self.pods[k] for k in sorted(keys) if k in self.pods]

    # --- ComputeJobs and their workloads ----------------------------------------------

    def upsert_job(self, raw: Mapping[str, Any], created_default: float) -> JobRecord:
        raw = dict(raw)
        key = kobj.key_of(raw)
        old = self.jobs.get(key)
        meta = raw.get("metadata") or {}
        if old is not None and old.uid == meta.get("uid") and _older(meta, old.raw):
            return old  # a LIST taken before the event we already have (startup race)
        if old is not None and old.generation == meta.get("generation") and old.uid == meta.get("uid"):
            old.raw = raw  # same spec: keep the parsed object and demand
            if old.phase in BOUND_PHASES | DONE_PHASES:
                self.assumed.pop(key, None)  # the status carries the binding now
            return old
        created = kobj.parse_time(meta.get("creationTimestamp")) or created_default
        try:
            parsed = manifests.parse_object({k: v for k, v in raw.items() if k != "status"}, "API")
            assert isinstance(parsed, objects.ComputeJob)
            record = JobRecord(key=key, raw=raw, obj=parsed, parse_error=None, created=created)
            record.demand = demand_mod.from_job(parsed, self.settings.scoring.default_runtime_seconds, created)
            regions = {parsed.spec.data.region, *parsed.spec.data.allowed_regions} - {None}
            if not regions <= self._fleet_regions:
                self._fleet = None
        except manifests.InvalidManifests as exc:
            first = exc.errors[0] if exc.errors else None
            problem = (first.field or "spec", first.message) if first else ("spec", str(exc))
            record = JobRecord(key=key, raw=raw, obj=None, parse_error=problem, created=created)
        self.jobs[key] = record
        if record.phase in BOUND_PHASES | DONE_PHASES:
            self.assumed.pop(key, None)  # the status carries the binding now
        return record

    def delete_job(self, key: Key) -> JobRecord | None:
        self.assumed.pop(key, None)
        return self.jobs.pop(key, None)

    def upsert_workload(self, raw: Mapping[str, Any]) -> kobj.WorkloadInfo:
        info = kobj.workload_info(raw)
        self.workloads[(info.key[0], info.job_label)] = info
        return info

    def delete_workload(self, raw: Mapping[str, Any]) -> None:
        info = kobj.workload_info(raw)
        self.workloads.pop((info.key[0], info.job_label), None)

    def workload_of(self, record: JobRecord) -> kobj.WorkloadInfo | None:
        return self.workloads.get((record.key[0], record.label))

    # --- binding ------------------------------------------------------------------------

    def assume(self, key: Key, binding: Binding) -> None:
        """Record a decision before it is written, so the next snapshot already counts it."""
        self.assumed[key] = binding

    def forget(self, key: Key) -> None:
        """Undo an assumption (the write failed); the job is planned again."""
        self.assumed.pop(key, None)

    def binding(self, record: JobRecord) -> Binding | None:
        return self.assumed.get(record.key) or binding_from_status(record)

    def finished(self, record: JobRecord) -> bool:
        if record.phase in DONE_PHASES:
            return True
        workload = self.workload_of(record)
        return workload is not None and workload.finished

    def schedulable(self, record: JobRecord) -> bool:
        """Waiting for a decision: valid, not bound (in memory or in its status), not finished."""
        if record.obj is None or record.demand is None or record.key in self.assumed:
            return False
        return record.phase not in BOUND_PHASES | DONE_PHASES | {"Invalid"}

    def queue_length(self) -> int:
        return sum(1 for r in self.jobs.values() if self.schedulable(r))

    # --- the snapshot -------------------------------------------------------------------

    def fleet(self) -> fleet_mod.Fleet:
        if self._fleet is None:
            regions = {
                r
                for rec in self.jobs.values()
                if rec.obj is not None
                for r in (rec.obj.spec.data.region, *rec.obj.spec.data.allowed_regions)
                if r
            }
            centers = [self.centers[n] for n in sorted(self.centers)]
            self._fleet = fleet_mod.build(centers, extra_regions=sorted(regions))
            self._fleet_regions = frozenset(regions)
        return self._fleet

    def _pool_specs(self, fleet: fleet_mod.Fleet) -> list[Any]:
        specs = []
        for info in fleet.pools:
            center = self.centers[info.center]
            specs.append(next(p for p in center.spec.pools if p.name == info.pool))
        return specs

    def pool_nodes(self, fleet: fleet_mod.Fleet) -> list[list[kobj.NodeInfo]]:
        """Per pool: the usable nodes matching its selector, by name."""
        specs = self._pool_specs(fleet)
        out: list[list[kobj.NodeInfo]] = [[] for _ in fleet.pools]
        for name in sorted(self.nodes):
            node = self.nodes[name]
            if not node.usable:
                continue
            for p, spec in enumerate(specs):
                if spec.node_selector and node.matches(spec.node_selector):
                    out[p].append(node)
        return out

    def _node_allocated(self) -> dict[tuple[str, str], int]:
        used: dict[tuple[str, str], int] = {}
        for pod in self.pods.values():
            if pod.terminated or pod.node is None:
                continue
            for resource, amount in pod.requests.items():
                used[(pod.node, resource)] = used.get((pod.node, resource), 0) + amount
        return used

    def _missing_replicas(self, record: JobRecord, binding: Binding) -> int:
        seen = sum(1 for pod in self.job_pods(record) if pod.node is not None or pod.terminated)
        return max(0, binding.replicas - seen)

    def snapshot(self, now: float) -> Snapshot:
        fleet = self.fleet()
        nodes = self.pool_nodes(fleet)
        used = self._node_allocated()
        free_by_pool, cap_by_pool = [], []
        for info, members in zip(fleet.pools, nodes, strict=True):
            caps = [min(n.allocatable.get(info.resource_name, 0), capacity_mod.MAX_PER_NODE) for n in members]
            frees = [max(0, c - used.get((n.name, info.resource_name), 0)) for n, c in zip(members, caps, strict=True)]
            cap_by_pool.append(caps)
            free_by_pool.append(frees)
        capacity = capacity_mod.CapacityLedger(free_by_pool, cap_by_pool)

        energy = energy_mod.EnergyLedger((c.name, c.zone, c.budget_kwh, c.budget_period) for c in fleet.centers)
        energy.roll(now)
        known_centers = {c.name for c in fleet.centers}
        queue: list[demand_mod.JobDemand] = []
        invalid: list[tuple[Key, str, str]] = []
        models = [p.model for p in fleet.pools]
        for key in sorted(self.jobs):
            record = self.jobs[key]
            binding = self.binding(record)
            if record.obj is None or record.parse_error is not None:
                if record.phase != "Invalid" and record.parse_error is not None:
                    invalid.append((key, *record.parse_error))
                continue
            if binding is not None and binding.center in known_centers:
                self._account(record, binding, fleet, capacity, energy, now)
                continue
            if not self.schedulable(record):
                continue
            problem = validation.invalid_field(record.obj, models)
            if problem is not None:
                invalid.append((key, *problem))
                continue
            assert record.demand is not None
            queue.append(record.demand)

        ready = np.zeros(fleet.size, dtype=np.bool_)
        reasons: list[str] = []
        usage: list[PoolUsage] = []
        for p, info in enumerate(fleet.pools):
            center = self.centers[info.center]
            spec_pool = self._pool_specs(fleet)[p]
            if center.spec.cluster is not None:
                reasons.append(UNSUPPORTED_MEMBER)
            elif not nodes[p]:
                reasons.append(
                    f"no Ready, schedulable node has the labels {dict(spec_pool.node_selector)} of pool {info.pool}"
                )
            elif capacity.capacity(p) == 0:
                reasons.append(f"the pool's nodes offer no {info.resource_name}")
            else:
                reasons.append("")
                ready[p] = True
            cap, free = capacity.capacity(p), capacity.free(p)
            usage.append(
                PoolUsage(info.center, info.pool, cap, cap - free, free, len(nodes[p]), info.expected_nodes)
            )
        # Cut after queue order (priority, then arrival), never by name: the head of the queue is planned.
        ordered = queue_mod.ordered(queue)
        limit = self.settings.operator.max_jobs_per_cycle
        return Snapshot(
            now=now,
            fleet=fleet,
            capacity=capacity,
            energy=energy,
            ready=ready,
            not_ready_reason=tuple(reasons),
            queue=tuple(ordered[:limit]),
            invalid=tuple(invalid),
            usage=tuple(usage),
            truncated=max(0, len(ordered) - limit),
        )

    def _account(
        self,
        record: JobRecord,
        binding: Binding,
        fleet: fleet_mod.Fleet,
        capacity: capacity_mod.CapacityLedger,
        energy: energy_mod.EnergyLedger,
        now: float,
    ) -> None:
        """Count a bound job: assumed accelerators for pods not seen yet, its energy.

        Energy, rebuilt from statuses alone (so a restart gets the same numbers): a job whose status
        says Succeeded/Failed counts its settled `status.energy.kWh` as used when its completionTime
        falls in the center's current period; a bound or running job reserves its estimate; a job
        whose workload finished but whose settlement is not written yet (measuring, or the write in
        flight) keeps its reservation, so the budget never looks free in between.
        """
        if record.phase in DONE_PHASES:
            report = record.status.get("energy") or {}
            finished_at = kobj.parse_time(record.status.get("completionTime")) or now
            used = float(report.get("kWh") or 0.0)
            account = energy.account(binding.center)
            if used > 0 and finished_at >= account.period_start:
                energy.reserve(binding.center, record.key, 0.0)
                energy.settle(record.key, used, float(report.get("carbonKg") or 0.0))
            return
        if self.finished(record):
            if math.isfinite(binding.energy_kwh) and binding.energy_kwh >= 0:
                energy.reserve(binding.center, record.key, binding.energy_kwh)
            return
        pool = fleet.pool_index(binding.center, binding.pool)
        if pool is not None:
            for _ in range(self._missing_replicas(record, binding)):
                try:
                    capacity.reserve(pool, 1, binding.count)
                except capacity_mod.CapacityError:
                    break  # the nodes are gone or full of others' pods: nothing left to hold
        if math.isfinite(binding.energy_kwh) and binding.energy_kwh >= 0:
            energy.reserve(binding.center, record.key, binding.energy_kwh)

    def usage_by_center(self, snapshot: Snapshot) -> dict[str, list[PoolUsage]]:
        out: dict[str, list[PoolUsage]] = {}
        for u in snapshot.usage:
            out.setdefault(u.center, []).append(u)
        return out

    def pool_spec(self, center: str, pool: str) -> Any:
        return next(p for p in self.centers[center].spec.pools if p.name == pool)


def _older(meta: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """True if `meta` is from an older resourceVersion than `current` (etcd revisions are integers;
    anything else compares as not older)."""
    try:
        return int(meta.get("resourceVersion") or 0) < int((current.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return False


def phase_of(record: JobRecord) -> str:
    return record.phase if record.phase in status_api.PHASES else "Pending"
