"""Quota ledger per ComputeQueue: cohort borrowing and lending, accelerator matching, budgets per period."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from suanli.ledger import quota as quota_mod
from suanli.ledger.energy import period_bounds
from suanli.ledger.quota import QuotaLedger
from suanli.ledger.quota_terms import Budget, Limit, QueueQuota, QuotaError, Shortfall

GPU = "accelerators/GPU"
H100 = "accelerators/GPU/H100"
CU = "computeUnits"
DEC_15_2026 = datetime.datetime(2026, 12, 15, tzinfo=datetime.UTC).timestamp()
TOL = 1e-6


def gpus(n: float, model: str = "H100", cu: float | None = None, **budgets: float) -> dict[str, float]:
    """The planner's demand for a pool of GPU `model`."""
    demand = {GPU: n, f"{GPU}/{model}": n, CU: n if cu is None else cu}
    demand.update(budgets)
    return demand


def job(name: str) -> tuple[str, str]:
    return ("ns", name)


# -- concurrent dimensions ------------------------------------------------------------------------


def test_a_queue_admits_up_to_its_nominal_and_not_beyond() -> None:
    ledger = QuotaLedger([QueueQuota("team-a", limits={GPU: Limit(8)})])
    ledger.admit("team-a", job("a"), gpus(5))
    assert ledger.check("team-a", gpus(3)) is None
    ledger.admit("team-a", job("b"), gpus(3))
    assert ledger.usage("team-a") == {GPU: 8}
    short = ledger.check("team-a", gpus(1))
    assert short is not None and (short.dimension, short.need, short.left) == (GPU, 1, 0)
    with pytest.raises(QuotaError) as err:
        ledger.admit("team-a", job("c"), gpus(1))
    assert err.value.shortfall == short
    assert not ledger.holds(job("c"))
    assert ledger.left("team-a", GPU) == 0


def test_a_queue_borrows_what_an_idle_cohort_member_lends() -> None:
    ledger = QuotaLedger(
        [
            QueueQuota("team-a", "research", limits={GPU: Limit(8)}),
            QueueQuota("team-b", "research", limits={GPU: Limit(16)}),
        ]
    )
    ledger.admit("team-a", job("big"), gpus(20))
    assert ledger.borrowed("team-a") == {GPU: 12}
    assert ledger.lent("team-b") == {GPU: 12}
    assert ledger.lent("team-a") == {GPU: 0}
    assert ledger.left("team-a", GPU) == 4
    assert ledger.left("team-b", GPU) == 4  # its own quota is lent out until team-a gives it back
    ledger.release(job("big"))
    assert ledger.left("team-b", GPU) == 24  # and borrows team-a's 8 in turn
    assert ledger.borrowed("team-a") == ledger.lent("team-b") == {GPU: 0}


def test_the_borrowing_limit_caps_what_a_queue_borrows() -> None:
    ledger = QuotaLedger(
        [
            QueueQuota("team-a", "research", limits={GPU: Limit(64, borrowing_limit=32)}),
            QueueQuota("team-b", "research", limits={GPU: Limit(100)}),
        ]
    )
    ledger.admit("team-a", job("a"), gpus(93))
    assert ledger.left("team-a", GPU) == 3
    short = ledger.check("team-a", gpus(8))
    assert short is not None
    assert short.message() == (
        "queue team-a accelerators/GPU: job needs 8, 3 left (nominal 64, borrowing up to 32 from cohort research)"
    )


def test_the_lending_limit_keeps_the_guaranteed_part_for_the_lender() -> None:
    # R lends 4 of its 10 and keeps 6; Q lends all its 10. Q reaches 14 (its 10 and R's 4);
    # R can still take its guaranteed 6, not 7.
    ledger = QuotaLedger(
        [
            QueueQuota("r", "c", limits={CU: Limit(10, lending_limit=4)}),
            QueueQuota("q", "c", limits={CU: Limit(10)}),
        ]
    )
    assert ledger.left("q", CU) == 14
    ledger.admit("q", job("q1"), {CU: 14})
    assert ledger.check("q", {CU: 1}) is not None
    assert ledger.left("r", CU) == 6
    assert ledger.check("r", {CU: 7}) is not None
    assert ledger.check("r", {CU: 6}) is None
    ledger.admit("r", job("r1"), {CU: 6})
    assert ledger.lent("r") == {CU: 4} and ledger.borrowed("q") == {CU: 4}


