"""Which exporter metrics give a pod's accelerator energy, and the PromQL that reads them (pure).

Every query is an instant query evaluated at the job's end over its run window W, and returns one
sample per series (never pre-summed), so the meter can count devices and say what it matched:

- counters (joules or millijoules since boot): `increase(M{pod selector}[W])` is the energy;
- gauges (watts): `avg_over_time(M{pod selector}[W])` is the mean power; energy = mean x W.

Exporters and their labels (checked against their sources, 2024-2025 releases):

- NVIDIA DCGM exporter, `DCGM_FI_DEV_POWER_USAGE` (gauge, W) and
  `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` (counter, mJ since boot), one series per GPU (`gpu`,
  `UUID`, `modelName`, `Hostname`) and, with its Kubernetes pod mapping on, `namespace`, `pod`,
  `container`. Scraped through a ServiceMonitor without `honorLabels`, Prometheus renames those
  to `exported_namespace`, `exported_pod`, `exported_container`: both spellings are tried.
- Kepler (0.7 line), `kepler_container_gpu_joules_total` (counter, J; the container's share of the
  GPUs) and `kepler_container_joules_total` (counter, J; CPU package, DRAM, GPU and other together),
  labels `container_namespace`, `pod_name`, `container_name`, `container_id`, `mode`
  (`dynamic` | `idle`; both summed). The 0.10+ rewrite exports CPU zones only, so it gives no
  accelerator energy yet.
- Huawei Ascend npu-exporter, `npu_chip_info_power` (gauge, W), one series per chip (`id`,
  `model_name`, `vdie_id`, `pcie_bus_info`). Newer releases add `namespace`, `pod_name`,
  `container_name` to chips held by a container; older ones (v5) only put them on
  `container_npu_utilization`, so the chip's power is joined to it on (`instance`, `id`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Literal

JOULES_PER_KWH = 3.6e6


class PrometheusAnswerError(ValueError):
    """Prometheus answered, but not with a usable instant vector (the message says what was wrong)."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels and value."""

    labels: dict[str, str]
    value: float


@dataclasses.dataclass(frozen=True)
class Query:
    """One PromQL expression for a source, with the label spelling it assumes."""

    source: str
    promql: str
    labels: str  # e.g. "namespace/pod" or "exported_namespace/exported_pod"


@dataclasses.dataclass(frozen=True)
class Source:
    """An exporter metric that yields accelerator energy for a pod."""

    name: str
    exporter: str
    metric: str
    kind: Literal["counter", "gauge"]
    joules_per_unit: float  # counters: J per counter unit; gauges: J per watt-second (1)
    accelerator_types: frozenset[str]
    per_device: bool  # one series per accelerator (so the series count can be checked)
    label_schemes: tuple[tuple[str, str], ...]  # (namespace label, pod label), tried in order
    join_template: str = ""  # a gauge whose pod labels live on another metric (Ascend v5)

    def queries(self, namespace: str, pods: tuple[str, ...], window_s: float, step_s: float) -> list[Query]:
        window = duration(window_s)
        out = []
        for ns_label, pod_label in self.label_schemes:
            sel = selector(ns_label, namespace, pod_label, pods)
            if self.kind == "counter":
                promql = f"increase({self.metric}{{{sel}}}[{window}])"
            else:
                promql = f"avg_over_time({self.metric}{{{sel}}}[{window}])"
            out.append(Query(self.name, promql, f"{ns_label}/{pod_label}"))
        if self.join_template:
            sel = selector("namespace", namespace, "pod_name", pods)
            inner = self.join_template.format(sel=sel)
            promql = f"avg_over_time(({inner})[{window}:{duration(step_s)}])"
            out.append(Query(self.name, promql, "joined on instance/id to container_npu_utilization"))
        return out

    def joules(self, samples: list[Sample], window_s: float) -> float:
        total = sum(s.value for s in samples)
        if self.kind == "counter":
            return total * self.joules_per_unit
        return total * self.joules_per_unit * window_s


