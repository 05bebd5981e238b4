"""A queue's budgets (`energyKWh`, `carbonKg`): amounts per Day/Week/Month in the queue's time zone.

They are never borrowed or lent. As in the center energy ledger, an admitted job reserves its
estimate; settling drops the reservation and adds what the job used to the current period. A
reservation outlives a period boundary (the job still runs); `used` starts again at zero.
Part of the quota ledger (`ledger/quota.py`), which keeps one `QueueBudgets` per queue.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from suanli.ledger.energy import period_bounds
from suanli.ledger.quota_terms import BUDGET_UNITS, Budget, Shortfall, fits


@dataclasses.dataclass
class _Account:
    amount: float
    period: str
    period_start: float = -math.inf
    period_end: float = -math.inf
    label: str = ""
    used: float = 0.0  # settled in the current period
    reserved: float = 0.0  # by the jobs held

    @property
    def left(self) -> float:
        return self.amount - self.used - self.reserved


class QueueBudgets:
    """One queue's budget accounts; `roll(now)` moves each into the period containing now."""

    def __init__(self, budgets: Mapping[str, Budget], zone: str):
        self._zone = zone
        self._accounts = {d: _Account(b.amount, b.period) for d, b in budgets.items()}

    def copy(self) -> QueueBudgets:
        clone = QueueBudgets.__new__(QueueBudgets)
        clone._zone = self._zone
        clone._accounts = {d: dataclasses.replace(a) for d, a in self._accounts.items()}
        return clone

    def __contains__(self, dimension: str) -> bool:
        return dimension in self._accounts

    def roll(self, now: float) -> bool:
        """Start new periods where `now` has passed the end (or lies before the start); whether a
        period that had been set moved (the first call only sets them)."""
        moved = False
        for account in self._accounts.values():
            if now >= account.period_end or now < account.period_start:
                start, end, label = period_bounds(now, self._zone, account.period)
                moved = moved or account.period_end != -math.inf
                account.period_start, account.period_end, account.label = start, end, label
                account.used = 0.0
        return moved

    def next_boundary(self) -> float:
        """The earliest period end (+inf without budgets)."""
        return min((a.period_end for a in self._accounts.values()), default=math.inf)

    def label(self, dimension: str | None = None) -> str:
        """The current period of a budget ("Month 2026-12"); without `dimension`, the labels of all
        budgets, distinct, joined with ", " ("" without budgets or before `roll`)."""
        if dimension is not None:
            account = self._accounts.get(dimension)
            return account.label if account is not None else ""
        labels = [self._accounts[d].label for d in BUDGET_UNITS if d in self._accounts]
        return ", ".join(dict.fromkeys(label for label in labels if label))

    def period_start(self, dimension: str) -> float:
        """When the current period of a budget began (-inf before the first `roll`, or without it)."""
        account = self._accounts.get(dimension)
        return account.period_start if account is not None else -math.inf

    def shortfall(self, queue: str, dimension: str, need: float) -> Shortfall | None:
        """None if `need` fits what the budget has left (or the queue has no such budget)."""
        account = self._accounts.get(dimension)
        if account is None or fits(need, account.left):
            return None
        return Shortfall(queue, dimension, need, account.left, account.label)

    def reserve(self, amounts: Mapping[str, float]) -> None:
        for dimension, need in amounts.items():
            self._accounts[dimension].reserved += need

    def unreserve(self, amounts: Mapping[str, float], last: bool) -> None:
        """Drop reservations; `last` (the queue holds no job any more) sets them back to exact zeros."""
        for dimension, need in amounts.items():
            account = self._accounts[dimension]
            account.reserved = 0.0 if last else max(0.0, account.reserved - need)

    def add_used(self, amounts: Mapping[str, float]) -> None:
        """Add settled amounts to the current period (keys without a budget are ignored)."""
        for dimension, amount in amounts.items():
            account = self._accounts.get(dimension)
            if account is not None:
                account.used += amount

    def set_used(self, dimension: str, amount: float) -> None:
        account = self._accounts.get(dimension)
        if account is not None:
            account.used = amount

    def left(self, dimension: str) -> float:
        """`amount - used - reserved`; +inf without that budget."""
        account = self._accounts.get(dimension)
        return account.left if account is not None else math.inf

    def usage(self) -> dict[str, float]:
        """Per budget: used + reserved this period."""
        return {d: a.used + a.reserved for d, a in self._accounts.items()}
