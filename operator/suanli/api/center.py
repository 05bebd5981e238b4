"""ComputeCenter: a site (intelligent-computing center, supercomputing center, hub) with
its accelerator pools, network reach and power (PUE, grid carbon, price, energy budget)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from suanli.api import common, device_cel
from suanli.catalog import accelerators

AcceleratorType = accelerators.AcceleratorType
Precision = accelerators.Precision


class Location(common.Model):
    """Geographic position, for maps and for people."""

    latitude: float = Field(ge=-90, le=90, description="Degrees north.")
    longitude: float = Field(ge=-180, le=180, description="Degrees east.")


class SecretKeyRef(common.Model):
    """A key of a Secret."""

    namespace: str = Field(min_length=1, description="Namespace of the Secret.")
    name: str = Field(min_length=1, description="Name of the Secret.")
    key: str = Field(default="kubeconfig", min_length=1, description="Key holding the kubeconfig.")


class ClusterRef(common.Model):
    """Where the center's Kubernetes cluster is. Omitted: the operator's own cluster."""

    kubeconfig_secret_ref: SecretKeyRef = Field(description="Secret holding a kubeconfig for the member cluster.")
    prometheus_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Base URL of the Prometheus HTTP API that scrapes this member's exporters, for measured energy; "
        "omitted: the operator's measured_energy.prometheus_url.",
    )


class Link(common.Model):
    """Measured reach from this center to data held in another region."""

    region: str = Field(min_length=1, max_length=63, description="Region the data lives in.")
    bandwidth_gbps: float = Field(gt=0, description="Usable bandwidth to that region, Gbit/s.")
    latency_ms: float = Field(default=0, ge=0, description="Round-trip latency to that region, ms.")


class Network(common.Model):
    """How fast this center reaches data held elsewhere."""

    default_bandwidth_gbps: float = Field(
        default=10, gt=0, description="Bandwidth to any region without a link, Gbit/s."
    )
    links: list[Link] = Field(default_factory=list, max_length=64, description="Per-region overrides.")

    @field_validator("links")
    @classmethod
    def _unique_regions(cls, links: list[Link]) -> list[Link]:
        seen: set[str] = set()
        for i, link in enumerate(links):
            if link.region in seen:
                raise ValueError(f"links[{i}].region {link.region!r} appears twice; keep one link per region")
            seen.add(link.region)
        return links


class DailyWindow(common.Model):
    """A daily window [start, end) of local time in the center's time zone."""

    start: common.ClockTime = Field(description="Window start, HH:MM local time.")
    end: common.ClockTime = Field(description="Window end, HH:MM local time; earlier than start wraps midnight.")


class CarbonWindow(DailyWindow):
    """Grid carbon intensity during a daily window [start, end) in the center's time zone."""

    grams_per_k_wh: float = Field(ge=0, description="Grid intensity in the window, gCO2e per kWh.")


class CarbonIntensity(common.Model):
    """Grid carbon intensity: a constant, optionally overridden by daily windows."""

    grams_per_k_wh: float = Field(ge=0, description="Intensity outside any window, gCO2e per kWh.")
    schedule: list[CarbonWindow] = Field(default_factory=list, description="Daily windows (local time).")


class PriceWindow(DailyWindow):
    """Electricity price during a daily window [start, end) in the center's time zone."""

    value: float = Field(ge=0, description="Price in the window, currency units per kWh.")


class Price(common.Model):
    """Electricity price: a constant, optionally overridden by daily windows."""

    value: float = Field(ge=0, description="Price outside any window, currency units per kWh.")
    schedule: list[PriceWindow] = Field(default_factory=list, description="Daily windows (local time).")


class Budget(common.Model):
    """An energy quota for the whole center, facility energy (PUE included)."""

    k_wh: float = Field(gt=0, alias="kWh", description="Energy allowed per period, kWh at the meter.")
    period: Literal["Day", "Week", "Month"] = Field(
        default="Day", description="Day, Week (from Monday) or Month, in the center's time zone."
    )


