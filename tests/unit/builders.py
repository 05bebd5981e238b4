"""Builders for test objects: small dicts in, validated API objects out (Kueue's testing wrappers, in Python)."""

from __future__ import annotations

import copy
from typing import Any

from suanli import settings as settings_mod
from suanli.api import objects
from suanli.placement import planner
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod

NOW = 1_795_000_000.0  # 2026-11-18T11:06:40Z, a fixed instant: tests never read the clock


def pool(
    name: str = "a100",
    type_: str = "GPU",
    model: str = "A100",
    nodes: int = 2,
    per_node: int = 8,
    **extra: Any,
) -> dict[str, Any]:
    resource = {
        "GPU": "nvidia.com/gpu",
        "NPU": "huawei.com/Ascend910",
        "DCU": "hygon.com/dcu",
        "MLU": "cambricon.com/mlu",
    }[type_]
    out: dict[str, Any] = {
        "name": name,
        "acceleratorType": type_,
        "model": model,
        "resourceName": resource,
        "nodeSelector": {"suanli.io/pool": name},
        "expected": {"nodes": nodes, "acceleratorsPerNode": per_node},
    }
    out.update(extra)
    return out


def center(
    name: str = "c1",
    region: str = "cn-a",
    pools: list[dict[str, Any]] | None = None,
    *,
    pue: float = 1.2,
    grams: float = 500.0,
    carbon_windows: list[dict[str, Any]] | None = None,
    price: float = 0.5,
    budget_kwh: float | None = None,
    period: str = "Day",
    links: list[dict[str, Any]] | None = None,
    default_gbps: float = 10.0,
    zone: str = "Asia/Shanghai",
) -> objects.ComputeCenter:
    energy: dict[str, Any] = {
        "timeZone": zone,
        "pue": pue,
        "carbonIntensity": {"gramsPerKWh": grams, "schedule": carbon_windows or []},
        "pricePerKWh": {"value": price},
    }
    if budget_kwh is not None:
        energy["budget"] = {"kWh": budget_kwh, "period": period}
    return objects.ComputeCenter.model_validate(
        {
            "apiVersion": "suanli.io/v1alpha1",
            "kind": "ComputeCenter",
            "metadata": {"name": name},
            "spec": {
                "region": region,
                "energy": energy,
                "pools": copy.deepcopy(pools or [pool()]),
                "network": {"defaultBandwidthGbps": default_gbps, "links": links or []},
            },
        }
    )


def job(
    name: str = "j1",
    namespace: str = "team-a",
    *,
    count: int = 1,
    replicas: int = 1,
    types: tuple[str, ...] = ("GPU",),
    models: tuple[str, ...] = (),
    precision: str = "fp16",
    min_memory: float = 0,
    duration: str | None = "1h",
    data: dict[str, Any] | None = None,
    energy: dict[str, Any] | None = None,
    deadline: str | None = None,
    priority: int = 0,
    profile: str = "balanced",
    weights: dict[str, float] | None = None,
) -> objects.ComputeJob:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "accelerators": {
            "count": count,
            "types": list(types),
            "models": list(models),
            "precision": precision,
            "minMemoryGiB": min_memory,
        },
        "images": {t: f"img:{t.lower()}" for t in types},
        "priority": priority,
        "policy": {"profile": profile, **({"weights": weights} if weights else {})},
    }
    if duration is not None:
        spec["runtime"] = {"estimatedDuration": duration}
    if data is not None:
        spec["data"] = data
    if energy is not None:
        spec["energy"] = energy
    if deadline is not None:
        spec["schedule"] = {"deadline": deadline}
    return objects.ComputeJob.model_validate(
        {
            "apiVersion": "suanli.io/v1alpha1",
            "kind": "ComputeJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def demand(j: objects.ComputeJob, arrival: float = 0.0) -> demand_mod.JobDemand:
    return demand_mod.from_job(j, 3600.0, arrival)


def run_plan(
    centers: list[objects.ComputeCenter],
    jobs: list[objects.ComputeJob],
    now: float = NOW,
    config: settings_mod.Settings | None = None,
    policy: str = "score",
) -> planner.PlanReply:
    regions = [r for j in jobs for r in ([j.spec.data.region] if j.spec.data.region else [])]
    fleet = fleet_mod.build(centers, extra_regions=regions)
    cap, energy = planner.ledgers_for(fleet)
    return planner.plan(
        planner.PlanRequest(
            fleet=fleet,
            capacity=cap,
            energy=energy,
            jobs=[demand(j) for j in jobs],
            now=now,
            settings=config or settings_mod.Settings(),
            policy=policy,
        )
    )
