"""Gated pods (suanli.kube.gates): the JSON patch that pins a replica to its node and lifts the
scheduling gate, what is decided for each gated pod, and the lifter's writes against a fake API.
Also: the binding's nodes from the planner's allocation to the status and back. Pure: no cluster."""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from tests.unit import test_cache as cache_tests

from suanli.handlers import mirror
from suanli.kube import cache as cache_mod
from suanli.kube import gates, records, workloads
from suanli.kube import objects as kobj
from suanli.kube import snapshot as snapshot_mod
from suanli.kube import status as status_mod
from suanli.placement import planner

NOW = cache_tests.NOW
REQUIRED = gates.REQUIRED
GATE = {"name": workloads.GATE}
OTHER = {"name": "example.com/quota"}
JOB = ("team-a", "gang")


# --- RFC 6902, the three operations the lifter uses, to check what a patch does --------------


class PatchFailed(Exception):
    pass


def apply_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """`doc` after the JSON patch, all or nothing (as the API server applies it)."""
    out = copy.deepcopy(doc)
    try:
        for op in ops:
            *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
            target: Any = out
            for part in parents:
                target = target[int(part)] if isinstance(target, list) else target[part]
            if op["op"] == "test":
                value = target[int(last)] if isinstance(target, list) else target[last]
                if value != op["value"]:
                    raise PatchFailed(f"test {op['path']}: {value!r} != {op['value']!r}")
            elif op["op"] == "remove":
                del target[int(last) if isinstance(target, list) else last]
            elif op["op"] == "add":
                if isinstance(target, list):
                    target.insert(len(target) if last == "-" else int(last), copy.deepcopy(op["value"]))
                else:
                    target[last] = copy.deepcopy(op["value"])
            else:
                raise AssertionError(f"unexpected operation {op}")
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise PatchFailed(f"{exc!r}") from None
    return out


def pinned(node: str) -> dict[str, Any]:
    return {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchFields": [gates.requirement(node)]}]}}}


def expr(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": [value]}


PREFERRED = {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {"matchExpressions": [expr("disk", "ssd")]}}]}
ANTI = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname"}]}}

# (case, schedulingGates, affinity before, node, schedulingGates after, affinity after)
PATCH_CASES = [
    ("no affinity", [GATE], None, "n2", [], pinned("n2")),
    ("empty affinity", [GATE], {}, "n2", [], pinned("n2")),
    ("pod anti-affinity only", [GATE], ANTI, "n2", [], {**ANTI, **pinned("n2")}),
    ("preferred node affinity only", [GATE], {"nodeAffinity": PREFERRED}, "n2", [],
     {"nodeAffinity": {**PREFERRED, **pinned("n2")["nodeAffinity"]}}),
    ("two required terms: the node in each", [GATE],
     {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [expr("zone", "a")]},
                                                         {"matchExpressions": [expr("zone", "b")]}]}}}, "n2", [],
     {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [
         {"matchExpressions": [expr("zone", "a")], "matchFields": [gates.requirement("n2")]},
         {"matchExpressions": [expr("zone", "b")], "matchFields": [gates.requirement("n2")]}]}}}),
    ("a term with fields already: appended", [GATE],
     {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchFields": [expr("metadata.name", "n2")]}]}}}, "n2", [],
     {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [
         {"matchFields": [expr("metadata.name", "n2"), gates.requirement("n2")]}]}}}),
    ("other gates stay", [OTHER, GATE, {"name": "z"}], None, "n1", [OTHER, {"name": "z"}], pinned("n1")),
    ("no node: gate lifted, nothing pinned", [GATE], ANTI, None, [], ANTI),
]


@pytest.mark.parametrize(("gates_before", "affinity", "node", "gates_after", "expected"),
                         [c[1:] for c in PATCH_CASES], ids=[c[0] for c in PATCH_CASES])
def test_the_patch_pins_to_the_node_by_narrowing_every_term_and_lifts_only_our_gate(
    gates_before: list[dict[str, str]], affinity: dict[str, Any] | None, node: str | None,
    gates_after: list[dict[str, str]], expected: dict[str, Any] | None,
) -> None:
    pod = {"metadata": {"name": "p", "uid": "u-1"}, "spec": {"schedulingGates": copy.deepcopy(gates_before)}}
    if affinity is not None:
        pod["spec"]["affinity"] = copy.deepcopy(affinity)
    ops = gates.operations(pod, node)
    assert ops is not None
    after = apply_patch(pod, ops)
    assert after["spec"]["schedulingGates"] == gates_after
    assert after["spec"].get("affinity") == expected
    # Preconditions: another pod of that name, or our gate gone meanwhile, and the patch is refused.
    with pytest.raises(PatchFailed):
        apply_patch({**pod, "metadata": {"name": "p", "uid": "u-2"}}, ops)
    with pytest.raises(PatchFailed):
        apply_patch({**pod, "spec": {**pod["spec"], "schedulingGates": [g for g in gates_before if g != GATE]}}, ops)


