"""Tenants in the planner (suanli.placement.tenancy): which queue admits a job, compute units across
vendors, the quota filter with reasons, fair-share order, and a queue's carbon budget choosing a
cleaner center."""

from __future__ import annotations

import dataclasses
import datetime
import math

import pytest
from tests.unit import builders as b

from suanli.api import queue as queue_api
from suanli.catalog import accelerators
from suanli.placement import planner, tenancy
from suanli.scoring import fleet as fleet_mod


def spec(**fields: object) -> queue_api.ComputeQueueSpec:
    return queue_api.ComputeQueueSpec.model_validate(fields)


QUEUES = {
    "vision": spec(namespaceSelector={"matchLabels": {"team": "vision"}}, cohort="research",
                   quota={"accelerators": [{"type": "GPU", "count": 8}]}),
    "speech": spec(namespaceSelector={"matchExpressions": [{"key": "team", "operator": "In", "values": ["speech"]}]},
                   cohort="research", quota={"accelerators": [{"type": "GPU", "count": 8}]}),
}


def test_a_job_is_admitted_by_spec_queue_or_by_the_one_queue_selecting_its_namespace() -> None:
    assert tenancy.resolve("speech", "ns", {"team": "vision"}, QUEUES) == tenancy.Resolution("speech")
    assert tenancy.resolve(None, "ns", {"team": "vision"}, QUEUES) == tenancy.Resolution("vision")
    assert tenancy.resolve(None, "ns", {"team": "other"}, QUEUES) == tenancy.Resolution(None)
    assert tenancy.resolve(None, "ns", None, QUEUES) == tenancy.Resolution(None)  # labels unknown
    missing = tenancy.resolve("nlp", "ns", {}, QUEUES)
    assert missing.problem == "ComputeQueue nlp (spec.queue) does not exist; create it or fix spec.queue"
    both = dict(QUEUES, everyone=spec(namespaceSelector={}))
    ambiguous = tenancy.resolve(None, "lab", {"team": "vision"}, both)
    assert ambiguous.queue is None
    assert ambiguous.problem == ("namespace lab matches the namespaceSelector of ComputeQueues everyone and vision; "
                                 "set spec.queue, or change the selectors so one matches")
    assert "tenancy.require_queue is true" in tenancy.required(None, "lab", True)
    assert tenancy.required("vision", "lab", True) == tenancy.required(None, "lab", False) == ""


def test_compute_units_weigh_each_model_by_its_peak_at_the_jobs_precision() -> None:
    a100, h100 = accelerators.CATALOG["A100"], accelerators.CATALOG["H100"]
    assert tenancy.compute_units_per_accelerator(a100.peak_tflops, "bf16") == 1.0
    assert tenancy.compute_units_per_accelerator(h100.peak_tflops, "bf16") == pytest.approx(
        h100.peak_tflops["bf16"] / a100.peak_tflops["bf16"])
    assert tenancy.compute_units_per_accelerator(h100.peak_tflops, "bf16") > 3
    assert tenancy.compute_units_per_accelerator({"fp16": 100.0}, "bf16") == 0.0


def queue(name: str, **fields: object) -> dict[str, queue_api.ComputeQueueSpec]:
    return {name: spec(**fields)}


def plan(centers: list, jobs: list, queues: dict[str, queue_api.ComputeQueueSpec]) -> planner.PlanReply:
    regions = [r for j in jobs for r in ([j.spec.data.region] if j.spec.data.region else [])]
    fleet = fleet_mod.build(centers, extra_regions=regions)
    cap, energy = planner.ledgers_for(fleet)
    demands = [dataclasses.replace(b.demand(j, arrival=i), queue=j.spec.queue) for i, j in enumerate(jobs)]
    return planner.plan(planner.PlanRequest(fleet=fleet, capacity=cap, energy=energy, jobs=demands, now=b.NOW,
                                            quotas=tenancy.ledger_for(queues)))


def named(job_doc, queue: str):  # type: ignore[no-untyped-def]
    job_doc.spec.queue = queue
    return job_doc


