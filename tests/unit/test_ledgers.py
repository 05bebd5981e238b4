"""Ledger operations the operator uses to rebuild its books each cycle: bulk fill and settled energy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.ledger import capacity as capacity_mod
from suanli.ledger import energy as energy_mod


def one_by_one(ledger: capacity_mod.CapacityLedger, pool: int, replicas: int, count: int) -> int:
    """The reference: `reserve(pool, 1, count)` until it fails or `replicas` are placed."""
    placed = 0
    for _ in range(replicas):
        try:
            ledger.reserve(pool, 1, count)
        except capacity_mod.CapacityError:
            break
        placed += 1
    return placed


@settings(max_examples=300, deadline=None)
@given(
    caps=st.lists(st.integers(0, 16), min_size=1, max_size=12),
    used=st.lists(st.integers(0, 16), min_size=12, max_size=12),
    replicas=st.integers(0, 40),
    count=st.integers(1, 9),
)
def test_fill_places_exactly_what_repeated_best_fit_reserves_would(
    caps: list[int], used: list[int], replicas: int, count: int
) -> None:
    free = [max(0, c - u) for c, u in zip(caps, used, strict=False)]
    bulk = capacity_mod.CapacityLedger([free], [caps])
    reference = capacity_mod.CapacityLedger([free], [caps])
    placed = bulk.fill(0, replicas, count)
    assert placed == one_by_one(reference, 0, replicas, count)
    assert bulk.free_per_node(0) == reference.free_per_node(0)
    assert (bulk.histogram() == reference.histogram()).all()
    assert bulk.oversubscription() == 0


def test_fill_takes_the_tightest_node_first_and_reports_what_did_not_fit() -> None:
    ledger = capacity_mod.CapacityLedger([[8, 3, 5, 8]], [[8, 8, 8, 8]])
    assert ledger.fill(0, 4, 2) == 4  # 5 -> 1 (two replicas), then 3 -> 1, then node 0: 8 -> 6
    assert ledger.free_per_node(0) == (6, 1, 1, 8)
    assert ledger.fill(0, 100, 4) == 3  # 6 -> 2, then 8 -> 0 (two)
    assert ledger.free_per_node(0) == (2, 1, 1, 0)
    assert ledger.fill(0, 0, 4) == 0


def test_add_used_counts_in_the_current_period_and_refuses_nonsense() -> None:
    ledger = energy_mod.EnergyLedger([("c1", "UTC", 100.0, "Day")])
    ledger.roll(86_400 * 10 + 5)
    ledger.add_used("c1", 30.0, 12.0)
    ledger.reserve("c1", ("ns", "j"), 20.0)
    account = ledger.account("c1")
    assert (account.used_kwh, account.total_carbon_kg, account.remaining_kwh) == (30.0, 12.0, 50.0)
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(energy_mod.EnergyError, match="finite, non-negative"):
            ledger.add_used("c1", bad)
    assert account.used_kwh == 30.0


def test_hold_counts_as_reserved_beside_per_job_reservations_and_survives_copy() -> None:
    ledger = energy_mod.EnergyLedger([("c1", "UTC", 100.0, "Day")])
    ledger.roll(5.0)
    ledger.hold("c1", 25.0)
    ledger.reserve("c1", ("ns", "new"), 10.0)
    clone = ledger.copy()
    for book in (ledger, clone):
        assert (book.account("c1").reserved_kwh, book.remaining("c1")) == (35.0, 65.0)
    assert ledger.release(("ns", "new")) == 10.0
    assert ledger.remaining("c1") == 75.0 and clone.remaining("c1") == 65.0
    with pytest.raises(energy_mod.EnergyError, match="finite, non-negative"):
        ledger.hold("c1", -1.0)


@settings(max_examples=200, deadline=None)
@given(
    caps=st.lists(st.integers(0, 16), min_size=1, max_size=10),
    nodes=st.lists(st.integers(0, 9), max_size=30),
    count=st.integers(1, 4),
)
def test_reserve_on_release_and_take_agree_with_node_by_node_accounting(caps: list[int], nodes: list[int],
                                                                        count: int) -> None:
    """The vectorised replay of a known placement (reserve_on, release, and take's aggregated form)
    books exactly what subtracting `count` per listed replica does, all or nothing."""
    nodes = [n for n in nodes if n < len(caps)]
    expected = list(caps)
    for n in nodes:
        expected[n] -= count
    ledger, aggregated = capacity_mod.CapacityLedger([caps]), capacity_mod.CapacityLedger([caps])
    per_node = [nodes.count(i) for i in range(len(caps))]
    if min(expected, default=0) < 0:
        with pytest.raises(capacity_mod.CapacityError):
            ledger.reserve_on(capacity_mod.Allocation(0, tuple(nodes), count))
        with pytest.raises(capacity_mod.CapacityError):
            aggregated.take(0, np.array(per_node), count)
        assert ledger.free_per_node(0) == aggregated.free_per_node(0) == tuple(caps)  # unchanged
        return
    ledger.reserve_on(capacity_mod.Allocation(0, tuple(nodes), count))
    aggregated.take(0, np.array(per_node), count)
    assert ledger.free_per_node(0) == aggregated.free_per_node(0) == tuple(expected)
    assert (ledger.histogram() == aggregated.histogram()).all()
    ledger.release(capacity_mod.Allocation(0, tuple(nodes), count))
    assert ledger.free_per_node(0) == tuple(caps)
    with pytest.raises(capacity_mod.CapacityError, match="out of range"):
        ledger.reserve_on(capacity_mod.Allocation(0, (len(caps),), count))