def test_required_terms_changed_since_they_were_read_refuse_the_patch() -> None:
    terms = {REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [expr("zone", "a")]}]}}
    pod = {"metadata": {"uid": "u"}, "spec": {"schedulingGates": [GATE], "affinity": {"nodeAffinity": terms}}}
    ops = gates.operations(pod, "n1")
    assert ops is not None
    moved = copy.deepcopy(pod)
    moved["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"][0]["matchFields"] = [expr("metadata.name", "x")]
    with pytest.raises(PatchFailed):
        apply_patch(moved, ops)


def test_a_pod_without_our_gate_needs_no_patch() -> None:
    assert gates.operations({"metadata": {"uid": "u"}, "spec": {"schedulingGates": [OTHER]}}, "n1") is None
    assert gates.operations({"metadata": {"uid": "u"}, "spec": {}}, "n1") is None


# --- pods as the cache reads them -----------------------------------------------------------


def gpod(name: str, index: int | None, *, node: str | None = None, phase: str = "Pending", gated: bool = True,
         job: str = "gang", gpus: int = 4, by_annotation: bool = False, **meta: Any) -> dict[str, Any]:
    doc = cache_tests.pod(name, node, gpus, phase=phase, job=job)
    doc["metadata"]["uid"] = f"uid-{name}"
    if index is not None:
        where = doc["metadata"].setdefault("annotations", {}) if by_annotation else doc["metadata"]["labels"]
        where[workloads.COMPLETION_INDEX] = str(index)
    if gated:
        doc["spec"]["schedulingGates"] = [GATE]
    doc["metadata"].update(meta)
    return doc


def test_pod_info_reads_the_gate_and_the_completion_index() -> None:
    info = kobj.pod_info(gpod("gang-0", 3))
    assert (info.gated, info.index) == (True, 3)
    info = kobj.pod_info(gpod("gang-1", 1, gated=False, by_annotation=True))  # before the index label existed
    assert (info.gated, info.index) == (False, 1)
    other = gpod("x", 2)
    other["metadata"]["labels"].pop(workloads.LABEL_JOB)
    other["spec"]["schedulingGates"] = [OTHER]
    assert (kobj.pod_info(other).gated, kobj.pod_info(other).index) == (False, None)  # not ours: not read


# --- what is decided for a gated pod --------------------------------------------------------


def bound_cache(nodes: tuple[str, ...] = ("n2", "n2"), replicas: int = 2, count: int = 4) -> cache_mod.Cache:
    cache = cache_mod.Cache()
    cache.upsert_center(cache_tests.CENTER)
    cache.upsert_node(cache_tests.node("n1"))
    cache.upsert_node(cache_tests.node("n2"))
    cache.upsert_job(cache_tests.cjob("gang", replicas=replicas, count=count), NOW)
    cache.assume(JOB, records.Binding("c1", "a100", "GPU", replicas, count, 1.0, 0.5, nodes=nodes))
    return cache


def _node_gone(c: cache_mod.Cache) -> None:
    c.delete_node("n2")


def _cordoned(c: cache_mod.Cache) -> None:
    c.upsert_node(cache_tests.node("n2", unschedulable=True))


def _relabelled(c: cache_mod.Cache) -> None:
    c.upsert_node(cache_tests.node("n2", pool="elsewhere"))


def _foreign_pod(c: cache_mod.Cache) -> None:
    c.upsert_pod(cache_tests.pod("web", "n2", 6))


def _replica_0_started(c: cache_mod.Cache) -> None:
    c.upsert_pod(gpod("gang-0", 0, node="n2", phase="Running", gated=False))  # n2: 4 of 8 used, by replica 0


def _unbound(c: cache_mod.Cache) -> None:
    c.forget(JOB)


def _old_status(c: cache_mod.Cache) -> None:
    c.assume(JOB, records.Binding("c1", "a100", "GPU", 2, 4, 1.0, 0.5))


