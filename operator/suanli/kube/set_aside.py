"""Jobs set aside: waiting jobs that cannot start now are kept out of the scheduling cycle until
capacity they could use frees up (Kueue keeps inadmissible workloads aside the same way).

A queued job is set aside when it has its decision already (phase Queued, for its current spec
generation), no pool it could ever use (type, model, precision, memory, region:
`placement/feasible.py`) is ready with room for its gang now (free slots of its replicas' size on the
cache's real nodes), and its ComputeQueue cannot preempt to make room. Planning it would only say
Queued again; the cycle's `operator.max_jobs_per_cycle` then goes to jobs that can start, however far
down the queue order they are (no head-of-line blocking), and a cycle after one gang completes plans
the jobs that fit what it freed, not the whole queue.

The pools a job could use are computed once per job and fleet (a job's demand and the fleet are
rebuilt when its spec or a center changes, and are compared by identity). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from suanli import settings as settings_mod
from suanli.kube import objects as kobj
from suanli.placement import feasible
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


class SetAside:
    """The pools each waiting job could use, kept across cycles (jobs alike share one mask)."""

    def __init__(self) -> None:
        self._fleet: fleet_mod.Fleet | None = None
        self._usable: dict[kobj.Key, tuple[demand_mod.JobDemand, int]] = {}  # job -> (its demand, its mask's id)
        self._masks: list[BoolArray] = []
        self._mask_ids: dict[bytes, int] = {}

    def split(
        self,
        fleet: fleet_mod.Fleet,
        jobs: Sequence[demand_mod.JobDemand],
        slots: IntArray,
        ready: BoolArray,
        settings: settings_mod.Settings,
        decided: Callable[[demand_mod.JobDemand], bool],
    ) -> tuple[list[demand_mod.JobDemand], int, dict[kobj.Key, BoolArray]]:
        """(the jobs to plan, how many were set aside, the pools each decided job to plan could use: the
        planner skips it if those fill up before its turn). `slots[p, c]`: replicas of c accelerators
        that fit on pool p now; `decided(job)`: the job's Queued status is for its current spec and it
        may not preempt (only such jobs may be set aside or skipped)."""
        self._learn(fleet, jobs, settings)
        usable, masks = self._usable, self._masks
        fits_by_shape: dict[tuple[int, int, int], bool] = {}  # (replicas, count, mask id) -> a usable pool has room
        plan: list[demand_mod.JobDemand] = []
        aside = 0
        skippable: dict[kobj.Key, BoolArray] = {}
        for job in jobs:
            if not decided(job):
                plan.append(job)
                continue
            mask_id = usable[job.key][1]
            shape = (job.replicas, job.count, mask_id)
            fits = fits_by_shape.get(shape)
            if fits is None:
                fits = fits_by_shape[shape] = feasible.room(masks[mask_id], ready, slots, job.replicas, job.count)
            if fits:
                plan.append(job)
                skippable[job.key] = masks[mask_id]
            else:
                aside += 1
        return plan, aside, skippable

    def _learn(self, fleet: fleet_mod.Fleet, jobs: Sequence[demand_mod.JobDemand], settings: settings_mod.Settings) -> None:
        """Know the pools of every job in `jobs` (scored in one batch for those new or changed)."""
        if fleet is not self._fleet:
            self._fleet, self._usable, self._masks, self._mask_ids = fleet, {}, [], {}
        usable = self._usable
        missing = [j for j in jobs if (known := usable.get(j.key)) is None or known[0] is not j]
        if missing:
            for job, row in zip(missing, feasible.pools(fleet, missing, settings, gang=False), strict=True):
                mask_id = self._mask_ids.get(row.tobytes())
                if mask_id is None:
                    mask_id = self._mask_ids[row.tobytes()] = len(self._masks)
                    self._masks.append(row)
                usable[job.key] = (job, mask_id)
        if len(usable) > 2 * len(jobs) + 1024:  # jobs that left the queue: forget them
            keys = {j.key for j in jobs}
            self._usable = {k: v for k, v in usable.items() if k in keys}