class Energy(common.Model):
    """Power characteristics of the site."""

    time_zone: common.TimeZone = Field(default="Asia/Shanghai", description="IANA zone for schedules and budget periods.")
    pue: float = Field(default=1.4, ge=1.0, le=3.0, description="Power usage effectiveness (facility/IT).")
    carbon_intensity: CarbonIntensity = Field(
        default_factory=lambda: CarbonIntensity(grams_per_k_wh=536.6),
        description="Grid carbon intensity (default: China's national 2022 factor, 536.6 g/kWh).",
    )
    price_per_k_wh: Price = Field(
        default_factory=lambda: Price(value=0.6),
        alias="pricePerKWh",
        description="Electricity price per kWh (default 0.6).",
    )
    budget: Budget | None = Field(default=None, description="Optional energy quota.")


class Expected(common.Model):
    """How many nodes the pool is expected to have: plan/simulate capacity and fake nodes."""

    nodes: int = Field(ge=0, description="Number of nodes.")
    accelerators_per_node: int = Field(ge=1, le=64, description="Accelerators on each node.")


class Toleration(common.Model):
    """A Kubernetes toleration, copied onto the pods of jobs placed on this pool."""

    key: str | None = Field(default=None, description="Taint key; empty with Exists tolerates everything.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value (Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect; empty matches all."
    )
    toleration_seconds: int | None = Field(default=None, description="For NoExecute: how long to stay.")


class CelSelector(common.Model):
    """A CEL expression over a DRA device."""

    expression: str = Field(
        min_length=1,
        max_length=10240,
        description="CEL over device.driver, device.attributes[\"<domain>\"].<name> and "
        "device.capacity[\"<domain>\"].<name>; true selects the device.",
    )

    @field_validator("expression")
    @classmethod
    def _compiles(cls, expression: str) -> str:
        problem = device_cel.check(expression)
        if problem is not None:
            raise ValueError(f"{problem}; fix the expression")
        return expression


class DeviceSelector(common.Model):
    """One selector of a DRA device request (a ResourceClaim's DeviceSelector)."""

    cel: CelSelector = Field(description="The CEL expression.")


