"""The write threads: a pool whose threads take the call with the lowest priority number first.

`client.Api` runs its writes on two of these (binding-critical writes by ticket, everything else
first come); see kube/client.py for why.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class PriorityPool:
    """Threads taking the call with the lowest priority number first (then first come)."""

    def __init__(self, workers: int, name: str):
        self._queue: queue.PriorityQueue[tuple[int, int, Any, Any]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: int, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put((priority, next(self._order), future, fn))
        return future

    def _work(self) -> None:
        while True:
            _, _, future, fn = self._queue.get()
            if future is None:
                return  # shut down
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the awaiting coroutine
                future.set_exception(exc)

    def shutdown(self) -> None:
        """Cancel what has not started and stop the threads once their current call returns."""
        while True:
            try:
                _, _, future, _ = self._queue.get_nowait()
            except queue.Empty:
                break
            if future is not None:
                future.cancel()
        for _ in self._threads:
            self._queue.put((sys.maxsize, next(self._order), None, None))


def binding_workers(workers: int) -> int:
    """Threads of the binding-critical pool, beside `workers` for everything else: as many, since
    bind throughput is these threads over the API server's latency for two writes per job."""
    return max(2, workers)
