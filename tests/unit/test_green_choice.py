"""Green's choice among feasible pools (placement/policies.py): least carbon, with the time a pool would
hold the gang charged at the reference site's carbon times the fraction of the fleet in use. Hand-made
cases: the numbers below are worked out in the comments."""

from __future__ import annotations

from typing import Any

import builders as b
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli import settings as settings_mod
from suanli.placement import planner, policies
from suanli.scoring import demand as demand_mod
from suanli.scoring import engine
from suanli.scoring import fleet as fleet_mod

SCORING = settings_mod.Settings().scoring
# Reference site: the national grid (536.6 g/kWh) and PUE (1.42); reference accelerator A100, 400 W.
REFERENCE_KG_PER_ACCELERATOR_HOUR = 0.4 * 1.42 * 0.5366


def _clean_slow_and_dirty_fast() -> list[Any]:
    # A one-GPU, one-hour (on A100) fp16 job: on a T4 (65 TFLOPS, 70 W) it runs 312/65 = 4.8 h and emits
    # 0.07 kW x 4.8 h x 1.2 x 0.05 kg/kWh = 0.0202 kg; on the A100 (400 W) 1 h and 0.4 x 1.2 x 0.7 = 0.336 kg.
    return [
        b.center("clean", "cn-a", pools=[b.pool("t4", model="T4", nodes=1, per_node=4)], grams=50.0),
        b.center("dirty", "cn-b", pools=[b.pool("a100", model="A100", nodes=1, per_node=4)], grams=700.0),
    ]


def test_reference_carbon_rate_is_the_gang_on_the_reference_accelerator_at_the_reference_site() -> None:
    fleet = fleet_mod.build(_clean_slow_and_dirty_fast())
    job = b.demand(b.job("gang", count=2, replicas=2, duration="2h", profile="green"))
    ev = engine.evaluate(fleet, _state(fleet), demand_mod.batch([job], fleet, 1.42), b.NOW, SCORING)
    per_second = 4 * REFERENCE_KG_PER_ACCELERATOR_HOUR / 3600.0  # four accelerators
    assert float(ev.reference_carbon_rate[0]) == pytest.approx(per_second, rel=1e-6)


def _state(fleet: fleet_mod.Fleet) -> fleet_mod.FleetState:
    """The fleet empty: the job's estimates do not depend on what is in use, only the charge does."""
    cap, energy = planner.ledgers_for(fleet)
    return planner.WorkingState(fleet, cap, energy, b.NOW).fleet_state()


def _pool(fleet: fleet_mod.Fleet, center: str) -> int:
    return next(p.index for p in fleet.pools if p.center == center)


def test_the_charge_for_time_held_grows_with_the_fleet_in_use_by_hand() -> None:
    fleet = fleet_mod.build(_clean_slow_and_dirty_fast())
    cap, _ = planner.ledgers_for(fleet)
    job = b.demand(b.job("one", profile="green"))
    ev = engine.evaluate(fleet, _state(fleet), demand_mod.batch([job], fleet, 1.42), b.NOW, SCORING)
    t4, a100 = _pool(fleet, "clean"), _pool(fleet, "dirty")
    idle = policies.green_charge(ev, 0, cap)
    assert idle.busy == 0.0
    assert idle.hold_kg[t4] == 0.0 and idle.carbon_kg[t4] == pytest.approx(0.07 * 312 / 65 * 1.2 * 0.05, rel=1e-3)
    cap.reserve(a100, 1, 2)  # 2 of the fleet's 8 accelerators in use
    assert cap.busy_fraction() == pytest.approx(0.25)
    quarter = policies.green_charge(ev, 0, cap)
    # 0.25 x 0.3048 kg/h x 4.8 h on the T4; x 1 h on the A100.
    assert quarter.hold_kg[t4] == pytest.approx(0.25 * REFERENCE_KG_PER_ACCELERATOR_HOUR * 312 / 65, rel=1e-3)
    assert quarter.hold_kg[a100] == pytest.approx(0.25 * REFERENCE_KG_PER_ACCELERATOR_HOUR, rel=1e-3)


