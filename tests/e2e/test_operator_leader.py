"""Two operators with Lease leader election on the local control plane (what the chart's two replicas do).

Exactly one schedules; SIGKILL the leader and the standby takes the Lease within the lease
duration and binds new jobs; no ComputeJob ever gets two batch Jobs. A leader whose Lease is
taken away exits non-zero at once, and a clean stop releases the Lease.
Every wait has a deadline; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.helpers import (
    BOUND_OR_LATER,
    EXPECT_TIMEOUT_S,
    GROUP,
    VERSION,
    OperatorProcess,  # tests/bench imports it from here too
    delete_centers,
    http_status,
    job_phases,
    short_job,
    small_center,
    workloads_per_job,
)

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

TAKEOVER_S = 25.0  # lease 15 s + standby retry 2 s + startup; the brief says "within ~20 s"


@pytest.fixture
def operators(kube: Any, tmp_path: Path) -> Iterator[Any]:
    """`start(name, *extra)` starts an operator; all are stopped after the test."""
    made: list[OperatorProcess] = []

    def start(name: str, *extra: str, wait_healthy: bool = True) -> OperatorProcess:
        op = OperatorProcess(kube.kubeconfig, tmp_path, name, extra)
        made.append(op)
        return op.start(wait_healthy)

    yield start
    for op in made:
        op.stop()


@pytest.fixture
def center(custom_objects: Any, fake_nodes: Any) -> Iterator[str]:
    name = f"e2e-lease-{uuid.uuid4().hex[:5]}"
    doc = small_center(name, nodes_expected=4)
    fake_nodes(doc, nodes_per_pool=4)
    custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)
    yield name
    delete_centers(custom_objects, [name])


def lease_holder(kube: Any, ns: str, name: str) -> str | None:
    from kubernetes import client

    lease = client.CoordinationV1Api(kube.api_client).read_namespaced_lease(name, ns)
    return lease.spec.holder_identity


def lease_args(identity: str, lease: str, ns: str) -> list[str]:
    return ["--leader-election", "lease", "--identity", identity, "--lease-name", lease, "--lease-namespace", ns,
            "--namespace", ns]


def submit(custom_objects: Any, ns: str, names: list[str]) -> None:
    for name in names:
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, ns, "computejobs", short_job(name, ns))


def bound(custom_objects: Any, ns: str, names: list[str]) -> bool:
    current = job_phases(custom_objects, ns)
    return all(current.get(n) in BOUND_OR_LATER for n in names)


def test_one_leader_schedules_and_the_standby_takes_over_after_sigkill(
    kube: Any, operators: Any, center: str, namespace: str, custom_objects: Any, batch_v1: Any, wait_for: Any
) -> None:
    lease = f"suanli-leader-{uuid.uuid4().hex[:5]}"
    a = operators("a", *lease_args("a", lease, namespace))
    wait_for(lambda: lease_holder(kube, namespace, lease) == "a", 30, a.log_tail, what="a to take the Lease")
    b = operators("b", *lease_args("b", lease, namespace))
    # b is a standby: alive (/healthz 200), not ready (/readyz 503), and says so in its log.
    assert http_status(b.url("/readyz")) == 503
    wait_for(lambda: "standby" in b.log_text(), 30, b.log_tail, what="b to log that it waits as a standby")

    first = [f"first-{i}" for i in range(6)]
    submit(custom_objects, namespace, first)
    wait_for(lambda: all(p == "Succeeded" for p in job_phases(custom_objects, namespace).values()) and
             len(job_phases(custom_objects, namespace)) == len(first), EXPECT_TIMEOUT_S,
             lambda: job_phases(custom_objects, namespace), what="the first jobs to succeed under leader a")
    # The operator is cluster-wide and the local cluster may be shared with other test sessions:
    # a counts their jobs too (>=); the standby must have bound nothing at all.
    assert a.metric("suanli_binds_total") >= len(first)
    assert b.metric("suanli_binds_total") == 0, "the standby must not schedule"
    assert "cache primed" not in b.log_text(), "the standby must not even fill its cache"
    assert lease_holder(kube, namespace, lease) == "a"

    killed = time.monotonic()
    a.kill()
    wait_for(lambda: lease_holder(kube, namespace, lease) == "b", TAKEOVER_S, b.log_tail, what="b to take over")
    takeover = time.monotonic() - killed
    second = [f"second-{i}" for i in range(6)]
    submit(custom_objects, namespace, second)
    wait_for(lambda: bound(custom_objects, namespace, second), EXPECT_TIMEOUT_S,
             lambda: job_phases(custom_objects, namespace), what="b to bind the new jobs")
    first_binds = time.monotonic() - killed
    wait_for(lambda: all(p == "Succeeded" for p in job_phases(custom_objects, namespace).values()), EXPECT_TIMEOUT_S,
             lambda: job_phases(custom_objects, namespace), what="every job to succeed")
    assert b.metric("suanli_binds_total") >= 1, b.log_tail()

    per_job = workloads_per_job(batch_v1, namespace)
    assert per_job == dict.fromkeys(first + second, 1), "one batch Job per ComputeJob, never two"
    print(f"lease takeover {takeover:.1f}s after SIGKILL; new jobs bound {first_binds:.1f}s after it", file=sys.stderr)

    # A clean stop hands the Lease back at once (holder cleared) instead of making a successor wait 15 s.
    b.stop()
    assert b.proc is not None and b.proc.returncode == 0, b.log_tail()
    assert lease_holder(kube, namespace, lease) is None


def test_a_leader_whose_lease_is_taken_exits_non_zero_within_the_lease_duration(
    kube: Any, operators: Any, namespace: str, wait_for: Any
) -> None:
    from kubernetes import client

    lease = f"suanli-leader-{uuid.uuid4().hex[:5]}"
    a = operators("a", *lease_args("a", lease, namespace))
    wait_for(lambda: lease_holder(kube, namespace, lease) == "a", 30, a.log_tail, what="a to take the Lease")
    coordination = client.CoordinationV1Api(kube.api_client)
    current = coordination.read_namespaced_lease(lease, namespace)
    current.spec.holder_identity = "intruder"  # e.g. another replica after a long pause of this one
    coordination.replace_namespaced_lease(lease, namespace, current)
    taken = time.monotonic()
    assert a.proc is not None
    wait_for(lambda: a.proc.poll() is not None, 15, a.log_tail, what="a to exit after losing its Lease")
    assert a.proc.returncode == 1, a.log_tail()
    assert "lost the leadership" in a.log_text()
    print(f"leader exited {time.monotonic() - taken:.1f}s after losing the Lease", file=sys.stderr)
