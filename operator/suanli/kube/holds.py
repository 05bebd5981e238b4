"""What bound, unfinished jobs hold, summed the way a snapshot needs it. Pure: no I/O, no clock.

A bound job holds accelerators for its replicas whose pods are not on a node yet (pods that are
on a node count themselves, in the cache's per-node sums), and its estimated energy. Holds are
recomputed only for jobs something happened to (their status, pods or workload changed): the
cache marks them dirty and `refresh` asks it for each one's new hold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from suanli.kube import objects as kobj

Key = kobj.Key


@dataclasses.dataclass(frozen=True)
class Hold:
    """What one bound, unfinished job holds: accelerators for its replicas whose pods are not on a
    node yet, and its estimated energy."""

    center: str
    pool: str
    count: int
    missing: int
    kwh: float


class Holds:
    """Every job's hold, and the sums a snapshot reads: replicas not placed per (center, pool,
    count), held kWh per center, and the active jobs that hold nothing (the queue)."""

    def __init__(self) -> None:
        self.holds: dict[Key, Hold] = {}
        self.pending: dict[tuple[str, str, int], int] = {}  # (center, pool, count) -> replicas not placed
        self.held_kwh: dict[str, dict[Key, float]] = {}  # center -> job -> estimated kWh
        self.waiting: set[Key] = set()  # active jobs that hold nothing
        self.dirty: set[Key] = set()

    def touch(self, key: Key) -> None:
        self.dirty.add(key)

    def refresh(self, hold_of: Callable[[Key], Hold | None], active: Callable[[Key], bool]) -> None:
        dirty, self.dirty = self.dirty, set()
        for key in dirty:
            new = hold_of(key)
            if new is None and active(key):
                self.waiting.add(key)
            else:
                self.waiting.discard(key)
            old = self.holds.pop(key, None)
            if old == new:
                if new is not None:
                    self.holds[key] = new
                continue
            if old is not None:
                slot = (old.center, old.pool, old.count)
                left = self.pending.get(slot, 0) - old.missing
                if left > 0:
                    self.pending[slot] = left
                else:
                    self.pending.pop(slot, None)
                self.held_kwh[old.center].pop(key, None)
            if new is not None:
                self.holds[key] = new
                if new.missing:
                    slot = (new.center, new.pool, new.count)
                    self.pending[slot] = self.pending.get(slot, 0) + new.missing
                self.held_kwh.setdefault(new.center, {})[key] = new.kwh
