"""What the operator keeps of each ComputeJob: its record (spec, parsed demand, the status it reads)
and the binding that status records.

Pure data: no I/O, no clock. Keys are `(namespace, name)`; a record also knows its uid, and
everything keyed by a job's name checks the uid before trusting what it finds (a ComputeJob
deleted and recreated under the same name is another job).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

from suanli.kube import objects as kobj
from suanli.kube import settled as settled_mod
from suanli.kube import workloads
from suanli.scoring import demand as demand_mod

Key = kobj.Key
BOUND_PHASES = frozenset({"Bound", "Running"})
DONE_PHASES = frozenset({"Succeeded", "Failed"})
PLACED_PHASES = BOUND_PHASES | DONE_PHASES
NOT_SCHEDULABLE_PHASES = PLACED_PHASES | {"Invalid"}


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
    attempt: int = 0  # the job's status.attempts when it was bound: its Job and pods carry it as a label
    nodes: tuple[str, ...] = ()  # node of each replica, by completion index (status.binding.nodes); () in old statuses
    # The member center whose cluster runs it (status.binding.cluster); "": the operator's own. `nodes`
    # are qualified with it (`objects.qualify`), as the cache names a member's nodes.
    cluster: str = ""
    queue: str = ""  # the ComputeQueue that admitted it (status.queue): its quota holds the job


# What the cache keeps of a ComputeJob's status: what accounting, progress and "did it change" need.
# Candidates, rejections and conditions (most of a status's bytes) are written, never read back.
STATUS_KEPT = (
    "phase", "message", "plannedStart", "observedGeneration", "binding", "estimates", "boundTime",
    "startTime", "completionTime", "energy", "workloadRef", "attempts", "requeueAt", "queue", "endedAttempts",
    "suspensions", "requeues", "retries",
)
META_KEPT = ("name", "namespace", "uid", "generation", "resourceVersion", "creationTimestamp", "deletionTimestamp",
             "labels", "annotations")


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
    def deleting(self) -> bool:
        """Its deletion has begun (finalizers, or foreground deletion waiting for its Job): it is never
        bound again, and no Job is made for it."""
        return bool(self.raw["metadata"].get("deletionTimestamp"))

    @property
    def generation(self) -> int | None:
        value = self.raw["metadata"].get("generation")
        return int(value) if value is not None else None

    @property
    def suspended(self) -> bool:
        """spec.suspend: the job is to hold nothing and run nowhere until it is set false again."""
        return bool((self.raw.get("spec") or {}).get("suspend"))

    @property
    def retry_policy(self) -> tuple[int, tuple[int, ...]]:
        """spec.retry: (maxAttempts, onExitCodes); (1, ()) without it (no retry)."""
        retry = (self.raw.get("spec") or {}).get("retry") or {}
        try:
            return max(1, int(retry.get("maxAttempts") or 1)), tuple(int(c) for c in retry.get("onExitCodes") or ())
        except (TypeError, ValueError):
            return 1, ()

    @property
    def suspensions(self) -> int:
        """Times the job was suspended while bound (they are attempts ended, but not counted against the limit)."""
        return self._count("suspensions")

    @functools.cached_property
    def label(self) -> str:
        return workloads.label_value(self.key[1])

    def _count(self, key: str) -> int:
        try:
            return max(0, int(self.status.get(key) or 0))
        except (TypeError, ValueError):
            return 0

    def _legacy_attempts(self) -> int | None:
        """The count a status written before status.attempts listed the attempts has there (None otherwise)."""
        legacy = self.status.get("attempts")
        return max(0, legacy) if isinstance(legacy, int) and not isinstance(legacy, bool) else None

    @property
    def attempts(self) -> int:
        """Bound attempts that ended (requeued, retried, suspended): also the number of the current attempt."""
        legacy = self._legacy_attempts()
        return legacy if legacy is not None else self.requeues + self.retries + self.suspensions

    @property
    def requeues(self) -> int:
        """Attempts the operator ended and requeued: what operator.requeue_limit counts."""
        legacy = self._legacy_attempts()
        return max(0, legacy - self.suspensions) if legacy is not None else self._count("requeues")

    @property
    def retries(self) -> int:
        """Runs that failed with an exit code spec.retry retries."""
        return self._count("retries")

    @property
    def history(self) -> list[dict[str, Any]]:
        """status.attempts: each bound attempt that ended (none in a status written before it listed them)."""
        value = self.status.get("attempts")
        return [dict(a) for a in value if isinstance(a, dict)] if isinstance(value, list) else []

    @property
    def requeue_at(self) -> float | None:
        """Not planned before this epoch (a requeued job's backoff)."""
        return kobj.parse_time(self.status.get("requeueAt"))

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
    cluster = str(b.get("cluster") or "")
    return Binding(
        center=b.get("center", ""),
        pool=b.get("pool", ""),
        accelerator_type=b.get("acceleratorType", ""),
        replicas=record.demand.replicas,
        count=record.demand.count,
        energy_kwh=float(est.get("energyKWh") or 0.0),
        carbon_kg=float(est.get("carbonKg") or 0.0),
        bound_epoch=kobj.parse_time(status.get("boundTime")),
        attempt=record.attempts,
        nodes=tuple(kobj.qualify(cluster, n) for n in _node_names(b.get("nodes"), record.demand.replicas)),
        cluster=cluster,
        queue=str(status.get("queue") or ""),
    )


def _node_names(value: Any, replicas: int) -> tuple[str, ...]:
    """`status.binding.nodes` if it names a node for every replica, else () (a status written before the
    field existed, or damaged: the job is then accounted and released as before, without pinning)."""
    if not isinstance(value, list) or len(value) != replicas or not all(isinstance(n, str) and n for n in value):
        return ()
    return tuple(value)


def settlements(record: JobRecord) -> list[tuple[str, str | None, float, settled_mod.Amounts]]:
    """(center, queue, when, amounts) of everything the job settled: each attempt that ended without
    finishing (status.endedAttempts; unreadable entries skipped) and, once it is done, its own run
    (status.energy; cost at the estimate's price per kWh; accelerator-hours over startTime to
    completionTime). `when` is +inf when the status has no time: the period it is read in."""
    out = []
    for a in record.status.get("endedAttempts") or []:
        if not isinstance(a, Mapping):
            continue
        try:
            amounts = settled_mod.Amounts(float(a.get("kWh") or 0.0), float(a.get("carbonKg") or 0.0),
                                          float(a.get("cost") or 0.0), float(a.get("acceleratorHours") or 0.0))
        except (TypeError, ValueError):
            continue
        ended = kobj.parse_time(a.get("ended"))
        out.append((str(a.get("center") or ""), a.get("queue") or None, ended if ended is not None else math.inf,
                    amounts))
    binding = record.recorded
    if record.phase in DONE_PHASES and binding is not None:
        report = record.status.get("energy") or {}
        kwh = float(report.get("kWh") or 0.0)
        finished = kobj.parse_time(record.status.get("completionTime"))
        started = kobj.parse_time(record.status.get("startTime"))
        hours = (finished - started) / 3600 if finished is not None and started is not None else 0.0
        out.append((binding.center, binding.queue, finished if finished is not None else math.inf, settled_mod.Amounts(
            kwh, float(report.get("carbonKg") or 0.0), kwh * price_per_kwh(record.status),
            max(0.0, hours) * binding.replicas * binding.count)))
    return out


def price_per_kwh(status: Mapping[str, Any]) -> float:
    """The electricity price the binding's estimate implies (estimated cost / estimated kWh); 0 without one."""
    est = status.get("estimates") or {}
    try:
        kwh, cost = float(est.get("energyKWh") or 0.0), float(est.get("cost") or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return cost / kwh if kwh > 0 else 0.0
