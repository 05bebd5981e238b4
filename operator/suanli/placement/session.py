"""A planning session: the planner's working state kept across many calls (the simulator's view).

`planner.plan` answers one request from copies of the ledgers. A body that drives the core over
time (the simulator; later the operator's scheduler loop) instead keeps one `Session`: it places
jobs as they arrive or as capacity frees up, tells the session when a bound job finished
(`release`) and moves its clock (`roll`). The decisions come from the same `planner.plan_one`
as `plan`'s, so a session and a plan agree job by job; only the copying is saved.

Pure: the clock is whatever the caller passes as `now`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from suanli import settings as settings_mod
from suanli.ledger import capacity as capacity_mod
from suanli.ledger import energy as energy_mod
from suanli.ledger import quota as quota_mod
from suanli.placement import decision as decision_mod
from suanli.placement import planner, policies, tenancy
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod

IntArray = npt.NDArray[np.int64]


class Session:
    """Ledgers, slot table and budgets of one fleet, updated in place as jobs bind and finish."""

    def __init__(
        self,
        fleet: fleet_mod.Fleet,
        capacity: capacity_mod.CapacityLedger,
        energy: energy_mod.EnergyLedger,
        now: float,
        settings: settings_mod.Settings | None = None,
        policy: str = policies.SCORE,
        seed: int = 0,
        explain: bool = True,
        quotas: quota_mod.QuotaLedger | None = None,
    ):
        """The session takes ownership of the ledgers (pass copies to keep your own)."""
        self._request = planner.PlanRequest(
            fleet=fleet,
            capacity=capacity,
            energy=energy,
            jobs=(),
            now=now,
            settings=settings or settings_mod.Settings(),
            policy=policy,
            seed=seed,
            quotas=quotas,
        )
        self._work = planner.WorkingState(fleet, capacity, energy, now, quotas=quotas)
        self._explain = explain
        self.now = now

    @property
    def fleet(self) -> fleet_mod.Fleet:
        return self._request.fleet

    @property
    def capacity(self) -> capacity_mod.CapacityLedger:
        return self._work.capacity

    @property
    def energy(self) -> energy_mod.EnergyLedger:
        return self._work.energy

    @property
    def quotas(self) -> quota_mod.QuotaLedger | None:
        return self._work.quotas

    @property
    def slots(self) -> IntArray:
        """slots[p, c]: replicas of c accelerators that fit on pool p now (read-only view)."""
        view = self._work.slots.view()
        view.flags.writeable = False
        return view

    def advance(self, now: float) -> list[str]:
        """Move the clock forward; energy accounts roll into new budget periods. The centers that rolled."""
        if now < self.now:
            raise ValueError(f"a session's clock only moves forward ({now} < {self.now})")
        if now != self.now:
            self.now = now
            self._request = dataclasses.replace(self._request, now=now)
        return self._work.roll(now)

    def place(self, jobs: Iterable[demand_mod.JobDemand]) -> list[decision_mod.Decision]:
        """Decide jobs at the session's clock, queues by fair share then priority and arrival; Bound ones
        hold capacity, energy and quota."""
        return [
            planner.plan_one(self._request, self._work, job, explain=self._explain)
            for job in tenancy.fair_order(jobs, self._work.quotas)
        ]

    def place_one(self, job: demand_mod.JobDemand) -> decision_mod.Decision:
        """Decide one job now (the caller keeps queue order)."""
        return planner.plan_one(self._request, self._work, job, explain=self._explain)

    def release(
        self,
        allocation: capacity_mod.Allocation,
        job: tuple[str, str],
        used_kwh: float,
        carbon_kg: float = 0.0,
        cost: float = 0.0,
    ) -> None:
        """A bound job finished: its gang is free again and its energy is settled as used."""
        self._work.release(self.fleet, allocation, job, used_kwh, carbon_kg, cost)
