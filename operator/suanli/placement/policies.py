"""How a feasible pool is chosen: by score (the profiles), by green's rule, or by a baseline for comparison.

Profiles choose the pool with the highest score, except `green` (with its own weights): it chooses the
pool with the least carbon, where every second the pool would hold the job's gang (transfer and run)
also counts, at the carbon that second emits on the reference site (national grid and PUE, the
reference accelerator: `Evaluation.reference_carbon_rate`) times the fraction of the fleet's
accelerators in use. On an idle fleet that charge is nothing and green takes the cleanest pool; on a
full one, a clean but slow pool has to save more carbon than the time it holds costs, since that time
is what the jobs queued behind it wait for. The score of each pool is unchanged (still monotone in each
factor); only the choice among feasible pools weighs the time held.

Baselines use the same hard filters as the profiles (a baseline never breaks a constraint)
and only choose differently among the feasible pools:
  first-fit     the first feasible pool in declared order (centers as listed, pools as listed),
                as a flavor-ordered queue (Kueue ResourceFlavors) does
  least-loaded  the feasible pool with the largest free fraction of its accelerators
  random        a feasible pool drawn uniformly with a seeded generator
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import numpy.typing as npt

from suanli.ledger import capacity as capacity_mod
from suanli.scoring import demand as demand_mod
from suanli.scoring import engine, profiles
from suanli.scoring import fleet as fleet_mod

SCORE = "score"
BASELINES = ("first-fit", "random", "least-loaded")
GREEN = "green"

FloatArray = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class GreenCharge:
    """Green's cost of each pool of one evaluation row (kg CO2e; +inf where infeasible)."""

    busy: float  # fraction of the fleet's accelerators in use when the job was planned
    carbon_kg: FloatArray  # the job's estimated carbon per pool
    hold_kg: FloatArray  # the charge for the time each pool would hold the gang

    @property
    def cost(self) -> FloatArray:
        return self.carbon_kg + self.hold_kg


def uses_green_rule(job: demand_mod.JobDemand) -> bool:
    """Green's profile with its own weights (a job that sets weights is chosen by its score)."""
    return job.profile == GREEN and job.weights == profiles.weights_for(GREEN)


def green_charge(evaluation: engine.Evaluation, row: int, ledger: capacity_mod.CapacityLedger) -> GreenCharge:
    busy = ledger.busy_fraction()
    held = evaluation.runtime_s[row] + evaluation.transfer_s[row]
    hold = busy * float(evaluation.reference_carbon_rate[row]) * held
    carbon = evaluation.carbon_kg[row]
    feasible = evaluation.feasible[row]
    return GreenCharge(busy, np.where(feasible, carbon, np.inf), np.where(feasible, hold, np.inf))


def ranking(
    policy: str,
    evaluation: engine.Evaluation,
    row: int,
    ledger: capacity_mod.CapacityLedger,
    job: demand_mod.JobDemand,
) -> tuple[FloatArray, GreenCharge | None]:
    """Per pool, how good a choice it is under a scoring policy (higher is better; infeasible pools
    lowest): the score, or minus green's cost; and green's terms when its rule ranked (else None)."""
    if policy == SCORE and uses_green_rule(job):
        charge = green_charge(evaluation, row, ledger)
        ranks: FloatArray = -charge.cost
        return ranks, charge
    return evaluation.score[row], None


def choose(
    policy: str,
    fleet: fleet_mod.Fleet,
    evaluation: engine.Evaluation,
    row: int,
    ledger: capacity_mod.CapacityLedger,
    job: demand_mod.JobDemand,
    seed: int,
    ranks: FloatArray | None = None,
) -> int:
    """Index of the chosen pool among the feasible ones of one evaluation row, -1 if none. `ranks`: the
    row's `ranking`, when the caller has it already."""
    feasible = np.flatnonzero(evaluation.feasible[row])
    if feasible.size == 0:
        return -1
    if policy == SCORE:
        if ranks is None:
            ranks = ranking(policy, evaluation, row, ledger, job)[0]
        return int(feasible[int(np.argmax(ranks[feasible]))])  # pools sorted by name: first max = name tie-break
    if policy == "first-fit":
        order = np.array([fleet.pools[i].declared_order for i in feasible])
        return int(feasible[int(np.argmin(order))])
    if policy == "least-loaded":
        fractions: FloatArray = np.array(
            [ledger.free(int(i)) / max(ledger.capacity(int(i)), 1) for i in feasible]
        )
        return int(feasible[int(np.argmax(fractions))])
    if policy == "random":
        rng = np.random.default_rng([seed, zlib.crc32(f"{job.namespace}/{job.name}".encode())])
        return int(feasible[int(rng.integers(feasible.size))])
    raise ValueError(f"unknown policy {policy!r}: use score, first-fit, random or least-loaded")
