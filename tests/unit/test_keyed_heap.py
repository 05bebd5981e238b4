"""KeyedHeap (kube/keyed_heap.py) against a plain dict after random puts, discards, peeks and pops,
enough of them that stale entries are compacted away several times."""

from __future__ import annotations

import random

import pytest

from suanli.kube import keyed_heap


@pytest.mark.parametrize("seed", range(6))
def test_keyed_heap_is_a_dict_with_its_minimum_at_hand(seed: int) -> None:
    rng = random.Random(seed)
    heap: keyed_heap.KeyedHeap[tuple[str, str]] = keyed_heap.KeyedHeap()
    model: dict[tuple[str, str], tuple[float, int]] = {}  # key -> (priority, when put)
    popped = 0
    for step in range(6000):
        key = ("ns", f"j{rng.randrange(40)}")
        roll = rng.random()
        if roll < 0.6:
            priority = float(rng.randrange(20))
            heap.put(key, priority)
            model[key] = (priority, step)
        elif roll < 0.85:
            heap.discard(key)
            model.pop(key, None)
        else:
            through = float(rng.randrange(20))
            due = sorted((v, k) for k, v in model.items() if v[0] <= through)
            assert list(heap.pop_through(through)) == [k for _, k in due]
            for _, k in due:
                del model[k]
            popped += len(due)
        assert len(heap) == len(model)
        assert all((k in heap) and heap.get(k) == v[0] for k, v in model.items())
        first = min(((v, k) for k, v in model.items()), default=None)
        assert heap.peek() == (None if first is None else (first[0][0], first[1]))
    assert popped > 100
    assert len(heap._heap) <= 2 * 40 + 1025  # compacted: 3,600 puts on 40 keys, stale entries do not pile up