def test_a_model_constrained_job_is_not_starved_by_flexible_ones_taking_the_clean_slow_pool() -> None:
    """Four flexible green jobs, then one that only runs on a T4. The T4 pool is the cleanest and scores
    highest, so choosing by score would fill it with the flexible jobs and leave the T4 job waiting. Green
    charges the 4.8 h a T4 holds a job: with 3 of 8 accelerators busy that is 0.375 x 0.3048 x 4.8 =
    0.549 kg against 0.114 kg on the A100, more than the 0.316 kg of carbon the T4 saves, so the fourth
    flexible job takes the A100 and the T4 job gets the last T4."""
    reply = b.run_plan(
        _clean_slow_and_dirty_fast(),
        [b.job(f"flex-{i}", profile="green") for i in range(4)] + [b.job("t4-only", profile="green", models=("T4",))],
    )
    placed = {d.job.name: (d.phase, d.binding.pool.center if d.binding else None) for d in reply.decisions}
    assert placed == {
        "flex-0": ("Bound", "clean"), "flex-1": ("Bound", "clean"), "flex-2": ("Bound", "clean"),
        "flex-3": ("Bound", "dirty"), "t4-only": ("Bound", "clean"),
    }
    fourth = reply.decisions[3]
    # The score still ranks the T4 first for it: the choice, not the per-pool score, weighed the time held.
    scores = {c.pool.center: c.score for c in fourth.candidates}
    assert scores["clean"] > scores["dirty"]
    assert "0.336 kg + 0.114 kg for 3,600 s held with the fleet 38% busy" in fourth.message
    assert "runner-up clean/t4" in fourth.message


def test_on_an_idle_fleet_green_takes_the_least_carbon_and_a_job_with_its_own_weights_keeps_its_score() -> None:
    cs = _clean_slow_and_dirty_fast()
    reply = b.run_plan(cs, [b.job("green", profile="green")])
    assert reply.decisions[0].binding is not None and reply.decisions[0].binding.pool.center == "clean"
    # Weights of its own: chosen by score (speed weighs most here), no green charge in the message.
    own = b.run_plan(cs, [b.job("own", profile="green", weights={"accelerator": 0.9, "locality": 0.05, "energy": 0.05})])
    assert own.decisions[0].binding is not None and own.decisions[0].binding.pool.center == "dirty"
    assert "green:" not in own.decisions[0].message


GRAMS = st.floats(min_value=20.0, max_value=900.0)
MODELS = st.sampled_from(["A100", "T4", "V100", "H100"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grams=st.lists(GRAMS, min_size=3, max_size=3), models=st.lists(MODELS, min_size=3, max_size=3),
       busy=st.integers(min_value=0, max_value=7), cleaner=st.floats(min_value=0.05, max_value=0.95))
def test_a_cleaner_grid_never_moves_greens_choice_away_from_a_center(
    grams: list[float], models: list[str], busy: int, cleaner: float
) -> None:
    """Monotone choice: if green picks center c, making c's grid cleaner (everything else equal, the
    same fleet load) keeps the pick at c, and making another center's grid dirtier does too."""

    def pick(g: list[float]) -> str:
        cs = [b.center(f"c{i}", f"cn-{i}", pools=[b.pool("p", model=m, nodes=1, per_node=8)], grams=g[i])
              for i, m in enumerate(models)]
        fleet = fleet_mod.build(cs)
        cap, energy = planner.ledgers_for(fleet)
        for pool in range(fleet.size):  # the same number of accelerators in use in every center
            if busy:
                cap.reserve(pool, 1, busy)
        work = planner.WorkingState(fleet, cap, energy, b.NOW)
        job = b.demand(b.job("j", profile="green"))
        ev = engine.evaluate(fleet, work.fleet_state(), demand_mod.batch([job], fleet, 1.42), b.NOW, SCORING)
        chosen = policies.choose(policies.SCORE, fleet, ev, 0, work.capacity, job, 0)
        return fleet.pools[chosen].center

    first = pick(grams)
    i = int(first[1:])
    assert pick([g * cleaner if k == i else g for k, g in enumerate(grams)]) == first
    assert pick([g if k == i else g / cleaner for k, g in enumerate(grams)]) == first
