"""The planner: the core's one call. Request in (fleet, ledgers, queued jobs, now), reply out.

Jobs are taken in queue order; each Bound job reserves its gang in the capacity ledger and its
estimated kWh in its center's energy ledger before the next job is planned, so a plan never
puts more accelerators on a pool than it has and never overruns a budget. The inputs are not
modified: the reply carries the ledgers after the plan.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from suanli import settings as settings_mod
from suanli.ledger import capacity as capacity_mod
from suanli.ledger import energy as energy_mod
from suanli.ledger import quota as quota_mod
from suanli.placement import decision as decision_mod
from suanli.placement import deferral, feasible, policies, tenancy
from suanli.scoring import demand as demand_mod
from suanli.scoring import engine
from suanli.scoring import explain as explain_mod
from suanli.scoring import fleet as fleet_mod

BoolArray = npt.NDArray[np.bool_]

REASON_WORDS = {
    "TYPE": "wrong accelerator type or no image",
    "MODEL": "model not allowed",
    "PRECISION": "precision unsupported",
    "MEMORY": "too little accelerator memory",
    "REGION": "region not allowed",
    "NEVER_FITS": "gang larger than the pool",
    "CAPACITY": "not enough free accelerators",
    "NOT_READY": "center or pool not ready",
    "BUDGET": "center energy budget exhausted",
    "MAX_KWH": "over the job's energy cap",
    "MAX_CARBON": "over the job's carbon cap",
    "DEADLINE": "cannot meet the deadline",
    "QUOTA": "queue quota",
}


@dataclasses.dataclass(frozen=True)
class PlanRequest:
    """Every input of a planning pass."""

    fleet: fleet_mod.Fleet
    capacity: capacity_mod.CapacityLedger
    energy: energy_mod.EnergyLedger
    jobs: Sequence[demand_mod.JobDemand]
    now: float
    settings: settings_mod.Settings = dataclasses.field(default_factory=settings_mod.Settings)
    ready: BoolArray | None = None  # per pool; None: pools with capacity are ready
    not_ready_reason: tuple[str, ...] | None = None
    policy: str = policies.SCORE
    seed: int = 0
    quotas: quota_mod.QuotaLedger | None = None  # ComputeQueues; None: no tenants
    # Jobs whose Queued status is current, by key: the pools each could ever use. Such a job is skipped
    # (no decision) while none of those has room for its gang (kube/set_aside.py).
    skippable: Mapping[tuple[str, str], BoolArray] | None = None


@dataclasses.dataclass(frozen=True)
class PlanReply:
    """Every output: one decision per job in planning order, and the ledgers after them."""

    decisions: tuple[decision_mod.Decision, ...]
    capacity: capacity_mod.CapacityLedger
    energy: energy_mod.EnergyLedger
    quotas: quota_mod.QuotaLedger | None = None
    skipped: int = 0  # skippable jobs left without a decision: no room for them at their turn


def _fmt_time(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _candidate(fleet: fleet_mod.Fleet, ev: engine.Evaluation, row: int, pool: int) -> decision_mod.Candidate:
    return decision_mod.Candidate(
        pool=fleet.pools[pool],
        score=float(ev.score[row, pool]),
        breakdown=decision_mod.Breakdown(
            accelerator=float(ev.accelerator[row, pool]),
            locality=float(ev.locality[row, pool]),
            energy=float(ev.energy[row, pool]),
        ),
        estimates=decision_mod.Estimates(
            runtime_seconds=float(ev.runtime_s[row, pool]),
            transfer_seconds=float(ev.transfer_s[row, pool]),
            energy_kwh=float(ev.energy_kwh[row, pool]),
            carbon_kg=float(ev.carbon_kg[row, pool]),
            cost=float(ev.cost[row, pool]),
        ),
    )


class WorkingState:
    """Mutable working state of the fleet while planning: ledgers, slot table, budgets.

    `plan` builds one from copies of the request's ledgers and drops it afterwards; a
    `session.Session` keeps one across many calls and feeds it releases and clock moves.
    """

    def __init__(
        self,
        fleet: fleet_mod.Fleet,
        capacity: capacity_mod.CapacityLedger,
        energy: energy_mod.EnergyLedger,
        now: float,
        ready: BoolArray | None = None,
        not_ready_reason: tuple[str, ...] | None = None,
        quotas: quota_mod.QuotaLedger | None = None,
    ):
        """Take ownership of the ledgers (the caller copies them if it must keep its own)."""
        self.capacity = capacity
        self.energy = energy
        self.energy.roll(now)
        self.quotas = quotas
        if quotas is not None:
            quotas.roll(now)
        counts = np.arange(fleet_mod.MAX_PER_NODE + 1)
        counts[0] = 1
        self.divisors = np.arange(fleet_mod.MAX_PER_NODE + 1)[:, None] // counts[None, :]
        self.slots = fleet_mod.FleetState.slot_table(self.capacity.histogram())
        self.idle_slots = fleet_mod.FleetState.slot_table(capacity.idle().histogram())
        if ready is not None:
            self.ready = np.asarray(ready, dtype=np.bool_)
            self.not_ready = not_ready_reason or tuple("" for _ in range(fleet.size))
        else:
            self.ready = np.array([self.capacity.capacity(p) > 0 for p in range(fleet.size)], dtype=np.bool_)
            self.not_ready = tuple("" if r else "pool has no nodes" for r in self.ready)
        self.centers = [c.name for c in fleet.centers]
        self._refresh_budgets()

    @classmethod
    def for_request(cls, request: PlanRequest) -> WorkingState:
        return cls(
            request.fleet,
            request.capacity.copy(),
            request.energy.copy(),
            request.now,
            request.ready,
            request.not_ready_reason,
            request.quotas.copy() if request.quotas is not None else None,
        )

    def _refresh_budgets(self) -> None:
        self.budgets = np.array([self.energy.remaining(name) for name in self.centers])
        self.labels = tuple(self.energy.account(name).period_label for name in self.centers)

    def roll(self, now: float) -> list[str]:
        """Move the energy accounts to the period containing `now`; the centers that rolled."""
        rolled = self.energy.roll(now)
        if rolled:
            self._refresh_budgets()
        if self.quotas is not None:
            rolled += self.quotas.roll(now)
        return rolled

    def release(
        self,
        fleet: fleet_mod.Fleet,
        allocation: capacity_mod.Allocation,
        job: tuple[str, str],
        used_kwh: float,
        carbon_kg: float,
        cost: float,
    ) -> None:
        """A bound job finished: give its gang back and settle its energy at its center and in its queue."""
        self.capacity.release(allocation)
        self.energy.settle(job, used_kwh, carbon_kg, cost)
        if self.quotas is not None and self.quotas.holds(job):
            self.quotas.settle(job, {"energyKWh": used_kwh, "carbonKg": carbon_kg})
        pool = allocation.pool
        self.slots[pool] = self.capacity.histogram_row(pool) @ self.divisors
        ci = int(fleet.pool_center[pool])
        self.budgets[ci] = self.energy.remaining(self.centers[ci])

    def fleet_state(self) -> fleet_mod.FleetState:
        return fleet_mod.FleetState(
            slots=self.slots,
            idle_slots=self.idle_slots,
            ready=self.ready,
            not_ready_reason=self.not_ready,
            budget_remaining_kwh=self.budgets,
            budget_period=self.labels,
        )

    def bind(
        self, fleet: fleet_mod.Fleet, job: demand_mod.JobDemand, pool: int, kwh: float,
        quota_demand: dict[str, float] | None = None,
    ) -> capacity_mod.Allocation:
        allocation = self.capacity.reserve(pool, job.replicas, job.count)
        if quota_demand is not None and job.queue and self.quotas is not None and self.quotas.has(job.queue):
            self.quotas.admit(job.queue, job.key, quota_demand)
        center = fleet.pools[pool].center
        self.energy.reserve(center, job.key, kwh)
        self.slots[pool] = self.capacity.histogram_row(pool) @ self.divisors
        ci = int(fleet.pool_center[pool])
        self.budgets[ci] = self.energy.remaining(center)
        return allocation


def _queued_message(summary: dict[str, int], total: int, quota_first: str = "") -> str:
    """Why a job waits: the filters that rejected pools, most pools first; led by its queue's sentence
    when its quota alone keeps it off some pool (`_quota_first`)."""
    if not summary:
        return "no pools in the fleet"
    parts = [
        f"{REASON_WORDS.get(name, name)} ({hits} of {total} pools)"
        for name, hits in sorted(summary.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    if quota_first:
        return f"waiting for its ComputeQueue: {quota_first}; all pools: " + "; ".join(parts[:4])
    return "waiting: no pool can take the job now: " + "; ".join(parts[:4])


def _quota_first(quota: dict[int, str], ev: engine.Evaluation) -> str:
    """The queue's sentence, first, when its quota is all that keeps the job off some pool (the best
    scoring such pool's): the part of the wait its tenant can act on."""
    only = [p for p in quota if int(ev.reasons[0, p]) == int(engine.Reject.QUOTA)]
    if not only:
        return ""
    best = max(only, key=lambda p: float(ev.score[0, p]))
    return quota[best]


