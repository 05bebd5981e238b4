"""A real Prometheus scrapes the operator on the local cluster; the queries the chart's dashboard and
alerts use return what the cluster holds. Everything on 127.0.0.1; every wait has a deadline.

After the run (jobs placed and completed, in a center with a location and an energy budget, under a
ComputeQueue with an energy budget), every PromQL expression of the Grafana dashboard (panel targets
and variable queries) and of the PrometheusRule the chart renders is run against that Prometheus and
must return data, but for the few in EXCEPTIONS, which only return data under load or failure: those
must parse and name only metrics the Prometheus knows. The table of expressions and what each returned
is printed (`pytest -s` or the captured output of a failure). A misspelt metric name in a panel, or in
an expression listed as an exception, is then shown to fail the same check.

The local cluster may be shared with other test sessions (the operator is cluster-wide), so counts
over all jobs are lower bounds; the pool's capacity is exact (the center is this test's own).
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from tests.e2e.helpers import GROUP, VERSION, OperatorProcess, job_phases, short_job, small_center
from tests.tools import helmkit, promql_check
from tests.tools.prometheus import static_job
from tests.tools.prometheus_plugin import prometheus_binary, prometheus_factory  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

NODES, PER_NODE, JOBS = 3, 8, 5
WAITING = ("Pending", "Queued", "Deferred")  # the phases suanli_queue_length counts
DASHBOARD = helmkit.CHART / "files" / "dashboard.json"
REPORT = helmkit.ROOT / "reports" / "e2e" / "dashboard-queries.txt"  # the table below, kept after the run
LOCATION = {"latitude": 26.4, "longitude": 106.4}  # Gui'an
# The PrometheusRule as the chart renders it, for this Prometheus's job name, with every threshold at (near) its
# floor: an alert then returns data wherever the series it compares exist, which is what is checked here (that
# its metric names, labels and joins match what the operator exports). The thresholds themselves are checked
# by promtool's unit tests (tests/unit/helm_alerts).
ALERT_VALUES = {"prometheusRule": {
    "enabled": True, "operatorJob": "suanli", "queuedTooLongSeconds": 1e-6, "energyBudgetFraction": 1e-6,
    "queueBudgetFraction": 1e-6, "apiWriteErrorsPer10m": 1e-6,
}}
WRITE_ERRORS = ("suanli_api_write_errors_total has series only once a write to the API server failed (its "
                "# HELP/# TYPE are exported from the start); no write fails in this run")
# Expressions allowed to return no data after the run, each with why (reviewed: keep it short).
EXCEPTIONS = {
    "alert SuanliOperatorDown": "fires only when no operator replica is scraped; this run's operator is up",
    "alert SuanliAPIWriteErrors": WRITE_ERRORS,
    "alert SuanliJobQueuedTooLong": "suanli_job_queued_seconds is 0 when no job waits in Queued, and every job "
                                    "of this run was placed at once",
    "panel 4 'API write errors (10m)' A": WRITE_ERRORS,
    "panel 8 'API write errors by verb and resource' A": WRITE_ERRORS,
}


def waiting_phases(custom_objects: Any) -> dict[tuple[str, str], str]:
    """Every ComputeJob in the cluster that waits for a placement -> its phase (Pending: no status yet)."""
    items = custom_objects.list_cluster_custom_object(GROUP, VERSION, "computejobs")["items"]
    phases = {(i["metadata"]["namespace"], i["metadata"]["name"]): (i.get("status") or {}).get("phase", "Pending")
              for i in items if not i["metadata"].get("deletionTimestamp")}
    return {key: phase for key, phase in phases.items() if phase in WAITING}


def test_prometheus_scrapes_the_operators_metrics(
    kube: Any, tmp_path: Path, fake_nodes: Any, core_v1: Any, custom_objects: Any, namespace: str, wait_for: Any,
    prometheus_factory: Any,  # noqa: F811
) -> None:
    op = OperatorProcess(kube.kubeconfig, tmp_path, "metrics", ["--namespace", namespace]).start()
    try:
        prom = prometheus_factory([static_job("suanli", [f"127.0.0.1:{op.metrics_port}"])])
        prom.wait_for_targets_up(["suanli"], timeout=30)

        name = f"e2e-prom-{uuid.uuid4().hex[:5]}"
        doc = small_center(name, NODES, PER_NODE)
        doc["spec"].update(location=LOCATION, displayName="e2e metrics center")
        doc["spec"]["energy"]["budget"] = {"kWh": 100, "period": "Day"}  # the jobs' estimates: about 1 kWh each
        fake_nodes(doc, nodes_per_pool=NODES)
        custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)
        core_v1.patch_namespace(namespace, {"metadata": {"labels": {"suanli.io/queue": name}}})
        custom_objects.create_cluster_custom_object(GROUP, VERSION, "computequeues", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ComputeQueue", "metadata": {"name": name},
            "spec": {"namespaceSelector": {"matchLabels": {"suanli.io/queue": name}},
                     "quota": {"energy": {"kWh": 100, "period": "Month"}}},
        })
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

            info = prom.query(f'suanli_center_info{{center="{name}"}}')
            assert [(i["metric"]["latitude"], i["metric"]["longitude"], i["metric"]["region"]) for i in info] == [
                ("26.4", "106.4", "cn-guizhou")], info
            assert prom.value(f'suanli_center_carbon_grams_per_kwh{{center="{name}"}}') == 400
            check_every_dashboard_and_alert_expression(prom, tmp_path, wait_for)

            # A deleted center leaves the map, and every other series that names it goes too.
            custom_objects.delete_cluster_custom_object(GROUP, VERSION, "computecenters", name)
            wait_for(lambda: not prom.query(f'{{center="{name}"}}'), 30,
                     lambda: prom.query(f'{{center="{name}"}}'), what=f"every series of center {name} to go")
        finally:
            for plural in ("computequeues", "computecenters"):
                with contextlib.suppress(ApiException):  # the center is gone already when the test got that far
                    custom_objects.delete_cluster_custom_object(GROUP, VERSION, plural, name)
    finally:
        op.stop()


def check_every_dashboard_and_alert_expression(prom: Any, tmp_path: Path, wait_for: Any) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rules = helmkit.one(helmkit.render(ALERT_VALUES, tmp_dir=tmp_path), "PrometheusRule")["spec"]
    expressions = promql_check.dashboard_expressions(dashboard) + promql_check.alert_expressions(rules)
    assert len(expressions) >= 25, [e.source for e in expressions]  # every panel, variable and alert was found
    outcomes: list[promql_check.Outcome] = []

    def all_pass() -> bool:
        # The queue's gauges follow its status writes (batched): poll until every expression answers.
        outcomes[:] = promql_check.check(prom, expressions)
        return not promql_check.failures(outcomes, EXCEPTIONS)

    try:
        wait_for(all_pass, 30, lambda: promql_check.failures(outcomes, EXCEPTIONS),
                 what="every dashboard and alert expression to return data")
    finally:
        report = (f"{len(outcomes)} dashboard and alert expressions against the run's Prometheus:\n"
                  + promql_check.table(outcomes, EXCEPTIONS) + "\n")
        print("\n" + report)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(report, encoding="utf-8")

    # The same check fails on a misspelt metric: in a panel that must return data, and in one listed as an
    # exception (there, the name unknown to Prometheus is what fails it).
    for panel_id, right, wrong in ((9, "suanli_pool_accelerators", "suanli_pool_acelerators"),
                                   (4, "suanli_api_write_errors_total", "suanli_api_write_error_total")):
        broken = copy.deepcopy(dashboard)
        panel = next(p for p in broken["panels"] if p["id"] == panel_id)
        assert right in panel["targets"][0]["expr"]
        panel["targets"][0]["expr"] = panel["targets"][0]["expr"].replace(right, wrong)
        source = f"panel {panel_id} {panel['title']!r} {panel['targets'][0]['refId']}"
        altered = [e for e in promql_check.dashboard_expressions(broken) if e.source == source]
        problems = promql_check.failures(promql_check.check(prom, altered), EXCEPTIONS)
        assert any(p.startswith(source) and wrong in p for p in problems), problems
