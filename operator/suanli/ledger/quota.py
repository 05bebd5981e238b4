"""Quota ledger per tenant (ComputeQueue): concurrent limits shared in a cohort, budgets per period.

Two kinds of dimension, named by strings.

Concurrent dimensions (`accelerators/GPU`, `accelerators/NPU/Ascend910B`, `computeUnits`) are
held while a job is bound or running and given back when it ends. Each has a nominal quota.
The queues of a cohort lend each other what they do not use: queue j lends at most
`lendable_j` (its lending limit, or all of its nominal) and keeps `guaranteed_j = nominal_j -
lendable_j` for itself whatever the others do. A state (the usage u_j of every queue of the
cohort that lists the dimension) is admissible iff

    u_j <= nominal_j + borrowing_limit_j           for every queue (no cap without a borrowing limit)
    sum_j max(0, u_j - guaranteed_j) <= sum_j lendable_j

i.e. what the cohort uses beyond the guaranteed parts fits in what its queues lend together.
A queue without a cohort is a cohort of one, and both lines reduce to u <= nominal. Dimensions
are independent of each other. A queue borrows `max(0, u_j - nominal_j)`; the cohort's total
borrowed is reported as lent by the queues with unused lendable quota, in proportion to it
(never more than a queue's lendable). The admission rule guarantees there is enough of it.

Budget dimensions (`energyKWh`, `carbonKg`) are amounts per period, never borrowed or lent: an
admitted job reserves its estimate, `settle` turns it into what the job used (`ledger/quota_budgets.py`).

Which demand keys apply to a queue: a concurrent key only if the queue lists that dimension
(a dimension family the queue does not list at all is unlimited for it), a budget key only if
the queue has that budget. Accelerators are the exception: a queue listing any
`accelerators/...` entry has no quota for a type (and model) it lists neither as
`accelerators/TYPE` nor as `accelerators/TYPE/MODEL`, so such a demand is refused.

Usage per queue and dimension is a running sum; the per-cohort sums the rule needs are kept
up to date on every booking so that `check` is a few dictionary lookups per demand key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping

from suanli.ledger.quota_budgets import QueueBudgets
from suanli.ledger.quota_terms import (
    ACCELERATORS,
    BUDGET_UNITS,
    COMPUTE_UNITS,
    EPS,
    JobKey,
    PoolKey,
    QueueQuota,
    QuotaError,
    Shortfall,
    accelerator_parts,
    finite,
    fits,
)


@dataclasses.dataclass(frozen=True)
class _Rule:
    """One queue's limit in one concurrent dimension, with the numbers the rule needs."""

    dimension: str
    nominal: float
    lendable: float
    guaranteed: float
    cap: float
    pool: PoolKey


@dataclasses.dataclass
class _Pool:
    """Sums over the queues of a cohort listing one dimension (kept in step with usage)."""

    lendable: float  # sum of lendable (fixed)
    over: float = 0.0  # sum of max(0, u - guaranteed)
    borrowed: float = 0.0  # sum of max(0, u - nominal)
    unused: float = 0.0  # sum of min(lendable, max(0, nominal - u))


@dataclasses.dataclass(frozen=True)
class _Booking:
    queue: str
    concurrent: Mapping[str, float]
    budgets: Mapping[str, float]


def _check_amounts(amounts: Mapping[str, float], who: str) -> None:
    for dimension, amount in amounts.items():
        if not (type(amount) is float or finite(amount)) or not 0 <= amount < math.inf:
            raise QuotaError(f"{who} {dimension}: amount must be a finite number >= 0 (got {amount!r})")
        if dimension.startswith(ACCELERATORS):
            try:
                accelerator_parts(dimension)
            except ValueError as err:
                raise QuotaError(f"{who}: {err}") from None