def test_quota_is_a_hard_filter_whose_reason_names_queue_dimension_need_and_what_is_left() -> None:
    centers = [b.center("c1", pools=[b.pool(nodes=4)])]
    jobs = [named(b.job(f"j{i}", count=8), "vision") for i in range(3)]
    reply = plan(centers, jobs, queue("vision", quota={"accelerators": [{"type": "GPU", "count": 16}]}))
    phases = [d.phase for d in reply.decisions]
    assert phases == ["Bound", "Bound", "Queued"]
    waiting = reply.decisions[2]
    assert waiting.message.startswith(
        "waiting for its ComputeQueue: queue vision accelerators/GPU: job needs 8, 0 left (nominal 16, no cohort "
        "to borrow from); all pools: queue quota (1 of 1 pools)"), waiting.message
    assert waiting.rejected[0].reason.startswith("queue vision accelerators/GPU: job needs 8, 0 left")
    assert reply.quotas is not None and reply.quotas.usage("vision")["accelerators/GPU"] == 16


def test_a_missing_queue_holds_its_jobs_with_the_reason() -> None:
    centers = [b.center("c1", pools=[b.pool()])]
    reply = plan(centers, [named(b.job("j"), "nlp")], queue("vision"))
    (d,) = reply.decisions
    assert d.phase == "Queued" and "ComputeQueue nlp does not exist; create it or fix spec.queue" in d.rejected[0].reason


def test_the_queue_with_the_lowest_weighted_share_plans_first() -> None:
    """Two queues of one cohort, each with 8 GPUs nominal, on a pool of 16: vision submitted all its jobs
    first, but speech's first job goes before vision's second (its share is 0, vision's already 0.5);
    each ends with its own 8. (In plain queue order vision would have taken 16 by borrowing.)"""
    centers = [b.center("c1", pools=[b.pool(nodes=2)])]
    jobs = [named(b.job(f"v{i}", count=4), "vision") for i in range(4)] + [named(b.job(f"s{i}", count=4), "speech")
                                                                         for i in range(2)]
    reply = plan(centers, jobs, QUEUES)
    order = [d.job.name for d in reply.decisions]
    assert order[:4] == ["v0", "s0", "v1", "s1"], order
    bound = {d.job.name for d in reply.decisions if d.phase == "Bound"}
    assert bound == {"v0", "v1", "s0", "s1"}
    assert reply.quotas is not None
    assert reply.quotas.share("vision") == reply.quotas.share("speech") == 1.0


def test_a_queues_carbon_budget_sends_the_job_to_a_cleaner_center() -> None:
    """The job's best pool is the dirty center's H100s near its data; a budget below what it would emit
    there, but above what the clean center's A100s emit, admits it at the clean center."""
    dirty = b.center("dirty", "cn-a", [b.pool("h100", model="H100")], grams=800.0, pue=1.1)
    clean = b.center("clean", "cn-b", [b.pool()], grams=100.0, pue=1.6)
    job = named(b.job("j", count=8, duration="10h", data={"region": "cn-a", "sizeGiB": 2000}, profile="fast"),
                "climate")
    free = plan([dirty, clean], [job], {})
    assert free.decisions[0].phase == "Queued"  # named a queue that does not exist
    open_budget = plan([dirty, clean], [job], queue("climate", quota={"carbon": {"kg": 1000}}))
    assert open_budget.decisions[0].binding is not None and open_budget.decisions[0].binding.pool.center == "dirty"
    dirty_kg = open_budget.decisions[0].binding.estimates.carbon_kg
    tight = plan([dirty, clean], [job], queue("climate", quota={"carbon": {"kg": dirty_kg * 0.9}}))
    d = tight.decisions[0]
    assert d.phase == "Bound" and d.binding is not None and d.binding.pool.center == "clean", d.message
    assert any(r.pool.center == "dirty" and r.reason.startswith("queue climate carbon budget: job needs ")
               for r in d.rejected)


