"""Energy settled by finished jobs, per center and budget period. Pure: no I/O, no clock."""

from __future__ import annotations

import math

from suanli.kube import objects as kobj

Key = kobj.Key


class SettledEnergy:
    """Energy settled by finished jobs (and by their attempts that ended without finishing), per center,
    summed over the center's current period.

    Finished jobs are most of the jobs a long-running operator knows: the scheduler must not walk
    them every cycle. Sums are kept as jobs finish or go away and recomputed only when a center's
    period starts anew (a day, week or month)."""

    def __init__(self) -> None:
        # center -> (job, slot) -> (at, kWh, kg); a job has one slot per thing it settled (its finished run,
        # each earlier attempt that ended without finishing), possibly at different centers
        self._entries: dict[str, dict[tuple[Key, int], tuple[float, float, float]]] = {}
        self._where: dict[Key, list[tuple[str, int]]] = {}
        self._sums: dict[str, tuple[float, float, float]] = {}  # center -> (period start, kWh, kg)

    def put(self, key: Key, center: str, finished_at: float, kwh: float, carbon: float) -> None:
        self.put_all(key, [(center, finished_at, kwh, carbon)])

    def put_all(self, key: Key, items: list[tuple[str, float, float, float]]) -> None:
        """Everything a job settled: (center, at, kWh, kg CO2e) each; replaces what it had before."""
        self.drop(key)
        where = []
        for slot, (center, at, kwh, carbon) in enumerate(items):
            if kwh <= 0 or not math.isfinite(kwh):
                continue
            self._entries.setdefault(center, {})[(key, slot)] = (at, kwh, carbon)
            where.append((center, slot))
            self._adjust(center, at, kwh, carbon)
        if where:
            self._where[key] = where

    def drop(self, key: Key) -> None:
        for center, slot in self._where.pop(key, ()):
            finished_at, kwh, carbon = self._entries[center].pop((key, slot))
            self._adjust(center, finished_at, -kwh, -carbon)

    def _adjust(self, center: str, finished_at: float, kwh: float, carbon: float) -> None:
        summed = self._sums.get(center)
        if summed is not None and finished_at >= summed[0]:
            self._sums[center] = (summed[0], max(0.0, summed[1] + kwh), max(0.0, summed[2] + carbon))

    def total(self, center: str, period_start: float) -> tuple[float, float]:
        """(kWh, kg CO2e) settled by jobs that finished at or after `period_start`."""
        summed = self._sums.get(center)
        if summed is None or summed[0] != period_start:
            entries = self._entries.get(center, {}).values()
            summed = (
                period_start,
                math.fsum(e[1] for e in entries if e[0] >= period_start),
                math.fsum(e[2] for e in entries if e[0] >= period_start),
            )
            self._sums[center] = summed
        return summed[1], summed[2]

