"""What a job asks for, as plain values (`JobDemand`) and as arrays over many jobs (`JobBatch`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from suanli.api import objects
from suanli.catalog import accelerators
from suanli.scoring import fleet as fleet_mod
from suanli.scoring import profiles

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclasses.dataclass(frozen=True)
class JobDemand:
    """Everything the core needs from a ComputeJob, resolved (defaults applied, units in names)."""

    namespace: str
    name: str
    replicas: int
    count: int
    types: tuple[str, ...]  # accepted types that also have an image
    models: tuple[str, ...]  # allow-list; empty = any
    min_memory_gib: float
    precision: str
    runtime_seconds: float  # on the reference model
    runtime_assumed: bool  # no estimate given: the settings default was used
    reference_model: str
    data_region: str | None
    data_gib: float
    allowed_regions: tuple[str, ...]
    max_kwh: float  # +inf when uncapped
    max_carbon_kg: float
    deadline_epoch: float  # +inf when none
    priority: int
    weights: tuple[float, float, float]
    profile: str
    arrival_epoch: float = 0.0  # creation time, for FIFO among equal priorities
    queue: str | None = None  # the ComputeQueue that admits it (placement/tenancy.resolve); None: no queue
    queue_problem: str = ""  # why no queue can admit it (a missing or ambiguous queue): it waits

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def accelerators_total(self) -> int:
        return self.replicas * self.count


def reference_tflops(model: str, precision: str) -> float:
    """The reference model's peak at the precision; its best of fp16/fp32 if it lacks that one."""
    entry = accelerators.lookup(model) or accelerators.CATALOG["A100"]
    peak = entry.peak_tflops
    if precision in peak:
        return float(peak[precision])
    return float(max(peak.get("fp16", 0.0), peak.get("fp32", 0.0), 1e-9))


def from_job(
    job: objects.ComputeJob, default_runtime_seconds: float, arrival_epoch: float = 0.0
) -> JobDemand:
    """Resolve a ComputeJob into a demand (pure; the caller supplies defaults and arrival time)."""
    spec = job.spec
    weights_override = (
        (spec.policy.weights.accelerator, spec.policy.weights.locality, spec.policy.weights.energy)
        if spec.policy.weights is not None
        else None
    )
    return JobDemand(
        namespace=job.namespace,
        name=job.name,
        replicas=spec.replicas,
        count=spec.accelerators.count,
        types=tuple(t for t in spec.accelerators.types if t in spec.images),
        models=tuple(spec.accelerators.models),
        min_memory_gib=spec.accelerators.min_memory_gi_b,
        precision=spec.accelerators.precision,
        runtime_seconds=spec.runtime.seconds if spec.runtime else default_runtime_seconds,
        runtime_assumed=spec.runtime is None,
        reference_model=spec.runtime.reference_model if spec.runtime else "A100",
        data_region=spec.data.region,
        data_gib=spec.data.size_gi_b,
        allowed_regions=tuple(spec.data.allowed_regions),
        max_kwh=spec.energy.max_k_wh if spec.energy.max_k_wh is not None else math.inf,
        max_carbon_kg=spec.energy.max_carbon_kg if spec.energy.max_carbon_kg is not None else math.inf,
        deadline_epoch=spec.schedule.deadline.timestamp() if spec.schedule.deadline is not None else math.inf,
        priority=spec.priority,
        weights=profiles.weights_for(spec.policy.profile, weights_override),
        profile=spec.policy.profile,
        arrival_epoch=arrival_epoch,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class JobBatch:
    """Arrays over J jobs, indexed against one fleet's vocabularies."""

    demands: tuple[JobDemand, ...]
    replicas: IntArray
    count: IntArray
    type_mask: IntArray  # bit t set when type code t is accepted
    model_allowed: BoolArray  # (J, models) all True when no allow-list
    min_memory_gib: FloatArray
    precision: IntArray
    runtime_ref_s: FloatArray
    ref_tflops: FloatArray
    ref_kwh: FloatArray  # energy on the reference model at the reference site (for the energy factor)
    data_region: IntArray  # -1: nothing to move; R: a region no center is in
    data_gib: FloatArray
    region_allowed: BoolArray  # (J, R)
    max_kwh: FloatArray
    max_carbon_kg: FloatArray
    deadline: FloatArray
    weights: FloatArray  # (J, 3)

    @property
    def size(self) -> int:
        return len(self.demands)


def batch(demands: Sequence[JobDemand], fleet: fleet_mod.Fleet, reference_pue: float) -> JobBatch:
    """Stack demands into arrays against the fleet's region and model vocabularies."""
    n = len(demands)
    n_regions = len(fleet.regions)
    model_ix = {m: i for i, m in enumerate(fleet.models)}
    type_mask = np.zeros(n, dtype=np.int64)
    model_allowed = np.ones((n, len(fleet.models)), dtype=np.bool_)
    region_allowed = np.ones((n, n_regions), dtype=np.bool_)
    ref_tflops = np.empty(n)
    ref_watts = np.empty(n)
    for j, d in enumerate(demands):
        for t in d.types:
            type_mask[j] |= 1 << fleet_mod.TYPE_CODES[t]
        if d.models:
            model_allowed[j, :] = False
            for m in d.models:
                if m in model_ix:
                    model_allowed[j, model_ix[m]] = True
        if d.allowed_regions:
            region_allowed[j, :] = False
            for r in d.allowed_regions:
                ri = fleet.region_index(r)
                if ri >= 0:
                    region_allowed[j, ri] = True
        ref_tflops[j] = reference_tflops(d.reference_model, d.precision)
        entry = accelerators.lookup(d.reference_model) or accelerators.CATALOG["A100"]
        ref_watts[j] = entry.board_watts
    replicas = np.array([d.replicas for d in demands], dtype=np.int64)
    count = np.array([d.count for d in demands], dtype=np.int64)
    runtime = np.array([d.runtime_seconds for d in demands], dtype=np.float64)
    return JobBatch(
        demands=tuple(demands),
        replicas=replicas,
        count=count,
        type_mask=type_mask,
        model_allowed=model_allowed,
        min_memory_gib=np.array([d.min_memory_gib for d in demands], dtype=np.float64),
        precision=np.array([fleet_mod.PRECISION_CODES[d.precision] for d in demands], dtype=np.int64),
        runtime_ref_s=runtime,
        ref_tflops=ref_tflops,
        ref_kwh=replicas * count * ref_watts * runtime / 3.6e6 * reference_pue,
        data_region=np.array([_data_region_index(d, fleet) for d in demands], dtype=np.int64),
        data_gib=np.array([d.data_gib for d in demands], dtype=np.float64),
        region_allowed=region_allowed,
        max_kwh=np.array([d.max_kwh for d in demands], dtype=np.float64),
        max_carbon_kg=np.array([d.max_carbon_kg for d in demands], dtype=np.float64),
        deadline=np.array([d.deadline_epoch for d in demands], dtype=np.float64),
        weights=np.array([d.weights for d in demands], dtype=np.float64).reshape(n, 3),
    )


def _data_region_index(demand: JobDemand, fleet: fleet_mod.Fleet) -> int:
    if demand.data_gib <= 0 or demand.data_region is None:
        return -1
    index = fleet.region_index(demand.data_region)
    return index if index >= 0 else len(fleet.regions)