# (case, change to the cache, the pod, action, node, words in the reason)
DECIDE_CASES = [
    ("pinned to its node", None, gpod("gang-1", 1), "pin", "n2", "replica 1"),
    ("index by annotation", None, gpod("gang-0", 0, by_annotation=True), "pin", "n2", "replica 0"),
    ("old status without nodes", _old_status, gpod("gang-0", 0), "release", None, "names no nodes"),
    ("no completion index", None, gpod("gang-0", None), "release", None, "names no replica"),
    ("index out of range", None, gpod("gang-5", 5), "release", None, "names no replica"),
    ("node gone", _node_gone, gpod("gang-0", 0), "wait", "n2", "node n2 is gone"),
    ("node cordoned", _cordoned, gpod("gang-0", 0), "wait", "n2", "not Ready or not schedulable"),
    ("node left the pool", _relabelled, gpod("gang-0", 0), "wait", "n2", "left pool c1/a100"),
    ("node taken by others", _foreign_pod, gpod("gang-0", 0), "wait", "n2", "has 2 nvidia.com/gpu free"),
    ("room for the replicas still to start", _replica_0_started, gpod("gang-1", 1), "pin", "n2", "replica 1"),
    ("job not bound", _unbound, gpod("gang-0", 0), "wait", None, "is not bound"),
    ("job unknown", None, gpod("x-0", 0, job="x"), "wait", None, "is not known"),
    ("another job of that name", None, gpod("gang-0", 0, labels={workloads.LABEL_JOB: "gang", workloads.LABEL_UID: "old",
                                                               workloads.COMPLETION_INDEX: "0"}), "skip", None, "earlier ComputeJob"),
    ("being deleted", None, gpod("gang-0", 0, deletionTimestamp="2026-01-01T00:00:00Z"), "skip", None, "being deleted"),
]


@pytest.mark.parametrize(("change", "pod", "action", "node", "words"), [c[1:] for c in DECIDE_CASES],
                         ids=[c[0] for c in DECIDE_CASES])
def test_what_is_done_with_a_gated_pod(change: Any, pod: dict[str, Any], action: str, node: str | None, words: str) -> None:
    cache = bound_cache()
    if change is not None:
        change(cache)
    info = cache.upsert_pod(pod)
    assert info is not None
    verdict = gates.decide(cache, info)
    assert (verdict.action, verdict.node) == (action, node), verdict.reason
    assert words in verdict.reason


def test_stranded_names_a_node_its_waiting_replicas_can_never_go_to_and_ignores_passing_problems() -> None:
    cache = bound_cache(nodes=("n1", "n2"))
    record = cache.jobs[JOB]
    assert gates.stranded(cache, record) is None
    cache.upsert_pod(cache_tests.pod("web", "n2", 6))
    # No room on n2 yet: it may pass (the pods stay gated until the pods-ready timeout).
    assert gates.stranded(cache, record) is None
    cache.delete_node("n1")
    assert gates.stranded(cache, record) == "node n1 is gone"
    # Replica 0 started on n1 before it went: n1 no longer matters, and n2's problem may pass.
    cache.upsert_pod(gpod("gang-0", 0, node="n1", phase="Running", gated=False))
    assert gates.stranded(cache, record) is None
    cache.forget(JOB)
    assert gates.stranded(cache, record) is None  # not bound: nothing pinned


def test_a_node_that_leaves_the_pool_strands_its_replicas() -> None:
    cache = bound_cache(nodes=("n1", "n2"))
    record = cache.jobs[JOB]
    cache.upsert_node(cache_tests.node("n2", pool="elsewhere"))
    assert (gates.stranded(cache, record) or "").startswith("node n2 left pool ")
    assert cache.bound_to_node("n2") == [JOB]
    assert cache.bound_to_node("elsewhere") == []


# --- the lifter against a fake API ----------------------------------------------------------


class FakeApi:
    """The API server's pods (by key), patched with RFC 6902 semantics; `failures`: exceptions the next
    patches raise."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.reads: list[tuple[str, str]] = []
        self.patches: list[list[dict[str, Any]]] = []
        self.failures: list[Exception] = []

    async def run(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append((namespace, name))
        pod = self.pods.get((namespace, name))
        return copy.deepcopy(pod) if pod is not None else None

    def patch_pod(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
        self.patches.append(ops)
        if self.failures:
            raise self.failures.pop(0)
        if (namespace, name) not in self.pods:
            raise ApiException(status=404, reason="Not Found")
        try:
            self.pods[(namespace, name)] = apply_patch(self.pods[(namespace, name)], ops)
        except PatchFailed:
            raise ApiException(status=422, reason="Unprocessable Entity") from None


class Timers:
    """The lifter's retry timer, fired when the test says."""

    def __init__(self) -> None:
        self.due: list[tuple[float, Any]] = []

    def later(self, delay: float, fn: Any) -> Any:
        entry = (delay, fn)
        self.due.append(entry)
        return SimpleNamespace(cancel=lambda: entry in self.due and self.due.remove(entry))

    def fire(self) -> list[float]:
        due, self.due = self.due, []
        for _, fn in due:
            fn()
        return [d for d, _ in due]


