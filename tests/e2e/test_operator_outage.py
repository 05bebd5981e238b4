"""The operator rides out its API server going away.

The local control plane's kube-apiserver is stopped for a few seconds and started again while
jobs are being bound and run: the operator's watch streams break, its writes fail, and the new
server's watch cache starts at the current version, so resuming a watch from an older one may be
answered 410 Gone. Afterwards the same operator process, never restarted, has brought every job
to Succeeded with exactly one batch Job each, and it is healthy. Local control plane only: an
external cluster's API server is not ours to stop (the test skips there).
"""

from __future__ import annotations

import re
import sys
import uuid

import pytest
from tests.e2e.helpers import (
    EXPECT_TIMEOUT_S,
    FINAL,
    GROUP,
    VERSION,
    assert_ran_in_bound_pool,
    centers_fixture,  # noqa: F401  (the `centers` fixture)
    compute_job,
    http_status,
    job_phases,
    operator_fixture,  # noqa: F401  (the `operator` fixture)
    small_center,
)

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

JOBS = 24  # 2 accelerators each on 2 nodes of 8: three rounds, so the outage falls mid-run
MAX_FAILED_WRITES_PER_JOB = 12
# The scheduler's warnings for a job's failed status write, binding or Job create (the job's ns/name).
FAILED_WRITE = re.compile(r"could not write (?:\w+ for|the \w+ status of) (\S+?):? |"
                          r" (\S+/\S+): could not (?:record the binding|create the workload)")
DOWN_SECONDS = 70  # longer than kopf's default retries (1+1+2+3+5+8+13+21 s), a control-plane upgrade's worth


def test_an_api_server_restart_mid_run_loses_and_duplicates_nothing(
    kube, operator, fake_nodes, centers, namespace, custom_objects, wait_for
):
    if not kube.is_local:
        pytest.skip("stops the local control plane's API server; an external cluster's is not ours to stop")
    name = f"e2e-outage-{uuid.uuid4().hex[:5]}"
    doc = small_center(name, nodes_expected=2)
    fake_nodes(doc, nodes_per_pool=2)
    centers([doc])
    for i in range(JOBS):
        custom_objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "computejobs",
            compute_job(f"o{i:02d}", namespace, count=2, annotations={
                "pod-complete.stage.kwok.x-k8s.io/delay": "3s", "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "3s"}),
        )
    wait_for(lambda: sum(p in ("Bound", "Running") for p in job_phases(custom_objects, namespace).values()) > 0,
             EXPECT_TIMEOUT_S, lambda: job_phases(custom_objects, namespace), what="some jobs bound before the outage")
    phases_before = job_phases(custom_objects, namespace)
    assert sum(p in FINAL for p in phases_before.values()) < JOBS, f"all done before the outage: {phases_before}"

    took = kube.restart_component("kube-apiserver", down_seconds=DOWN_SECONDS)
    assert operator.proc is not None and operator.proc.poll() is None, (
        f"the operator exited during the outage; {operator.log_path}:\n{operator.log_tail()}")

    def all_final() -> bool:
        phases = job_phases(custom_objects, namespace)
        return len(phases) == JOBS and all(p in FINAL for p in phases.values())

    wait_for(all_final, 300, lambda: sorted(job_phases(custom_objects, namespace).items()), what="every job final")
    phases = job_phases(custom_objects, namespace)
    assert set(phases.values()) == {"Succeeded"}, phases
    assert_ran_in_bound_pool(kube, namespace, *phases, exclusive=True)

    # The same process throughout, healthy, and it did notice: its watches broke and came back.
    assert operator.starts == 1 and operator.proc.poll() is None
    assert http_status(operator.url("/healthz")) == 200
    log = operator.log_text()
    assert "watch of " in log and "failed (retrying in" in log, f"no watch error logged during the outage:\n{operator.log_tail()}"
    # Its failed writes were retried with backoff (1, 2, 4 ... 30 s), not in a loop: a job's write
    # fails about eight times over this outage (it failed ~1,600 times before the backoff).
    failed: dict[str, int] = {}
    for line in log.splitlines():
        if m := FAILED_WRITE.search(line):
            job = next(g for g in m.groups() if g)
            failed[job] = failed.get(job, 0) + 1
    assert max(failed.values(), default=0) <= MAX_FAILED_WRITES_PER_JOB, failed
    print(f"{JOBS} jobs through an API server down {DOWN_SECONDS}s (back in {took:.1f}s); "
          f"before: {sorted(set(phases_before.values()))}; failed writes by job: {failed}", file=sys.stderr)