def test_a_queues_carbon_budget_defers_a_job_with_a_deadline_to_a_cleaner_window() -> None:
    """Nothing fits the queue's carbon budget now (700 g/kWh), but the solar window (80 g/kWh) does,
    before the deadline: the job is Deferred there instead of waiting for next month. With no deadline
    it waits, naming the budget. (On the code whose deferral looked only at the job's own carbon cap,
    it waited.)"""
    solar = [{"start": "10:00", "end": "16:00", "gramsPerKWh": 80}]
    center = b.center(grams=700, carbon_windows=solar)
    deadline = datetime.datetime.fromtimestamp(b.NOW + 2 * 86400, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    job = named(b.job("j", count=8, duration="4h", deadline=deadline), "climate")
    no_deadline = named(b.job("k", count=8, duration="4h"), "climate")
    now_kg = plan([center], [no_deadline], queue("climate", quota={"carbon": {"kg": 1e6}})).decisions[0]
    assert now_kg.phase == "Bound" and now_kg.binding is not None
    budget = now_kg.binding.estimates.carbon_kg * 0.5  # the window emits ~80/700 of it
    d = plan([center], [job], queue("climate", quota={"carbon": {"kg": budget}})).decisions[0]
    assert d.phase == "Deferred", d.message
    assert d.binding is not None and d.binding.estimates.carbon_kg <= budget
    waits = plan([center], [no_deadline], queue("climate", quota={"carbon": {"kg": budget}})).decisions[0]
    assert waits.phase == "Queued" and "queue climate carbon budget" in waits.message


@pytest.mark.parametrize("seed", range(25))
def test_the_quota_filter_flags_the_pools_and_sentences_a_check_per_pool_gives(seed: int) -> None:
    """`filter_pools` asks the concurrent quota once per model and a budget only where the estimate is
    over what is left; over random fleets, quotas, budgets and earlier bookings it flags exactly the
    pools, with exactly the sentences, that asking the ledger for the whole demand on each pool gives."""
    import random

    from suanli import settings as settings_mod
    from suanli.scoring import demand as demand_mod
    from suanli.scoring import engine

    rng = random.Random(seed)
    models = [("GPU", "A100"), ("GPU", "H100"), ("NPU", "Ascend910B"), ("GPU", "V100")]
    centers = []
    for c in range(rng.randint(1, 4)):
        pools = [b.pool(f"p{p}", type_=t, model=m, nodes=rng.randint(1, 3))
                 for p, (t, m) in enumerate(rng.sample(models, rng.randint(1, 4)))]
        centers.append(b.center(f"c{c}", rng.choice(["cn-a", "cn-b"]), pools, grams=rng.uniform(50, 900),
                                pue=rng.uniform(1.1, 1.7)))
    fleet = fleet_mod.build(centers, extra_regions=["cn-a"])
    job = dataclasses.replace(b.demand(b.job("j", count=rng.choice([1, 2, 4, 8]), types=("GPU", "NPU"), duration="4h",
                                             precision=rng.choice(["fp16", "bf16"]))), queue="team")
    settings = settings_mod.Settings()
    cap, energy = planner.ledgers_for(fleet)
    state = planner.WorkingState(fleet, cap, energy, b.NOW).fleet_state()
    ev = engine.evaluate(fleet, state, demand_mod.batch([job], fleet, settings.scoring.reference_pue), b.NOW,
                         settings.scoring)
    kwh = [float(x) for x in ev.energy_kwh[0] if math.isfinite(x)]
    quota: dict[str, object] = {}
    entries = [{"type": t, **({"model": m} if rng.random() < 0.5 else {}), "count": rng.randint(0, 12)}
               for t, m in rng.sample(models, rng.randint(0, 3))]
    if entries and len({(e["type"], e.get("model")) for e in entries}) == len(entries):
        quota["accelerators"] = entries
    if rng.random() < 0.5:
        quota["computeUnits"] = rng.uniform(0, 30)
    if rng.random() < 0.7 and kwh:
        quota["energy"] = {"kWh": rng.uniform(min(kwh) * 0.5, max(kwh) * 1.5)}
    if rng.random() < 0.5:
        quota["carbon"] = {"kg": rng.uniform(0, 20)}
    ledger = tenancy.ledger_for({"team": spec(quota=quota)})
    ledger.roll(b.NOW)
    for i in range(rng.randint(0, 3)):  # earlier bookings, which may leave the queue over its quota
        pool = rng.randrange(fleet.size)
        if math.isfinite(ev.energy_kwh[0, pool]):
            ledger.occupy("team", ("team-a", f"earlier{i}"), tenancy.demand(fleet, job, ev, 0, pool))
    _, messages = tenancy.filter_pools(fleet, job, ev, ledger)
    expected = {}
    for pool in range(fleet.size):
        if int(ev.reasons[0, pool]) & int(engine.PERMANENT):
            continue
        short = ledger.check("team", tenancy.demand(fleet, job, ev, 0, pool))
        if short is not None:
            expected[pool] = short.message()
    assert messages == expected