async def settle(lifter: gates.Lifter) -> None:
    while lifter.tasks:
        await asyncio.gather(*list(lifter.tasks))


def test_the_lifter_pins_each_replica_from_the_watch_object_without_reading_it() -> None:
    cache, api, timers = bound_cache(nodes=("n2", "n1")), FakeApi(), Timers()
    lifter = gates.Lifter(cache, api, timers.later)  # type: ignore[arg-type]
    docs = [gpod(f"gang-{i}", i) for i in range(2)]

    async def scenario() -> None:
        for doc in docs:
            api.pods[kobj.key_of(doc)] = copy.deepcopy(doc)
            cache.upsert_pod(doc)
            lifter.wake(kobj.key_of(doc), doc)
        await settle(lifter)

    asyncio.run(scenario())
    assert api.reads == [] and len(api.patches) == 2
    for i, node in enumerate(("n2", "n1")):
        spec = api.pods[("team-a", f"gang-{i}")]["spec"]
        assert (spec["schedulingGates"], spec["affinity"]) == ([], pinned(node))
    assert timers.due == [] and lifter.bodies == {} and lifter.busy == set()


def test_a_stale_watch_object_is_read_again_and_a_released_pod_is_left_as_it_is() -> None:
    cache, api, timers = bound_cache(), FakeApi(), Timers()
    lifter = gates.Lifter(cache, api, timers.later)  # type: ignore[arg-type]
    doc = gpod("gang-0", 0)
    cache.upsert_pod(doc)
    api.pods[("team-a", "gang-0")] = {**doc, "spec": {**doc["spec"], "schedulingGates": []}}  # released meanwhile

    async def scenario() -> None:
        lifter.wake(("team-a", "gang-0"), doc)
        await settle(lifter)

    asyncio.run(scenario())
    assert api.reads == [("team-a", "gang-0")] and len(api.patches) == 1  # the refused patch, then a read: done
    assert timers.due == [] and lifter.noted == {}


def test_a_failed_write_is_retried_after_a_doubling_delay(caplog: pytest.LogCaptureFixture) -> None:
    cache, api, timers = bound_cache(), FakeApi(), Timers()
    lifter = gates.Lifter(cache, api, timers.later)  # type: ignore[arg-type]
    doc = gpod("gang-0", 0)
    cache.upsert_pod(doc)
    api.pods[("team-a", "gang-0")] = copy.deepcopy(doc)
    api.failures = [ApiException(status=500, reason="Internal Server Error")] * 2
    retry = cache.settings.operator.retry_seconds

    async def scenario() -> list[list[float]]:
        lifter.wake(("team-a", "gang-0"), doc)
        await settle(lifter)
        delays = []
        while timers.due:
            delays.append(timers.fire())
            await settle(lifter)
        return delays

    assert asyncio.run(scenario()) == [[retry], [retry * 2]]
    assert api.pods[("team-a", "gang-0")]["spec"]["affinity"] == pinned("n2")
    assert "could not release it (HTTP 500 Internal Server Error)" in caplog.text


def test_a_pod_whose_node_is_gone_stays_gated_until_the_node_is_back(caplog: pytest.LogCaptureFixture) -> None:
    cache, api, timers = bound_cache(), FakeApi(), Timers()
    lifter = gates.Lifter(cache, api, timers.later)  # type: ignore[arg-type]
    doc = gpod("gang-0", 0)
    cache.upsert_pod(doc)
    api.pods[("team-a", "gang-0")] = copy.deepcopy(doc)
    cache.delete_node("n2")

    async def scenario() -> None:
        lifter.wake(("team-a", "gang-0"), doc)
        await settle(lifter)
        for _ in range(3):
            timers.fire()
            await settle(lifter)
        assert api.patches == [] and len(timers.due) == 1
        cache.upsert_node(cache_tests.node("n2"))
        timers.fire()
        await settle(lifter)

    asyncio.run(scenario())
    assert api.pods[("team-a", "gang-0")]["spec"]["affinity"] == pinned("n2")  # never elsewhere
    assert caplog.text.count("stays gated on node n2: node n2 is gone") == 1  # logged once, not at every look


