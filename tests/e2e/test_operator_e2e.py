"""The operator end to end on the local control plane: `suanli run` as a subprocess, kwok nodes,
the real scheduler and Job controller. Every wait has a deadline; nothing sleeps blindly."""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Any

import pytest
import yaml
from tests.e2e.helpers import (
    EXPECT_TIMEOUT_S,
    FINAL,
    GROUP,
    VERSION,
    assert_example_outcomes,
    assert_ran_in_bound_pool,
    centers_fixture,  # noqa: F401  (the `centers` fixture)
    compute_job,
    example_centers,
    example_jobs,
    get_center,
    get_job,
    job_phases,
    operator_fixture,  # noqa: F401  (the `operator` fixture)
    small_center,
    wait_for_phase,
    workload_gone,
)

from suanli.kube import workloads

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


def test_every_example_job_lands_where_it_says_and_succeeds(
    kube, operator, fake_nodes, centers, namespace, custom_objects, core_v1, batch_v1, wait_for
):
    from suanli.commands import plan as plan_cmd

    center_docs = example_centers()
    # At most 4 nodes per pool keeps kwok quick; the expectations of jobs.yaml still hold on it
    # (checked below against `suanli plan` on the same reduced fleet for the time-dependent ones).
    fake_nodes(center_docs, nodes_per_pool=None, max_nodes_per_pool=4)
    reduced = example_centers(max_nodes_per_pool=4)
    centers(center_docs)
    jobs = example_jobs(namespace)
    from suanli.api import manifests

    loaded = manifests.parse_text(yaml.safe_dump_all(reduced + [d for d, _ in jobs]), "examples")
    planned = {e["name"]: e for e in plan_cmd.plan_manifests(loaded, time.time())["jobs"]}
    for doc, _ in jobs:
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)

    def settled() -> dict[str, str] | None:
        current = job_phases(custom_objects, namespace)
        waiting = {n: p for n, p in current.items() if p not in (*FINAL, "Queued", "Deferred")}
        return None if waiting or len(current) < len(jobs) else current

    final = wait_for(settled, EXPECT_TIMEOUT_S, lambda: job_phases(custom_objects, namespace), what="every example job to settle")
    bound = assert_example_outcomes(custom_objects, batch_v1, namespace, jobs, final, planned,
                                    {c["metadata"]["name"]: c["metadata"]["name"] for c in center_docs})  # fmt: skip
    for doc, expect in jobs:  # the pods of the jobs expected in a pool: one per replica, asking for its devices
        name = doc["metadata"]["name"]
        if "/" in expect:
            center, pool = expect.split("/")
            pods = core_v1.list_namespaced_pod(namespace, label_selector=f"suanli.io/job={name}").items
            assert len(pods) == doc["spec"].get("replicas", 1)
            spec_pool = next(p for c in center_docs if c["metadata"]["name"] == center for p in c["spec"]["pools"] if p["name"] == pool)
            for pod in pods:
                main = next(c for c in pod.spec.containers if c.name == "main")
                if spec_pool.get("deviceClassName"):  # a DRA pool: the devices come through the pod's claim
                    assert [c.name for c in main.resources.claims] == [workloads.CLAIM], main.resources
                    assert [c.resource_claim_template_name for c in pod.spec.resource_claims] == [f"cj-{name}"]
                else:
                    assert main.resources.limits[spec_pool["resourceName"]] == str(doc["spec"]["accelerators"]["count"])
    # Exactly one batch Job each (none for the jobs that wait), its pods on nodes of the bound pool.
    assert_ran_in_bound_pool(kube, namespace, *bound, exclusive=True)


def test_more_jobs_than_capacity_wait_and_never_oversubscribe(
    operator, fake_nodes, centers, namespace, custom_objects, core_v1, wait_for
):
    name = f"e2e-cap-{uuid.uuid4().hex[:5]}"
    doc = small_center(name)
    fake_nodes(doc, nodes_per_pool=2)
    centers([doc])
    for i in range(6):
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", compute_job(f"j{i}", namespace))
    seen_queued: list[str] = []
    violations: list[str] = []  # wait_for treats exceptions as "not yet", so record and assert after
    max_live = 0

    def observe() -> bool:
        nonlocal max_live
        center = get_center(custom_objects, name)
        for pool in (center.get("status") or {}).get("pools", []):
            if pool["allocated"] > pool["capacity"]:
                violations.append(f"center status: {pool}")
        # Every pod of ours holds 8 GPUs; 2 nodes x 8: at most 2 live pods (Pending ones included).
        pods = core_v1.list_namespaced_pod(namespace, label_selector="suanli.io/job").items
        live = [p.metadata.name for p in pods if p.status.phase not in ("Succeeded", "Failed")]
        max_live = max(max_live, len(live))
        if len(live) > 2:
            violations.append(f"live pods {live}")
        items = custom_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs")["items"]
        for i in items:
            st = i.get("status") or {}
            if st.get("phase") == "Queued":
                seen_queued.append(st["message"])
        return all((i.get("status") or {}).get("phase") == "Succeeded" for i in items)

    wait_for(observe, EXPECT_TIMEOUT_S, lambda: job_phases(custom_objects, namespace), what="all six jobs to succeed",
             interval=0.1, max_interval=0.3)
    assert violations == []
    assert seen_queued and "not enough free accelerators" in seen_queued[0], seen_queued[:1]
    assert max_live == 2
    assert "suanli_job_bind_latency_seconds_count" in operator.metrics()