def _explained(
    request: PlanRequest, state: fleet_mod.FleetState, job: demand_mod.JobDemand, ev: engine.Evaluation,
    ranks: npt.NDArray[np.float64], quota: dict[int, str] | None = None,
) -> tuple[tuple[decision_mod.Candidate, ...], tuple[decision_mod.Rejection, ...]]:
    """Feasible pools best first (by the policy's ranking: the score, or green's cost), and rejected
    pools closest misses first, with reasons in words."""
    fleet, config = request.fleet, request.settings
    feasible = np.flatnonzero(ev.feasible[0])
    ranked = feasible[np.argsort(-ranks[feasible], kind="stable")]
    candidates = tuple(_candidate(fleet, ev, 0, int(p)) for p in ranked[: config.scoring.candidates_shown])
    infeasible = np.flatnonzero(~ev.feasible[0])
    # Closest misses first: fewer failed filters, then by name.
    closeness = [bin(int(ev.reasons[0, p])).count("1") for p in infeasible]
    order = sorted(range(len(infeasible)), key=lambda i: (closeness[i], int(infeasible[i])))
    rejected = tuple(
        decision_mod.Rejection(
            fleet.pools[int(infeasible[i])], explain_mod.reason(fleet, state, job, ev, 0, int(infeasible[i]), quota)
        )
        for i in order[: config.scoring.rejections_shown]
    )
    return candidates, rejected


