"""`suanli run`: the operator. kopf watches and mirrors; one scheduler task binds.

Startup order matters for never double-booking after a restart: the cache is primed from a
full LIST of centers, nodes, pods, ComputeJobs and Suanli's Jobs before the scheduler plans
anything; then kopf's watches keep it current.

With `--leader-election lease` (the Helm chart's only mode, two replicas) the Lease is taken
first, before any of that: a standby waits (its /healthz answers, /readyz says 503), and a
leader that loses the Lease exits with status 1 at once, so that Kubernetes restarts it as a
standby and two replicas never plan at the same time. The Lease is the only way several replicas
share the work: kopf runs standalone, because its peering would pause only kopf's own handlers while
the scheduler, the status tasks and the plain watches went on binding.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import yaml

from suanli import clock as clock_mod
from suanli import logs, metrics
from suanli import settings as settings_mod

LOG = logging.getLogger("suanli.run")
LOST_LEASE_EXIT_CODE = 1
TASK_DIED_EXIT_CODE = 3


class OperatorStartError(RuntimeError):
    """The operator cannot start; the message says why and what to check."""


def load_settings(path: str | None) -> settings_mod.Settings:
    if not path:
        return settings_mod.Settings()
    doc = yaml.safe_load(Path(path).read_text()) or {}
    return settings_mod.Settings.model_validate(doc)


PRIME_ORDER = ("centers", "queues", "namespaces", "nodes", "deviceclasses", "slices", "claims", "pods", "workloads", "jobs")


async def prime(cache: Any, api: Any, now: float) -> tuple[dict[str, int], dict[str, str]]:
    """Fill the cache from paged LISTs, a page at a time (a large cluster's objects are never all
    held at once); returns how many objects of each kind were read, and each LIST's
    resourceVersion (where the pod and Job watches start)."""
    from suanli.kube import transport
    upsert = {
        "centers": cache.upsert_center,
        "queues": cache.tenants.upsert_queue,
        "namespaces": cache.tenants.upsert_namespace,
        "nodes": cache.upsert_node,
        "deviceclasses": cache.devices.upsert_class,
        "slices": cache.devices.upsert_slice,
        "claims": cache.devices.upsert_claim,
        "pods": cache.upsert_pod,
        "workloads": cache.upsert_workload,
        "jobs": lambda raw: cache.upsert_job(raw, now),
    }
    counts = dict.fromkeys(PRIME_ORDER, 0)
    versions = dict.fromkeys(PRIME_ORDER, "")
    for kind in PRIME_ORDER:
        token: str | None = ""
        while token is not None:
            try:
                items, following, version = await api.run(api.page, kind, token)
            except transport.NotServed as exc:
                LOG.info("%s: DRA pools in this cluster count no devices", exc)
                break
            versions[kind] = versions[kind] or version
            for raw in items:
                upsert[kind](raw)
            counts[kind] += len(items)
            token = following or None
    return counts, versions


GC_THRESHOLDS = (10_000, 10, 10)  # Python's default is (700, 10, 10)


def tune_gc() -> None:
    """The operator holds every job, Job and pod of the cluster and allocates for every watch
    event; with Python's default thresholds the cyclic collector runs every 700 allocations and its
    full passes walk the whole cache. Measured on the benchmark's cache (ten scheduling cycles over
    6,000 cached jobs, 200 new ones each): the collector took 15% of the CPU with the defaults, 3%
    with young collections every 10,000 allocations and the primed cache frozen out of its view
    (`freeze_primed`); in the operator benchmark the change is within its noise (about 5%). The
    cache holds no reference cycles (tests/unit/test_cache.py), so nothing it drops is left to the
    collector.
    """
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_primed() -> None:
    """After priming: move everything allocated so far out of the collector's generations."""
    gc.collect()
    gc.freeze()