def test_a_queue_without_cohort_is_capped_at_its_nominal_whatever_its_borrowing_limit() -> None:
    ledger = QuotaLedger(
        [
            QueueQuota("alone", limits={CU: Limit(10, borrowing_limit=50)}),
            QueueQuota("other", "c", limits={CU: Limit(100)}),
        ]
    )
    assert ledger.left("alone", CU) == 10
    short = ledger.check("alone", {CU: 11})
    assert short is not None
    assert (
        short.message()
        == "queue alone computeUnits: job needs 11, 10 left (nominal 10, no cohort to borrow from)"
    )


def test_an_accelerator_type_the_queue_does_not_list_is_refused_by_name() -> None:
    ledger = QuotaLedger([QueueQuota("team-a", limits={GPU: Limit(64)})])
    demand = {"accelerators/NPU": 8, "accelerators/NPU/Ascend910B": 8, CU: 8}
    short = ledger.check("team-a", demand)
    assert short is not None
    assert (
        short.message() == "queue team-a has no quota for NPU Ascend910B (spec.quota.accelerators lists GPU)"
    )
    with pytest.raises(QuotaError, match="no quota for NPU Ascend910B"):
        ledger.admit("team-a", job("npu"), demand)
    assert ledger.left("team-a", "accelerators/NPU/Ascend910B") == 0
    assert ledger.left("team-a", "accelerators/NPU") == 0


def test_a_model_entry_matches_its_own_model_only() -> None:
    ledger = QuotaLedger([QueueQuota("team-a", limits={H100: Limit(16), "accelerators/NPU": Limit(4)})])
    assert ledger.check("team-a", gpus(16)) is None  # accelerators/GPU is not listed: only the model applies
    short = ledger.check("team-a", gpus(1, model="A100"))
    assert short is not None
    assert short.message() == (
        "queue team-a has no quota for GPU A100 (spec.quota.accelerators lists GPU H100, NPU)"
    )
    assert ledger.check("team-a", {CU: 1e6}) is None  # CPU only: no accelerator asked for
    assert ledger.left("team-a", H100) == 16
    assert ledger.left("team-a", "accelerators/GPU/A100") == 0


def test_type_and_model_entries_both_apply() -> None:
    ledger = QuotaLedger([QueueQuota("team-a", limits={GPU: Limit(10), H100: Limit(4)})])
    ledger.admit("team-a", job("h"), gpus(4))
    short = ledger.check("team-a", gpus(1))
    assert short is not None and short.dimension == H100
    assert ledger.check("team-a", gpus(6, model="A100")) is None
    assert ledger.left("team-a", H100) == 0
    assert ledger.left("team-a", "accelerators/GPU/A100") == 6


def test_a_family_the_queue_does_not_list_is_unlimited() -> None:
    ledger = QuotaLedger([QueueQuota("cpu", limits={CU: Limit(4)}), QueueQuota("free")])
    assert ledger.check("cpu", gpus(1000, cu=4)) is None
    assert ledger.check("free", gpus(1000, energyKWh=1e9)) is None
    assert ledger.left("cpu", GPU) == math.inf
    assert ledger.left("free", CU) == math.inf
    ledger.admit("free", job("f"), gpus(1000))
    assert ledger.usage("free") == {}
    assert ledger.share("free") == 0.0


def test_a_job_is_admitted_once_and_release_is_idempotent() -> None:
    ledger = QuotaLedger([QueueQuota("team-a", limits={GPU: Limit(8)})])
    ledger.admit("team-a", job("a"), gpus(2))
    with pytest.raises(QuotaError, match="ns/a already holds quota in queue team-a"):
        ledger.admit("team-a", job("a"), gpus(2))
    assert ledger.usage("team-a") == {GPU: 2}
    ledger.release(job("a"))
    ledger.release(job("a"))
    ledger.release(job("never"))
    assert ledger.usage("team-a") == {GPU: 0}
    assert not ledger.holds(job("a"))


