"""What jobs settled (energy, carbon, cost, accelerator-hours), per center or queue and budget period.
Pure: no I/O, no clock."""

from __future__ import annotations

import dataclasses
import math

from suanli.kube import objects as kobj

Key = kobj.Key


@dataclasses.dataclass(frozen=True)
class Amounts:
    """What one run (a finished one, or an attempt that ended without finishing) used."""

    kwh: float
    carbon_kg: float = 0.0
    cost: float = 0.0
    accelerator_hours: float = 0.0

    def plus(self, other: Amounts, sign: float = 1.0) -> Amounts:
        return Amounts(max(0.0, self.kwh + sign * other.kwh), max(0.0, self.carbon_kg + sign * other.carbon_kg),
                       max(0.0, self.cost + sign * other.cost),
                       max(0.0, self.accelerator_hours + sign * other.accelerator_hours))


ZERO = Amounts(0.0)


class SettledEnergy:
    """What finished jobs (and their attempts that ended without finishing) settled, per center (or
    queue), summed over its current period.

    Finished jobs are most of the jobs a long-running operator knows: the scheduler must not walk
    them every cycle. Sums are kept as jobs finish or go away and recomputed only when a center's
    period starts anew (a day, week or month)."""

    def __init__(self) -> None:
        # center -> (job, slot) -> (at, amounts); a job has one slot per thing it settled (its finished run,
        # each earlier attempt that ended without finishing), possibly at different centers
        self._entries: dict[str, dict[tuple[Key, int], tuple[float, Amounts]]] = {}
        self._where: dict[Key, list[tuple[str, int]]] = {}
        self._sums: dict[str, tuple[float, Amounts]] = {}  # center -> (period start, sums)

    def put_all(self, key: Key, items: list[tuple[str, float, Amounts]]) -> None:
        """Everything a job settled: (center, at, amounts) each; replaces what it had before. Runs that
        used no energy are left out."""
        self.drop(key)
        where = []
        for slot, (center, at, amounts) in enumerate(items):
            if amounts.kwh <= 0 or not math.isfinite(amounts.kwh):
                continue
            self._entries.setdefault(center, {})[(key, slot)] = (at, amounts)
            where.append((center, slot))
            self._adjust(center, at, amounts, 1.0)
        if where:
            self._where[key] = where

    def drop(self, key: Key) -> None:
        for center, slot in self._where.pop(key, ()):
            finished_at, amounts = self._entries[center].pop((key, slot))
            self._adjust(center, finished_at, amounts, -1.0)

    def _adjust(self, center: str, finished_at: float, amounts: Amounts, sign: float) -> None:
        summed = self._sums.get(center)
        if summed is not None and finished_at >= summed[0]:
            self._sums[center] = (summed[0], summed[1].plus(amounts, sign))

    def amounts(self, center: str, period_start: float) -> Amounts:
        """What jobs settled at `center` at or after `period_start`."""
        summed = self._sums.get(center)
        if summed is None or summed[0] != period_start:
            entries = [a for at, a in self._entries.get(center, {}).values() if at >= period_start]
            summed = (period_start, Amounts(
                math.fsum(a.kwh for a in entries), math.fsum(a.carbon_kg for a in entries),
                math.fsum(a.cost for a in entries), math.fsum(a.accelerator_hours for a in entries)))
            self._sums[center] = summed
        return summed[1]

    def total(self, center: str, period_start: float) -> tuple[float, float]:
        """(kWh, kg CO2e) settled at `center` at or after `period_start`."""
        found = self.amounts(center, period_start)
        return found.kwh, found.carbon_kg
