"""The chaos suite's invariant checks (tests/chaos/invariants.py) on crafted API dicts: each check
passes on a healthy picture and fails on a broken one; the tracker confirms only what persists."""

from __future__ import annotations

from typing import Any

import pytest
from tests.chaos import invariants as inv

GPU = "nvidia.com/gpu"
NS = "chaos"


# --- builders of plain API dicts ---------------------------------------------------------------


def node(name: str, pool: str = "c-a100", *, gpus: int = 8, ready: bool = True, cordoned: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"suanli.io/pool": pool}},
        "spec": {"unschedulable": True} if cordoned else {},
        "status": {"allocatable": {GPU: str(gpus), "cpu": "128"},
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def center(name: str = "c", pools: tuple[str, ...] = ("a100",), status: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {"pools": [{"name": p, "acceleratorType": "GPU", "resourceName": GPU,
                            "nodeSelector": {"suanli.io/pool": f"{name}-{p}"}} for p in pools]},
    }
    if status is not None:
        doc["status"] = {"pools": status}
    return doc


def pool_status(allocated: int, capacity: int = 16, name: str = "a100") -> dict[str, Any]:
    return {"name": name, "capacity": capacity, "allocated": allocated, "free": capacity - allocated}


def pod(name: str, on: str | None, *, job: str = "j1", gpus: int = 8, phase: str = "Running", job_uid: str = "job-uid-1",
        pool: str = "c-a100") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS, "uid": f"pod-{name}", "labels": {"suanli.io/job": job},
                     "ownerReferences": [{"kind": "Job", "name": f"cj-{job}", "uid": job_uid, "controller": True}]},
        "spec": {"nodeName": on, "nodeSelector": {"suanli.io/pool": pool},
                 "containers": [{"name": "main", "resources": {"requests": {GPU: str(gpus)}, "limits": {GPU: str(gpus)}}}]},
        "status": {"phase": phase},
    }


def cj(name: str = "j1", *, uid: str = "cj-uid-1", phase: str = "Running", pool: str | None = "a100", center_name: str = "c",
       replicas: int = 1, count: int = 8, message: str = "placed on c/a100", deleting: bool = False) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "message": message}
    if pool is not None:
        status["binding"] = {"center": center_name, "pool": pool}
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"replicas": replicas, "accelerators": {"count": count}}, "status": status}


def batch_job(name: str = "j1", *, uid: str = "job-uid-1", owner_uid: str | None = "cj-uid-1", owner: str | None = None,
              finished: str | None = None, replicas: int = 1, gpus: int = 8) -> dict[str, Any]:
    refs = [] if owner_uid is None else [{"kind": "ComputeJob", "name": owner or name, "uid": owner_uid, "controller": True}]
    status = {"conditions": [{"type": finished, "status": "True"}]} if finished else {}
    return {
        "metadata": {"name": f"cj-{name}", "namespace": NS, "uid": uid, "labels": {"suanli.io/job": name},
                     "ownerReferences": refs},
        "spec": {"parallelism": replicas, "template": {"spec": {"containers": [
            {"name": "main", "resources": {"requests": {GPU: str(gpus)}}}]}}},
        "status": status,
    }


def kinds(findings: list[inv.Finding]) -> list[str]:
    return sorted(f.kind for f in findings)


NODES = [node("n0"), node("n1")]


# --- (a) allocation --------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "status", "nodes", "pods", "expected"), [
    ("matches", [pool_status(8)], NODES, [pod("p", "n0")], []),
    ("idle", [pool_status(0)], NODES, [], []),
    ("terminated pods do not count", [pool_status(0)], NODES, [pod("p", "n0", phase="Succeeded")], []),
    ("cordoned node's pods are outside, as its capacity", [pool_status(8, 8)], [node("n0"), node("n1", cordoned=True)],
     [pod("p", "n0"), pod("q", "n1")], []),
    ("over capacity (even if the pods say so)", [pool_status(24)], NODES, [pod("p", "n0"), pod("q", "n1"), pod("r", "n1")],
     ["allocated-over-capacity"]),
    ("over capacity and wrong", [pool_status(24)], NODES, [pod("p", "n0")], ["allocated-mismatch", "allocated-over-capacity"]),
    ("leaked allocation", [pool_status(16)], NODES, [pod("p", "n0")], ["allocated-mismatch"]),
    ("missed pods", [pool_status(0)], NODES, [pod("p", "n0", gpus=4)], ["allocated-mismatch"]),
])
def test_check_allocation(case, status, nodes, pods, expected):
    assert kinds(inv.check_allocation([center(status=status)], nodes, pods)) == expected, case


