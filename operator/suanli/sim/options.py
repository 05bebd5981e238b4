"""How a trace becomes jobs: one settings model per trace format, every assumption a field.

The traces say little about what Suanli needs (no data locations, precisions, energy caps), so
every value the simulator assumes lives here, with its unit and why, and can be changed with
`suanli simulate --trace-option KEY=VALUE` (repeatable). See sim/README.md for the mapping.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlibabaOptions(_Options):
    """Mapping of the Alibaba GPU trace (2023, `openb_pod_list_*.csv`) onto ComputeJobs."""

    start: datetime.datetime = Field(
        default=datetime.datetime(2023, 6, 5, tzinfo=datetime.UTC),
        description="Calendar instant of trace second 0 (the trace has relative times only); "
        "it fixes local clock times, hence carbon/price schedules and budget periods.",
    )
    compression: float = Field(
        default=18.0,
        gt=0,
        description="Arrival gaps are divided by this (runtimes are not): the trace loads its 6,212-GPU "
        "cluster lightly, so the replay compresses time to create contention on a smaller fleet.",
    )
    reference_model: str = Field(
        default="V100",
        description="Catalog model the recorded runtimes are taken to be measured on (the core scales "
        "them per pool by peak TFLOPS at the job's precision).",
    )
    precision: Literal["fp16", "fp32", "bf16"] = Field(
        default="fp16", description="Precision every task asks for (the trace does not say)."
    )
    data_gib: float = Field(
        default=20.0, ge=0, description="GiB of input data each task reads from its data region (not in the trace)."
    )
    region_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Relative weight of each region in the seeded draw of a task's data region; "
        "empty: every region that has a center, equally.",
    )
    censored: Literal["drop", "keep"] = Field(
        default="drop",
        description="Tasks still running when the trace ends (deletion_time at the trace end): their "
        "runtime is unknown. drop: skip and count them; keep: runtime cut at the trace end.",
    )
    max_tasks: int | None = Field(
        default=None, ge=1, description="Read at most this many rows (smoke tests); None: all."
    )
    seed: int = Field(default=7, description="Seed of the data-region draw.")
    queues: dict[str, float] = Field(
        default_factory=dict,
        description="ComputeQueue -> relative weight in the seeded draw that assigns each task to a queue "
        "(the trace names no users or teams); empty: every ComputeQueue given with --centers, equally; "
        "no ComputeQueue given: the tasks have no queue.",
    )
    queue_assignment: Literal["balanced", "random"] = Field(
        default="balanced",
        description="How tasks go to queues. balanced: in arrival order, each to the queue whose assigned "
        "demand (GPU-seconds as recorded, over its weight) is lowest so far, so every queue's demand keeps "
        "pace with the others' through the trace; random: a seeded draw by weight (the trace's heavy tail "
        "then gives some queues far more work than others).",
    )
    queue_seed: int = Field(default=11, description="Seed of the random queue draw.")
    model_map: dict[str, str] = Field(
        default_factory=lambda: {
            "V100M16": "V100",
            "V100M32": "V100",
            "P100": "P100",
            "T4": "T4",
            "A10": "A10",
            "G2": "G2",
            "G3": "G3",
        },
        description="Trace gpu_spec model -> pool model name in the fleet.",
    )
    model_memory_gib: dict[str, float] = Field(
        default_factory=lambda: {"V100M32": 32.0},
        description="Minimum accelerator memory implied by a gpu_spec model (V100M32 needs the 32 GiB V100).",
    )


class ComputeJobsOptions(_Options):
    """Options for a trace of ComputeJob manifests."""

    start: datetime.datetime | None = Field(
        default=None,
        description="Instant that seconds-offset arrivals (annotation suanli.io/arrival: '90') count from; "
        "None: 2026-01-05T00:00:00Z.",
    )


Options = AlibabaOptions | ComputeJobsOptions
FORMATS = ("computejobs", "alibaba-gpu-2023")


def _mapping(key: str, text: str) -> dict[str, str]:
    """'a:1,b:2' -> {'a': '1', 'b': '2'} (pydantic converts the values)."""
    out: dict[str, str] = {}
    for part in filter(None, text.split(",")):
        name, sep, val = part.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--trace-option {key}={text!r}: write a mapping as key:value,key:value")
        out[name.strip()] = val.strip()
    return out


def parse(trace_format: str, pairs: Sequence[str]) -> Options:
    """Options for a format from `KEY=VALUE` strings; errors name the key and say what is allowed."""
    model: type[AlibabaOptions] | type[ComputeJobsOptions] = (
        AlibabaOptions if trace_format == "alibaba-gpu-2023" else ComputeJobsOptions
    )
    raw: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--trace-option {pair!r}: write KEY=VALUE, e.g. compression=12")
        key = key.strip().replace("-", "_")
        if key not in model.model_fields:
            known = ", ".join(sorted(model.model_fields))
            raise ValueError(f"--trace-option {key!r} is not an option of {trace_format}; known: {known}")
        annotation = str(model.model_fields[key].annotation)
        raw[key] = _mapping(key, value.strip()) if annotation.startswith("dict") else value.strip()
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"--trace-option for {trace_format}: {problems}") from None
