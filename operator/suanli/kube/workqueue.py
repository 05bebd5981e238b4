"""Per-job write bookkeeping for the scheduler: client-go's rate-limited work queue, in the shape the
operator needs.

- One write chain in flight per job (`busy` / `start` / `done`): a job's status writes never race.
- Failures counted per job in a row, each retry after a delay that doubles (operator.retry_seconds
  up to operator.retry_max_seconds), never at once: an API server that is down or overloaded gets
  no write storm (`failed`); success forgets the count (`succeeded`).
- A job whose binding could not be written sits out planning until its retry is due (`hold`).
- Everything is keyed by the job's (namespace, name) AND tied to its uid: when a job is deleted, or
  deleted and recreated under the same name, `drop` cancels its timers and forgets its failures,
  so a retry meant for the old job never fires for the new one.

The timer is injectable (`later(delay, fn)` returning something with `cancel()`): the operator uses
the event loop's `call_later`, tests a fake that fires when told.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from suanli import settings as settings_mod
from suanli.kube import objects as kobj

Key = kobj.Key


class Cancellable(Protocol):
    def cancel(self) -> Any: ...


Later = Callable[[float, Callable[[], None]], Cancellable]


def doubling(base: float, cap: float, n: int) -> float:
    """`base` seconds after the first failure, doubling with each after it, at most `cap`."""
    return float(min(cap, base * 2 ** min(n - 1, 30)))


def loop_later(delay: float, fn: Callable[[], None]) -> Cancellable:
    return asyncio.get_running_loop().call_later(delay, fn)


class WorkQueue:
    def __init__(self, settings: settings_mod.OperatorSettings, later: Later | None = None):
        self.settings = settings
        self.later: Later = later or loop_later
        self.in_flight: set[Key] = set()
        self.failures: dict[Key, int] = {}
        self.held: set[Key] = set()
        self._timers: dict[Key, tuple[str, Cancellable]] = {}  # key -> (uid, pending retry)
        self._checks: dict[Key, tuple[str, Cancellable]] = {}  # key -> (uid, pending look at a deadline)

    # --- one chain per job ---------------------------------------------------------------

    def busy(self, key: Key) -> bool:
        return key in self.in_flight

    def start(self, key: Key) -> None:
        self.in_flight.add(key)

    def done(self, key: Key) -> None:
        self.in_flight.discard(key)

    # --- failures and retries ----------------------------------------------------------

    def delay(self, failures: int) -> float:
        """Seconds before the retry after `failures` failures in a row."""
        return doubling(self.settings.retry_seconds, self.settings.retry_max_seconds, failures)

    def failed(self, key: Key, uid: str, retry: Callable[[], None]) -> float:
        """A write for job `key` (uid `uid`) failed: `retry` runs after the backoff. Returns the delay."""
        n = self.failures.get(key, 0) + 1
        self.failures[key] = n
        delay = self.delay(n)
        self._set(self._timers, key, uid, delay, retry)
        return delay

    def _set(
        self, timers: dict[Key, tuple[str, Cancellable]], key: Key, uid: str, delay: float, fn: Callable[[], None]
    ) -> None:
        """One pending timer per job in `timers`: a new one replaces (cancels) the old."""
        old = timers.pop(key, None)
        if old is not None:
            old[1].cancel()

        def fire() -> None:
            if timers.get(key, ("", None))[0] == uid:
                del timers[key]
            fn()

        timers[key] = (uid, self.later(max(0.0, delay), fire))

    def succeeded(self, key: Key) -> None:
        self.failures.pop(key, None)

    def hold(self, key: Key, uid: str, release: Callable[[], None]) -> float:
        """A binding of job `key` could not be written: keep it out of planning until its retry is
        due, then `release`. Returns the delay."""
        self.held.add(key)

        def back() -> None:
            self.held.discard(key)
            release()

        return self.failed(key, uid, back)

    def check_at(self, key: Key, uid: str, delay: float, fn: Callable[[], None]) -> None:
        """Run `fn` in `delay` seconds (a deadline to look at job `key` again, e.g. its pods-ready
        timeout), replacing an earlier one for the same job."""
        self._set(self._checks, key, uid, delay, fn)

    def drop(self, key: Key) -> None:
        """Job `key` is gone (or is another job now): cancel its retry and checks, forget its failures."""
        for timers in (self._timers, self._checks):
            timer = timers.pop(key, None)
            if timer is not None:
                timer[1].cancel()
        self.failures.pop(key, None)
        self.held.discard(key)

    def pending(self) -> set[Key]:
        """Jobs with a failure count, a pending retry or check, or a hold."""
        return set(self.failures) | set(self._timers) | set(self._checks) | self.held

    def uid_of(self, key: Key) -> str | None:
        """The uid of the job a pending retry or check of `key` was made for."""
        timer = self._timers.get(key) or self._checks.get(key)
        return timer[0] if timer is not None else None
