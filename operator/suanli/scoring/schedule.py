"""Daily schedules (carbon intensity, price) as periodic minute profiles, integrated exactly.

A schedule is a constant plus windows [start, end) in local wall-clock time. It becomes a
1440-minute profile and its cumulative sum, so the mean over any window of any length is two
look-ups: F(a + d) - F(a), with F(x) = floor(x / 1440) * day_total + cum[x mod 1440]
(linear inside a minute). Local time comes from the center's IANA zone at the window start,
so DST and zones with odd offsets are handled at the start instant; a window that crosses a DST
change is integrated on the wall clock of its start (at most one hour off in that one window).
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from suanli.api import common

MINUTES_PER_DAY = 1440
FloatArray = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class Window:
    """A daily window [start_minute, end_minute) of local time with its value."""

    start_minute: int
    end_minute: int
    value: float


def profile(base: float, windows: Sequence[Window]) -> FloatArray:
    """Per-minute values over one local day; later windows override earlier ones."""
    values = np.full(MINUTES_PER_DAY, float(base))
    for window in windows:
        if window.start_minute == window.end_minute:
            values[:] = window.value
        elif window.start_minute < window.end_minute:
            values[window.start_minute : window.end_minute] = window.value
        else:  # wraps midnight, e.g. 23:00-07:00
            values[window.start_minute :] = window.value
            values[: window.end_minute] = window.value
    return values


def value_at(base: float, windows: Sequence[Window], minute: float) -> float:
    """The value in force at a local minute of the day: `profile(base, windows)[minute]` without the array."""
    m = int(minute) % MINUTES_PER_DAY
    value = float(base)
    for w in windows:  # later windows override earlier ones, as in `profile`
        if w.start_minute == w.end_minute:
            value = w.value
        elif w.start_minute < w.end_minute:
            if w.start_minute <= m < w.end_minute:
                value = w.value
        elif m >= w.start_minute or m < w.end_minute:  # wraps midnight
            value = w.value
    return value


def cumulative(values: FloatArray) -> FloatArray:
    """cum[i] = sum of values[0:i], length 1441."""
    out = np.zeros(MINUTES_PER_DAY + 1)
    np.cumsum(values, out=out[1:])
    return out


def windows_from(pairs: Iterable[tuple[str, str, float]]) -> list[Window]:
    return [Window(common.parse_clock(s), common.parse_clock(e), v) for s, e, v in pairs]


def local_minute(epoch_seconds: float, zone: str) -> float:
    """Minutes after local midnight at an instant, in the given IANA zone."""
    moment = datetime.datetime.fromtimestamp(epoch_seconds, tz=zoneinfo.ZoneInfo(zone))
    return moment.hour * 60 + moment.minute + (moment.second + moment.microsecond / 1e6) / 60


def integral(cum: FloatArray, minute: FloatArray | float) -> FloatArray:
    """F(x): the integral of the periodic profile from local midnight of day 0 to x minutes.

    `cum` is (K, 1441) for K profiles or (1441,) for one; with (K, 1441) the caller passes
    flat indices via `integral_rows`.
    """
    x = np.asarray(minute, dtype=np.float64)
    days = np.floor(x / MINUTES_PER_DAY)
    rest = x - days * MINUTES_PER_DAY
    lo = np.minimum(rest.astype(np.int64), MINUTES_PER_DAY - 1)
    frac = rest - lo
    values = np.asarray(cum[lo] + frac * (cum[lo + 1] - cum[lo]), dtype=np.float64)
    return np.asarray(days * cum[MINUTES_PER_DAY] + values, dtype=np.float64)


def integral_rows(cum_flat: FloatArray, row: npt.NDArray[np.int64], minute: FloatArray) -> FloatArray:
    """F(x) for many profiles at once: `cum_flat` is K*1441 long, `row` picks the profile."""
    days = np.floor(minute * (1.0 / MINUTES_PER_DAY))
    rest = minute - days * MINUTES_PER_DAY
    lo = rest.astype(np.int64)
    np.minimum(lo, MINUTES_PER_DAY - 1, out=lo)
    frac = rest - lo
    base = row * (MINUTES_PER_DAY + 1)
    c_lo = cum_flat[base + lo]
    c_hi = cum_flat[base + lo + 1]
    day_total = cum_flat[base + MINUTES_PER_DAY]
    return np.asarray(days * day_total + c_lo + frac * (c_hi - c_lo), dtype=np.float64)


def edges_between(windows: Sequence[Window], start_epoch: float, end_epoch: float, zone: str) -> list[float]:
    """Instants in (start, end] where a window begins or ends, in epoch seconds (local wall clock)."""
    if not windows:
        return []
    tz = zoneinfo.ZoneInfo(zone)
    minutes = sorted({w.start_minute for w in windows} | {w.end_minute for w in windows})
    first = datetime.datetime.fromtimestamp(start_epoch, tz=tz).date()
    last = datetime.datetime.fromtimestamp(end_epoch, tz=tz).date()
    out: list[float] = []
    day = first
    while day <= last:
        for m in minutes:
            local = datetime.datetime(day.year, day.month, day.day, m // 60, m % 60, tzinfo=tz)
            t = local.timestamp()
            if start_epoch < t <= end_epoch:
                out.append(t)
        day += datetime.timedelta(days=1)
    return sorted(set(out))
