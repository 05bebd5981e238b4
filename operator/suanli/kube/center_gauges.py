"""The per-center gauges: where each center is (`suanli_center_info`), its grid carbon intensity now,
its pools' accelerators and its energy of the current budget period; a center's series go when the
center does (deleted, or refused as invalid), and an info series whose labels changed (the center
moved, was renamed for people) is replaced, never left beside the new one.

Set from a snapshot and the cache's parsed centers, by the scheduler's `publish`. No I/O, no clock:
the snapshot carries `now`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import prometheus_client

from suanli import metrics
from suanli.api import objects
from suanli.kube import snapshot as snapshot_mod
from suanli.scoring import schedule

POOL_STATES = ("capacity", "allocated", "reserved", "free")


def info_labels(center: objects.ComputeCenter) -> tuple[str, str, str, str, str]:
    """(center, region, display_name, latitude, longitude) of `suanli_center_info`; "" where not set.
    Coordinates are written as Python writes a float (the shortest text that reads back the same)."""
    spec = center.spec
    where = spec.location
    return (
        center.name,
        spec.region,
        spec.display_name or "",
        repr(float(where.latitude)) if where is not None else "",
        repr(float(where.longitude)) if where is not None else "",
    )


def carbon_now(snap: snapshot_mod.Snapshot) -> dict[str, float]:
    """Each center's grid gCO2e/kWh at `snap.now`, in its own time zone."""
    fleet = snap.fleet
    return {
        info.name: schedule.value_at(
            float(fleet.carbon_base[info.index]), info.carbon_windows, schedule.local_minute(snap.now, info.zone)
        )
        for info in fleet.centers
    }


class CenterGauges:
    """Sets the per-center gauges and remembers which series it set, to remove those of gone centers."""

    def __init__(self) -> None:
        self._info: dict[str, tuple[str, str, str, str, str]] = {}  # center -> its info labels
        self._carbon: set[str] = set()
        self._pools: set[tuple[str, str]] = set()  # (center, pool)
        self._energy: set[tuple[str, str]] = set()  # (center, kind)

    def publish(self, centers: Mapping[str, objects.ComputeCenter], snap: snapshot_mod.Snapshot) -> None:
        info = {name: info_labels(center) for name, center in centers.items()}
        for name, labels in info.items():
            old = self._info.get(name)
            if old is not None and old != labels:
                _remove(metrics.CENTER_INFO, old)
            metrics.CENTER_INFO.labels(*labels).set(1)
        for name in self._info.keys() - info.keys():
            _remove(metrics.CENTER_INFO, self._info[name])
        self._info = info

        carbon = carbon_now(snap)
        for name, grams in carbon.items():
            metrics.CENTER_CARBON.labels(center=name).set(grams)
        for name in self._carbon - carbon.keys():
            _remove(metrics.CENTER_CARBON, (name,))
        self._carbon = set(carbon)

        pools: set[tuple[str, str]] = set()
        for u in snap.usage:
            for state, value in zip(POOL_STATES, (u.capacity, u.allocated, u.reserved, u.free), strict=True):
                metrics.POOL_ACCELERATORS.labels(center=u.center, pool=u.pool, state=state).set(value)
            pools.add((u.center, u.pool))
        for center, pool in self._pools - pools:
            for state in POOL_STATES:
                _remove(metrics.POOL_ACCELERATORS, (center, pool, state))
        self._pools = pools

        energy: set[tuple[str, str]] = set()
        for account in snap.energy.accounts():
            amounts = {"used": account.used_kwh, "reserved": account.reserved_kwh}
            if math.isfinite(account.remaining_kwh):  # only centers with a budget have a remaining
                amounts["remaining"] = account.remaining_kwh
            for kind, kwh in amounts.items():
                metrics.CENTER_ENERGY.labels(center=account.name, kind=kind).set(kwh)
                energy.add((account.name, kind))
        for series in self._energy - energy:
            _remove(metrics.CENTER_ENERGY, series)
        self._energy = energy


def _remove(gauge: prometheus_client.Gauge, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # already gone (another CenterGauges, e.g. a test's, removed it)
        gauge.remove(*labels)
