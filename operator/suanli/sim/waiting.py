"""The replay's waiting jobs, grouped by what decides whether they could run now: gang shape, the pools
they could ever use and their ComputeQueue. A group is asked only when a pool it could use has slots for
its gang (`fits`) and its queue has accelerators left for it (`quota_room`): a queue of thousands is not
re-scored on every event. Pure.
"""

from __future__ import annotations

import bisect

import numpy as np
import numpy.typing as npt

from suanli.ledger import quota as quota_mod
from suanli.placement import queue as queue_mod
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod

GroupKey = tuple[int, int, bytes, str]


class Waiting:
    """Queued jobs grouped by what decides whether they could fit: gang shape, usable pools and the
    ComputeQueue (whose quota may have no room for them)."""

    def __init__(self, fleet: fleet_mod.Fleet) -> None:
        self.fleet = fleet
        self.groups: dict[GroupKey, list[tuple[tuple[int, float, str, str], int]]] = {}
        self.masks: dict[GroupKey, npt.NDArray[np.bool_]] = {}
        self.dimensions: dict[GroupKey, tuple[str, ...]] = {}  # accelerators/TYPE/MODEL of the usable pools
        self.size = 0

    def add(self, job: demand_mod.JobDemand, index: int, mask: npt.NDArray[np.bool_]) -> None:
        key = (min(job.count, fleet_mod.MAX_PER_NODE), job.replicas, mask.tobytes(), job.queue or "")
        if key not in self.masks:
            self.masks[key] = mask
            pools = [self.fleet.pools[int(p)] for p in np.flatnonzero(mask)]
            self.dimensions[key] = tuple(sorted({f"accelerators/{p.accelerator_type}/{p.model}" for p in pools}))
        bisect.insort(self.groups.setdefault(key, []), (queue_mod.order_key(job), index))
        self.size += 1

    def indices(self) -> list[int]:
        return [i for members in self.groups.values() for _, i in members]

    def remove(self, taken: dict[GroupKey, set[int]]) -> None:
        """Drop the members at these positions of their groups (bound, parked or deferred in one plan)."""
        for key, positions in taken.items():
            members = self.groups[key]
            self.groups[key] = [m for p, m in enumerate(members) if p not in positions]
            self.size -= len(positions)
            if not self.groups[key]:
                del self.groups[key]
                del self.masks[key]
                del self.dimensions[key]


def fits(slots: npt.NDArray[np.int64], key: GroupKey, mask: npt.NDArray[np.bool_]) -> bool:
    count, replicas, _, _ = key
    return bool(np.any(slots[mask, count] >= replicas))


def quota_room(quotas: quota_mod.QuotaLedger | None, key: GroupKey, dimensions: tuple[str, ...]) -> bool:
    """Whether the group's queue could take one more of its gangs on some pool it could use, in
    accelerators (the planner still checks every dimension); always without a queue."""
    count, replicas, _, queue = key
    if quotas is None or not queue or not quotas.has(queue):
        return True
    need = count * replicas
    return any(quotas.left(queue, dim) >= need for dim in dimensions)