def test_at_start_the_gated_pods_of_the_primed_cache_are_released() -> None:
    cache, api, timers = bound_cache(), FakeApi(), Timers()
    cache.assume(JOB, records.Binding("c1", "a100", "GPU", 2, 4, 1.0, 0.5))  # an old status: no nodes
    for i in range(2):
        doc = gpod(f"gang-{i}", i)
        cache.upsert_pod(doc)
        api.pods[kobj.key_of(doc)] = copy.deepcopy(doc)
    cache.upsert_pod(gpod("done", 0, gated=False))
    lifter = gates.Lifter(cache, api, timers.later)  # type: ignore[arg-type]

    async def scenario() -> None:
        task = asyncio.create_task(lifter.run())
        await asyncio.sleep(0)
        await settle(lifter)
        task.cancel()

    asyncio.run(scenario())
    assert sorted(api.reads) == [("team-a", "gang-0"), ("team-a", "gang-1")]  # no watch object: read
    for i in range(2):
        spec = api.pods[("team-a", f"gang-{i}")]["spec"]
        assert (spec["schedulingGates"], spec.get("affinity")) == ([], None)  # lifted, not pinned


def test_the_pod_watch_wakes_the_lifter_for_gated_pods_only() -> None:
    cache = bound_cache()
    woken: list[tuple[tuple[str, str], Any]] = []
    sched = SimpleNamespace(poke=lambda: None, center_changed=lambda: None, job_changed=lambda key: None,
                            job_deleted=lambda record: None)
    memo = SimpleNamespace(cache=cache, scheduler=sched, gates=SimpleNamespace(wake=lambda k, b: woken.append((k, b))))
    gated, plain = gpod("gang-0", 0), gpod("gang-1", 1, node="n2", phase="Running", gated=False)
    for doc in (gated, plain):
        mirror.on_pod({"type": "ADDED", "object": doc}, memo)
    mirror.on_pod({"type": "DELETED", "object": gated}, memo)
    assert woken == [(("team-a", "gang-0"), gated), (("team-a", "gang-0"), None)]


# --- the binding's nodes: planner allocation -> status -> record ------------------------------


def test_the_planners_node_indices_become_node_names_in_the_status_and_the_assumed_binding() -> None:
    cache = cache_mod.Cache()
    cache.upsert_center(cache_tests.CENTER)
    for name in ("n1", "n2"):
        cache.upsert_node(cache_tests.node(name))
    cache.upsert_pod(cache_tests.pod("web", "n2", 4))  # n2 half full: best-fit puts a 4 there
    cache.upsert_job(cache_tests.cjob("gang", replicas=2, count=4), NOW)
    snap = cache.snapshot(NOW)
    assert snap.node_names == (("n1", "n2"),)
    reply = planner.plan(planner.PlanRequest(
        fleet=snap.fleet, capacity=snap.capacity, energy=snap.energy, jobs=snap.queue, now=NOW,
        ready=snap.ready, not_ready_reason=snap.not_ready_reason,
    ))
    (d,) = reply.decisions
    assert d.phase == "Bound" and d.allocation is not None
    nodes = snapshot_mod.nodes_of(snap, d.allocation)
    assert nodes == ("n2", "n1")
    status = status_mod.decided(d, 1, NOW, nodes)
    assert status["binding"]["nodes"] == ["n2", "n1"]
    assert "nodes" not in status_mod.decided(d, 1, NOW)["binding"]  # as before when no nodes are given
    # After a restart the binding is read back from the status with its nodes.
    doc = cache_tests.cjob("gang", replicas=2, count=4, status={**status, "phase": "Bound"})
    assert cache.upsert_job(doc, NOW).recorded == records.Binding(
        "c1", "a100", "GPU", 2, 4, status["estimates"]["energyKWh"], status["estimates"]["carbonKg"],
        bound_epoch=NOW, nodes=("n2", "n1"),
    )


@pytest.mark.parametrize("nodes", [None, [], ["n1"], ["n1", "n2", "n3"], ["n1", ""], ["n1", 3]])
def test_a_status_whose_nodes_do_not_name_one_per_replica_counts_as_without_nodes(nodes: Any) -> None:
    binding = {"center": "c1", "pool": "a100", "acceleratorType": "GPU"}
    if nodes is not None:
        binding["nodes"] = nodes
    record = cache_mod.Cache().upsert_job(cache_tests.cjob("gang", replicas=2, count=4, status={
        "phase": "Bound", "binding": binding, "estimates": {"energyKWh": 1.0, "carbonKg": 0.5}}), NOW)
    assert record.recorded is not None and record.recorded.nodes == ()
