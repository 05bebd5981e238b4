"""A min-heap of keys by priority, where a key is put again (a new priority) or discarded in O(log n)
amortised: entries that no longer match their key's current priority are skipped when they reach the top
(lazy deletion) and dropped in one pass once they outnumber the live ones. The cache's oldest Queued job and
the set-aside filing's backoffs are both one. Pure."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class KeyedHeap(Generic[K]):
    def __init__(self) -> None:
        self._live: dict[K, tuple[float, int]] = {}  # key -> (priority, entry number)
        self._heap: list[tuple[float, int, K]] = []  # the entry number breaks ties: keys are never compared
        self._numbers = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def get(self, key: K) -> float | None:
        live = self._live.get(key)
        return live[0] if live is not None else None

    def put(self, key: K, priority: float) -> None:
        """Add the key, or give it a new priority (its earlier entry goes stale)."""
        number = next(self._numbers)
        self._live[key] = (priority, number)
        heapq.heappush(self._heap, (priority, number, key))
        if len(self._heap) > 2 * len(self._live) + 1024:
            self._heap = [(p, n, k) for k, (p, n) in self._live.items()]
            heapq.heapify(self._heap)

    def discard(self, key: K) -> None:
        self._live.pop(key, None)

    def peek(self) -> tuple[float, K] | None:
        """(priority, key) of the live key with the lowest priority (the earliest put among equals)."""
        heap, live = self._heap, self._live
        while heap and live.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)  # discarded, or put again since
        return (heap[0][0], heap[0][2]) if heap else None

    def pop_through(self, priority: float) -> Iterator[K]:
        """Remove and yield, lowest first, the keys whose priority is at most `priority`."""
        while (top := self.peek()) is not None and top[0] <= priority:
            heapq.heappop(self._heap)
            del self._live[top[1]]
            yield top[1]
