"""Mirror handlers: API events into the cache, waking the scheduler. They never bind.

Nodes, pods and batch Jobs come from the operator's own cluster and from each member cluster
(`cluster`: the member center's name; "" for the operator's own), through the same handlers.

Registered on a registry of their own (`registry()`), so importing this module has no side
effects. The operator's runtime (cache, scheduler, clock) reaches them through kopf's memo.
"""

from __future__ import annotations

from typing import Any

import kopf

from suanli.kube import cache as cache_mod
from suanli.kube import objects as kobj
from suanli.kube import scheduler as scheduler_mod

GROUP, VERSION = "suanli.io", "v1alpha1"


def _plain(body: Any) -> dict[str, Any]:
    """A kopf body as a plain dictionary."""
    return {k: body[k] for k in body if k in ("apiVersion", "kind", "metadata", "spec", "status")}


def _parts(memo: Any) -> tuple[cache_mod.Cache, scheduler_mod.Scheduler]:
    return memo.cache, memo.scheduler


def on_center(event: dict[str, Any], memo: Any, **_: Any) -> None:
    cache, sched = _parts(memo)
    body = event["object"]
    name = body["metadata"]["name"]
    if event.get("type") == "DELETED":
        cache.delete_center(name)
    else:
        cache.upsert_center(_plain(body))
    sched.center_changed()
    sched.poke()
    members = getattr(memo, "members", None)
    if members is not None:
        members.wake.set()  # a member added, changed or gone: connect, reconnect or disconnect now


def on_queue(event: dict[str, Any], memo: Any, **_: Any) -> None:
    """A ComputeQueue added, changed or deleted: quotas and admission change; plan again."""
    cache, sched = _parts(memo)
    body = event["object"]
    if event.get("type") == "DELETED":
        cache.tenants.delete_queue(body["metadata"]["name"])
    else:
        cache.tenants.upsert_queue(_plain(body))
    sched.queues_changed()
    sched.poke()


def on_namespace(event: dict[str, Any], memo: Any, **_: Any) -> None:
    """A namespace's labels decide which ComputeQueue admits its jobs (namespaceSelector)."""
    cache, sched = _parts(memo)
    body = event["object"]
    if event.get("type") == "DELETED":
        cache.tenants.delete_namespace(body["metadata"]["name"])
    elif cache.tenants.upsert_namespace(_plain(body)) and cache.tenants.queues:
        sched.poke()


def on_node(event: dict[str, Any], memo: Any, cluster: str = "", **_: Any) -> None:
    cache, sched = _parts(memo)
    body = event["object"]
    name = body["metadata"]["name"]
    if event.get("type") == "DELETED":
        changed = cache.delete_node(name, cluster)
    else:
        changed = cache.upsert_node(_plain(body), cluster)
    if changed:
        sched.center_changed()
        sched.poke()
        for key in cache.bound_to_node(kobj.qualify(cluster, name)):  # replicas waiting for this node may never start there
            sched.job_changed(key)


def on_pod(event: dict[str, Any], memo: Any, cluster: str = "", **_: Any) -> None:
    cache, sched = _parts(memo)
    body = event["object"]
    meta = body["metadata"]
    key = (kobj.qualify(cluster, meta.get("namespace") or ""), meta["name"])
    if event.get("type") == "DELETED":
        info = cache.delete_pod(key)
        freed = info is not None
    else:
        old = cache.pods.get(key)
        info = cache.upsert_pod(_plain(body), cluster)
        freed = info is not None and info.terminated and (old is None or not old.terminated)
        if info is not None and old is not None and old.node != info.node:
            sched.center_changed()
    if info is None:
        return
    if info.gated:  # a gated pod of a bound job: pin it to its node and lift the gate (kube/gates.py)
        gates = getattr(memo, "gates", None)
        if gates is not None:
            gates.wake(key, body if event.get("type") != "DELETED" else None)
    if freed:
        sched.center_changed()
        sched.poke()
    if info.job_key is not None:
        record = cache.record_for_label(info.job_key)
        if record is not None:
            sched.job_changed(record.key)


def _on_devices(kind: str, what: str) -> Any:
    """The handler of a DRA kind ("slices", "deviceclasses", "claims"): `what` changes a DRA pool's count."""

    def handler(event: dict[str, Any], memo: Any, cluster: str = "", **_: Any) -> None:
        cache, sched = _parts(memo)
        if cache.devices.mirror(kind, event.get("type") == "DELETED", _plain(event["object"]), cluster):
            sched.center_changed()
            sched.poke()

    handler.__doc__ = f"{what}: a DRA pool's capacity or free devices may change."
    handler.__name__ = f"on_{kind}"
    return handler


on_slice = _on_devices("slices", "A ResourceSlice published, changed or withdrawn")
on_device_class = _on_devices("deviceclasses", "A DeviceClass added, changed or deleted")
on_claim = _on_devices("claims", "A ResourceClaim allocated, released or deleted")


def on_workload(event: dict[str, Any], memo: Any, cluster: str = "", **_: Any) -> None:
    cache, sched = _parts(memo)
    body = _plain(event["object"])
    if event.get("type") == "DELETED":
        cache.delete_workload(body, cluster)
        sched.poke()
    else:
        info = cache.upsert_workload(body, cluster)
        if info.finished:
            sched.poke()
    labels = body["metadata"].get("labels") or {}
    record = cache.record_for_label((body["metadata"].get("namespace") or "", labels.get("suanli.io/job", "")))
    if record is not None:
        sched.job_changed(record.key)


def on_compute_job(event: dict[str, Any], memo: Any, **_: Any) -> None:
    cache, sched = _parts(memo)
    body = event["object"]
    meta = body["metadata"]
    key = (meta.get("namespace") or "", meta["name"])
    if event.get("type") == "DELETED":
        record = cache.delete_job(key)
        if record is not None:
            sched.job_deleted(record)
            sched.poke()
            sched.center_changed()
        return
    record = cache.upsert_job(_plain(body), memo.clock.now())
    if cache.schedulable(record) or record.parse_error is not None:
        sched.poke()
    else:
        sched.job_changed(key)


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff-base storage for an operator whose handlers are all watch-event handlers.

    A diff-base (the "last handled" essence) only serves change-detecting handlers (on.create,
    on.update, on.field), which Suanli does not register. kopf's default still builds one for every
    watch event by deep-copying the whole object, and for pods and Jobs that copy was the largest
    part of kopf's cost per event (`make bench`). Nothing is read or written on objects.
    """

    def build(self, *, body: Any, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: Any) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


def registry() -> kopf.OperatorRegistry:
    """A registry with the mirror handlers (watch-stream handlers: no finalizers, no annotations).
    `on_compute_job`, `on_pod` and `on_workload` are fed by plain watches instead (kube/watch.py:
    kopf's handling of an event costs several times what these kinds' volume can afford)."""
    reg = kopf.OperatorRegistry()
    kopf.on.event(GROUP, VERSION, "computecenters", registry=reg)(_raw(on_center))
    kopf.on.event("", "v1", "nodes", registry=reg)(_raw(on_node))
    kopf.on.event(GROUP, VERSION, "computequeues", registry=reg)(_raw(on_queue))
    kopf.on.event("", "v1", "namespaces", registry=reg)(_raw(on_namespace))
    return reg


def _raw(fn: Any) -> Any:
    # async: kopf runs sync handlers in threads, and the cache belongs to the event loop.
    async def handler(event: Any, memo: Any, **kwargs: Any) -> None:
        fn(event, memo, **kwargs)

    handler.__name__ = fn.__name__
    return handler
