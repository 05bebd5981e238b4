"""The discrete-event replay: a virtual clock drives the placement core over a trace, for one policy.

Events, in time order (ties: completions, then deferred wake-ups, then arrivals, then budget
rolls, each by sequence number): a completion releases its gang and settles its energy in the
session's ledgers; an arrival or a deferred job's planned start puts the job on the queue; a
budget roll moves the energy accounts to a new period. After the events of one instant, the queue
is planned in queue order through `placement.session` (the same `plan_one` as `suanli plan`).

With ComputeQueues (`queues`), the session holds their quota ledger, so the planner's quota filter
applies as in the operator; the queue order is the operator's too: the queue with the lowest
weighted dominant share plans its next job first, asked again after every binding, then priority
and arrival within a queue. Jobs of a queue with no room left in its quota (nominal plus what it may
borrow) for their gang on any pool they could use are skipped without being scored, until a job
ends. `sim/tenants.Watch` follows each queue's holdings for the per-queue report and fairness.

A job occupies its accelerators for transfer + runtime (the core's estimates at the pool it got)
and is charged the core's energy, carbon and cost estimates when it completes. Queued jobs are
only re-planned when a pool they could ever use has slots for their gang (a cheap look-up in the
session's slot table), or at a budget roll: a queue of thousands is not re-scored on every event.
A job that no pool can ever take (type, model, memory, region, gang size) is unschedulable at
arrival. Jobs still queued when nothing else can happen are reported as such.

Pure apart from the optional progress callback: no clock, no I/O.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from suanli import settings as settings_mod
from suanli.api import queue as queue_api
from suanli.ledger import capacity as capacity_mod
from suanli.placement import decision as decision_mod
from suanli.placement import feasible, planner, policies, preemption, session, tenancy
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod
from suanli.scoring import profiles
from suanli.sim import preempting, waiting
from suanli.sim import tenants as tenants_mod

FloatArray = npt.NDArray[np.float64]
PROFILES = tuple(profiles.WEIGHTS)
POLICIES = PROFILES + policies.BASELINES

_COMPLETE, _WAKE, _ARRIVE, _ROLL = 0, 1, 2, 3
RETRY_SECONDS = 600.0  # virtual seconds before a job refused for energy reasons is tried again (doubling)
MAX_RETRY_SECONDS = 86400.0
# Stop when only refused jobs are left and nothing has started or finished for this long: longer
# than a budget period (a Month) plus a day of carbon schedule, so every limit got its chance.
IDLE_LIMIT_SECONDS = 33 * 86400.0


@dataclasses.dataclass
class JobRecord:
    """What happened to one job (times in epoch seconds; NaN where it did not happen)."""

    index: int
    arrival: float
    start: float = math.nan
    end: float = math.nan
    center: str = ""
    pool: int = -1
    accelerators: int = 0
    energy_kwh: float = 0.0
    carbon_kg: float = 0.0
    cost: float = 0.0
    deferrals: int = 0
    refusals: int = 0  # times refused for energy reasons while a pool had room
    queue: str = ""  # the ComputeQueue that admitted it ("" without queues)
    compute_units: float = 0.0  # A100-equivalents it held while it ran (with queues)
    preempted: int = 0  # runs stopped to make room for another queue's or a higher-priority job
    lost_seconds: float = 0.0  # accelerator-seconds of those runs (work lost)
    preempted_kwh: float = 0.0  # energy, carbon and cost settled for those runs
    preempted_carbon_kg: float = 0.0
    preempted_cost: float = 0.0
    outcome: str = "pending"  # completed | unschedulable | queued | running | deferred


@dataclasses.dataclass(frozen=True)
class Sample:
    """Fleet state right after the events of one instant were handled."""

    time: float
    queued: int
    busy_by_center: tuple[int, ...]
    carbon_kg: float  # settled so far
    energy_kwh: float


@dataclasses.dataclass
class Run:
    """The replay of one trace under one policy."""

    policy: str
    fleet: fleet_mod.Fleet
    jobs: tuple[demand_mod.JobDemand, ...]
    records: list[JobRecord]
    samples: list[Sample]
    center_energy_kwh: dict[str, float]
    center_carbon_kg: dict[str, float]
    center_cost: dict[str, float]
    max_pool_oversubscription: int
    events: int
    placements: int
    tenants: tenants_mod.Watch | None = None  # per-queue holdings and fairness (with ComputeQueues)
    preemptions: int = 0  # runs stopped by preemption


def for_policy(job: demand_mod.JobDemand, policy: str) -> demand_mod.JobDemand:
    """A profile policy gives every job its weights; baselines keep the job's own (they ignore scores)."""
    if policy in profiles.WEIGHTS:
        return dataclasses.replace(job, weights=profiles.weights_for(policy), profile=policy)
    return job


