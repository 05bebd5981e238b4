"""The scoring core: hard filters, factor scores, weighted score and estimates for J jobs x P pools.

One call: `evaluate(fleet, state, jobs, start_epoch, settings) -> Evaluation`. Everything is
computed on arrays, so planning one job against a thousand pools and benchmarking ten
thousand jobs against them are the same code.

Formulas (also in docs/scoring.md):
  speed s        = pool peak TFLOPS at the job's precision / reference model's peak
  runtime        = estimated duration on the reference / s
  accelerator    = s / (1 + s)                    0.5 = as fast as the reference model
  transfer       = 0 if the pool is in the data's region, else GiB * 8.59 / Gbit/s + latency
  locality       = runtime / (runtime + transfer)
  energy kWh     = replicas * count * board W * runtime h / 1000 * PUE
  carbon kg      = kWh * mean grid g/kWh over [start, start + runtime] / 1000
  cost           = kWh * mean price over the same window
  energy factor  = c * ref_C / (ref_C + carbon) + (1 - c) * ref_$ / (ref_$ + cost)
                   ref_*: the same work on the reference model at the reference site
                   (national grid 536.6 g/kWh, PUE 1.42, 0.6/kWh); c = carbon share (0.7)
  score          = w_acc * accelerator + w_loc * locality + w_energy * energy
Each factor depends only on the pool's own figures, so improving a pool (cleaner grid,
faster link, more free nodes) never lowers its score.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np
import numpy.typing as npt

from suanli import settings as settings_mod
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod
from suanli.scoring import schedule

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class Reject(enum.IntFlag):
    """Why a pool cannot take a job; several may hold at once."""

    TYPE = 1 << 0  # accelerator type not accepted, or no image for it
    MODEL = 1 << 1  # not in the job's model allow-list
    PRECISION = 1 << 2  # the chip has no native support for the job's precision
    MEMORY = 1 << 3  # less memory per accelerator than the job needs
    REGION = 1 << 4  # data residency: the pool's region is not allowed
    NEVER_FITS = 1 << 5  # even an empty pool cannot hold the gang
    CAPACITY = 1 << 6  # not enough free nodes for the gang now
    NOT_READY = 1 << 7  # the center or pool is not Ready
    BUDGET = 1 << 8  # the center's energy budget for the period would be overrun
    MAX_KWH = 1 << 9  # over the job's energy cap
    MAX_CARBON = 1 << 10  # over the job's carbon cap
    DEADLINE = 1 << 11  # cannot finish by the deadline from this start
    QUOTA = 1 << 12  # the job's ComputeQueue cannot cover it here now (set by placement/tenancy.py)


# Filters that no amount of waiting changes (the job's own constraints against the pool's nature).
PERMANENT = Reject.TYPE | Reject.MODEL | Reject.PRECISION | Reject.MEMORY | Reject.REGION | Reject.NEVER_FITS


@dataclasses.dataclass(frozen=True, eq=False)
class Evaluation:
    """Per (job, pool): feasibility, reasons, factor scores and estimates; arrays of shape (J, P)."""

    start_epoch: FloatArray  # (J,)
    feasible: BoolArray
    reasons: npt.NDArray[np.uint16]  # Reject flags
    score: FloatArray  # -1 where infeasible
    accelerator: FloatArray
    locality: FloatArray
    energy: FloatArray
    runtime_s: FloatArray
    transfer_s: FloatArray
    energy_kwh: FloatArray
    carbon_kg: FloatArray
    cost: FloatArray
    # (J,) kg CO2e per second the job's whole gang runs on the reference accelerator at the reference
    # site (national grid, national PUE): what `green` charges for each second a pool would hold it
    # when the fleet is full (placement/policies.py).
    reference_carbon_rate: FloatArray

    def best(self) -> IntArray:
        """Best pool per job (-1 if none). Pools are sorted by name, so ties go to the first name."""
        best = np.argmax(self.score, axis=1)
        has = self.feasible[np.arange(self.score.shape[0]), best]
        return np.where(has, best, -1).astype(np.int64)


def _window_mean(
    cum_flat: FloatArray,
    flat: BoolArray,
    base: FloatArray,
    pool_center: IntArray,
    start_minute: FloatArray,  # (J, C) local minute of the start, per center
    runtime_s: FloatArray,  # (J, P)
) -> FloatArray:
    """Mean of each center's daily profile over [start, start + runtime), per (job, pool)."""
    if bool(np.all(flat)):
        return np.broadcast_to(base[pool_center][None, :], runtime_s.shape)
    rows = np.broadcast_to(pool_center[None, :], runtime_s.shape)
    a = start_minute[:, pool_center]
    d = np.maximum(runtime_s * (1.0 / 60.0), 1e-9)
    total = schedule.integral_rows(cum_flat, rows, a + d) - schedule.integral_rows(cum_flat, rows, a)
    return np.asarray(total / d, dtype=np.float64)


def local_start_minutes(fleet: fleet_mod.Fleet, start_epoch: FloatArray) -> FloatArray:
    """(J, C) minutes after local midnight at each job's start in each center's zone."""
    out = np.empty((start_epoch.shape[0], len(fleet.centers)))
    unique, inverse = np.unique(start_epoch, return_inverse=True)
    for ci, info in enumerate(fleet.centers):
        minutes = np.array([schedule.local_minute(float(t), info.zone) for t in unique])
        out[:, ci] = minutes[inverse]
    return out


