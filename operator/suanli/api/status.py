"""Status of both kinds: what the operator (or `suanli plan`) decided and observed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from suanli.api import common

Phase = Literal["Pending", "Queued", "Deferred", "Bound", "Running", "Suspended", "Succeeded", "Failed", "Invalid"]
PHASES: tuple[Phase, ...] = ("Pending", "Queued", "Deferred", "Bound", "Running", "Suspended", "Succeeded", "Failed",
                             "Invalid")
TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})


class Breakdown(common.Model):
    """The three factor scores in [0, 1] that were combined into the score."""

    accelerator: float = Field(description="Effective speed for the job's precision, speedup/(1+speedup).")
    locality: float = Field(description="runtime/(runtime+transfer).")
    energy: float = Field(description="Carbon and cost of the estimated energy against a national reference.")


class Binding(common.Model):
    """Where the job was placed."""

    center: str = Field(description="ComputeCenter name.")
    pool: str = Field(description="Pool name in that center.")
    accelerator_type: str = Field(description="GPU, NPU, DCU or MLU.")
    model: str = Field(description="Accelerator model.")
    score: float = Field(description="Weighted score in [0, 1].")
    breakdown: Breakdown = Field(description="Factor scores.")
    nodes: list[str] = Field(
        default_factory=list,
        description=(
            "Node of each replica, by the Indexed Job's completion index: where the capacity ledger placed it "
            "and where its pod is pinned before its scheduling gate is lifted (empty in statuses written before "
            "this field existed)."
        ),
    )
    cluster: str | None = Field(
        default=None,
        description=(
            "The member cluster it runs in: the name of the ComputeCenter whose spec.cluster names it; "
            "absent when it runs in the operator's own cluster."
        ),
    )


class Estimates(common.Model):
    """What running on the bound pool is expected to cost."""

    runtime_seconds: float = Field(description="Runtime on the pool, seconds.")
    transfer_seconds: float = Field(description="Data transfer before start, seconds.")
    energy_k_wh: float = Field(alias="energyKWh", description="Facility energy (PUE included), kWh.")
    carbon_kg: float = Field(description="Carbon over the run window, kg CO2e.")
    cost: float = Field(description="Electricity cost over the run window, currency units.")


class Candidate(common.Model):
    """A feasible pool and its score."""

    center: str
    pool: str
    score: float
    breakdown: Breakdown


class Rejection(common.Model):
    """A pool that was not feasible, and why."""

    center: str
    pool: str
    reason: str = Field(description="Why this pool cannot take the job, for a person.")


class WorkloadRef(common.Model):
    """The Kubernetes workload running the job."""

    api_version: str = Field(default="batch/v1")
    kind: str = Field(default="Job")
    namespace: str
    name: str
    cluster: str | None = Field(default=None, description="Center whose cluster runs it (member clusters).")


class EnergyReport(common.Model):
    """Energy settled after the job finished."""

    k_wh: float = Field(alias="kWh", description="Facility energy used, kWh.")
    carbon_kg: float = Field(description="Carbon emitted, kg CO2e.")
    source: Literal["estimate", "measured"] = Field(description="estimate, or measured from exporters.")
    reason: str | None = Field(
        default=None, description="Why the estimate was settled when the pool's own figures were not at hand."
    )


class Attempt(common.Model):
    """One bound attempt of the job: where it ran, when, and how it ended."""

    attempt: int = Field(ge=0, description="Its number (0 first): its Job and pods carry it as suanli.io/attempt.")
    center: str = Field(description="Center it was bound to.")
    pool: str = Field(description="Pool it was bound to.")
    bound: str | None = Field(default=None, description="When it was bound (RFC 3339).")
    ended: str = Field(description="When it ended (RFC 3339).")
    outcome: Literal["Succeeded", "Failed", "Retried", "Requeued", "Preempted", "MemberLost", "Suspended"] = Field(
        description="Succeeded, Failed, Retried (spec.retry), Requeued (pods not ready, a replica lost, its Job "
        "deleted), Preempted, MemberLost or Suspended."
    )
    exit_code: int | None = Field(default=None, description="The exit code of the container that failed it, if one did.")
    message: str = Field(default="", description="Why it ended, in one sentence.")


class EndedAttempt(common.Model):
    """A bound attempt that ended without finishing (preempted, requeued), with the energy it used."""

    center: str = Field(description="Center it ran at.")
    queue: str | None = Field(default=None, description="ComputeQueue that had admitted it.")
    k_wh: float = Field(alias="kWh", ge=0, description="Facility energy it used, kWh (estimated from the time it ran).")
    carbon_kg: float = Field(ge=0, description="Carbon it emitted, kg CO2e.")
    cost: float = Field(default=0, ge=0, description="Its electricity cost, at the price its binding's estimate used.")
    accelerator_hours: float = Field(default=0, ge=0, description="Accelerators x hours it held them while running.")
    ended: str = Field(description="When it ended (RFC 3339): the budget period it counts in.")
    reason: str = Field(description="Why it ended: Preempted, MemberLost, Suspended or AttemptEnded.")


class ComputeJobStatus(common.Model):
    """What happened to the job."""

    phase: Phase = Field(default="Pending", description="Pending, Queued, Deferred, Bound, Running, Suspended, Succeeded, Failed, Invalid.")
    message: str = Field(default="", description="The latest decision in one sentence.")
    binding: Binding | None = None
    estimates: Estimates | None = None
    planned_start: str | None = Field(default=None, description="When a Deferred job will start (RFC 3339).")
    candidates: list[Candidate] = Field(default_factory=list, description="Top feasible pools, best first.")
    rejected: list[Rejection] = Field(default_factory=list, description="Pools that were not feasible, and why.")
    workload_ref: WorkloadRef | None = None
    bound_time: str | None = Field(default=None, description="When the job was bound (RFC 3339).")
    start_time: str | None = Field(default=None, description="When the workload started running.")
    completion_time: str | None = Field(default=None, description="When the workload finished.")
    energy: EnergyReport | None = Field(default=None, description="Settled energy after completion.")
    queue: str | None = Field(
        default=None, description="ComputeQueue that admitted the job (Bound and later), or that considers it (waiting)."
    )
    attempts: list[Attempt] = Field(
        default_factory=list, max_length=100,
        description="Each bound attempt that ended, oldest first (at most 100: the oldest go first).",
    )
    requeues: int = Field(
        default=0, description="Attempts the operator ended and requeued (pods not ready in time, a replica lost to a "
        "disruption, its Job deleted, preempted, member lost); at operator.requeue_limit the job is Failed.",
    )
    retries: int = Field(default=0, description="Runs that failed with an exit code spec.retry retries.")
    suspensions: int = Field(
        default=0, description="Times the job was suspended (spec.suspend) while bound; they do not count as attempts."
    )
    requeue_at: str | None = Field(
        default=None, description="A requeued job is not planned again before this time (RFC 3339)."
    )
    ended_attempts: list[EndedAttempt] = Field(
        default_factory=list,
        max_length=100,
        description="Attempts that ran and ended without finishing, each with the energy it used: settled at its "
        "center's and its queue's budget in the period it ended.",
    )
    conditions: list[common.Condition] = Field(default_factory=list)
    observed_generation: int | None = None


class PoolStatus(common.Model):
    """Accelerator accounting of one pool from real Nodes and Pods."""

    name: str
    capacity: int = Field(default=0, description="Accelerators on Ready, schedulable nodes.")
    allocated: int = Field(default=0, description="Accelerators requested by non-terminated pods.")
    reserved: int = Field(
        default=0,
        description="Accelerators held for bound jobs' replicas that have no running pod on a node (not started "
        "yet, or finished while the job's terminal phase is not written yet).",
    )
    free: int = Field(default=0, description="capacity - allocated - reserved.")
    ready_nodes: int = Field(default=0, description="Ready, schedulable nodes matching the selector.")
    expected_nodes: int = Field(default=0, description="spec.pools[].expected.nodes.")
    refused: str | None = Field(
        default=None,
        description=(
            "Why the pool counts no nodes: its nodeSelector matches a node an earlier pool (older center, "
            "then center name, then place in spec.pools) already counts; absent when it is not refused."
        ),
    )


class EnergyStatus(common.Model):
    """The center's energy ledger for the current budget period."""

    period_start: str | None = Field(default=None, description="Start of the current budget period (RFC 3339).")
    used_k_wh: float = Field(default=0, alias="usedKWh", description="Settled energy this period, kWh.")
    reserved_k_wh: float = Field(default=0, alias="reservedKWh", description="Estimated energy of running jobs, kWh.")
    remaining_k_wh: float | None = Field(default=None, alias="remainingKWh", description="Budget left, kWh.")


