"""Every hard filter, table-driven: the pool is rejected with a reason that names the problem."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit import builders as b

# (case, center kwargs, job kwargs, expected phase, words the reason must contain)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str, str]] = [
    ("fits", {}, {}, "Bound", ""),
    ("type", {}, {"types": ("NPU",)}, "Queued", "pool is GPU; job accepts NPU"),
    ("model allow-list", {}, {"models": ("H100",)}, "Queued", "model A100 is not in accelerators.models"),
    (
        "precision",
        {"pools": [b.pool(model="V100")]},
        {"precision": "bf16"},
        "Queued",
        "V100 has no bf16 support",
    ),
    (
        "memory",
        {"pools": [b.pool(model="T4")]},
        {"min_memory": 40},
        "Queued",
        "needs 40 GiB per accelerator; T4 has 16",
    ),
    (
        "region",
        {},
        {"data": {"allowedRegions": ["cn-b"]}},
        "Queued",
        "region cn-a is not in data.allowedRegions",
    ),
    ("gang never fits", {}, {"replicas": 3, "count": 8}, "Queued", "never fits: even empty the pool holds 2"),
    ("count beyond node", {}, {"count": 16}, "Queued", "never fits"),
    ("budget", {"budget_kwh": 1.0}, {"count": 8}, "Queued", "center energy budget: job needs"),
    ("job kWh cap", {}, {"count": 8, "energy": {"maxKWh": 0.5}}, "Queued", "exceeds energy.maxKWh 0.5"),
    (
        "job carbon cap",
        {},
        {"count": 8, "energy": {"maxCarbonKg": 0.1}},
        "Queued",
        "exceeds energy.maxCarbonKg 0.1",
    ),
    (
        "deadline",
        {},
        {"duration": "10h", "deadline": "2026-11-18T15:00:00Z"},
        "Queued",
        "cannot meet the deadline",
    ),
    ("no nodes", {"pools": [b.pool(nodes=0)]}, {}, "Queued", "pool has no nodes"),
]


@pytest.mark.parametrize(("case", "center_kw", "job_kw", "phase", "words"), CASES, ids=[c[0] for c in CASES])
def test_filter(case: str, center_kw: dict[str, Any], job_kw: dict[str, Any], phase: str, words: str) -> None:
    reply = b.run_plan([b.center(**center_kw)], [b.job(**job_kw)])
    decision = reply.decisions[0]
    assert decision.phase == phase, decision.message
    if phase == "Queued":
        assert decision.rejected, "a waiting job must say why"
        assert words in decision.rejected[0].reason
        assert decision.binding is None


def test_capacity_is_consumed_in_queue_order_and_the_loser_is_told_why() -> None:
    center = b.center(pools=[b.pool(nodes=1, per_node=8)])
    jobs = [b.job("low", count=8, priority=1), b.job("high", count=8, priority=10)]
    reply = b.run_plan([center], jobs)
    assert [(d.job.name, d.phase) for d in reply.decisions] == [("high", "Bound"), ("low", "Queued")]
    assert "not enough free accelerators now" in reply.decisions[1].rejected[0].reason
    assert "not enough free accelerators" in reply.decisions[1].message


def test_gang_needs_each_replica_on_one_node() -> None:
    # Two nodes with 8 each: 16 free in total, but a replica of 12 fits on none.
    reply = b.run_plan([b.center()], [b.job(count=12)])
    assert reply.decisions[0].phase == "Queued"
    # 4 replicas of 4 fit (two per node), all in one pool.
    reply = b.run_plan([b.center()], [b.job(count=4, replicas=4)])
    decision = reply.decisions[0]
    assert decision.phase == "Bound" and decision.allocation is not None
    assert sorted(decision.allocation.nodes) == [0, 0, 1, 1]


def test_type_without_image_is_not_a_candidate() -> None:
    j = b.job(types=("GPU", "NPU"))
    j.spec.images.pop("NPU")
    reply = b.run_plan([b.center(pools=[b.pool(type_="NPU", model="Ascend910B")])], [j])
    assert reply.decisions[0].phase == "Queued"
    assert "job accepts GPU" in reply.decisions[0].rejected[0].reason
