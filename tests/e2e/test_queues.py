"""Tenants end to end (issue #15, first part): ComputeQueues on the local control plane, with the
operator as a subprocess.

- A queue admits its namespace's jobs up to its accelerator quota; the next job waits, its message
  naming the queue, the dimension, what it needs and what is left; a SIGKILLed and restarted operator
  rebuilds the same usage from the jobs' statuses (the waiting job still waits); when the first job
  finishes, the second runs. The queue's status reads usage against quota.
- A queue's energy budget runs out and its next job waits, then runs once the budget period rolls
  over in the queue's time zone (the injected clock of tests/e2e/test_operator_energy.py).
- A lender reclaims its quota from a borrower by preemption, across a SIGKILL restart.
- A higher-priority job preempts a lower one of its own queue (withinQueue), whose energy so far is
  settled in its status and in the queue's settled use.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from tests.e2e.helpers import (
    BOUND_OR_LATER,
    EXPECT_TIMEOUT_S,
    GROUP,
    VERSION,
    Operator,
    centers_fixture,  # noqa: F401  (the `centers` fixture)
    compute_job,
    job_status,
    only_on,
    small_center,
    wait_for_phase,
)
from tests.e2e.test_operator_energy import KIRITIMATI, OffsetFile, clocked_operator, test_clock  # noqa: F401

from suanli.ledger import energy as energy_mod

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


@pytest.fixture
def queues(custom_objects: Any) -> Iterator[Callable[[dict[str, Any]], None]]:
    """``queues(doc)`` creates a ComputeQueue; every one made is deleted after the test."""
    made: list[str] = []

    def make(doc: dict[str, Any]) -> None:
        custom_objects.create_cluster_custom_object(GROUP, VERSION, "computequeues", doc)
        made.append(doc["metadata"]["name"])

    yield make
    for name in made:
        with contextlib.suppress(ApiException):
            custom_objects.delete_cluster_custom_object(GROUP, VERSION, "computequeues", name)


def queue_doc(name: str, label: str, quota: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ComputeQueue", "metadata": {"name": name},
            "spec": {"namespaceSelector": {"matchLabels": {"suanli.io/queue": label}}, "quota": quota, **spec}}


def queue_status(custom_objects: Any, name: str) -> dict[str, Any]:
    return custom_objects.get_cluster_custom_object(GROUP, VERSION, "computequeues", name).get("status") or {}


def fleet_of_one(prefix: str, nodes: int, fake_nodes: Any, centers: Any) -> tuple[dict[str, Any], str]:
    """A one-pool center `<prefix>-<tag>` of `nodes` 8-GPU kwok nodes, the only one jobs may use; (center, tag)."""
    tag = uuid.uuid4().hex[:5]
    center = small_center(f"{prefix}-{tag}", nodes_expected=nodes)
    only_on(center)
    fake_nodes(center, nodes_per_pool=nodes)
    centers([center])
    return center, tag


def job(name: str, ns: str, center: dict[str, Any], run: str, duration: str = "1h") -> dict[str, Any]:
    # The delay alone: kwok's jitter, when shorter than the delay, would replace it (kwok-stages.yaml).
    doc = compute_job(name, ns, count=8, annotations={"pod-complete.stage.kwok.x-k8s.io/delay": run})
    only_on(center, doc)
    doc["spec"]["runtime"] = {"estimatedDuration": duration}
    return doc


def test_a_queue_admits_up_to_its_quota_survives_a_restart_and_admits_the_next_job_when_one_ends(
    kube: Any, tmp_path: Any, fake_nodes: Any, centers: Any, queues: Any, namespace: str, core_v1: Any,
    custom_objects: Any, wait_for: Any,
) -> None:
    center, tag = fleet_of_one("e2e-q", 2, fake_nodes, centers)  # 16 GPUs: room for both jobs but for the quota
    name = f"e2e-q-{tag}"
    queues(queue_doc(name, name, {"accelerators": [{"type": "GPU", "count": 8}]}))
    core_v1.patch_namespace(namespace, {"metadata": {"labels": {"suanli.io/queue": name}}})
    op = Operator(kube.kubeconfig, tmp_path)
    op.start()
    try:
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                       job("first", namespace, center, run="40s"))
        wait_for_phase(custom_objects, namespace, "first", *BOUND_OR_LATER, what="the first job bound")
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                       job("second", namespace, center, run="3s"))
        want = (f"waiting for its ComputeQueue: queue {name} accelerators/GPU: job needs 8, 0 left "
                "(nominal 8, no cohort to borrow from)")
        second = wait_for(lambda: (st := job_status(custom_objects, namespace, "second")).get("message", "").startswith(want)
                          and st, EXPECT_TIMEOUT_S, lambda: job_status(custom_objects, namespace, "second"),
                          what="the second job waiting for its queue")
        assert second["phase"] == "Queued" and second["queue"] == name
        assert job_status(custom_objects, namespace, "first")["queue"] == name
        status = wait_for(lambda: (st := queue_status(custom_objects, name)).get("waitingJobs") == 1 and st,
                          EXPECT_TIMEOUT_S, lambda: queue_status(custom_objects, name), what="the queue's status")
        assert status["accelerators"] == "8/8 GPU" and status["admittedJobs"] == 1, status
        # Restarted while the first job runs: the usage comes back from its status, the second still waits.
        op.kill()
        op.start()
        wait_for(lambda: "suanli_queue_usage{" in op.metrics() or None, EXPECT_TIMEOUT_S, "the queue metrics after the restart")
        first = job_status(custom_objects, namespace, "first")
        assert first["phase"] in BOUND_OR_LATER[:2], first  # Bound or Running
        assert job_status(custom_objects, namespace, "second")["phase"] == "Queued"
        assert f'suanli_queue_usage{{dimension="accelerators/GPU",queue="{name}"}} 8.0' in op.metrics()
        wait_for_phase(custom_objects, namespace, "first", "Succeeded", what="the first job to succeed")
        wait_for_phase(custom_objects, namespace, "second", "Succeeded", what="the second job to run once the first ended")
        assert " 403 " not in op.log_text()
    finally:
        op.stop()


def test_a_queues_energy_budget_holds_its_next_job_until_the_period_rolls(
    clocked_operator: Any, test_clock: OffsetFile, fake_nodes: Any, centers: Any, queues: Any, namespace: str,  # noqa: F811
    core_v1: Any, custom_objects: Any, wait_for: Any,
) -> None:
    started = time.monotonic()
    center, tag = fleet_of_one("e2e-qe", 1, fake_nodes, centers)
    name = f"e2e-qe-{tag}"
    # A100 x 8 x 400 W x PUE 1.2 = 3.84 kW: 30 s = 0.032 kWh, 45 s = 0.048 kWh; 0.05 kWh a day, in Kiritimati.
    queues(queue_doc(name, name, {"energy": {"kWh": 0.05, "period": "Day"}}, timeZone=KIRITIMATI))
    core_v1.patch_namespace(namespace, {"metadata": {"labels": {"suanli.io/queue": name}}})
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                   job("first", namespace, center, run="3s", duration="30s"))
    wait_for_phase(custom_objects, namespace, "first", "Succeeded", what="the first job to succeed")
    used = job_status(custom_objects, namespace, "first")["energy"]["kWh"]
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                   job("second", namespace, center, run="3s", duration="45s"))
    want = f"waiting for its ComputeQueue: queue {name} energy budget: job needs 0.048 kWh, "
    second = wait_for(lambda: (st := job_status(custom_objects, namespace, "second")).get("message", "").startswith(want)
                      and st, EXPECT_TIMEOUT_S, lambda: job_status(custom_objects, namespace, "second"),
                      what="the second job waiting for its queue's energy budget")
    _, period_end, label = energy_mod.period_bounds(test_clock.now(), KIRITIMATI, "Day")
    assert f"left in {label}" in second["message"], second["message"]
    status = wait_for(lambda: (st := queue_status(custom_objects, name)).get("energy") and st, EXPECT_TIMEOUT_S,
                      lambda: queue_status(custom_objects, name), what="the queue's energy in its status")
    assert status["energy"].endswith("/0.05 kWh") and status["period"] == label, status
    assert used > 0
    test_clock.advance_to(period_end + 30)
    wait_for_phase(custom_objects, namespace, "second", *BOUND_OR_LATER, timeout=30, what="the second job in the new day")
    wait_for_phase(custom_objects, namespace, "second", "Succeeded", what="the second job to succeed")
    print(f"queue budget test in {time.monotonic() - started:.1f}s")


def test_a_lender_reclaims_its_quota_by_preempting_the_borrower_across_a_restart(
    kube: Any, tmp_path: Any, fake_nodes: Any, centers: Any, queues: Any, namespace: str, core_v1: Any,
    custom_objects: Any, batch_v1: Any, wait_for: Any,
) -> None:
    """Queues lend and borrow within cohort r: a (8 GPUs) borrows b's idle 8 for its second job; b's job
    arrives and b (reclaimBorrowed) takes its quota back: a's later job is preempted (its Job deleted, a
    Preempted condition naming b's job), b's job runs; the operator is SIGKILLed and restarted in the
    middle and nothing more is preempted; a's job runs again once capacity frees."""
    center, tag = fleet_of_one("e2e-qr", 2, fake_nodes, centers)  # 16 GPUs
    qa, qb = f"e2e-qa-{tag}", f"e2e-qb-{tag}"
    queues(queue_doc(qa, qa, {"accelerators": [{"type": "GPU", "count": 8}]}, cohort=f"r-{tag}"))
    queues(queue_doc(qb, qb, {"accelerators": [{"type": "GPU", "count": 8}]}, cohort=f"r-{tag}",
                     preemption={"reclaimBorrowed": True}))
    ns_a, ns_b = namespace, f"{namespace}-b"
    core_v1.patch_namespace(ns_a, {"metadata": {"labels": {"suanli.io/queue": qa}}})
    core_v1.create_namespace({"metadata": {"name": ns_b, "labels": {"suanli.io/queue": qb, "suanli.io/test": "true"}}})
    op = Operator(kube.kubeconfig, tmp_path)
    op.start()
    try:
        wait_for(lambda: core_v1.read_namespaced_service_account("default", ns_b), EXPECT_TIMEOUT_S, "ns-b's ServiceAccount")
        create = custom_objects.create_namespaced_custom_object
        create(GROUP, VERSION, ns_a, "computejobs", job("a1", ns_a, center, run="45s"))
        wait_for_phase(custom_objects, ns_a, "a1", "Running", what="a1 running")
        create(GROUP, VERSION, ns_a, "computejobs", job("a2", ns_a, center, run="120s"))  # borrows b's 8
        wait_for_phase(custom_objects, ns_a, "a2", "Running", what="a2 running on borrowed quota")
        create(GROUP, VERSION, ns_b, "computejobs", job("b1", ns_b, center, run="10s"))

        def preempted() -> tuple[str, dict[str, Any]] | None:
            # The most recently started of a's jobs goes (either, when both started in the same second).
            for name in ("a1", "a2"):
                st = job_status(custom_objects, ns_a, name)
                if st.get("phase") == "Queued" and any(c["type"] == "Preempted" for c in st.get("conditions") or []):
                    return name, st
            return None

        victim, st = wait_for(preempted, EXPECT_TIMEOUT_S,
                              lambda: {n: job_status(custom_objects, ns_a, n) for n in ("a1", "a2")}, what="a job of a preempted")
        spared = "a2" if victim == "a1" else "a1"
        assert f"preempted by {ns_b}/b1 (queue {qb} taking back the quota it lent)" in st["message"], st["message"]
        assert st["requeues"] == 1 and [a["outcome"] for a in st["attempts"]] == ["Preempted"]
        assert job_status(custom_objects, ns_a, spared)["phase"] in ("Running", "Succeeded")  # one victim is enough
        wait_for(lambda: batch_v1.list_namespaced_job(ns_a, label_selector=f"suanli.io/job={victim}").items == [] or None,
                 EXPECT_TIMEOUT_S, f"{victim}'s Job deleted")
        wait_for_phase(custom_objects, ns_b, "b1", *BOUND_OR_LATER, what="b1 bound once the victim stopped")
        op.kill()
        op.start()
        wait_for_phase(custom_objects, ns_b, "b1", "Succeeded", what="b1 to succeed")
        wait_for_phase(custom_objects, ns_a, victim, "Succeeded", timeout=240, what=f"{victim} to run again and succeed")
        final = job_status(custom_objects, ns_a, victim)
        assert final["requeues"] == 1 and [a["outcome"] for a in final["attempts"]] == ["Preempted", "Succeeded"]
        assert not job_status(custom_objects, ns_a, spared).get("requeues")  # never preempted
        assert " 403 " not in op.log_text()
    finally:
        op.stop()
        with contextlib.suppress(ApiException):
            core_v1.delete_namespace(ns_b, propagation_policy="Background")