def test_settle_of_a_job_that_holds_nothing_raises() -> None:
    ledger = QuotaLedger([QueueQuota("team-a", limits={GPU: Limit(8)})])
    with pytest.raises(QuotaError, match="ns/ghost holds no quota"):
        ledger.settle(job("ghost"), {})


def test_refused_inputs_name_the_job_and_dimension_and_leave_the_ledger_unchanged() -> None:
    ledger = QuotaLedger([QueueQuota("team-a", limits={GPU: Limit(8)}, budgets={"energyKWh": Budget(10)})])
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(QuotaError, match=r"ns/a energyKWh"):
            ledger.admit("team-a", job("a"), {GPU: 1, "energyKWh": bad})
    with pytest.raises(QuotaError, match="accelerators/TYPE"):
        ledger.check("team-a", {"accelerators/GPU/H100/x": 1})
    assert not ledger.holds(job("a"))
    ledger.admit("team-a", job("a"), {GPU: 1, "energyKWh": 2})
    with pytest.raises(QuotaError, match=r"ns/a used carbonKg"):
        ledger.settle(job("a"), {"carbonKg": -3})
    assert ledger.holds(job("a")) and ledger.usage("team-a") == {GPU: 1, "energyKWh": 2}
    with pytest.raises(KeyError, match="no ComputeQueue 'nope'"):
        ledger.check("nope", {})
    with pytest.raises(KeyError):
        ledger.admit("nope", job("b"), {})


def test_queue_quotas_are_validated_naming_the_dimension() -> None:
    with pytest.raises(ValueError, match=r"queue q accelerators/GPU: lendingLimit 9 exceeds nominal 8"):
        QueueQuota("q", limits={GPU: Limit(8, lending_limit=9)})
    with pytest.raises(ValueError, match=r"queue q computeUnits: nominal"):
        QueueQuota("q", limits={CU: Limit(-1)})
    with pytest.raises(ValueError, match=r"queue q computeUnits: borrowingLimit"):
        QueueQuota("q", limits={CU: Limit(1, borrowing_limit=-1)})
    with pytest.raises(ValueError, match="weight"):
        QueueQuota("q", weight=0)
    with pytest.raises(ValueError, match="Fortnight"):
        QueueQuota("q", budgets={"carbonKg": Budget(1, "Fortnight")})
    with pytest.raises(ValueError, match="energyKWh"):
        QueueQuota("q", limits={"energyKWh": Limit(1)})
    with pytest.raises(ValueError, match="time zone"):
        QueueQuota("q", zone="Mars/Olympus")
    with pytest.raises(ValueError, match="twice"):
        QuotaLedger([QueueQuota("q"), QueueQuota("q")])


def test_share_is_the_weighted_dominant_share_in_compute_units_when_listed() -> None:
    ledger = QuotaLedger(
        [
            QueueQuota("acc", weight=2, limits={GPU: Limit(10), "accelerators/NPU": Limit(4)}),
            QueueQuota("cu", limits={GPU: Limit(10), CU: Limit(100)}),
            QueueQuota("borrow-only", "c", limits={CU: Limit(0)}),
            QueueQuota("lender", "c", limits={CU: Limit(10)}),
        ]
    )
    ledger.admit("acc", job("a"), {GPU: 5, "accelerators/NPU": 3})
    assert ledger.share("acc") == pytest.approx(0.75 / 2)
    ledger.admit("cu", job("c"), {GPU: 10, CU: 25})
    assert ledger.share("cu") == pytest.approx(0.25)
    assert ledger.share("borrow-only") == 0.0
    ledger.admit("borrow-only", job("b"), {CU: 1})
    assert ledger.share("borrow-only") == math.inf


def test_copy_is_independent() -> None:
    ledger = QuotaLedger([QueueQuota("q", "c", limits={CU: Limit(10)}, budgets={"carbonKg": Budget(5)})])
    ledger.roll(DEC_15_2026)
    what_if = ledger.copy()
    what_if.admit("q", job("a"), {CU: 4, "carbonKg": 1})
    what_if.roll(DEC_15_2026 + 40 * 86_400)
    assert not ledger.holds(job("a")) and ledger.usage("q") == {CU: 0, "carbonKg": 0}
    assert ledger.left("q", CU) == 10 and ledger.period_label("q") == "Month 2026-12"
    assert what_if.left("q", CU) == 6 and what_if.period_label("q") == "Month 2027-01"


