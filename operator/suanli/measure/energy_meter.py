"""Measure a finished job's accelerator energy through the Prometheus HTTP API.

The operator calls `measure(settings.measured_energy, run)` once a job has finished and gets a
`Measurement` (IT energy of the job's accelerators, kWh, PUE *not* included) or None, then
`settlement(measurement, estimated_kwh, pue)` tells it what to put in the ledger and in
`status.energy` (`source: measured | estimate`). Queries use the standard library only (urllib),
one short timeout each; nothing here raises to the caller. Every refusal is logged at WARNING
(Prometheus unreachable, a query error) or INFO (no series, too short) with what to check.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Literal

from suanli import settings as settings_mod
from suanli.measure import sources

log = logging.getLogger("suanli.measure")

Fetch = collections.abc.Callable[[str, float], bytes]


@dataclasses.dataclass(frozen=True)
class JobRun:
    """What the meter needs to know about a finished job (times are Unix epoch seconds)."""

    namespace: str
    pods: tuple[str, ...]  # the workload's pod names (all replicas, all retries)
    start: float  # when the first pod started running
    end: float  # when the last pod finished
    accelerator_type: str  # the pool's type: GPU | NPU | DCU | MLU
    accelerators: int  # accelerators held by the whole job (count x replicas); 0 = unknown
    nodes: tuple[str, ...] = ()  # where the pods ran; reported, not used to filter

    @property
    def window_seconds(self) -> float:
        return self.end - self.start


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Measured IT energy of a job's accelerators."""

    kwh_it: float  # kWh drawn by the accelerators; multiply by the center's PUE for facility energy
    source: str  # settings name of the source, e.g. "dcgm-energy"
    detail: str  # the exporter, query and matched series, one line for status and logs
    series: int  # how many series were summed


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A measurement (or None) and, for each source not used, why."""

    measurement: Measurement | None
    reasons: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Settlement:
    """What the ledger settles and the job's status.energy reports."""

    kwh: float  # facility kWh (PUE included)
    source: Literal["measured", "estimate"]
    detail: str


class _Unreachable(Exception):
    """Prometheus itself is down or unhealthy: trying further sources is pointless."""


def _urllib_fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        # Prometheus answers bad queries with 400/422 and a JSON error body: hand that back.
        payload = exc.read()
        if exc.code in (400, 422) and payload:
            return payload
        raise


