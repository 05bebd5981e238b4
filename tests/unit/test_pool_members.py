"""The nodes each pool counts, kept across node updates (kube/cache.py `pool_members`): when only a node's
readiness, schedulability or capacity changed, the pools' claims are reused and only their members taken
again; after any sequence of updates, deletions and relabellings the result is what matching every pool's
selector on every node from scratch (`pool_overlap.assign`) gives."""

from __future__ import annotations

import random

import pytest
from tests.unit.test_cache import CENTER, node

from suanli.kube import cache as cache_mod
from suanli.kube import pool_overlap

TWO_POOLS = {**CENTER, "spec": {**CENTER["spec"], "pools": [
    *CENTER["spec"]["pools"],
    {**CENTER["spec"]["pools"][0], "name": "other", "nodeSelector": {"suanli.io/pool": "c1-other"}},
    {**CENTER["spec"]["pools"][0], "name": "wide", "nodeSelector": {"tier": "big"}},  # may overlap: refused then
]}}


def fresh(cache: cache_mod.Cache) -> tuple[list[list[str]], list[str]]:
    fleet = cache.fleet()
    specs = [cache.pool_spec(info.center, info.pool) for info in fleet.pools]
    assigned = pool_overlap.assign(fleet.pools, specs, cache.centers, cache.center_raw, cache.nodes)
    return [[n.name for n in members] for members in assigned.members], assigned.refused


@pytest.mark.parametrize("seed", range(6))
def test_pool_members_kept_across_node_updates_are_what_matching_from_scratch_gives(seed: int) -> None:
    rng = random.Random(seed)
    cache = cache_mod.Cache()
    cache.upsert_center(TWO_POOLS)
    names = [f"n{i}" for i in range(8)]
    checked = 0
    for _ in range(200):
        name = rng.choice(names)
        roll = rng.random()
        if roll < 0.1:
            cache.delete_node(name)
        else:
            doc = node(name, ready=rng.random() < 0.7, gpus=rng.choice((4, 8)),
                       pool=rng.choice(("c1-a100", "c1-a100", "c1-other", "elsewhere")) if roll < 0.25 else
                       (cache.nodes[name].labels.get("suanli.io/pool", "c1-a100") if name in cache.nodes else "c1-a100"),
                       unschedulable=rng.random() < 0.1)
            if name in cache.nodes and roll >= 0.25 and "tier" in cache.nodes[name].labels:
                doc["metadata"]["labels"]["tier"] = "big"  # the same labels: only readiness or capacity moves
            elif roll < 0.15:
                doc["metadata"]["labels"]["tier"] = "big"
            cache.upsert_node(doc)
        if rng.random() < 0.5:
            _, members, refused = cache.pool_members(cache.fleet())
            assert ([[n.name for n in m] for m in members], refused) == fresh(cache), seed
            usable = {n.name for m in members for n in m}
            assert all(cache.nodes[n].usable for n in usable)  # the members are the current infos
            assert_claims_are_what_every_selector_matches(cache)
            checked += 1
    assert checked > 50


def assert_claims_are_what_every_selector_matches(cache: cache_mod.Cache) -> None:
    """`assign` finds a pool's nodes through a label index; against testing every node with the selector:
    a pool that is not refused claims exactly the nodes its selector matches, and a refused one matches a
    node that an earlier pool claims."""
    fleet = cache.fleet()
    specs = [cache.pool_spec(info.center, info.pool) for info in fleet.pools]
    assigned = pool_overlap.assign(fleet.pools, specs, cache.centers, cache.center_raw, cache.nodes)
    claimed_by_others = {n for claims in assigned.claimed for n in claims}
    for p, spec in enumerate(specs):
        matching = sorted(n for n, info in cache.nodes.items() if info.matches(spec.node_selector))
        if assigned.refused[p]:
            assert set(matching) & claimed_by_others, (p, assigned.refused[p])
        else:
            assert assigned.claimed[p] == matching, (p, spec.node_selector)
