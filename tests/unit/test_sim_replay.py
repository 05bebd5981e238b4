"""The simulator: hand-checkable replays, conservation, determinism, baselines' hard filters."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import builders
import pytest

from suanli.commands import simulate as simulate_cmd
from suanli.placement import planner
from suanli.placement import session as session_mod
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod
from suanli.sim import metrics, replay

T0 = builders.NOW
REPO = pathlib.Path(__file__).resolve().parents[2]


def _one_node_fleet() -> fleet_mod.Fleet:
    # One A100 node of 8, PUE 1.2, 500 g/kWh, 0.5/kWh, no budget.
    return fleet_mod.build([builders.center("c1", pools=[builders.pool(nodes=1, per_node=8)], pue=1.2)])


def test_waits_weighted_by_accelerators_and_by_gang_size_by_hand() -> None:
    """A 1x8 gang that waits 3000 s behind a 1x1, and two 1x1s that do not wait: the mean wait is
    1000 s, but per accelerator asked for it is 8 x 3000 / 10 = 2400 s."""
    fleet = _one_node_fleet()
    jobs = [
        builders.demand(builders.job("small", count=1, duration="1h"), T0),
        builders.demand(builders.job("gang", count=8, duration="1h"), T0 + 600),
        builders.demand(builders.job("late-small", count=1, duration="1h"), T0 + 7200),
    ]
    m = metrics.summary(replay.replay(fleet, jobs, "first-fit"))
    assert m["meanWaitSeconds"] == pytest.approx(1000.0)
    assert m["acceleratorWeightedWaitSeconds"] == pytest.approx(8 * 3000 / 10)
    assert m["meanWaitSecondsByAccelerators"] == {"1": pytest.approx(0.0), "8": pytest.approx(3000.0)}


def test_two_gangs_on_one_node_queue_and_add_up_by_hand() -> None:
    fleet = _one_node_fleet()
    jobs = [
        builders.demand(builders.job("first", count=8, duration="1h"), T0),
        builders.demand(builders.job("second", count=8, duration="1h"), T0 + 600),
    ]
    run = replay.replay(fleet, jobs, "first-fit")
    m = metrics.summary(run)
    # second waits for first: 3600 - 600 = 3000 s; JCTs 3600 and 6600.
    assert m["completed"] == 2
    assert m["meanWaitSeconds"] == pytest.approx(1500.0)
    assert m["meanJCTSeconds"] == pytest.approx(5100.0)
    # 8 x 400 W x 1 h x PUE 1.2 = 3.84 kWh each; at 500 g/kWh 1.92 kg; at 0.5/kWh 1.92.
    assert m["energyKWh"] == pytest.approx(7.68)
    assert m["carbonKg"] == pytest.approx(3.84)
    assert m["cost"] == pytest.approx(3.84)
    # Busy 7200 accelerator-s... over the arrival window [T0, T0 + 600] only: 8 x 600 of 8 x 600.
    assert m["utilization"] == pytest.approx(1.0)
    assert m["maxPoolOversubscription"] == 0


def _contended() -> tuple[fleet_mod.Fleet, list[demand_mod.JobDemand]]:
    fleet = fleet_mod.build(
        [
            builders.center(
                "dirty", "cn-a", [builders.pool("a100", nodes=2), builders.pool("t4", model="T4", nodes=2, per_node=4)],
                grams=700,
            ),
            builders.center("clean", "cn-b", [builders.pool("a100", nodes=1)], grams=100),
            builders.center("npu", "cn-c", [builders.pool("910b", type_="NPU", model="Ascend910B", nodes=1)]),
        ]
    )
    jobs = []
    for i in range(60):
        count = (1, 2, 4, 8)[i % 4]
        types = ("GPU",) if i % 7 else ("NPU",)
        models = ("T4",) if i % 11 == 0 else ()
        replicas = 3 if i % 13 == 0 else 1  # 3 x 8 never fits one pool's 2 nodes: unschedulable
        j = builders.job(f"j{i:02d}", count=8 if replicas == 3 else count, replicas=replicas, types=types,
                         models=models, duration=f"{30 + (i * 37) % 200}m")
        jobs.append(builders.demand(j, T0 + i * 300))
    return fleet, jobs


def _fits_some_pool(fleet: fleet_mod.Fleet, job: demand_mod.JobDemand) -> bool:
    """An empty pool of an accepted type and model holds the whole gang (replicas on distinct slots)."""
    return any(
        p.accelerator_type in job.types and (not job.models or p.model in job.models)
        and p.expected_nodes * (p.accelerators_per_node // job.count) >= job.replicas
        for p in fleet.pools
    )


@pytest.mark.parametrize("policy", replay.POLICIES)
def test_every_job_ends_exactly_once_and_no_pool_is_oversubscribed(policy: str) -> None:
    fleet, jobs = _contended()
    run = replay.replay(fleet, jobs, policy)
    outcomes = [r.outcome for r in run.records]
    assert set(outcomes) <= {"completed", "unschedulable", "queued"}
    assert len(run.records) == len(jobs) == len({(j.namespace, j.name) for j in run.jobs})
    m = metrics.summary(run)
    assert m["completed"] + m["unschedulable"] + m["stillQueued"] == m["jobs"] == len(jobs)
    # Unschedulable: exactly the jobs no pool could ever take (the 3x8 gangs, the 8-T4 ones on 4-T4 nodes).
    never_fit = {j.name for j in jobs if not _fits_some_pool(fleet, j)}
    assert {run.jobs[r.index].name for r in run.records if r.outcome == "unschedulable"} == never_fit
    assert m["unschedulable"] == len(never_fit) >= 5, never_fit
    assert m["meanWaitSeconds"] > 0, "the fleet is small enough to queue"
    assert m["maxPoolOversubscription"] == 0
    # Energy adds up: per job (settled) = per center (ledger).
    assert sum(r.energy_kwh for r in run.records if r.outcome == "completed") == pytest.approx(
        sum(run.center_energy_kwh.values())
    )
    assert sum(r.carbon_kg for r in run.records if r.outcome == "completed") == pytest.approx(
        sum(run.center_carbon_kg.values())
    )


@pytest.mark.parametrize("policy", replay.POLICIES)
def test_every_policy_obeys_the_hard_filters(policy: str) -> None:
    fleet, jobs = _contended()
    run = replay.replay(fleet, jobs, policy)
    for record in run.records:
        if record.outcome != "completed":
            continue
        job, pool = run.jobs[record.index], fleet.pools[record.pool]
        assert pool.accelerator_type in job.types
        assert not job.models or pool.model in job.models
        assert record.accelerators == job.count * job.replicas


def test_same_seed_same_json_and_random_depends_on_the_seed() -> None:
    fleet, jobs = _contended()
    docs = [json.dumps(metrics.summary(replay.replay(fleet, jobs, "random", seed=3))) for _ in range(2)]
    assert docs[0] == docs[1]
    pools = [
        [r.pool for r in replay.replay(fleet, jobs, "random", seed=s).records] for s in (1, 2, 3)
    ]
    assert pools[0] != pools[1] or pools[1] != pools[2]


def test_green_goes_to_the_clean_center_and_first_fit_to_the_first_declared() -> None:
    fleet = fleet_mod.build(
        [
            builders.center("dirty", "cn-a", [builders.pool(nodes=1)], grams=700),
            builders.center("clean", "cn-b", [builders.pool(nodes=1)], grams=100),
        ]
    )
    jobs = [builders.demand(builders.job(f"j{i}", count=8, duration="1h"), T0 + i * 7200) for i in range(3)]
    green = replay.replay(fleet, jobs, "green")
    first = replay.replay(fleet, jobs, "first-fit")
    assert {r.center for r in green.records} == {"clean"}
    assert {r.center for r in first.records} == {"dirty"}
    # Same work, 3 x 3.84 kWh; carbon 100 vs 700 g/kWh.
    assert metrics.summary(green)["carbonKg"] == pytest.approx(3 * 3.84 * 0.1)
    assert metrics.summary(first)["carbonKg"] == pytest.approx(3 * 3.84 * 0.7)


def test_a_session_decides_like_plan() -> None:
    fleet, jobs = _contended()
    cap, energy = planner.ledgers_for(fleet)
    reply = planner.plan(planner.PlanRequest(fleet=fleet, capacity=cap, energy=energy, jobs=jobs, now=T0))
    work = session_mod.Session(fleet, cap.copy(), energy.copy(), T0)
    decisions = work.place(jobs)
    assert [(d.job.name, d.phase, d.binding and d.binding.pool.key) for d in decisions] == [
        (d.job.name, d.phase, d.binding and d.binding.pool.key) for d in reply.decisions
    ]
    assert cap.free(0) == cap.capacity(0), "the session took copies; plan() never touches its inputs"


def test_release_frees_the_gang_and_settles_energy() -> None:
    fleet = _one_node_fleet()
    cap, energy = planner.ledgers_for(fleet)
    work = session_mod.Session(fleet, cap, energy, T0, explain=False)
    job = builders.demand(builders.job("a", count=8), T0)
    (bound,) = work.place([job])
    assert bound.phase == "Bound" and bound.allocation is not None
    assert work.place([dataclasses.replace(job, name="b")])[0].phase == "Queued"
    work.advance(T0 + 3600)
    work.release(bound.allocation, job.key, 3.84, 1.92, 1.92)
    assert work.capacity.free(0) == 8
    assert work.energy.account("c1").total_used_kwh == pytest.approx(3.84)
    with pytest.raises(ValueError, match="forward"):
        work.advance(T0)


def test_deferred_jobs_wake_at_their_planned_start() -> None:
    # Clean only 10:00-16:00 local (02:00-08:00Z); T0 is 11:06:40Z, so the next window is hours away.
    fleet = fleet_mod.build(
        [
            builders.center(
                "solar", pools=[builders.pool(nodes=1)], grams=800,
                carbon_windows=[{"start": "10:00", "end": "16:00", "gramsPerKWh": 50}],
            )
        ]
    )
    job = builders.demand(builders.job("batch", count=8, duration="1h", deadline="2026-11-20T00:00:00Z"), T0)
    run = replay.replay(fleet, [job], "green")
    (record,) = run.records
    assert record.deferrals == 1 and record.outcome == "completed"
    assert record.start > T0 + 3600
    assert metrics.summary(run)["deadlineMisses"] == 0


def test_example_trace_runs_through_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    code = simulate_cmd.run(
        [str(REPO / "crds/examples/simulate/centers.yaml")],
        [str(REPO / "crds/examples/simulate/trace")],
        "computejobs",
        ["green", "first-fit"],
        output="json",
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    for name in ("green", "first-fit"):
        m = doc["policies"][name]
        assert (m["jobs"], m["completed"], m["unschedulable"]) == (4, 3, 1)
        assert m["maxPoolOversubscription"] == 0
    assert doc["policies"]["green"]["carbonKg"] < doc["policies"]["first-fit"]["carbonKg"]


def test_unknown_policy_is_refused_with_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    code = simulate_cmd.run(["x"], ["y"], "computejobs", ["greenest"])
    assert code == 2
    assert "greenest" in capsys.readouterr().err


def test_jobs_left_waiting_for_a_budget_are_reported_as_queued() -> None:
    fleet = fleet_mod.build([builders.center("c1", pools=[builders.pool(nodes=1)], budget_kwh=5, period="Day")])
    small = builders.demand(builders.job("fits", count=8, duration="1h"), T0)  # 3.84 kWh
    big = builders.demand(builders.job("never", count=8, duration="2h"), T0 + 1)  # 7.68 kWh > 5 every day
    run = replay.replay(fleet, [small, big], "balanced")
    m = metrics.summary(run)
    assert (m["completed"], m["stillQueued"]) == (1, 1)
    assert math.isnan(run.records[1].start)
