"""values.schema.json refuses bad values, through the real `helm template` and `helm lint`,
with a message that names the bad value's path (what the person running helm has to fix)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.tools import helmkit  # noqa: E402

pytestmark = pytest.mark.timeout(1800)  # the first test may build helm (minutes)

# (values, text the error must contain: the path of the bad value, and the reason)
BAD: dict[str, tuple[dict[str, Any], list[str]]] = {
    "negative-replicas": ({"replicaCount": -1}, ["/replicaCount", "minimum"]),
    "zero-replicas": ({"replicaCount": 0}, ["/replicaCount", "minimum"]),
    "replicas-as-string": ({"replicaCount": "two"}, ["/replicaCount", "integer"]),
    "numeric-image-tag": ({"image": {"tag": 5}}, ["/image/tag", "string"]),
    "unknown-top-level-key": ({"replicas": 2}, ["replicas", "additional properties"]),
    "typo-in-nested-key": (
        {"metrics": {"serviceMonitor": {"enable": True}}},
        ["/metrics/serviceMonitor", "enable"],
    ),
    "unknown-setting": (
        {"config": {"scoring": {"carbon_weight": 0.5}}},
        ["/config/scoring", "carbon_weight"],
    ),
    "setting-out-of-range": (
        {"config": {"scoring": {"carbon_share": 1.5}}},
        ["/config/scoring/carbon_share", "maximum"],
    ),
    "setting-wrong-type": (
        {"config": {"deferral": {"enabled": "yes"}}},
        ["/config/deferral/enabled", "boolean"],
    ),
    "root-allowed": ({"podSecurityContext": {"runAsNonRoot": False}}, ["/podSecurityContext/runAsNonRoot"]),
    "writable-root": (
        {"securityContext": {"readOnlyRootFilesystem": False}},
        ["/securityContext/readOnlyRootFilesystem"],
    ),
    "bad-leader-election": ({"leaderElection": {"mode": "raft"}}, ["/leaderElection/mode", "lease"]),
    "bad-log-format": ({"logFormat": "logfmt"}, ["/logFormat", "json"]),
    "bad-port": ({"ports": {"metrics": 70000}}, ["/ports/metrics", "maximum"]),
    "bad-digest": ({"image": {"digest": "latest"}}, ["/image/digest"]),
    "bad-pull-policy": ({"image": {"pullPolicy": "Sometimes"}}, ["/image/pullPolicy"]),
    "budget-fraction-over-one": (
        {"prometheusRule": {"energyBudgetFraction": 90}},
        ["/prometheusRule/energyBudgetFraction"],
    ),
    "bad-interval": (
        {"metrics": {"serviceMonitor": {"interval": "30 seconds"}}},
        ["/metrics/serviceMonitor/interval"],
    ),
}


@pytest.mark.parametrize("name", BAD)
def test_helm_template_refuses(name: str, tmp_path: Path) -> None:
    values, expected = BAD[name]
    proc = helmkit.helm_run(helmkit.template_cmd(values, tmp_dir=tmp_path))
    assert proc.returncode != 0, f"helm template accepted bad values {values!r}"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    for text in expected:
        assert text in proc.stderr, f"the error should mention {text!r}:\n{proc.stderr}"


@pytest.mark.parametrize(
    "name", ["negative-replicas", "numeric-image-tag", "unknown-top-level-key", "unknown-setting"]
)
def test_helm_lint_refuses(name: str, tmp_path: Path) -> None:
    values, expected = BAD[name]
    proc = helmkit.helm_run(
        [
            "lint",
            str(helmkit.CHART),
            "--kube-version",
            helmkit.KUBE_VERSION,
            *helmkit.values_args(values, tmp_path),
        ]
    )
    assert proc.returncode != 0, f"helm lint accepted bad values {values!r}"
    assert expected[0] in proc.stdout + proc.stderr


def test_service_account_name_is_required_when_not_created(tmp_path: Path) -> None:
    proc = helmkit.helm_run(helmkit.template_cmd({"serviceAccount": {"create": False}}, tmp_dir=tmp_path))
    assert proc.returncode != 0
    assert "serviceAccount.name is required when serviceAccount.create is false" in proc.stderr


def test_service_monitor_needs_the_service(tmp_path: Path) -> None:
    values = {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}
    proc = helmkit.helm_run(helmkit.template_cmd(values, tmp_dir=tmp_path))
    assert proc.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled" in proc.stderr


def test_good_values_pass(tmp_path: Path) -> None:
    """The schema is not simply refusing everything."""
    values = {
        "replicaCount": 1,
        "image": {"tag": "0.2.0", "pullPolicy": "Always"},
        "config": {"scoring": {"carbon_share": 1.0}},
        "prometheusRule": {"enabled": True, "energyBudgetFraction": 0.8},
        "extraEnv": [{"name": "SUANLI_LOG_LEVEL", "value": "debug"}],
    }
    proc = helmkit.helm_run(helmkit.template_cmd(values, tmp_dir=tmp_path))
    assert proc.returncode == 0, proc.stderr