def test_occupy_books_without_checking_and_then_nothing_more_fits() -> None:
    ledger = QuotaLedger([QueueQuota("q", limits={CU: Limit(10)})])
    ledger.occupy("q", job("old"), {CU: 12})
    assert ledger.left("q", CU) == -2
    short = ledger.check("q", {CU: 1})
    assert short is not None and "0 left" in short.message()
    assert ledger.check("q", {CU: 0}) is None
    ledger.release(job("old"))
    assert ledger.left("q", CU) == 10


# -- budgets --------------------------------------------------------------------------------------


def test_budget_reserve_settle_and_roll() -> None:
    ledger = QuotaLedger(
        [QueueQuota("team-a", budgets={"energyKWh": Budget(100, "Day")}, zone="Asia/Shanghai")]
    )
    assert ledger.next_boundary() == -math.inf  # not rolled yet
    assert ledger.roll(DEC_15_2026) == []
    _, end, label = period_bounds(DEC_15_2026, "Asia/Shanghai", "Day")
    assert ledger.next_boundary() == end and ledger.period_label("team-a") == label == "Day 2026-12-15"
    ledger.admit("team-a", job("a"), {"energyKWh": 30})
    ledger.admit("team-a", job("b"), {"energyKWh": 50})
    assert ledger.left("team-a", "energyKWh") == 20
    ledger.settle(job("a"), {"energyKWh": 45, "carbonKg": 9})  # no carbon budget: ignored
    assert ledger.usage("team-a") == {"energyKWh": 95}
    short = ledger.check("team-a", {"energyKWh": 6})
    assert short is not None and short.period == "Day 2026-12-15"
    assert short.message() == "queue team-a energy budget: job needs 6 kWh, 5 kWh left in Day 2026-12-15"
    assert ledger.roll(end - 1) == []
    assert ledger.roll(end) == ["team-a"]
    assert ledger.usage("team-a") == {"energyKWh": 50}  # the running job's reservation stays
    assert ledger.period_label("team-a") == "Day 2026-12-16"
    ledger.settle(job("b"), {})  # used nothing
    assert ledger.usage("team-a") == {"energyKWh": 0}


def test_carbon_budget_shortfall_message() -> None:
    ledger = QuotaLedger([QueueQuota("team-a", budgets={"carbonKg": Budget(100, "Month")})])
    ledger.roll(DEC_15_2026)
    ledger.add_used("team-a", "carbonKg", 83)
    short = ledger.check("team-a", gpus(8, carbonKg=42))
    assert short == Shortfall("team-a", "carbonKg", 42, 17, "Month 2026-12")
    assert short.message() == "queue team-a carbon budget: job needs 42 kg, 17 kg left in Month 2026-12"


def test_add_used_counts_in_the_current_period() -> None:
    ledger = QuotaLedger(
        [QueueQuota("q", budgets={"energyKWh": Budget(10, "Week"), "carbonKg": Budget(5, "Month")})]
    )
    ledger.roll(DEC_15_2026)
    assert ledger.period_label("q") == "Week of 2026-12-14, Month 2026-12"
    assert ledger.period_label("q", "carbonKg") == "Month 2026-12"
    ledger.add_used("q", "energyKWh", 12)
    assert ledger.left("q", "energyKWh") == -2
    assert ledger.check("q", {"energyKWh": 0.5}) is not None
    with pytest.raises(QuotaError, match="not a budget dimension"):
        ledger.add_used("q", CU, 1)
    with pytest.raises(QuotaError, match="queue q used energyKWh"):
        ledger.add_used("q", "energyKWh", -1)
    QuotaLedger([QueueQuota("none")]).add_used("none", "carbonKg", 3)  # no budget: nothing to count
    assert ledger.roll(DEC_15_2026 + 7 * 86_400) == ["q"]
    assert ledger.usage("q") == {"energyKWh": 0, "carbonKg": 0}


