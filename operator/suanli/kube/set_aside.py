"""The waiting queue, kept across scheduling cycles, and the jobs set aside in it: waiting jobs that
cannot start now are kept out of the cycle until capacity they could use frees up (Kueue keeps
inadmissible workloads aside the same way).

A queued job is set aside when it has its decision already (phase Queued, for its current spec
generation), no pool it could ever use (type, model, precision, memory, region:
`placement/feasible.py`) is ready with room for its gang now (free slots of its replicas' size on the
cache's real nodes), and its ComputeQueue cannot preempt to make room. Planning it would only say
Queued again; the cycle's `operator.max_jobs_per_cycle` then goes to jobs that can start, however far
down the queue order they are (no head-of-line blocking), and a cycle after one gang completes plans
the jobs that fit what it freed, not the whole queue.

Every waiting job is filed once, when it changes (the cache hands over the jobs something happened
to: `touch`), not once per cycle: jobs with their decision in groups by gang shape and the pools they
could use (`Group`), each group in queue order; jobs without it (new, edited, deferred, allowed to
preempt) in one list in queue order; requeued jobs sitting out their backoff in a heap by its end;
jobs whose spec is invalid apart. A cycle asks each group once whether a pool of it has room, and
merges the lists with room in queue order up to `operator.max_jobs_per_cycle`: O(groups + the jobs it
takes + the jobs that changed), whatever the queue's length. Everything is filed again when the
fleet, the ComputeQueues or namespaces' labels change, or the clock goes back.

The result is what the per-job pass over every waiting job gave (sorted by key, each job checked,
then ordered and cut); `tests/unit/test_queue_index.py` compares the two after random changes.
No I/O, no clock: `now` is passed in.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import heapq
import itertools
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from suanli.kube import keyed_heap, records
from suanli.kube import objects as kobj
from suanli.placement import feasible, preemption, validation
from suanli.placement import queue as queue_mod
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod

if TYPE_CHECKING:
    from suanli.kube import cache as cache_mod

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
Key = kobj.Key
Order = tuple[int, float, str, str]  # queue_mod.order_key: unique per job (namespace, name)
Group = tuple[int, int, int]  # (replicas, count, mask id): decided jobs alike as to where they could start
Member = tuple[Order, Key]


@dataclasses.dataclass(slots=True)
class _Filed:
    """Where one schedulable waiting job is filed."""

    order: Order
    demand: demand_mod.JobDemand  # resolved (its ComputeQueue)
    group: Group | None  # its group when it is decided and out of backoff; None: the open list (or backoff)
    requeue_at: float | None  # in backoff until then (None: not in backoff)


@dataclasses.dataclass(frozen=True)
class Taken:
    """What one cycle plans: the first jobs in queue order among those that may start."""

    queue: list[demand_mod.JobDemand]
    truncated: int  # jobs that may start left out by the cycle's limit
    aside: int  # decided jobs none of whose pools has room now
    skippable: dict[Key, BoolArray]  # decided jobs taken: the pools each could use (PlanRequest.skippable)


class SetAside:
    """Every waiting job filed by what decides whether it is planned now (module docstring)."""

    def __init__(self) -> None:
        self._fleet: fleet_mod.Fleet | None = None
        self._revision = -1  # the ComputeQueues' and namespaces' (tenants.revision) the filing is for
        self._now = -math.inf  # the latest `refresh`: a clock that goes back files everything again
        self._dirty: set[Key] = set()
        self._filed: dict[Key, _Filed] = {}
        self._open: list[Member] = []  # undecided jobs, in queue order: always planned
        self._groups: dict[Group, list[Member]] = {}  # decided jobs, in queue order
        self._backoff: keyed_heap.KeyedHeap[Key] = keyed_heap.KeyedHeap()  # jobs in backoff by its end
        self._invalid: dict[Key, tuple[str, str]] = {}  # (field, message): not marked Invalid yet
        self._by_queue: collections.Counter[str] = collections.Counter()  # jobs filed per ComputeQueue
        self._masks: list[BoolArray] = []
        self._mask_ids: dict[bytes, int] = {}

    def touch(self, keys: Iterable[Key]) -> None:
        """These jobs changed (their record, binding, pods or workload): file them again."""
        self._dirty.update(keys)

    # --- filing -----------------------------------------------------------------------------

    def refresh(self, cache: cache_mod.Cache, fleet: fleet_mod.Fleet, now: float) -> None:
        """File again the jobs that changed, end the backoffs that are over; everything when the fleet,
        the tenants or the clock's direction makes the filing stale. `cache.holds` must be refreshed."""
        tenants = cache.tenants
        if fleet is not self._fleet or tenants.revision != self._revision or now < self._now:
            self._reset(fleet, tenants.revision)
            self._dirty = set(cache.holds.waiting)
        self._now = now
        dirty, self._dirty = self._dirty, set()
        models = [p.model for p in fleet.pools]
        preempting = {name for name, policy in preemption.policies(tenants.queues).items()
                      if policy != preemption.Policy()} if tenants.queues else set()
        decided: list[tuple[Key, _Filed]] = []
        undecided: list[Member] = []
        waiting = cache.holds.waiting
        for key in sorted(dirty):
            self._unfile(key)
            record = cache.jobs.get(key)
            if record is None or key not in waiting:
                continue
            if record.demand is None or record.parse_error is not None:
                if record.phase != "Invalid" and record.parse_error is not None:
                    self._invalid[key] = record.parse_error
                continue
            if not cache.schedulable(record):
                continue
            problem = validation.invalid_models(record.demand.models, models)
            if problem is not None:
                self._invalid[key] = problem
                continue
            demand = (tenants.resolve(record.demand, (record.raw.get("spec") or {}).get("queue")) if tenants.active
                      else record.demand)
            requeue_at = record.requeue_at
            filed = _Filed(queue_mod.order_key(demand), demand, None, requeue_at)
            self._filed[key] = filed
            self._by_queue[demand.queue or ""] += 1
            if requeue_at is not None and requeue_at > now:
                self._backoff.put(key, requeue_at)  # a requeued job sits out its backoff
                continue
            filed.requeue_at = None
            if _decided(record, demand, preempting):
                decided.append((key, filed))
            else:
                undecided.append((filed.order, key))
        self._end_backoffs(now, decided, undecided, preempting, cache)
        _insert(self._open, undecided)
        self._group(fleet, decided, cache)

    def _end_backoffs(self, now: float, decided: list[tuple[Key, _Filed]], undecided: list[Member],
                      preempting: set[str], cache: cache_mod.Cache) -> None:
        for key in self._backoff.pop_through(now):
            filed = self._filed[key]
            filed.requeue_at = None
            if _decided(cache.jobs[key], filed.demand, preempting):
                decided.append((key, filed))
            else:
                undecided.append((filed.order, key))

    def _group(self, fleet: fleet_mod.Fleet, decided: list[tuple[Key, _Filed]], cache: cache_mod.Cache) -> None:
        """File decided jobs in their groups: the pools each could use, scored in one batch."""
        if not decided:
            return
        rows = feasible.pools(fleet, [f.demand for _, f in decided], cache.settings, gang=False)
        joining: dict[Group, list[Member]] = {}
        for (key, filed), row in zip(decided, rows, strict=True):
            raw = row.tobytes()
            mask_id = self._mask_ids.get(raw)
            if mask_id is None:
                mask_id = self._mask_ids[raw] = len(self._masks)
                self._masks.append(row)
            group = filed.group = (filed.demand.replicas, filed.demand.count, mask_id)
            joining.setdefault(group, []).append((filed.order, key))
        for group, members in joining.items():
            _insert(self._groups.setdefault(group, []), members)

    def _unfile(self, key: Key) -> None:
        self._invalid.pop(key, None)
        filed = self._filed.pop(key, None)
        if filed is None:
            return
        self._by_queue[filed.demand.queue or ""] -= 1
        if filed.requeue_at is not None:
            self._backoff.discard(key)  # in backoff: in no list
            return
        members = self._open if filed.group is None else self._groups[filed.group]
        member = (filed.order, key)
        i = bisect.bisect_left(members, member)
        assert i < len(members) and members[i] == member, (key, filed)
        del members[i]
        if filed.group is not None and not members:
            del self._groups[filed.group]

    def _reset(self, fleet: fleet_mod.Fleet, revision: int) -> None:
        self._fleet, self._revision = fleet, revision
        self._filed, self._open, self._groups, self._invalid = {}, [], {}, {}
        self._backoff = keyed_heap.KeyedHeap()
        self._by_queue = collections.Counter()
        self._masks, self._mask_ids = [], {}

    # --- a cycle's reading --------------------------------------------------------------------

    @property
    def invalid(self) -> list[tuple[Key, str, str]]:
        """(job, field, message) of waiting jobs whose spec is invalid and not marked so yet, by key."""
        return [(key, *problem) for key, problem in sorted(self._invalid.items())]

    def next_requeue(self) -> float:
        """When the first backoff still running ends (epoch; +inf: none)."""
        first = self._backoff.peek()
        return first[0] if first is not None else math.inf

    def take(self, slots: IntArray, ready: BoolArray, limit: int) -> Taken:
        """The first `limit` jobs in queue order among the undecided ones and those whose group has room
        (`slots[p, c]`: replicas of c accelerators that fit on pool p now; `ready[p]`)."""
        lists = [self._open] if self._open else []
        aside = 0
        for group, members in self._groups.items():
            replicas, count, mask_id = group
            if feasible.room(self._masks[mask_id], ready, slots, replicas, count):
                lists.append(members)
            else:
                aside += len(members)
        total = sum(len(members) for members in lists)
        head = lists[0][:limit] if len(lists) == 1 else list(itertools.islice(heapq.merge(*lists), limit))
        queue, skippable = [], {}
        for _, key in head:
            filed = self._filed[key]
            queue.append(filed.demand)
            if filed.group is not None:
                skippable[key] = self._masks[filed.group[2]]
        return Taken(queue, total - len(head), aside, skippable)

    def waiting_by_queue(self) -> dict[str, int]:
        """Schedulable waiting jobs per ComputeQueue, however they are filed (planned, set aside, beyond
        the cycle's limit or in backoff): what a queue's status says is waiting."""
        return {name: n for name, n in self._by_queue.items() if name and n}

    def __len__(self) -> int:
        """Schedulable waiting jobs filed (in backoff or not)."""
        return len(self._filed)


def _decided(record: records.JobRecord, demand: demand_mod.JobDemand, preempting: set[str]) -> bool:
    """Whether a waiting job may be set aside: its status says Queued for its current spec (with the
    reason), and its ComputeQueue cannot preempt for it (a job that may preempt is always planned)."""
    status = record.status
    return (record.phase == "Queued" and bool(status.get("message"))
            and status.get("observedGeneration") == record.generation and demand.queue not in preempting)


def _insert(members: list[Member], new: list[Member]) -> None:
    """Put `new` into the ordered list `members`: one by one when they are few, else sorted in at once (a
    burst of thousands of new jobs is not thousands of insertions into a long list)."""
    if len(new) <= 32:
        for member in new:
            bisect.insort(members, member)
    else:
        members.extend(new)
        members.sort()
