"""What bound, unfinished jobs hold, summed the way a snapshot needs it. Pure: no I/O, no clock.

A bound job holds accelerators for its replicas whose pods are not on a node yet (pods that are
on a node count themselves, in the cache's per-node sums), and its estimated energy. A binding that
names the node of each replica (`status.binding.nodes`) holds exactly those nodes (`pinned`): its
pods are pinned there before they are released to the scheduler. One written before that field
existed holds some replicas of its size in its pool (`pending`), placed best-fit. Holds are
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
    node yet (`missing` of them; on `nodes`, one name per missing replica, when its binding names
    them), and its estimated energy."""

    center: str
    pool: str
    count: int
    missing: int
    kwh: float
    nodes: tuple[str, ...] = ()


class Holds:
    """Every job's hold, and the sums a snapshot reads: replicas not placed per (center, pool,
    count), those of them bound to a node per node, held kWh per center, and the active jobs that
    hold nothing (the queue)."""

    def __init__(self) -> None:
        self.holds: dict[Key, Hold] = {}
        self.pending: dict[tuple[str, str, int], int] = {}  # (center, pool, count) -> replicas not placed, no node
        # (center, pool, count) -> node -> replicas bound to that node and not on it yet
        self.pinned: dict[tuple[str, str, int], dict[str, int]] = {}
        self.held_kwh: dict[str, dict[Key, float]] = {}  # center -> job -> estimated kWh
        self.waiting: set[Key] = set()  # active jobs that hold nothing
        self.dirty: set[Key] = set()

    def touch(self, key: Key) -> None:
        self.dirty.add(key)

    def refresh(self, hold_of: Callable[[Key], Hold | None], active: Callable[[Key], bool]) -> set[Key]:
        """Bring the holds of the jobs touched since the last call up to date; returns those jobs."""
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
                self._count(old, -1)
                self.held_kwh[old.center].pop(key, None)
            if new is not None:
                self.holds[key] = new
                self._count(new, +1)
                self.held_kwh.setdefault(new.center, {})[key] = new.kwh
        return dirty

    def _count(self, hold: Hold, sign: int) -> None:
        if not hold.missing:
            return
        slot = (hold.center, hold.pool, hold.count)
        if not hold.nodes:
            left = self.pending.get(slot, 0) + sign * hold.missing
            if left > 0:
                self.pending[slot] = left
            else:
                self.pending.pop(slot, None)
            return
        per_node = self.pinned.setdefault(slot, {})
        for node in hold.nodes:
            left = per_node.get(node, 0) + sign
            if left > 0:
                per_node[node] = left
            else:
                per_node.pop(node, None)
        if not per_node:
            del self.pinned[slot]
