"""What the planner decided for one job: the reply half of the core's interface."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from suanli.ledger import capacity
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod

Phase = Literal["Bound", "Queued", "Deferred"]


@dataclasses.dataclass(frozen=True)
class Breakdown:
    """Factor scores in [0, 1]."""

    accelerator: float
    locality: float
    energy: float


@dataclasses.dataclass(frozen=True)
class Estimates:
    """Expected cost of running on a pool (units in the names)."""

    runtime_seconds: float
    transfer_seconds: float
    energy_kwh: float
    carbon_kg: float
    cost: float


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A feasible pool with its score."""

    pool: fleet_mod.PoolInfo
    score: float
    breakdown: Breakdown
    estimates: Estimates


@dataclasses.dataclass(frozen=True)
class Rejection:
    """A pool that cannot take the job and why, in words."""

    pool: fleet_mod.PoolInfo
    reason: str


@dataclasses.dataclass(frozen=True)
class Decision:
    """The outcome for one job. `binding` is the chosen candidate (Bound, or Deferred: where it will go)."""

    job: demand_mod.JobDemand
    phase: Phase
    binding: Candidate | None
    candidates: tuple[Candidate, ...]
    rejected: tuple[Rejection, ...]
    message: str
    planned_start: float | None = None
    allocation: capacity.Allocation | None = None
    reject_summary: tuple[tuple[str, int], ...] = ()
    # Queued jobs of a queue: the pools that only free accelerators or the queue's quota keep it from,
    # with what it would hold in its queue there (placement/preemption.py may make room on them).
    reclaimable: tuple[tuple[int, Mapping[str, float]], ...] = ()
