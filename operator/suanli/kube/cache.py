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

import collections
import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from suanli import settings as settings_mod
from suanli.api import manifests, objects
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
PLACED_PHASES = BOUND_PHASES | DONE_PHASES
NOT_SCHEDULABLE_PHASES = PLACED_PHASES | {"Invalid"}
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


# What the cache keeps of a ComputeJob's status: what accounting, progress and "did it change" need.
# Candidates, rejections and conditions (most of a status's bytes) are written, never read back.
STATUS_KEPT = (
    "phase", "message", "plannedStart", "observedGeneration", "binding", "estimates", "boundTime",
    "startTime", "completionTime", "energy", "workloadRef",
)
META_KEPT = ("name", "namespace", "uid", "generation", "resourceVersion", "creationTimestamp", "labels", "annotations")


@dataclasses.dataclass
class JobRecord:
    """One ComputeJob as the operator knows it: its spec and metadata (what the workload is built
    from), the parsed spec, and the part of its status the operator reads."""

    key: Key
    raw: dict[str, Any]  # apiVersion, kind, metadata (trimmed) and spec; no status
    demand: demand_mod.JobDemand | None  # the parsed spec; None when it does not validate
    parse_error: tuple[str, str] | None  # (field, message) when the spec does not validate
    created: float
    status: dict[str, Any] = dataclasses.field(default_factory=dict)
    phase: str = "Pending"
    recorded: Binding | None = None  # the binding its status records (Bound, Running or finished)

    @property
    def uid(self) -> str:
        return str(self.raw["metadata"].get("uid") or "")

    @property
    def generation(self) -> int | None:
        value = self.raw["metadata"].get("generation")
        return int(value) if value is not None else None

    @functools.cached_property
    def label(self) -> str:
        return workloads.label_value(self.key[1])

    def set_status(self, status: Mapping[str, Any] | None) -> None:
        self.status = {k: status[k] for k in STATUS_KEPT if k in status} if status else {}
        phase = str(self.status.get("phase") or "Pending")
        if phase == "Invalid" and self.status.get("observedGeneration") != self.generation:
            phase = "Pending"  # the spec changed since it was found invalid: look again
        self.phase = phase
        self.recorded = binding_from_status(self)


