"""`suanli run`: the operator. kopf watches and mirrors; one scheduler task binds.

Startup order matters for never double-booking after a restart: the cache is primed from a
full LIST of centers, nodes, pods, ComputeJobs and Suanli's Jobs before the scheduler plans
anything; then kopf's watches keep it current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from suanli import clock as clock_mod
from suanli import metrics
from suanli import settings as settings_mod

LOG = logging.getLogger("suanli.run")


class OperatorStartError(RuntimeError):
    """The operator cannot start; the message says why and what to check."""


def load_settings(path: str | None) -> settings_mod.Settings:
    if not path:
        return settings_mod.Settings()
    doc = yaml.safe_load(Path(path).read_text()) or {}
    return settings_mod.Settings.model_validate(doc)


def prime(cache: Any, listing: dict[str, list[dict[str, Any]]], now: float) -> None:
    for raw in listing["centers"]:
        cache.upsert_center(raw)
    for raw in listing["nodes"]:
        cache.upsert_node(raw)
    for raw in listing["pods"]:
        cache.upsert_pod(raw)
    for raw in listing["workloads"]:
        cache.upsert_workload(raw)
    for raw in listing["jobs"]:
        cache.upsert_job(raw, now)


async def _operate(args: Any, config: settings_mod.Settings) -> None:
    import kopf

    from suanli.handlers import mirror
    from suanli.kube import cache as cache_mod
    from suanli.kube import client as client_mod
    from suanli.kube import scheduler as scheduler_mod

    clock = clock_mod.SystemClock()
    api = client_mod.Api(
        client_mod.api_client(args.kubeconfig, pool_size=config.operator.write_workers * 2),
        config.operator.write_workers,
        events_namespace=args.namespace,
    )
    cache = cache_mod.Cache(config)
    try:
        listing = await api.run(api.list_all)
    except Exception as exc:
        api.close()
        raise OperatorStartError(
            f"cannot list ComputeCenters, ComputeJobs, Nodes, Pods and Jobs from the API server: {exc.__class__.__name__}: "
            f"{str(exc)[:300]}. Check --kubeconfig, that the API server is up, that the CRDs are installed "
            f"(kubectl apply -f crds/) and that the operator's RBAC allows list and watch on them."
        ) from None
    prime(cache, listing, clock.now())
    LOG.info(
        "cache primed: %d centers, %d nodes, %d pods, %d ComputeJobs, %d Jobs",
        *(len(listing[k]) for k in ("centers", "nodes", "pods", "jobs", "workloads")),
    )
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
        settings.batching.batch_window = 0.05
        settings.batching.idle_timeout = 30
        settings.watching.server_timeout = 300
        settings.peering.standalone = not args.peering
        if args.peering:
            settings.peering.name = args.peering
            settings.peering.clusterwide = True

    tasks = [
        asyncio.create_task(sched.run(), name="scheduler"),
        asyncio.create_task(sched.run_jobs(), name="job-status"),
        asyncio.create_task(sched.run_centers(), name="center-status"),
    ]
    liveness = f"http://{args.health_address}:{args.health_port}/healthz" if args.health_port else None
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=True,
            standalone=not args.peering,
            peering_name=args.peering or None,
            liveness_endpoint=liveness,
            memo=kopf.Memo(cache=cache, scheduler=sched, clock=clock),
        )
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
        api.close()


def run(args: Any) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        config = load_settings(args.config)
    except (OSError, ValueError) as exc:
        print(f"suanli run: cannot use --config {args.config}: {exc}", file=sys.stderr)
        return 2
    if args.kubeconfig:
        if not Path(args.kubeconfig).exists():
            print(f"suanli run: --kubeconfig {args.kubeconfig} does not exist", file=sys.stderr)
            return 2
        os.environ["KUBECONFIG"] = str(Path(args.kubeconfig).resolve())
    if args.metrics_port:
        metrics.serve(args.metrics_port, args.metrics_address)
    try:
        asyncio.run(_operate(args, config))
    except KeyboardInterrupt:
        return 0
    except OperatorStartError as exc:
        print(f"suanli run: {exc}", file=sys.stderr)
        return 1
    return 0