def test_a_higher_priority_job_preempts_a_lower_one_of_its_queue_whose_energy_so_far_is_settled(
    kube: Any, tmp_path: Any, fake_nodes: Any, centers: Any, queues: Any, namespace: str,
    custom_objects: Any, batch_v1: Any, wait_for: Any, core_v1: Any,
) -> None:
    """One queue (withinQueue: LowerPriority) on one 8-GPU node: its priority-0 job runs; a priority-10 job
    of the same queue arrives and the first is preempted (Job deleted, Preempted condition naming the
    newcomer, attempt counted, the energy it used so far in status.endedAttempts and in the queue's
    settled use); the newcomer runs, then the first runs again and succeeds."""
    center, tag = fleet_of_one("e2e-qw", 1, fake_nodes, centers)
    q = f"e2e-qw-{tag}"
    queues(queue_doc(q, q, {"accelerators": [{"type": "GPU", "count": 16}]}, preemption={"withinQueue": "LowerPriority"}))
    core_v1.patch_namespace(namespace, {"metadata": {"labels": {"suanli.io/queue": q}}})
    op = Operator(kube.kubeconfig, tmp_path)
    op.start()
    try:
        create = custom_objects.create_namespaced_custom_object
        create(GROUP, VERSION, namespace, "computejobs", job("low", namespace, center, run="20s"))
        wait_for_phase(custom_objects, namespace, "low", "Running", what="low running")
        urgent = job("high", namespace, center, run="5s")
        urgent["spec"]["priority"] = 10
        create(GROUP, VERSION, namespace, "computejobs", urgent)

        def preempted() -> dict[str, Any] | None:
            st = job_status(custom_objects, namespace, "low")
            return st if any(c["type"] == "Preempted" for c in st.get("conditions") or []) else None

        st = wait_for(preempted, EXPECT_TIMEOUT_S, lambda: job_status(custom_objects, namespace, "low"), what="low preempted")
        assert f"preempted by {namespace}/high (a job of higher priority in its queue)" in st["message"], st["message"]
        assert st["requeues"] == 1 and [a["outcome"] for a in st["attempts"]] == ["Preempted"]
        (ended,) = st["endedAttempts"]
        assert ended["center"] == center["metadata"]["name"] and ended["queue"] == q and ended["reason"] == "Preempted"
        assert ended["kWh"] > 0 and ended["acceleratorHours"] > 0
        wait_for_phase(custom_objects, namespace, "high", "Succeeded", what="high to succeed")
        wait_for_phase(custom_objects, namespace, "low", "Succeeded", timeout=240, what="low to run again and succeed")
        assert job_status(custom_objects, namespace, "low")["endedAttempts"] == [ended]
        wait_for(lambda: (queue_status(custom_objects, q).get("settled") or {}).get("acceleratorHours", 0)
                 > ended["acceleratorHours"] or None, EXPECT_TIMEOUT_S, lambda: queue_status(custom_objects, q),
                 what="the queue's settled use to count both runs of low and high's")
        assert " 403 " not in op.log_text()
    finally:
        op.stop()
