"""Pools never overlap, end to end: two ComputeCenters whose pools select the same kwok nodes. The
later center's pool is refused (capacity 0, a PoolsOverlap condition naming both pools and a node,
the reason on the pool's status entry and on the jobs it rejects); the earlier pool keeps binding
jobs, which succeed there. Every wait has a deadline; nothing sleeps blindly."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from tests.e2e.helpers import (
    EXPECT_TIMEOUT_S,
    GROUP,
    VERSION,
    assert_ran_in_bound_pool,
    centers_fixture,  # noqa: F401  (the `centers` fixture)
    compute_job,
    get_center,
    get_job,
    job_phases,
    operator_fixture,  # noqa: F401  (the `operator` fixture)
    small_center,
    wait_for_phase,
)

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


def conditions(center: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (center.get("status") or {}).get("conditions") or []}


def test_a_later_center_selecting_the_same_nodes_is_refused_and_the_earlier_keeps_working(
    kube, operator, fake_nodes, centers, namespace, custom_objects, wait_for
):
    prefix = f"e2e-ovl-{uuid.uuid4().hex[:5]}"
    # Created in this order, and named so that the name order agrees (creation times have a resolution
    # of one second: a tie falls back to the name).
    first, later = f"{prefix}-a", f"{prefix}-b"
    first_doc = small_center(first, nodes_expected=2)
    later_doc = small_center(later, nodes_expected=2)
    later_doc["spec"]["pools"][0]["nodeSelector"] = dict(first_doc["spec"]["pools"][0]["nodeSelector"])
    nodes = fake_nodes(first_doc, nodes_per_pool=2)
    centers([first_doc])
    centers([later_doc])

    def refused() -> dict[str, Any] | None:
        status = get_center(custom_objects, later).get("status") or {}
        overlap = conditions({"status": status}).get("PoolsOverlap") or {}
        pool = (status.get("pools") or [{}])[0]
        return status if overlap.get("status") == "True" and pool.get("refused") else None

    status = wait_for(refused, EXPECT_TIMEOUT_S, lambda: get_center(custom_objects, later).get("status"),
                      what=f"ComputeCenter {later} to report its pool refused")
    overlap = conditions({"status": status})["PoolsOverlap"]
    assert overlap["reason"] == "SelectorsOverlap"
    message = overlap["message"]
    assert f"pool {later}/a100 refused" in message and f"pool {first}/a100" in message, message
    assert any(f"node {n} " in message for n in nodes), (message, nodes)
    pool = status["pools"][0]
    assert (pool["capacity"], pool["free"], pool["readyNodes"]) == (0, 0, 0) and pool["refused"] == message
    assert conditions({"status": status})["Ready"]["status"] == "False"

    def disjoint() -> dict[str, Any] | None:
        st = get_center(custom_objects, first).get("status") or {}
        ok = (conditions({"status": st}).get("PoolsOverlap") or {}).get("status") == "False"
        return st if ok and st["pools"][0]["capacity"] == 16 else None

    status = wait_for(disjoint, EXPECT_TIMEOUT_S, lambda: get_center(custom_objects, first).get("status"),
                      what=f"ComputeCenter {first} to keep its 2 nodes (16 GPUs)")
    assert conditions({"status": status})["PoolsOverlap"]["reason"] == "Disjoint"
    assert "refused" not in status["pools"][0]

    # Three jobs of 8 GPUs on 2 nodes of 8: all run on the earlier center's pool, two at a time.
    names = [f"j{i}" for i in range(3)]
    for name in names:
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", compute_job(name, namespace))
    # A gang that fits nowhere waits, and its rejections say why the later pool cannot take it.
    too_big = compute_job("too-big", namespace, replicas=3)
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", too_big)
    for name in names:
        wait_for_phase(custom_objects, namespace, name, "Succeeded", what=f"job {name} to succeed")
        binding = get_job(custom_objects, namespace, name)["status"]["binding"]
        assert (binding["center"], binding["pool"]) == (first, "a100"), binding
    assert_ran_in_bound_pool(kube, namespace, *names, exclusive=True)

    def rejected() -> str | None:
        status = get_job(custom_objects, namespace, "too-big").get("status") or {}
        why = {(r["center"], r["pool"]): r["reason"] for r in status.get("rejected") or []}
        return why.get((later, "a100")) if status.get("phase") == "Queued" else None

    reason = wait_for(rejected, EXPECT_TIMEOUT_S, lambda: job_phases(custom_objects, namespace),
                      what="the too-big job to be Queued with the later pool's rejection")
    assert f"pool {later}/a100 refused" in reason and f"pool {first}/a100" in reason, reason
    assert get_center(custom_objects, later)["status"]["pools"][0]["capacity"] == 0
