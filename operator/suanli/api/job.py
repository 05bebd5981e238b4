"""ComputeJob: what a user asks for (accelerators, data, energy, deadline), not where."""

from __future__ import annotations

import datetime
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from suanli.api import common
from suanli.catalog import accelerators

AcceleratorType = accelerators.AcceleratorType
Precision = accelerators.Precision
Profile = Literal["balanced", "green", "fast", "local"]
PROFILES: tuple[Profile, ...] = ("balanced", "green", "fast", "local")


class AcceleratorRequest(common.Model):
    """Accelerators each replica needs, all on one node."""

    count: int = Field(ge=1, le=64, description="Accelerators per replica, on one node.")
    types: list[AcceleratorType] = Field(min_length=1, max_length=4, description="Acceptable types: GPU, NPU, DCU, MLU.")
    models: list[str] = Field(default_factory=list, description="Optional allow-list of catalog models.")
    min_memory_gi_b: float = Field(default=0, ge=0, alias="minMemoryGiB", description="Memory per accelerator, GiB.")
    precision: Precision = Field(default="fp16", description="fp64, fp32, tf32, bf16, fp16 or int8.")

    @field_validator("types")
    @classmethod
    def _unique_types(cls, types: list[str]) -> list[str]:
        if len(set(types)) != len(types):
            raise ValueError("types lists a type twice; list each acceptable type once")
        return types


class Runtime(common.Model):
    """How long the job runs on a reference accelerator; scaled per pool by peak speed."""

    estimated_duration: common.Duration = Field(description='Go-style duration on the reference model, e.g. "6h".')
    reference_model: str = Field(default="A100", max_length=63, description="Catalog model the estimate was measured on.")

    @field_validator("reference_model")
    @classmethod
    def _known_reference(cls, name: str) -> str:
        if accelerators.lookup(name) is None:
            raise ValueError(
                f"referenceModel {name!r} is not in the catalog; use one of {', '.join(accelerators.MODEL_NAMES)}"
            )
        return name

    @property
    def seconds(self) -> float:
        return common.parse_duration(self.estimated_duration)


class Data(common.Model):
    """Where the job's input data lives and where it may be processed."""

    region: str | None = Field(default=None, description="Region holding the data.")
    size_gi_b: float = Field(default=0, ge=0, alias="sizeGiB", description="Data to move if run elsewhere, GiB.")
    allowed_regions: list[str] = Field(
        default_factory=list, description="Regions the job may run in (data residency); empty: any."
    )


class EnergyCaps(common.Model):
    """Hard caps on the job's estimated energy and carbon."""

    max_k_wh: float | None = Field(default=None, gt=0, alias="maxKWh", description="Facility energy cap, kWh.")
    max_carbon_kg: float | None = Field(default=None, gt=0, description="Carbon cap, kg CO2e.")


class Schedule(common.Model):
    """Timing constraints."""

    deadline: datetime.datetime | None = Field(
        default=None, description="RFC 3339 time by which the job must finish; allows deferral to cleaner power."
    )

    @field_validator("deadline")
    @classmethod
    def _aware(cls, value: datetime.datetime | None) -> datetime.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("deadline needs a time zone, e.g. 2026-12-01T08:00:00Z")
        return value


class Weights(common.Model):
    """Factor weights; they are normalised to sum to 1."""

    accelerator: float = Field(default=0, ge=0, description="Weight of effective accelerator speed.")
    locality: float = Field(default=0, ge=0, description="Weight of data-transfer time against runtime.")
    energy: float = Field(default=0, ge=0, description="Weight of carbon and cost of the estimated energy.")

    @model_validator(mode="after")
    def _not_all_zero(self) -> Weights:
        if self.accelerator + self.locality + self.energy <= 0:
            raise ValueError("at least one weight must be greater than 0")
        return self


class Policy(common.Model):
    """How to rank feasible pools."""

    profile: Profile = Field(default="balanced", description="balanced, green, fast or local.")
    weights: Weights | None = Field(default=None, description="Optional override of the profile's weights.")


