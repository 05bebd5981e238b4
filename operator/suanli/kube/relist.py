"""The relist safety net: drop cached objects whose deletion the watches never delivered, and
replace those deleted and recreated under the same name while the watches missed both events.

The cache is primed from a LIST, then kopf starts its own LIST+WATCH for ComputeCenters and
Nodes. An object deleted between the two LISTs is in our cache but kopf never sends its DELETED
event (kopf's list does not have it): a deleted node would keep counting as capacity.
(ComputeJobs, pods and batch Jobs are watched from the priming LIST's own version,
kube/watch.py, and re-LISTed on 410 Gone; they are swept too, as a net under that net: a
deleted pod left in the cache would hold its accelerators forever, a deleted ComputeJob would
stay in the queue.) A minute after startup it LISTs the two kinds kopf watches (the gap above);
every `interval` seconds it LISTs the names and uids of everything again (metadata only, in pages: cheap for
the API server and for us), and compares (namespace, name, uid) sets. A cached object whose uid
the LIST does not have (its name missing, or listed with another uid) is checked with a GET: gone
(404), it is handed to the mirror handler as a synthetic DELETED event, exactly as if the watch
had delivered it; there under another uid (deleted and recreated under the same name: a stale
entry that a name-only comparison would keep forever), the old one gets its DELETED event and the
new one, as the GET returned it, an ADDED event. Objects the watches brought in while the LIST
was paging (thousands in a burst) are not suspects at all: the LIST is one snapshot taken after
the cache's key set was, so only deletions can make an object of that set absent from it. (An
entry cached without a uid matches any listed object of its name.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from suanli.kube import cache as cache_mod
from suanli.kube import client as client_mod
from suanli.kube import objects as kobj
from suanli.kube import workloads

LOG = logging.getLogger("suanli.relist")
KINDS = ("centers", "queues", "nodes", "pods", "jobs", "workloads", "deviceclasses", "slices", "claims")
MEMBER_KINDS = ("nodes", "pods", "workloads", "deviceclasses", "slices", "claims")  # what the hub mirrors of a member
KOPF_KINDS = ("centers", "queues", "nodes")  # listed by kopf after the priming LIST: the first sweep's kinds
UidKey = tuple[str, str, str]  # (namespace or "", name, uid or "")


def cached_keys(cache: cache_mod.Cache, kind: str, cluster: str = "") -> set[tuple[str, str]]:
    """The keys ((namespace or "", name), as `cluster`'s API server names them) of the cached objects of
    one kind in one cluster ("": the operator's own). The watches' re-LIST compares names: it hands
    every listed object to the handler anyway."""
    return {key[:2] for key in cached_uids(cache, kind, cluster)}


def cached_uids(cache: cache_mod.Cache, kind: str, cluster: str = "") -> set[UidKey]:
    """(namespace or "", name, uid) of the cached objects of one kind in one cluster, as its API
    server names them (the cache's qualified names made local again: `objects.local_name`)."""
    if kind == "centers":
        return {("", name, str((raw.get("metadata") or {}).get("uid") or "")) for name, raw in cache.center_raw.items()}
    if kind == "queues":
        return {("", name, str((raw.get("metadata") or {}).get("uid") or "")) for name, raw in cache.tenants.queue_raw.items()}
    if kind == "nodes":
        return {("", kobj.local_name(name), info.uid) for name, info in cache.nodes.items() if info.cluster == cluster}
    if kind == "workloads":
        return {(info.namespace, info.key[1], info.uid) for info in cache.workloads.values() if info.cluster == cluster}
    if kind == "pods":
        return {(info.namespace, key[1], info.uid) for key, info in cache.pods.items() if info.cluster == cluster}
    if kind == "jobs":
        return {(*key, record.uid) for key, record in cache.jobs.items()}
    if kind == "slices":
        return {("", s.name, s.uid) for (c, _), s in cache.devices.slices.items() if c == cluster}
    if kind == "deviceclasses":
        return {("", name, uid) for (c, name), (uid, _) in cache.devices.classes.items() if c == cluster}
    if kind == "claims":
        return {(kobj.split(key[0])[1], key[1], info.uid) for key, info in cache.devices.claims.items()
                if kobj.split(key[0])[0] == cluster}
    raise KeyError(f"not a mirrored kind: {kind}")


def cached(cache: cache_mod.Cache, cluster: str = "") -> dict[str, set[UidKey]]:
    """The (namespace, name, uid) of every object the cache mirrors of one cluster, by kind."""
    return {kind: cached_uids(cache, kind, cluster) for kind in (MEMBER_KINDS if cluster else KINDS)}


def missing(have: Mapping[str, set[UidKey]], listed: Mapping[str, set[UidKey]]) -> list[tuple[str, UidKey]]:
    """(kind, key) of cached keys (`cached()` taken before the LIST) absent from the LIST (pure):
    deleted, or deleted and recreated under another uid; candidates for a confirming GET. A key
    cached without a uid is absent only when no listed object has its name."""
    out = []
    for kind in have:
        names: set[tuple[str, str]] | None = None
        for key in sorted(have[kind] - listed[kind]):
            if not key[2]:
                names = {k[:2] for k in listed[kind]} if names is None else names
                if key[:2] in names:
                    continue
            out.append((kind, key))
    return out


def deleted_event(cache: cache_mod.Cache, kind: str, key: tuple[str, str], uid: str = "",
                  cluster: str = "") -> dict[str, Any]:
    """The DELETED watch event the mirror handler of `kind` would have received (of the object with
    that uid, when given) from `cluster`'s API server (`key`: as that server names it)."""
    meta: dict[str, Any] = {"name": key[1]}
    if key[0]:
        meta["namespace"] = key[0]
    if uid:
        meta["uid"] = uid
    if kind == "workloads":
        cached_key = (kobj.qualify(cluster, key[0]), key[1])
        label = next((i.job_label for i in cache.workloads.values() if i.key == cached_key), "")
        meta["labels"] = {workloads.LABEL_JOB: label}
    return {"type": "DELETED", "object": {"metadata": meta}}


async def sweep(
    cache: cache_mod.Cache,
    api: client_mod.Api,
    handlers: Mapping[str, Callable[..., None]],
    memo: Any,
    cluster: str = "",
    kinds: tuple[str, ...] | None = None,
) -> list[tuple[str, tuple[str, str]]]:
    """One LIST of keys, confirm, drop (and mirror the successor of the same name, if any); returns
    (kind, (namespace, name)) of what was dropped. `cluster`, `api`, `handlers`: a member cluster's
    (its kinds are `MEMBER_KINDS`), or the operator's own (""). `kinds`: only these (default: all)."""
    before = {kind: keys for kind, keys in cached(cache, cluster).items() if kinds is None or kind in kinds}
    listed = await api.run(api.list_keys, tuple(before))
    gone: list[tuple[str, UidKey, dict[str, Any] | None]] = []  # (kind, cached key, its successor)
    for kind, key in missing(before, listed):
        try:
            found = await api.run(api.exists, kind, key[:2])
        except Exception as exc:
            LOG.debug("relist: could not check %s %s: %s", kind, key, exc)
            continue
        uid = str(((found or {}).get("metadata") or {}).get("uid") or "")
        if found is None or (uid and uid != key[2]):
            gone.append((kind, key, found))
    now = cached(cache, cluster) if gone else {}  # a watch may have dropped or replaced some while we checked
    dropped = []
    for kind, key, successor in gone:
        if key not in now[kind]:
            continue
        name = "/".join(k for k in key[:2] if k)
        if successor is None:
            LOG.warning("relist: %s %s was deleted but no watch event said so; dropping it from the cache", kind, name)
        else:
            LOG.warning("relist: %s %s was deleted and recreated (uid %s, now %s) but no watch event said so; "
                        "replacing it in the cache", kind, name, key[2] or "unknown",
                        successor["metadata"].get("uid"))
        handlers[kind](deleted_event(cache, kind, key[:2], key[2], cluster), memo)
        if successor is not None:
            handlers[kind]({"type": "ADDED", "object": successor}, memo)
        dropped.append((kind, key[:2]))
    return dropped


async def run(
    cache: cache_mod.Cache,
    api: client_mod.Api,
    handlers: Mapping[str, Callable[..., None]],
    memo: Any,
    interval: float,
    first: float = 60.0,
) -> None:
    """Sweep ComputeCenters and Nodes `first` seconds after startup (what kopf LISTed after the priming
    LIST), then everything every `interval` seconds; errors are logged and retried. (Everything a minute
    after startup would re-LIST every job, Job and pod just primed, while a restarted operator drains its
    queue: a tenth of its time in `make bench`'s backlog phase.)"""
    delay, kinds = min(first, interval), KOPF_KINDS if first < interval else None
    while True:
        await asyncio.sleep(delay)
        try:
            await sweep(cache, api, handlers, memo, kinds=kinds)
        except Exception as exc:
            LOG.warning("relist failed (retrying in %gs): %s", interval, str(exc)[:300])
        delay, kinds = interval, None
