"""Tenants in the planner: which ComputeQueue admits a job, what it would hold in each pool, the quota
filter, and fair-share order between queues (pure; the quota ledger is `ledger/quota.py`).

A job's demand on its queue depends on the pool: accelerators of that pool's type and model,
compute units (accelerators x the model's peak at the job's precision / the A100's, so an H100 counts
for more than one A100 and an Ascend 910B for what it computes), and the energy and carbon the
scoring engine estimated there. A pool whose demand the queue cannot cover (nominal quota plus what
the cohort lends, or the budget left this period) is rejected with the ledger's sentence, so a carbon
budget pushes a job to a cleaner center instead of only blocking it.

Order between queues: the queue with the lowest weighted dominant share (`QuotaLedger.share`) plans
its next job first, re-evaluated after every job; within a queue, priority then arrival.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from suanli.api import queue as queue_api
from suanli.catalog import accelerators
from suanli.ledger import quota as quota_mod
from suanli.ledger import quota_terms
from suanli.placement import queue as queue_mod
from suanli.scoring import demand as demand_mod
from suanli.scoring import engine
from suanli.scoring import fleet as fleet_mod

QUOTA = engine.Reject.QUOTA


def quota_of(name: str, spec: queue_api.ComputeQueueSpec) -> quota_terms.QueueQuota:
    """The ledger's terms of one ComputeQueue."""
    q = spec.quota
    limits: dict[str, quota_terms.Limit] = {
        a.dimension: quota_terms.Limit(float(a.count), _opt(a.borrowing_limit), _opt(a.lending_limit))
        for a in q.accelerators
    }
    if q.compute_units is not None:
        limits[quota_terms.COMPUTE_UNITS] = quota_terms.Limit(
            q.compute_units, q.compute_units_borrowing_limit, q.compute_units_lending_limit
        )
    budgets: dict[str, quota_terms.Budget] = {}
    if q.energy is not None:
        budgets["energyKWh"] = quota_terms.Budget(q.energy.k_wh, q.energy.period)
    if q.carbon is not None:
        budgets["carbonKg"] = quota_terms.Budget(q.carbon.kg, q.carbon.period)
    return quota_terms.QueueQuota(name=name, cohort=spec.cohort, weight=spec.weight, limits=limits,
                                  budgets=budgets, zone=spec.time_zone)


def _opt(value: int | None) -> float | None:
    return None if value is None else float(value)


def ledger_for(queues: Mapping[str, queue_api.ComputeQueueSpec]) -> quota_mod.QuotaLedger:
    return quota_mod.QuotaLedger(quota_of(name, spec) for name, spec in sorted(queues.items()))


@dataclasses.dataclass(frozen=True)
class Resolution:
    """The queue that admits a job (None: no queue), or why none can."""

    queue: str | None
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class InvalidQueue:
    """A ComputeQueue whose spec is refused: why (`error`: field and message), and the namespaceSelector
    it carries (None: none, or `readable` False: one that cannot be read). It admits nothing, and the
    jobs it would select wait instead of running outside any quota."""

    error: str
    selector: queue_api.LabelSelector | None = None
    readable: bool = True


def resolve(
    job_queue: str | None,
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    queues: Mapping[str, queue_api.ComputeQueueSpec],
    invalid: Mapping[str, InvalidQueue] | None = None,
) -> Resolution:
    """spec.queue if set (it must exist and be valid); else the one queue whose namespaceSelector
    matches the job's namespace (two matching is a problem naming both). `namespace_labels` None: the
    namespace is not known (then only spec.queue resolves).

    `invalid`: queues whose spec is refused. A job naming one, or in a namespace one selects, waits with
    the queue's error: a broken quota never lets its tenants' jobs run unrestricted. One whose selector
    cannot be read at all holds every job no valid queue selects (it may select them)."""
    invalid = invalid or {}
    if job_queue:
        if job_queue in invalid:
            return Resolution(job_queue, _invalid_problem(job_queue, invalid[job_queue]))
        if job_queue not in queues:
            return Resolution(job_queue, f"ComputeQueue {job_queue} (spec.queue) does not exist; create it or fix spec.queue")
        return Resolution(job_queue)
    if namespace_labels is None:
        return Resolution(None)
    labels = dict(namespace_labels)
    matching = sorted(name for name, spec in queues.items()
                      if spec.namespace_selector is not None and spec.namespace_selector.matches(labels))
    broken = sorted(name for name, bad in invalid.items() if bad.selector is not None and bad.selector.matches(labels))
    if not matching:
        broken = broken or sorted(name for name, bad in invalid.items() if not bad.readable)
    if broken:
        name = broken[0]
        return Resolution(name, _invalid_problem(name, invalid[name], namespace))
    if len(matching) > 1:
        return Resolution(None, f"namespace {namespace} matches the namespaceSelector of ComputeQueues "
                                f"{' and '.join(matching)}; set spec.queue, or change the selectors so one matches")
    return Resolution(matching[0] if matching else None)


