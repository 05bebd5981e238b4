"""The factor formulas on hand-checkable numbers, and the profiles' effect."""

from __future__ import annotations

import pytest
from tests.unit import builders as b


def _bound(centers, jobs, **kw):  # type: ignore[no-untyped-def]
    decision = b.run_plan(centers, jobs, **kw).decisions[0]
    assert decision.phase == "Bound", decision.message
    assert decision.binding is not None
    return decision.binding


def test_accelerator_factor_is_speedup_over_one_plus_speedup() -> None:
    # H100 bf16 989.5 vs A100 312: speedup 3.171 -> 0.7603; runtime 1h / 3.171.
    binding = _bound([b.center(pools=[b.pool(model="H100")])], [b.job(precision="bf16")])
    s = 989.5 / 312
    assert binding.breakdown.accelerator == pytest.approx(s / (1 + s))
    assert binding.estimates.runtime_seconds == pytest.approx(3600 / s)


def test_energy_estimate_includes_pue_and_the_grid() -> None:
    # 2 replicas x 4 A100 x 400 W x 1 h x PUE 1.25 = 4.0 kWh; 300 g/kWh -> 1.2 kg; 0.5/kWh -> 2.0.
    center = b.center(pue=1.25, grams=300, price=0.5)
    binding = _bound([center], [b.job(count=4, replicas=2)])
    assert binding.estimates.energy_kwh == pytest.approx(4.0)
    assert binding.estimates.carbon_kg == pytest.approx(1.2)
    assert binding.estimates.cost == pytest.approx(2.0)
    # Reference: the same work at 536.6 g/kWh, PUE 1.42, 0.6/kWh.
    ref_kwh = 8 * 400 * 1 / 1000 * 1.42
    carbon_score = ref_kwh * 0.5366 / (ref_kwh * 0.5366 + 1.2)
    cost_score = ref_kwh * 0.6 / (ref_kwh * 0.6 + 2.0)
    assert binding.breakdown.energy == pytest.approx(0.7 * carbon_score + 0.3 * cost_score)


def test_locality_is_runtime_over_runtime_plus_transfer() -> None:
    # 1000 GiB over 10 Gbit/s = 859 s (+ 0.03 s latency), runtime 3600 s.
    center = b.center(region="cn-b", links=[{"region": "cn-a", "bandwidthGbps": 10, "latencyMs": 30}])
    binding = _bound([center], [b.job(data={"region": "cn-a", "sizeGiB": 1000})])
    transfer = 1000 * 8 * 1.073741824 / 10 + 0.03
    assert binding.estimates.transfer_seconds == pytest.approx(transfer)
    assert binding.breakdown.locality == pytest.approx(3600 / (3600 + transfer))


def test_data_in_the_pools_region_moves_nothing() -> None:
    binding = _bound([b.center(region="cn-a")], [b.job(data={"region": "cn-a", "sizeGiB": 5000})])
    assert binding.estimates.transfer_seconds == 0
    assert binding.breakdown.locality == 1


def test_carbon_integrates_over_the_run_window() -> None:
    # Asia/Shanghai is UTC+8. NOW is 11:06:40Z = 19:06:40 local. A window 19:00-20:00 at 100 g,
    # base 500 g: a 2h run sees 53m20s at 100 and 66m40s at 500 -> mean 322.2 g/kWh.
    windows = [{"start": "19:00", "end": "20:00", "gramsPerKWh": 100}]
    binding = _bound([b.center(grams=500, carbon_windows=windows)], [b.job(duration="2h")])
    kwh = binding.estimates.energy_kwh
    mean = (100 * (53 + 1 / 3) + 500 * (66 + 2 / 3)) / 120
    assert binding.estimates.carbon_kg == pytest.approx(kwh * mean / 1000)


@pytest.mark.parametrize(
    ("profile", "winner"),
    [("fast", "east/h100"), ("green", "west/a100"), ("local", "east/h100"), ("balanced", "east/h100")],
)
def test_profiles_trade_speed_against_energy(profile: str, winner: str) -> None:
    east = b.center(
        "east", region="cn-east", pools=[b.pool("h100", model="H100")], grams=700, pue=1.5, price=0.8
    )
    west = b.center(
        "west",
        region="cn-west",
        pools=[b.pool("a100", model="A100")],
        grams=100,
        pue=1.1,
        price=0.3,
        links=[{"region": "cn-east", "bandwidthGbps": 20}],
    )
    job = b.job(precision="bf16", data={"region": "cn-east", "sizeGiB": 100}, profile=profile)
    binding = _bound([east, west], [job])
    assert f"{binding.pool.center}/{binding.pool.pool}" == winner


def test_weights_override_the_profile() -> None:
    east = b.center("east", region="cn-east", pools=[b.pool("h100", model="H100")], grams=700)
    west = b.center("west", region="cn-west", pools=[b.pool("a100", model="A100")], grams=50)
    job = b.job(profile="fast", weights={"accelerator": 0, "locality": 0, "energy": 1})
    assert _bound([east, west], [job]).pool.center == "west"


def test_ties_are_broken_by_name() -> None:
    twins = [b.center("zeta"), b.center("alpha")]
    assert _bound(twins, [b.job()]).pool.center == "alpha"
