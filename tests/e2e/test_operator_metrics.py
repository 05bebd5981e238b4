"""A real Prometheus scrapes the operator on the local cluster; the queries the chart's dashboard and
alerts use return what the cluster holds. Everything on 127.0.0.1; every wait has a deadline.

The local cluster may be shared with other test sessions (the operator is cluster-wide), so counts
over all jobs are lower bounds; the pool's capacity is exact (the center is this test's own).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.helpers import GROUP, VERSION, OperatorProcess, job_phases, short_job, small_center
from tests.tools.prometheus import static_job
from tests.tools.prometheus_plugin import prometheus_binary, prometheus_factory  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

NODES, PER_NODE, JOBS = 3, 8, 5
WAITING = ("Pending", "Queued", "Deferred")  # the phases suanli_queue_length counts


def waiting_phases(custom_objects: Any) -> dict[tuple[str, str], str]:
    """Every ComputeJob in the cluster that waits for a placement -> its phase (Pending: no status yet)."""
    items = custom_objects.list_cluster_custom_object(GROUP, VERSION, "computejobs")["items"]
    phases = {(i["metadata"]["namespace"], i["metadata"]["name"]): (i.get("status") or {}).get("phase", "Pending")
              for i in items if not i["metadata"].get("deletionTimestamp")}
    return {key: phase for key, phase in phases.items() if phase in WAITING}


def test_prometheus_scrapes_the_operators_metrics(
    kube: Any, tmp_path: Path, fake_nodes: Any, custom_objects: Any, namespace: str, wait_for: Any,
    prometheus_factory: Any,  # noqa: F811
) -> None:
    op = OperatorProcess(kube.kubeconfig, tmp_path, "metrics", ["--namespace", namespace]).start()
    try:
        prom = prometheus_factory([static_job("suanli", [f"127.0.0.1:{op.metrics_port}"])])
        prom.wait_for_targets_up(["suanli"], timeout=30)

        name = f"e2e-prom-{uuid.uuid4().hex[:5]}"
        doc = small_center(name, NODES, PER_NODE)
        fake_nodes(doc, nodes_per_pool=NODES)
        custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)
        try:
            for i in range(JOBS):
                custom_objects.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "computejobs", short_job(f"m{i}", namespace)
                )
            wait_for(lambda: set(job_phases(custom_objects, namespace).values()) == {"Succeeded"}
                     and len(job_phases(custom_objects, namespace)) == JOBS, 120,
                     lambda: job_phases(custom_objects, namespace), what="the jobs to succeed")
            done = time.time()
            prom.wait_for_scrape_after(done + 1.5, ["suanli"], timeout=20)  # a scrape after the status settled

            def succeeded() -> float | None:
                value = prom.value('suanli_jobs{phase="Succeeded"}')
                return value if value >= JOBS else None

            wait_for(succeeded, 30, lambda: prom.query("suanli_jobs"), what='suanli_jobs{phase="Succeeded"} >= jobs')
            assert prom.value("suanli_job_bind_latency_seconds_count") >= JOBS
            assert prom.value("suanli_binds_total") >= JOBS
            capacity = prom.value(f'suanli_pool_accelerators{{center="{name}",pool="a100",state="capacity"}}')
            assert capacity == NODES * PER_NODE
            wait_for(lambda: prom.value(f'suanli_pool_accelerators{{center="{name}",state="allocated"}}') == 0, 30,
                     lambda: prom.query(f'suanli_pool_accelerators{{center="{name}"}}'), what="all accelerators freed")
            assert prom.value(f'suanli_pool_accelerators{{center="{name}",state="free"}}') == NODES * PER_NODE
            # Every job of this test left the queue; what the queue gauges show is what waits cluster-wide
            # (none, unless another session's jobs do), as the operator saw it at its last cycle.
            def queue_as_the_cluster_has_it() -> tuple[float, float] | None:
                waiting = waiting_phases(custom_objects)
                length, oldest = prom.value("suanli_queue_length"), prom.value("suanli_job_queued_seconds")
                matches = length == len(waiting) and (oldest > 0 if "Queued" in waiting.values() else oldest == 0)
                return (length, oldest) if matches else None

            wait_for(queue_as_the_cluster_has_it, 30, lambda: (prom.query("suanli_queue_length"),
                     prom.query("suanli_job_queued_seconds"), waiting_phases(custom_objects)),
                     what="the queue gauges to match the ComputeJobs waiting in the cluster")
            assert prom.value("suanli_scheduling_cycle_seconds_count") > 0
            assert prom.value("histogram_quantile(0.99, sum(rate(suanli_scheduling_cycle_seconds_bucket[1m])) by (le))") < 5
            # A counter with labels shows once a write failed; its metadata is always exported.
            meta = prom.api("metadata", {"metric": "suanli_api_write_errors"})
            meta_total = prom.api("metadata", {"metric": "suanli_api_write_errors_total"})
            assert meta or meta_total, "suanli_api_write_errors_total is not known to Prometheus"
            assert (meta or meta_total)[next(iter(meta or meta_total))][0]["type"] == "counter"
        finally:
            custom_objects.delete_cluster_custom_object(GROUP, VERSION, "computecenters", name)
    finally:
        op.stop()