def _invalid_problem(name: str, bad: InvalidQueue, namespace: str | None = None) -> str:
    if namespace is None:
        why = "spec.queue names it"
    elif not bad.readable:
        why = f"its namespaceSelector cannot be read, so it may select namespace {namespace}"
    else:
        why = f"its namespaceSelector selects namespace {namespace}"
    return f"ComputeQueue {name} is invalid ({bad.error}) and {why}; fix the queue to admit jobs"


def required(queue: str | None, namespace: str, require_queue: bool) -> str:
    """Why a job without a queue waits when `tenancy.require_queue` is true ("" otherwise)."""
    if queue is not None or not require_queue:
        return ""
    return (f"no ComputeQueue admits it and tenancy.require_queue is true: set spec.queue, or label namespace "
            f"{namespace} for a queue's namespaceSelector")


def usage_report(ledger: quota_mod.QuotaLedger) -> list[dict[str, Any]]:
    """Per queue: each dimension's quota, use, borrowed, lent and what is left (status and `suanli plan`)."""
    out: list[dict[str, Any]] = []
    for name in ledger.queues():
        terms = ledger.quota(name)
        used, borrowed, lent = ledger.usage(name), ledger.borrowed(name), ledger.lent(name)
        dims = [
            {"name": dim, "quota": nominal, "used": round(used.get(dim, 0.0), 6),
             "borrowed": round(borrowed.get(dim, 0.0), 6), "lent": round(lent.get(dim, 0.0), 6),
             "left": _number(ledger.left(name, dim))}
            for dim, nominal in [*((d, lim.nominal) for d, lim in terms.limits.items()),
                                 *((d, b.amount) for d, b in terms.budgets.items())]
        ]
        out.append({"name": name, "cohort": terms.cohort, "weight": terms.weight,
                    "share": _number(ledger.share(name)), "period": ledger.period_label(name), "dimensions": dims})
    return out


def _number(x: float) -> float | None:
    """Rounded for a document; None for an infinity (JSON has none)."""
    return round(x, 6) if math.isfinite(x) else None


def compute_units_per_accelerator(peak_tflops: Mapping[str, float], precision: str) -> float:
    """A100-equivalents of one accelerator of a model at a precision (0 if the model lacks it)."""
    peak = float(peak_tflops.get(precision, 0.0))
    reference = float(accelerators.CATALOG["A100"].peak_tflops.get(precision, 0.0)) or demand_mod.reference_tflops(
        "A100", precision
    )
    return peak / reference if reference > 0 else 0.0


def pool_demand(info: fleet_mod.PoolInfo, accelerators: int, precision: str, kwh: float, carbon_kg: float) -> dict[str, float]:
    """What a job of `accelerators` at `precision` holds and uses in its queue on pool `info`."""
    n = float(accelerators)
    return {
        f"{quota_terms.ACCELERATORS}{info.accelerator_type}": n,
        f"{quota_terms.ACCELERATORS}{info.accelerator_type}/{info.model}": n,
        quota_terms.COMPUTE_UNITS: n * compute_units_per_accelerator(info.peak_tflops, precision),
        "energyKWh": kwh,
        "carbonKg": carbon_kg,
    }


def demand(fleet: fleet_mod.Fleet, job: demand_mod.JobDemand, ev: engine.Evaluation, row: int,
           pool: int) -> dict[str, float]:
    """What the job would hold and use in its queue if bound to `pool` (see the module docstring)."""
    return pool_demand(fleet.pools[pool], job.accelerators_total, job.precision, float(ev.energy_kwh[row, pool]),
                       float(ev.carbon_kg[row, pool]))


def admissible(fleet: fleet_mod.Fleet, job: demand_mod.JobDemand, ledger: quota_mod.QuotaLedger | None
               ) -> Callable[[engine.Evaluation, int, int], bool] | None:
    """Whether the job's queue could take it on a pool at a start (the deferral's test), or None when
    the job has no queue. A job whose queue cannot admit anything (missing, ambiguous) is never deferred."""
    if not job.queue and not job.queue_problem:
        return None

    def test(ev: engine.Evaluation, row: int, pool: int) -> bool:
        if job.queue_problem or ledger is None or not job.queue or not ledger.has(job.queue):
            return False
        return ledger.check(job.queue, demand(fleet, job, ev, row, pool)) is None

    return test


