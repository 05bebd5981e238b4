"""The fleet as arrays: one row per (center, pool), built once from ComputeCenter specs.

Static facts only (what a pool *is*); what changes from moment to moment (free accelerators,
readiness, budget left) is `FleetState`, produced by the ledgers. Pools are ordered by
(center, pool) name, so "first best" is also "ties broken by name".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from suanli.api import center as center_api
from suanli.api import objects
from suanli.catalog import accelerators
from suanli.scoring import schedule

TYPE_CODES: Mapping[str, int] = {t: i for i, t in enumerate(accelerators.ACCELERATOR_TYPES)}
PRECISION_CODES: Mapping[str, int] = {p: i for i, p in enumerate(accelerators.PRECISIONS)}
MAX_PER_NODE = 64
GIB_TO_GBIT = 8 * 1.073741824  # 1 GiB = 8.59 Gbit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclasses.dataclass(frozen=True)
class PoolInfo:
    """One pool's resolved figures (catalog merged with the pool's overrides)."""

    index: int
    center: str
    pool: str
    region: str
    accelerator_type: str
    model: str
    resource_name: str  # the device plugin's extended resource; "" for a DRA pool
    memory_gib: float
    power_watts: float
    peak_tflops: Mapping[str, float]
    pue: float
    expected_nodes: int
    accelerators_per_node: int
    declared_order: int
    device_class_name: str = ""  # the DRA DeviceClass; "" for a device-plugin pool
    selectors: tuple[str, ...] = ()  # with device_class_name: more CEL selectors a device must pass

    @property
    def key(self) -> tuple[str, str]:
        return (self.center, self.pool)

    @property
    def resource(self) -> str:
        """What the pool's accelerators are counted in, for people."""
        return self.resource_name or f"devices of DeviceClass {self.device_class_name}"


@dataclasses.dataclass(frozen=True)
class CenterInfo:
    """One center's power facts, as the schedule integration needs them."""

    index: int
    name: str
    region: str
    zone: str
    pue: float
    carbon_windows: tuple[schedule.Window, ...]
    price_windows: tuple[schedule.Window, ...]
    budget_kwh: float | None
    budget_period: str


@dataclasses.dataclass(frozen=True, eq=False)
class Fleet:
    """Arrays over pools (P) and centers (C); region and model vocabularies for jobs to index."""

    pools: tuple[PoolInfo, ...]
    centers: tuple[CenterInfo, ...]
    regions: tuple[str, ...]
    models: tuple[str, ...]
    pool_center: IntArray
    pool_region: IntArray
    pool_type: IntArray
    pool_model: IntArray
    memory_gib: FloatArray
    power_watts: FloatArray
    pue: FloatArray
    tflops: FloatArray  # (P, precisions), NaN where unsupported
    bandwidth_gbps: FloatArray  # (P, R + 1) towards each region; last column: any other region
    latency_s: FloatArray  # (P, R + 1)
    carbon_cum: FloatArray  # (C * 1441,) cumulative g/kWh-minutes
    price_cum: FloatArray  # (C * 1441,)
    carbon_flat: BoolArray  # (C,) no windows: the mean is the constant
    price_flat: BoolArray
    carbon_base: FloatArray  # (C,)
    price_base: FloatArray

    @property
    def size(self) -> int:
        return len(self.pools)

    def region_index(self, region: str | None) -> int:
        """Index of a region in the vocabulary, -1 if no center is there."""
        if region is None:
            return -1
        try:
            return self.regions.index(region)
        except ValueError:
            return -1

    def pool_index(self, center: str, pool: str) -> int | None:
        for info in self.pools:
            if info.center == center and info.pool == pool:
                return info.index
        return None


def resolve_pool(spec: center_api.Pool) -> tuple[float, float, dict[str, float]]:
    """(memory GiB, watts, peak TFLOPS) of a pool: its overrides over the catalog entry."""
    entry = accelerators.lookup(spec.model)
    peak: dict[str, float] = dict(entry.peak_tflops) if entry else {}
    peak.update({str(k): float(v) for k, v in (spec.peak_tflops or {}).items()})
    memory = spec.memory_gi_b if spec.memory_gi_b else (entry.memory_gib if entry else 0.0)
    watts = spec.power_watts if spec.power_watts else (entry.board_watts if entry else 0.0)
    return float(memory), float(watts), peak


