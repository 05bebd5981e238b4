"""Terms of the quota ledger (`ledger/quota.py`): a queue's limits and budgets, and the shortfall that
says, for the person on call, which queue and dimension refused a job and what is left."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import zoneinfo
from collections.abc import Mapping
from typing import Any

import numpy as np

JobKey = tuple[str, str]

ACCELERATORS = "accelerators/"
COMPUTE_UNITS = "computeUnits"
BUDGET_UNITS = {"energyKWh": "kWh", "carbonKg": "kg"}
BUDGET_NAMES = {"energyKWh": "energy", "carbonKg": "carbon"}
PERIODS = ("Day", "Week", "Month")
EPS = 1e-9  # tolerance of every comparison, relative to the amount asked for (absolute below 1)


class QuotaError(ValueError):
    """An operation the ledger refuses; the ledger is unchanged. `shortfall` says why a demand
    did not fit (None for other refusals)."""

    def __init__(self, message: str, shortfall: Shortfall | None = None):
        super().__init__(message)
        self.shortfall = shortfall


def finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def fits(need: float, left: float) -> bool:
    """Whether `need` fits in `left`; nothing asked always fits (even over a budget)."""
    return need <= 0 or need <= left + EPS * max(1.0, abs(need))


def fits_each(needs: Any, left: float) -> Any:
    """`fits` of each of an array of needs against one `left` (a boolean array; numpy semantics)."""
    return (needs <= 0) | (needs <= left + EPS * np.maximum(1.0, np.abs(needs)))


def _num(x: float) -> str:
    """A number for people: integers as such, otherwise three significant digits."""
    if math.isinf(x):
        return "unlimited" if x > 0 else "-unlimited"
    r = round(x)
    if abs(x - r) <= EPS * max(1.0, abs(x)):
        return str(int(r))
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


@functools.lru_cache(maxsize=4096)
def accelerator_parts(dimension: str) -> tuple[str, str]:
    """(type, model) of `accelerators/TYPE[/MODEL]` (model "" for a type entry)."""
    parts = dimension[len(ACCELERATORS) :].split("/")
    if not dimension.startswith(ACCELERATORS) or len(parts) > 2 or not all(parts):
        raise ValueError(f"{dimension!r} is not an accelerator dimension: use accelerators/TYPE[/MODEL]")
    return parts[0], parts[1] if len(parts) == 2 else ""


@dataclasses.dataclass(frozen=True)
class Limit:
    """A concurrent quota: `borrowing_limit` None borrows without a per-queue cap (only what the
    cohort lends); `lending_limit` None lends all of the nominal."""

    nominal: float
    borrowing_limit: float | None = None
    lending_limit: float | None = None

    def validate(self, where: str) -> None:
        """Raise ValueError naming `where` (queue and dimension) if the numbers make no sense."""
        if not finite(self.nominal) or self.nominal < 0:
            raise ValueError(f"{where}: nominal must be a finite number >= 0 (got {self.nominal!r})")
        for label, value in (("borrowingLimit", self.borrowing_limit), ("lendingLimit", self.lending_limit)):
            if value is not None and (not finite(value) or value < 0):
                raise ValueError(f"{where}: {label} must be a finite number >= 0 or unset (got {value!r})")
        if self.lending_limit is not None and self.lending_limit > self.nominal:
            raise ValueError(
                f"{where}: lendingLimit {_num(self.lending_limit)} exceeds nominal {_num(self.nominal)}"
            )

    @property
    def lendable(self) -> float:
        return self.nominal if self.lending_limit is None else self.lending_limit

    @property
    def guaranteed(self) -> float:
        return self.nominal - self.lendable

    @property
    def cap(self) -> float:
        return math.inf if self.borrowing_limit is None else self.nominal + self.borrowing_limit


@dataclasses.dataclass(frozen=True)
class Budget:
    """An amount per Day, Week or Month (in the queue's time zone)."""

    amount: float
    period: str = "Month"

    def validate(self, where: str) -> None:
        if not finite(self.amount) or self.amount < 0:
            raise ValueError(f"{where}: amount must be a finite number >= 0 (got {self.amount!r})")
        if self.period not in PERIODS:
            raise ValueError(f"{where}: unknown budget period {self.period!r}: use Day, Week or Month")


@dataclasses.dataclass(frozen=True)
class QueueQuota:
    """One ComputeQueue's quota. Validated on construction (ValueError naming the dimension);
    the mappings are copied and frozen."""

    name: str
    cohort: str | None = None
    weight: float = 1.0
    limits: Mapping[str, Limit] = dataclasses.field(default_factory=dict)
    budgets: Mapping[str, Budget] = dataclasses.field(default_factory=dict)
    zone: str = "UTC"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a queue needs a name")
        if self.cohort == "":
            raise ValueError(f"queue {self.name}: cohort must be a name or unset")
        if not finite(self.weight) or self.weight <= 0:
            raise ValueError(f"queue {self.name}: weight must be a finite number > 0 (got {self.weight!r})")
        for dimension, limit in self.limits.items():
            where = f"queue {self.name} {dimension}"
            if dimension in BUDGET_UNITS:
                raise ValueError(f"{where}: a budget dimension, not a concurrent limit")
            if dimension.startswith(ACCELERATORS):
                try:
                    accelerator_parts(dimension)
                except ValueError as err:
                    raise ValueError(f"queue {self.name}: {err}") from None
            elif not dimension or "/" in dimension:
                raise ValueError(f"{where}: not a concurrent dimension")
            limit.validate(where)
        for dimension, budget in self.budgets.items():
            where = f"queue {self.name} {dimension}"
            if dimension not in BUDGET_UNITS:
                raise ValueError(f"{where}: budgets are {' and '.join(BUDGET_UNITS)}")
            budget.validate(where)
        try:
            zoneinfo.ZoneInfo(self.zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"queue {self.name}: unknown time zone {self.zone!r}") from None
        object.__setattr__(self, "limits", types.MappingProxyType(dict(self.limits)))
        object.__setattr__(self, "budgets", types.MappingProxyType(dict(self.budgets)))


@dataclasses.dataclass(frozen=True)
class Shortfall:
    """Why a demand does not fit a queue, in one dimension. `period` is the budget period's
    label ("" for concurrent dimensions). The other fields only shape the message:
    `listed` (the queue's accelerator entries, as "GPU" or "NPU Ascend910B") is set when the
    queue has no quota for the accelerator at all."""

    queue: str
    dimension: str
    need: float
    left: float
    period: str = ""
    nominal: float | None = None
    borrowing_limit: float | None = None
    cohort: str | None = None
    listed: tuple[str, ...] = ()

    def message(self) -> str:
        if self.listed:
            type_, model = accelerator_parts(self.dimension)
            what = f"{type_} {model}" if model else type_
            return (
                f"queue {self.queue} has no quota for {what} "
                f"(spec.quota.accelerators lists {', '.join(self.listed)})"
            )
        left = max(0.0, self.left)
        if self.dimension in BUDGET_UNITS:
            unit = BUDGET_UNITS[self.dimension]
            when = f" in {self.period}" if self.period else ""
            return (
                f"queue {self.queue} {BUDGET_NAMES[self.dimension]} budget: job needs "
                f"{_num(self.need)} {unit}, {_num(left)} {unit} left{when}"
            )
        text = f"queue {self.queue} {self.dimension}: job needs {_num(self.need)}, {_num(left)} left"
        if self.nominal is None:
            return text
        if self.cohort is None:
            lend = "no cohort to borrow from"
        elif self.borrowing_limit is None:
            lend = f"borrowing from cohort {self.cohort}"
        elif self.borrowing_limit <= 0:
            lend = f"no borrowing from cohort {self.cohort}"
        else:
            lend = f"borrowing up to {_num(self.borrowing_limit)} from cohort {self.cohort}"
        return f"{text} (nominal {_num(self.nominal)}, {lend})"


PoolKey = tuple[str, str, str]  # ("cohort" or "queue", its name, dimension)
