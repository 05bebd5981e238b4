"""The discrete-event replay: a virtual clock drives the placement core over a trace, for one policy.

Events, in time order (ties: completions, then deferred wake-ups, then arrivals, then budget
rolls, each by sequence number): a completion releases its gang and settles its energy in the
session's ledgers; an arrival or a deferred job's planned start puts the job on the queue; a
budget roll moves the energy accounts to a new period. After the events of one instant, the queue
is planned in queue order through `placement.session` (the same `plan_one` as `suanli plan`).

A job occupies its accelerators for transfer + runtime (the core's estimates at the pool it got)
and is charged the core's energy, carbon and cost estimates when it completes. Queued jobs are
only re-planned when a pool they could ever use has slots for their gang (a cheap look-up in the
session's slot table), or at a budget roll: a queue of thousands is not re-scored on every event.
A job that no pool can ever take (type, model, memory, region, gang size) is unschedulable at
arrival. Jobs still queued when nothing else can happen are reported as such.

Pure apart from the optional progress callback: no clock, no I/O.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from suanli import settings as settings_mod
from suanli.ledger import capacity as capacity_mod
from suanli.placement import planner, policies, session
from suanli.placement import queue as queue_mod
from suanli.scoring import demand as demand_mod
from suanli.scoring import engine, profiles
from suanli.scoring import fleet as fleet_mod

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


def permanent_pools(
    fleet: fleet_mod.Fleet, jobs: Sequence[demand_mod.JobDemand], config: settings_mod.Settings
) -> npt.NDArray[np.bool_]:
    """(J, P): pools each job could ever use (no permanent filter fails), scored at once on an idle fleet."""
    out = np.zeros((len(jobs), fleet.size), dtype=np.bool_)
    idle = fleet_mod.idle_state(fleet)
    chunk = 2048
    for lo in range(0, len(jobs), chunk):
        part = list(jobs[lo : lo + chunk])
        batch = demand_mod.batch(part, fleet, config.scoring.reference_pue)
        starts = np.array([j.arrival_epoch for j in part])
        ev = engine.evaluate(fleet, idle, batch, starts, config.scoring)
        out[lo : lo + len(part)] = (ev.reasons & int(engine.PERMANENT)) == 0
    return out


class _Queue:
    """Queued jobs grouped by what decides whether they could fit: gang shape and usable pools."""

    def __init__(self) -> None:
        self.groups: dict[tuple[int, int, bytes], list[tuple[tuple[int, float, str, str], int]]] = {}
        self.masks: dict[tuple[int, int, bytes], npt.NDArray[np.bool_]] = {}
        self.size = 0

    def add(self, job: demand_mod.JobDemand, index: int, mask: npt.NDArray[np.bool_]) -> None:
        key = (min(job.count, fleet_mod.MAX_PER_NODE), job.replicas, mask.tobytes())
        self.masks.setdefault(key, mask)
        bisect.insort(self.groups.setdefault(key, []), (queue_mod.order_key(job), index))
        self.size += 1

    def indices(self) -> list[int]:
        return [i for members in self.groups.values() for _, i in members]


def _fits(slots: npt.NDArray[np.int64], key: tuple[int, int, bytes], mask: npt.NDArray[np.bool_]) -> bool:
    count, replicas, _ = key
    return bool(np.any(slots[mask, count] >= replicas))


def replay(
    fleet: fleet_mod.Fleet,
    trace_jobs: Sequence[demand_mod.JobDemand],
    policy: str,
    config: settings_mod.Settings | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    retry_seconds: float = RETRY_SECONDS,
) -> Run:
    """Replay the jobs (arrival epochs set) on an empty fleet under one policy."""
    config = config or settings_mod.Settings()
    jobs = tuple(for_policy(j, policy) for j in trace_jobs)
    usable = permanent_pools(fleet, jobs, config)
    capacity, energy = planner.ledgers_for(fleet)
    first = min((j.arrival_epoch for j in jobs), default=0.0)
    work = session.Session(
        fleet, capacity, energy, first, config, planner_policy(policy), seed=seed, explain=False
    )
    pool_capacity = np.array([capacity.capacity(p) for p in range(fleet.size)], dtype=np.int64)
    in_use = np.zeros(fleet.size, dtype=np.int64)
    records = [JobRecord(index=i, arrival=j.arrival_epoch) for i, j in enumerate(jobs)]
    running: dict[int, tuple[capacity_mod.Allocation, float, float, float]] = {}
    heap: list[tuple[float, int, int, int]] = []
    seq = 0

    def push(time: float, kind: int, index: int) -> None:
        nonlocal seq
        heapq.heappush(heap, (time, kind, seq, index))
        seq += 1

    for i, job in enumerate(jobs):
        push(job.arrival_epoch, _ARRIVE, i)
    queue = _Queue()
    samples: list[Sample] = []
    settled_kwh = settled_carbon = 0.0
    busy_center = np.zeros(len(fleet.centers), dtype=np.int64)
    worst = 0
    events = placements = 0
    roll_pending = False
    finished = 0
    arrivals_left = len(jobs)
    last_progress = first

    while heap:
        now = heap[0][0]
        work.advance(now)
        while heap and heap[0][0] == now:
            _, kind, _, index = heapq.heappop(heap)
            events += 1
            if kind == _ARRIVE:
                arrivals_left -= 1
                last_progress = now
            if kind == _COMPLETE:
                last_progress = now
                allocation, kwh, carbon, cost = running.pop(index)
                work.release(allocation, jobs[index].key, kwh, carbon, cost)
                in_use[allocation.pool] -= allocation.accelerators
                busy_center[fleet.pool_center[allocation.pool]] -= allocation.accelerators
                settled_kwh += kwh
                settled_carbon += carbon
                records[index].outcome = "completed"
                finished += 1
            elif kind in (_ARRIVE, _WAKE):
                if not usable[index].any():
                    records[index].outcome = "unschedulable"
                    finished += 1
                else:
                    records[index].outcome = "queued"
                    queue.add(jobs[index], index, usable[index])
            else:
                roll_pending = False
        placed = _plan_queue(work, queue, jobs, records, running, push, in_use, busy_center, fleet, now, retry_seconds)
        placements += placed
        if placed:
            last_progress = now
        worst = max(worst, work.capacity.oversubscription(), int(np.max(in_use - pool_capacity, initial=0)))
        samples.append(
            Sample(now, queue.size, tuple(int(b) for b in busy_center), settled_carbon, settled_kwh)
        )
        if progress is not None:
            progress(finished)
        waiting = queue.size or len(heap) > len(running) + arrivals_left + int(roll_pending)
        if not running and not arrivals_left and now - last_progress > IDLE_LIMIT_SECONDS:
            break  # only refused jobs remain and no limit has moved for them
        boundary = work.energy.next_boundary()
        if waiting and not roll_pending and math.isfinite(boundary):
            push(boundary, _ROLL, -1)
            roll_pending = True

    for i in queue.indices():
        records[i].outcome = "queued"
    for record in records:
        if record.outcome in ("parked", "deferred"):
            record.outcome = "queued"
    center_energy = {a.name: a.total_used_kwh for a in work.energy.accounts()}
    center_carbon = {a.name: a.total_carbon_kg for a in work.energy.accounts()}
    center_cost = {a.name: a.total_cost for a in work.energy.accounts()}
    return Run(
        policy=policy,
        fleet=fleet,
        jobs=jobs,
        records=records,
        samples=samples,
        center_energy_kwh=center_energy,
        center_carbon_kg=center_carbon,
        center_cost=center_cost,
        max_pool_oversubscription=worst,
        events=events,
        placements=placements,
    )


def _plan_queue(
    work: session.Session,
    queue: _Queue,
    jobs: tuple[demand_mod.JobDemand, ...],
    records: list[JobRecord],
    running: dict[int, tuple[capacity_mod.Allocation, float, float, float]],
    push: Callable[[float, int, int], None],
    in_use: npt.NDArray[np.int64],
    busy_center: npt.NDArray[np.int64],
    fleet: fleet_mod.Fleet,
    now: float,
    retry_seconds: float,
) -> int:
    """Plan the queue in queue order, skipping groups that cannot fit anywhere; jobs bound."""
    slots = work.slots
    heads: list[tuple[tuple[int, float, str, str], tuple[int, int, bytes], int]] = []
    for key, members in queue.groups.items():
        if members and _fits(slots, key, queue.masks[key]):
            heads.append((members[0][0], key, 0))
    heapq.heapify(heads)
    taken: dict[tuple[int, int, bytes], set[int]] = {}
    placed = 0
    while heads:
        _, key, pos = heapq.heappop(heads)
        members = queue.groups[key]
        if not _fits(work.slots, key, queue.masks[key]):
            continue
        index = members[pos][1]
        decision = work.place_one(jobs[index])
        record = records[index]
        if decision.phase == "Bound":
            assert decision.binding is not None and decision.allocation is not None
            est = decision.binding.estimates
            allocation = decision.allocation
            record.start = now
            record.end = now + est.transfer_seconds + est.runtime_seconds
            record.center = decision.binding.pool.center
            record.pool = allocation.pool
            record.accelerators = allocation.accelerators
            record.energy_kwh, record.carbon_kg, record.cost = est.energy_kwh, est.carbon_kg, est.cost
            record.outcome = "running"
            running[index] = (allocation, est.energy_kwh, est.carbon_kg, est.cost)
            in_use[allocation.pool] += allocation.accelerators
            busy_center[fleet.pool_center[allocation.pool]] += allocation.accelerators
            push(record.end, _COMPLETE, index)
            taken.setdefault(key, set()).add(pos)
            placed += 1
        elif decision.phase == "Queued":
            # A pool had room for the gang, yet the job was refused: an energy limit (budget,
            # cap) blocks it, which capacity freeing up elsewhere rarely changes. Park it until
            # the next budget roll or retry_seconds, whichever comes first.
            record.outcome = "parked"
            record.refusals += 1
            backoff = min(retry_seconds * 2 ** (record.refusals - 1), MAX_RETRY_SECONDS)
            push(min(work.energy.next_boundary(), now + backoff), _WAKE, index)
            taken.setdefault(key, set()).add(pos)
        elif decision.phase == "Deferred":
            assert decision.planned_start is not None
            record.deferrals += 1
            record.outcome = "deferred"
            push(decision.planned_start, _WAKE, index)
            taken.setdefault(key, set()).add(pos)
        if pos + 1 < len(members):
            heapq.heappush(heads, (members[pos + 1][0], key, pos + 1))
    for key, positions in taken.items():
        members = queue.groups[key]
        queue.groups[key] = [m for p, m in enumerate(members) if p not in positions]
        queue.size -= len(positions)
        if not queue.groups[key]:
            del queue.groups[key]
            del queue.masks[key]
    return placed