def trimmed(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A ComputeJob without status and without the metadata the operator never reads (managedFields...)."""
    meta = raw.get("metadata") or {}
    return {
        "apiVersion": raw.get("apiVersion"),
        "kind": raw.get("kind"),
        "metadata": {k: meta[k] for k in META_KEPT if k in meta},
        "spec": raw.get("spec"),
    }


def binding_from_status(record: JobRecord) -> Binding | None:
    status = record.status
    b = status.get("binding")
    if record.phase not in PLACED_PHASES or not b or record.demand is None:
        return None
    est = status.get("estimates") or {}
    return Binding(
        center=b.get("center", ""),
        pool=b.get("pool", ""),
        accelerator_type=b.get("acceleratorType", ""),
        replicas=record.demand.replicas,
        count=record.demand.count,
        energy_kwh=float(est.get("energyKWh") or 0.0),
        carbon_kg=float(est.get("carbonKg") or 0.0),
        bound_epoch=kobj.parse_time(status.get("boundTime")),
    )


@dataclasses.dataclass(frozen=True)
class Hold:
    """What one bound, unfinished job holds: accelerators for its replicas whose pods are not on a
    node yet (the pods that are count themselves), and its estimated energy."""

    center: str
    pool: str
    count: int
    missing: int
    kwh: float


class SettledEnergy:
    """Energy settled by finished jobs, per center, summed over the center's current period.

    Finished jobs are most of the jobs a long-running operator knows: the scheduler must not walk
    them every cycle. Sums are kept as jobs finish or go away and recomputed only when a center's
    period starts anew (a day, week or month)."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[Key, tuple[float, float, float]]] = {}  # center -> job -> (at, kWh, kg)
        self._where: dict[Key, str] = {}
        self._sums: dict[str, tuple[float, float, float]] = {}  # center -> (period start, kWh, kg)

    def put(self, key: Key, center: str, finished_at: float, kwh: float, carbon: float) -> None:
        self.drop(key)
        if kwh <= 0 or not math.isfinite(kwh):
            return
        self._entries.setdefault(center, {})[key] = (finished_at, kwh, carbon)
        self._where[key] = center
        self._adjust(center, finished_at, kwh, carbon)

    def drop(self, key: Key) -> None:
        center = self._where.pop(key, None)
        if center is None:
            return
        finished_at, kwh, carbon = self._entries[center].pop(key)
        self._adjust(center, finished_at, -kwh, -carbon)

    def _adjust(self, center: str, finished_at: float, kwh: float, carbon: float) -> None:
        summed = self._sums.get(center)
        if summed is not None and finished_at >= summed[0]:
            self._sums[center] = (summed[0], max(0.0, summed[1] + kwh), max(0.0, summed[2] + carbon))

    def total(self, center: str, period_start: float) -> tuple[float, float]:
        """(kWh, kg CO2e) settled by jobs that finished at or after `period_start`."""
        summed = self._sums.get(center)
        if summed is None or summed[0] != period_start:
            entries = self._entries.get(center, {}).values()
            summed = (
                period_start,
                math.fsum(e[1] for e in entries if e[0] >= period_start),
                math.fsum(e[2] for e in entries if e[0] >= period_start),
            )
            self._sums[center] = summed
        return summed[1], summed[2]


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
    """Mirror of centers, nodes, pods, ComputeJobs and Suanli's batch Jobs.

    Kept so that a snapshot costs O(pools + nodes + jobs not finished), not O(everything ever
    seen): accelerators in use per node are summed as pods come and go, finished jobs' energy is
    summed as they finish (`SettledEnergy`), and only unfinished jobs (`active`) are walked.
    """

    def __init__(self, settings: settings_mod.Settings | None = None):
        self.settings = settings or settings_mod.Settings()
        self.centers: dict[str, objects.ComputeCenter] = {}
        self.center_raw: dict[str, dict[str, Any]] = {}
        self.center_errors: dict[str, str] = {}
        self.nodes: dict[str, kobj.NodeInfo] = {}
        self.pods: dict[Key, kobj.PodInfo] = {}
        self.pods_by_job: dict[Key, set[Key]] = {}  # (namespace, job label) -> pods
        self.node_used: dict[tuple[str, str], int] = {}  # (node, resource) -> requested by non-terminated pods
        self.jobs: dict[Key, JobRecord] = {}
        self.active: set[Key] = set()  # jobs neither finished nor Invalid
        self.by_label: dict[Key, Key] = {}  # (namespace, job label) -> job
        self.phases: collections.Counter[str] = collections.Counter()  # jobs by their status phase
        # Bound, unfinished jobs: what each holds, and the sums a snapshot needs. Recomputed only for
        # jobs something happened to (`_dirty`: their status, pods or workload changed).
        self.holds: dict[Key, Hold] = {}
        self.pending: dict[tuple[str, str, int], int] = {}  # (center, pool, count) -> replicas not placed
        self.held_kwh: dict[str, dict[Key, float]] = {}  # center -> job -> estimated kWh
        self._dirty: set[Key] = set()
        self._waiting: set[Key] = set()  # active jobs that hold nothing (kept by `_refresh_holds`)
        self.settled = SettledEnergy()
        self.workloads: dict[Key, kobj.WorkloadInfo] = {}  # by (namespace, job label)
        self.assumed: dict[Key, Binding] = {}  # bound by this process, status maybe not seen yet
        self._fleet: fleet_mod.Fleet | None = None
        self._fleet_regions: frozenset[str] = frozenset()
        self._members: tuple[fleet_mod.Fleet, list[Any], list[list[kobj.NodeInfo]]] | None = None

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
        if old != info:
            self._members = None
        return old != info

    def delete_node(self, name: str) -> bool:
        gone = self.nodes.pop(name, None) is not None
        if gone:
            self._members = None
        return gone

    def _count_pod(self, info: kobj.PodInfo, sign: int) -> None:
        if info.terminated or info.node is None:
            return
        for resource, amount in info.requests.items():
            slot = (info.node, resource)
            left = self.node_used.get(slot, 0) + sign * amount
            if left:
                self.node_used[slot] = left
            else:
                self.node_used.pop(slot, None)

    def upsert_pod(self, raw: Mapping[str, Any]) -> kobj.PodInfo | None:
        info = kobj.pod_info(raw)
        if not kobj.pod_info_relevant(info):
            return None
        old = self.pods.get(info.key)
        if old is not None:
            self._count_pod(old, -1)
        self._count_pod(info, +1)
        self.pods[info.key] = info
        if info.job_key is not None:
            self.pods_by_job.setdefault(info.job_key, set()).add(info.key)
            self._touch_label(info.job_key)
        return info

    def delete_pod(self, key: Key) -> kobj.PodInfo | None:
        info = self.pods.pop(key, None)
        if info is not None:
            self._count_pod(info, -1)
        if info is not None and info.job_key is not None:
            members = self.pods_by_job.get(info.job_key)
            if members is not None:
                members.discard(key)
                if not members:
                    del self.pods_by_job[info.job_key]
            self._touch_label(info.job_key)
        return info

    def _touch_label(self, label_key: Key) -> None:
        job = self.by_label.get(label_key)
        if job is not None:
            self._dirty.add(job)

    def record_for_label(self, label_key: Key) -> JobRecord | None:
        """The ComputeJob whose pods and Job carry this (namespace, suanli.io/job label)."""
        job = self.by_label.get(label_key)
        return self.jobs.get(job) if job is not None else None

    def job_pods(self, record: JobRecord) -> list[kobj.PodInfo]:
        keys = self.pods_by_job.get((record.key[0], record.label), set())
        return [self.pods[k] for k in sorted(keys) if k in self.pods]

    # --- ComputeJobs and their workloads ----------------------------------------------

    def upsert_job(self, raw: Mapping[str, Any], created_default: float) -> JobRecord:
        key = kobj.key_of(raw)
        old = self.jobs.get(key)
        meta = raw.get("metadata") or {}
        if old is not None and old.uid == meta.get("uid") and _older(meta, old.raw):
            return old  # a LIST taken before the event we already have (startup race)
        if old is not None:
            self.phases[old.phase] -= 1
        if old is not None and old.generation == meta.get("generation") and old.uid == meta.get("uid"):
            old.raw = trimmed(raw)  # same spec: keep the parsed object and demand
            record = old
        else:
            created = kobj.parse_time(meta.get("creationTimestamp")) or created_default
            try:
                parsed = manifests.parse_object({k: v for k, v in raw.items() if k != "status"}, "API")
                assert isinstance(parsed, objects.ComputeJob)
                # The parsed model is dropped once the demand is resolved: it is most of a record's memory.
                demand = demand_mod.from_job(parsed, self.settings.scoring.default_runtime_seconds, created)
                record = JobRecord(key=key, raw=trimmed(raw), demand=demand, parse_error=None, created=created)
                regions = {parsed.spec.data.region, *parsed.spec.data.allowed_regions} - {None}
                if not regions <= self._fleet_regions:
                    self._fleet = None
            except manifests.InvalidManifests as exc:
                first = exc.errors[0] if exc.errors else None
                problem = (first.field or "spec", first.message) if first else ("spec", str(exc))
                record = JobRecord(key=key, raw=trimmed(raw), demand=None, parse_error=problem, created=created)
            self.jobs[key] = record
        record.set_status(raw.get("status"))
        self.phases[record.phase] += 1
        self.by_label[(key[0], record.label)] = key
        if record.phase in PLACED_PHASES:
            self.assumed.pop(key, None)  # the status carries the binding now
        self._file(record)
        self._dirty.add(key)
        return record

    def _file(self, record: JobRecord) -> None:
        """Keep `active` and the settled energy in step with the record's phase."""
        key = record.key
        if record.phase in DONE_PHASES or record.phase == "Invalid":
            self.active.discard(key)
        else:
            self.active.add(key)
        binding = record.recorded
        if record.phase in DONE_PHASES and binding is not None:
            report = record.status.get("energy") or {}
            finished_at = kobj.parse_time(record.status.get("completionTime"))
            self.settled.put(
                key,
                binding.center,
                finished_at if finished_at is not None else math.inf,  # no time: the period it is read in
                float(report.get("kWh") or 0.0),
                float(report.get("carbonKg") or 0.0),
            )
        else:
            self.settled.drop(key)

    def delete_job(self, key: Key) -> JobRecord | None:
        self.assumed.pop(key, None)
        self.active.discard(key)
        self.settled.drop(key)
        self._dirty.add(key)
        record = self.jobs.pop(key, None)
        if record is not None:
            self.phases[record.phase] -= 1
            if self.by_label.get((key[0], record.label)) == key:
                del self.by_label[(key[0], record.label)]
        return record

    def upsert_workload(self, raw: Mapping[str, Any]) -> kobj.WorkloadInfo:
        info = kobj.workload_info(raw)
        self.workloads[(info.key[0], info.job_label)] = info
        self._touch_label((info.key[0], info.job_label))
        return info

    def delete_workload(self, raw: Mapping[str, Any]) -> None:
        info = kobj.workload_info(raw)
        self.workloads.pop((info.key[0], info.job_label), None)
        self._touch_label((info.key[0], info.job_label))

    def workload_of(self, record: JobRecord) -> kobj.WorkloadInfo | None:
        return self.workloads.get((record.key[0], record.label))

    # --- binding ------------------------------------------------------------------------

    def assume(self, key: Key, binding: Binding) -> None:
        """Record a decision before it is written, so the next snapshot already counts it."""
        self.assumed[key] = binding
        self._dirty.add(key)

    def forget(self, key: Key) -> None:
        """Undo an assumption (the write failed); the job is planned again."""
        self.assumed.pop(key, None)
        self._dirty.add(key)

    def binding(self, record: JobRecord) -> Binding | None:
        return self.assumed.get(record.key) or record.recorded

    def finished(self, record: JobRecord) -> bool:
        if record.phase in DONE_PHASES:
            return True
        workload = self.workload_of(record)
        return workload is not None and workload.finished

    def schedulable(self, record: JobRecord) -> bool:
        """Waiting for a decision: valid, not bound (in memory or in its status), not finished."""
        if record.demand is None or record.key in self.assumed:
            return False
        return record.phase not in NOT_SCHEDULABLE_PHASES

    def phase_counts(self) -> dict[str, int]:
        """Jobs per phase as a person reads them (a job bound by this process a moment ago is Bound)."""
        counts = collections.Counter({phase: n for phase, n in self.phases.items() if n})
        for key in self.assumed:
            record = self.jobs.get(key)
            if record is not None and record.phase not in PLACED_PHASES:
                counts[record.phase] -= 1
                counts["Bound"] += 1
        return dict(counts)

    def oldest_queued(self) -> float | None:
        """Creation time of the longest-waiting Queued job."""
        times = [r.created for k in self.waiting() if (r := self.jobs[k]).phase == "Queued" and self.schedulable(r)]
        return min(times, default=None)

    # --- the snapshot -------------------------------------------------------------------

    def fleet(self) -> fleet_mod.Fleet:
        if self._fleet is None:
            regions = {
                r
                for rec in self.jobs.values()
                if rec.demand is not None
                for r in (rec.demand.data_region, *rec.demand.allowed_regions)
                if r
            }
            centers = [self.centers[n] for n in sorted(self.centers)]
            self._fleet = fleet_mod.build(centers, extra_regions=sorted(regions))
            self._fleet_regions = frozenset(regions)
            self._members = None
        return self._fleet

    def _pool_members(self, fleet: fleet_mod.Fleet) -> tuple[list[Any], list[list[kobj.NodeInfo]]]:
        """Per pool of `fleet`: its spec and the usable nodes matching its selector, by name (kept
        until a node or the fleet changes)."""
        if self._members is None or self._members[0] is not fleet:
            specs = [
                next(p for p in self.centers[info.center].spec.pools if p.name == info.pool) for info in fleet.pools
            ]
            members: list[list[kobj.NodeInfo]] = [[] for _ in fleet.pools]
            for name in sorted(self.nodes):
                node = self.nodes[name]
                if not node.usable:
                    continue
                for p, spec in enumerate(specs):
                    if spec.node_selector and node.matches(spec.node_selector):
                        members[p].append(node)
            self._members = (fleet, specs, members)
        return self._members[1], self._members[2]

    def _missing_replicas(self, record: JobRecord, binding: Binding) -> int:
        keys = self.pods_by_job.get((record.key[0], record.label), ())
        seen = sum(1 for k in keys if (pod := self.pods.get(k)) is not None and (pod.node is not None or pod.terminated))
        return max(0, binding.replicas - seen)

    def waiting(self) -> frozenset[Key]:
        """Unfinished jobs that hold nothing: the queue, and jobs whose spec is invalid."""
        self._refresh_holds()
        return frozenset(self._waiting)

    def _hold_of(self, key: Key) -> Hold | None:
        """What a job holds now (None unless it is bound and not finished).

        Energy, rebuilt from statuses alone (so a restart gets the same numbers): a bound or running
        job reserves its estimate; a job whose workload finished but whose settlement is not written
        yet (measuring, or the write in flight) keeps its reservation, so the budget never looks free
        in between; a job whose status says Succeeded/Failed counts its settled kWh as used
        (`SettledEnergy`), not here.
        """
        record = self.jobs.get(key)
        if record is None or record.demand is None or key not in self.active:
            return None
        binding = self.binding(record)
        if binding is None:
            return None
        missing = 0 if self.finished(record) else self._missing_replicas(record, binding)
        kwh = binding.energy_kwh if math.isfinite(binding.energy_kwh) and binding.energy_kwh >= 0 else 0.0
        return Hold(binding.center, binding.pool, binding.count, missing, kwh)

    def _refresh_holds(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            new = self._hold_of(key)
            if new is None and key in self.active:
                self._waiting.add(key)
            else:
                self._waiting.discard(key)
            old = self.holds.pop(key, None)
            if old == new:
                if new is not None:
                    self.holds[key] = new
                continue
            if old is not None:
                slot = (old.center, old.pool, old.count)
                left = self.pending.get(slot, 0) - old.missing
                if left > 0:
                    self.pending[slot] = left
                else:
                    self.pending.pop(slot, None)
                self.held_kwh[old.center].pop(key, None)
            if new is not None:
                self.holds[key] = new
                if new.missing:
                    slot = (new.center, new.pool, new.count)
                    self.pending[slot] = self.pending.get(slot, 0) + new.missing
                self.held_kwh.setdefault(new.center, {})[key] = new.kwh

    def snapshot(self, now: float) -> Snapshot:
        fleet = self.fleet()
        specs, nodes = self._pool_members(fleet)
        used = self.node_used
        free_by_pool, cap_by_pool = [], []
        for info, members in zip(fleet.pools, nodes, strict=True):
            caps = [min(n.allocatable.get(info.resource_name, 0), capacity_mod.MAX_PER_NODE) for n in members]
            frees = [max(0, c - used.get((n.name, info.resource_name), 0)) for n, c in zip(members, caps, strict=True)]
            cap_by_pool.append(caps)
            free_by_pool.append(frees)
        capacity = capacity_mod.CapacityLedger(free_by_pool, cap_by_pool)

        energy = energy_mod.EnergyLedger((c.name, c.zone, c.budget_kwh, c.budget_period) for c in fleet.centers)
        energy.roll(now)
        for account in energy.accounts():
            kwh, carbon = self.settled.total(account.name, account.period_start)
            if kwh > 0:
                energy.add_used(account.name, kwh, carbon)
        waiting = self.waiting()
        for account in energy.accounts():
            held = self.held_kwh.get(account.name)
            if held:
                energy.hold(account.name, sum(held.values()))
        queue: list[demand_mod.JobDemand] = []
        invalid: list[tuple[Key, str, str]] = []
        models = [p.model for p in fleet.pools]
        for key in sorted(waiting):
            record = self.jobs[key]
            if record.demand is None or record.parse_error is not None:
                if record.phase != "Invalid" and record.parse_error is not None:
                    invalid.append((key, *record.parse_error))
                continue
            if not self.schedulable(record):
                continue
            problem = validation.invalid_models(record.demand.models, models)
            if problem is not None:
                invalid.append((key, *problem))
                continue
            queue.append(record.demand)
        # Replicas bound but not on a node yet, bigger ones first (the ones fragmentation would strand);
        # what does not fit was placed on nodes that are gone or full of others' pods: nothing to hold.
        for (center_name, pool_name, count), replicas in sorted(
            self.pending.items(), key=lambda item: (-item[0][2], item[0])
        ):
            pool = fleet.pool_index(center_name, pool_name)
            if pool is not None:
                capacity.fill(pool, replicas, count)

        ready = np.zeros(fleet.size, dtype=np.bool_)
        reasons: list[str] = []
        usage: list[PoolUsage] = []
        for p, info in enumerate(fleet.pools):
            center = self.centers[info.center]
            if center.spec.cluster is not None:
                reasons.append(UNSUPPORTED_MEMBER)
            elif not nodes[p]:
                reasons.append(
                    f"no Ready, schedulable node has the labels {dict(specs[p].node_selector)} of pool {info.pool}"
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
