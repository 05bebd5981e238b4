"""The chaos scenario, short (part of make e2e): 40 ComputeJobs of mixed gang shapes while 8 faults,
one of each kind, are injected, the invariants of tests/chaos/invariants.py checked throughout and
the end state checked after quiescing; a few minutes. The full run is `make chaos`
(tests/chaos/test_chaos_full.py). Seed: SUANLI_CHAOS_SEED (the other SUANLI_CHAOS_* sizes are for the full run); the report goes to reports/chaos/.
"""

from __future__ import annotations

import pytest
from tests.chaos import run, scenario

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

SHORT = scenario.Params(seed=scenario.seed_from_env(), jobs=40, faults=8, duration_s=240, quiesce_timeout_s=120,
                                 max_outstanding=30, min_kinds=8, label="chaos-short")


@pytest.mark.timeout(SHORT.bound_s)
def test_chaos_short(kube, namespace, tmp_path, capsys):
    run.run_and_report(SHORT, kube, namespace, tmp_path, capsys)
