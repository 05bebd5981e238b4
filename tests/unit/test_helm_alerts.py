"""The chart's alerts pass `promtool check rules` and fire (and stay quiet) as tests/unit/helm_alerts says.

The rules file is extracted from the PrometheusRule that the real Helm engine renders, so what is
tested is exactly what a cluster gets.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.tools import helmkit  # noqa: E402

pytestmark = pytest.mark.timeout(1800)  # the first test may build helm (minutes)

TESTS = Path(__file__).parent / "helm_alerts" / "alerts_test.yaml"


def _rules(tmp_path: Path, values: dict[str, Any] | None = None) -> Path:
    objects = helmkit.render(
        {"prometheusRule": {"enabled": True}, **(values or {})}, release="suanli", tmp_dir=tmp_path
    )
    rule = helmkit.one(objects, "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    return path


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helmkit.tool("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    proc = _promtool("check", "rules", str(rules))
    assert proc.returncode == 0, f"promtool check rules failed:\n{proc.stdout}\n{proc.stderr}"
    assert "SUCCESS: 5 rules found" in proc.stdout, proc.stdout


def test_rules_with_custom_values_pass_promtool_check(tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        {
            "fullnameOverride": "sched",
            "prometheusRule": {
                "enabled": True,
                "operatorJob": "kube-system/suanli",
                "alertLabels": {"team": "platform", "page": "true"},
                "queuedTooLongSeconds": 120.5,
                "energyBudgetFraction": 0.75,
                "apiWriteErrorsPer10m": 1,
                "operatorDownForMinutes": 2,
            },
        },
    )
    proc = _promtool("check", "rules", str(rules))
    assert proc.returncode == 0, f"promtool check rules failed:\n{proc.stdout}\n{proc.stderr}"
    text = rules.read_text()
    assert 'up{job="kube-system/suanli"}' in text and "> 0.75" in text and "> 120.5" in text


def test_every_alert_fires_in_the_unit_tests(tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    alerts = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    fired = {
        check["alertname"]
        for case in cases
        for check in case.get("alert_rule_test", [])
        if check.get("exp_alerts")
    }
    quiet = {
        check["alertname"]
        for case in cases
        for check in case.get("alert_rule_test", [])
        if not check.get("exp_alerts")
    }
    assert alerts == fired, (
        f"alerts without a firing test: {alerts - fired}; unknown alerts tested: {fired - alerts}"
    )
    assert alerts == quiet, f"alerts without a stays-quiet test: {alerts - quiet}"


def test_promtool_test_rules(tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    spec = yaml.safe_load(TESTS.read_text())
    spec["rule_files"] = [str(rules)]
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = _promtool("test", "rules", str(test_file))
    assert proc.returncode == 0, f"promtool test rules failed:\n{proc.stdout}\n{proc.stderr}"


def test_promtool_test_can_fail(tmp_path: Path) -> None:
    """A wrong expectation is reported: the tests above are not vacuous."""
    rules = _rules(tmp_path, {"prometheusRule": {"enabled": True, "queuedTooLongSeconds": 99999}})
    spec = yaml.safe_load(TESTS.read_text())
    spec["rule_files"] = [str(rules)]
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = _promtool("test", "rules", str(test_file))
    assert proc.returncode != 0
    assert "SuanliJobQueuedTooLong" in proc.stdout + proc.stderr
