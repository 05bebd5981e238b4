"""The operator's clock, injectable: the only place the operator reads the time.

The pure core never reads a clock (it is handed `now`); the operator asks a `Clock`.
Tests and the simulator pass a `ManualClock` and move it themselves.

Test-only: `from_environment()` honours `SUANLI_CLOCK_OFFSET_FILE=/path`. The file holds a number of
seconds added to wall time (missing or empty: 0); a test rewrites it while the operator runs to
jump past a budget-period boundary or to a deferred start without waiting real days. The file is
re-read at most every `OffsetFileClock.REREAD_SECONDS`; `watch()` calls back on each change so the
scheduler recomputes its next wake-up at once. Never set it in production: every timestamp the
operator writes (boundTime, plannedStart, events) follows the shifted clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

LOG = logging.getLogger("suanli.clock")
OFFSET_FILE_ENV = "SUANLI_CLOCK_OFFSET_FILE"


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for measuring durations."""
        ...


class SystemClock:
    """Wall time and the process's monotonic clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: float = 1_800_000_000.0):
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds


def parse_offset(text: str) -> float:
    """Seconds from an offset file's content: a float, blank = 0. ValueError otherwise."""
    text = text.strip()
    if not text:
        return 0.0
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"offset must be a finite number of seconds, got {text!r}")
    return value


class OffsetFileClock:
    """Wall time plus an offset (seconds) read from a file that a test may rewrite (test-only).

    `monotonic()` is the real monotonic clock: durations measured by the operator stay real.
    A file that cannot be read or parsed keeps the last good offset (logged once per change).
    """

    REREAD_SECONDS = 0.5

    def __init__(self, path: str | os.PathLike[str], base: Clock | None = None):
        self.path = Path(path)
        self.base: Clock = base or SystemClock()
        self.offset = 0.0
        self._read_at = -float("inf")
        self._last_error = ""
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> bool:
        """Re-read the file if due; True when the offset changed."""
        mono = self.base.monotonic()
        if not force and mono - self._read_at < self.REREAD_SECONDS:
            return False
        self._read_at = mono
        try:
            value = parse_offset(self.path.read_text()) if self.path.exists() else 0.0
        except (OSError, ValueError) as exc:
            if str(exc) != self._last_error:
                self._last_error = str(exc)
                LOG.warning("%s=%s unusable (%s); keeping offset %.3fs", OFFSET_FILE_ENV, self.path, exc, self.offset)
            return False
        self._last_error = ""
        if value == self.offset:
            return False
        LOG.warning("test clock: offset %.3fs -> %.3fs (from %s)", self.offset, value, self.path)
        self.offset = value
        return True

    def now(self) -> float:
        self._refresh()
        return self.base.now() + self.offset

    def monotonic(self) -> float:
        return self.base.monotonic()

    async def watch(self, changed: Callable[[], None]) -> None:
        """Forever: re-read the file every REREAD_SECONDS and call `changed()` when the offset moved."""
        while True:
            await asyncio.sleep(self.REREAD_SECONDS)
            if self._refresh(force=True):
                changed()


def from_environment(base: Clock | None = None) -> Clock:
    """The operator's clock: `base` (default: the system clock), shifted by the offset file named in
    SUANLI_CLOCK_OFFSET_FILE when that variable is set (tests only)."""
    path = os.environ.get(OFFSET_FILE_ENV)
    base = base or SystemClock()
    if not path:
        return base
    LOG.warning("test clock: %s=%s; wall time is shifted by the offset in that file", OFFSET_FILE_ENV, path)
    return OffsetFileClock(path, base)