class Pool(common.Model):
    """A set of identical accelerator nodes inside a center."""

    name: str = Field(pattern=common.DNS_LABEL_PATTERN, max_length=63, description="Pool name, unique in the center.")
    accelerator_type: AcceleratorType = Field(description="GPU, NPU, DCU or MLU.")
    model: str = Field(
        min_length=1,
        max_length=63,
        description="Catalog model name (A100, H100, Ascend910B, Z100, MLU370...); unknown models "
        "must give powerWatts, peakTFLOPS and memoryGiB.",
    )
    resource_name: str | None = Field(
        default=None,
        pattern=common.RESOURCE_NAME_PATTERN,
        description="Extended resource the device plugin advertises, e.g. nvidia.com/gpu, huawei.com/Ascend910. "
        "Give this or deviceClassName.",
    )
    device_class_name: str | None = Field(
        default=None,
        pattern=common.DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="DeviceClass of the accelerators when a DRA driver hands them out (Dynamic Resource "
        "Allocation) instead of a device plugin: capacity is the devices of the pool's nodes' ResourceSlices "
        "that the class (and selectors) select, and the pods get a ResourceClaimTemplate asking for "
        "accelerators.count of them per replica. Give this or resourceName.",
    )
    selectors: list[DeviceSelector] = Field(
        default_factory=list,
        max_length=32,
        description="With deviceClassName: more CEL selectors a device must pass (all of them), as in a "
        "ResourceClaim's request, e.g. device.attributes[\"gpu.example.com\"].model == \"H100\".",
    )
    node_selector: dict[str, str] = Field(
        min_length=1, description="Labels that select this pool's nodes; copied into placed pods."
    )
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations for the pool's taints.")
    software: list[str] = Field(default_factory=list, description="Software stacks present (cuda, cann, dtk, neuware).")
    memory_gi_b: float | None = Field(default=None, gt=0, alias="memoryGiB", description="Memory per accelerator, GiB.")
    power_watts: float | None = Field(default=None, gt=0, description="Board power per accelerator, W.")
    peak_tflops: dict[Precision, float] | None = Field(
        default=None, max_length=6, alias="peakTFLOPS", description="Dense peak TFLOPS per precision (TOPS for int8)."
    )
    expected: Expected = Field(description="Expected nodes: capacity for plan/simulate, Degraded below it.")

    @field_validator("peak_tflops")
    @classmethod
    def _positive_peaks(cls, peaks: dict[str, float] | None) -> dict[str, float] | None:
        for precision, value in (peaks or {}).items():
            if value <= 0:
                raise ValueError(f"peakTFLOPS.{precision} must be greater than 0 (got {value})")
        return peaks

    @model_validator(mode="after")
    def _one_way_to_count(self) -> Pool:
        if (self.resource_name is None) == (self.device_class_name is None):
            raise ValueError(
                f"pool {self.name!r} must give exactly one of resourceName (a device plugin's extended resource) "
                "and deviceClassName (a DRA DeviceClass)"
                + ("; it gives both: keep the one its nodes' accelerators are handed out by" if self.resource_name else "")
            )
        if self.selectors and self.device_class_name is None:
            raise ValueError(f"pool {self.name!r}: selectors need deviceClassName (they select DRA devices); "
                             "drop them, or replace resourceName by deviceClassName")
        return self

    @property
    def resource(self) -> str:
        """What the pool's accelerators are counted in, for people: the extended resource, or the DeviceClass."""
        return self.resource_name or f"devices of DeviceClass {self.device_class_name}"

    @model_validator(mode="after")
    def _known_or_described(self) -> Pool:
        entry = accelerators.lookup(self.model)
        if entry is None:
            missing = [
                name
                for name, value in (
                    ("powerWatts", self.power_watts),
                    ("peakTFLOPS", self.peak_tflops),
                    ("memoryGiB", self.memory_gi_b),
                )
                if not value
            ]
            if missing:
                known = ", ".join(accelerators.MODEL_NAMES)
                raise ValueError(
                    f"model {self.model!r} is not in the catalog, so the pool must give {', '.join(missing)}; "
                    f"or use a catalog model: {known}"
                )
        elif entry.type != self.accelerator_type:
            raise ValueError(
                f"model {self.model!r} is a {entry.type} in the catalog but acceleratorType is "
                f"{self.accelerator_type!r}; fix acceleratorType"
            )
        return self


class ComputeCenterSpec(common.Model):
    """What a platform team declares about one compute center."""

    region: str = Field(
        pattern=common.DNS_LABEL_PATTERN, description="Region of the center, e.g. cn-guizhou; data regions match it."
    )
    display_name: str | None = Field(default=None, description="Human name of the center.")
    location: Location | None = Field(default=None, description="Geographic position.")
    cluster: ClusterRef | None = Field(default=None, description="Member cluster; omitted: the operator's own.")
    network: Network = Field(default_factory=Network, description="Reach to data held in other regions.")
    energy: Energy = Field(default_factory=Energy, description="PUE, carbon, price and budget.")
    pools: list[Pool] = Field(min_length=1, max_length=64, description="Accelerator node pools.")

    @field_validator("pools")
    @classmethod
    def _unique_pools(cls, pools: list[Pool]) -> list[Pool]:
        seen: set[str] = set()
        for i, pool in enumerate(pools):
            if pool.name in seen:
                raise ValueError(f"pools[{i}].name {pool.name!r} appears twice; pool names must be unique")
            seen.add(pool.name)
        return pools
