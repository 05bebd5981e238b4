"""The carbon oracle: each job alone on its cleanest allowed pool at its cleanest hour, worked by hand and
checked as a lower bound of every policy's replay."""

from __future__ import annotations

import json
import pathlib

import builders
import numpy as np
import pytest

from suanli import settings as settings_mod
from suanli.commands import simulate as simulate_cmd
from suanli.scoring import demand as demand_mod
from suanli.scoring import engine
from suanli.scoring import fleet as fleet_mod
from suanli.sim import metrics, oracle, replay

REPO = pathlib.Path(__file__).resolve().parents[2]
T0 = builders.NOW  # 19:06:40 in Asia/Shanghai


def _solar_fleet() -> fleet_mod.Fleet:
    # "dirty": 600 g/kWh flat; "solar": 500 g/kWh but 100 g/kWh from 10:00 to 16:00 local.
    return fleet_mod.build([
        builders.center("dirty", "cn-a", [builders.pool(nodes=1)], grams=600),
        builders.center("solar", "cn-b", [builders.pool(nodes=1)], grams=500,
                        carbon_windows=[{"start": "10:00", "end": "16:00", "gramsPerKWh": 100}]),
    ])


def test_a_job_shorter_than_the_window_gets_the_window_whatever_its_arrival() -> None:
    fleet = _solar_fleet()
    # 8 x 400 W x 2 h x PUE 1.2 = 7.68 kWh; inside the window: 0.768 kg; it arrives at 19:06 local.
    job = builders.demand(builders.job("short", count=8, duration="2h"), T0)
    assert oracle.carbon_floor(fleet, [job])[0] == pytest.approx(7.68 * 0.1)


def test_a_job_longer_than_the_window_is_centred_on_it_by_hand() -> None:
    fleet = _solar_fleet()
    # 10 h: 6 h at 100 and 4 h at 500 at best: mean 260 g/kWh; 38.4 kWh -> 9.984 kg (the flat 600 g center: 23.04).
    job = builders.demand(builders.job("long", count=8, duration="10h"), T0)
    assert oracle.carbon_floor(fleet, [job])[0] == pytest.approx(38.4 * 0.26)


def test_the_bound_matches_a_fine_search_over_start_times() -> None:
    fleet = _solar_fleet()
    jobs = [builders.demand(builders.job(f"j{m}", count=8, duration=f"{m}m"), T0) for m in (7, 95, 361, 1500, 3001)]
    floor = oracle.carbon_floor(fleet, jobs)
    starts = T0 + 60.0 * np.arange(0, 1440, 1)  # every minute of a day
    for job, bound in zip(jobs, floor, strict=True):
        config = settings_mod.Settings()
        batch = demand_mod.batch([job] * starts.size, fleet, config.scoring.reference_pue)
        ev = engine.evaluate(fleet, fleet_mod.idle_state(fleet), batch, starts, config.scoring)
        searched = float(ev.carbon_kg.min())
        assert bound <= searched + 1e-9  # a lower bound of every start the core can be asked about...
        assert bound == pytest.approx(searched, rel=2e-3)  # ...and reached within a minute's step


def test_only_allowed_pools_count() -> None:
    fleet = fleet_mod.build([
        builders.center("clean", "cn-a", [builders.pool("t4", model="T4", nodes=1, per_node=4)], grams=50),
        builders.center("dirty", "cn-b", [builders.pool(nodes=1)], grams=800),
    ])
    gang = builders.demand(builders.job("gang", count=8, duration="1h"), T0)  # 8 per node: never on the T4 pool
    a100 = builders.demand(builders.job("a100", count=1, models=("A100",), duration="1h"), T0)
    npu = builders.demand(builders.job("npu", types=("NPU",), duration="1h"), T0)  # nothing takes it
    floor = oracle.carbon_floor(fleet, [gang, a100, npu])
    assert floor[0] == pytest.approx(8 * 0.4 * 1.2 * 0.8)
    assert floor[1] == pytest.approx(0.4 * 1.2 * 0.8)
    assert floor[2] == 0.0


@pytest.mark.parametrize("policy", replay.POLICIES)
def test_no_policy_beats_the_bound(policy: str) -> None:
    fleet = _solar_fleet()
    jobs = [builders.demand(builders.job(f"j{i:02d}", count=(1, 2, 4, 8)[i % 4], duration=f"{20 + 37 * i % 300}m"),
                            T0 + i * 900) for i in range(40)]
    floor = oracle.carbon_floor(fleet, jobs)
    run = replay.replay(fleet, jobs, policy)
    m = metrics.summary(run, floor)
    assert m["completed"] == 40
    assert m["oracleCarbonKg"] == pytest.approx(float(floor.sum()), rel=1e-6)
    for record in run.records:
        assert record.carbon_kg >= floor[record.index] - 1e-9, record
    assert m["carbonVsOracle"] >= 1.0


def test_the_report_has_the_bound_and_the_pareto_view(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = simulate_cmd.run(
        [str(REPO / "crds/examples/simulate/centers.yaml")], [str(REPO / "crds/examples/simulate/trace")],
        "computejobs", ["green", "first-fit", "fast"], output="json", report_dir=str(tmp_path),
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    bound = doc["oracle"]["carbonKg"]
    assert 0 < bound <= min(m["carbonKg"] for m in doc["policies"].values())
    for m in doc["policies"].values():
        assert m["carbonVsOracle"] == pytest.approx(m["carbonKg"] / m["oracleCarbonKg"], rel=1e-3)
    page = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert f"{bound:,.2f} kg CO2e" in page and "![Carbon against mean wait (Pareto view)](pareto.png)" in page
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