_GPU = frozenset({"GPU"})
_DCGM_LABELS = (("namespace", "pod"), ("exported_namespace", "exported_pod"))

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            name="dcgm-energy",
            exporter="NVIDIA DCGM exporter",
            metric="DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            kind="counter",
            joules_per_unit=1e-3,  # mJ
            accelerator_types=_GPU,
            per_device=True,
            label_schemes=_DCGM_LABELS,
        ),
        Source(
            name="dcgm-power",
            exporter="NVIDIA DCGM exporter",
            metric="DCGM_FI_DEV_POWER_USAGE",
            kind="gauge",
            joules_per_unit=1.0,
            accelerator_types=_GPU,
            per_device=True,
            label_schemes=_DCGM_LABELS,
        ),
        Source(
            name="kepler-gpu",
            exporter="Kepler",
            metric="kepler_container_gpu_joules_total",
            kind="counter",
            joules_per_unit=1.0,
            accelerator_types=_GPU,
            per_device=False,
            label_schemes=(("container_namespace", "pod_name"),),
        ),
        Source(
            name="kepler",
            exporter="Kepler",
            metric="kepler_container_joules_total",
            kind="counter",
            joules_per_unit=1.0,
            accelerator_types=frozenset({"GPU", "NPU", "DCU", "MLU"}),
            per_device=False,
            label_schemes=(("container_namespace", "pod_name"),),
        ),
        Source(
            name="ascend-power",
            exporter="Huawei Ascend npu-exporter",
            metric="npu_chip_info_power",
            kind="gauge",
            joules_per_unit=1.0,
            accelerator_types=frozenset({"NPU"}),
            per_device=True,
            label_schemes=(("namespace", "pod_name"),),
            join_template=(
                "npu_chip_info_power * on(instance, id) group_left(namespace, pod_name) "
                "group by (instance, id, namespace, pod_name) (container_npu_utilization{{{sel}}})"
            ),
        ),
    )
}


def duration(seconds: float) -> str:
    """A PromQL duration in whole milliseconds (at least 1 ms)."""
    return f"{max(1, round(seconds * 1000))}ms"


def _string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def pod_regex(pods: tuple[str, ...]) -> str:
    """An RE2 alternation matching exactly these names (Prometheus anchors label regexes)."""
    escaped = ("".join(c if c.isalnum() or c in "-_" else "\\" + c for c in pod) for pod in sorted(set(pods)))
    return "|".join(escaped)


def selector(ns_label: str, namespace: str, pod_label: str, pods: tuple[str, ...]) -> str:
    return f"{ns_label}={_string(namespace)},{pod_label}=~{_string(pod_regex(pods))}"


def parse_vector(body: bytes | str) -> list[Sample]:
    """Samples of an `/api/v1/query` answer; raises PrometheusAnswerError naming what is wrong."""
    try:
        doc: Any = json.loads(body)
    except ValueError as exc:
        raise PrometheusAnswerError(f"answer is not JSON ({exc}): is the URL a Prometheus API?") from exc
    if not isinstance(doc, dict):
        raise PrometheusAnswerError("answer is not a JSON object: is the URL a Prometheus API?")
    if doc.get("status") != "success":
        raise PrometheusAnswerError(f"query failed: {doc.get('errorType', '?')}: {doc.get('error', '?')}")
    data = doc.get("data")
    if (
        not isinstance(data, dict)
        or data.get("resultType") != "vector"
        or not isinstance(data.get("result"), list)
    ):
        kind = data.get("resultType") if isinstance(data, dict) else None
        raise PrometheusAnswerError(f"expected an instant vector, got resultType {kind!r}")
    samples = []
    for item in data["result"]:
        try:
            labels = {str(k): str(v) for k, v in item["metric"].items()}
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise PrometheusAnswerError(f"malformed sample {item!r}: {exc}") from exc
        samples.append(Sample(labels, value))
    return samples


def describe(samples: list[Sample]) -> str:
    """Short identity of the matched series for status and logs (device or container labels)."""
    keys = ("Hostname", "gpu", "id", "pod", "exported_pod", "pod_name", "container_name", "mode", "instance")
    parts = []
    for s in samples[:8]:
        ident = ",".join(f"{k}={s.labels[k]}" for k in keys if k in s.labels)
        parts.append("{" + ident + "}")
    more = f" and {len(samples) - 8} more" if len(samples) > 8 else ""
    return " ".join(parts) + more


def finite(samples: list[Sample]) -> tuple[list[Sample], int]:
    """The samples with finite, non-negative values, and how many were dropped."""
    kept = [s for s in samples if math.isfinite(s.value) and s.value >= 0]
    return kept, len(samples) - len(kept)