class QuotaLedger:
    """Usage and budgets of every queue; `roll(now)` moves each budget into the period containing now."""

    def __init__(self, queues: Iterable[QueueQuota]):
        self._quotas: dict[str, QueueQuota] = {}
        for quota in queues:
            if quota.name in self._quotas:
                raise ValueError(f"queue {quota.name} is listed twice")
            self._quotas[quota.name] = quota
        # Fixed after construction, shared by copies:
        self._rules: dict[str, dict[str, _Rule]] = {}
        self._listed_accelerators: dict[str, frozenset[str]] = {}
        self._members: dict[PoolKey, tuple[tuple[str, _Rule], ...]] = {}
        # Mutable state:
        self._pools: dict[PoolKey, _Pool] = {}
        self._usage: dict[str, dict[str, float]] = {}
        self._budgets: dict[str, QueueBudgets] = {}
        self._jobs: dict[JobKey, _Booking] = {}
        self._count: dict[str, int] = {}
        members: dict[PoolKey, list[tuple[str, _Rule]]] = {}
        for name, quota in self._quotas.items():
            rules = {}
            for dimension, limit in quota.limits.items():
                key = ("cohort", quota.cohort, dimension) if quota.cohort else ("queue", name, dimension)
                rule = _Rule(dimension, limit.nominal, limit.lendable, limit.guaranteed, limit.cap, key)
                rules[dimension] = rule
                members.setdefault(key, []).append((name, rule))
            self._rules[name] = rules
            self._listed_accelerators[name] = frozenset(d for d in rules if d.startswith(ACCELERATORS))
            self._usage[name] = dict.fromkeys(rules, 0.0)
            self._budgets[name] = QueueBudgets(quota.budgets, quota.zone)
            self._count[name] = 0
        self._members = {key: tuple(group) for key, group in members.items()}
        for key, group in self._members.items():
            self._pools[key] = _Pool(lendable=math.fsum(rule.lendable for _, rule in group))
            self._refresh(key)

    def copy(self) -> QuotaLedger:
        clone = QuotaLedger.__new__(QuotaLedger)
        clone._quotas = self._quotas
        clone._rules = self._rules
        clone._listed_accelerators = self._listed_accelerators
        clone._members = self._members
        clone._pools = {key: dataclasses.replace(pool) for key, pool in self._pools.items()}
        clone._usage = {name: dict(usage) for name, usage in self._usage.items()}
        clone._budgets = {name: budgets.copy() for name, budgets in self._budgets.items()}
        clone._jobs = dict(self._jobs)  # bookings are never mutated
        clone._count = dict(self._count)
        return clone

    # -- queues ---------------------------------------------------------------------------------

    def _quota(self, queue: str) -> QueueQuota:
        try:
            return self._quotas[queue]
        except KeyError:
            raise KeyError(f"no ComputeQueue {queue!r} in the quota ledger") from None

    def queues(self) -> list[str]:
        return sorted(self._quotas)

    def has(self, queue: str) -> bool:
        return queue in self._quotas

    def quota(self, queue: str) -> QueueQuota:
        return self._quota(queue)

    # -- periods --------------------------------------------------------------------------------

    def roll(self, now: float) -> list[str]:
        """Start new periods where `now` has passed the end (or lies before the start); returns
        the queues of which a budget rolled. The first call only sets the periods."""
        return sorted(name for name, budgets in self._budgets.items() if budgets.roll(now))

    def next_boundary(self) -> float:
        """The earliest period end over queues with a budget (+inf without budgets)."""
        return min((budgets.next_boundary() for budgets in self._budgets.values()), default=math.inf)

    def period_label(self, queue: str, dimension: str | None = None) -> str:
        """The current period of a budget ("Month 2026-12"); without `dimension`, the labels of all
        the queue's budgets, distinct, joined with ", " ("" without budgets or before `roll`)."""
        self._quota(queue)
        return self._budgets[queue].label(dimension)

    # -- admission ------------------------------------------------------------------------------

    def _unmatched(self, queue: str, demand: Mapping[str, float]) -> Shortfall | None:
        """A shortfall if the demand asks for an accelerator type/model the queue has no entry for."""
        listed = self._listed_accelerators[queue]
        if not listed:
            return None
        wanted: dict[str, list[str]] = {}
        for dimension, need in demand.items():
            if need > 0 and dimension.startswith(ACCELERATORS):
                type_, model = accelerator_parts(dimension)
                models = wanted.setdefault(type_, [])
                if model:
                    models.append(model)
        for type_, models in wanted.items():
            if ACCELERATORS + type_ in listed or any(f"{ACCELERATORS}{type_}/{m}" in listed for m in models):
                continue
            dimension = f"{ACCELERATORS}{type_}/{min(models)}" if models else ACCELERATORS + type_
            entries = sorted({" ".join(accelerator_parts(d)).strip() for d in listed})
            return Shortfall(queue, dimension, demand[dimension], 0.0, listed=tuple(entries))
        return None

    def _left_concurrent(self, queue: str, rule: _Rule) -> float:
        u = self._usage[queue][rule.dimension]
        pool = self._pools[rule.pool]
        beyond = max(0.0, u - rule.guaranteed)
        return min(rule.cap - u, rule.guaranteed + pool.lendable - pool.over + beyond - u)

    def _check(self, queue: str, demand: Mapping[str, float]) -> Shortfall | None:
        unmatched = self._unmatched(queue, demand)
        if unmatched is not None:
            return unmatched
        rules = self._rules[queue]
        budgets = self._budgets[queue]
        for dimension, need in demand.items():
            rule = rules.get(dimension)
            if rule is not None:
                left = self._left_concurrent(queue, rule)
                if not fits(need, left):
                    quota = self._quotas[queue]
                    limit = quota.limits[dimension]
                    return Shortfall(
                        queue, dimension, need, left, "", limit.nominal, limit.borrowing_limit, quota.cohort
                    )
                continue
            shortfall = budgets.shortfall(queue, dimension, need)
            if shortfall is not None:
                return shortfall
        return None

    def period_start(self, queue: str, dimension: str) -> float:
        """When the current period of a budget began (-inf before the first `roll`, or without that budget)."""
        return self._budgets[self._quota(queue).name].period_start(dimension)

    def check(self, queue: str, demand: Mapping[str, float]) -> Shortfall | None:
        """None if the demand fits the queue in every dimension now; else the first shortfall."""
        self._quota(queue)
        _check_amounts(demand, f"queue {queue} demand")
        return self._check(queue, demand)

    def admit(self, queue: str, job: JobKey, demand: Mapping[str, float]) -> None:
        """Book a job's demand on its queue; QuotaError (ledger unchanged) if it does not fit."""
        self._quota(queue)
        _check_amounts(demand, f"{job[0]}/{job[1]}")
        if job in self._jobs:
            raise QuotaError(f"{job[0]}/{job[1]} already holds quota in queue {self._jobs[job].queue}")
        shortfall = self._check(queue, demand)
        if shortfall is not None:
            raise QuotaError(shortfall.message(), shortfall)
        self._book(queue, job, demand)

    def occupy(self, queue: str, job: JobKey, demand: Mapping[str, float]) -> None:
        """Book a job that is already bound without checking that it fits (the operator rebuilding
        its ledger, or a quota lowered under running jobs): the queue may end up over its quota,
        and then admits nothing in that dimension until enough jobs end."""
        self._quota(queue)
        _check_amounts(demand, f"{job[0]}/{job[1]}")
        if job in self._jobs:
            raise QuotaError(f"{job[0]}/{job[1]} already holds quota in queue {self._jobs[job].queue}")
        self._book(queue, job, demand)

    def _book(self, queue: str, job: JobKey, demand: Mapping[str, float]) -> None:
        rules = self._rules[queue]
        accounts = self._budgets[queue]
        concurrent = {d: need for d, need in demand.items() if d in rules and need > 0}
        budgets = {d: need for d, need in demand.items() if d in accounts}
        usage = self._usage[queue]
        for dimension, need in concurrent.items():
            usage[dimension] += need
            self._refresh(rules[dimension].pool)
        accounts.reserve(budgets)
        self._jobs[job] = _Booking(queue, concurrent, budgets)
        self._count[queue] += 1

    def _refresh(self, key: PoolKey) -> None:
        pool = self._pools[key]
        over, borrowed, unused = [], [], []
        for name, rule in self._members[key]:
            u = self._usage[name][rule.dimension]
            over.append(max(0.0, u - rule.guaranteed))
            borrowed.append(max(0.0, u - rule.nominal))
            unused.append(min(rule.lendable, max(0.0, rule.nominal - u)))
        pool.over, pool.borrowed, pool.unused = math.fsum(over), math.fsum(borrowed), math.fsum(unused)

    def _unbook(self, job: JobKey) -> _Booking:
        booking = self._jobs.pop(job)
        queue = booking.queue
        rules = self._rules[queue]
        usage = self._usage[queue]
        self._count[queue] -= 1
        last = self._count[queue] == 0  # no job left: back to exact zeros (no rounding residue)
        for dimension, need in booking.concurrent.items():
            usage[dimension] = 0.0 if last else max(0.0, usage[dimension] - need)
        self._budgets[queue].unreserve(booking.budgets, last)
        if last:
            usage.update(dict.fromkeys(usage, 0.0))
        for dimension in rules if last else booking.concurrent:
            self._refresh(rules[dimension].pool)
        return booking

    def rebook(self, job: JobKey, source: QuotaLedger) -> None:
        """Book `job` again as `source` (a ledger this one was copied from) holds it, without checking
        (undoing a `release` on a trial copy); no-op if `source` holds nothing for it."""
        booking = source._jobs.get(job)
        if booking is not None and job not in self._jobs:
            self._book(booking.queue, job, {**booking.concurrent, **booking.budgets})

    def holds(self, job: JobKey) -> bool:
        return job in self._jobs

    def holder(self, job: JobKey) -> str | None:
        """The queue a job holds quota in (None if it holds none)."""
        booking = self._jobs.get(job)
        return booking.queue if booking is not None else None

    def release(self, job: JobKey) -> None:
        """A job ended without running: its usage and budget reservations are dropped (no-op if
        it holds nothing)."""
        if job in self._jobs:
            self._unbook(job)

    def settle(self, job: JobKey, used: Mapping[str, float]) -> None:
        """A job finished: its concurrent usage is given back and its budget reservations become
        `used` (missing keys count 0) in the current period. Keys the queue has no budget for are
        ignored."""
        if job not in self._jobs:
            raise QuotaError(f"{job[0]}/{job[1]} holds no quota to settle")
        _check_amounts(used, f"{job[0]}/{job[1]} used")
        booking = self._unbook(job)
        self._budgets[booking.queue].add_used(used)

    def add_used(self, queue: str, dimension: str, amount: float) -> None:
        """Budget usage already settled in the current period by jobs no longer held here (the
        operator rebuilding its ledger from finished jobs' statuses; call after `roll`, which
        clears it). No-op if the queue has no such budget."""
        self._used_account(queue, dimension, amount).add_used({dimension: amount})

    def set_used(self, queue: str, dimension: str, amount: float) -> None:
        """Budget usage settled in the current period by jobs no longer held here, replacing what was set
        before (a ledger kept across scheduling cycles, its sums read again each cycle). No-op if the queue
        has no such budget."""
        self._used_account(queue, dimension, amount).set_used(dimension, amount)

    def _used_account(self, queue: str, dimension: str, amount: float) -> QueueBudgets:
        self._quota(queue)
        if dimension not in BUDGET_UNITS:
            raise QuotaError(
                f"queue {queue}: {dimension!r} is not a budget dimension ({', '.join(BUDGET_UNITS)})"
            )
        _check_amounts({dimension: amount}, f"queue {queue} used")
        return self._budgets[queue]

    # -- reporting ------------------------------------------------------------------------------

    def usage(self, queue: str) -> dict[str, float]:
        """Per listed dimension: concurrent usage held; budgets: used + reserved this period."""
        self._quota(queue)
        return {**self._usage[queue], **self._budgets[queue].usage()}

    def borrowed(self, queue: str) -> dict[str, float]:
        """Per concurrent dimension: usage beyond the nominal quota."""
        self._quota(queue)
        usage = self._usage[queue]
        return {d: max(0.0, usage[d] - rule.nominal) for d, rule in self._rules[queue].items()}

    def lent(self, queue: str) -> dict[str, float]:
        """Per concurrent dimension: this queue's part of what its cohort borrows, in proportion to
        its unused lendable quota (never more than that)."""
        self._quota(queue)
        usage = self._usage[queue]
        out = {}
        for dimension, rule in self._rules[queue].items():
            pool = self._pools[rule.pool]
            unused = min(rule.lendable, max(0.0, rule.nominal - usage[dimension]))
            if pool.borrowed <= 0 or pool.unused <= 0 or unused <= 0:
                out[dimension] = 0.0
            else:
                out[dimension] = min(unused, pool.borrowed * (unused / pool.unused))
        return out

    def left(self, queue: str, dimension: str) -> float:
        """What one more demand in that dimension could take now: concurrent dimensions with
        borrowing; budgets `amount - used - reserved`; +inf if the queue does not limit it.
        For `accelerators/TYPE/MODEL`, what a job on a pool of that model could take (its type
        and model entries both apply, as in the planner's demand); an accelerator the queue has
        no quota for (it lists other accelerators only) gives 0."""
        self._quota(queue)
        rules = self._rules[queue]
        rule = rules.get(dimension)
        if dimension in BUDGET_UNITS:
            return self._budgets[queue].left(dimension)
        if not dimension.startswith(ACCELERATORS):
            return self._left_concurrent(queue, rule) if rule is not None else math.inf
        type_, model = accelerator_parts(dimension)
        if not self._listed_accelerators[queue]:
            return math.inf
        if model:
            applies = [rules[d] for d in (ACCELERATORS + type_, dimension) if d in rules]
        else:
            applies = [rule] if rule is not None else []
        if not applies:
            return 0.0
        return min(self._left_concurrent(queue, r) for r in applies)

    def share(self, queue: str) -> float:
        """Weighted dominant share: usage/nominal, at most over the concurrent dimensions (compute
        units alone when the queue lists them), divided by the weight. A dimension with nominal 0
        counts only if used, as +inf (the queue runs on borrowed quota alone). 0.0 without
        concurrent dimensions."""
        quota = self._quota(queue)
        rules = self._rules[queue]
        usage = self._usage[queue]
        dimensions = [COMPUTE_UNITS] if COMPUTE_UNITS in rules else list(rules)
        share = 0.0
        for dimension in dimensions:
            nominal, used = rules[dimension].nominal, usage[dimension]
            if nominal > 0:
                share = max(share, used / nominal)
            elif used > EPS:
                share = math.inf
        return share / quota.weight
