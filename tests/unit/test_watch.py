"""suanli.kube.watch.Watcher with a scripted API (the real-server cases are in
tests/integration/test_watch.py): what a real server cannot be made to send on demand — a
bookmark at a chosen moment, a non-410 ERROR event, a failing request — and a handler that
raises on one object."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kubernetes.client.exceptions import ApiException

from suanli.kube import cache as cache_mod
from suanli.kube import watch


def event(kind: str, name: str, version: str) -> dict[str, Any]:
    return {"type": kind, "object": {"metadata": {"name": name, "namespace": "team-a", "resourceVersion": version}}}


class ScriptedApi:
    """`watch()` plays one scripted step per call (a list of chunks, or an exception to raise); once
    the script is done, streams stay empty. Records the version each WATCH started from."""

    def __init__(self, steps: list[Any]):
        self.steps = steps
        self.started_from: list[str] = []

    def watch(self, kind: str, version: str, timeout_seconds: int) -> Any:
        self.started_from.append(version)
        if not self.steps:
            time.sleep(0.02)  # not a wait: an empty stream lasts a little, as a server's would
            return
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        yield from step

    def page(self, kind: str, token: str = "") -> tuple[list[dict[str, Any]], str, str]:
        """One page per call of a two-page LIST at version 900: pod "kept" (the LIST's copy) on the second."""
        if not token:
            return [], "next", "900"
        return [event("ADDED", "kept", "880")["object"]], "", "900"


def run_until(watcher: watch.Watcher, check: Any, timeout: float = 10.0) -> None:
    async def go() -> None:
        task = asyncio.create_task(watcher.run())
        deadline = time.monotonic() + timeout
        try:
            while not check():
                assert time.monotonic() < deadline, "timed out"
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())


def test_bookmarks_advance_the_version_without_reaching_the_handler() -> None:
    seen: list[str] = []
    api = ScriptedApi([
        [[event("ADDED", "a", "10"), {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}]],
        [[event("MODIFIED", "a", "20")]],
    ])
    w = watch.Watcher(api, "pods", cache_mod.Cache(), lambda e, memo: seen.append(e["object"]["metadata"]["name"]
                                                                                  + "@" + e["object"]["metadata"]["resourceVersion"]),
                      None, "5")
    run_until(w, lambda: len(seen) == 2 and len(api.started_from) >= 3)
    assert seen == ["a@10", "a@20"]
    assert api.started_from[:3] == ["5", "15", "20"]  # each stream resumes from the last version seen


def test_an_error_event_or_a_failed_request_backs_off_and_resumes_from_the_same_version() -> None:
    seen: list[str] = []
    api = ScriptedApi([
        [[event("ADDED", "a", "10"), {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd"}}]],
        ConnectionError("connection refused"),
        [[event("MODIFIED", "a", "11")]],
    ])
    w = watch.Watcher(api, "pods", cache_mod.Cache(), lambda e, memo: seen.append(e["type"]), None, "5")
    started = time.monotonic()
    run_until(w, lambda: seen == ["ADDED", "MODIFIED"])
    assert api.started_from[:3] == ["5", "10", "10"]  # what came before the ERROR was delivered and counts
    assert time.monotonic() - started >= 1.0 + 2.0 - 0.2  # backed off 1 s, then 2 s


def test_a_handler_that_raises_on_one_object_does_not_stop_the_others() -> None:
    seen: list[str] = []

    def handler(e: dict[str, Any], memo: Any) -> None:
        if e["object"]["metadata"]["name"] == "bad":
            raise ValueError("unparseable")
        seen.append(e["object"]["metadata"]["name"])

    api = ScriptedApi([[[event("ADDED", "a", "1"), event("ADDED", "bad", "2"), event("ADDED", "b", "3")]]])
    w = watch.Watcher(api, "pods", cache_mod.Cache(), handler, None, "0")
    run_until(w, lambda: seen == ["a", "b"] and len(api.started_from) >= 2)
    assert api.started_from[1] == "3"


def test_410_gone_lists_again_drops_what_was_deleted_and_watches_from_the_lists_version() -> None:
    def cached_pod(name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "team-a"},
                "spec": {"nodeName": "n1", "containers": [{"name": "m", "resources": {"requests": {"nvidia.com/gpu": "1"}}}]},
                "status": {"phase": "Running"}}

    cache = cache_mod.Cache()
    for name in ("kept", "gone"):
        cache.upsert_pod(cached_pod(name))
    seen: list[tuple[str, str]] = []

    def handler(e: dict[str, Any], memo: Any) -> None:
        key = ("team-a", e["object"]["metadata"]["name"])
        seen.append((e["type"], key[1]))
        if e["type"] == "DELETED":
            cache.delete_pod(key)

    api = ScriptedApi([[[{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}]]])
    w = watch.Watcher(api, "pods", cache, handler, None, "5")
    run_until(w, lambda: len(api.started_from) >= 2)
    assert seen == [("MODIFIED", "kept"), ("DELETED", "gone")]
    assert api.started_from[:2] == ["5", "900"]  # then from the LIST's version (its first page's)
    assert set(cache.pods) == {("team-a", "kept")}


def test_410_as_the_answer_to_the_watch_request_lists_again_too() -> None:
    api = ScriptedApi([ApiException(status=410, reason="Gone")])
    w = watch.Watcher(api, "pods", cache_mod.Cache(), lambda e, memo: None, None, "5")
    started = time.monotonic()
    run_until(w, lambda: len(api.started_from) >= 2)
    assert api.started_from[:2] == ["5", "900"]
    assert time.monotonic() - started < 1.0  # no back-off: a LIST is the answer, not a retry


def test_a_kind_the_cluster_does_not_serve_counts_as_listed_empty_and_is_looked_at_again_later(caplog: Any) -> None:
    """DRA's kinds on a cluster without resource.k8s.io/v1 (before 1.34, or switched off): the LIST's 404
    (`NotServed`, scripted here; tests/integration/test_api_client.py has a real server's) is an empty
    cluster of that kind: the member counts it as listed (so it is not waited for), nothing is mirrored,
    and the watcher says so once and looks again every NOT_SERVED_RETRY_S instead of spinning."""
    listed: list[str] = []

    class NotServing(ScriptedApi):
        def page(self, kind: str, token: str = "") -> tuple[list[dict[str, Any]], str, str]:
            raise watch.client_mod.NotServed("the API server does not serve /apis/resource.k8s.io/v1/resourceslices")

    api = NotServing([])
    seen: list[Any] = []
    w = watch.Watcher(api, "slices", cache_mod.Cache(), lambda e, memo: seen.append(e), None, listed=listed.append,
                      cluster="east")
    with caplog.at_level("INFO", logger="suanli.watch"):
        run_until(w, lambda: listed == ["slices"])
    assert seen == [] and api.started_from == []  # never watched what is not there
    (record,) = [r for r in caplog.records if "does not serve" in r.getMessage()]
    assert "in member cluster east" in record.getMessage() and "DRA pools there count no devices" in record.getMessage()
