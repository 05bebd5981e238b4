"""Run every PromQL expression of the chart's Grafana dashboard and alert rules against a real Prometheus.

    exprs = dashboard_expressions(json.loads(DASHBOARD.read_text())) + alert_expressions(rule_spec)
    outcomes = check(prom, exprs, EXCEPTIONS)
    print(table(outcomes)); assert not failures(outcomes, EXCEPTIONS)

Each expression is run as an instant query, with the dashboard's variables replaced the way Grafana
would with "All" selected (a variable's `allValue`) and Grafana's own ($__rate_interval, ...) by
`GRAFANA_VARIABLES`. It must parse and return at least one series; the few that only return data
under load or failure are listed, each with its reason, in an exceptions map keyed by `source`: those
must still parse, and every metric they name must be known to the Prometheus (a series, or the
metadata a labelled counter exports before its first increment). A variable the map does not know
is an error, never left in the query.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

# Grafana's built-in variables, as it would fill them for a Prometheus scraped every 15 s or faster.
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*$", re.S)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_METRIC = re.compile(r"\b(suanli_[a-z0-9_]+|up)\b(?!\s*\()")


class Prometheus(Protocol):
    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]: ...

    def api(self, path: str, params: dict[str, str] | None = None, timeout: float = 10) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Expression:
    source: str  # where it is written, e.g. "panel 9 'Accelerators per pool ($center)' B"
    expr: str  # as written
    query: str  # what is run: variables replaced; label_values(m, l) becomes `group by (l) (m)`
    label: str = ""  # a variable's label_values label: every series must carry it
    problem: str = ""  # why it cannot be run (a variable without a substitution)


@dataclasses.dataclass(frozen=True)
class Outcome:
    expression: Expression
    series: int = 0
    error: str = ""  # the query failed (did not parse, bad variable, ...)
    unknown: tuple[str, ...] = ()  # metrics it names that the Prometheus has never seen


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """`expr` with each $var / ${var} / ${var:fmt} replaced; an unknown variable raises KeyError."""

    def one(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in variables:
            raise KeyError(f"variable ${name} has no substitution: add it to the dashboard check's variables")
        return variables[name]

    return _VARIABLE.sub(one, expr)


def dashboard_variables(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Grafana's built-ins plus each templating variable as "All" sets it (its allValue)."""
    out = dict(GRAFANA_VARIABLES)
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "datasource":
            continue
        out[var["name"]] = var.get("allValue") or ".*"
    return out


def _query_of(expr: str, variables: Mapping[str, str]) -> tuple[str, str]:
    text = substitute(expr, variables)
    found = _LABEL_VALUES.match(text)
    if found:  # Grafana asks /api/v1/series; the same series, grouped by the label, as a query
        return f"group by ({found[2]}) ({found[1]})", found[2]
    return text, ""


def dashboard_expressions(dashboard: Mapping[str, Any], variables: Mapping[str, str] | None = None) -> list[Expression]:
    """Every panel target's expr and every query variable's definition."""
    variables = dict(variables) if variables is not None else dashboard_variables(dashboard)
    out: list[Expression] = []
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        expr = var.get("definition") or (var.get("query") or {}).get("query", "")
        out.append(_expression(f"variable ${var['name']}", expr, variables))
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                source = f"panel {panel.get('id')} {panel.get('title', '')!r} {target.get('refId', '')}".rstrip()
                out.append(_expression(source, target["expr"], variables))
    return out


def _panels(panels: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for panel in panels:  # rows may hold collapsed panels
        yield panel
        yield from _panels(panel.get("panels", []))


def _expression(source: str, expr: str, variables: Mapping[str, str]) -> Expression:
    try:
        query, label = _query_of(expr, variables)
    except KeyError as exc:
        return Expression(source, expr, "", problem=str(exc.args[0]))
    return Expression(source, expr, query, label)


def alert_expressions(rule_spec: Mapping[str, Any]) -> list[Expression]:
    """Every alerting and recording rule's expr of a PrometheusRule spec (or a rules file)."""
    return [
        Expression(f"{'alert' if 'alert' in rule else 'record'} {rule.get('alert') or rule.get('record')}",
                   str(rule["expr"]), str(rule["expr"]))
        for group in rule_spec.get("groups", [])
        for rule in group.get("rules", [])
    ]


def metric_names(query: str) -> set[str]:
    """The metrics a query names (ours, suanli_*, and `up`); strings and label matchers' values are ignored."""
    return set(_METRIC.findall(_QUOTED.sub('""', query)))


def known_metrics(prom: Prometheus) -> set[str]:
    """Metric names the Prometheus has: every series name, and every name in its metadata (a labelled
    counter or histogram exports # HELP/# TYPE before it has a sample); histograms with their suffixes."""
    names = set(prom.api("label/__name__/values"))
    for name, entries in (prom.api("metadata") or {}).items():
        names.add(name)
        if any(e.get("type") == "histogram" for e in entries):
            names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        if any(e.get("type") == "counter" for e in entries) and not name.endswith("_total"):
            names.add(name + "_total")
    return names


def check(prom: Prometheus, expressions: Iterable[Expression], at: float | None = None) -> list[Outcome]:
    known = known_metrics(prom)
    out: list[Outcome] = []
    for e in expressions:
        if e.problem:
            out.append(Outcome(e, error=e.problem))
            continue
        unknown = tuple(sorted(metric_names(e.query) - known))
        try:
            result = prom.query(e.query, at)
        except AssertionError as exc:  # PrometheusServer.api: a bad query (parse error, ...)
            out.append(Outcome(e, error=str(exc), unknown=unknown))
            continue
        if e.label and any(not r["metric"].get(e.label) for r in result):
            out.append(Outcome(e, len(result), f"a series has no {e.label!r} label", unknown))
            continue
        out.append(Outcome(e, len(result), unknown=unknown))
    return out


def failures(outcomes: Iterable[Outcome], exceptions: Mapping[str, str]) -> list[str]:
    """Why each failing expression fails; also exceptions that match no expression (a stale list)."""
    outcomes = list(outcomes)
    problems = []
    for o in outcomes:
        source = o.expression.source
        if o.error:
            problems.append(f"{source}: {o.error}")
        elif o.unknown:
            problems.append(f"{source}: names metrics the operator does not export: {', '.join(o.unknown)}")
        elif o.series == 0 and source not in exceptions:
            problems.append(f"{source}: returned no data: {o.expression.query}")
    stale = sorted(set(exceptions) - {o.expression.source for o in outcomes})
    problems += [f"exception {s!r} matches no expression: remove it from the list" for s in stale]
    return problems


def table(outcomes: Iterable[Outcome], exceptions: Mapping[str, str]) -> str:
    """One line per expression: its source, what it returned, and the query run."""
    lines = []
    for o in outcomes:
        source = o.expression.source
        if o.error:
            result = f"ERROR {o.error}"
        elif o.unknown:
            result = f"UNKNOWN METRIC {', '.join(o.unknown)}"
        elif o.series:
            result = f"data: {o.series} series"
        elif source in exceptions:
            result = f"no data, allowed: {exceptions[source]}"
        else:
            result = "NO DATA"
        lines.append(f"{source}\n    -> {result}\n    {' '.join(o.expression.query.split())}")
    return "\n".join(lines)