def test_allocation_mismatch_is_keyed_by_its_offset():
    findings = inv.check_allocation([center(status=[pool_status(16)])], NODES, [pod("p", "n0")])
    assert findings[0].key == ("c", "a100", 8) and "allocated 16" in findings[0].detail and "request 8" in findings[0].detail


# --- (b) bound jobs within capacity ----------------------------------------------------------


LIVE = [pod("a", "n0", job="j1"), pod("b", "n1", job="j2", job_uid="job-uid-2")]  # j1's and j2's pods, running


@pytest.mark.parametrize(("case", "nodes", "pods", "jobs", "cjs", "expected", "immediate"), [
    ("fits", NODES, LIVE, [], [cj("j1"), cj("j2", uid="u2")], [], None),
    ("finished and waiting jobs do not count", NODES, LIVE, [],
     [cj("j1"), cj("j2", uid="u2"), cj("j3", uid="u3", phase="Succeeded"), cj("j4", uid="u4", phase="Queued", pool=None)], [], None),
    ("another pool's jobs do not count", NODES, LIVE, [],
     [cj("j1"), cj("j2", uid="u2"), cj("j3", uid="u3", pool="h100")], [], None),
    ("over", NODES, LIVE, [], [cj("j1"), cj("j2", uid="u2"), cj("j3", uid="u3", phase="Bound")], ["bound-over-capacity"], False),
    ("gang over", NODES, [], [], [cj("j1", phase="Bound", replicas=3)], ["bound-over-capacity"], False),
    ("a job being deleted claims nothing", NODES, LIVE, [],
     [cj("j1"), cj("j2", uid="u2"), cj("j3", uid="u3", deleting=True)], [], None),
    ("a lost node's live pods still hold its accelerators", [node("n0")], [LIVE[0], pod("b", "gone", job="j2")], [],
     [cj("j1"), cj("j2", uid="u2")], [], None),
    ("a NotReady node does not count", [node("n0"), node("n1", ready=False)], [LIVE[0]], [],
     [cj("j1"), cj("j2", uid="u2", phase="Bound")], ["bound-over-capacity"], False),
    ("a finished Job whose ComputeJob still reads Running: at once", NODES, LIVE,
     [batch_job("j1", finished="Complete")], [cj("j1"), cj("j2", uid="u2"), cj("j3", uid="u3", phase="Bound")],
     ["bound-over-capacity"], True),
    ("a Running job with no live pod left: at once", NODES, [LIVE[1]], [],
     [cj("j1"), cj("j2", uid="u2"), cj("j3", uid="u3", phase="Bound")], ["bound-over-capacity"], True),
    ("the batch Job's size is what it holds", NODES, LIVE, [batch_job("j1", gpus=4, replicas=2)],
     [cj("j1", count=8, replicas=2), cj("j2", uid="u2")], [], None),
])
def test_check_bound_capacity(case, nodes, pods, jobs, cjs, expected, immediate):
    findings = inv.check_bound_capacity([center()], nodes, pods, jobs, cjs)
    assert kinds(findings) == expected, case
    if findings:
        assert findings[0].immediate is immediate, case


def test_a_node_lost_a_moment_ago_still_counts_for_its_grace_period():
    bound = [cj("j1", phase="Bound"), cj("j2", uid="u2", phase="Bound")]
    assert inv.check_bound_capacity([center()], [node("n0")], [], [], bound, lost_nodes=[node("n1")]) == []
    assert kinds(inv.check_bound_capacity([center()], [node("n0")], [], [], bound)) == ["bound-over-capacity"]


@pytest.mark.parametrize(("case", "job", "finished"), [
    ("running", batch_job(), None),
    ("Complete", batch_job(finished="Complete"), "Complete"),
    ("SuccessCriteriaMet first", batch_job(finished="SuccessCriteriaMet"), "SuccessCriteriaMet"),
    ("all pods succeeded, no condition yet", {**batch_job(), "status": {"succeeded": 1}}, "succeeded 1/1"),
    ("a pod failed, backoffLimit 0", {**batch_job(), "status": {"failed": 1}}, "failed 1"),
])
def test_job_finished(case, job, finished):
    assert inv.job_finished(job) == finished, case


def test_a_job_whose_pods_all_succeeded_but_reads_running_is_over_capacity_at_once():
    done = {**batch_job("j1"), "status": {"succeeded": 1, "active": 0}}
    cjs = [cj("j1"), cj("j2", uid="u2"), cj("j3", uid="u3", phase="Bound")]
    (finding,) = inv.check_bound_capacity([center()], NODES, LIVE, [done], cjs)
    assert finding.immediate and "done in fact but still counted: ['j1']" in finding.detail


