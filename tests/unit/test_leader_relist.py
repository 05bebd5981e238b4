"""The relist safety net (suanli.kube.relist): cached objects a LIST no longer has are confirmed gone
with a GET and dropped through the mirror handlers; one created after the LIST is kept.
(Beside the leader tests: both are the operator's run-time safety machinery.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from suanli.handlers import mirror
from suanli.kube import cache as cache_mod
from suanli.kube import relist, workloads


def node(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"suanli.io/pool": "c1-a100"}}, "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"nvidia.com/gpu": "8"}}}


def pod(name: str, job: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "team-a", "labels": {workloads.LABEL_JOB: job} if job else {}},
            "spec": {"nodeName": "n1", "containers": [{"name": "m", "resources": {"requests": {"nvidia.com/gpu": "4"}}}]},
            "status": {"phase": "Running"}}


class FakeApi:
    """The two calls a sweep makes: a LIST of (namespace, name, uid) keys, and a GET that answers 404
    for names in `gone` (and an object without a uid for the others)."""

    def __init__(self, listing: dict[str, set[tuple[str, str, str]]], gone: set[str], during_list: Any = None):
        self.listing = listing
        self.gone = gone
        self.during_list = during_list  # what the watches deliver while the LIST pages
        self.checked: list[tuple[str, str]] = []

    async def run(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def list_keys(self, kinds: tuple[str, ...] = ()) -> dict[str, set[tuple[str, str, str]]]:
        if self.during_list is not None:
            self.during_list()
        return self.listing

    def exists(self, kind: str, key: tuple[str, str]) -> dict[str, Any] | None:
        self.checked.append(key)
        return None if key[1] in self.gone else {"metadata": {"name": key[1]}}


def empty_listing() -> dict[str, set[tuple[str, str, str]]]:
    return {kind: set() for kind in relist.KINDS}


def test_missing_lists_cached_objects_absent_from_the_list() -> None:
    cache = cache_mod.Cache()
    for name in ("n1", "n2"):
        cache.upsert_node(node(name))
    cache.upsert_pod(pod("p1"))
    listing = empty_listing()
    listing["nodes"] = {("", "n1", "")}
    assert relist.missing(relist.cached(cache), listing) == [("nodes", ("", "n2", "")), ("pods", ("team-a", "p1", ""))]


def test_sweep_drops_what_is_gone_and_keeps_what_was_created_after_the_list() -> None:
    cache = cache_mod.Cache()
    for name in ("n1", "n2", "n3"):
        cache.upsert_node(node(name))
    cache.upsert_pod(pod("p1", job="train"))
    listing = empty_listing()
    listing["nodes"] = {("", "n1", "")}
    # n2 and p1 were deleted unseen; n3 was created after the LIST (the GET finds it).
    api = FakeApi(listing, gone={"n2", "p1"})
    calls: list[tuple[str, dict[str, Any]]] = []

    def recorder(kind: str) -> Any:
        real = {"nodes": mirror.on_node, "pods": mirror.on_pod}.get(kind)

        def handle(event: dict[str, Any], memo: Any) -> None:
            calls.append((kind, event))
            if real is not None:
                real(event, memo)

        return handle

    sched = SimpleNamespace(poked=0, centers=0)
    sched.poke = lambda: setattr(sched, "poked", sched.poked + 1)
    sched.center_changed = lambda: setattr(sched, "centers", sched.centers + 1)
    sched.job_changed = lambda key: None
    memo = SimpleNamespace(cache=cache, scheduler=sched, clock=None)
    handlers = {kind: recorder(kind) for kind in relist.KINDS}
    dropped = asyncio.run(relist.sweep(cache, api, handlers, memo))  # type: ignore[arg-type]
    assert dropped == [("nodes", ("", "n2")), ("pods", ("team-a", "p1"))]
    assert set(cache.nodes) == {"n1", "n3"} and cache.pods == {}
    assert all(event["type"] == "DELETED" for _, event in calls)
    # Capacity changed twice (n2's accelerators are gone, p1's 4 GPUs are free): one wake-up each.
    assert (sched.poked, sched.centers) == (2, 2)


def test_objects_cached_while_the_list_pages_are_not_suspects() -> None:
    """A burst: pods the watch brings in after the LIST began are not in it, and need no GET."""
    cache = cache_mod.Cache()
    cache.upsert_node(node("n1"))
    listing = empty_listing()
    listing["nodes"] = {("", "n1", "")}
    api = FakeApi(listing, gone=set(), during_list=lambda: [cache.upsert_pod(pod(f"new-{i}")) for i in range(3)])
    memo = SimpleNamespace(cache=cache, scheduler=None, clock=None)
    dropped = asyncio.run(relist.sweep(cache, api, {}, memo))  # type: ignore[arg-type]
    assert dropped == [] and api.checked == []
    assert len(cache.pods) == 3


def test_the_deleted_event_of_a_workload_carries_its_job_label() -> None:
    cache = cache_mod.Cache()
    cache.workloads[("team-a", "train")] = SimpleNamespace(key=("team-a", "cj-train"), job_label="train")  # type: ignore[assignment]
    event = relist.deleted_event(cache, "workloads", ("team-a", "cj-train"))
    assert event["object"]["metadata"] == {"name": "cj-train", "namespace": "team-a",
                                           "labels": {workloads.LABEL_JOB: "train"}}


def test_the_first_sweep_lists_what_kopf_watches_and_later_ones_everything() -> None:
    """A restarted operator has just primed its cache with every job, Job and pod: the sweep a minute
    later lists only ComputeCenters and Nodes (the gap between its LIST and kopf's); every later one
    lists everything. (Fails on the code that listed everything the first time.)"""
    listed: list[tuple[str, ...]] = []

    class Recording(FakeApi):
        def list_keys(self, kinds: tuple[str, ...] = ()) -> dict[str, set[tuple[str, str, str]]]:
            listed.append(tuple(kinds))
            if len(listed) == 3:
                raise asyncio.CancelledError  # three sweeps seen: leave the loop
            return {kind: set() for kind in kinds}

    memo = SimpleNamespace(cache=cache_mod.Cache(), scheduler=None, clock=None)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(relist.run(memo.cache, Recording({}, set()), {}, memo, interval=0.001, first=0.0))  # type: ignore[arg-type]
    assert listed == [relist.KOPF_KINDS, relist.KINDS, relist.KINDS]
