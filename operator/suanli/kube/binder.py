"""Writing the scheduler's decisions: a binding (status, then the batch Job), a waiting job's
Queued/Deferred status, an invalid spec. Each runs in the background as one chain per job.

A failed binding write undoes the assumption, keeps the job out of planning until its retry is
due (`workqueue.WorkQueue.hold`) and posts a Warning Event, except when the job's namespace is
being deleted: then the job is left as it is (it goes with its namespace) instead of being bound
again and again. Binding writes run on the API client's binding pool, ahead of progress patches
and Events (and there, new bindings ahead of the batch Jobs of earlier ones).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from suanli import logs, metrics
from suanli.kube import client as client_mod
from suanli.kube import errors, records, workloads
from suanli.kube import status as status_mod
from suanli.placement import decision as decision_mod

if TYPE_CHECKING:
    from suanli.kube import scheduler as scheduler_mod

LOG = logging.getLogger("suanli.scheduler.binder")
Key = records.Key


class Binder:
    def __init__(self, ctx: scheduler_mod.Scheduler):
        self.ctx = ctx

    async def write_waiting(self, record: records.JobRecord, status: dict[str, Any], d: decision_mod.Decision) -> None:
        ctx = self.ctx
        try:
            await ctx.api.run(
                ctx.api.patch_job_status, record.key[0], record.key[1], status,
                answer=False, uid=record.uid, whole=not record.status,
            )
            if record.phase != d.phase:
                reason = "Deferred" if d.phase == "Deferred" else "Waiting"
                await ctx.api.run(ctx.api.event, ctx.ref(record), reason, d.message, False, ctx.clock.now())
        except client_mod.Replaced:
            pass  # deleted or recreated meanwhile: the decision was for a job that is gone
        except Exception as exc:
            LOG.warning("could not write the %s status of %s/%s: %s", d.phase, *record.key, errors.short(exc), extra=logs.about(record.key))
        finally:
            ctx.writes.done(record.key)

    async def mark_invalid(self, key: Key, field: str, message: str, now: float) -> None:
        ctx = self.ctx
        record = ctx.cache.jobs.get(key)
        if record is None:
            return
        ctx.writes.start(key)
        try:
            await ctx.api.run(
                ctx.api.patch_job_status, key[0], key[1], status_mod.invalid(field, message, record.generation, now),
                answer=False, uid=record.uid, whole=not record.status,
            )
            await ctx.api.run(ctx.api.event, ctx.ref(record), "Invalid", f"{field}: {message}", True, now)
        except client_mod.Replaced:
            pass  # deleted or recreated meanwhile
        except Exception as exc:
            LOG.warning("could not mark %s/%s Invalid: %s", *key, errors.short(exc), extra=logs.about(key))
        finally:
            ctx.writes.done(key)

    def _hold(self, record: records.JobRecord) -> float:
        return self.ctx.writes.hold(record.key, record.uid, self.ctx.poke)

    async def bind(self, record: records.JobRecord, status: dict[str, Any], now: float) -> None:
        ctx = self.ctx
        key = record.key
        ticket = ctx.api.ticket()
        try:
            try:
                await ctx.api.run_binding(
                    ticket, ctx.api.patch_job_status, key[0], key[1], status,
                    answer=False, uid=record.uid, whole=not record.status,
                )
            except client_mod.Replaced:
                ctx.cache.forget(key)  # deleted, or recreated under its name: the decision was for a job that is gone
                ctx.poke()
                return
            except Exception as exc:
                ctx.cache.forget(key)
                delay = self._hold(record)
                message = f"could not record the binding ({errors.short(exc)}); the job goes back to the queue in {delay:g}s"
                LOG.warning("%s/%s: %s", *key, message, extra=logs.about(key))
                ctx.spawn(ctx.api.run(ctx.api.event, ctx.ref(record), "BindFailed", message, True, now))
                ctx.poke()  # the capacity it held is free for the others now
                return
            ctx.writes.succeeded(key)
            metrics.BINDS.inc()
            metrics.BIND_LATENCY.observe(max(0.0, ctx.clock.now() - record.created))
            ctx.spawn(ctx.api.run(ctx.api.event, ctx.ref(record), "Bound", status["message"], False, now))
            await self.ensure_workload(record, ticket)
        finally:
            ctx.writes.done(key)

    async def ensure_workload(self, record: records.JobRecord, ticket: int | None = None) -> bool:
        """Create (or adopt) the batch Job of a bound job; on failure unbind and requeue. `ticket`:
        the binding's place in the binding pool's line (a new one for a Job found missing)."""
        ctx = self.ctx
        key = record.key
        ticket = ctx.api.ticket() if ticket is None else ticket
        binding = ctx.cache.binding(record)
        if binding is None or record.demand is None or record.deleting or ctx.abandoned.get(key) == record.uid:
            return False
        member = binding.cluster
        try:
            api = ctx.clusters.api(member)  # Unavailable: a member that cannot be reached now
            spec_pool = ctx.cache.pool_spec(binding.center, binding.pool)
            manifest = workloads.build_job(
                record.raw,
                center=binding.center,
                pool=binding.pool,
                accelerator_type=binding.accelerator_type,
                resource_name=spec_pool.resource_name or "",
                device_class_name=spec_pool.device_class_name or "",
                accelerator_model=spec_pool.model,
                node_selector=dict(spec_pool.node_selector),
                tolerations=[t.to_wire() for t in spec_pool.tolerations],
                attempt=binding.attempt,
                hub=ctx.settings.members.hub_name if member else None,
            )
            claim = (workloads.device_request(spec_pool.device_class_name,
                                              [s.cel.expression for s in spec_pool.selectors], binding.count)
                     if spec_pool.device_class_name else None)
            job, created = await api.run_binding(
                ticket, api.create_or_adopt_job, manifest, record.uid,
                create_namespace=bool(member) and ctx.settings.members.create_namespaces, claim=claim,
            )
            ctx.cache.upsert_workload(job, member)  # seen now: no second create before the watch catches up
            if not created:
                where = f" in member cluster {member}" if member else ""
                LOG.info("%s/%s: adopted the existing Job %s%s", *key, manifest["metadata"]["name"], where, extra=logs.about(key))
            return True
        except client_mod.NamespaceMissing as exc:
            # A member without the job's namespace, and members.create_namespaces is false: keep the binding
            # and look again after a backoff (someone may create it); the pods-ready timeout bounds the wait.
            delay = ctx.writes.failed(key, record.uid, lambda: ctx.job_changed(key))
            message = f"{exc}; looking again in {delay:g}s"
            LOG.warning("%s/%s: %s", *key, message, extra=logs.about(key))
            ctx.spawn(ctx.api.run(ctx.api.event, ctx.ref(record), "NamespaceMissing", str(exc), True))
            return False
        except client_mod.WorkloadBusy as exc:
            # An earlier attempt's Job (or an earlier ComputeJob's of this name) is going away with its pods:
            # keep the binding, create the Job once it is gone (its DELETED event, or this retry).
            delay = ctx.writes.failed(key, record.uid, lambda: ctx.job_changed(key))
            LOG.info("%s/%s: %s (looking again in %gs)", *key, exc, delay, extra=logs.about(key))
            return False
        except Exception as exc:
            if not member and errors.namespace_gone(exc):
                # Its namespace is being deleted (or gone): the ComputeJob goes with it. Requeueing would
                # bind it again and fail again, a write storm; leave it bound, without a workload.
                ctx.abandoned[key] = record.uid
                LOG.info(
                    "%s/%s: namespace %s is being deleted (%s); not creating the workload and not requeueing "
                    "the job: it is deleted with its namespace",
                    *key,
                    key[0],
                    errors.short(exc),
                    extra=logs.about(key),
                )
                return False
            delay = self._hold(record)
            message = (
                f"could not create the workload on {binding.center}/{binding.pool} ({errors.short(exc)}); "
                f"the job goes back to the queue in {delay:g}s"
            )
            LOG.warning("%s/%s: %s", *key, message, extra=logs.about(key))
            try:
                await ctx.api.run_binding(
                    ticket,
                    ctx.api.patch_job_status, key[0], key[1], status_mod.unbound(message, record.generation),
                    answer=False, uid=record.uid,
                )
            except client_mod.Replaced:
                pass  # deleted or recreated meanwhile
            except Exception as inner:
                LOG.warning("%s/%s: could not requeue: %s", *key, errors.short(inner), extra=logs.about(key))
            ctx.cache.forget(key)
            ctx.spawn(ctx.api.run(ctx.api.event, ctx.ref(record), "WorkloadFailed", message, True))
            ctx.poke()  # the capacity it held is free for the others now
            return False
