"""The per-center gauges (kube/center_gauges.py): `suanli_center_info` and the grid carbon intensity are set
from the cache's centers, follow a center's updates, and every series of a center goes when it is deleted.

The registry is the operator's own (metrics.REGISTRY, process-wide), so each test uses its own center names.
"""

from __future__ import annotations

import copy
import datetime
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from suanli import metrics
from suanli.kube import cache as cache_mod
from suanli.kube import center_gauges
from suanli.scoring import schedule

# 2026-11-18 12:00 in Asia/Shanghai (04:00Z): inside the 10:00-16:00 window; 20:00 there is outside it.
NOON = datetime.datetime(2026, 11, 18, 4, 0, tzinfo=datetime.UTC).timestamp()
EVENING = NOON + 8 * 3600


def center_doc(name: str, *, location: dict[str, float] | None = None, display: str | None = None,
               budget_kwh: float | None = 1000.0) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "region": "cn-guizhou",
        "energy": {
            "timeZone": "Asia/Shanghai", "pue": 1.2,
            "carbonIntensity": {"gramsPerKWh": 400, "schedule": [{"start": "10:00", "end": "16:00", "gramsPerKWh": 250}]},
        },
        "pools": [{
            "name": "a100", "acceleratorType": "GPU", "model": "A100", "resourceName": "nvidia.com/gpu",
            "nodeSelector": {"suanli.io/pool": f"{name}-a100"}, "expected": {"nodes": 1, "acceleratorsPerNode": 8},
        }],
    }
    if budget_kwh is not None:
        spec["energy"]["budget"] = {"kWh": budget_kwh, "period": "Day"}
    if location is not None:
        spec["location"] = location
    if display is not None:
        spec["displayName"] = display
    return {"apiVersion": "suanli.io/v1alpha1", "kind": "ComputeCenter", "metadata": {"name": name, "generation": 1},
            "spec": spec}


def node_doc(center: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{center}-n0", "labels": {"suanli.io/pool": f"{center}-a100"}},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"nvidia.com/gpu": "8"}},
    }


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def series_of(center: str) -> list[tuple[str, dict[str, str]]]:
    """Every exported sample that names this center."""
    return [(s.name, s.labels) for family in metrics.REGISTRY.collect() for s in family.samples
            if s.labels.get("center") == center]


def publish(cache: cache_mod.Cache, gauges: center_gauges.CenterGauges, now: float) -> None:
    gauges.publish(cache.centers, cache.snapshot(now))


def fresh(name: str = "") -> str:
    return f"{name or 'gauge'}-{uuid.uuid4().hex[:6]}"


def test_info_carbon_pools_and_energy_are_set_for_each_center() -> None:
    name = fresh()
    cache, gauges = cache_mod.Cache(), center_gauges.CenterGauges()
    cache.upsert_center(center_doc(name, location={"latitude": 26.4, "longitude": 106.4}, display="Gui'an AI"))
    cache.upsert_node(node_doc(name))
    publish(cache, gauges, NOON)
    info = dict(center=name, region="cn-guizhou", display_name="Gui'an AI", latitude="26.4", longitude="106.4")
    assert sample("suanli_center_info", **info) == 1
    assert sample("suanli_center_carbon_grams_per_kwh", center=name) == 250  # the 10:00-16:00 window
    assert sample("suanli_pool_accelerators", center=name, pool="a100", state="free") == 8
    assert sample("suanli_center_energy_kwh", center=name, kind="remaining") == 1000


def test_a_center_without_location_has_empty_coordinates() -> None:
    name = fresh()
    cache, gauges = cache_mod.Cache(), center_gauges.CenterGauges()
    cache.upsert_center(center_doc(name))
    publish(cache, gauges, NOON)
    assert sample("suanli_center_info", center=name, region="cn-guizhou", display_name="", latitude="",
                  longitude="") == 1


def test_updates_replace_the_info_series_and_carbon_follows_the_schedule() -> None:
    name = fresh()
    cache, gauges = cache_mod.Cache(), center_gauges.CenterGauges()
    cache.upsert_center(center_doc(name, location={"latitude": 26.4, "longitude": 106.4}))
    publish(cache, gauges, NOON)
    moved = center_doc(name, location={"latitude": 40.1, "longitude": 113.3}, display="Datong")
    moved["metadata"]["generation"] = 2
    cache.upsert_center(moved)
    publish(cache, gauges, EVENING)
    infos = [labels for series, labels in series_of(name) if series == "suanli_center_info"]
    assert infos == [dict(center=name, region="cn-guizhou", display_name="Datong", latitude="40.1",
                          longitude="113.3")], "the old position's series must go, not stay beside the new one"
    assert sample("suanli_center_carbon_grams_per_kwh", center=name) == 400  # 20:00 local: outside the window


def test_every_series_of_a_deleted_center_is_removed() -> None:
    gone, kept = fresh("gone"), fresh("kept")
    cache, gauges = cache_mod.Cache(), center_gauges.CenterGauges()
    for name in (gone, kept):
        cache.upsert_center(center_doc(name, location={"latitude": 30.0, "longitude": 104.0}))
        cache.upsert_node(node_doc(name))
    publish(cache, gauges, NOON)
    names = {series for series, _ in series_of(gone)}
    assert names >= {"suanli_center_info", "suanli_center_carbon_grams_per_kwh", "suanli_pool_accelerators",
                     "suanli_center_energy_kwh"}, names
    cache.delete_center(gone)
    publish(cache, gauges, NOON + 1)
    assert series_of(gone) == []  # before: the pool and energy series of a deleted center stayed forever
    assert sample("suanli_center_info", center=kept, region="cn-guizhou", display_name="", latitude="30.0",
                  longitude="104.0") == 1


def test_an_energy_budget_removed_takes_its_remaining_series_along() -> None:
    name = fresh()
    cache, gauges = cache_mod.Cache(), center_gauges.CenterGauges()
    cache.upsert_center(center_doc(name))
    publish(cache, gauges, NOON)
    assert sample("suanli_center_energy_kwh", center=name, kind="remaining") == 1000
    unbudgeted = center_doc(name, budget_kwh=None)
    unbudgeted["metadata"]["generation"] = 2
    cache.upsert_center(unbudgeted)
    publish(cache, gauges, NOON + 1)
    assert sample("suanli_center_energy_kwh", center=name, kind="remaining") is None
    assert sample("suanli_center_energy_kwh", center=name, kind="used") == 0


def test_an_invalid_update_takes_the_center_off_the_map() -> None:
    name = fresh()
    cache, gauges = cache_mod.Cache(), center_gauges.CenterGauges()
    cache.upsert_center(center_doc(name, location={"latitude": 26.4, "longitude": 106.4}))
    publish(cache, gauges, NOON)
    broken = copy.deepcopy(center_doc(name))
    broken["spec"]["energy"]["pue"] = 0.5  # below 1: refused, the operator no longer plans on it
    cache.upsert_center(broken)
    publish(cache, gauges, NOON + 1)
    assert series_of(name) == []


windows = st.lists(
    st.builds(schedule.Window, st.integers(0, 1439), st.integers(0, 1439), st.floats(0, 1000)), max_size=4
)


@given(base=st.floats(0, 1000), ws=windows, minute=st.floats(0, 1439.99))
def test_value_at_is_the_profile_at_that_minute(base: float, ws: list[schedule.Window], minute: float) -> None:
    assert schedule.value_at(base, ws, minute) == schedule.profile(base, ws)[int(minute)]
