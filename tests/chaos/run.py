"""Running a chaos scenario from a test: run it, print and write the report, then assert that the
run did what it was asked (jobs, faults, kinds) and that no invariant was violated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.chaos import report, scenario


def run_and_report(params: scenario.Params, kube: Any, namespace: str, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> scenario.Result:
    result = scenario.Scenario(params, kube, namespace, tmp_path).run()
    path = report.write(result)
    with capsys.disabled():
        print(f"\n{report.render(result)}\nreport: {path}")
    assert not result.aborted, f"the run was aborted: {result.aborted} (report {path})"
    assert result.jobs_submitted >= params.jobs, (
        f"only {result.jobs_submitted} of {params.jobs} jobs submitted within {params.duration_s:g}s (report {path})")
    assert len(result.faults) >= params.faults and len(result.fault_counts) >= params.min_kinds, (
        f"{len(result.faults)} faults of {len(result.fault_counts)} kinds injected, asked for {params.faults} of "
        f"at least {params.min_kinds} kinds within {params.duration_s:g}s: {result.fault_counts} (report {path})")
    problems = [f"{v.kind}: {v.detail}" for v in result.violations]
    assert not problems, f"{len(problems)} invariant violations (report {path}):\n" + "\n".join(problems[:30])
    assert result.quiesce_seconds is not None, f"not quiet within {params.quiesce_timeout_s:g}s (report {path})"
    return result
