"""How a feasible pool is chosen: by score (the profiles), or by a baseline for comparison.

Baselines use the same hard filters as the profiles (a baseline never breaks a constraint)
and only choose differently among the feasible pools:
  first-fit     the first feasible pool in declared order (centers as listed, pools as listed),
                as a flavor-ordered queue (Kueue ResourceFlavors) does
  least-loaded  the feasible pool with the largest free fraction of its accelerators
  random        a feasible pool drawn uniformly with a seeded generator
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt

from suanli.ledger import capacity as capacity_mod
from suanli.scoring import demand as demand_mod
from suanli.scoring import engine
from suanli.scoring import fleet as fleet_mod

SCORE = "score"
BASELINES = ("first-fit", "random", "least-loaded")


def choose(
    policy: str,
    fleet: fleet_mod.Fleet,
    evaluation: engine.Evaluation,
    row: int,
    ledger: capacity_mod.CapacityLedger,
    job: demand_mod.JobDemand,
    seed: int,
) -> int:
    """Index of the chosen pool among the feasible ones of one evaluation row, -1 if none."""
    feasible = np.flatnonzero(evaluation.feasible[row])
    if feasible.size == 0:
        return -1
    if policy == SCORE:
        scores = evaluation.score[row, feasible]
        return int(feasible[int(np.argmax(scores))])  # pools sorted by name: first max = name tie-break
    if policy == "first-fit":
        order = np.array([fleet.pools[i].declared_order for i in feasible])
        return int(feasible[int(np.argmin(order))])
    if policy == "least-loaded":
        fractions: npt.NDArray[np.float64] = np.array(
            [ledger.free(int(i)) / max(ledger.capacity(int(i)), 1) for i in feasible]
        )
        return int(feasible[int(np.argmax(fractions))])
    if policy == "random":
        rng = np.random.default_rng([seed, zlib.crc32(f"{job.namespace}/{job.name}".encode())])
        return int(feasible[int(rng.integers(feasible.size))])
    raise ValueError(f"unknown policy {policy!r}: use score, first-fit, random or least-loaded")