def _query(base_url: str, promql: str, at: float, timeout: float, fetch: Fetch) -> list[sources.Sample]:
    params = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}", "timeout": f"{timeout:g}s"})
    url = base_url.rstrip("/") + "/api/v1/query?" + params
    try:
        body = fetch(url, timeout)
    except urllib.error.HTTPError as exc:
        raise _Unreachable(f"Prometheus at {base_url} answered HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _Unreachable(f"Prometheus at {base_url} is unreachable: {exc.reason}") from exc
    except TimeoutError as exc:
        raise _Unreachable(f"Prometheus at {base_url} did not answer within {timeout:g}s") from exc
    except (OSError, ValueError) as exc:
        raise _Unreachable(f"Prometheus at {base_url} could not be queried: {exc}") from exc
    return sources.parse_vector(body)


def _try_source(
    config: settings_mod.MeasuredEnergySettings, run: JobRun, source: sources.Source, fetch: Fetch
) -> tuple[Measurement | None, list[str]]:
    reasons = []
    window = run.window_seconds
    assert config.prometheus_url is not None
    for query in source.queries(run.namespace, run.pods, window, config.subquery_step_seconds):
        try:
            samples = _query(
                config.prometheus_url, query.promql, run.end, config.query_timeout_seconds, fetch
            )
        except sources.PrometheusAnswerError as exc:
            reasons.append(f"{source.name}: {exc} (query {query.promql})")
            continue
        samples, dropped = sources.finite(samples)
        if dropped:
            reasons.append(f"{source.name}: ignored {dropped} series with NaN, infinite or negative values")
        if not samples:
            reasons.append(f"{source.name}: no {source.metric} series with labels {query.labels}")
            continue
        if source.per_device and run.accelerators and len(samples) != run.accelerators:
            reasons.append(
                f"{source.name}: {len(samples)} {source.metric} series for {run.accelerators} accelerators "
                f"({query.labels}; {sources.describe(samples)}): "
                + (
                    "duplicate scrapes of one exporter? keep one job per exporter"
                    if len(samples) > run.accelerators
                    else "some devices were not reported; not settling a partial reading"
                )
            )
            continue
        joules = source.joules(samples, window)
        devices = run.accelerators or len(samples)
        mean_watts = joules / window / devices
        if mean_watts > config.max_watts_per_accelerator:
            reasons.append(
                f"{source.name}: {mean_watts:.0f} W per accelerator is above the plausible "
                f"{config.max_watts_per_accelerator:g} W (wrong unit or labels?); query {query.promql}"
            )
            continue
        kwh = joules / sources.JOULES_PER_KWH
        detail = (
            f"{source.exporter} {source.metric} ({query.labels}): {len(samples)} series, "
            f"{kwh:.6g} kWh over {window:.0f}s (mean {mean_watts:.0f} W per accelerator)"
        )
        return Measurement(kwh_it=kwh, source=source.name, detail=detail, series=len(samples)), reasons
    return None, reasons


def measure_job(
    config: settings_mod.MeasuredEnergySettings, run: JobRun, fetch: Fetch | None = None
) -> Outcome:
    """Try the configured sources in order; the first usable reading wins. Never raises."""
    fetch = fetch or _urllib_fetch
    if not config.prometheus_url:
        return Outcome(None, ("measured energy is off: measured_energy.prometheus_url is not set",))
    if not run.pods:
        return Outcome(None, (f"no pods known for the job in {run.namespace}: nothing to measure",))
    if not math.isfinite(run.window_seconds) or run.window_seconds < max(config.min_window_seconds, 0.001):
        return Outcome(
            None,
            (
                f"run of {run.window_seconds:.1f}s is shorter than measured_energy.min_window_seconds "
                f"({config.min_window_seconds:g}s)",
            ),
        )
    reasons: list[str] = []
    applicable = [sources.SOURCES[name] for name in config.sources]
    applicable = [s for s in applicable if run.accelerator_type in s.accelerator_types]
    if not applicable:
        return Outcome(
            None, (f"no configured source measures {run.accelerator_type} ({', '.join(config.sources)})",)
        )
    try:
        for source in applicable:
            found, why = _try_source(config, run, source, fetch)
            reasons.extend(why)
            if found is not None:
                return Outcome(found, tuple(reasons))
    except _Unreachable as exc:
        reasons.append(str(exc))
    except Exception as exc:  # a bug here must not take the operator down: estimates still work
        log.exception("measuring %s/%s failed unexpectedly", run.namespace, run.pods[0])
        reasons.append(f"unexpected error while measuring: {exc!r}")
    return Outcome(None, tuple(reasons))


def measure(
    config: settings_mod.MeasuredEnergySettings, run: JobRun, fetch: Fetch | None = None
) -> Measurement | None:
    """`measure_job`, logging why nothing (or a later source) was used. Never raises."""
    outcome = measure_job(config, run, fetch)
    job = f"{run.namespace}/{run.pods[0] if run.pods else '?'}"
    if outcome.measurement is None:
        if config.prometheus_url:
            level = (
                logging.WARNING
                if any("Prometheus at" in r or "query failed" in r for r in outcome.reasons)
                else logging.INFO
            )
            log.log(
                level, "no measured energy for %s, settling the estimate: %s", job, "; ".join(outcome.reasons)
            )
    else:
        if outcome.reasons:
            log.info(
                "measured energy for %s from %s after: %s",
                job,
                outcome.measurement.source,
                "; ".join(outcome.reasons),
            )
        log.debug("measured energy for %s: %s", job, outcome.measurement.detail)
    return outcome.measurement


def settlement(measurement: Measurement | None, estimated_kwh: float, pue: float) -> Settlement:
    """Facility kWh to settle: measured IT kWh x PUE when measured, else the estimate (PUE included)."""
    if measurement is None:
        return Settlement(
            kwh=estimated_kwh, source="estimate", detail="estimated from board power and runtime"
        )
    return Settlement(
        kwh=measurement.kwh_it * pue,
        source="measured",
        detail=f"{measurement.detail}; x PUE {pue:g}",
    )