def evaluate(
    fleet: fleet_mod.Fleet,
    state: fleet_mod.FleetState,
    jobs: demand_mod.JobBatch,
    start_epoch: FloatArray | float,
    scoring: settings_mod.ScoringSettings,
    start_minutes: FloatArray | None = None,
) -> Evaluation:
    """Score every job against every pool, as if each job started at its `start_epoch`."""
    n_jobs = jobs.size
    starts = np.broadcast_to(np.asarray(start_epoch, dtype=np.float64), (n_jobs,)).copy()
    if start_minutes is None:
        start_minutes = local_start_minutes(fleet, starts)

    shape = (n_jobs, fleet.size)
    reasons = np.zeros(shape, dtype=np.uint16)

    def reject(bad: BoolArray | None, flag: Reject) -> None:
        # Filters whose inputs are all defaults (no cap, no allow-list...) are skipped: the common case.
        if bad is not None:
            reasons[...] |= bad.astype(np.uint16) * np.uint16(flag)

    # Hard filters that depend only on what the pool is.
    reject(((jobs.type_mask[:, None] >> fleet.pool_type[None, :]) & 1) == 0, Reject.TYPE)
    if not bool(np.all(jobs.model_allowed)):
        reject(~jobs.model_allowed[:, fleet.pool_model], Reject.MODEL)
    peak = fleet.tflops.T[jobs.precision]  # (J, P)
    unsupported = np.isnan(peak)
    reject(unsupported, Reject.PRECISION)
    if bool(np.any(jobs.min_memory_gib > 0)):
        reject(fleet.memory_gib[None, :] < jobs.min_memory_gib[:, None], Reject.MEMORY)
    if not bool(np.all(jobs.region_allowed)):
        reject(~jobs.region_allowed[:, fleet.pool_region], Reject.REGION)

    # Gang fit: replicas of `count` accelerators, each on one node, all in one pool.
    need = jobs.replicas[:, None]
    never_fits = state.idle_slots.T[jobs.count] < need
    reject(never_fits, Reject.NEVER_FITS)
    reject((state.slots.T[jobs.count] < need) & ~never_fits, Reject.CAPACITY)
    if not bool(np.all(state.ready)):
        reject(np.broadcast_to(~state.ready[None, :], shape), Reject.NOT_READY)

    # Factors and estimates. With s = peak / ref: runtime = t_ref / s, accelerator = s / (1 + s).
    peak = np.where(unsupported, 1.0, peak)
    speed = peak * (1.0 / jobs.ref_tflops)[:, None]
    runtime = jobs.runtime_ref_s[:, None] / speed
    accelerator = speed / (1.0 + speed)

    has_data = jobs.data_region >= 0
    if bool(np.any(has_data)):
        column = np.where(has_data, jobs.data_region, 0)
        bandwidth = fleet.bandwidth_gbps.T[column]  # (J, P)
        latency = fleet.latency_s.T[column]
        moving = has_data[:, None] & (fleet.pool_region[None, :] != jobs.data_region[:, None])
        transfer = np.where(
            moving, (jobs.data_gib * fleet_mod.GIB_TO_GBIT)[:, None] / bandwidth + latency, 0.0
        )
    else:
        transfer = np.zeros(shape)
    locality = runtime / (runtime + transfer)

    accel_total = (jobs.replicas * jobs.count).astype(np.float64)
    kwh = (accel_total * (1.0 / 3.6e6))[:, None] * (fleet.power_watts * fleet.pue)[None, :] * runtime
    grams = _window_mean(
        fleet.carbon_cum, fleet.carbon_flat, fleet.carbon_base, fleet.pool_center, start_minutes, runtime
    )
    price = _window_mean(
        fleet.price_cum, fleet.price_flat, fleet.price_base, fleet.pool_center, start_minutes, runtime
    )
    carbon = kwh * grams * 1e-3
    cost = kwh * price
    ref_carbon = (jobs.ref_kwh * scoring.reference_grid_grams_per_kwh * 1e-3)[:, None]
    ref_cost = (jobs.ref_kwh * scoring.reference_price_per_kwh)[:, None]
    share = scoring.carbon_share
    energy = share * ref_carbon / (ref_carbon + carbon) + (1.0 - share) * ref_cost / (ref_cost + cost)

    budget = state.budget_remaining_kwh[fleet.pool_center]
    if bool(np.any(np.isfinite(budget))):
        reject(kwh > budget[None, :] + 1e-9, Reject.BUDGET)
    if bool(np.any(np.isfinite(jobs.max_kwh))):
        reject(kwh > jobs.max_kwh[:, None], Reject.MAX_KWH)
    if bool(np.any(np.isfinite(jobs.max_carbon_kg))):
        reject(carbon > jobs.max_carbon_kg[:, None], Reject.MAX_CARBON)
    if bool(np.any(np.isfinite(jobs.deadline))):
        reject(starts[:, None] + transfer + runtime > jobs.deadline[:, None], Reject.DEADLINE)

    feasible = reasons == 0
    w = jobs.weights
    score = w[:, 0:1] * accelerator + w[:, 1:2] * locality + w[:, 2:3] * energy
    score = np.where(feasible, score, -1.0)
    return Evaluation(
        start_epoch=starts,
        feasible=feasible,
        reasons=reasons,
        score=score,
        accelerator=accelerator,
        locality=locality,
        energy=energy,
        runtime_s=runtime,
        transfer_s=transfer,
        energy_kwh=kwh,
        carbon_kg=carbon,
        cost=cost,
        reference_carbon_rate=ref_carbon[:, 0] / np.maximum(jobs.runtime_ref_s, 1e-9),
    )
