"""Pools never overlap (pure): a node matching the selectors of two pools, in one center or across
centers, counts in the earlier pool only; the later pool is refused whole, with a reason naming both
pools and the node, on the jobs it rejects and on its center's status. Builders: tests/unit/test_cache.py."""

from __future__ import annotations

import copy
from typing import Any

from tests.unit.test_cache import CENTER, NOW, cjob, node

from suanli.kube import cache as cache_mod
from suanli.kube import snapshot as snapshot_mod
from suanli.kube import status as status_mod
from suanli.placement import planner

A100_POOL = CENTER["spec"]["pools"][0]


def center(name: str, created: str | None, *selectors: dict[str, str]) -> dict[str, Any]:
    """A center like test_cache's CENTER, one A100 pool per selector (named a, b, ...)."""
    doc = copy.deepcopy(CENTER)
    doc["metadata"] = {"name": name, "generation": 1, "uid": f"uid-{name}"}
    if created is not None:
        doc["metadata"]["creationTimestamp"] = created
    doc["spec"]["pools"] = [{**copy.deepcopy(A100_POOL), "name": chr(ord("a") + i), "nodeSelector": sel}
                            for i, sel in enumerate(selectors)]
    return doc


def labelled(name: str, **labels: str) -> dict[str, Any]:
    doc = node(name)
    doc["metadata"]["labels"].update(labels)
    return doc


def usage_of(snap: snapshot_mod.Snapshot) -> dict[str, tuple[int, int]]:
    """center/pool -> (capacity, Ready nodes)."""
    return {f"{u.center}/{u.pool}": (u.capacity, u.ready_nodes) for u in snap.usage}


def reason_of(snap: snapshot_mod.Snapshot, center_name: str, pool: str) -> str:
    index = snap.fleet.pool_index(center_name, pool)
    assert index is not None
    return snap.not_ready_reason[index]


def plan(snap: snapshot_mod.Snapshot) -> planner.PlanReply:
    return planner.plan(planner.PlanRequest(
        fleet=snap.fleet, capacity=snap.capacity, energy=snap.energy, jobs=snap.queue, now=NOW,
        ready=snap.ready, not_ready_reason=snap.not_ready_reason,
    ))


SAME = {"suanli.io/pool": "c1-a100"}  # test_cache's node() label


def test_two_pools_of_one_center_sharing_a_node_count_it_once() -> None:
    cache = cache_mod.Cache()
    cache.upsert_center(center("guian", "2026-01-01T00:00:00Z", SAME, {"zone": "z1"}))
    cache.upsert_node(labelled("n1", zone="z1"))  # both pools
    cache.upsert_node(node("n2"))  # pool a only
    cache.upsert_node(labelled("n3", zone="z1", **{"suanli.io/pool": "other"}))  # pool b only
    snap = cache.snapshot(NOW)
    # Before: n1's 8 GPUs counted in both pools (a: 16, b: 16), so two jobs could be bound to them.
    assert usage_of(snap) == {"guian/a": (16, 2), "guian/b": (0, 0)}
    assert list(snap.ready) == [True, False]
    reason = reason_of(snap, "guian", "b")
    assert "pool guian/b refused" in reason and "node n1" in reason and "pool guian/a" in reason, reason
    assert "disjoint" in reason


def test_across_centers_the_older_center_keeps_the_node_whatever_the_names() -> None:
    cache = cache_mod.Cache()
    # "aaa" sorts first by name but was created later: "zzz" keeps the nodes.
    cache.upsert_center(center("aaa", "2026-02-01T00:00:00Z", SAME))
    cache.upsert_center(center("zzz", "2026-01-01T00:00:00Z", SAME))
    for name in ("n1", "n2"):
        cache.upsert_node(node(name))
    snap = cache.snapshot(NOW)
    assert usage_of(snap) == {"aaa/a": (0, 0), "zzz/a": (16, 2)}
    reason = reason_of(snap, "aaa", "a")
    assert reason.startswith("pool aaa/a refused: node n1") and "pool zzz/a" in reason, reason
    assert reason_of(snap, "zzz", "a") == ""


def test_same_creation_time_falls_back_to_the_center_name() -> None:
    cache = cache_mod.Cache()
    for name in ("c2", "c1"):
        cache.upsert_center(center(name, "2026-01-01T00:00:00Z", SAME))
    cache.upsert_node(node("n1"))
    assert usage_of(cache.snapshot(NOW)) == {"c1/a": (8, 1), "c2/a": (0, 0)}


