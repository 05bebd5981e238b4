"""Tenants as the operator sees them: ComputeQueues and the labels of Namespaces (which queue admits a
job), and, per scheduling cycle, the quota ledger rebuilt from the jobs' statuses. Pure: no I/O, no
clock; the mirror handlers feed it and the snapshot reads it.

The queue that admitted a placed job is in its status (`status.queue`, written with the binding), so
the ledger is the same after a restart whatever has happened to namespace labels since. A waiting
job's queue is resolved again each cycle (`placement/tenancy.resolve`): a relabelled namespace or a
new queue takes effect at the next cycle. Energy and carbon settled by finished jobs are summed per
queue and budget period as they finish (`settled.SettledEnergy`, keyed by queue); the ledger's
concurrent usage and reservations come from the placed jobs: one ledger kept across cycles, in which
only the jobs whose binding changed are booked or released (a comparison per placed job per cycle),
and only when ComputeQueues exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from suanli import settings as settings_mod
from suanli.api import manifests, objects
from suanli.api import queue as queue_api
from suanli.kube import objects as kobj
from suanli.kube import records
from suanli.kube import settled as settled_mod
from suanli.ledger import quota as quota_mod
from suanli.placement import tenancy
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod

Key = kobj.Key


class Tenants:
    def __init__(self, settings: settings_mod.Settings | None = None):
        self.settings = settings or settings_mod.Settings()
        self.queues: dict[str, queue_api.ComputeQueueSpec] = {}
        self.queue_raw: dict[str, dict[str, Any]] = {}
        self.invalid: dict[str, tenancy.InvalidQueue] = {}  # queues whose spec is refused: they admit nothing
        self.namespaces: dict[str, dict[str, str]] = {}  # name -> labels
        self.settled = settled_mod.SettledEnergy()  # energy and carbon of finished jobs, by queue
        self._resolved: dict[Key, tuple[demand_mod.JobDemand, demand_mod.JobDemand]] = {}  # job -> (spec's, resolved)
        self._admitting_memo: dict[tuple[str | None, str], tuple[str | None, str]] = {}  # see `_admitting`
        self._version = 0  # bumped when a queue changes: the kept ledger (`ledger`) is built again
        # Bumped when which queue admits a job, or whether its queue may preempt, can have changed (a queue's
        # spec, a refused queue, a namespace's labels): the waiting jobs are filed again (kube/set_aside.py).
        self.revision = 0
        self._book: quota_mod.QuotaLedger | None = None
        self._book_version = -1
        self._book_fleet: fleet_mod.Fleet | None = None
        self._booked: dict[Key, tuple[records.Binding, str | None]] = {}  # job -> what it holds in `_book`

    # --- the mirror handlers' side -------------------------------------------------------

    def upsert_queue(self, raw: Mapping[str, Any]) -> None:
        name = str((raw.get("metadata") or {}).get("name") or "")
        self.queue_raw[name] = dict(raw)
        try:
            parsed = objects.ComputeQueue.model_validate({k: v for k, v in raw.items() if k != "status"})
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            error = f"{manifests.field_path(first['loc'])}: {first.get('msg', 'invalid')}"
            refused = _invalid(error, (raw.get("spec") or {}).get("namespaceSelector"))
            if self.invalid.get(name) != refused or name in self.queues:
                self.revision += 1
            self.invalid[name] = refused
            self.queues.pop(name, None)
            self._admitting_memo.clear()
            self._version += 1
            return
        if self.invalid.pop(name, None) is not None:
            self.revision += 1
        if self.queues.get(name) != parsed.spec:
            self._version += 1
            self.revision += 1
        self.queues[name] = parsed.spec
        self._admitting_memo.clear()

    def delete_queue(self, name: str) -> None:
        self._version += 1
        self.revision += 1
        self.queues.pop(name, None)
        self._admitting_memo.clear()
        self.queue_raw.pop(name, None)
        self.invalid.pop(name, None)

    def upsert_namespace(self, raw: Mapping[str, Any]) -> bool:
        """True if the labels changed (queue selection may have)."""
        meta = raw.get("metadata") or {}
        name, labels = str(meta.get("name") or ""), {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        changed = self.namespaces.get(name) != labels
        self.namespaces[name] = labels
        if changed:
            self._admitting_memo.clear()
            self.revision += 1
        return changed

    def delete_namespace(self, name: str) -> None:
        if self.namespaces.pop(name, None) is not None:
            self.revision += 1
        self._admitting_memo.clear()

    def file(self, key: Key, settlements: Iterable[tuple[str, str | None, float, settled_mod.Amounts]]) -> None:
        """Keep what a job settled (`records.settlements`: its finished run, each earlier attempt that ended
        without finishing) in the sums of the queue that had admitted each."""
        self.settled.put_all(key, [(queue, at, amounts) for _, queue, at, amounts in settlements if queue])

    # --- the snapshot's side -------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether tenancy applies at all (some ComputeQueue exists, valid or not, or every job needs one)."""
        return bool(self.queues) or bool(self.invalid) or self.settings.tenancy.require_queue

    def resolve(self, demand: demand_mod.JobDemand, spec_queue: str | None) -> demand_mod.JobDemand:
        """The demand with the queue that admits it, or why none can."""
        queue, problem = self._admitting(spec_queue, demand.namespace)
        if queue == demand.queue and problem == demand.queue_problem:
            return demand
        cached = self._resolved.get(demand.key)
        if cached is not None and cached[0] is demand and (cached[1].queue, cached[1].queue_problem) == (queue, problem):
            return cached[1]
        resolved = dataclasses.replace(demand, queue=queue, queue_problem=problem)
        self._resolved[demand.key] = (demand, resolved)
        return resolved

    def _admitting(self, spec_queue: str | None, namespace: str) -> tuple[str | None, str]:
        """(queue, problem) for jobs of `namespace` naming `spec_queue`: the same for every such job, so
        worked out once until a queue or a namespace's labels change (not once per job and cycle)."""
        memo = self._admitting_memo.get((spec_queue, namespace))
        if memo is not None:
            return memo
        found = tenancy.resolve(spec_queue, namespace, self.namespaces.get(namespace), self.queues, self.invalid)
        problem = found.problem or tenancy.required(found.queue, namespace, self.settings.tenancy.require_queue)
        memo = self._admitting_memo[(spec_queue, namespace)] = (found.queue, problem)
        return memo

    def spec_demand(self, demand: demand_mod.JobDemand) -> demand_mod.JobDemand:
        """The demand parsed from the spec that `resolve` made `demand` from (itself if it made none):
        the scheduler's test that a decision is still about the job's current spec."""
        cached = self._resolved.get(demand.key)
        return cached[0] if cached is not None and cached[1] is demand else demand

    def forget(self, key: Key) -> None:
        self._resolved.pop(key, None)

    def ledger(self, fleet: fleet_mod.Fleet, placed: Iterable[tuple[records.JobRecord, records.Binding]],
               now: float) -> quota_mod.QuotaLedger | None:
        """The quota ledger now (a copy the caller may change): every placed job's hold on its queue, and
        this period's settled energy and carbon.

        One ledger is kept across cycles and brought up to date: only jobs whose binding (or precision)
        changed since the last cycle are booked or released, so a cycle costs a comparison per placed
        job, not a booking; it is built again when a queue or the fleet changes."""
        if not self.queues:
            self._book = None
            return None
        if self._book is None or self._book_version != self._version or self._book_fleet is not fleet:
            self._book, self._book_version, self._book_fleet = tenancy.ledger_for(self.queues), self._version, fleet
            self._booked = {}
        book = self._book
        book.roll(now)
        for name in book.queues():
            for dimension, column in (("energyKWh", 0), ("carbonKg", 1)):
                start = book.period_start(name, dimension)
                if start > float("-inf"):
                    book.set_used(name, dimension, self.settled.total(name, start)[column])
        seen: set[Key] = set()
        for record, binding in placed:
            key = record.key
            seen.add(key)
            held = (binding, record.demand.precision if record.demand is not None else None)
            if self._booked.get(key) == held:
                continue
            book.release(key)
            self._booked[key] = held
            if not binding.queue or not book.has(binding.queue) or record.demand is None:
                continue
            pool = fleet.pool_index(binding.center, binding.pool)
            if pool is None:
                continue
            book.occupy(binding.queue, key, tenancy.pool_demand(
                fleet.pools[pool], binding.replicas * binding.count, record.demand.precision, binding.energy_kwh,
                binding.carbon_kg))
        for key in [k for k in self._booked if k not in seen]:
            book.release(key)
            del self._booked[key]
        return book.copy()


def _invalid(error: str, selector: Any) -> tenancy.InvalidQueue:
    """A refused queue, with its namespaceSelector when that part can be read: which namespaces' jobs
    it holds back."""
    if selector is None:
        return tenancy.InvalidQueue(error)
    try:
        return tenancy.InvalidQueue(error, queue_api.LabelSelector.model_validate(selector))
    except pydantic.ValidationError:
        return tenancy.InvalidQueue(error, readable=False)
