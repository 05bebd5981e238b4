"""The full chaos scenario (make chaos): at least 300 ComputeJobs of mixed gang shapes while 56
faults of 8 kinds (7 rounds of every kind) are injected, invariants checked throughout; bounded at
18 minutes for submitting and injecting plus 4 for quiescing (29 in all, setup and restoring
included). Seed: SUANLI_CHAOS_SEED; SUANLI_CHAOS_JOBS, _FAULTS, _DURATION_SECONDS resize it. The
report goes to reports/chaos/. Only with `-m chaos`: a plain `pytest tests` does not start a half-hour run.
"""

from __future__ import annotations

import pytest
from tests.chaos import run, scenario

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]

FULL = scenario.Params.from_env(jobs=300, faults=56, duration_s=1080, quiesce_timeout_s=240,
                                max_outstanding=40, label="chaos-full")


@pytest.mark.timeout(FULL.bound_s)
def test_chaos_full(kube, namespace, tmp_path, capsys, request):
    if "chaos" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the full chaos scenario runs with -m chaos (make chaos)")
    run.run_and_report(FULL, kube, namespace, tmp_path, capsys)