def plan_one(
    request: PlanRequest, work: WorkingState, job: demand_mod.JobDemand, explain: bool = True
) -> decision_mod.Decision:
    """Decide one job against the working state; a Bound job is booked in it before returning.

    `explain=False` leaves out the candidate list and the per-pool rejection sentences (the
    simulator decides thousands of jobs and reads neither); the decision itself is the same.
    """
    fleet, config = request.fleet, request.settings
    state = work.fleet_state()
    batch = demand_mod.batch([job], fleet, config.scoring.reference_pue)
    ev = engine.evaluate(fleet, state, batch, request.now, config.scoring)
    ev, quota = tenancy.filter_pools(fleet, job, ev, work.quotas, job.queue_problem)
    ranks, charge = policies.ranking(request.policy, ev, 0, work.capacity, job)  # before the gang is booked
    chosen = policies.choose(request.policy, fleet, ev, 0, work.capacity, job, request.seed, ranks)

    candidates: tuple[decision_mod.Candidate, ...] = ()
    rejected: tuple[decision_mod.Rejection, ...] = ()
    if explain:
        candidates, rejected = _explained(request, state, job, ev, ranks, quota)
    summary = explain_mod.summary(ev, 0)
    summary_items = tuple(sorted(summary.items()))

    later = None
    if request.policy == policies.SCORE:
        admissible = tenancy.admissible(fleet, job, work.quotas)
        later = deferral.consider(fleet, state, job, ev, chosen, request.now, config, admissible)
    if later is not None:
        target = _candidate(fleet, later.evaluation, later.row, later.pool)
        if chosen >= 0:
            now_c = ev.carbon_kg[0, chosen]
            why = (
                f"{1 - target.estimates.carbon_kg / now_c:.0%} less carbon than starting now"
                if now_c > 0
                else "cleaner"
            )
        else:
            why = "no pool meets the job's limits now; this start does"
        message = (
            f"deferred to {_fmt_time(later.start_epoch)} on {target.pool.center}/{target.pool.pool}: {why}; "
            f"still finishes before the deadline"
        )
        return decision_mod.Decision(
            job=job,
            phase="Deferred",
            binding=target,
            candidates=candidates,
            rejected=rejected,
            message=message,
            planned_start=later.start_epoch,
            reject_summary=summary_items,
        )
    if chosen < 0:
        return decision_mod.Decision(
            job=job,
            phase="Queued",
            binding=None,
            candidates=(),
            rejected=rejected,
            message=_queued_message(summary, fleet.size, _quota_first(quota, ev)),
            reject_summary=summary_items,
            reclaimable=tenancy.reclaimable(fleet, job, ev),
        )
    binding = _candidate(fleet, ev, 0, chosen)
    allocation = work.bind(fleet, job, chosen, binding.estimates.energy_kwh, tenancy.demand(fleet, job, ev, 0, chosen))
    runner_up = next((c for c in candidates if c.pool.index != chosen), None)
    b = binding.breakdown
    message = (
        f"bound to {binding.pool.center}/{binding.pool.pool} ({binding.pool.model}), score {binding.score:.3f} "
        f"(accelerator {b.accelerator:.2f}, locality {b.locality:.2f}, energy {b.energy:.2f})"
    )
    if request.policy != policies.SCORE:
        message += f" by policy {request.policy}"
    if charge is not None:
        message += (
            f"; green: least carbon counting the time held, {charge.carbon_kg[chosen]:.3g} kg "
            f"+ {charge.hold_kg[chosen]:.3g} kg for {binding.estimates.runtime_seconds + binding.estimates.transfer_seconds:,.0f} s "
            f"held with the fleet {charge.busy:.0%} busy"
        )
    if runner_up is not None:
        message += f"; runner-up {runner_up.pool.center}/{runner_up.pool.pool} {runner_up.score:.3f}"
        if charge is not None:
            r = runner_up.pool.index
            message += f" ({charge.carbon_kg[r]:.3g} kg + {charge.hold_kg[r]:.3g} kg)"
    if job.runtime_assumed:
        message += f"; no runtime estimate given, assumed {config.scoring.default_runtime_seconds / 3600:g}h"
    return decision_mod.Decision(
        job=job,
        phase="Bound",
        binding=binding,
        candidates=candidates,
        rejected=rejected,
        message=message,
        allocation=allocation,
        reject_summary=summary_items,
    )


