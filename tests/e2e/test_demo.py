"""`make demo` end to end, the way CI runs it: the driver in plain-line mode against the cluster
under test, its JSON summary checked against `suanli plan` on the same (reduced) fleet.

The driver starts and stops its own operator; the test gives it a deadline and asserts that
every job plan binds ran to Succeeded in plan's pool, the Queued one still waits with a reason,
and a Deferred one waits with a plannedStart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "tests" / "cluster" / "demo.py"
SUANLI = Path(sys.executable).parent / "suanli"
DEMO_TIMEOUT_S = float(os.environ.get("SUANLI_DEMO_TIMEOUT_SECONDS", "300"))


def _suanli() -> list[str]:
    return [str(SUANLI)] if SUANLI.exists() else [sys.executable, "-m", "suanli.cli"]


def _operator_missing() -> str | None:
    probe = subprocess.run(
        [*_suanli(), "run", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        return f"`suanli run` (the operator) is not available yet: {probe.stderr.strip()[-300:]}"
    return None


def _plan(paths: list[Path]) -> dict[str, dict[str, Any]]:
    cmd = [*_suanli(), "plan", "-o", "json"]
    for path in paths:
        cmd += ["-f", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return {f"{j['namespace']}/{j['name']}": j for j in json.loads(out)["jobs"]}


@pytest.mark.timeout(DEMO_TIMEOUT_S + 180)
def test_demo_runs_the_examples_as_planned(kube: Any, tmp_path: Path) -> None:
    reason = _operator_missing()
    if reason:
        pytest.skip(reason)
    work, summary_file = tmp_path / "demo", tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--no-live", "--timeout", str(DEMO_TIMEOUT_S),
         "--kubeconfig", kube.kubeconfig, "--work-dir", str(work), "--summary-json", str(summary_file)],
        capture_output=True, text=True, timeout=DEMO_TIMEOUT_S + 150, check=False, cwd=REPO,
    )  # fmt: skip
    output = f"exit {proc.returncode}\n--- stdout (tail)\n{proc.stdout[-6000:]}\n--- stderr (tail)\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"the demo failed: {output}"
    summary = json.loads(summary_file.read_text())
    assert summary["finished"], output

    # What plan says about the very manifests the demo applied (its reduced fleet, its delays).
    planned = _plan([work / "centers.yaml", work / "jobs.yaml"])
    ran = {row["job"]: row for row in summary["jobs"]}
    assert set(ran) == set(planned), output
    assert planned["team-b/giant-pretrain"]["phase"] == "Queued", (
        "the giant gang must never fit (see jobs.yaml)"
    )

    for key, plan in planned.items():
        row = ran[key]
        if plan["phase"] == "Bound":
            b = plan["binding"]
            assert (row["phase"], row["center"], row["pool"]) == ("Succeeded", b["center"], b["pool"]), (
                f"{key}: plan binds it to {b['center']}/{b['pool']}; the demo ended with {row}\n{output}"
            )
            assert row["demoRunSeconds"] is not None and row["demoRunSeconds"] <= 60, row
        elif plan["phase"] == "Queued":
            assert row["phase"] == "Queued", f"{key}: plan queues it; the demo ended with {row}\n{output}"
            assert row["message"], f"{key}: Queued without a reason: {row}"
        elif plan["phase"] == "Deferred":
            assert row["phase"] == "Deferred", f"{key}: plan defers it; the demo ended with {row}\n{output}"
            assert row["plannedStart"], f"{key}: Deferred without a plannedStart: {row}"
        else:
            pytest.fail(f"{key}: unexpected planned phase {plan['phase']}")

    totals = summary["totals"]
    assert (
        totals["estimatedKWh"] > 0 and 0 < totals["estimatedCarbonKg"] < totals["nationalAverageCarbonKg"]
    ), totals
    assert (
        "kubectl get computejobs -A" in proc.stdout and "suanli explain team-b/giant-pretrain" in proc.stdout
    )
    assert "stopped the operator started for the demo" in proc.stdout, output