def test_the_earlier_pool_binds_jobs_and_the_refused_one_explains_itself() -> None:
    cache = cache_mod.Cache()
    cache.upsert_center(center("old", "2026-01-01T00:00:00Z", SAME))
    cache.upsert_center(center("new", "2026-03-01T00:00:00Z", SAME))
    for name in ("n1", "n2"):
        cache.upsert_node(node(name))
    for i in range(3):
        cache.upsert_job(cjob(f"j{i}"), NOW + i)
    reply = plan(cache.snapshot(NOW))
    bound = [(d.job.name, d.binding.pool.center) for d in reply.decisions if d.phase == "Bound" and d.binding]
    assert bound == [("j0", "old"), ("j1", "old")]  # 2 nodes x 8 GPUs, never 4 jobs on them
    assert reply.capacity.oversubscription() == 0
    waiting = reply.decisions[-1]
    assert waiting.phase == "Queued"
    why = {f"{r.pool.center}/{r.pool.pool}": r.reason for r in waiting.rejected}  # what its status shows
    assert "pool new/a refused: node n1 also matches pool old/a (created earlier)" in why["new/a"], why
    assert "not enough free accelerators" in why["old/a"], why

    # The status of the center owning the refused pool says so; the other center's says Disjoint.
    snap = cache.snapshot(NOW)
    by_center = snapshot_mod.usage_by_center(snap)
    new = status_mod.center("new", 1, by_center["new"], None, None, {}, NOW)
    conditions = {c["type"]: c for c in new["conditions"]}
    overlap = conditions["PoolsOverlap"]
    assert (overlap["status"], overlap["reason"]) == ("True", "SelectorsOverlap")
    assert "new/a" in overlap["message"] and "old/a" in overlap["message"] and "n1" in overlap["message"]
    assert new["pools"][0]["capacity"] == 0 and new["pools"][0]["refused"] == overlap["message"]
    old = status_mod.center("old", 1, by_center["old"], None, None, {}, NOW)
    assert {c["type"]: (c["status"], c["reason"]) for c in old["conditions"]}["PoolsOverlap"] == ("False", "Disjoint")
    assert "refused" not in old["pools"][0] and old["pools"][0]["capacity"] == 16
    # The transition time is kept while the condition holds, as for Ready and Degraded.
    again = status_mod.center("new", 1, by_center["new"], None, None, {**new}, NOW + 60)
    times = {c["type"]: c["lastTransitionTime"] for c in again["conditions"]}
    assert times["PoolsOverlap"] == overlap["lastTransitionTime"]
    assert not status_mod.center_changed(new, again)


def test_relabelling_the_shared_node_brings_the_refused_pool_back() -> None:
    cache = cache_mod.Cache()
    cache.upsert_center(center("guian", "2026-01-01T00:00:00Z", SAME, {"zone": "z1"}))
    cache.upsert_node(labelled("n1", zone="z1"))
    cache.upsert_node(labelled("n3", zone="z1", **{"suanli.io/pool": "other"}))
    assert usage_of(cache.snapshot(NOW)) == {"guian/a": (8, 1), "guian/b": (0, 0)}
    cache.upsert_node(node("n1"))  # zone label removed: n1 is pool a's only
    snap = cache.snapshot(NOW)
    assert usage_of(snap) == {"guian/a": (8, 1), "guian/b": (8, 1)}
    assert list(snap.ready) == [True, True] and reason_of(snap, "guian", "b") == ""
    status = status_mod.center("guian", 1, snapshot_mod.usage_by_center(snap)["guian"], None, None, {}, NOW)
    assert {c["type"]: c["status"] for c in status["conditions"]}["PoolsOverlap"] == "False"
    assert all("refused" not in p for p in status["pools"])


def test_a_shared_node_that_is_not_ready_still_refuses_the_later_pool() -> None:
    """Overlap is a property of the selectors: it does not come and go as the node's readiness does."""
    cache = cache_mod.Cache()
    cache.upsert_center(center("guian", "2026-01-01T00:00:00Z", SAME, {"zone": "z1"}))
    cache.upsert_node(labelled("n1", zone="z1"))
    cache.upsert_node(node("n2"))
    not_ready = labelled("n1", zone="z1")
    not_ready["status"]["conditions"][0]["status"] = "False"
    cache.upsert_node(not_ready)
    snap = cache.snapshot(NOW)
    assert usage_of(snap) == {"guian/a": (8, 1), "guian/b": (0, 0)}
    assert "node n1" in reason_of(snap, "guian", "b")


def test_membership_is_kept_until_a_node_or_the_fleet_changes() -> None:
    cache = cache_mod.Cache()
    cache.upsert_center(center("guian", "2026-01-01T00:00:00Z", SAME, {"zone": "z1"}))
    cache.upsert_node(labelled("n1", zone="z1"))
    fleet = cache.fleet()
    first = cache.pool_members(fleet)
    assert cache.pool_members(fleet)[1] is first[1]  # not recomputed
    cache.upsert_node(node("n1"))
    assert cache.pool_members(fleet)[1] is not first[1]
