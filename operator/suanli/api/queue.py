"""ComputeQueue: a tenant of the computing network — which namespaces' jobs it admits, its quota
(accelerators per type and model, compute units in A100-equivalents, energy and carbon per
period), the cohort it lends to and borrows from, its fair-share weight and its preemption policy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from suanli.api import common
from suanli.catalog import accelerators

AcceleratorType = accelerators.AcceleratorType
Period = Literal["Day", "Week", "Month"]


class SelectorRequirement(common.Model):
    """One label requirement, as in a Kubernetes label selector."""

    key: str = Field(min_length=1, max_length=317, description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[str] = Field(default_factory=list, description="Values for In and NotIn; empty otherwise.")

    @model_validator(mode="after")
    def _values_fit_operator(self) -> SelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"matchExpressions[].values must not be empty with operator {self.operator}; list the values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"matchExpressions[].values must be empty with operator {self.operator}; drop them")
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return labels.get(self.key) in self.values
        return self.key not in labels or labels[self.key] not in self.values


class LabelSelector(common.Model):
    """Which namespaces, by their labels (all requirements must hold; empty: every namespace)."""

    match_labels: dict[str, str] = Field(default_factory=dict, description="Labels the namespace must carry.")
    match_expressions: list[SelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Further requirements on the namespace's labels."
    )

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(labels) for r in self.match_expressions
        )


class AcceleratorQuota(common.Model):
    """Concurrent accelerators of one type (and optionally one model) the queue's jobs may hold."""

    type: AcceleratorType = Field(description="GPU, NPU, DCU or MLU.")
    model: str | None = Field(default=None, min_length=1, max_length=63, description="Only this model (omitted: any model of the type).")
    count: int = Field(ge=0, description="Nominal quota: accelerators held at once.")
    borrowing_limit: int | None = Field(
        default=None, ge=0, description="At most this many more may be borrowed from the cohort (omitted: no limit)."
    )
    lending_limit: int | None = Field(
        default=None, ge=0, description="At most this much of the quota is lent to the cohort (omitted: all of it)."
    )

    @model_validator(mode="after")
    def _lend_at_most_quota(self) -> AcceleratorQuota:
        if self.lending_limit is not None and self.lending_limit > self.count:
            raise ValueError(
                f"lendingLimit {self.lending_limit} is more than count {self.count}: a queue lends at most its own quota"
            )
        return self

    @property
    def dimension(self) -> str:
        return f"accelerators/{self.type}" + (f"/{self.model}" if self.model else "")


class EnergyBudget(common.Model):
    """Facility energy (PUE included) the queue's jobs may use per period."""

    k_wh: float = Field(ge=0, alias="kWh", description="kWh per period.")
    period: Period = Field(default="Month", description="Day, Week (from Monday) or Month, in spec.timeZone.")


class CarbonBudget(common.Model):
    """Carbon the queue's jobs may emit per period (grid intensity of the center where each ran)."""

    kg: float = Field(ge=0, description="kg CO2e per period.")
    period: Period = Field(default="Month", description="Day, Week (from Monday) or Month, in spec.timeZone.")


class Quota(common.Model):
    """Every dimension is optional: one not given does not limit the queue. Accelerator entries, once
    any is given, are the only types (and models) the queue's jobs may use."""

    accelerators: list[AcceleratorQuota] = Field(
        default_factory=list, max_length=32, description="Concurrent accelerators per type, optionally per model."
    )
    compute_units: float | None = Field(
        default=None, ge=0,
        description="Concurrent compute in A100-equivalents: accelerators x (the model's peak at the job's precision "
        "/ the A100's).",
    )
    compute_units_borrowing_limit: float | None = Field(
        default=None, ge=0, description="Compute units that may be borrowed from the cohort (omitted: no limit)."
    )
    compute_units_lending_limit: float | None = Field(
        default=None, ge=0, description="Compute units lent to the cohort at most (omitted: all of computeUnits)."
    )
    energy: EnergyBudget | None = Field(default=None, description="Energy budget per period (never borrowed).")
    carbon: CarbonBudget | None = Field(default=None, description="Carbon budget per period (never borrowed).")

    @field_validator("accelerators")
    @classmethod
    def _unique_entries(cls, entries: list[AcceleratorQuota]) -> list[AcceleratorQuota]:
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            if entry.dimension in seen:
                what = f"type {entry.type}" + (f" model {entry.model}" if entry.model else "")
                raise ValueError(f"accelerators[{i}] repeats {what}; keep one entry per type and model")
            seen.add(entry.dimension)
        return entries

    @model_validator(mode="after")
    def _compute_units_limits(self) -> Quota:
        if self.compute_units is None and (
            self.compute_units_borrowing_limit is not None or self.compute_units_lending_limit is not None
        ):
            raise ValueError("computeUnitsBorrowingLimit and computeUnitsLendingLimit need computeUnits; set it or drop them")
        if self.compute_units_lending_limit is not None and self.compute_units is not None and (
            self.compute_units_lending_limit > self.compute_units
        ):
            raise ValueError(
                f"computeUnitsLendingLimit {self.compute_units_lending_limit:g} is more than computeUnits "
                f"{self.compute_units:g}: a queue lends at most its own quota"
            )
        return self


class Preemption(common.Model):
    """When the queue's jobs may stop others'. Preemption is gang-atomic and only when it lets the
    preemptor run."""

    within_queue: Literal["Never", "LowerPriority"] = Field(
        default="Never", description="Never, or LowerPriority: a job may preempt lower-priority jobs of its own queue."
    )
    reclaim_borrowed: bool = Field(
        default=False, description="Below its nominal quota, the queue takes back what others borrowed, preempting borrowers."
    )


class ComputeQueueSpec(common.Model):
    """A tenant: the jobs it admits and what they may hold and use."""

    namespace_selector: LabelSelector | None = Field(
        default=None,
        description="Namespaces whose ComputeJobs the queue admits (those not naming spec.queue); omitted: none.",
    )
    cohort: str | None = Field(
        default=None, min_length=1, max_length=63, pattern=common.DNS_LABEL_PATTERN,
        description="Queues of one cohort lend and borrow unused quota.",
    )
    weight: float = Field(default=1.0, gt=0, le=1000, description="Fair-share weight within the cohort.")
    time_zone: common.TimeZone = Field(default="UTC", description="IANA zone of the budget periods.")
    quota: Quota = Field(default_factory=Quota, description="Accelerators, compute units, energy and carbon.")
    preemption: Preemption = Field(default_factory=Preemption, description="Within the queue, and reclaiming lent quota.")
