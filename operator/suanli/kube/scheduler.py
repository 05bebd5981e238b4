"""The scheduler: one asyncio task, not a handler (DESIGN.md "The control loop").

It sleeps until woken (a job queued, capacity freed, a center or node changed, a deferred
start or a budget-period boundary reached, or the slow safety resync), coalesces wake-ups,
takes a snapshot of the cache, plans the queue with the pure core in a worker thread, records
each Bound decision in the cache first ("assumed") and writes it in the background: status
first, then the batch Job. A failed write undoes the assumption, puts the job back in the
queue and posts a Warning event, except when the job's namespace is being deleted: then the job
is left as it is (it goes with its namespace) instead of being bound again and again. Binding
writes run on the API client's binding pool, ahead of progress patches and Events (and there, new
bindings ahead of the batch Jobs of earlier ones). Two small
companions keep status current: one for jobs whose workload moved (Running, Succeeded, Failed),
one for ComputeCenter status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from typing import Any

from suanli import clock as clock_mod
from suanli import metrics
from suanli import settings as settings_mod
from suanli.api import status as status_api
from suanli.kube import cache as cache_mod
from suanli.kube import client as client_mod
from suanli.kube import status as status_mod
from suanli.kube import workloads
from suanli.measure import energy_meter
from suanli.placement import decision as decision_mod
from suanli.placement import planner

LOG = logging.getLogger("suanli.scheduler")
Key = cache_mod.Key


class Scheduler:
    def __init__(
        self,
        cache: cache_mod.Cache,
        api: client_mod.Api,
        settings: settings_mod.Settings,
        clock: clock_mod.Clock,
    ):
        if isinstance(clock, clock_mod.SystemClock):
            clock = clock_mod.from_environment(clock)  # test-only offset clock (see clock.py)
        self.cache, self.api, self.settings, self.clock = cache, api, settings, clock
        self.wake = asyncio.Event()
        self.jobs_dirty: set[Key] = set()
        self.jobs_event = asyncio.Event()
        self.centers_event = asyncio.Event()
        self.timer = math.inf  # next deferred start or budget boundary (epoch)
        self.writing: set[Key] = set()  # jobs with a write in flight
        self.abandoned: dict[Key, str] = {}  # job -> uid: its namespace is going away, no workload is created
        self.failures: dict[Key, int] = {}  # jobs whose writes failed: how many times in a row
        self.held: set[Key] = set()  # jobs whose binding failed: not planned again until their retry is due
        self.tasks: set[asyncio.Task[Any]] = set()
        self.cycles = 0

    # --- wake-ups (called by handlers) ----------------------------------------------------

    def poke(self) -> None:
        self.wake.set()

    def job_changed(self, key: Key) -> None:
        self.jobs_dirty.add(key)
        self.jobs_event.set()

    def center_changed(self) -> None:
        self.centers_event.set()

    def _failed(self, key: Key, retry: Callable[[], None]) -> float:
        """A write for job `key` failed: `retry` runs after a backoff that doubles with each failure in a
        row (operator.retry_seconds up to operator.retry_max_seconds), never at once: an API server that
        is down or overloaded gets no write storm from us. Returns the delay."""
        n = self.failures.get(key, 0) + 1
        self.failures[key] = n
        op = self.settings.operator
        delay: float = min(op.retry_max_seconds, op.retry_seconds * 2 ** min(n - 1, 30))
        asyncio.get_running_loop().call_later(delay, retry)
        return delay

    def _hold(self, key: Key) -> float:
        """A binding of job `key` could not be written (or its Job created): leave it out of planning until
        its retry is due, then plan it again. Returns the delay."""
        self.held.add(key)

        def release() -> None:
            self.held.discard(key)
            self.poke()

        return self._failed(key, release)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- the loop -------------------------------------------------------------------------

    def clock_jumped(self) -> None:
        """The (test) clock moved: budget periods and deferred starts are re-evaluated at once."""
        self.poke()
        self.center_changed()

    async def run(self) -> None:
        op = self.settings.operator
        if isinstance(self.clock, clock_mod.OffsetFileClock):
            self._spawn(self.clock.watch(self.clock_jumped))
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

    async def cycle(self) -> None:
        started = self.clock.monotonic()
        now = self.clock.now()
        snap = self.cache.snapshot(now)
        self._publish(snap)
        for key, field, message in snap.invalid:
            if key not in self.writing:
                self._spawn(self._mark_invalid(key, field, message, now))
        self.timer = snap.energy.next_boundary()
        for key, uid in list(self.abandoned.items()):
            record = self.cache.jobs.get(key)
            if record is None or record.uid != uid:
                del self.abandoned[key]  # deleted (a namespace of that name may be back)
        for key in [k for k in self.failures if k not in self.cache.jobs]:
            del self.failures[key]  # deleted while its retry was pending
        queue = [j for j in snap.queue if j.key not in self.held] if self.held else snap.queue
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
            )
            reply = await asyncio.to_thread(planner.plan, request)
            for d in reply.decisions:
                if d.phase == "Deferred" and d.planned_start is not None and d.planned_start > now:
                    # Wake at the planned start (even when this job's status write is still in flight).
                    self.timer = min(self.timer, d.planned_start)
                self._apply(d, now)
            if snap.truncated and any(d.phase == "Bound" for d in reply.decisions):
                # max_jobs_per_cycle cut the queue: plan the rest now (bound jobs left the head).
                self.poke()
        self.cycles += 1
        metrics.CYCLE.observe(self.clock.monotonic() - started)

    def _apply(self, d: decision_mod.Decision, now: float) -> None:
        key = d.job.key
        record = self.cache.jobs.get(key)
        if record is None or key in self.writing or not self.cache.schedulable(record):
            return  # deleted, or bound meanwhile
        status = status_mod.decided(d, record.generation, now)
        if d.phase == "Bound":
            assert d.binding is not None
            c = d.binding
            self.cache.assume(
                key,
                cache_mod.Binding(
                    center=c.pool.center,
                    pool=c.pool.pool,
                    accelerator_type=c.pool.accelerator_type,
                    replicas=d.job.replicas,
                    count=d.job.count,
                    energy_kwh=c.estimates.energy_kwh,
                    carbon_kg=c.estimates.carbon_kg,
                    bound_epoch=now,
                ),
            )
            self.writing.add(key)
            self._spawn(self._bind(record, status, now))
            return
        if status_mod.waiting_changed(record.status, status):
            self.writing.add(key)
            self._spawn(self._write_waiting(record, status, d))

    def _publish(self, snap: cache_mod.Snapshot) -> None:
        counts = dict.fromkeys(status_api.PHASES, 0)
        for phase, n in self.cache.phase_counts().items():
            counts[phase if phase in counts else "Pending"] += n
        for phase, n in counts.items():
            metrics.JOBS.labels(phase=phase).set(n)
        metrics.QUEUE_LENGTH.set(len(snap.queue) + snap.truncated)
        oldest = self.cache.oldest_queued()
        metrics.JOB_QUEUED_SECONDS.set(max(0.0, snap.now - oldest) if oldest is not None else 0.0)
        for u in snap.usage:
            for state, value in (("capacity", u.capacity), ("allocated", u.allocated), ("free", u.free)):
                metrics.POOL_ACCELERATORS.labels(center=u.center, pool=u.pool, state=state).set(value)
        for account in snap.energy.accounts():
            metrics.CENTER_ENERGY.labels(center=account.name, kind="used").set(account.used_kwh)
            metrics.CENTER_ENERGY.labels(center=account.name, kind="reserved").set(account.reserved_kwh)
            remaining = account.remaining_kwh
            if math.isfinite(remaining):
                metrics.CENTER_ENERGY.labels(center=account.name, kind="remaining").set(remaining)

    # --- writes ---------------------------------------------------------------------------

    def _ref(self, record: cache_mod.JobRecord) -> tuple[str, str, str, str]:
        return ("ComputeJob", record.key[0], record.key[1], record.uid)

    async def _write_waiting(self, record: cache_mod.JobRecord, status: dict[str, Any], d: decision_mod.Decision) -> None:
        try:
            await self.api.run(self.api.patch_job_status, record.key[0], record.key[1], status, answer=False)
            if record.phase != d.phase:
                reason = "Deferred" if d.phase == "Deferred" else "Waiting"
                await self.api.run(self.api.event, self._ref(record), reason, d.message, False, self.clock.now())
        except Exception as exc:
            LOG.warning("could not write the %s status of %s/%s: %s", d.phase, *record.key, _short(exc))
        finally:
            self.writing.discard(record.key)

    async def _mark_invalid(self, key: Key, field: str, message: str, now: float) -> None:
        record = self.cache.jobs.get(key)
        if record is None:
            return
        self.writing.add(key)
        try:
            await self.api.run(
                self.api.patch_job_status, key[0], key[1], status_mod.invalid(field, message, record.generation, now), answer=False
            )
            await self.api.run(self.api.event, self._ref(record), "Invalid", f"{field}: {message}", True, now)
        except Exception as exc:
            LOG.warning("could not mark %s/%s Invalid: %s", *key, _short(exc))
        finally:
            self.writing.discard(key)

    async def _bind(self, record: cache_mod.JobRecord, status: dict[str, Any], now: float) -> None:
        key = record.key
        ticket = self.api.ticket()
        try:
            try:
                await self.api.run_binding(ticket, self.api.patch_job_status, key[0], key[1], status, answer=False)
            except Exception as exc:
                self.cache.forget(key)
                delay = self._hold(key)
                message = f"could not record the binding ({_short(exc)}); the job goes back to the queue in {delay:g}s"
                LOG.warning("%s/%s: %s", *key, message)
                self._spawn(self.api.run(self.api.event, self._ref(record), "BindFailed", message, True, now))
                self.poke()  # the capacity it held is free for the others now
                return
            self.failures.pop(key, None)
            metrics.BINDS.inc()
            metrics.BIND_LATENCY.observe(max(0.0, self.clock.now() - record.created))
            self._spawn(self.api.run(self.api.event, self._ref(record), "Bound", status["message"], False, now))
            await self.ensure_workload(record, ticket)
        finally:
            self.writing.discard(key)

    async def ensure_workload(self, record: cache_mod.JobRecord, ticket: int | None = None) -> bool:
        """Create (or adopt) the batch Job of a bound job; on failure unbind and requeue. `ticket`:
        the binding's place in the binding pool's line (a new one for a Job found missing)."""
        key = record.key
        ticket = self.api.ticket() if ticket is None else ticket
        binding = self.cache.binding(record)
        if binding is None or record.demand is None or self.abandoned.get(key) == record.uid:
            return False
        try:
            spec_pool = self.cache.pool_spec(binding.center, binding.pool)
            manifest = workloads.build_job(
                record.raw,
                center=binding.center,
                pool=binding.pool,
                accelerator_type=binding.accelerator_type,
                resource_name=spec_pool.resource_name,
                node_selector=dict(spec_pool.node_selector),
                tolerations=[t.to_wire() for t in spec_pool.tolerations],
            )
            job, created = await self.api.run_binding(ticket, self.api.create_or_adopt_job, manifest, record.uid)
            self.cache.upsert_workload(job)  # seen now: no second create before the watch catches up
            if not created:
                LOG.info("%s/%s: adopted the existing Job %s", *key, manifest["metadata"]["name"])
            return True
        except Exception as exc:
            if client_mod.namespace_gone(exc):
                # Its namespace is being deleted (or gone): the ComputeJob goes with it. Requeueing would
                # bind it again and fail again, a write storm; leave it bound, without a workload.
                self.abandoned[key] = record.uid
                LOG.info(
                    "%s/%s: namespace %s is being deleted (%s); not creating the workload and not requeueing "
                    "the job: it is deleted with its namespace",
                    *key,
                    key[0],
                    _short(exc),
                )
                return False
            delay = self._hold(key)
            message = (
                f"could not create the workload on {binding.center}/{binding.pool} ({_short(exc)}); "
                f"the job goes back to the queue in {delay:g}s"
            )
            LOG.warning("%s/%s: %s", *key, message)
            try:
                await self.api.run_binding(
                    ticket,
                    self.api.patch_job_status, key[0], key[1], status_mod.unbound(message, record.generation), answer=False
                )
            except Exception as inner:
                LOG.warning("%s/%s: could not requeue: %s", *key, _short(inner))
            self.cache.forget(key)
            self._spawn(self.api.run(self.api.event, self._ref(record), "WorkloadFailed", message, True))
            self.poke()  # the capacity it held is free for the others now
            return False

    # --- job progress (Running, Succeeded, Failed) -----------------------------------------

    async def run_jobs(self) -> None:
        while True:
            await self.jobs_event.wait()
            await asyncio.sleep(0.05)
            self.jobs_event.clear()
            dirty, self.jobs_dirty = self.jobs_dirty, set()
            for key in sorted(dirty):
                try:
                    self._progress(key)
                except Exception:
                    LOG.exception("could not update the status of %s/%s", *key)

    def _progress(self, key: Key) -> None:
        record = self.cache.jobs.get(key)
        if record is None or key in self.writing or self.abandoned.get(key) == record.uid:
            return
        binding = self.cache.binding(record)
        if binding is None or record.phase not in cache_mod.BOUND_PHASES:
            return
        workload = self.cache.workload_of(record)
        if workload is None and record.phase == "Bound" and key not in self.cache.assumed:
            # Bound in its status but no Job seen (a restart between the two writes): create or adopt it.
            self.writing.add(key)
            self._spawn(self._ensure_then_release(record))
            return
        try:
            info = self.cache.centers[binding.center]
            pool_info = self.cache.fleet().pools[self.cache.fleet().pool_index(binding.center, binding.pool) or 0]
            power, pue = pool_info.power_watts, info.spec.energy.pue
        except (KeyError, IndexError):
            power, pue = 0.0, 1.0
        pods = self.cache.job_pods(record)
        if workload is not None and workload.finished and self.settings.measured_energy.prometheus_url:
            self.writing.add(key)
            self._spawn(self._settle_measured(record, binding, workload, pods, power, pue))
            return
        change = status_mod.progress(record, binding, workload, pods, power, pue, self.clock.now())
        if change is None:
            return
        patch, reason, message, warning = change
        self.writing.add(key)
        self._spawn(self._write_progress(record, patch, reason, message, warning))

    async def _settle_measured(
        self,
        record: cache_mod.JobRecord,
        binding: cache_mod.Binding,
        workload: Any,
        pods: list[Any],
        power: float,
        pue: float,
    ) -> None:
        """A finished job with measured energy on: ask Prometheus in a worker thread (the meter blocks
        for at most its query timeouts and never raises), then settle measured x PUE, or the runtime
        estimate with the reason logged by the meter. The reservation holds until the status is written."""
        key = record.key
        handed_off = False
        try:
            now = self.clock.now()
            estimate = status_mod.progress(record, binding, workload, pods, power, pue, now)
            if estimate is None:
                return
            start, end = status_mod.finished_window(binding, workload, now)
            estimated_kwh = status_mod.settled_energy(binding, end - start, power, pue)[0]
            run = energy_meter.JobRun(
                namespace=key[0],
                pods=tuple(p.key[1] for p in pods),
                start=start,
                end=end,
                accelerator_type=binding.accelerator_type,
                accelerators=binding.replicas * binding.count,
                nodes=tuple(sorted({p.node for p in pods if p.node})),
            )
            try:
                measurement = await asyncio.to_thread(energy_meter.measure, self.settings.measured_energy, run)
            except Exception as exc:  # the meter does not raise; a bug must still not lose the settlement
                LOG.warning("%s/%s: measuring energy failed (%s); settling the estimate", *key, _short(exc))
                measurement = None
            settlement = energy_meter.settlement(measurement, estimated_kwh, pue)
            LOG.info("%s/%s: settled %.6f kWh (%s: %s)", *key, settlement.kwh, settlement.source, settlement.detail)
            change = status_mod.progress(
                record, binding, workload, pods, power, pue, self.clock.now(), (settlement.kwh, settlement.source)
            )
            if change is None:
                return
            patch, reason, message, warning = change
            handed_off = True  # _write_progress releases `writing`
            await self._write_progress(record, patch, reason, message, warning)
        finally:
            if not handed_off:
                self.writing.discard(key)

    async def _ensure_then_release(self, record: cache_mod.JobRecord) -> None:
        try:
            await self.ensure_workload(record)
        finally:
            self.writing.discard(record.key)

    async def _write_progress(
        self, record: cache_mod.JobRecord, patch: dict[str, Any], reason: str, message: str, warning: bool
    ) -> None:
        key = record.key
        try:
            result = await self.api.run(self.api.patch_job_status, key[0], key[1], patch)
        except Exception as exc:
            self.writing.discard(key)
            delay = self._failed(key, lambda: self.job_changed(key))
            LOG.warning("could not write %s for %s/%s (retrying in %gs): %s", reason, *key, delay, _short(exc))
            return
        self.failures.pop(key, None)
        try:
            if result is not None:
                self.cache.upsert_job(result, record.created)
            await self.api.run(self.api.event, self._ref(record), reason, message, warning, self.clock.now())
            if reason in ("Succeeded", "Failed"):
                self.poke()  # capacity and energy changed
                self.center_changed()  # reserved -> used in the center's energy status
        except Exception:
            LOG.exception("%s/%s: %s was written, but recording it failed", *key, reason)
        finally:
            self.writing.discard(key)
            self.job_changed(key)  # re-check: more may have happened meanwhile

    # --- ComputeCenter status -------------------------------------------------------------

    async def run_centers(self) -> None:
        op = self.settings.operator
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.centers_event.wait(), timeout=op.resync_seconds)
            await asyncio.sleep(op.status_coalesce_seconds)
            self.centers_event.clear()
            try:
                await self._write_centers()
            except Exception:
                LOG.exception("could not update ComputeCenter status")

    async def _write_centers(self) -> None:
        now = self.clock.now()
        snap = self.cache.snapshot(now)
        self._publish(snap)
        by_center = self.cache.usage_by_center(snap)
        accounts = {a.name: a for a in snap.energy.accounts()}
        for name in sorted(set(self.cache.center_raw)):
            raw = self.cache.center_raw[name]
            meta = raw.get("metadata") or {}
            problem = self.cache.center_errors.get(name)
            center = self.cache.centers.get(name)
            if problem is None and center is not None and center.spec.cluster is not None:
                problem = cache_mod.UNSUPPORTED_MEMBER
            current = dict(raw.get("status") or {})
            new = status_mod.center(
                name, meta.get("generation"), by_center.get(name, []), accounts.get(name), problem, current, now
            )
            if not status_mod.center_changed(current, new):
                continue
            try:
                await self.api.run(self.api.patch_center_status, name, new)
                raw["status"] = new
            except Exception as exc:
                LOG.warning("could not update the status of ComputeCenter %s: %s", name, _short(exc))


def _short(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    status = getattr(exc, "status", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return str(exc)[:300]
