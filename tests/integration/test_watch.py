"""The plain pod and Job watches (suanli.kube.watch.Watcher) against a real API server: events in
order from a LIST's version, resuming after the server ends a stream without losing or repeating
one, and the re-LIST (what a 410 Gone leads to; a watcher with no version starts with it) that
also drops the cached objects the LIST no longer has. The 410 itself is scripted in
tests/unit/test_watch.py: a fresh API server replays old versions instead of answering 410."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from suanli.kube import cache as cache_mod
from suanli.kube import client as client_mod
from suanli.kube import watch

pytestmark = pytest.mark.cluster
GPU = "nvidia.com/gpu"


@pytest.fixture
def api(kube: Any) -> Any:
    client = client_mod.Api(client_mod.api_client(kube.kubeconfig, pool_size=4), workers=2)
    yield client
    client.close()


def pod(name: str, gpus: int = 1, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "none",
                                            "resources": {"requests": {GPU: str(gpus)}, "limits": {GPU: str(gpus)}}}],
                            "nodeSelector": {"suanli.io/none": "none"}}  # stays Pending: no node matches
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": {"step": "0"}}, "spec": spec}


class Mirror:
    """The handler a Watcher calls: records (type, namespace, name, resourceVersion) of the test's
    namespace and keeps the cache as the operator's mirror handler does."""

    def __init__(self, cache: cache_mod.Cache, namespace: str):
        self.cache, self.namespace = cache, namespace
        self.events: list[tuple[str, str, str]] = []  # (type, name, resourceVersion)

    def __call__(self, event: dict[str, Any], memo: Any) -> None:
        meta = event["object"]["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        if event["type"] == "DELETED":
            self.cache.delete_pod(key)
        else:
            self.cache.upsert_pod(event["object"])
        if key[0] == self.namespace:
            self.events.append((event["type"], meta["name"], meta.get("resourceVersion", "")))


class CountingApi:
    """The API client, counting the WATCH streams that the server ended (the watcher then resumes)."""

    def __init__(self, api: Any):
        self.api = api
        self.streams_ended = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)

    def watch(self, kind: str, resource_version: str, timeout_seconds: int) -> Iterator[list[dict[str, Any]]]:
        yield from self.api.watch(kind, resource_version, timeout_seconds)
        self.streams_ended += 1  # not reached when the watcher stops reading (it closes the stream)


async def until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_events_arrive_in_order_and_a_new_stream_resumes_where_the_last_ended(
    api: Any, core_v1: Any, namespace: str
) -> None:
    async def go() -> None:
        cache = cache_mod.Cache()
        mirror = Mirror(cache, namespace)
        _, _, version = api.page("pods")
        counting = CountingApi(api)
        watcher = watch.Watcher(counting, "pods", cache, mirror, None, version, timeout_seconds=1)
        task = asyncio.create_task(watcher.run())
        try:
            await asyncio.to_thread(core_v1.create_namespaced_pod, namespace, pod("p1"))
            await until(lambda: ("ADDED", "p1") in [e[:2] for e in mirror.events], "p1 ADDED")
            ended = counting.streams_ended
            await until(lambda: counting.streams_ended >= ended + 2,
                        "the server to end two more streams (the watcher resumes after each)")
            await asyncio.to_thread(core_v1.patch_namespaced_pod, "p1", namespace, {"metadata": {"labels": {"step": "1"}}})
            await asyncio.to_thread(core_v1.delete_namespaced_pod, "p1", namespace, grace_period_seconds=0)
            await until(lambda: ("DELETED", "p1") in [e[:2] for e in mirror.events], "p1 DELETED")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        types = [t for t, _, _ in mirror.events]
        assert types[0] == "ADDED" and types[-1] == "DELETED" and set(types[1:-1]) == {"MODIFIED"}, mirror.events
        versions = [v for _, _, v in mirror.events]
        assert len(versions) == len(set(versions)), f"an event was delivered twice: {mirror.events}"
        assert any(e[0] == "MODIFIED" for e in mirror.events[1:]), mirror.events
        assert (namespace, "p1") not in cache.pods

    asyncio.run(go())


def test_a_relist_drops_what_was_deleted_meanwhile_and_watching_goes_on(
    api: Any, core_v1: Any, namespace: str
) -> None:
    async def go() -> None:
        cache = cache_mod.Cache()
        # Cached before the watch went down: "gone" was deleted meanwhile, "kept" still exists.
        core_v1.create_namespaced_pod(namespace, pod("kept"))
        for name in ("gone", "kept"):
            stale = pod(name, node="node-x")
            stale["metadata"]["namespace"] = namespace
            cache.upsert_pod(stale)
        assert {(namespace, "gone"), (namespace, "kept")} <= set(cache.pods)
        mirror = Mirror(cache, namespace)
        watcher = watch.Watcher(api, "pods", cache, mirror, None, "")  # no version: LIST first, as after a 410
        task = asyncio.create_task(watcher.run())
        try:
            await until(lambda: ("DELETED", "gone") in [e[:2] for e in mirror.events], "gone DELETED")
            await asyncio.to_thread(core_v1.create_namespaced_pod, namespace, pod("after"))
            await until(lambda: ("ADDED", "after") in [e[:2] for e in mirror.events], "after ADDED (watching again)")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert ("MODIFIED", "kept") in [e[:2] for e in mirror.events]  # the LIST's copy replaced the cached one
        assert (namespace, "gone") not in cache.pods
        assert (namespace, "kept") in cache.pods and (namespace, "after") in cache.pods
        # It watches on from what it saw last (bookmarks only move it further): etcd's versions are integers.
        last_seen = max(int(v) for _, _, v in mirror.events if v)
        assert int(watcher.resource_version) >= last_seen, (watcher.resource_version, mirror.events)

    asyncio.run(go())
