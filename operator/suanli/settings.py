"""Operator and core settings: one validated tree, every field with a default, a unit and a why.

Pure data: nothing here reads files or the environment. `suanli run --config FILE` (and the
Helm chart's ConfigMap) load YAML into `Settings`; tests build it directly.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ScoringSettings(_Section):
    """Constants of the factor formulas (see docs/scoring.md)."""

    reference_grid_grams_per_kwh: float = Field(
        default=536.6, gt=0, description="gCO2e/kWh a job is compared against: China's national 2022 grid factor."
    )
    reference_pue: float = Field(default=1.42, ge=1, description="PUE of the reference site: national average 2025.")
    reference_price_per_kwh: float = Field(
        default=0.6, gt=0, description="Currency/kWh of the reference site: a typical eastern industrial tariff."
    )
    carbon_share: float = Field(
        default=0.7, ge=0, le=1, description="Share of carbon (vs cost) in the energy factor; cost gets the rest."
    )
    default_runtime_seconds: float = Field(
        default=3600, gt=0, description="Runtime assumed for jobs without runtime.estimatedDuration, seconds."
    )
    candidates_shown: int = Field(default=5, ge=1, description="How many feasible pools a status lists.")
    rejections_shown: int = Field(default=20, ge=1, description="How many rejected pools a status lists.")


class DeferralSettings(_Section):
    """When a job with a deadline may wait for cleaner power."""

    enabled: bool = Field(default=True, description="Allow deferral at all.")
    min_carbon_saving: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Defer only if the best later start cuts the job's carbon by at least this fraction (0.2 = 20%).",
    )
    step_seconds: float = Field(
        default=900, gt=0, description="Granularity of candidate start times besides schedule edges, seconds."
    )
    max_horizon_seconds: float = Field(
        default=7 * 86400, gt=0, description="Never look further ahead than this for a start, seconds."
    )


class OperatorSettings(_Section):
    """How the running operator (`suanli run`) paces itself."""

    resync_seconds: float = Field(
        default=60, gt=0, description="Safety-net replan and status resync when no event arrived, seconds."
    )
    coalesce_seconds: float = Field(
        default=0.05, ge=0, description="Wait this long after a wake-up to batch further events into one cycle, seconds."
    )
    write_workers: int = Field(
        default=32,
        ge=1,
        description="Threads writing to the API server in parallel, for binding writes and for the rest each.",
    )
    max_jobs_per_cycle: int = Field(
        default=2000, ge=1, description="Queued jobs planned per scheduling cycle (the head of the queue), jobs."
    )
    status_coalesce_seconds: float = Field(
        default=1.0, ge=0, description="Batch ComputeCenter status updates over this window, seconds."
    )
    retry_seconds: float = Field(
        default=1.0,
        gt=0,
        description="After a job's write fails (API server down or overloaded), retry it after this long, doubling "
        "with each failure in a row, seconds.",
    )
    retry_max_seconds: float = Field(
        default=30.0, gt=0, description="The longest wait between retries of a job's failed write, seconds."
    )
    pods_ready_timeout_seconds: float = Field(
        default=300,
        gt=0,
        description="A bound gang whose replicas are not all running this long after it was bound has its Job "
        "deleted and goes back to the queue (Kueue's waitForPodsReady), seconds.",
    )
    workload_pods_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="A bound job's batch Job that the Job controller has started (status.startTime) without "
        "making a single pod this long is deleted and made again, once per attempt: the Job controller holds "
        "back the pods of a Job it takes for an earlier Job of the same name (a job deleted and recreated, a "
        "controller-manager restart) until its expectations for the name expire, minutes later; seconds.",
    )
    requeue_limit: int = Field(
        default=5,
        ge=1,
        description="Attempts a job gets: after this many bound attempts ended back in the queue (pods not ready in "
        "time, a replica lost to a disruption, its Job deleted) it is Failed, attempts.",
    )
    requeue_backoff_seconds: float = Field(
        default=10,
        ge=0,
        description="A job sent back to the queue is not planned again for this long, doubling with each attempt, "
        "seconds.",
    )
    requeue_backoff_max_seconds: float = Field(
        default=600, ge=0, description="The longest a requeued job waits before it is planned again, seconds."
    )


EnergySourceName = Literal["dcgm-energy", "dcgm-power", "kepler-gpu", "kepler", "ascend-power"]


class MeasuredEnergySettings(_Section):
    """Optional: settle finished jobs with kWh measured by exporters (via Prometheus) instead of estimates.

    Measured energy is the accelerators' IT energy; the center's PUE is applied on top, as for estimates.
    """

    prometheus_url: str | None = Field(
        default=None,
        description="Base URL of the Prometheus HTTP API (e.g. http://prometheus.monitoring:9090); "
        "unset: always settle with estimates.",
    )
    query_timeout_seconds: float = Field(
        default=5, gt=0, description="Per HTTP query, seconds: a slow Prometheus must not stall completion handling."
    )
    subquery_step_seconds: float = Field(
        default=15, gt=0, description="Resolution of subqueries that join Ascend chips to pods, seconds (~scrape interval)."
    )
    min_window_seconds: float = Field(
        default=60,
        ge=0,
        description="Shorter runs are settled with estimates, seconds: a few scrapes cannot measure them.",
    )
    max_watts_per_accelerator: float = Field(
        default=1500,
        gt=0,
        description="Readings above this average per accelerator, watts, are refused as implausible (wrong labels).",
    )
    sources: tuple[EnergySourceName, ...] = Field(
        default=("dcgm-energy", "dcgm-power", "kepler-gpu", "ascend-power"),
        description="Exporters to try, first usable wins; each applies only to its accelerator types. "
        "'kepler' (whole-container joules, CPU and DRAM included) is opt-in.",
    )


class MembersSettings(_Section):
    """Member clusters: centers whose `spec.cluster.kubeconfigSecretRef` names a kubeconfig Secret."""

    lost_after_seconds: float = Field(
        default=300,
        gt=0,
        description="A member unreachable this long is lost: its bound and running jobs go back to the queue "
        "(reason MemberLost), and a ComputeJob being deleted stops waiting for its Job there, seconds.",
    )
    create_namespaces: bool = Field(
        default=True,
        description="Create a job's namespace in the member when it is missing; false: the job waits with a reason "
        "until someone creates it.",
    )
    hub_name: str = Field(
        default="suanli",
        min_length=1,
        max_length=63,
        description="This hub's name in its member clusters: the label suanli.io/hub on the Jobs it makes there. "
        "Only Jobs with it are ever adopted or deleted, so hubs that share a member cluster need different names.",
    )
    probe_seconds: float = Field(
        default=10,
        gt=0,
        description="How often each member is looked at (its Secret read, its API server asked for /version), seconds; "
        "a changed center is looked at at once.",
    )
    request_timeout_seconds: float = Field(
        default=10, gt=0, description="Per request to a member's API server, seconds (watches excepted)."
    )


class TenancySettings(_Section):
    """Tenants: ComputeQueues and the jobs they admit."""

    require_queue: bool = Field(
        default=False,
        description="A job that names no spec.queue and whose namespace no ComputeQueue selects waits with a reason; "
        "false: it runs unrestricted by any quota.",
    )


class Settings(_Section):
    """Everything tunable, with defaults that work out of the box."""

    scoring: ScoringSettings = Field(default_factory=ScoringSettings, description="Scoring constants.")
    deferral: DeferralSettings = Field(default_factory=DeferralSettings, description="Deferral to cleaner power.")
    operator: OperatorSettings = Field(default_factory=OperatorSettings, description="Pacing of `suanli run`.")
    measured_energy: MeasuredEnergySettings = Field(
        default_factory=MeasuredEnergySettings, description="Measured energy from exporters via Prometheus (optional)."
    )
    members: MembersSettings = Field(default_factory=MembersSettings, description="Member clusters (hub and members).")
    tenancy: TenancySettings = Field(default_factory=TenancySettings, description="Tenants (ComputeQueues).")