def build(
    centers: Sequence[objects.ComputeCenter],
    extra_regions: Sequence[str] = (),
    extra_models: Sequence[str] = (),
) -> Fleet:
    """Arrays for a set of centers. `extra_*` add vocabulary (jobs' data regions, allow-listed models)."""
    ordered = sorted(centers, key=lambda c: c.name)
    declared = {c.name: i for i, c in enumerate(centers)}
    regions = sorted({c.spec.region for c in centers} | set(extra_regions))
    region_ix = {r: i for i, r in enumerate(regions)}
    models = sorted(
        {p.model for c in centers for p in c.spec.pools} | set(extra_models) | set(accelerators.CATALOG)
    )
    model_ix = {m: i for i, m in enumerate(models)}

    pool_infos: list[PoolInfo] = []
    center_infos: list[CenterInfo] = []
    rows: list[tuple[int, center_api.ComputeCenterSpec, center_api.Pool]] = []
    for ci, c in enumerate(ordered):
        energy = c.spec.energy
        center_infos.append(
            CenterInfo(
                index=ci,
                name=c.name,
                region=c.spec.region,
                zone=energy.time_zone,
                pue=energy.pue,
                carbon_windows=tuple(
                    schedule.windows_from(
                        (w.start, w.end, w.grams_per_k_wh) for w in energy.carbon_intensity.schedule
                    )
                ),
                price_windows=tuple(
                    schedule.windows_from((w.start, w.end, w.value) for w in energy.price_per_k_wh.schedule)
                ),
                budget_kwh=energy.budget.k_wh if energy.budget else None,
                budget_period=energy.budget.period if energy.budget else "Day",
            )
        )
        for pool in sorted(c.spec.pools, key=lambda p: p.name):
            rows.append((ci, c.spec, pool))
    declared_pools = sorted(
        range(len(rows)),
        key=lambda i: (
            declared[ordered[rows[i][0]].name],
            [p.name for p in rows[i][1].pools].index(rows[i][2].name),
        ),
    )
    declared_rank = {row: rank for rank, row in enumerate(declared_pools)}

    n = len(rows)
    tflops = np.full((n, len(accelerators.PRECISIONS)), np.nan)
    # One column per region, plus a last one for data in a region no center is in.
    bandwidth = np.zeros((n, len(regions) + 1))
    latency = np.zeros((n, len(regions) + 1))
    for i, (ci, spec, pool) in enumerate(rows):
        memory, watts, peak = resolve_pool(pool)
        for precision, value in peak.items():
            tflops[i, PRECISION_CODES[precision]] = value
        bandwidth[i, :] = spec.network.default_bandwidth_gbps
        for link in spec.network.links:
            if link.region in region_ix:
                bandwidth[i, region_ix[link.region]] = link.bandwidth_gbps
                latency[i, region_ix[link.region]] = link.latency_ms / 1000.0
        pool_infos.append(
            PoolInfo(
                index=i,
                center=ordered[ci].name,
                pool=pool.name,
                region=spec.region,
                accelerator_type=pool.accelerator_type,
                model=pool.model,
                resource_name=pool.resource_name or "",
                device_class_name=pool.device_class_name or "",
                selectors=tuple(s.cel.expression for s in pool.selectors),
                memory_gib=memory,
                power_watts=watts,
                peak_tflops=peak,
                pue=spec.energy.pue,
                expected_nodes=pool.expected.nodes,
                accelerators_per_node=pool.expected.accelerators_per_node,
                declared_order=declared_rank[i],
            )
        )

    carbon_cum = np.zeros(len(ordered) * (schedule.MINUTES_PER_DAY + 1))
    price_cum = np.zeros_like(carbon_cum)
    stride = schedule.MINUTES_PER_DAY + 1
    for ci, c in enumerate(ordered):
        energy = c.spec.energy
        carbon_cum[ci * stride : (ci + 1) * stride] = schedule.cumulative(
            schedule.profile(energy.carbon_intensity.grams_per_k_wh, center_infos[ci].carbon_windows)
        )
        price_cum[ci * stride : (ci + 1) * stride] = schedule.cumulative(
            schedule.profile(energy.price_per_k_wh.value, center_infos[ci].price_windows)
        )

    return Fleet(
        pools=tuple(pool_infos),
        centers=tuple(center_infos),
        regions=tuple(regions),
        models=tuple(models),
        pool_center=np.array([r[0] for r in rows], dtype=np.int64),
        pool_region=np.array([region_ix[r[1].region] for r in rows], dtype=np.int64),
        pool_type=np.array([TYPE_CODES[r[2].accelerator_type] for r in rows], dtype=np.int64),
        pool_model=np.array([model_ix[r[2].model] for r in rows], dtype=np.int64),
        memory_gib=np.array([p.memory_gib for p in pool_infos]),
        power_watts=np.array([p.power_watts for p in pool_infos]),
        pue=np.array([p.pue for p in pool_infos]),
        tflops=tflops,
        bandwidth_gbps=bandwidth,
        latency_s=latency,
        carbon_cum=carbon_cum,
        price_cum=price_cum,
        carbon_flat=np.array([not c.carbon_windows for c in center_infos], dtype=np.bool_),
        price_flat=np.array([not c.price_windows for c in center_infos], dtype=np.bool_),
        carbon_base=np.array([c.spec.energy.carbon_intensity.grams_per_k_wh for c in ordered]),
        price_base=np.array([c.spec.energy.price_per_k_wh.value for c in ordered]),
    )


