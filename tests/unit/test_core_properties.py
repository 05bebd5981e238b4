"""Properties of the core (hypothesis): deterministic, safe, never oversubscribing, monotonic."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit import builders as b

from suanli import settings as settings_mod
from suanli.ledger import energy as energy_mod
from suanli.placement import report
from suanli.scoring import demand as demand_mod
from suanli.scoring import engine
from suanli.scoring import fleet as fleet_mod

MODELS = [
    ("GPU", "A100"),
    ("GPU", "H100"),
    ("GPU", "T4"),
    ("GPU", "V100"),
    ("NPU", "Ascend910B"),
    ("NPU", "Ascend910"),
    ("DCU", "K100"),
    ("MLU", "MLU370"),
]
REGIONS = ["cn-a", "cn-b", "cn-c"]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def centers(draw: Any) -> list[Any]:
    out = []
    for ci in range(draw(st.integers(1, 4))):
        pools = []
        for pi in range(draw(st.integers(1, 3))):
            type_, model = draw(st.sampled_from(MODELS))
            pools.append(
                b.pool(
                    f"p{pi}",
                    type_=type_,
                    model=model,
                    nodes=draw(st.integers(0, 4)),
                    per_node=draw(st.sampled_from([1, 2, 4, 8])),
                )
            )
        budget = draw(st.one_of(st.none(), st.floats(1, 500)))
        out.append(
            b.center(
                f"c{ci}",
                region=draw(st.sampled_from(REGIONS)),
                pools=pools,
                pue=draw(st.floats(1.0, 2.0)),
                grams=draw(st.floats(10, 900)),
                price=draw(st.floats(0.1, 1.0)),
                budget_kwh=budget,
                links=[{"region": r, "bandwidthGbps": draw(st.floats(1, 100))} for r in REGIONS],
            )
        )
    return out


@st.composite
def jobs(draw: Any) -> list[Any]:
    out = []
    for i in range(draw(st.integers(1, 8))):
        types = tuple(draw(st.sets(st.sampled_from(["GPU", "NPU", "DCU", "MLU"]), min_size=1)))
        cap = draw(st.one_of(st.none(), st.floats(0.5, 200)))
        out.append(
            b.job(
                f"j{i}",
                count=draw(st.sampled_from([1, 2, 4, 8])),
                replicas=draw(st.integers(1, 3)),
                types=types,
                precision=draw(st.sampled_from(["fp16", "bf16", "fp32", "int8"])),
                min_memory=draw(st.sampled_from([0, 16, 40])),
                duration=draw(st.sampled_from(["30m", "2h", "12h"])),
                priority=draw(st.integers(0, 3)),
                data={
                    "region": draw(st.sampled_from(REGIONS)),
                    "sizeGiB": draw(st.floats(0, 2000)),
                    "allowedRegions": draw(st.lists(st.sampled_from(REGIONS), max_size=2, unique=True)),
                },
                energy={"maxKWh": cap} if cap else None,
                profile=draw(st.sampled_from(["balanced", "green", "fast", "local"])),
            )
        )
    return out


@FAST
@given(centers(), jobs())
def test_same_input_same_output(cs: list[Any], js: list[Any]) -> None:
    first = [report.decision(d) for d in b.run_plan(cs, js).decisions]
    second = [report.decision(d) for d in b.run_plan(list(reversed(cs)), list(reversed(js))).decisions]
    assert first == second


@FAST
@given(centers(), jobs())
def test_bound_jobs_respect_every_hard_constraint_and_pools_are_never_oversubscribed(
    cs: list[Any], js: list[Any]
) -> None:
    reply = b.run_plan(cs, js)
    by_name = {j.name: j for j in js}
    used: dict[tuple[str, str], int] = {}
    kwh_by_center: dict[str, float] = {}
    for d in reply.decisions:
        if d.phase != "Bound":
            continue
        assert d.binding is not None and d.allocation is not None
        spec = by_name[d.job.name].spec
        pool = d.binding.pool
        assert pool.accelerator_type in spec.accelerators.types and pool.accelerator_type in spec.images
        assert pool.memory_gib >= spec.accelerators.min_memory_gi_b
        assert spec.accelerators.precision in pool.peak_tflops
        if spec.data.allowed_regions:
            assert pool.region in spec.data.allowed_regions
        if spec.energy.max_k_wh is not None:
            assert d.binding.estimates.energy_kwh <= spec.energy.max_k_wh + 1e-9
        assert len(d.allocation.nodes) == spec.replicas
        used[pool.key] = used.get(pool.key, 0) + spec.replicas * spec.accelerators.count
        kwh_by_center[pool.center] = kwh_by_center.get(pool.center, 0) + d.binding.estimates.energy_kwh
    for c in cs:
        for p in c.spec.pools:
            assert used.get((c.name, p.name), 0) <= p.expected.nodes * p.expected.accelerators_per_node
        if c.spec.energy.budget is not None:
            assert kwh_by_center.get(c.name, 0) <= c.spec.energy.budget.k_wh + 1e-6
    assert reply.capacity.oversubscription() == 0


def _score(cs: list[Any], j: Any, center: str) -> np.ndarray:
    fleet = fleet_mod.build(cs, extra_regions=REGIONS)
    state = fleet_mod.idle_state(fleet)
    scoring = settings_mod.ScoringSettings()
    batch = demand_mod.batch([b.demand(j)], fleet, scoring.reference_pue)
    ev = engine.evaluate(fleet, state, batch, b.NOW, scoring)
    rows = [p.index for p in fleet.pools if p.center == center]
    return np.asarray(ev.score[0, rows])


def _replace_center(cs: list[Any], name: str, **changes: Any) -> list[Any]:
    out = []
    for c in cs:
        if c.name != name:
            out.append(c)
            continue
        spec = c.spec
        kw: dict[str, Any] = {
            "pools": [p.to_wire() for p in spec.pools],
            "pue": spec.energy.pue,
            "grams": spec.energy.carbon_intensity.grams_per_k_wh,
            "price": spec.energy.price_per_k_wh.value,
            "links": [link.to_wire() for link in spec.network.links],
            "region": spec.region,
            "budget_kwh": spec.energy.budget.k_wh if spec.energy.budget else None,
        }
        kw.update(changes)
        out.append(b.center(name, **kw))
    return out


@FAST
@given(centers(), jobs(), st.floats(0.05, 0.95), st.floats(1.5, 10))
def test_cleaner_grid_closer_data_or_more_nodes_never_lower_a_pools_score(
    cs: list[Any], js: list[Any], cleaner: float, faster: float
) -> None:
    j, target = js[0], cs[0]
    before = _score(cs, j, target.name)
    grams = target.spec.energy.carbon_intensity.grams_per_k_wh * cleaner
    links = [
        {"region": link.region, "bandwidthGbps": link.bandwidth_gbps * faster}
        for link in target.spec.network.links
    ]
    bigger = [
        {
            **p.to_wire(),
            "expected": {
                "nodes": p.expected.nodes + 2,
                "acceleratorsPerNode": p.expected.accelerators_per_node,
            },
        }
        for p in target.spec.pools
    ]
    for changed in (
        _replace_center(cs, target.name, grams=grams),
        _replace_center(cs, target.name, links=links),
        _replace_center(cs, target.name, pools=bigger),
    ):
        after = _score(changed, j, target.name)
        assert np.all(after >= before - 1e-12), (before, after)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["reserve", "settle", "release", "roll"]),
            st.integers(0, 5),
            st.floats(0, 100),
            st.floats(0, 3 * 86400),
        ),
        max_size=60,
    )
)
def test_energy_ledger_never_goes_negative_or_double_counts(ops: list[tuple[str, int, float, float]]) -> None:
    ledger = energy_mod.EnergyLedger([("c", "Asia/Shanghai", 500.0, "Day")])
    ledger.roll(b.NOW)
    outstanding: dict[tuple[str, str], float] = {}
    # What the ledger must hold, computed from the operations alone: kWh settled in the current
    # budget day (Asia/Shanghai) and since the start.
    used_today = used_ever = 0.0
    now = b.NOW
    today = energy_mod.period_bounds(now, "Asia/Shanghai", "Day")[2]
    for op, job, kwh, dt in ops:
        key = ("ns", f"j{job}")
        if op == "reserve" and key not in outstanding and kwh <= ledger.remaining("c"):
            ledger.reserve("c", key, kwh)
            outstanding[key] = kwh
        elif op == "settle" and key in outstanding:
            used = outstanding.pop(key) * 0.9
            ledger.settle(key, used)
            used_today += used
            used_ever += used
        elif op == "release" and key in outstanding:
            assert ledger.release(key) == outstanding.pop(key)
        elif op == "roll":
            now += dt
            ledger.roll(now)
            day = energy_mod.period_bounds(now, "Asia/Shanghai", "Day")[2]
            if day != today:
                today, used_today = day, 0.0
        account = ledger.account("c")
        assert account.reserved_kwh == sum(outstanding.values()) or math.isclose(
            account.reserved_kwh, sum(outstanding.values())
        )
        assert math.isclose(account.used_kwh, used_today, abs_tol=1e-9), (account.used_kwh, used_today)
        assert math.isclose(account.total_used_kwh, used_ever, abs_tol=1e-9), (account.total_used_kwh, used_ever)
        assert account.period_label == today
