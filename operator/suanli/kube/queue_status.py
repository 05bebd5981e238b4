"""ComputeQueue status and metrics: usage against quota per dimension, borrowed and lent, admitted and
waiting jobs, the fair share, and what its jobs settled this period (kWh, carbon, cost, accelerator-hours); written when it changed, batched over operator.status_coalesce_seconds
(as ComputeCenter status is, kube/center_status.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from suanli import metrics
from suanli.kube import center_status
from suanli.kube import settled as settled_mod
from suanli.kube import status as status_mod
from suanli.ledger import energy as energy_mod
from suanli.ledger import quota as quota_mod
from suanli.placement import tenancy

if TYPE_CHECKING:
    from suanli.kube import scheduler as scheduler_mod

LOG = logging.getLogger("suanli.scheduler.queues")
UNITS = {"energyKWh": "kWh", "carbonKg": "kg"}


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def settled_period(ledger: quota_mod.QuotaLedger | None, name: str, zone: str, now: float) -> tuple[float, str]:
    """(start, label) of the period a queue's settled use is reported for: its energy (else carbon) budget's,
    else the calendar month in its time zone."""
    if ledger is not None and ledger.has(name):
        for dimension in ("energyKWh", "carbonKg"):
            if dimension in ledger.quota(name).budgets:
                return ledger.period_start(name, dimension), ledger.period_label(name, dimension)
    start, _, label = energy_mod.period_bounds(now, zone, "Month")
    return start, label


def build(name: str, generation: int | None, ledger: quota_mod.QuotaLedger | None, admitted: int, waiting: int,
          problem: str | None, current: Mapping[str, Any], now: float,
          settled: tuple[str, settled_mod.Amounts] | None = None) -> dict[str, Any]:
    """One queue's status (pure). `problem`: why its spec is refused (it admits nothing then); `settled`:
    (period label, what its jobs settled in it)."""
    ready = status_mod.condition("Ready", problem is None, "InvalidSpec" if problem else "Admitting",
                                 problem or "the queue admits jobs within its quota", now, generation)
    old = next((c for c in current.get("conditions") or [] if c.get("type") == "Ready"), None)
    if old is not None and old.get("status") == ready["status"] and old.get("reason") == ready["reason"]:
        ready["lastTransitionTime"] = old.get("lastTransitionTime", ready["lastTransitionTime"])
    out: dict[str, Any] = {"admittedJobs": admitted, "waitingJobs": waiting, "conditions": [ready],
                           "observedGeneration": generation}
    if settled is not None:
        label, used = settled
        out["settled"] = {"period": label, "energyKWh": round(used.kwh, 6), "carbonKg": round(used.carbon_kg, 6),
                          "cost": round(used.cost, 6), "acceleratorHours": round(used.accelerator_hours, 6)}
    if ledger is None or not ledger.has(name):
        return out
    report = next(q for q in tenancy.usage_report(ledger) if q["name"] == name)
    dims: list[dict[str, Any]] = list(report["dimensions"])
    out["dimensions"] = dims
    accelerators = [d for d in dims if str(d["name"]).startswith("accelerators/")]
    out["accelerators"] = ", ".join(f"{_fmt(d['used'])}/{_fmt(d['quota'])} {str(d['name']).split('/', 1)[1]}"
                                    for d in accelerators)
    for field, dim in (("computeUnits", "computeUnits"), ("energy", "energyKWh"), ("carbon", "carbonKg")):
        found = next((d for d in dims if d["name"] == dim), None)
        if found is not None:
            unit = f" {UNITS[dim]}" if dim in UNITS else ""
            out[field] = f"{_fmt(found['used'])}/{_fmt(found['quota'])}{unit}"
    out["period"] = report["period"] or ""
    out["share"] = report["share"] if report["share"] is not None else 0.0
    return out


class QueueStatus:
    def __init__(self, ctx: scheduler_mod.Scheduler):
        self.ctx = ctx
        self.event = asyncio.Event()
        self._gauges: set[tuple[str, str]] = set()

    async def run(self) -> None:
        await center_status.batched(self.event, self.ctx.settings.operator, self.write, "ComputeQueue")

    async def write(self) -> None:
        ctx = self.ctx
        tenants = ctx.cache.tenants
        if not tenants.queue_raw:
            self._publish(None, {}, {})
            return
        now = ctx.clock.now()
        snap = ctx.cache.snapshot(now)
        admitted: dict[str, int] = {}
        for _, binding in ctx.cache.placed_records():
            if binding.queue:
                admitted[binding.queue] = admitted.get(binding.queue, 0) + 1
        waiting = ctx.cache.set_aside.waiting_by_queue()  # every waiting job, not only the cycle's cut
        self._publish(snap.quotas, admitted, waiting)
        for name in sorted(tenants.queue_raw):
            raw = tenants.queue_raw[name]
            current = dict(raw.get("status") or {})
            spec = tenants.queues.get(name)
            start, label = settled_period(snap.quotas, name, spec.time_zone if spec is not None else "UTC", now)
            new = build(name, (raw.get("metadata") or {}).get("generation"), snap.quotas, admitted.get(name, 0),
                        waiting.get(name, 0), (tenants.invalid[name].error if name in tenants.invalid else None), current,
                        now, (label, tenants.settled.amounts(name, start)))
            await center_status.patch_if_changed(ctx.api, ctx.api.patch_queue_status, "ComputeQueue", name, raw,
                                                 current, new)

    def _publish(self, ledger: quota_mod.QuotaLedger | None, admitted: Mapping[str, int],
                 waiting: Mapping[str, int]) -> None:
        seen: set[tuple[str, str]] = set()
        for q in tenancy.usage_report(ledger) if ledger is not None else []:
            name = str(q["name"])
            for d in q["dimensions"]:
                metrics.QUEUE_USAGE.labels(queue=name, dimension=d["name"]).set(d["used"])
                metrics.QUEUE_QUOTA.labels(queue=name, dimension=d["name"]).set(d["quota"])
                seen.add((name, d["name"]))
            metrics.QUEUE_JOBS.labels(queue=name, state="admitted").set(admitted.get(name, 0))
            metrics.QUEUE_JOBS.labels(queue=name, state="waiting").set(waiting.get(name, 0))
        for name, dim in self._gauges - seen:  # a queue or dimension gone: its series go too
            with contextlib.suppress(KeyError):
                metrics.QUEUE_USAGE.remove(name, dim)
                metrics.QUEUE_QUOTA.remove(name, dim)
        for name in {n for n, _ in self._gauges} - {n for n, _ in seen}:
            for state in ("admitted", "waiting"):
                with contextlib.suppress(KeyError):
                    metrics.QUEUE_JOBS.remove(name, state)
        self._gauges = seen
