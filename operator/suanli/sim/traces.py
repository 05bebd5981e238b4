"""Trace loaders: rows of a real trace, or ComputeJob manifests, in; `JobDemand`s with arrivals out.

Alibaba GPU trace 2023 (`openb_pod_list_*.csv`), one row per pod, mapped as follows (all the
assumptions are fields of `options.AlibabaOptions`):
  num_gpu 0                 skipped, counted as "cpu-only" (Suanli places accelerator jobs)
  pod_phase Pending with no scheduled_time
                            skipped, counted as "never-ran": its lifetime is time spent waiting
  deletion_time at the trace end (still running when the trace was cut)
                            skipped and counted as "censored" (or kept with the runtime cut there)
  count                     num_gpu; a fraction of one GPU (gpu_milli < 1000) counts as a whole
                            accelerator, since Suanli does not share accelerators
  replicas 1, types [GPU], precision fp16
  models                    gpu_spec split on '|', mapped through model_map (V100M16/V100M32 ->
                            V100, plus a 32 GiB memory floor for V100M32 alone); empty = any
  runtime                   deletion_time - scheduled_time (the time the pod held its GPUs),
                            taken as measured on the reference model (V100), scaled per pool
  arrival                   start + creation_time / compression
  data region               seeded draw over the fleet's regions (region_weights), data_gib GiB
  priority 0 (first come, first served), profile per policy (the simulator sets it)

ComputeJob manifests: arrival from annotation `suanli.io/arrival` (RFC 3339, or seconds after
the options' start), else `metadata.creationTimestamp`, else the start; runtime from
`spec.runtime.estimatedDuration` (scaled per pool by the core).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from suanli import manifest_files
from suanli import settings as settings_mod
from suanli.api import manifests, objects
from suanli.api import queue as queue_api
from suanli.placement import tenancy, validation
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod
from suanli.scoring import profiles
from suanli.sim import options as options_mod

ALIBABA_COLUMNS = (
    "name",
    "num_gpu",
    "gpu_milli",
    "gpu_spec",
    "pod_phase",
    "creation_time",
    "deletion_time",
    "scheduled_time",
)
ARRIVAL_ANNOTATION = "suanli.io/arrival"
DEFAULT_START = datetime.datetime(2026, 1, 5, tzinfo=datetime.UTC)


class TraceError(ValueError):
    """A trace that cannot be read; the message names the file, row or object and the field."""


@dataclasses.dataclass(frozen=True)
class Trace:
    """Jobs to replay (arrival order) and what was left out of the source and why."""

    source: str
    jobs: tuple[demand_mod.JobDemand, ...]
    skipped: dict[str, int]
    start_epoch: float


def _epoch(moment: datetime.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _number(path: str, row: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{path}: row {row}: column {column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise TraceError(f"{path}: row {row}: column {column}: {text!r} is not a finite number")
    return value


def _region_draw(
    fleet: fleet_mod.Fleet, weights: dict[str, float], n: int, seed: int
) -> list[str]:
    regions = sorted({c.region for c in fleet.centers})
    if weights:
        unknown = sorted(set(weights) - set(regions))
        if unknown:
            raise TraceError(
                f"trace option region_weights names {', '.join(unknown)}, where no center is; "
                f"regions of the fleet: {', '.join(regions)}"
            )
        p = np.array([max(float(weights.get(r, 0.0)), 0.0) for r in regions])
        if p.sum() <= 0:
            raise TraceError("trace option region_weights: give at least one region a positive weight")
    else:
        p = np.ones(len(regions))
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(regions), size=n, p=p / p.sum())
    return [regions[int(i)] for i in picks]


def load_alibaba(
    path: str, fleet: fleet_mod.Fleet, opts: options_mod.AlibabaOptions
) -> Trace:
    """GPU tasks of an `openb_pod_list_*.csv` as jobs (see the module docstring for the mapping)."""
    file = pathlib.Path(path)
    if file.is_dir():
        file = file / "openb_pod_list_default.csv"
    try:
        handle = file.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise TraceError(f"{file}: cannot read the trace: {exc.strerror or exc}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ALIBABA_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise TraceError(
                f"{file}: missing column(s) {', '.join(missing)}; an alibaba-gpu-2023 trace has the header "
                "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
                "deletion_time,scheduled_time"
            )
        rows: list[tuple[int, dict[str, str]]] = []
        for i, row in enumerate(reader, start=2):
            if opts.max_tasks is not None and len(rows) >= opts.max_tasks:
                break
            rows.append((i, row))
    src = str(file)
    trace_end = max((_number(src, i, "deletion_time", r["deletion_time"]) for i, r in rows), default=0.0)
    skipped = {"cpu-only": 0, "never-ran": 0, "censored": 0}
    kept: list[tuple[float, str, int, float, tuple[str, ...], float]] = []
    for i, row in rows:
        num_gpu = int(_number(src, i, "num_gpu", row["num_gpu"]))
        if num_gpu <= 0:
            skipped["cpu-only"] += 1
            continue
        if not row["scheduled_time"].strip():
            skipped["never-ran"] += 1
            continue
        created = _number(src, i, "creation_time", row["creation_time"])
        scheduled = _number(src, i, "scheduled_time", row["scheduled_time"])
        deleted = _number(src, i, "deletion_time", row["deletion_time"])
        if deleted >= trace_end and row["pod_phase"].strip() == "Running" and opts.censored == "drop":
            skipped["censored"] += 1
            continue
        models: list[str] = []
        memory = 0.0
        spec = [m.strip() for m in row["gpu_spec"].split("|") if m.strip()]
        for name in spec:
            if name not in opts.model_map:
                raise TraceError(
                    f"{src}: row {i}: column gpu_spec: model {name!r} has no entry in trace option model_map; "
                    f"add one, e.g. --trace-option model_map={name}:A100"
                )
            if opts.model_map[name] not in models:
                models.append(opts.model_map[name])
        if spec:
            memory = min(opts.model_memory_gib.get(name, 0.0) for name in spec)
        runtime = max(deleted - scheduled, 1.0)
        kept.append((created, row["name"].strip(), num_gpu, runtime, tuple(models), memory))
    regions = _region_draw(fleet, opts.region_weights, len(kept), opts.seed)
    start = _epoch(opts.start)
    jobs = tuple(
        demand_mod.JobDemand(
            namespace="alibaba",
            name=name,
            replicas=1,
            count=count,
            types=("GPU",),
            models=models,
            min_memory_gib=memory,
            precision=opts.precision,
            runtime_seconds=runtime,
            runtime_assumed=False,
            reference_model=opts.reference_model,
            data_region=region,
            data_gib=opts.data_gib,
            allowed_regions=(),
            max_kwh=math.inf,
            max_carbon_kg=math.inf,
            deadline_epoch=math.inf,
            priority=0,
            weights=profiles.weights_for("balanced"),
            profile="balanced",
            arrival_epoch=start + created / opts.compression,
        )
        for (created, name, count, runtime, models, memory), region in zip(kept, regions, strict=True)
    )
    return Trace(source=src, jobs=_in_arrival_order(jobs), skipped=skipped, start_epoch=start)


def assign_queues(trace: Trace, queues: Sequence[str], weights: dict[str, float], seed: int,
                  how: str = "balanced") -> Trace:
    """The trace with each job given a ComputeQueue, `weights` (queue -> relative weight; empty: every
    queue in `queues` equally) deciding how much each gets: `balanced`, in arrival order each job to
    the queue with the least demand (accelerator-seconds as recorded) per weight so far; `random`, a
    seeded draw. No queues: the trace as it is."""
    if not queues:
        if weights:
            raise TraceError(
                f"trace option queues names {', '.join(sorted(weights))}, but no ComputeQueue was given; "
                f"add ComputeQueue manifests to the --centers files"
            )
        return trace
    names = sorted(queues)
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise TraceError(
            f"trace option queues names {', '.join(unknown)}, which no ComputeQueue given with --centers is; "
            f"queues given: {', '.join(names)}"
        )
    p = np.array([max(float(weights.get(n, 0.0)), 0.0) for n in names]) if weights else np.ones(len(names))
    if p.sum() <= 0:
        raise TraceError("trace option queues: give at least one queue a positive weight")
    if how == "random":
        picks = np.random.default_rng(seed).choice(len(names), size=len(trace.jobs), p=p / p.sum())
    else:
        load = np.where(p > 0, 0.0, np.inf)
        picks = np.empty(len(trace.jobs), dtype=np.int64)
        for n, job in enumerate(trace.jobs):
            i = int(np.argmin(load))
            picks[n] = i
            load[i] += job.accelerators_total * job.runtime_seconds / p[i]
    jobs = tuple(dataclasses.replace(job, queue=names[int(i)]) for job, i in zip(trace.jobs, picks, strict=True))
    return dataclasses.replace(trace, jobs=jobs)


def _in_arrival_order(jobs: Sequence[demand_mod.JobDemand]) -> tuple[demand_mod.JobDemand, ...]:
    return tuple(sorted(jobs, key=lambda j: (j.arrival_epoch, j.namespace, j.name)))


def _parse_instant(text: str, where: str, start: float) -> float:
    text = text.strip()
    try:
        return start + float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TraceError(
            f"{where}: {text!r} is neither RFC 3339 (2026-01-05T08:00:00Z) nor seconds after the trace start"
        ) from None
    if moment.tzinfo is None:
        raise TraceError(f"{where}: {text!r} has no time zone; add Z or an offset such as +08:00")
    return moment.timestamp()


def arrival_of(job: objects.ComputeJob, source: str, start: float) -> float:
    """Arrival of a ComputeJob in a trace: annotation, else creationTimestamp, else the start."""
    annotations = job.metadata.annotations or {}
    who = f"{source}: ComputeJob {job.namespace}/{job.name}"
    if ARRIVAL_ANNOTATION in annotations:
        return _parse_instant(
            str(annotations[ARRIVAL_ANNOTATION]), f"{who}: metadata.annotations[{ARRIVAL_ANNOTATION}]", start
        )
    if job.metadata.creation_timestamp:
        return _parse_instant(job.metadata.creation_timestamp, f"{who}: metadata.creationTimestamp", start)
    return start


def load_computejobs(
    paths: Sequence[str],
    fleet: fleet_mod.Fleet,
    opts: options_mod.ComputeJobsOptions,
    config: settings_mod.Settings,
    queues: Mapping[str, queue_api.ComputeQueueSpec] | None = None,
    namespaces: Mapping[str, Mapping[str, str]] | None = None,
) -> Trace:
    """ComputeJob manifests (files or folders) as a trace; ComputeCenters in them are ignored. With
    `queues`, each job is admitted by its spec.queue or by the queue whose namespaceSelector matches
    its namespace's labels (`namespaces`: Namespace manifests given with --centers or in the trace),
    as the operator does."""
    try:
        loaded = manifest_files.load(paths)
    except manifests.InvalidManifests as exc:
        raise TraceError("\n".join(str(e) for e in exc.errors)) from None
    start = _epoch(opts.start or DEFAULT_START)
    pool_models = {p.model for p in fleet.pools}
    jobs = []
    for job in loaded.jobs:
        problem = validation.invalid_field(job, pool_models)
        if problem is not None:
            field, message = problem[0], problem[1]
            raise TraceError(f"{', '.join(paths)}: ComputeJob {job.namespace}/{job.name}: {field}: {message}")
        arrival = arrival_of(job, ", ".join(paths), start)
        demand = demand_mod.from_job(job, config.scoring.default_runtime_seconds, arrival)
        if queues:
            labels = {**(namespaces or {}), **loaded.namespaces}.get(job.namespace)
            found = tenancy.resolve(job.spec.queue, job.namespace, labels, queues)
            waits = found.problem or tenancy.required(found.queue, job.namespace, config.tenancy.require_queue)
            demand = dataclasses.replace(demand, queue=found.queue, queue_problem=waits)
        jobs.append(demand)
    if not jobs:
        raise TraceError(f"{', '.join(paths)}: no ComputeJob in the trace; a computejobs trace is ComputeJob manifests")
    return Trace(source=", ".join(paths), jobs=_in_arrival_order(jobs), skipped={}, start_epoch=start)
