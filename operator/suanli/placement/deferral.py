"""Deferral: should a job with a deadline wait for cleaner power instead of starting now?

Candidate starts are every edge of every center's carbon schedule and a regular grid
(settings.deferral.step_seconds) between now and the deadline (capped by the horizon). The job is
scored at each start with today's capacity; the deadline filter guarantees that
start + transfer + runtime <= deadline at the chosen pool. A job is deferred when the best later
option scores higher than starting now AND cuts the job's carbon by at least
settings.deferral.min_carbon_saving. A job that fits nowhere now only because of a time-dependent
limit (its carbon cap, say) is deferred to the best start where it fits. Capacity is not held
while deferred; the job is planned again at its planned start, or earlier if the fleet changes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from suanli import settings as settings_mod
from suanli.scoring import demand as demand_mod
from suanli.scoring import engine, schedule
from suanli.scoring import fleet as fleet_mod

MAX_STARTS = 1000


@dataclasses.dataclass(frozen=True)
class Later:
    """The chosen later start and what it looks like there."""

    start_epoch: float
    evaluation: engine.Evaluation
    row: int
    pool: int


def candidate_starts(fleet: fleet_mod.Fleet, now: float, until: float, step: float) -> list[float]:
    """Schedule edges and step-aligned grid points in (now, until], at most MAX_STARTS, ascending."""
    if until <= now:
        return []
    starts: set[float] = set()
    for info in fleet.centers:
        starts.update(schedule.edges_between(info.carbon_windows, now, until, info.zone))
    # The grid sits on whole multiples of the step (e.g. :00, :15, :30, :45), not on `now`, so
    # re-planning a deferred job a few seconds later yields the same planned start.
    first = (np.floor(now / step) + 1) * step
    grid = first + step * np.arange(0, max(int((until - first) // step) + 1, 0))
    starts.update(float(t) for t in grid if t <= until)
    return sorted(starts)[:MAX_STARTS]


def consider(
    fleet: fleet_mod.Fleet,
    state: fleet_mod.FleetState,
    job: demand_mod.JobDemand,
    now_eval: engine.Evaluation,
    now_pool: int,
    now: float,
    config: settings_mod.Settings,
    admissible: Callable[[engine.Evaluation, int, int], bool] | None = None,
) -> Later | None:
    """The later start to defer to, or None to decide now. `admissible(evaluation, row, pool)`: whether
    the job's queue could take it there at that start (placement/tenancy.py); None: no queue."""
    if not config.deferral.enabled or not math.isfinite(job.deadline_epoch):
        return None
    # The latest sensible start: the deadline minus the fastest conceivable runtime.
    until = min(job.deadline_epoch, now + config.deferral.max_horizon_seconds)
    starts = candidate_starts(fleet, now, until, config.deferral.step_seconds)
    if not starts:
        return None
    batch = demand_mod.batch([job] * len(starts), fleet, config.scoring.reference_pue)
    later = engine.evaluate(fleet, state, batch, np.array(starts), config.scoring)
    feasible = later.feasible
    if admissible is not None:
        feasible = feasible.copy()
        for r, p in zip(*np.nonzero(feasible), strict=True):
            feasible[r, p] = admissible(later, int(r), int(p))
    best_pool = np.argmax(np.where(feasible, later.score, -np.inf), axis=1)
    rows = np.arange(len(starts))
    best_score = later.score[rows, best_pool]
    ok = feasible[rows, best_pool]
    if not np.any(ok):
        return None
    candidates = np.flatnonzero(ok)
    row = int(candidates[int(np.argmax(best_score[candidates]))])  # first max: earliest start
    pool = int(best_pool[row])
    if now_pool >= 0:
        now_score = float(now_eval.score[0, now_pool])
        now_carbon = float(now_eval.carbon_kg[0, now_pool])
        saving_ok = (
            float(later.carbon_kg[row, pool]) <= (1.0 - config.deferral.min_carbon_saving) * now_carbon
        )
        if not (float(best_score[row]) > now_score + 1e-12 and saving_ok):
            return None
    else:
        # Nothing fits now. Waiting for a time only helps when a time-dependent filter (the job's carbon
        # cap, its queue's carbon budget) is what blocks; capacity waits are the queue's business (a
        # queue's accelerator quota does not change with the hour: `admissible` refuses those starts).
        blocking = int(np.bitwise_or.reduce(now_eval.reasons[0]))
        if not blocking & int(engine.Reject.MAX_CARBON | engine.Reject.QUOTA):
            return None
    return Later(start_epoch=float(starts[row]), evaluation=later, row=row, pool=pool)
