"""The dashboard/alert query checker's pure parts (tests/tools/promql_check.py): which expressions it finds,
how variables are filled in, which metric names it reads out of a query, and what it calls a failure.
Running the expressions against a real Prometheus is tests/e2e/test_operator_metrics.py's job."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tools import helmkit, promql_check

from suanli import metrics

DASHBOARD = json.loads((helmkit.CHART / "files" / "dashboard.json").read_text(encoding="utf-8"))


def exported() -> set[str]:
    names = {"up"}
    for metric in metrics.ALL:
        kind = type(metric).__name__
        if kind == "Counter":
            names.add(metric._name + "_total")
        elif kind == "Histogram":
            names |= {metric._name + s for s in promql_check.HISTOGRAM_SUFFIXES}
        else:
            names.add(metric._name)
    return names


def test_every_panel_target_and_variable_query_is_found_with_variables_filled_in() -> None:
    found = promql_check.dashboard_expressions(DASHBOARD)
    targets = sum(len(p.get("targets", [])) for p in DASHBOARD["panels"])
    variables = [v for v in DASHBOARD["templating"]["list"] if v["type"] == "query"]
    assert len(found) == targets + len(variables)
    assert all(e.query and "$" not in e.query and not e.problem for e in found), found
    center = next(e for e in found if e.source == "variable $center")
    assert center.query == "group by (center) (suanli_center_info)" and center.label == "center"
    geomap = [e for e in found if e.source.startswith("panel 15 ")]
    assert {e.source.rsplit(" ", 1)[1] for e in geomap} == {"free", "carbon"}
    assert all('center=~".*"' in e.query for e in geomap)


def test_every_metric_the_dashboard_names_is_exported() -> None:
    names = {n for e in promql_check.dashboard_expressions(DASHBOARD) for n in promql_check.metric_names(e.query)}
    assert {"suanli_center_info", "suanli_center_carbon_grams_per_kwh", "suanli_pool_accelerators", "up"} <= names
    assert names <= exported(), sorted(names - exported())


def test_every_metric_the_alerts_name_is_exported(tmp_path: Path) -> None:
    objects = helmkit.render({"prometheusRule": {"enabled": True}}, tmp_dir=tmp_path)
    alerts = promql_check.alert_expressions(helmkit.one(objects, "PrometheusRule")["spec"])
    assert len(alerts) == 5 and all(e.source.startswith("alert Suanli") for e in alerts), alerts
    names = {n for e in alerts for n in promql_check.metric_names(e.query)}
    assert names <= exported(), sorted(names - exported())


def test_metric_names_skip_strings_and_functions() -> None:
    query = 'sum(up{job=~"suanli_fake"}) + histogram_quantile(0.5, rate(suanli_x_bucket[$__rate_interval]))'
    assert promql_check.metric_names(query) == {"up", "suanli_x_bucket"}


def test_an_unknown_variable_is_a_failure_not_a_query_with_a_dollar_in_it() -> None:
    board = {"templating": {"list": []}, "panels": [{"id": 1, "title": "t", "targets": [
        {"refId": "A", "expr": "max(suanli_jobs{phase=~\"$phase\"})"}]}]}
    (e,) = promql_check.dashboard_expressions(board)
    assert e.query == "" and "$phase" in e.problem
    outcome = promql_check.Outcome(e, error=e.problem)
    assert promql_check.failures([outcome], {}) == [f"panel 1 't' A: {e.problem}"]


def test_no_data_fails_unless_listed_and_a_stale_exception_fails_too() -> None:
    quiet = promql_check.Expression("alert X", "vector(1) == 2", "vector(1) == 2")
    empty = promql_check.Outcome(quiet, series=0)
    assert promql_check.failures([empty], {"alert X": "fires only when broken"}) == []
    assert promql_check.failures([empty], {}) == ["alert X: returned no data: vector(1) == 2"]
    assert promql_check.failures([promql_check.Outcome(quiet, series=1)], {"alert Y": "gone"}) == [
        "exception 'alert Y' matches no expression: remove it from the list"]
    unknown = promql_check.Outcome(quiet, series=0, unknown=("suanli_typo",))
    assert "suanli_typo" in promql_check.failures([unknown], {"alert X": "listed"})[0]
