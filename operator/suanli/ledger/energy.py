"""Energy ledger per center: budget periods in the center's time zone, reservations, settlement.

A bound job reserves its estimated facility kWh (PUE included) at its center; completion settles
it: the reservation is dropped and the kWh actually used is added to `used` of the period the job
finished in. Each job's energy is therefore counted exactly once, as reserved or as used.
Reservations outlive a period boundary (the job still runs); `used` starts again at zero.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import zoneinfo
from collections.abc import Iterable

JobKey = tuple[str, str]


def period_bounds(epoch: float, zone: str, period: str) -> tuple[float, float, str]:
    """(start, end, label) of the Day/Week/Month containing an instant, in local time."""
    tz = zoneinfo.ZoneInfo(zone)
    local = datetime.datetime.fromtimestamp(epoch, tz=tz)
    day = local.date()
    if period == "Day":
        first, nxt = day, day + datetime.timedelta(days=1)
        label = f"Day {first.isoformat()}"
    elif period == "Week":
        first = day - datetime.timedelta(days=day.weekday())
        nxt = first + datetime.timedelta(days=7)
        label = f"Week of {first.isoformat()}"
    elif period == "Month":
        first = day.replace(day=1)
        nxt = (first + datetime.timedelta(days=32)).replace(day=1)
        label = f"Month {first.strftime('%Y-%m')}"
    else:
        raise ValueError(f"unknown budget period {period!r}: use Day, Week or Month")
    start = datetime.datetime(first.year, first.month, first.day, tzinfo=tz).timestamp()
    end = datetime.datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()
    return start, end, label


@dataclasses.dataclass
class CenterEnergy:
    """One center's account."""

    name: str
    zone: str
    budget_kwh: float | None
    period: str
    period_start: float = -math.inf
    period_end: float = -math.inf
    period_label: str = ""
    used_kwh: float = 0.0  # settled in the current period
    total_used_kwh: float = 0.0  # settled since the ledger began
    total_carbon_kg: float = 0.0
    total_cost: float = 0.0
    reserved: dict[JobKey, float] = dataclasses.field(default_factory=dict)
    held_kwh: float = 0.0  # reserved in bulk by jobs placed before this ledger was built (`hold`)

    @property
    def reserved_kwh(self) -> float:
        return self.held_kwh + sum(self.reserved.values())

    @property
    def remaining_kwh(self) -> float:
        if self.budget_kwh is None:
            return math.inf
        return self.budget_kwh - self.used_kwh - self.reserved_kwh


class EnergyError(ValueError):
    """An operation the ledger refuses; the ledger is unchanged."""


class EnergyLedger:
    """Accounts for every center; `roll(now)` moves each into the period containing now."""

    def __init__(self, centers: Iterable[tuple[str, str, float | None, str]]):
        self._centers = {
            name: CenterEnergy(name, zone, budget, period) for name, zone, budget, period in centers
        }
        self._where: dict[JobKey, str] = {}

    def copy(self) -> EnergyLedger:
        clone = EnergyLedger(())
        clone._centers = {
            name: dataclasses.replace(account, reserved=dict(account.reserved))
            for name, account in self._centers.items()
        }
        clone._where = dict(self._where)
        return clone

    def account(self, center: str) -> CenterEnergy:
        return self._centers[center]

    def accounts(self) -> list[CenterEnergy]:
        return [self._centers[name] for name in sorted(self._centers)]

    def roll(self, now: float) -> list[str]:
        """Start new periods where `now` has passed the end; returns the centers that rolled."""
        rolled = []
        for account in self._centers.values():
            if now >= account.period_end or now < account.period_start:
                start, end, label = period_bounds(now, account.zone, account.period)
                if account.period_end != -math.inf:
                    rolled.append(account.name)
                account.period_start, account.period_end, account.period_label = start, end, label
                account.used_kwh = 0.0
        return rolled

    def next_boundary(self) -> float:
        """The earliest period end over centers with a budget (+inf without budgets)."""
        ends = [a.period_end for a in self._centers.values() if a.budget_kwh is not None]
        return min(ends, default=math.inf)

    def remaining(self, center: str) -> float:
        return self._centers[center].remaining_kwh

    def reserve(self, center: str, job: JobKey, kwh: float) -> None:
        if kwh < 0 or not math.isfinite(kwh):
            raise EnergyError(f"cannot reserve {kwh} kWh for {job}: must be a finite, non-negative number")
        if job in self._where:
            raise EnergyError(f"{job[0]}/{job[1]} already holds a reservation at {self._where[job]}")
        self._centers[center].reserved[job] = kwh
        self._where[job] = center

    def holds(self, job: JobKey) -> bool:
        return job in self._where

    def release(self, job: JobKey) -> float:
        """Drop a reservation without using it (job deleted or failed before running); returns it."""
        center = self._where.pop(job, None)
        if center is None:
            return 0.0
        return self._centers[center].reserved.pop(job)

    def hold(self, center: str, kwh: float) -> None:
        """Reserve `kwh` for jobs already placed and still running, as one sum (the operator
        rebuilding its ledger each cycle: it never settles those jobs through this ledger)."""
        if kwh < 0 or not math.isfinite(kwh):
            raise EnergyError(f"cannot hold {kwh} kWh at {center}: must be a finite, non-negative number")
        self._centers[center].held_kwh += kwh

    def add_used(self, center: str, used_kwh: float, carbon_kg: float = 0.0) -> None:
        """Energy already settled in the current period by jobs that are no longer held here (the
        operator rebuilding its ledger from finished jobs' statuses)."""
        if used_kwh < 0 or not math.isfinite(used_kwh):
            raise EnergyError(f"used energy must be a finite, non-negative number (got {used_kwh})")
        account = self._centers[center]
        account.used_kwh += used_kwh
        account.total_used_kwh += used_kwh
        account.total_carbon_kg += carbon_kg

    def settle(self, job: JobKey, used_kwh: float, carbon_kg: float = 0.0, cost: float = 0.0) -> None:
        """A job finished: its reservation becomes `used_kwh` in the current period."""
        center = self._where.pop(job, None)
        if center is None:
            raise EnergyError(f"{job[0]}/{job[1]} has no reservation to settle")
        if used_kwh < 0:
            raise EnergyError(f"used energy must not be negative (got {used_kwh})")
        account = self._centers[center]
        account.reserved.pop(job)
        account.used_kwh += used_kwh
        account.total_used_kwh += used_kwh
        account.total_carbon_kg += carbon_kg
        account.total_cost += cost