@dataclasses.dataclass(frozen=True, eq=False)
class FleetState:
    """What changes: gang slots per pool and per-node size, readiness, budget left per center.

    `slots[p, c]` is how many replicas of `c` accelerators fit on pool p's free nodes now;
    `idle_slots[p, c]` the same on an empty pool (to tell "wait" from "never").
    """

    slots: IntArray  # (P, MAX_PER_NODE + 1)
    idle_slots: IntArray  # (P, MAX_PER_NODE + 1)
    ready: BoolArray  # (P,)
    not_ready_reason: tuple[str, ...]  # (P,) empty where ready
    budget_remaining_kwh: FloatArray  # (C,) +inf where a center has no budget
    budget_period: tuple[str, ...] = ()  # (C,) e.g. "Day 2026-11-21", for messages

    @staticmethod
    def slot_table(free_histogram: IntArray) -> IntArray:
        """Slots per count from a histogram hist[p, k] = nodes with exactly k free accelerators."""
        k = np.arange(free_histogram.shape[1])
        counts = np.arange(MAX_PER_NODE + 1)
        counts[0] = 1  # count 0 is never asked for; avoid dividing by zero
        per = k[:, None] // counts[None, :]  # (K, C)
        return np.asarray(free_histogram @ per, dtype=np.int64)


def idle_state(fleet: Fleet) -> FleetState:
    """Every pool at its expected size, fully free, ready; every budget untouched."""
    hist = np.zeros((fleet.size, MAX_PER_NODE + 1), dtype=np.int64)
    for info in fleet.pools:
        hist[info.index, min(info.accelerators_per_node, MAX_PER_NODE)] = info.expected_nodes
    slots = FleetState.slot_table(hist)
    budgets = np.array([c.budget_kwh if c.budget_kwh is not None else math.inf for c in fleet.centers])
    return FleetState(
        slots=slots,
        idle_slots=slots,
        ready=np.array([info.expected_nodes > 0 for info in fleet.pools], dtype=np.bool_),
        not_ready_reason=tuple(
            "" if info.expected_nodes > 0 else "pool has no nodes" for info in fleet.pools
        ),
        budget_remaining_kwh=budgets,
    )
