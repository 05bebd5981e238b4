"""Every operator metric lives in suanli.metrics, with a unit in its name, and is documented."""

from __future__ import annotations

import pathlib
import re

from suanli import metrics

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_documentation_table_lists_every_metric():
    table = metrics.markdown()
    names = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M)
    assert names == [
        "suanli_jobs",
        "suanli_job_bind_latency_seconds",
        "suanli_scheduling_cycle_seconds",
        "suanli_pool_accelerators",
        "suanli_queue_length",
        "suanli_queue_set_aside",
        "suanli_job_queued_seconds",
        "suanli_api_write_errors_total",
        "suanli_center_energy_kwh",
        "suanli_center_info",
        "suanli_center_carbon_grams_per_kwh",
        "suanli_queue_usage",
        "suanli_queue_quota",
        "suanli_queue_jobs",
        "suanli_binds_total",
        "suanli_job_attempts_ended_total",
        "suanli_task_errors_total",
        "suanli_events_dropped_total",
    ]


def _labels_by_series() -> dict[str, set[str]]:
    """Every exported series name -> the label names it carries (histograms add `le`)."""
    out: dict[str, set[str]] = {}
    for metric in metrics.ALL:
        labels = set(metric._labelnames)
        kind = type(metric).__name__
        if kind == "Counter":
            out[metric._name + "_total"] = labels
        elif kind == "Histogram":
            out.update({metric._name + "_bucket": labels | {"le"}, metric._name + "_sum": labels,
                        metric._name + "_count": labels})
        else:
            out[metric._name] = labels
    return out


def _labels_the_chart_uses() -> set[tuple[str, str]]:
    """(series, label) pairs the chart's dashboard and alerts select on or aggregate by."""
    text = "\n".join(
        (REPO / path).read_text(encoding="utf-8")
        for path in ("helm/suanli/files/dashboard.json", "helm/suanli/templates/prometheusrule.yaml")
    ).replace('\\"', '"')
    used = {
        (series, label)
        for series, body in re.findall(r"\b(suanli_[a-z_]+)\{([^}]*)\}", text)
        for label in re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", body)
    }
    for labels, series in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)(?=[^;]*?\b(suanli_[a-z_]+))", text):
        used |= {(series, label) for label in re.findall(r"[A-Za-z_]\w*", labels)}
    return used


def test_metrics_carry_the_labels_dashboards_use():
    used = _labels_the_chart_uses()
    # The chart selects or aggregates by labels on these (a parse that found nothing proves nothing).
    assert {s for s, _ in used} >= {"suanli_center_energy_kwh", "suanli_pool_accelerators", "suanli_jobs",
                                    "suanli_api_write_errors_total"}, used
    exported = _labels_by_series()
    missing = sorted((s, label) for s, label in used if label not in exported.get(s, set()))
    assert not missing, f"the chart uses labels the operator does not export: {missing}"


def test_a_labelled_counter_counts_each_increment_once():
    labels = {"verb": "create", "resource": "jobs"}
    before = metrics.REGISTRY.get_sample_value("suanli_api_write_errors_total", labels) or 0.0
    metrics.API_WRITE_ERRORS.labels(**labels).inc()
    assert metrics.REGISTRY.get_sample_value("suanli_api_write_errors_total", labels) == before + 1
