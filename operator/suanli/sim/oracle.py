"""The carbon oracle: a lower bound on the carbon any policy can emit for a trace's jobs.

Each job is placed, on its own, on its cleanest allowed pool at its cleanest start: the pools its
own constraints allow (type, model, precision, memory, region, gang size: `placement/feasible.pools`),
the start anywhere in the day (carbon schedules are daily), and nothing else: no capacity, no wait,
no budget, no deadline. Its carbon there is the core's own estimate (`engine.evaluate`: kWh on that
pool times the mean grid intensity over its runtime), so a policy's carbon and the bound are the same
arithmetic; a run that a policy places anywhere, at any time, emits at least the job's bound (a
preempted job emits its partial run on top of a full one). The distance between a policy and the
bound is what placement and timing could still win, not a promise that it can: capacity and waiting
are ignored.

The best start of a job on a center with a schedule: the mean of a piecewise-constant daily profile
over a window of fixed length is piecewise linear in the window's start, with kinks where the start
or the end crosses a schedule edge; so its minimum is at a start on an edge or at an edge minus the
runtime, and those few starts are all that is evaluated.

Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from suanli import settings as settings_mod
from suanli.placement import feasible
from suanli.scoring import demand as demand_mod
from suanli.scoring import engine, schedule
from suanli.scoring import fleet as fleet_mod

FloatArray = npt.NDArray[np.float64]
DAY = schedule.MINUTES_PER_DAY


def _cleanest_mean(cum: FloatArray, edges: FloatArray, minutes: FloatArray) -> FloatArray:
    """The lowest mean of one daily profile over any window of each length in `minutes` (> 0)."""
    d = np.maximum(minutes, 1e-9)[:, None]
    starts = np.concatenate([np.broadcast_to(edges, (d.shape[0], edges.size)), (edges[None, :] - d) % DAY], axis=1)
    means = (schedule.integral(cum, starts + d) - schedule.integral(cum, starts)) / d
    return np.asarray(means.min(axis=1), dtype=np.float64)


def _edges(info: fleet_mod.CenterInfo) -> FloatArray:
    return np.array(sorted({float(w.start_minute) for w in info.carbon_windows}
                           | {float(w.end_minute) for w in info.carbon_windows}), dtype=np.float64)


def carbon_floor(fleet: fleet_mod.Fleet, jobs: Sequence[demand_mod.JobDemand],
                 config: settings_mod.Settings | None = None) -> FloatArray:
    """Per job, the least kg CO2e it can emit on a pool its constraints allow (0 if none can take it)."""
    config = config or settings_mod.Settings()
    out = np.zeros(len(jobs))
    if not jobs or fleet.size == 0:
        return out
    usable = feasible.pools(fleet, jobs, config)
    idle = fleet_mod.idle_state(fleet)
    for lo in range(0, len(jobs), feasible.CHUNK):
        part = list(jobs[lo : lo + feasible.CHUNK])
        batch = demand_mod.batch(part, fleet, config.scoring.reference_pue)
        starts = np.array([j.arrival_epoch for j in part])
        ev = engine.evaluate(fleet, idle, batch, starts, config.scoring)
        grams = np.broadcast_to(fleet.carbon_base[fleet.pool_center][None, :], ev.runtime_s.shape).copy()
        for info in fleet.centers:
            if fleet.carbon_flat[info.index]:
                continue
            columns = np.flatnonzero(fleet.pool_center == info.index)
            cum = fleet.carbon_cum[info.index * (DAY + 1) : (info.index + 1) * (DAY + 1)]
            minutes = ev.runtime_s[:, columns].reshape(-1) / 60.0
            grams[:, columns] = _cleanest_mean(cum, _edges(info), minutes).reshape(len(part), columns.size)
        carbon = np.where(usable[lo : lo + len(part)], ev.energy_kwh * grams * 1e-3, np.inf)
        best = carbon.min(axis=1)
        out[lo : lo + len(part)] = np.where(np.isfinite(best), best, 0.0)
    return out
