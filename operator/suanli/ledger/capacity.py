"""Accelerator capacity per pool, node by node: what is free, what a gang takes, what it gives back.

Gang rule: a replica needs `count` accelerators on one node; all replicas of a job go to one
pool, all or none. Replicas are placed best-fit (the node with the least free accelerators
that still fits, lowest index on ties), which keeps whole nodes free for big gangs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
MAX_PER_NODE = 64


class CapacityError(ValueError):
    """A reservation that does not fit; the ledger is unchanged."""


@dataclasses.dataclass(frozen=True)
class Allocation:
    """Where a gang went: pool index, and (node index, accelerators) per replica."""

    pool: int
    nodes: tuple[int, ...]
    count: int

    @property
    def accelerators(self) -> int:
        return len(self.nodes) * self.count


class CapacityLedger:
    """Free accelerators per node for every pool; histograms kept in step for fast slot counts."""

    def __init__(
        self, free_by_pool: Sequence[Sequence[int]], capacity_by_pool: Sequence[Sequence[int]] | None = None
    ):
        self._free = [np.array(list(nodes), dtype=np.int64) for nodes in free_by_pool]
        caps = capacity_by_pool if capacity_by_pool is not None else free_by_pool
        self._capacity = [np.array(list(nodes), dtype=np.int64) for nodes in caps]
        for p, (free, cap) in enumerate(zip(self._free, self._capacity, strict=True)):
            if free.shape != cap.shape:
                raise ValueError(f"pool {p}: {free.size} free entries for {cap.size} nodes")
            if np.any(free < 0) or np.any(free > cap):
                raise ValueError(f"pool {p}: free accelerators must be between 0 and the node's capacity")
        self._hist = np.zeros((len(self._free), MAX_PER_NODE + 1), dtype=np.int64)
        self._free_sum = np.zeros(len(self._free), dtype=np.int64)  # per pool, kept in step by _rebuild
        self._capacity_total = int(sum(int(c.sum()) for c in self._capacity))
        for p in range(len(self._free)):
            self._rebuild(p)

    @classmethod
    def uniform(cls, nodes_and_sizes: Sequence[tuple[int, int]]) -> CapacityLedger:
        """Empty pools of `nodes` identical nodes with `size` accelerators each."""
        return cls([[size] * nodes for nodes, size in nodes_and_sizes])

    def copy(self) -> CapacityLedger:
        clone = CapacityLedger.__new__(CapacityLedger)
        clone._free = [f.copy() for f in self._free]
        clone._capacity = self._capacity  # never mutated
        clone._hist = self._hist.copy()
        clone._free_sum = self._free_sum.copy()
        clone._capacity_total = self._capacity_total
        return clone

    def idle(self) -> CapacityLedger:
        """The same nodes with nothing allocated."""
        return CapacityLedger([c.tolist() for c in self._capacity])

    def _rebuild(self, pool: int) -> None:
        free = np.minimum(self._free[pool], MAX_PER_NODE)
        self._hist[pool] = np.bincount(free, minlength=MAX_PER_NODE + 1)[: MAX_PER_NODE + 1]
        self._free_sum[pool] = int(self._free[pool].sum())

    @property
    def pools(self) -> int:
        return len(self._free)

    def histogram(self) -> IntArray:
        """hist[p, k]: nodes of pool p with exactly k free accelerators (a copy)."""
        return self._hist.copy()

    def histogram_row(self, pool: int) -> IntArray:
        return np.array(self._hist[pool], dtype=np.int64)

    def free(self, pool: int) -> int:
        return int(self._free_sum[pool])

    def busy_fraction(self) -> float:
        """Fraction of all the ledger's accelerators allocated now (0 for an empty fleet)."""
        if self._capacity_total <= 0:
            return 0.0
        return 1.0 - float(self._free_sum.sum()) / self._capacity_total

    def capacity(self, pool: int) -> int:
        return int(self._capacity[pool].sum())

    def free_per_node(self, pool: int) -> tuple[int, ...]:
        return tuple(int(x) for x in self._free[pool])

    def slots(self, pool: int, count: int) -> int:
        """Replicas of `count` accelerators that fit in the pool now."""
        return int((self._free[pool] // count).sum())

    def reserve(self, pool: int, replicas: int, count: int) -> Allocation:
        """Place a gang best-fit; all or nothing."""
        if count < 1 or replicas < 1:
            raise CapacityError("replicas and count must be at least 1")
        free = self._free[pool].copy()
        nodes: list[int] = []
        for _ in range(replicas):
            fits = np.flatnonzero(free >= count)
            if fits.size == 0:
                raise CapacityError(
                    f"pool {pool}: gang of {replicas}x{count} does not fit (free per node {self.free_per_node(pool)})"
                )
            node = int(fits[np.argmin(free[fits])])
            free[node] -= count
            nodes.append(node)
        self._free[pool] = free
        self._rebuild(pool)
        return Allocation(pool=pool, nodes=tuple(nodes), count=count)

    def fill(self, pool: int, replicas: int, count: int) -> int:
        """Place up to `replicas` independent replicas of `count` accelerators best-fit; returns how many
        were placed (not all-or-nothing). Same nodes as `reserve(pool, 1, count)` called `replicas`
        times until one fails: best-fit fills the tightest fitting node before moving on (its free
        count only shrinks, so it stays the tightest), so nodes are filled in (free, index) order."""
        if count < 1 or replicas < 1:
            return 0
        free = self._free[pool].copy()
        fits = np.flatnonzero(free >= count)
        placed = 0
        for node in fits[np.lexsort((fits, free[fits]))]:
            if placed == replicas:
                break
            take = min(replicas - placed, int(free[node]) // count)
            free[node] -= take * count
            placed += take
        if placed:
            self._free[pool] = free
            self._rebuild(pool)
        return placed

    def _per_node(self, pool: int, nodes: Sequence[int]) -> IntArray:
        """Replicas per node of pool `pool` for a list of node indexes (one entry per replica)."""
        size = self._free[pool].size
        index = np.asarray(nodes, dtype=np.int64)
        if index.size and (int(index.min()) < 0 or int(index.max()) >= size):
            raise CapacityError(f"pool {pool}: node index out of range 0..{size - 1} in {tuple(nodes)}")
        return np.bincount(index, minlength=size)

    def take(self, pool: int, replicas_per_node: IntArray, count: int) -> None:
        """Take `replicas_per_node[i]` replicas of `count` accelerators from node i (a known placement,
        aggregated); all or nothing."""
        free = self._free[pool] - np.asarray(replicas_per_node, dtype=np.int64) * count
        if np.any(free < 0):
            raise CapacityError(f"pool {pool}: taking {count} per replica on {replicas_per_node.tolist()} oversubscribes a node")
        self._free[pool] = free
        self._rebuild(pool)

    def reserve_on(self, allocation: Allocation) -> None:
        """Take exactly the given nodes (replaying a known placement); all or nothing."""
        free = self._free[allocation.pool] - self._per_node(allocation.pool, allocation.nodes) * allocation.count
        if np.any(free < 0):
            raise CapacityError(
                f"pool {allocation.pool}: allocation {allocation.nodes} oversubscribes a node"
            )
        self._free[allocation.pool] = free
        self._rebuild(allocation.pool)

    def release(self, allocation: Allocation) -> None:
        """Give a gang's accelerators back."""
        free = self._free[allocation.pool] + self._per_node(allocation.pool, allocation.nodes) * allocation.count
        if np.any(free > self._capacity[allocation.pool]):
            raise CapacityError(
                f"pool {allocation.pool}: releasing {allocation.nodes} frees more than the nodes hold"
            )
        self._free[allocation.pool] = free
        self._rebuild(allocation.pool)

    def oversubscription(self) -> int:
        """Accelerators allocated beyond capacity on the worst node (0 unless the ledger is broken)."""
        worst = min((int(f.min()) for f in self._free if f.size), default=0)
        return max(0, -worst)
