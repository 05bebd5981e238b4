"""Every operator metric lives in suanli.metrics, with a unit in its name, and is documented."""

from __future__ import annotations

import re

from suanli import metrics


def test_documentation_table_lists_every_metric():
    table = metrics.markdown()
    names = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M)
    assert names == [
        "suanli_jobs",
        "suanli_job_bind_latency_seconds",
        "suanli_scheduling_cycle_seconds",
        "suanli_pool_accelerators",
        "suanli_queue_length",
        "suanli_job_queued_seconds",
        "suanli_api_write_errors_total",
        "suanli_center_energy_kwh",
        "suanli_binds_total",
    ]


def test_metrics_carry_the_labels_dashboards_use():
    metrics.POOL_ACCELERATORS.labels(center="c", pool="p", state="free").set(3)
    metrics.API_WRITE_ERRORS.labels(verb="create", resource="jobs").inc()
    value = metrics.REGISTRY.get_sample_value("suanli_pool_accelerators", {"center": "c", "pool": "p", "state": "free"})
    assert value == 3
    assert metrics.REGISTRY.get_sample_value("suanli_api_write_errors_total", {"verb": "create", "resource": "jobs"}) >= 1