def test_a_running_job_without_live_pods_is_done_in_fact():
    cjs = [cj("j1"), cj("j2", uid="u2"), cj("j3", uid="u3", phase="Bound")]
    running = [pod("a", "n0", job="j2", job_uid="job-uid-2")]
    (finding,) = inv.check_bound_capacity([center()], NODES, running, [], cjs)
    assert finding.immediate and "still counted: ['j1']" in finding.detail
    (finding,) = inv.check_bound_capacity([center()], NODES, [*running, pod("b", "n1")], [], cjs)
    assert not finding.immediate  # every Running job still has a live pod: twice in a row


# --- (c) one workload per ComputeJob -----------------------------------------------------------


@pytest.mark.parametrize(("case", "jobs", "pods", "history", "expected"), [
    ("one Job, its pods", [batch_job()], [pod("a", "n0"), pod("b", "n1")], {}, []),
    ("two Jobs", [batch_job(), {**batch_job(uid="job-uid-2"), "metadata": {
        **batch_job()["metadata"], "name": "cj-j1-x", "uid": "job-uid-2"}}], [], {}, ["two-jobs"]),
    ("pods of two Jobs", [batch_job()], [pod("a", "n0"), pod("b", "n1", job_uid="job-uid-old")], {}, ["two-pod-sets"]),
    ("a finished old pod is no second set", [batch_job()],
     [pod("a", "n0"), pod("b", "n1", job_uid="job-uid-old", phase="Failed")], {}, []),
    ("a previous incarnation's pods are its own", [batch_job()],
     [pod("a", "n0"), pod("b", "n1", job_uid="job-uid-old")], {"job-uid-old": "cj-uid-0"}, []),
])
def test_check_single_workload(case, jobs, pods, history, expected):
    assert kinds(inv.check_single_workload(jobs, pods, [cj()], history)) == expected, case


# --- (d) owners ------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "jobs", "cjs", "expected"), [
    ("owned by the live one", [batch_job()], [cj()], []),
    ("its ComputeJob is gone", [batch_job()], [], ["orphan-job"]),
    ("its ComputeJob is being deleted", [batch_job()], [cj(deleting=True)], ["orphan-job"]),
    ("owned by a previous incarnation", [batch_job(owner_uid="cj-uid-0")], [cj()], ["orphan-job"]),
    ("no controller reference", [batch_job(owner_uid=None)], [cj()], ["orphan-job"]),
    ("controller named otherwise", [batch_job(owner="other")], [cj()], ["orphan-job"]),
])
def test_check_job_owners(case, jobs, cjs, expected):
    assert kinds(inv.check_job_owners(jobs, cjs)) == expected, case


# --- (e) pods in the named pool --------------------------------------------------------------


H100_NODE = node("h0", pool="c-h100")


@pytest.mark.parametrize(("case", "pods", "cjs", "history", "expected"), [
    ("in its pool", [pod("a", "n0")], [cj()], {}, []),
    ("pending pods are not checked", [pod("a", None, phase="Pending")], [cj()], {}, []),
    ("on another pool's node", [pod("a", "h0")], [cj()], {}, ["pod-outside-pool"]),
    ("runs while its job says Queued", [pod("a", "n0")], [cj(phase="Queued", pool=None)], {}, ["pod-outside-pool"]),
    ("being deleted after a requeue", [{**pod("a", "n0"), "metadata": {**pod("a", "n0")["metadata"],
                                                                        "deletionTimestamp": "2026-01-01T00:00:00Z"}}],
     [cj(phase="Queued", pool=None)], {}, []),
    ("bound to a pool no center has", [pod("a", "n0")], [cj(pool="tpu")], {}, ["pod-outside-pool"]),
    ("a previous incarnation's pod is not checked", [pod("a", "h0", job_uid="old")], [cj()], {"old": "cj-uid-0"}, []),
    ("no ComputeJob: left to (d)", [pod("a", "h0")], [], {}, []),
    ("its batch Job is gone: the garbage collector's", [pod("a", "n0", job_uid="deleted")], [cj()], {}, ["orphan-pod"]),
    ("another namespace is not ours", [{**pod("a", "h0"), "metadata": {**pod("a", "h0")["metadata"], "namespace": "x"}}],
     [cj()], {}, []),
])
def test_check_pod_pools(case, pods, cjs, history, expected):
    centers = [center(pools=("a100", "h100"))]
    jobs = [batch_job(), batch_job(uid="old", owner_uid="cj-uid-0")]
    assert kinds(inv.check_pod_pools(centers, [*NODES, H100_NODE], pods, cjs, jobs, history)) == expected, case


