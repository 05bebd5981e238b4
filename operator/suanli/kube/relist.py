"""The relist safety net: drop cached objects whose deletion the watches never delivered.

The cache is primed from a LIST, then kopf starts its own LIST+WATCH for ComputeCenters and
Nodes. An object deleted between the two LISTs is in our cache but kopf never sends its DELETED
event (kopf's list does not have it): a deleted node would keep counting as capacity.
(ComputeJobs, pods and batch Jobs are watched from the priming LIST's own version,
kube/watch.py, and re-LISTed on 410 Gone; they are swept too, as a net under that net: a
deleted pod left in the cache would hold its accelerators forever, a deleted ComputeJob would
stay in the queue.) Every `interval` seconds (the first time soon after
startup) this LISTs the names of everything again (metadata only, in pages: cheap for the API
server and for us); an object that was in the cache before the LIST began but is not in it is
confirmed gone with a GET (404) and then handed to the mirror handler as a synthetic DELETED
event, exactly as if the watch had delivered it. Objects the watches brought in while the LIST
was paging (thousands in a burst) are not suspects at all: the LIST is one snapshot taken after
the cache's key set was, so only deletions can make an object of that set absent from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from suanli.kube import cache as cache_mod
from suanli.kube import client as client_mod
from suanli.kube import workloads

LOG = logging.getLogger("suanli.relist")
KINDS = ("centers", "nodes", "pods", "jobs", "workloads")


def cached_keys(cache: cache_mod.Cache, kind: str) -> set[tuple[str, str]]:
    """The keys ((namespace or "", name)) of the cached objects of one kind."""
    if kind == "centers":
        return {("", name) for name in cache.center_raw}
    if kind == "nodes":
        return {("", name) for name in cache.nodes}
    if kind == "workloads":
        return {info.key for info in cache.workloads.values()}
    if kind == "pods":
        return set(cache.pods)
    if kind == "jobs":
        return set(cache.jobs)
    raise KeyError(f"not a mirrored kind: {kind}")


def cached(cache: cache_mod.Cache) -> dict[str, set[tuple[str, str]]]:
    """The keys of every object the cache mirrors, by kind."""
    return {kind: cached_keys(cache, kind) for kind in KINDS}


def missing(
    have: Mapping[str, set[tuple[str, str]]], listed: Mapping[str, set[tuple[str, str]]]
) -> list[tuple[str, tuple[str, str]]]:
    """(kind, key) of cached keys (`cached()` taken before the LIST) absent from the LIST (pure):
    candidates for a confirming GET."""
    return [(kind, key) for kind in KINDS for key in sorted(have[kind] - listed[kind])]


def deleted_event(cache: cache_mod.Cache, kind: str, key: tuple[str, str]) -> dict[str, Any]:
    """The DELETED watch event the mirror handler of `kind` would have received."""
    meta: dict[str, Any] = {"name": key[1]}
    if key[0]:
        meta["namespace"] = key[0]
    if kind == "workloads":
        label = next((i.job_label for i in cache.workloads.values() if i.key == key), "")
        meta["labels"] = {workloads.LABEL_JOB: label}
    return {"type": "DELETED", "object": {"metadata": meta}}


async def sweep(
    cache: cache_mod.Cache,
    api: client_mod.Api,
    handlers: Mapping[str, Callable[..., None]],
    memo: Any,
) -> list[tuple[str, tuple[str, str]]]:
    """One LIST of keys, confirm, drop; returns what was dropped."""
    before = cached(cache)
    listed = await api.run(api.list_keys)
    gone = []
    for kind, key in missing(before, listed):
        try:
            if not await api.run(api.exists, kind, key):
                gone.append((kind, key))
        except Exception as exc:
            LOG.debug("relist: could not check %s %s: %s", kind, key, exc)
    now = cached(cache) if gone else {}  # a watch may have dropped some while we checked
    dropped = []
    for kind, key in gone:
        if key in now[kind]:
            LOG.warning("relist: %s %s was deleted but no watch event said so; dropping it from the cache", kind,
                        "/".join(k for k in key if k))
            handlers[kind](deleted_event(cache, kind, key), memo)
            dropped.append((kind, key))
    return dropped


async def run(
    cache: cache_mod.Cache,
    api: client_mod.Api,
    handlers: Mapping[str, Callable[..., None]],
    memo: Any,
    interval: float,
    first: float = 60.0,
) -> None:
    """Sweep `first` seconds after startup, then every `interval` seconds; errors are logged and retried."""
    delay = min(first, interval)
    while True:
        await asyncio.sleep(delay)
        delay = interval
        try:
            await sweep(cache, api, handlers, memo)
        except Exception as exc:
            LOG.warning("relist failed (retrying in %gs): %s", interval, str(exc)[:300])