def default_identity() -> str:
    """This replica's name in the Lease: the pod name in Kubernetes, else host and a random suffix."""
    return os.environ.get("SUANLI_POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


async def _lead(args: Any, clock: clock_mod.Clock, identity: str) -> Any:
    """Block until this replica holds the Lease; serve a standby /healthz meanwhile."""
    from suanli.kube import client as client_mod
    from suanli.kube import leader

    namespace = args.lease_namespace or args.namespace
    lease_api = leader.KubeLeaseApi(client_mod.api_client(args.kubeconfig, pool_size=2), args.lease_name, namespace)
    elector = leader.Elector(lease_api, args.lease_name, namespace, identity, clock)
    health = None
    if args.health_port:
        health = leader.StandbyHealth(
            args.health_address, args.health_port, lambda: f"{elector.where} held by {elector.holder() or 'nobody'}"
        )
        await health.start()
    LOG.info("leader election: %s as %s", elector.where, identity)
    try:
        await elector.acquire()
    finally:
        if health is not None:
            await health.stop()  # kopf's liveness endpoint takes the port over
    return elector


def _died(task: asyncio.Task[Any], stop: list[asyncio.Task[Any]]) -> None:
    """One of the operator's loops (scheduler, status writers, a watch, the gate lifter) ended: it never
    should. An operator without it would look alive and do nothing (jobs stuck, a cache going stale), so
    say why and exit, and Kubernetes restarts it from a fresh LIST."""
    if task.cancelled():
        return  # shutting down
    exc = task.exception()
    metrics.TASK_ERRORS.inc()
    LOG.critical(
        "the %s loop ended (%s); exiting (status %d) to start again from a fresh LIST",
        task.get_name(), repr(exc) if exc is not None else "it returned", TASK_DIED_EXIT_CODE,
        exc_info=exc,
    )
    for other in stop:
        if other is not task:
            other.cancel()
    logging.shutdown()
    os._exit(TASK_DIED_EXIT_CODE)


def _lost(task: asyncio.Task[str], stop: list[asyncio.Task[Any]]) -> None:
    """The Lease is gone: stop planning and writing now, and exit so Kubernetes restarts us as a standby."""
    if task.cancelled():
        return
    try:
        reason = task.result()
    except BaseException as exc:  # hold() does not raise; if it ever does, we cannot vouch for the Lease
        reason = f"the lease keeper failed: {exc!r}"
    for other in stop:
        other.cancel()
    LOG.error("lost the leadership: %s; exiting (status %d) to restart as a standby", reason, LOST_LEASE_EXIT_CODE)
    logging.shutdown()
    os._exit(LOST_LEASE_EXIT_CODE)


async def _operate(args: Any, config: settings_mod.Settings) -> None:
    clock = clock_mod.SystemClock()
    identity = args.identity or default_identity()  # the Lease's holder, and the Events' reporting instance
    elector = await _lead(args, clock, identity) if args.leader_election == "lease" else None
    keeper = asyncio.create_task(elector.hold(), name="lease") if elector is not None else None
    try:
        await _serve(args, config, clock, keeper, identity)
    finally:
        if keeper is not None and elector is not None:
            keeper.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.to_thread(elector.release), 10)