def test_shortfall_numbers_are_rounded_for_people() -> None:
    short = Shortfall("q", "energyKWh", 1234.5678, 0.123456, "Day 2026-01-02")
    assert short.message() == "queue q energy budget: job needs 1235 kWh, 0.123 kWh left in Day 2026-01-02"
    assert Shortfall("q", CU, 2.5, -1).message() == "queue q computeUnits: job needs 2.5, 0 left"


# -- random sequences -----------------------------------------------------------------------------

DIMS = [GPU, H100, "accelerators/NPU", CU]
POOLS = [("GPU", "H100"), ("GPU", "A100"), ("NPU", "Ascend910B")]
ZONES = ["UTC", "Asia/Shanghai", "America/New_York"]
quarters = st.integers(0, 64).map(lambda k: k / 4)
amounts = st.one_of(st.integers(0, 16).map(float), quarters)
maybe_amounts = st.one_of(st.none(), amounts)
lendings = st.integers(-1, 4)  # -1: unset; else that many quarters of the nominal
booleans = st.booleans()
budget_amounts = st.integers(0, 200).map(float)
budget_periods = st.sampled_from(["Day", "Week"])
weights = st.sampled_from([0.5, 1.0, 3.0])
zones = st.sampled_from(ZONES)
sizes = st.integers(2, 4)
pools = st.sampled_from(POOLS)
gpu_counts = st.integers(0, 12).map(float)
kwh_or_kg = st.integers(0, 80).map(float)
picks = st.integers(0, 1 << 16)  # an index into whatever is there to pick from, modulo its size


@st.composite
def limits(draw: Any) -> Limit:
    nominal = draw(amounts)
    lending = draw(lendings)
    return Limit(nominal, draw(maybe_amounts), None if lending < 0 else round(nominal * lending) / 4)


limit_maps = st.dictionaries(st.sampled_from(DIMS), limits(), max_size=4)


@st.composite
def budgets(draw: Any) -> dict[str, Budget]:
    out = {}
    for dimension in ("energyKWh", "carbonKg"):
        if draw(booleans):
            out[dimension] = Budget(draw(budget_amounts), draw(budget_periods))
    return out


budget_maps = budgets()


@st.composite
def queue_quotas(draw: Any) -> list[QueueQuota]:
    out = [
        QueueQuota(
            f"q{i}",
            "cohort",
            weight=draw(weights),
            limits=draw(limit_maps),
            budgets=draw(budget_maps),
            zone=draw(zones),
        )
        for i in range(draw(sizes))
    ]
    if draw(booleans):  # and a queue without cohort
        out.append(QueueQuota("alone", None, limits=draw(limit_maps)))
    return out


@st.composite
def demands(draw: Any) -> dict[str, float]:
    type_, model = draw(pools)
    n = draw(gpu_counts)
    demand = {f"accelerators/{type_}": n, f"accelerators/{type_}/{model}": n, CU: draw(amounts)}
    for dimension in ("energyKWh", "carbonKg"):
        if draw(booleans):
            demand[dimension] = draw(kwh_or_kg)
    return demand


def close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL


def _listed_accelerators(quota: QueueQuota) -> set[str]:
    return {d for d in quota.limits if d.startswith("accelerators/")}


def _matched(quota: QueueQuota, demand: Mapping[str, float]) -> bool:
    """The accelerator rule, restated: some entry for the type (or its model) if the queue lists any."""
    listed = _listed_accelerators(quota)
    if not listed:
        return True
    for dimension, need in demand.items():
        if need > 0 and dimension.startswith("accelerators/"):
            type_ = dimension.split("/")[1]
            models = [d for d in demand if d.startswith(f"accelerators/{type_}/") and demand[d] > 0]
            if f"accelerators/{type_}" not in listed and not any(m in listed for m in models):
                return False
    return True


