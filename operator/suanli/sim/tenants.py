"""Tenants in the replay: what each ComputeQueue holds as the virtual clock moves, and how fairly the
fleet was shared. Pure: the replay calls it; no clock, no I/O.

The quota itself is the planner's (`ledger/quota.py`, through the session): this module only watches.
It keeps, per queue, the compute units and accelerators its running jobs hold (from the replay's own
bookings, not the ledger's, so the check below is independent of the ledger it checks) and the jobs
it has waiting, and after every instant:

- checks that no queue holds more than its nominal quota plus its borrowing limit in any accelerator
  or compute-unit dimension (`over_limit`: the worst excess seen, 0 when the rule always held);
- accumulates, over the *busy period* (the instants at which every queue with jobs in the trace has
  one waiting, so each wants more than it gets and fair share decides), the compute-unit-seconds each
  queue held, divided by its weight, and the time-weighted Jain's index of those weighted usages
  (over the queues with jobs: one that submits nothing has no share to be fair to).

Jain's index of x_1..x_n is (sum x)^2 / (n * sum x^2): 1 when all are equal, 1/n when one queue has
everything.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from suanli.api import queue as queue_api
from suanli.ledger import quota_terms
from suanli.placement import tenancy
from suanli.scoring import fleet as fleet_mod

FloatArray = npt.NDArray[np.float64]


def _caps(terms: Mapping[str, quota_terms.QueueQuota], names: list[str]) -> list[dict[str, float]]:
    """Per queue, the most it may hold in each concurrent dimension it lists: its nominal quota plus
    what it may borrow, i.e. its borrowing limit, and never more than the other queues of its cohort
    that list the dimension lend (their lending limit, or all of their nominal); nominal alone
    without a cohort."""
    out: list[dict[str, float]] = []
    for name in names:
        mine = terms[name]
        caps: dict[str, float] = {}
        for dim, limit in mine.limits.items():
            if mine.cohort is None:
                caps[dim] = limit.nominal
                continue
            lent = math.fsum(
                _lendable(other.limits[dim])
                for other_name, other in terms.items()
                if other_name != name and other.cohort == mine.cohort and dim in other.limits
            )
            borrowing = lent if limit.borrowing_limit is None else min(limit.borrowing_limit, lent)
            caps[dim] = limit.nominal + borrowing
        out.append(caps)
    return out


def _lendable(limit: quota_terms.Limit) -> float:
    return limit.nominal if limit.lending_limit is None else limit.lending_limit


def jain(x: FloatArray) -> float:
    """Jain's fairness index of non-negative amounts (1.0 for an empty or all-zero vector)."""
    total, squares = float(np.sum(x)), float(np.sum(np.square(x)))
    return 1.0 if squares <= 0 else total * total / (len(x) * squares)


@dataclasses.dataclass
class QueueFigures:
    """One queue over a replay."""

    name: str
    weight: float
    compute_unit_seconds: float = 0.0  # over the whole replay
    accelerator_seconds: float = 0.0
    busy_compute_unit_seconds: float = 0.0  # over the busy period only
    over_limit: float = 0.0  # worst excess over nominal + borrowing limit seen at any instant (0: never)
    over_limit_dimension: str = ""


class Watch:
    """Per-queue holdings and waits through a replay (see the module docstring)."""

    def __init__(self, fleet: fleet_mod.Fleet, queues: Mapping[str, queue_api.ComputeQueueSpec],
                 demanding: Iterable[str | None] = ()):
        """`demanding`: the queues of the trace's jobs (the others take no part in the fairness figures)."""
        self.fleet = fleet
        self.names = sorted(queues)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.figures = [QueueFigures(name, float(queues[name].weight)) for name in self.names]
        n = len(self.names)
        self.weights = np.array([f.weight for f in self.figures], dtype=np.float64)
        self.compute_units = np.zeros(n)
        self.accelerators = np.zeros(n)
        self.waiting = np.zeros(n, dtype=np.int64)
        wanted = set(demanding)
        self.demanding = np.array([name in wanted for name in self.names], dtype=np.bool_)
        self.caps = _caps({name: tenancy.quota_of(name, queues[name]) for name in self.names}, self.names)
        self.held: list[dict[str, float]] = [{} for _ in self.names]
        self.busy_seconds = 0.0
        self.jain_seconds = 0.0  # integral of the instantaneous Jain's index over the busy period
        self._last: float | None = None
        self._state: tuple[FloatArray, FloatArray, bool] = (self.compute_units, self.accelerators, False)

    # --- events ---------------------------------------------------------------------------

    def queued(self, queue: str | None, delta: int) -> None:
        if queue in self.index:
            self.waiting[self.index[queue]] += delta

    def bound(self, queue: str | None, pool: int, accelerators: int, precision: str) -> float:
        """A job of `queue` holds `accelerators` on `pool` from now; its compute units (0 without a queue)."""
        return self._hold(queue, pool, accelerators, precision, 1.0)

    def ended(self, queue: str | None, pool: int, accelerators: int, precision: str) -> None:
        self._hold(queue, pool, accelerators, precision, -1.0)

    def _hold(self, queue: str | None, pool: int, accelerators: int, precision: str, sign: float) -> float:
        if queue not in self.index:
            return 0.0
        i = self.index[queue]
        held = tenancy.pool_demand(self.fleet.pools[pool], accelerators, precision, 0.0, 0.0)
        units = held[quota_terms.COMPUTE_UNITS]
        self.compute_units[i] += sign * units
        self.accelerators[i] += sign * accelerators
        for dim, amount in held.items():
            if dim not in ("energyKWh", "carbonKg"):
                self.held[i][dim] = self.held[i].get(dim, 0.0) + sign * amount
        return units

    # --- after each instant -----------------------------------------------------------------

    def sample(self, now: float) -> None:
        """After the events of one instant: account the interval since the previous instant with the
        state as it was left then (constant over it), keep the state now, and check the limits on it."""
        if self._last is not None and now > self._last:
            dt = now - self._last
            units, accelerators, busy = self._state
            for i, f in enumerate(self.figures):
                f.compute_unit_seconds += float(units[i]) * dt
                f.accelerator_seconds += float(accelerators[i]) * dt
                if busy:
                    f.busy_compute_unit_seconds += float(units[i]) * dt
            if busy:
                self.busy_seconds += dt
                self.jain_seconds += jain((units / self.weights)[self.demanding]) * dt
        self._last = now
        busy_now = bool(np.any(self.demanding)) and bool(np.all(self.waiting[self.demanding] > 0))
        self._state = (self.compute_units.copy(), self.accelerators.copy(), busy_now)
        for i, f in enumerate(self.figures):
            for dim, cap in self.caps[i].items():
                excess = self.held[i].get(dim, 0.0) - cap
                if excess > f.over_limit + quota_terms.EPS:
                    f.over_limit, f.over_limit_dimension = excess, dim

    # --- results --------------------------------------------------------------------------

    def busy_shares(self) -> FloatArray:
        """Each queue's weighted compute-unit-seconds over the busy period, as a fraction of those of all
        the queues with jobs (0 for the others)."""
        weighted = np.array([f.busy_compute_unit_seconds for f in self.figures]) / np.where(self.weights > 0, self.weights, 1)
        weighted = np.where(self.demanding, weighted, 0.0)
        total = float(weighted.sum())
        return weighted / total if total > 0 else np.zeros(len(self.figures))

    def mean_jain(self) -> float:
        """Time-weighted mean of the instantaneous Jain's index over the busy period (NaN if none)."""
        return self.jain_seconds / self.busy_seconds if self.busy_seconds > 0 else math.nan