class ComputeCenterStatus(common.Model):
    """What the operator observes about the center."""

    pools: list[PoolStatus] = Field(default_factory=list)
    free_accelerators: int = Field(default=0, description="Free accelerators over all pools.")
    energy: EnergyStatus | None = None
    conditions: list[common.Condition] = Field(default_factory=list)
    observed_generation: int | None = None


class QueueDimension(common.Model):
    """One quota dimension of a queue, now."""

    name: str = Field(
        description="accelerators/TYPE[/MODEL], computeUnits, energyKWh or carbonKg (energy and carbon: this period)."
    )
    quota: float = Field(description="Nominal quota (budgets: per period).")
    used: float = Field(default=0, description="Held by admitted jobs now (budgets: used and reserved this period).")
    borrowed: float = Field(default=0, description="Above the nominal quota, lent by the cohort.")
    lent: float = Field(default=0, description="Of the nominal quota, in use by other queues of the cohort.")
    left: float | None = Field(default=None, description="What one more job could take now, borrowing included.")


class QueueSettled(common.Model):
    """What the queue's jobs settled in the current period: finished runs, and attempts that ended without
    finishing (running jobs' reservations are in `dimensions`)."""

    period: str = Field(default="", description="The period: the queue's energy (else carbon) budget's, else the month.")
    energy_k_wh: float = Field(default=0, alias="energyKWh", description="Facility energy, kWh.")
    carbon_kg: float = Field(default=0, description="Carbon, kg CO2e.")
    cost: float = Field(default=0, description="Electricity cost, at the prices the bindings' estimates used.")
    accelerator_hours: float = Field(default=0, description="Accelerators x hours held while running.")


class ComputeQueueStatus(common.Model):
    """What the operator accounts for the queue."""

    settled: QueueSettled | None = Field(default=None, description="What its jobs settled this period.")

    dimensions: list[QueueDimension] = Field(default_factory=list, description="Usage against quota, per dimension.")
    accelerators: str = Field(default="", description="Accelerators held / nominal, all types (kubectl get cq).")
    compute_units: str = Field(default="", description="Compute units held / nominal (kubectl get cq).")
    energy: str = Field(default="", description="kWh used and reserved / budget this period (kubectl get cq).")
    carbon: str = Field(default="", description="kg CO2e used and reserved / budget this period (kubectl get cq).")
    period: str = Field(default="", description="The budget period, e.g. Month 2026-12.")
    admitted_jobs: int = Field(default=0, description="Jobs bound or running under the queue.")
    waiting_jobs: int = Field(default=0, description="Jobs of the queue waiting to be placed.")
    share: float = Field(default=0, description="Weighted dominant share: usage over nominal, divided by the weight.")
    conditions: list[common.Condition] = Field(default_factory=list)
    observed_generation: int | None = None