# --- (f) the end -----------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "job", "ok"), [
    ("succeeded", cj(phase="Succeeded", message=""), True),
    ("failed with a reason", cj(phase="Failed", message="pod cj-j1-0-abcde: container main exited with code 1 (Error)"), True),
    ("failed without one", cj(phase="Failed", message=""), False),
    ("failed with a bare word", cj(phase="Failed", message="Failed"), False),
    ("queued with a reason", cj(phase="Queued", pool=None, message="not enough free accelerators in any pool"), True),
    ("deferred with a reason", cj(phase="Deferred", pool=None, message="deferred to 02:00 for cleaner power"), True),
    ("queued without one", cj(phase="Queued", pool=None, message=""), False),
    ("stuck bound", cj(phase="Bound"), False),
    ("stuck running", cj(phase="Running"), False),
    ("never seen by the operator", {"metadata": {"name": "x", "namespace": NS, "uid": "u"}, "spec": {}}, False),
])
def test_check_final(case, job, ok):
    assert (inv.check_final([job]) == []) is ok, case


def test_check_all_on_a_healthy_picture_finds_nothing():
    snap = {"centers": [center(status=[pool_status(8)])], "nodes": NODES, "pods": [pod("a", "n0")],
            "jobs": [batch_job()], "computejobs": [cj()]}
    assert inv.check_all(snap) == []


def test_waiting_but_fits_hints_at_a_queued_job_with_room():
    queued = cj("q", uid="uq", phase="Queued", pool=None, replicas=2, count=8, message="not enough free accelerators")
    assert inv.waiting_but_fits([queued], [center()], NODES, []) != []
    assert inv.waiting_but_fits([queued], [center()], NODES, [pod("a", "n0")]) == []


# --- the tracker -------------------------------------------------------------------------------


def finding(kind: str, key: tuple[Any, ...] = ("x",), immediate: bool = False) -> inv.Finding:
    return inv.Finding(kind, key, f"{kind} {key}", immediate)


RULES = {"quick": inv.Rule(2, 0), "slow": inv.Rule(2, 30), "now": inv.Rule(1, 0)}


@pytest.mark.parametrize(("case", "checks", "confirmed", "transient"), [
    ("seen once, then gone: transient", [(0, ["quick"]), (3, [])], [], {"quick": 1}),
    ("seen twice in a row", [(0, ["quick"]), (3, ["quick"])], ["quick"], {}),
    ("a gap breaks the streak", [(0, ["quick"]), (3, []), (6, ["quick"])], [], {"quick": 1}),
    ("not long enough", [(0, ["slow"]), (3, ["slow"]), (20, ["slow"])], [], {}),
    ("long enough", [(0, ["slow"]), (3, ["slow"]), (31, ["slow"])], ["slow"], {}),
    ("a one-check rule", [(0, ["now"])], ["now"], {}),
])
def test_tracker_rules(case, checks, confirmed, transient):
    tracker = inv.Tracker(RULES)
    for t, kinds_seen in checks:
        tracker.observe(t, [finding(k) for k in kinds_seen])
    assert sorted(v.kind for v in tracker.violations) == confirmed, case
    assert tracker.transient == transient, case


def test_tracker_reports_once_confirmed_with_how_long_it_lasted():
    tracker = inv.Tracker(RULES)
    assert tracker.observe(0, [finding("quick", immediate=True)])[0].kind == "quick"
    assert tracker.observe(3, [finding("quick")]) == []
    (violation,) = tracker.violations
    assert (violation.checks, violation.persisted_seconds) == (2, 3)


def test_tracker_counts_a_violation_that_comes_back_as_a_new_episode():
    tracker = inv.Tracker(RULES)
    for t, seen in ((0, True), (3, True), (6, False), (9, True), (12, True)):
        tracker.observe(t, [finding("quick")] if seen else [])
    assert [(v.first_seen, v.checks) for v in tracker.violations] == [(0, 2), (9, 2)]


def test_tracker_keys_separate_streaks():
    tracker = inv.Tracker(RULES)
    tracker.observe(0, [finding("quick", ("a", 8))])
    tracker.observe(3, [finding("quick", ("a", 16))])  # another offset: a new streak
    assert tracker.violations == [] and tracker.transient == {"quick": 1}


def test_default_rules_cover_every_kind_the_checks_emit():
    rules = inv.default_rules(resync_seconds=10)
    assert rules["allocated-mismatch"].min_seconds == 15 and rules["orphan-job"].min_seconds == 45
    assert {"allocated-over-capacity", "allocated-mismatch", "bound-over-capacity", "two-jobs", "two-pod-sets",
            "orphan-job", "pod-outside-pool", "orphan-pod", "not-final"} <= set(rules)