def reclaimable(fleet: fleet_mod.Fleet, job: demand_mod.JobDemand, ev: engine.Evaluation
                ) -> tuple[tuple[int, Mapping[str, float]], ...]:
    """For a job of a queue that fits nowhere now: the pools that only free accelerators or its queue's
    quota keep it from, each with the job's demand on its queue there (what preemption could make room for)."""
    if not job.queue or job.queue_problem:
        return ()
    reasons = ev.reasons[0]
    only = int(engine.Reject.CAPACITY | QUOTA)
    pools = np.flatnonzero((reasons != 0) & ((reasons & ~np.uint16(only)) == 0))
    return tuple((int(p), demand(fleet, job, ev, 0, int(p))) for p in pools)


def filter_pools(
    fleet: fleet_mod.Fleet,
    job: demand_mod.JobDemand,
    ev: engine.Evaluation,
    ledger: quota_mod.QuotaLedger | None,
    unknown: str = "",
) -> tuple[engine.Evaluation, dict[int, str]]:
    """The evaluation with the QUOTA flag on every pool the job's queue cannot cover now (pools already
    out for a reason waiting cannot change are not asked), and the sentence per flagged pool. `unknown`:
    why the job's queue cannot admit anything (a missing queue, two matching): every pool is flagged."""
    if not job.queue and not unknown:
        return ev, {}
    messages: dict[int, str] = {}
    # The concurrent part of a demand is the same on every pool of a model: asked once per model. Its
    # dimensions come before the budgets' in a demand, so the first shortfall is the one `check` gives.
    # A budget is asked only on the pools where the job's estimate does not fit what it has left.
    concurrent: dict[tuple[tuple[str, float], ...], quota_terms.Shortfall | None] = {}
    over_budget = np.zeros(fleet.size, dtype=bool)
    if ledger is not None and job.queue and ledger.has(job.queue) and not unknown:
        for dimension, needs in (("energyKWh", ev.energy_kwh[0]), ("carbonKg", ev.carbon_kg[0])):
            left = ledger.left(job.queue, dimension)
            if left < math.inf:
                over_budget |= ~quota_terms.fits_each(needs, left)
    for pool in range(fleet.size):
        if int(ev.reasons[0, pool]) & int(engine.PERMANENT):
            continue
        if unknown:
            messages[pool] = unknown
            continue
        if ledger is None or not job.queue or not ledger.has(job.queue):
            messages[pool] = f"ComputeQueue {job.queue} does not exist; create it or fix spec.queue"
            continue
        wanted = demand(fleet, job, ev, 0, pool)
        held = tuple((k, v) for k, v in wanted.items() if k not in quota_terms.BUDGET_UNITS)
        if held not in concurrent:
            concurrent[held] = ledger.check(job.queue, dict(held))
        short = concurrent[held]
        if short is None and over_budget[pool]:
            short = ledger.check(job.queue, {k: v for k, v in wanted.items() if k in quota_terms.BUDGET_UNITS})
        if short is not None:
            messages[pool] = short.message()
    if not messages:
        return ev, {}
    reasons = ev.reasons.copy()
    for pool in messages:
        reasons[0, pool] |= np.uint16(int(QUOTA))
    return dataclasses.replace(ev, reasons=reasons, feasible=reasons == 0), messages


def share(ledger: quota_mod.QuotaLedger | None, queue: str | None) -> float:
    """A queue's weighted dominant share in fair-share order; 0 without a queue (or a ledger that has it)."""
    return ledger.share(queue) if ledger is not None and queue and ledger.has(queue) else 0.0


def fair_order(jobs: Iterable[demand_mod.JobDemand], ledger: quota_mod.QuotaLedger | None) -> Iterator[demand_mod.JobDemand]:
    """Jobs in the order they are planned: the queue with the lowest weighted dominant share first,
    asked again before every job (each bound job raises its queue's share); ties and jobs without a
    queue by priority then arrival. Without a ledger, plain queue order."""
    ordered = queue_mod.ordered(jobs)
    if ledger is None or not any(j.queue for j in ordered):
        yield from ordered
        return
    heads: dict[str, collections.deque[demand_mod.JobDemand]] = {}
    for job in ordered:
        heads.setdefault(job.queue or "", collections.deque()).append(job)

    while heads:
        queue = min(heads, key=lambda q: (share(ledger, q), queue_mod.order_key(heads[q][0])))
        line = heads[queue]
        yield line.popleft()
        if not line:
            del heads[queue]