async def _serve(
    args: Any, config: settings_mod.Settings, clock: clock_mod.Clock, keeper: asyncio.Task[str] | None, identity: str
) -> None:
    import kopf

    from suanli.handlers import mirror
    from suanli.kube import cache as cache_mod
    from suanli.kube import client as client_mod
    from suanli.kube import gates, relist, watch
    from suanli.kube import scheduler as scheduler_mod
    from suanli.members import manager

    api = client_mod.Api(
        client_mod.api_client(args.kubeconfig, pool_size=config.operator.write_workers * 2),
        config.operator.write_workers,
        events_namespace=args.namespace,
        instance=identity,  # the Events say which replica wrote them
    )
    cache = cache_mod.Cache(config)
    tune_gc()
    try:
        counts, versions = await prime(cache, api, clock.now())
    except Exception as exc:
        api.close()
        raise OperatorStartError(
            f"cannot list ComputeCenters, ComputeQueues, ComputeJobs, Namespaces, Nodes, Pods and Jobs from the API server: {exc.__class__.__name__}: "
            f"{str(exc)[:300]}. Check --kubeconfig, that the API server is up, that the CRDs are installed "
            f"(kubectl apply -f crds/) and that the operator's RBAC allows list and watch on them."
        ) from None
    LOG.info(
        "cache primed: %d centers, %d nodes, %d pods, %d ComputeJobs, %d Jobs",
        *(counts[k] for k in ("centers", "nodes", "pods", "jobs", "workloads")),
    )
    freeze_primed()
    sched = scheduler_mod.Scheduler(cache, api, config, clock)
    for key in list(cache.jobs):
        sched.job_changed(key)
    sched.center_changed()
    sched.poke()

    registry = mirror.registry()
    kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry)
    def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # our own Events, written for people
        settings.persistence.diffbase_storage = mirror.NoDiffBase()  # watch-event handlers only
        # A per-object worker lives this long after its object's last event, holding that body (when
        # kopf still followed ComputeJobs, pods and Jobs, 30 s gave ~530 MB peak for 4,000 jobs).
        settings.queueing.idle_timeout = 2.0
        settings.watching.server_timeout = 300
        settings.watching.chunk_size = client_mod.PAGE  # kopf's initial LISTs in pages too, not all at once
        settings.peering.standalone = True  # one active replica is the Lease's job (module docstring)

    # Pins gated pods to their nodes and lifts the gate (woken by on_pod), in whichever cluster they are.
    lifter = gates.Lifter(cache, api, clusters=sched.clusters)
    memo = kopf.Memo(cache=cache, scheduler=sched, clock=clock, gates=lifter)
    members = manager.Members(sched, args.namespace, memo, identity, relist_seconds=args.relist_seconds)  # member clusters (spec.cluster)
    memo.members = members
    handlers = {"centers": mirror.on_center, "nodes": mirror.on_node, "pods": mirror.on_pod,
                "jobs": mirror.on_compute_job, "workloads": mirror.on_workload, "queues": mirror.on_queue,
                "deviceclasses": mirror.on_device_class, "slices": mirror.on_slice, "claims": mirror.on_claim}
    tasks = [
        asyncio.create_task(sched.run(), name="scheduler"),
        asyncio.create_task(sched.run_jobs(), name="job-status"),
        asyncio.create_task(sched.run_centers(), name="center-status"),
        asyncio.create_task(sched.run_queues(), name="queue-status"),
        asyncio.create_task(lifter.run(), name="gates"),
        asyncio.create_task(members.run(), name="members"),
        # ComputeJobs, pods and batch Jobs: plain watches from the priming LISTs' versions
        # (kube/watch.py); kopf follows ComputeCenters and Nodes (handlers/mirror.py registry()).
        *(
            asyncio.create_task(watch.Watcher(api, kind, cache, handlers[kind], memo, versions[kind]).run(),
                                name=f"watch-{kind}")
            for kind in watch.KINDS
        ),
    ]
    if args.relist_seconds > 0:
        tasks.append(asyncio.create_task(relist.run(cache, api, handlers, memo, args.relist_seconds), name="relist"))
    for task in tasks:
        task.add_done_callback(lambda task: _died(task, tasks))
    if keeper is not None:
        keeper.add_done_callback(lambda task: _lost(task, tasks))
    liveness = f"http://{args.health_address}:{args.health_port}/healthz" if args.health_port else None
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=True,
            standalone=True,
            liveness_endpoint=liveness,
            memo=memo,
        )
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
        api.close()


def run(args: Any) -> int:
    """The operator's process: every line it writes on stderr is a log record in --log-format
    (with json, even a failed start or an unexpected crash is one JSON line, its traceback in exc_info)."""
    logs.configure(args.log_format, args.verbose)
    logging.captureWarnings(True)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        config = load_settings(args.config)
    except (OSError, ValueError) as exc:
        LOG.error("suanli run: cannot use --config %s: %s", args.config, exc)
        return 2
    if args.kubeconfig:
        if not Path(args.kubeconfig).exists():
            LOG.error("suanli run: --kubeconfig %s does not exist", args.kubeconfig)
            return 2
        os.environ["KUBECONFIG"] = str(Path(args.kubeconfig).resolve())
    try:
        if args.metrics_port:
            metrics.serve(args.metrics_port, args.metrics_address)
        asyncio.run(_operate(args, config))
    except KeyboardInterrupt:
        return 0
    except OperatorStartError as exc:
        LOG.error("suanli run: %s", exc)
        return 1
    except Exception as exc:
        LOG.critical("suanli run: the operator stopped on an unexpected error: %r", exc, exc_info=exc)
        return 1
    return 0
