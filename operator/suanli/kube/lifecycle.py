"""A bound job's life after its binding: its workload created when missing, Running, Succeeded or
Failed written as the batch Job and its pods move, and the energy it used settled.

One loop (`run`), woken with the keys of jobs whose pods, workload or status changed; at most one
write chain per job in flight (`workqueue.WorkQueue`), the latest status computed when the
previous write finished; a failed write is retried after a backoff.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from suanli import logs, metrics
from suanli import settings as settings_mod
from suanli.kube import attempt_end, attempts, errors, gates, records
from suanli.kube import client as client_mod
from suanli.kube import objects as kobj
from suanli.kube import status as status_mod
from suanli.measure import energy_meter

if TYPE_CHECKING:
    from suanli.kube import scheduler as scheduler_mod

SUSPENDED, RETRIED = attempt_end.SUSPENDED, attempt_end.RETRIED
# Phases in which spec.suspend has nothing (more) to do: already suspended, finished, or never valid.
SUSPEND_DONE = records.DONE_PHASES | {SUSPENDED, "Invalid"}
STOP_CHECK_SECONDS = 2.0  # how often a requeue waiting for its attempt's pods to stop looks again
LOG = logging.getLogger("suanli.scheduler.lifecycle")
Key = records.Key


class Lifecycle:
    def __init__(self, ctx: scheduler_mod.Scheduler):
        self.ctx = ctx
        # job -> (uid, attempt, the requeue verdict): why its attempt is ending, kept until the requeue is written
        self.ending: dict[Key, tuple[str, int, attempts.Verdict]] = {}
        self.waiting_noted: dict[Key, str] = {}  # job -> the pods its requeue waits for, as last logged
        self.remade: dict[Key, tuple[str, int]] = {}  # job -> (uid, attempt) whose podless Job was made again

    def preempt(self, record: records.JobRecord, reason: str) -> bool:
        """End the job's bound attempt because a job of higher standing needs its accelerators or quota
        (kube/preempting.py): as any ended attempt (its Job and pods deleted, back in the queue, counted),
        with a Preempted condition and Event. False if it is not running an attempt now."""
        binding = self.ctx.cache.binding(record)
        if binding is None or record.phase not in records.BOUND_PHASES or record.key in self.ending:
            return False
        self.ending[record.key] = (record.uid, binding.attempt, attempts.Verdict("requeue", reason, "Preempted"))
        self.ctx.job_changed(record.key)
        return True

    def forget(self, key: Key) -> None:
        """The job is gone (or another of its name): nothing of its ending attempt is kept."""
        self.ending.pop(key, None)
        self.waiting_noted.pop(key, None)
        self.remade.pop(key, None)

    async def run(self) -> None:
        ctx = self.ctx
        while True:
            await ctx.jobs_event.wait()
            await asyncio.sleep(0.05)
            ctx.jobs_event.clear()
            dirty, ctx.jobs_dirty = ctx.jobs_dirty, set()
            for key in sorted(dirty):
                try:
                    self.progress(key)
                except Exception:
                    LOG.exception("could not update the status of %s/%s", *key, extra=logs.about(key))

    def progress(self, key: Key) -> None:
        ctx = self.ctx
        record = ctx.cache.jobs.get(key)
        if record is None or ctx.writes.busy(key) or ctx.abandoned.get(key) == record.uid:
            return
        binding = ctx.cache.binding(record)
        if record.suspended and binding is None and record.phase not in SUSPEND_DONE and not record.deleting:
            ctx.writes.start(key)  # a waiting job: nothing to stop, only its phase to write
            patch = attempt_end.suspended(record.generation, ctx.clock.now())
            ctx.spawn(self._write_progress(record, patch, SUSPENDED, patch["message"], False))
            return
        if binding is None or record.phase not in records.BOUND_PHASES:
            return
        cluster = binding.cluster
        if cluster and not ctx.cache.member_state.known(cluster):
            return  # its member's Jobs and pods are not in the cache yet: nothing can be judged missing
        now = ctx.clock.now()
        workload = ctx.cache.workload_of(record)
        pods = ctx.cache.current_pods(record, binding)
        ending = self.ending.get(key)
        if ending is not None and ending[:2] != (record.uid, binding.attempt):
            ending = None  # another ComputeJob of the name, or a later attempt
        if ending is None and record.suspended:
            ending = (record.uid, binding.attempt, attempts.Verdict("requeue", "suspended by spec.suspend", SUSPENDED))
        verdict = ending[2] if ending is not None else attempts.assess(
            phase=record.phase,
            binding=binding,
            workload=workload,
            pods=pods,
            lost=ctx.cache.lost_replica(record, binding),
            assumed=key in ctx.cache.assumed,
            now=now,
            pods_ready_timeout=ctx.settings.operator.pods_ready_timeout_seconds,
            stranded=gates.stranded(ctx.cache, record, pods) if record.phase == "Bound" else None,
            member_lost=self._member_lost(binding),
            remake_after=None if self.remade.get(key) == (record.uid, binding.attempt)
            else ctx.settings.operator.workload_pods_timeout_seconds,
            retry=record.retry_policy,
            retries=record.retries,
        )
        if record.deleting and verdict.action in ("ensure", "requeue"):
            return  # being deleted: nothing is made for it again, and its Job goes with it
        if verdict.action == "ensure":
            # Bound in its status but no Job seen (a restart between the two writes): create or adopt it.
            ctx.writes.start(key)
            ctx.spawn(self._ensure_then_release(record))
            return
        if verdict.action == "requeue":
            # Ending this attempt takes until its pods have stopped; its first reason stands till then
            # (the Job's deletion would bring others, or an "ensure" that made it again).
            self.ending[key] = (record.uid, binding.attempt, verdict)
            ctx.writes.start(key)
            ctx.spawn(self._requeue(record, verdict.reason, verdict.code, verdict.exit_code))
            return
        if verdict.action == "remake":
            assert workload is not None
            self.remade[key] = (record.uid, binding.attempt)
            ctx.writes.start(key)
            ctx.spawn(self._remake(record, binding, workload, verdict.reason))
            return
        if verdict.action == "wait":
            assert verdict.at is not None
            ctx.writes.check_at(key, record.uid, verdict.at - now, lambda: ctx.job_changed(key))
            return
        power, pue, missing = self._figures(binding)
        if workload is not None and workload.finished and self._meter(binding).prometheus_url and not missing:
            ctx.writes.start(key)
            ctx.spawn(self._settle_measured(record, binding, workload, pods, power, pue))
            return
        settled = (binding.energy_kwh, "estimate", missing) if missing else None
        change = status_mod.progress(record, binding, workload, pods, power, pue, now, settled)
        if change is None:
            return
        patch, reason, message, warning = change
        ctx.writes.start(key)
        ctx.spawn(self._write_progress(record, patch, reason, message, warning))

    def _meter(self, binding: records.Binding) -> settings_mod.MeasuredEnergySettings:
        """The measured-energy settings for the job's cluster: a member center's own Prometheus
        (spec.cluster.prometheusUrl), else the operator's."""
        config = self.ctx.settings.measured_energy
        center = self.ctx.cache.centers.get(binding.center)
        url = center.spec.cluster.prometheus_url if center is not None and center.spec.cluster is not None else None
        return config.model_copy(update={"prometheus_url": url}) if url else config

    def _member_lost(self, binding: records.Binding) -> str | None:
        if not binding.cluster or binding.cluster not in self.ctx.cache.member_state.lost:
            return None
        return (f"member cluster {binding.cluster} has been unreachable for more than "
                f"{self.ctx.settings.members.lost_after_seconds:g}s (members.lost_after_seconds)")

    def _figures(self, binding: records.Binding) -> tuple[float, float, str | None]:
        """(board watts, PUE, None) of the job's own pool, or (0, 1, why) when that pool or its center is
        no longer in the fleet: then the job settles the estimate made when it was bound, with the
        reason in its status (never another pool's figures, never a silent 0 kWh)."""
        fleet = self.ctx.cache.fleet()
        index = fleet.pool_index(binding.center, binding.pool)
        center = self.ctx.cache.centers.get(binding.center)
        if index is None or center is None:
            return 0.0, 1.0, (
                f"pool {binding.center}/{binding.pool} is no longer in the fleet; "
                f"settled the estimate made when the job was bound"
            )
        return fleet.pools[index].power_watts, center.spec.energy.pue, None

    async def _requeue(self, record: records.JobRecord, reason: str, code: str = "AttemptEnded",
                       exit_code: int | None = None) -> None:
        """End the bound attempt: delete its Job (with its pods, foreground) and send the job back to the
        queue with a backoff, or fail it when it has used its operator.requeue_limit attempts. The
        status is written only after the Job is deleted, so a failed step is retried whole."""
        ctx = self.ctx
        key = record.key
        op = ctx.settings.operator
        try:
            binding = ctx.cache.binding(record)
            cluster = binding.cluster if binding is not None else ""
            workload = ctx.cache.workloads.get(ctx.cache.workload_slot(record, binding))
            # A lost member's Job is deleted there when it is back (suanli/members: superseded attempts).
            ours = workload is not None and not workload.deleting and workload.owner_uid in (None, record.uid)
            if workload is not None and ours and cluster not in ctx.cache.member_state.lost:
                api = ctx.clusters.api(cluster)
                await api.run(api.delete_job, workload.namespace, workload.key[1], workload.uid)
            running = await self._stop_pods(record)
            if running:
                # Not back in the queue while a replica of this attempt may still run: nothing runs twice.
                ctx.writes.done(key)
                ctx.writes.check_at(key, record.uid, STOP_CHECK_SECONDS, lambda: ctx.job_changed(key))
                self._note_waiting(record, running)
                return
            now = ctx.clock.now()
            ended = self._ended_attempts(record, binding, now, code)
            patch, event = attempt_end.ending(record, binding, reason, code, exit_code, ended, now, op)
            result = await ctx.api.run(ctx.api.patch_job_status, key[0], key[1], patch, uid=record.uid)
        except client_mod.Replaced:
            ctx.writes.done(key)
            return  # deleted (or recreated) meanwhile: its Job goes with it
        except Exception as exc:
            ctx.writes.done(key)
            delay = ctx.writes.failed(key, record.uid, lambda: ctx.job_changed(key))
            LOG.warning("%s/%s: could not requeue (%s); retrying in %gs: %s", *key, reason, delay, errors.short(exc), extra=logs.about(key))
            return
        ctx.writes.succeeded(key)
        self.ending.pop(key, None)
        self.waiting_noted.pop(key, None)
        metrics.REQUEUES.labels(outcome=event).inc()
        LOG.info("%s/%s: %s", *key, patch["message"], extra=logs.about(key))
        try:
            if result is not None:
                ctx.cache.upsert_job(result, record.created)
            await ctx.api.run(ctx.api.event, ctx.ref(record), event, patch["message"], event not in (SUSPENDED, RETRIED),
                              ctx.clock.now())
        finally:
            ctx.writes.done(key)
            ctx.poke()  # its accelerators are free, and it may be planned again after its backoff
            ctx.center_changed()

    async def _remake(self, record: records.JobRecord, binding: records.Binding, workload: Any, reason: str) -> None:
        """Delete a batch Job the Job controller made no pod for; the job keeps its binding, and its Job is
        made again once this one is gone (the "ensure" step). Once per attempt: a second podless Job
        waits for the pods-ready timeout like any gang that does not start."""
        ctx = self.ctx
        key = record.key
        message = (f"{reason}; deleted it, a new one is made once it is gone (the Job controller can hold back "
                   f"the pods of a Job it takes for an earlier one of the same name)")
        try:
            api = ctx.clusters.api(binding.cluster)
            await api.run(api.delete_job, workload.namespace, workload.key[1], workload.uid)
        except Exception as exc:
            self.remade.pop(key, None)  # looked at again after the backoff
            delay = ctx.writes.failed(key, record.uid, lambda: ctx.job_changed(key))
            LOG.warning("%s/%s: could not delete its podless Job (%s); retrying in %gs", *key, errors.short(exc), delay, extra=logs.about(key))
            ctx.writes.done(key)
            return
        LOG.warning("%s/%s: %s", *key, message, extra=logs.about(key))
        try:
            await ctx.api.run(ctx.api.event, ctx.ref(record), "WorkloadRemade", message, True, ctx.clock.now())
        finally:
            ctx.writes.done(key)
            ctx.job_changed(key)

    def _ended_attempts(self, record: records.JobRecord, binding: records.Binding | None, now: float,
                        code: str) -> list[dict[str, Any]]:
        """status.endedAttempts with the attempt ending now, at its own pool's figures (`attempt_end.used`)."""
        figures = self._figures(binding) if binding is not None else (0.0, 1.0, None)
        return attempt_end.with_used(record, binding, figures, now, code)

    async def _stop_pods(self, record: records.JobRecord) -> list[str]:
        """Delete the pods of the job's bound attempt that are still up (the Job's foreground deletion
        does too, but the garbage collector may be slow, or the Job gone without them); returns those
        that may still run: on a node, not finished, and not being deleted from a node that is gone or
        not Ready (where nothing can run them, and only the pod garbage collector removes them)."""
        ctx = self.ctx
        binding = ctx.cache.binding(record)
        if binding is None or binding.cluster in ctx.cache.member_state.lost:
            return []  # a lost member's pods are beyond reach: its sweep deletes their Job when it is back
        api = ctx.clusters.api(binding.cluster)
        running = []
        for pod in ctx.cache.current_pods(record, binding):
            if pod.terminated:
                continue
            if not pod.deleting:
                await api.run(api.delete_pod, pod.namespace, pod.key[1], pod.uid)
            node = ctx.cache.nodes.get(pod.node) if pod.node is not None else None
            if node is not None and node.ready:  # never on a node, or its node gone or dead: it runs nowhere
                running.append(pod.key[1])
        return running

    def _note_waiting(self, record: records.JobRecord, running: list[str]) -> None:
        """Log once per job (and again when the set changes) that its requeue waits for its pods."""
        text = ", ".join(sorted(running))
        if self.waiting_noted.get(record.key) != text:
            self.waiting_noted[record.key] = text
            LOG.info("%s/%s: back to the queue once its pods of attempt %d have stopped (%s)", *record.key,
                     record.attempts, text, extra=logs.about(record.key))

    async def _settle_measured(
        self,
        record: records.JobRecord,
        binding: records.Binding,
        workload: Any,
        pods: list[Any],
        power: float,
        pue: float,
    ) -> None:
        """A finished job with measured energy on: ask Prometheus in a worker thread (the meter blocks
        for at most its query timeouts and never raises), then settle measured x PUE, or the runtime
        estimate with the reason logged by the meter. The reservation holds until the status is written."""
        ctx = self.ctx
        key = record.key
        handed_off = False
        try:
            now = ctx.clock.now()
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
                nodes=tuple(sorted({kobj.local_name(p.node) for p in pods if p.node})),  # as its exporters name them
            )
            try:
                measurement = await asyncio.to_thread(energy_meter.measure, self._meter(binding), run)
            except Exception as exc:  # the meter does not raise; a bug must still not lose the settlement
                LOG.warning("%s/%s: measuring energy failed (%s); settling the estimate", *key, errors.short(exc), extra=logs.about(key))
                measurement = None
            settlement = energy_meter.settlement(measurement, estimated_kwh, pue)
            LOG.info("%s/%s: settled %.6f kWh (%s: %s)", *key, settlement.kwh, settlement.source, settlement.detail, extra=logs.about(key))
            change = status_mod.progress(
                record, binding, workload, pods, power, pue, ctx.clock.now(), (settlement.kwh, settlement.source, None)
            )
            if change is None:
                return
            patch, reason, message, warning = change
            handed_off = True  # _write_progress releases the job's write slot
            await self._write_progress(record, patch, reason, message, warning)
        finally:
            if not handed_off:
                ctx.writes.done(key)

    async def _ensure_then_release(self, record: records.JobRecord) -> None:
        try:
            await self.ctx.binder.ensure_workload(record)
        finally:
            self.ctx.writes.done(record.key)

    async def _write_progress(
        self, record: records.JobRecord, patch: dict[str, Any], reason: str, message: str, warning: bool
    ) -> None:
        ctx = self.ctx
        key = record.key
        try:
            result = await ctx.api.run(ctx.api.patch_job_status, key[0], key[1], patch, uid=record.uid,
                                       whole=not record.status)
        except client_mod.Replaced:
            ctx.writes.done(key)
            return  # deleted (or recreated) meanwhile: nothing of this job is left to report
        except Exception as exc:
            ctx.writes.done(key)
            delay = ctx.writes.failed(key, record.uid, lambda: ctx.job_changed(key))
            LOG.warning("could not write %s for %s/%s (retrying in %gs): %s", reason, *key, delay, errors.short(exc), extra=logs.about(key))
            return
        ctx.writes.succeeded(key)
        try:
            if result is not None:
                ctx.cache.upsert_job(result, record.created)
            await ctx.api.run(ctx.api.event, ctx.ref(record), reason, message, warning, ctx.clock.now())
            if reason in ("Succeeded", "Failed"):
                ctx.poke()  # capacity and energy changed
                ctx.center_changed()  # reserved -> used in the center's energy status
        except Exception:
            LOG.exception("%s/%s: %s was written, but recording it failed", *key, reason, extra=logs.about(key))
        finally:
            ctx.writes.done(key)
            ctx.job_changed(key)  # re-check: more may have happened meanwhile