def plan(request: PlanRequest) -> PlanReply:
    """Decide every job of the request: queues by fair share, then priority and arrival (tenancy.fair_order).
    A job in `request.skippable` gets no decision when none of its pools is ready with room for its gang at
    its turn (earlier jobs of the plan took it): it would only be Queued again, as it already is."""
    work = WorkingState.for_request(request)
    decisions, skipped = [], 0
    skippable = request.skippable or {}
    # Room by (pools, gang): the same until the next decision changes the working state. Once the room
    # is gone, the rest of a deep queue is skipped at a dictionary lookup each.
    rooms: dict[tuple[int, int, int], bool] = {}
    for job in tenancy.fair_order(request.jobs, work.quotas):
        usable = skippable.get(job.key)
        if usable is not None:
            shape = (id(usable), job.replicas, job.count)
            room = rooms.get(shape)
            if room is None:
                room = rooms[shape] = feasible.room(usable, work.ready, work.slots, job.replicas, job.count)
            if not room:
                skipped += 1
                continue
        decisions.append(plan_one(request, work, job))
        rooms.clear()
    return PlanReply(decisions=tuple(decisions), capacity=work.capacity, energy=work.energy, quotas=work.quotas,
                     skipped=skipped)


def ledgers_for(fleet: fleet_mod.Fleet) -> tuple[capacity_mod.CapacityLedger, energy_mod.EnergyLedger]:
    """Empty ledgers at the fleet's expected size (what `plan` and `simulate` start from)."""
    cap = capacity_mod.CapacityLedger.uniform(
        [(p.expected_nodes, p.accelerators_per_node) for p in fleet.pools]
    )
    energy = energy_mod.EnergyLedger((c.name, c.zone, c.budget_kwh, c.budget_period) for c in fleet.centers)
    return cap, energy