def test_a_failing_pod_fails_the_job_with_its_reason(operator, fake_nodes, centers, namespace, custom_objects, wait_for):
    name = f"e2e-fail-{uuid.uuid4().hex[:5]}"
    doc = small_center(name, nodes_expected=1)
    fake_nodes(doc, nodes_per_pool=1)
    centers([doc])
    job = compute_job("doomed", namespace, annotations={"pod-fail.stage.kwok.x-k8s.io/delay": "1s"})
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", job)
    wait_for_phase(custom_objects, namespace, "doomed", "Failed", timeout=EXPECT_TIMEOUT_S, what="the job to fail")
    status = get_job(custom_objects, namespace, "doomed")["status"]
    assert "exited with code 1" in status["message"], status["message"]
    assert status["completionTime"] and status["energy"]["source"] == "estimate"


def test_deleting_a_compute_job_removes_its_job_and_pods(operator, fake_nodes, centers, namespace, custom_objects, batch_v1, core_v1, wait_for):
    name = f"e2e-del-{uuid.uuid4().hex[:5]}"
    doc = small_center(name, nodes_expected=1)
    fake_nodes(doc, nodes_per_pool=1)
    centers([doc])
    job = compute_job("long", namespace, annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "10m"})
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", job)
    wait_for_phase(custom_objects, namespace, "long", "Running", timeout=EXPECT_TIMEOUT_S, what="the job to run")
    custom_objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", "long")
    wait_for(lambda: workload_gone(batch_v1, core_v1, namespace, "long"), EXPECT_TIMEOUT_S,
             "the Job and its pods to be garbage-collected")


def test_removing_a_node_updates_center_status(operator, fake_nodes, centers, core_v1, custom_objects, wait_for):
    name = f"e2e-node-{uuid.uuid4().hex[:5]}"
    doc = small_center(name, nodes_expected=2)
    nodes = fake_nodes(doc, nodes_per_pool=2)
    centers([doc])

    def pool() -> dict[str, Any] | None:
        st = get_center(custom_objects, name).get("status") or {}
        return (st.get("pools") or [None])[0]

    wait_for(lambda: (pool() or {}).get("readyNodes") == 2, EXPECT_TIMEOUT_S, pool, what="2 ready nodes in status")
    core_v1.delete_node(nodes[0])

    def degraded() -> bool:
        st = get_center(custom_objects, name)["status"]
        cond = {c["type"]: c for c in st["conditions"]}
        return st["pools"][0]["readyNodes"] == 1 and st["pools"][0]["capacity"] == 8 and cond["Degraded"]["status"] == "True"

    wait_for(degraded, EXPECT_TIMEOUT_S, pool, what="the center to report 1 of 2 nodes and Degraded")


def test_sigkill_restarts_while_binding_never_duplicate_jobs(kube, operator, fake_nodes, centers, namespace, custom_objects, wait_for):
    name = f"e2e-kill-{uuid.uuid4().hex[:5]}"
    doc = small_center(name, nodes_expected=10)
    fake_nodes(doc, nodes_per_pool=10)
    centers([doc])
    total = int(os.environ.get("SUANLI_E2E_RESTART_JOBS", "200"))
    for i in range(total):
        custom_objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "computejobs",
            compute_job(f"r{i:03d}", namespace, count=2, annotations={
                "pod-complete.stage.kwok.x-k8s.io/delay": "1s", "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "3s"}),
        )
    started = time.monotonic()

    def placed() -> int:
        return sum(p in ("Bound", "Running", *FINAL) for p in job_phases(custom_objects, namespace).values())

    # 40 jobs run at a time (10 nodes x 8 GPUs, 2 each), so binding goes on for many rounds: each
    # kill comes once the operator of the moment has bound a batch of its own, i.e. mid-way through
    # its writes, and the point is to interrupt it there.
    batch = max(1, total // 10)
    for _ in range(3):
        before = placed()
        wait_for(lambda before=before: placed() >= before + batch, EXPECT_TIMEOUT_S,
                 lambda: job_phases(custom_objects, namespace), what=f"{batch} more jobs bound before the kill",
                 interval=0.05, max_interval=0.2)
        operator.kill()
        operator.start()

    def all_final() -> bool:
        return all(p in FINAL for p in job_phases(custom_objects, namespace).values())

    wait_for(all_final, 300, lambda: sorted(set(job_phases(custom_objects, namespace).values())), what="all jobs final")
    elapsed = time.monotonic() - started
    phases = job_phases(custom_objects, namespace)
    assert len(phases) == total and set(phases.values()) == {"Succeeded"}, phases
    assert_ran_in_bound_pool(kube, namespace, *phases, exclusive=True)
    print(f"{total} jobs through 3 SIGKILLs in {elapsed:.1f}s", file=sys.stderr)