class Rendezvous(common.Model):
    """How a gang's replicas find each other (the operator's headless Service and environment)."""

    port: int = Field(default=29500, ge=1, le=65535, description="MASTER_PORT: where replica 0 listens for its peers.")


class Retry(common.Model):
    """When a gang whose container exits non-zero runs again (as a whole) instead of failing."""

    max_attempts: int = Field(
        default=1, ge=1, le=20,
        description="Runs allowed, the first included (1: no retry). Disruptions are not counted here.",
    )
    on_exit_codes: list[int] = Field(
        default_factory=list, max_length=64,
        description="Exit codes that are retried; empty: any non-zero code (when maxAttempts > 1).",
    )

    @field_validator("on_exit_codes")
    @classmethod
    def _codes(cls, codes: list[int]) -> list[int]:
        for code in codes:
            if not 1 <= code <= 255:
                raise ValueError(f"exit code {code} is not a failure's: give codes from 1 to 255")
        return codes


class ComputeJobSpec(common.Model):
    """What a user asks for."""

    replicas: int = Field(default=1, ge=1, le=1024, description="Gang size: all replicas in one pool, all or none.")
    accelerators: AcceleratorRequest = Field(description="Accelerators per replica.")
    images: dict[AcceleratorType, str] = Field(
        max_length=4,
        description="Container image per acceptable type; a type without an image is not a candidate."
    )
    template: dict[str, Any] = Field(
        default_factory=dict,
        description="PodTemplateSpec; the operator fills in image, resources, node selector and tolerations.",
    )
    runtime: Runtime | None = Field(default=None, description="Runtime estimate on a reference model.")
    data: Data = Field(default_factory=Data, description="Data location and residency.")
    energy: EnergyCaps = Field(default_factory=EnergyCaps, description="Energy and carbon caps.")
    schedule: Schedule = Field(default_factory=Schedule, description="Deadline.")
    priority: int = Field(default=0, ge=-1000000, le=1000000, description="Higher is planned first.")
    queue: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="ComputeQueue that admits the job (omitted: the queue whose namespaceSelector matches its namespace).",
    )
    policy: Policy = Field(default_factory=Policy, description="Ranking profile and weights.")
    suspend: bool = Field(
        default=False,
        description="true pauses the job: its Job, Service and pods are deleted, its accelerators and energy reservation "
        "released (the energy used so far settled), phase Suspended; false puts it back in the queue.",
    )
    retry: Retry = Field(default_factory=Retry, description="Retry of a failed gang, by its exit code.")
    rendezvous: Rendezvous = Field(
        default_factory=Rendezvous,
        description="Rendezvous of the replicas: replica i is <job>-<i>.<service>; MASTER_ADDR is replica 0.",
    )

    @field_validator("images")
    @classmethod
    def _non_empty_images(cls, images: dict[str, str]) -> dict[str, str]:
        for kind, image in images.items():
            if not image.strip():
                raise ValueError(f"images.{kind} is empty; give a container image reference")
        return images

    # Cross-field rules are field validators on the later field (fields validate in declaration
    # order), so the error's path names the field to fix: spec.images, spec.data, spec.schedule.
    @field_validator("images")
    @classmethod
    def _image_per_type(cls, images: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        request = info.data.get("accelerators")
        if request is None:
            return images
        missing = [t for t in request.types if t not in images]
        if missing:
            raise ValueError(
                f"accelerators.types accepts {', '.join(missing)} but images has no entry for it; "
                f"add images.{missing[0]} or drop the type"
            )
        return images

    @field_validator("data")
    @classmethod
    def _data_region(cls, data: Data) -> Data:
        if data.size_gi_b > 0 and not data.region:
            raise ValueError("data.sizeGiB is set but data.region is not; say where the data lives")
        return data

    @field_validator("schedule")
    @classmethod
    def _deadline_needs_runtime(cls, schedule: Schedule, info: ValidationInfo) -> Schedule:
        # A runtime that failed its own validation is absent from info.data: that error is enough.
        if schedule.deadline is not None and "runtime" in info.data and info.data["runtime"] is None:
            raise ValueError("schedule.deadline needs runtime.estimatedDuration to know when the job must start")
        return schedule
