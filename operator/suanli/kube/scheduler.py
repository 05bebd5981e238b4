"""The scheduler: one asyncio task, not a handler (DESIGN.md "The control loop").

It sleeps until woken (a job queued, capacity freed, a center or node changed, a deferred
start or a budget-period boundary reached, or the slow safety resync), coalesces wake-ups,
takes a snapshot of the cache, plans the queue with the pure core in a worker thread, records
each Bound decision in the cache first ("assumed") and hands it to the binder (`kube/binder.py`),
which writes it in the background. Two companions keep status current: `kube/lifecycle.py` for
jobs whose workload moved, `kube/center_status.py` for ComputeCenters. They share this object:
the cache, the API client, the clock, the per-job work queue (`kube/workqueue.py`) and the
background tasks, whose exceptions are always logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

from suanli import clock as clock_mod
from suanli import metrics
from suanli import settings as settings_mod
from suanli.api import status as status_api
from suanli.kube import binder as binder_mod
from suanli.kube import cache as cache_mod
from suanli.kube import center_gauges as center_gauges_mod
from suanli.kube import center_status as center_status_mod
from suanli.kube import client as client_mod
from suanli.kube import clusters as clusters_mod
from suanli.kube import errors, records, workqueue
from suanli.kube import lifecycle as lifecycle_mod
from suanli.kube import preempting as preempting_mod
from suanli.kube import queue_status as queue_status_mod
from suanli.kube import snapshot as snapshot_mod
from suanli.kube import status as status_mod
from suanli.placement import decision as decision_mod
from suanli.placement import planner

LOG = logging.getLogger("suanli.scheduler")
Key = records.Key
# The queue and pool gauges are set at most this often by the loop (a Prometheus scrape is every 15 s or
# more; setting them on every cycle of a busy loop, which walks every job, was 5 % of a draining operator).
PUBLISH_SECONDS = 1.0


class Scheduler:
    def __init__(
        self,
        cache: cache_mod.Cache,
        api: client_mod.Api,
        settings: settings_mod.Settings,
        clock: clock_mod.Clock,
        later: workqueue.Later | None = None,
    ):
        if isinstance(clock, clock_mod.SystemClock):
            clock = clock_mod.from_environment(clock)  # test-only offset clock (see clock.py)
        self.cache, self.api, self.settings, self.clock = cache, api, settings, clock
        self.wake = asyncio.Event()
        self.jobs_dirty: set[Key] = set()
        self.jobs_event = asyncio.Event()
        self.centers_event = asyncio.Event()
        self.timer = math.inf  # next deferred start or budget boundary (epoch)
        self.writes = workqueue.WorkQueue(settings.operator, later)
        self.clusters = clusters_mod.Clusters(api)  # member clusters' APIs, set by suanli/members
        self.members_sweep_due: set[str] = set()  # members with a Job left to delete (suanli/members sweeps them)
        self.abandoned: dict[Key, str] = {}  # job -> uid: its namespace is going away, no workload is created
        self._next_sweep = 0.0  # monotonic: when `_forget_gone` next looks at every job with something kept
        self._next_publish = 0.0  # monotonic: when the loop may set the gauges again
        self._started: float | None = None  # monotonic: the first cycle (the members' start-up grace runs from it)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.cycles = 0
        self.binder = binder_mod.Binder(self)
        self.lifecycle = lifecycle_mod.Lifecycle(self)
        self.center_status = center_status_mod.CenterStatus(self)
        self.queue_status = queue_status_mod.QueueStatus(self)
        self.preempting = preempting_mod.Preempting(self)
        self.center_gauges = center_gauges_mod.CenterGauges()

    # --- wake-ups (called by handlers) ----------------------------------------------------

    def poke(self) -> None:
        self.wake.set()

    def job_changed(self, key: Key) -> None:
        self.jobs_dirty.add(key)
        self.jobs_event.set()

    def job_deleted(self, record: records.JobRecord) -> None:
        """A ComputeJob was deleted. In the operator's own cluster its Job goes with it (owner reference);
        in a member cluster the operator deletes it. A member that cannot be reached now deletes it when it
        is back (its sweep: a Job whose ComputeJob is gone), so nothing waits on an unreachable member."""
        binding = self.cache.binding(record) or record.recorded
        if binding is None or not binding.cluster:
            return
        workload = self.cache.workloads.get(self.cache.workload_slot(record, binding))
        if workload is None or workload.deleting or workload.owner_uid not in (None, record.uid):
            return
        self.spawn(self._delete_member_job(binding.cluster, workload))

    async def _delete_member_job(self, cluster: str, workload: Any) -> None:
        try:
            api = self.clusters.api(cluster)
            await api.run(api.delete_job, workload.namespace, workload.key[1], workload.uid)
            LOG.info("deleted Job %s/%s in member cluster %s: its ComputeJob was deleted", workload.namespace,
                     workload.key[1], cluster)
        except Exception as exc:  # unreachable, or failed: the member's sweep deletes it when it is back
            LOG.warning("could not delete Job %s/%s in member cluster %s now (%s); it is deleted when the member "
                        "is next swept", workload.namespace, workload.key[1], cluster, errors.short(exc))
            self.members_sweep_due.add(cluster)

    def center_changed(self) -> None:
        self.centers_event.set()

    def queues_changed(self) -> None:
        """A ComputeQueue changed (or jobs it holds moved): its status is due."""
        self.queue_status.event.set()

    def spawn(self, coro: Any) -> None:
        """Run `coro` in the background; an exception it raises is logged, never lost."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            metrics.TASK_ERRORS.inc()
            LOG.error("a background write failed unexpectedly: %r", exc, exc_info=exc)

    def ref(self, record: records.JobRecord) -> tuple[str, str, str, str]:
        return ("ComputeJob", record.key[0], record.key[1], record.uid)

    # --- the loop -------------------------------------------------------------------------

    def clock_jumped(self) -> None:
        """The (test) clock moved: budget periods and deferred starts are re-evaluated at once."""
        self.poke()
        self.center_changed()

    async def run(self) -> None:
        op = self.settings.operator
        if isinstance(self.clock, clock_mod.OffsetFileClock):
            self.spawn(self.clock.watch(self.clock_jumped))
        while True:
            delay = min(op.resync_seconds, max(0.0, self.timer - self.clock.now()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=delay)
            if op.coalesce_seconds:
                await asyncio.sleep(op.coalesce_seconds)
            self.wake.clear()
            try:
                await self.cycle()
            except Exception:
                LOG.exception("scheduling cycle failed; retrying on the next event or in %ss", op.resync_seconds)

    def _forget_gone(self) -> None:
        """Drop what is kept for jobs that were deleted (or recreated under the same name) meanwhile:
        the jobs the cache saw go since the last cycle; every job with something kept once per
        `operator.resync_seconds` (a retry scheduled by a write that ended after its job went). The full
        look is O(jobs with a pending check: every bound job waiting for its pods), too much for every
        cycle (it was a fifth of the operator's time in `make bench`'s burst)."""
        keys = self.cache.take_replaced()
        now = self.clock.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.settings.operator.resync_seconds
            keys |= self.writes.pending() | set(self.abandoned) | set(self.lifecycle.ending)
        for key in keys:
            record = self.cache.jobs.get(key)
            uid = self.abandoned.get(key)
            if uid is not None and (record is None or record.uid != uid):
                del self.abandoned[key]  # deleted (a namespace of that name may be back)
            retry_uid = self.writes.uid_of(key)
            if record is None or (retry_uid is not None and retry_uid != record.uid):
                self.writes.drop(key)
            ending = self.lifecycle.ending.get(key)
            if ending is not None and (record is None or record.uid != ending[0]):
                self.lifecycle.forget(key)

    async def cycle(self) -> None:
        started = self.clock.monotonic()
        now = self.clock.now()
        snap = self.cache.snapshot(now)
        publish_in = self._next_publish - started
        if publish_in <= 0:
            self.publish(snap)
            self._next_publish = started + PUBLISH_SECONDS
        for key, field, message in snap.invalid:
            if not self.writes.busy(key):
                self.spawn(self.binder.mark_invalid(key, field, message, now))
        self.timer = min(snap.energy.next_boundary(), snap.next_requeue)
        if publish_in > 0:  # skipped: a cycle when they are due sets them (no state is left unpublished)
            self.timer = min(self.timer, now + publish_in)
        self._forget_gone()
        held = self.writes.held
        queue = [j for j in snap.queue if j.key not in held] if held else snap.queue
        if queue and snap.fleet.size and not self._members_settled(started, now):
            queue = []  # plan once every member's nodes and pods are in (its Ready or its problem is known)
        if queue and snap.fleet.size:
            request = planner.PlanRequest(
                fleet=snap.fleet,
                capacity=snap.capacity,
                energy=snap.energy,
                jobs=queue,
                now=now,
                settings=self.settings,
                ready=snap.ready,
                not_ready_reason=snap.not_ready_reason,
                quotas=snap.quotas,
                skippable=snap.skippable,
            )
            reply = await asyncio.to_thread(planner.plan, request)
            for d in reply.decisions:
                if d.phase == "Deferred" and d.planned_start is not None and d.planned_start > now:
                    # Wake at the planned start (even when this job's status write is still in flight).
                    self.timer = min(self.timer, d.planned_start)
                self._apply(d, now, snap)
            if snap.quotas is not None:
                self.preempting.consider(reply, snap)
                self.queues_changed()
            if snap.truncated and any(d.phase == "Bound" for d in reply.decisions):
                # max_jobs_per_cycle cut the queue: plan the rest now (bound jobs left the head).
                self.poke()
        self.cycles += 1
        metrics.CYCLE.observe(self.clock.monotonic() - started)

    def _members_settled(self, started: float, now: float) -> bool:
        """After a start, whether every member center's state is known: its objects listed into the cache,
        or a problem recorded (unreachable, refused credentials, ...). Until then the queue waits (at most
        2 x members.request_timeout_seconds): planning on a fleet whose members are not in yet would bind
        jobs to the next-best centers, as if the members were not there (a restarted hub did exactly that)."""
        if self._started is None:
            self._started = started
        grace = 2 * self.settings.members.request_timeout_seconds
        if started - self._started >= grace:
            return True
        cache = self.cache
        pending = [c for c in cache.centers if cache.cluster_of(c) and cache.member_state.awaited(c)]
        if pending:
            self.timer = min(self.timer, now + grace - (started - self._started))  # plan by the end of the grace
            LOG.debug("waiting for member clusters %s before planning", ", ".join(sorted(pending)))
        return not pending

    def _apply(self, d: decision_mod.Decision, now: float, snap: snapshot_mod.Snapshot) -> None:
        key = d.job.key
        record = self.cache.jobs.get(key)
        if record is None or self.writes.busy(key) or not self.cache.schedulable(record):
            return  # deleted, or bound meanwhile
        if record.demand is not self.cache.tenants.spec_demand(d.job):
            return  # its spec changed, or it was deleted and recreated, while it was planned: plan it again
        # The node of each replica, by completion index: its pod is pinned there (kube/gates.py).
        nodes = snapshot_mod.nodes_of(snap, d.allocation) if d.phase == "Bound" and d.allocation is not None else ()
        cluster = self.cache.cluster_of(d.binding.pool.center) if d.binding is not None else ""
        status = status_mod.decided(d, record.generation, now, nodes, cluster)
        if d.phase == "Bound":
            assert d.binding is not None
            c = d.binding
            self.cache.assume(
                key,
                records.Binding(
                    center=c.pool.center,
                    pool=c.pool.pool,
                    accelerator_type=c.pool.accelerator_type,
                    replicas=d.job.replicas,
                    count=d.job.count,
                    energy_kwh=c.estimates.energy_kwh,
                    carbon_kg=c.estimates.carbon_kg,
                    bound_epoch=now,
                    nodes=nodes,
                    attempt=record.attempts,
                    cluster=cluster,
                    queue=d.job.queue or "",
                ),
            )
            self.writes.start(key)
            self.spawn(self.binder.bind(record, status, now))
            return
        if status_mod.waiting_changed(record.status, status):
            self.writes.start(key)
            self.spawn(self.binder.write_waiting(record, status, d))

    def publish(self, snap: snapshot_mod.Snapshot) -> None:
        counts = dict.fromkeys(status_api.PHASES, 0)
        for phase, n in self.cache.phase_counts().items():
            counts[phase if phase in counts else "Pending"] += n
        for phase, n in counts.items():
            metrics.JOBS.labels(phase=phase).set(n)
        metrics.QUEUE_LENGTH.set(len(snap.queue) + snap.truncated + snap.set_aside)
        metrics.QUEUE_SET_ASIDE.set(snap.set_aside)
        oldest = self.cache.oldest_queued()
        metrics.JOB_QUEUED_SECONDS.set(max(0.0, snap.now - oldest) if oldest is not None else 0.0)
        self.center_gauges.publish(self.cache.centers, snap)

    # --- kept for the loops in run.py -----------------------------------------------------

    async def run_jobs(self) -> None:
        await self.lifecycle.run()

    async def run_centers(self) -> None:
        await self.center_status.run()

    async def run_queues(self) -> None:
        await self.queue_status.run()