def planner_policy(policy: str) -> str:
    if policy in profiles.WEIGHTS:
        return policies.SCORE
    if policy in policies.BASELINES:
        return policy
    raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}")


def replay(
    fleet: fleet_mod.Fleet,
    trace_jobs: Sequence[demand_mod.JobDemand],
    policy: str,
    config: settings_mod.Settings | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    retry_seconds: float = RETRY_SECONDS,
    queues: Mapping[str, queue_api.ComputeQueueSpec] | None = None,
) -> Run:
    """Replay the jobs (arrival epochs set) on an empty fleet under one policy; `queues`: the
    ComputeQueues that admit the jobs (each job's `queue` names one, or none)."""
    return _Replay(fleet, trace_jobs, policy, config or settings_mod.Settings(), seed, retry_seconds, queues).run(progress)


class _Replay:
    """The state of one replay and the handling of its events."""

    def __init__(self, fleet: fleet_mod.Fleet, trace_jobs: Sequence[demand_mod.JobDemand], policy: str,
                 config: settings_mod.Settings, seed: int, retry_seconds: float,
                 queues: Mapping[str, queue_api.ComputeQueueSpec] | None):
        self.fleet, self.policy, self.retry_seconds = fleet, policy, retry_seconds
        self.jobs = jobs = tuple(for_policy(j, policy) for j in trace_jobs)
        self.usable = feasible.pools(fleet, jobs, config)
        capacity, energy = planner.ledgers_for(fleet)
        self.first = min((j.arrival_epoch for j in jobs), default=0.0)
        self.work = session.Session(
            fleet, capacity, energy, self.first, config, planner_policy(policy), seed=seed, explain=False,
            quotas=tenancy.ledger_for(queues) if queues else None,
        )
        self.watch = tenants_mod.Watch(fleet, queues, {j.queue for j in jobs}) if queues else None
        preemptor = preempting.Preemptor(queues) if queues else None
        self.preemptor = preemptor if preemptor is not None and any(
            p != preemption.Policy() for p in preemptor.policies.values()) else None
        self.pool_capacity = np.array([capacity.capacity(p) for p in range(fleet.size)], dtype=np.int64)
        self.in_use = np.zeros(fleet.size, dtype=np.int64)
        self.busy_center = np.zeros(len(fleet.centers), dtype=np.int64)
        self.records = [JobRecord(index=i, arrival=j.arrival_epoch, queue=j.queue or "") for i, j in enumerate(jobs)]
        self.by_key = {j.key: i for i, j in enumerate(jobs)}
        self.running: dict[int, tuple[capacity_mod.Allocation, float, float, float]] = {}
        self.completion: dict[int, int] = {}  # running job -> the sequence number of its completion event
        self.heap: list[tuple[float, int, int, int]] = []
        self.seq = 0
        self.stale = 0  # completion events of preempted runs still in the heap
        self.queue = waiting.Waiting(fleet)
        self.settled_kwh = self.settled_carbon = 0.0

    def push(self, time: float, kind: int, index: int) -> int:
        heapq.heappush(self.heap, (time, kind, self.seq, index))
        self.seq += 1
        return self.seq - 1

    def run(self, progress: Callable[[int], None] | None) -> Run:
        jobs, work, heap, records = self.jobs, self.work, self.heap, self.records
        for i, job in enumerate(jobs):
            self.push(job.arrival_epoch, _ARRIVE, i)
        samples: list[Sample] = []
        worst = 0
        events = placements = 0
        roll_pending = False
        finished = 0
        arrivals_left = len(jobs)
        last_progress = self.first

        while heap:
            now = heap[0][0]
            work.advance(now)
            while heap and heap[0][0] == now:
                _, kind, seq, index = heapq.heappop(heap)
                if kind == _COMPLETE and self.completion.get(index) != seq:
                    self.stale -= 1
                    continue  # the run it ended was preempted
                events += 1
                if kind == _ARRIVE:
                    arrivals_left -= 1
                    last_progress = now
                if kind == _COMPLETE:
                    last_progress = now
                    self.stop(index, now, completed=True)
                    finished += 1
                elif kind in (_ARRIVE, _WAKE):
                    if not self.usable[index].any():
                        records[index].outcome = "unschedulable"
                        finished += 1
                    else:
                        if kind == _ARRIVE and self.watch is not None:
                            self.watch.queued(jobs[index].queue, +1)
                        records[index].outcome = "queued"
                        self.queue.add(jobs[index], index, self.usable[index])
                else:
                    roll_pending = False
            placed = self.plan(now)
            placements += placed
            if placed:
                last_progress = now
            worst = max(worst, work.capacity.oversubscription(),
                        int(np.max(self.in_use - self.pool_capacity, initial=0)))
            samples.append(Sample(now, self.queue.size, tuple(int(b) for b in self.busy_center),
                                  self.settled_carbon, self.settled_kwh))
            if self.watch is not None:
                self.watch.sample(now)
            if progress is not None:
                progress(finished)
            waiting = self.queue.size or len(heap) - self.stale > len(self.running) + arrivals_left + int(roll_pending)
            if not self.running and not arrivals_left and now - last_progress > IDLE_LIMIT_SECONDS:
                break  # only refused jobs remain and no limit has moved for them
            boundary = _next_boundary(work)
            if waiting and not roll_pending and math.isfinite(boundary):
                self.push(boundary, _ROLL, -1)
                roll_pending = True

        for i in self.queue.indices():
            records[i].outcome = "queued"
        for record in records:
            if record.outcome in ("parked", "deferred"):
                record.outcome = "queued"
        accounts = work.energy.accounts()
        return Run(
            policy=self.policy,
            fleet=self.fleet,
            jobs=jobs,
            records=records,
            samples=samples,
            center_energy_kwh={a.name: a.total_used_kwh for a in accounts},
            center_carbon_kg={a.name: a.total_carbon_kg for a in accounts},
            center_cost={a.name: a.total_cost for a in accounts},
            max_pool_oversubscription=worst,
            events=events,
            placements=placements,
            tenants=self.watch,
            preemptions=self.preemptor.preemptions if self.preemptor is not None else 0,
        )

    # --- a job starts and stops -------------------------------------------------------------

    def start(self, index: int, decision: decision_mod.Decision, now: float) -> None:
        assert decision.binding is not None and decision.allocation is not None
        job, record = self.jobs[index], self.records[index]
        est = decision.binding.estimates
        allocation = decision.allocation
        record.start = now
        record.end = now + est.transfer_seconds + est.runtime_seconds
        record.center = decision.binding.pool.center
        record.pool = allocation.pool
        record.accelerators = allocation.accelerators
        record.energy_kwh, record.carbon_kg, record.cost = est.energy_kwh, est.carbon_kg, est.cost
        record.outcome = "running"
        self.running[index] = (allocation, est.energy_kwh, est.carbon_kg, est.cost)
        self.in_use[allocation.pool] += allocation.accelerators
        self.busy_center[self.fleet.pool_center[allocation.pool]] += allocation.accelerators
        if self.watch is not None:
            self.watch.queued(job.queue, -1)
            record.compute_units = self.watch.bound(job.queue, allocation.pool, allocation.accelerators, job.precision)
        if self.preemptor is not None:
            self.preemptor.started(job.queue, job.priority)
        self.completion[index] = self.push(record.end, _COMPLETE, index)

    def stop(self, index: int, now: float, completed: bool) -> None:
        """A run ends: completed (its estimates settled), or preempted (the share of its estimates
        for the time it ran settled, and the job back in the queue, waiting again)."""
        job, record = self.jobs[index], self.records[index]
        allocation, kwh, carbon, cost = self.running.pop(index)
        self.completion.pop(index, None)
        part = 1.0
        if not completed:
            self.stale += 1
            part = (now - record.start) / (record.end - record.start) if record.end > record.start else 0.0
        kwh, carbon, cost = kwh * part, carbon * part, cost * part
        self.work.release(allocation, job.key, kwh, carbon, cost)
        self.in_use[allocation.pool] -= allocation.accelerators
        self.busy_center[self.fleet.pool_center[allocation.pool]] -= allocation.accelerators
        if self.watch is not None:
            self.watch.ended(job.queue, allocation.pool, allocation.accelerators, job.precision)
        if self.preemptor is not None:
            self.preemptor.stopped(job.queue, job.priority)
        self.settled_kwh += kwh
        self.settled_carbon += carbon
        if completed:
            record.outcome = "completed"
            return
        record.preempted += 1
        record.preempted_kwh += kwh
        record.preempted_carbon_kg += carbon
        record.preempted_cost += cost
        record.lost_seconds += (now - record.start) * allocation.accelerators
        record.outcome = "queued"
        if self.watch is not None:
            self.watch.queued(job.queue, +1)
        self.push(now, _WAKE, index)  # back in the queue once this instant's plan is done

    def preempt(self, decision: decision_mod.Decision, now: float) -> bool:
        """Stop the victims the operator's rules choose for a Queued job, if any; True if some were."""
        assert self.preemptor is not None and self.work.quotas is not None
        running = [
            preemption.Running(self.jobs[i].key, self.jobs[i].queue, self.jobs[i].priority, self.records[i].start,
                               allocation, self.jobs[i].arrival_epoch)
            for i, (allocation, *_) in self.running.items()
        ]
        proposal = self.preemptor.propose(decision, self.work.capacity, self.work.quotas, running)
        if proposal is None:
            return False
        for key, _ in proposal.victims:
            self.stop(self.by_key[key], now, completed=False)
        return True

    # --- planning ---------------------------------------------------------------------------

    def _worth_asking(self, key: waiting.GroupKey, members: list[tuple[tuple[int, float, str, str], int]], pos: int) -> bool:
        """Whether the group's next job could run now: room in a pool and in its queue's quota, or
        victims its queue may preempt."""
        queue, quotas = self.queue, self.work.quotas
        if waiting.fits(self.work.slots, key, queue.masks[key]) and waiting.quota_room(quotas, key, queue.dimensions[key]):
            return True
        if self.preemptor is None or not key[3]:
            return False
        job = self.jobs[members[pos][1]]
        return self.preemptor.may_help(quotas, key[3], key[0] * key[1], job.priority, queue.dimensions[key])

    def plan(self, now: float) -> int:
        """Plan the queue in queue order (ComputeQueues by fair share first), skipping groups that cannot
        run now (no room in a pool or in their queue's quota, and nothing to preempt); jobs bound."""
        work, queue, quotas, records = self.work, self.queue, self.work.quotas, self.records
        heads: list[tuple[float, tuple[int, float, str, str], waiting.GroupKey, int]] = []
        for key, members in queue.groups.items():
            if members and self._worth_asking(key, members, 0):
                heads.append((tenancy.share(quotas, key[3]), members[0][0], key, 0))
        heapq.heapify(heads)
        taken: dict[waiting.GroupKey, set[int]] = {}
        placed = 0
        while heads:
            share, order, key, pos = heapq.heappop(heads)
            if tenancy.share(quotas, key[3]) > share:
                # Its queue bound a job since this head was pushed: it goes behind the queues now below it.
                heapq.heappush(heads, (tenancy.share(quotas, key[3]), order, key, pos))
                continue
            members = queue.groups[key]
            if not self._worth_asking(key, members, pos):
                continue
            index = members[pos][1]
            decision = work.place_one(self.jobs[index])
            if decision.phase == "Queued" and self.preemptor is not None and self.preempt(decision, now):
                decision = work.place_one(self.jobs[index])
            record = records[index]
            if decision.phase == "Bound":
                self.start(index, decision, now)
                taken.setdefault(key, set()).add(pos)
                placed += 1
            elif decision.phase == "Queued" and waiting.fits(work.slots, key, queue.masks[key]):
                # A pool had room for the gang, yet the job was refused: an energy limit (budget,
                # cap) or a quota dimension the cheap test does not see blocks it, which capacity
                # freeing up elsewhere rarely changes. Park it until the next budget roll or
                # retry_seconds, whichever comes first.
                record.outcome = "parked"
                record.refusals += 1
                backoff = min(self.retry_seconds * 2 ** (record.refusals - 1), MAX_RETRY_SECONDS)
                self.push(min(_next_boundary(work), now + backoff), _WAKE, index)
                taken.setdefault(key, set()).add(pos)
            elif decision.phase == "Deferred":
                assert decision.planned_start is not None
                record.deferrals += 1
                record.outcome = "deferred"
                self.push(decision.planned_start, _WAKE, index)
                taken.setdefault(key, set()).add(pos)
            if pos + 1 < len(members):
                heapq.heappush(heads, (tenancy.share(quotas, key[3]), members[pos + 1][0], key, pos + 1))
        queue.remove(taken)
        return placed


def _next_boundary(work: session.Session) -> float:
    """The next energy or queue budget period boundary."""
    quotas = work.quotas
    return min(work.energy.next_boundary(), quotas.next_boundary() if quotas is not None else math.inf)