class QuotaMachine(RuleBasedStateMachine):
    """A reference model beside the ledger: held jobs' demands and settled budget usage."""

    def __init__(self) -> None:
        super().__init__()
        self.quotas: dict[str, QueueQuota] = {}
        self.ledger = QuotaLedger([])
        self.held: dict[tuple[str, str], tuple[str, dict[str, float]]] = {}
        self.used: dict[tuple[str, str], float] = {}
        self.ends: dict[tuple[str, str], float] = {}
        self.now = DEC_15_2026
        self.serial = 0

    @initialize(quotas=queue_quotas(), start=st.integers(0, 400 * 86_400))
    def build(self, quotas: list[QueueQuota], start: int) -> None:
        self.quotas = {q.name: q for q in quotas}
        self.ledger = QuotaLedger(quotas)
        self.now = DEC_15_2026 + start
        assert self.ledger.roll(self.now) == []
        for quota in quotas:
            for dimension, budget in quota.budgets.items():
                self.used[quota.name, dimension] = 0.0
                self.ends[quota.name, dimension] = period_bounds(self.now, quota.zone, budget.period)[1]

    # -- the reference ----------------------------------------------------------------------------

    def expected_usage(self, queue: str) -> dict[str, float]:
        quota = self.quotas[queue]
        out = dict.fromkeys(quota.limits, 0.0) | {d: self.used[queue, d] for d in quota.budgets}
        for owner, demand in self.held.values():
            if owner == queue:
                for dimension, need in demand.items():
                    if dimension in out:
                        out[dimension] += need
        return out

    def members(self, queue: str, dimension: str) -> list[str]:
        cohort = self.quotas[queue].cohort
        if cohort is None:
            return [queue]
        return [q.name for q in self.quotas.values() if q.cohort == cohort and dimension in q.limits]

    def slack(self, queue: str, demand: Mapping[str, float]) -> float:
        """How far the demand stays inside every limit (negative: how far it goes beyond)."""
        quota = self.quotas[queue]
        if not _matched(quota, demand):
            return -math.inf
        slack = math.inf
        for dimension, need in demand.items():
            if need <= 0:
                continue
            if dimension in quota.limits:
                after = {q: self.expected_usage(q)[dimension] for q in self.members(queue, dimension)}
                after[queue] += need
                limit = quota.limits[dimension]
                slack = min(slack, limit.cap - after[queue])
                lendable = sum(self.quotas[q].limits[dimension].lendable for q in after)
                over = sum(
                    max(0.0, u - self.quotas[q].limits[dimension].guaranteed) for q, u in after.items()
                )
                slack = min(slack, lendable - over)
            elif dimension in quota.budgets:
                left = quota.budgets[dimension].amount - self.expected_usage(queue)[dimension]
                slack = min(slack, left - need)
        return slack

    @staticmethod
    def pick(items: list[Any], index: int) -> Any:
        return items[index % len(items)]

    def snapshot(self) -> Any:
        return [
            (self.ledger.usage(q), self.ledger.borrowed(q), self.ledger.lent(q), self.ledger.share(q))
            for q in self.ledger.queues()
        ], sorted(j for j in self.held if self.ledger.holds(j))

    # -- steps --------------------------------------------------------------------------------------

    @rule(pick=picks, demand=demands())
    def admit(self, pick: int, demand: dict[str, float]) -> None:
        queue = self.pick(sorted(self.quotas), pick)
        self.serial += 1
        key = job(f"j{self.serial}")
        slack = self.slack(queue, demand)
        short = self.ledger.check(queue, demand)
        if slack > TOL:
            assert short is None
        elif slack < -TOL:
            assert short is not None
        if short is None:
            self.ledger.admit(queue, key, demand)
            self.held[key] = (queue, demand)
        else:
            assert short.queue == queue and short.need > short.left
            before = self.snapshot()
            with pytest.raises(QuotaError) as err:
                self.ledger.admit(queue, key, demand)
            assert err.value.shortfall == short
            assert self.snapshot() == before and not self.ledger.holds(key)

    @precondition(lambda self: bool(self.held))
    @rule(pick=picks)
    def admit_twice(self, pick: int) -> None:
        key = self.pick(sorted(self.held), pick)
        before = self.snapshot()
        with pytest.raises(QuotaError, match="already holds"):
            self.ledger.admit(self.held[key][0], key, {})
        assert self.snapshot() == before

    @precondition(lambda self: bool(self.held))
    @rule(pick=picks)
    def release(self, pick: int) -> None:
        key = self.pick(sorted(self.held), pick)
        self.ledger.release(key)
        self.ledger.release(key)
        del self.held[key]

    @precondition(lambda self: bool(self.held))
    @rule(pick=picks, energy=st.none() | quarters, carbon=st.none() | quarters)
    def settle(self, pick: int, energy: float | None, carbon: float | None) -> None:
        key = self.pick(sorted(self.held), pick)
        used = {d: v for d, v in (("energyKWh", energy), ("carbonKg", carbon)) if v is not None}
        self.ledger.settle(key, used)
        queue, _ = self.held.pop(key)
        for dimension, amount in used.items():
            if (queue, dimension) in self.used:
                self.used[queue, dimension] += amount
        with pytest.raises(QuotaError):
            self.ledger.settle(key, used)

    @rule(seconds=st.integers(0, 10 * 86_400))
    def roll(self, seconds: int) -> None:
        self.now += seconds
        rolled = set()
        for (queue, dimension), end in self.ends.items():
            if self.now >= end:
                quota = self.quotas[queue]
                self.ends[queue, dimension] = period_bounds(
                    self.now, quota.zone, quota.budgets[dimension].period
                )[1]
                self.used[queue, dimension] = 0.0
                rolled.add(queue)
        assert self.ledger.roll(self.now) == sorted(rolled)
        assert self.ledger.next_boundary() == min(self.ends.values(), default=math.inf)

    @rule(pick=picks, carbon=booleans, amount=quarters)
    def add_used(self, pick: int, carbon: bool, amount: float) -> None:
        queue = self.pick(sorted(self.quotas), pick)
        dimension = "carbonKg" if carbon else "energyKWh"
        self.ledger.add_used(queue, dimension, amount)
        if (queue, dimension) in self.used:
            self.used[queue, dimension] += amount

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def each_job_is_counted_once(self) -> None:
        for queue in self.quotas:
            usage = self.ledger.usage(queue)
            expected = self.expected_usage(queue)
            assert usage.keys() == expected.keys()
            for dimension, value in expected.items():
                assert close(usage[dimension], value)
        for key in self.held:
            assert self.ledger.holds(key)

    @invariant()
    def the_cohort_rule_holds_and_lending_matches_borrowing(self) -> None:
        pools: dict[tuple[str, str], list[str]] = {}
        for quota in self.quotas.values():
            for dimension in quota.limits:
                pools.setdefault((quota.cohort or quota.name, dimension), []).append(quota.name)
        for (_, dimension), names in pools.items():
            usage = {q: self.ledger.usage(q)[dimension] for q in names}
            limit = {q: self.quotas[q].limits[dimension] for q in names}
            over = sum(max(0.0, usage[q] - limit[q].guaranteed) for q in names)
            assert over <= sum(limit[q].lendable for q in names) + TOL
            lent = {q: self.ledger.lent(q)[dimension] for q in names}
            borrowed = {q: self.ledger.borrowed(q)[dimension] for q in names}
            for q in names:
                assert usage[q] <= limit[q].cap + TOL
                assert 0 <= lent[q] <= limit[q].lendable + TOL
                assert close(borrowed[q], max(0.0, usage[q] - limit[q].nominal))
            assert close(sum(lent.values()), sum(borrowed.values()))

    @invariant()
    def left_is_where_check_starts_refusing(self) -> None:
        for queue, quota in self.quotas.items():
            for dimension in (CU, GPU, "accelerators/NPU", "energyKWh"):
                if dimension not in quota.limits and dimension not in quota.budgets:
                    continue
                left = self.ledger.left(queue, dimension)
                if left >= 0:
                    assert self.ledger.check(queue, {dimension: left}) is None
                if math.isfinite(left):
                    assert self.ledger.check(queue, {dimension: max(0.0, left) + 0.01}) is not None


QuotaMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestQuotaSequences = QuotaMachine.TestCase


def test_the_module_is_documented_like_its_siblings() -> None:
    assert quota_mod.__doc__ is not None and "cohort" in quota_mod.__doc__
