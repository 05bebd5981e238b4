"""Member clusters in the cache and the scheduler's write paths (pure parts): two clusters' objects
never mix, a member's pools follow its connection, a member Job is labelled back to the hub, and a
lost member's jobs go back to the queue. The connections themselves run against real local
clusters in tests/e2e/test_members.py."""

from __future__ import annotations

import asyncio
import copy
import types
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from tests.unit import test_cache as cache_tests
from tests.unit import test_leader_relist as relist_tests
from tests.unit import test_lifecycle as lc
from tests.unit import test_member_credentials as creds_tests
from tests.unit import test_write_priority as wp

from suanli.kube import attempt_end, attempts, clusters, records, relist, workloads
from suanli.kube import cache as cache_mod
from suanli.kube import objects as kobj
from suanli.kube import status as status_mod
from suanli.members import manager
from suanli.placement import planner

NOW = cache_tests.NOW
MEMBER = copy.deepcopy(cache_tests.CENTER)
MEMBER["metadata"] = {"name": "guian", "generation": 1}
MEMBER["spec"]["cluster"] = {"kubeconfigSecretRef": {"namespace": "suanli-system", "name": "guian-kubeconfig"}}
MEMBER["spec"]["pools"][0]["nodeSelector"] = {"suanli.io/pool": "c1-a100"}  # the same labels as c1's pool, elsewhere


def fleet_cache() -> cache_mod.Cache:
    """The hub's center c1 and the member center guian, each with nodes n1 and n2 of the same labels."""
    cache = cache_mod.Cache()
    cache.upsert_center(cache_tests.CENTER)
    cache.upsert_center(MEMBER)
    for name in ("n1", "n2"):
        cache.upsert_node(cache_tests.node(name))
        cache.upsert_node(cache_tests.node(name), "guian")
    return cache


def test_two_clusters_nodes_of_one_name_are_two_nodes_and_each_pool_counts_its_own() -> None:
    cache = fleet_cache()
    assert sorted(cache.nodes) == ["guian/n1", "guian/n2", "n1", "n2"]
    snap = cache.snapshot(NOW)
    assert dict(zip([(p.center, p.pool) for p in snap.fleet.pools], snap.node_names, strict=True)) == {("c1", "a100"): ("n1", "n2"), ("guian", "a100"): ("guian/n1", "guian/n2")}
    assert all(u.refused == "" for u in snap.usage)  # the same labels in two clusters are no overlap
    # A pod on the member's n1 uses the member's n1, not the hub's.
    cache.upsert_pod(cache_tests.pod("w", "n1", 6), "guian")
    used = {(u.center, u.pool): u.allocated for u in cache.snapshot(NOW).usage}
    assert used == {("c1", "a100"): 0, ("guian", "a100"): 6}
    assert cache.pods[("guian/team-a", "w")].node == "guian/n1"


def test_a_member_that_cannot_be_used_takes_no_jobs_and_says_why() -> None:
    cache = fleet_cache()
    assert cache.member_state.set("guian", ("MemberUnreachable", "member cluster guian does not answer"))
    snap = cache.snapshot(NOW)
    ready = {(p.center, p.pool): (bool(snap.ready[i]), snap.not_ready_reason[i]) for i, p in enumerate(snap.fleet.pools)}
    assert ready[("guian", "a100")] == (False, "member cluster guian does not answer")
    assert ready[("c1", "a100")] == (True, "")
    status = status_mod.center("guian", 1, [], None, None, {}, NOW, member=cache.member_state.problems["guian"])
    (cond,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert (cond["status"], cond["reason"]) == ("False", "MemberUnreachable")
    assert not cache.member_state.set("guian", ("MemberUnreachable", "member cluster guian does not answer"))  # no change
    assert cache.member_state.set("guian", None)
    assert cache.snapshot(NOW).ready.all()


def test_a_member_binding_names_its_cluster_and_local_node_names_and_reads_back_qualified() -> None:
    cache = fleet_cache()
    doc = cache_tests.cjob("a", status={
        "phase": "Bound",
        "binding": {"center": "guian", "pool": "a100", "acceleratorType": "GPU", "model": "A100",
                    "nodes": ["n2"], "cluster": "guian"},
        "boundTime": "2026-12-01T00:00:00Z",
    })
    record = cache.upsert_job(doc, NOW)
    binding = cache.binding(record)
    assert binding is not None and (binding.cluster, binding.nodes) == ("guian", ("guian/n2",))
    # The member's Job and pods are the job's; the hub's Job of the same name is not.
    job = {"metadata": {"name": "cj-a", "namespace": "team-a", "uid": "j1",
                        "labels": {workloads.LABEL_JOB: "a", workloads.LABEL_UID: "uid-a", workloads.LABEL_ATTEMPT: "0"}},
           "status": {"active": 1}}
    cache.upsert_workload(job)  # a stray one in the hub
    assert cache.workload_of(record) is None
    member_job = cache.upsert_workload(job, "guian")
    assert cache.workload_of(record) is member_job and member_job.owner_uid == "uid-a"
    pod = cache_tests.pod("cj-a-0", "n2", 8, job="a")
    pod["metadata"]["labels"].update({workloads.LABEL_UID: "uid-a", workloads.LABEL_ATTEMPT: "0"})
    cache.upsert_pod(copy.deepcopy(pod))  # the hub's pod of that name: not this attempt's
    assert cache.current_pods(record, binding) == []
    cache.upsert_pod(pod, "guian")
    assert [p.key for p in cache.current_pods(record, binding)] == [("guian/team-a", "cj-a-0")]
    assert cache.jobs_in_cluster("guian") == [("team-a", "a")]
    assert cache.bound_to_node("guian/n2") == [("team-a", "a")] and cache.bound_to_node("n2") == []


def test_the_hub_relist_never_drops_a_members_objects_and_a_members_relist_compares_local_names() -> None:
    cache = fleet_cache()
    cache.upsert_pod(cache_tests.pod("w", "n1", 6), "guian")
    assert ("", "n1", "") in relist.cached_uids(cache, "nodes")
    assert relist.cached_keys(cache, "nodes") == {("", "n1"), ("", "n2")}
    assert relist.cached_keys(cache, "nodes", "guian") == {("", "n1"), ("", "n2")}
    assert relist.cached_keys(cache, "pods") == set()
    assert relist.cached_keys(cache, "pods", "guian") == {("team-a", "w")}
    assert set(relist.cached(cache, "guian")) == set(relist.MEMBER_KINDS)


def test_dropping_a_member_forgets_its_objects_only() -> None:
    cache = fleet_cache()
    cache.upsert_pod(cache_tests.pod("w", "n1", 6), "guian")
    cache.member_state.set("guian", ("MemberLost", "gone"), lost=True)
    cache.drop_cluster("guian")
    assert sorted(cache.nodes) == ["n1", "n2"] and cache.pods == {}
    assert cache.member_state.problems == {} and cache.member_state.lost == set()


def test_decided_status_writes_local_node_names_and_the_cluster() -> None:
    cache = fleet_cache()
    record = cache.upsert_job(cache_tests.cjob("a"), NOW)
    snap = cache.snapshot(NOW)
    reply = planner.plan(planner.PlanRequest(fleet=snap.fleet, capacity=snap.capacity, energy=snap.energy,
                                             jobs=list(snap.queue), now=NOW, settings=cache.settings,
                                             ready=snap.ready, not_ready_reason=snap.not_ready_reason))
    (d,) = reply.decisions
    assert d.phase == "Bound" and record is not None
    status = status_mod.decided(d, 1, NOW, ("guian/n1",), "guian")
    assert status["binding"]["nodes"] == ["n1"] and status["binding"]["cluster"] == "guian"


def test_a_member_job_is_labelled_back_and_owned_by_nothing() -> None:
    cj = cache_tests.cjob("a")
    job = workloads.build_job(cj, center="guian", pool="a100", accelerator_type="GPU", resource_name="nvidia.com/gpu",
                              node_selector={}, tolerations=[], attempt=2, hub="hub-east")
    meta = job["metadata"]
    assert "ownerReferences" not in meta
    assert meta["labels"][workloads.LABEL_NAMESPACE] == "team-a" and meta["labels"][workloads.LABEL_HUB] == "hub-east"
    assert meta["labels"][workloads.LABEL_UID] == "uid-a" and meta["labels"][workloads.LABEL_ATTEMPT] == "2"
    same = copy.deepcopy(job)
    assert workloads.existing_job(same, job, "uid-a") == "current"
    assert workloads.existing_job(same, job, "uid-other") == "stale"  # an earlier ComputeJob of the name
    other_hub = copy.deepcopy(job)
    other_hub["metadata"]["labels"][workloads.LABEL_HUB] = "hub-west"
    assert workloads.existing_job(other_hub, job, "uid-a") == "foreign"  # another hub's: never touched
    theirs = {"metadata": {"name": meta["name"], "labels": {}}}
    assert workloads.existing_job(theirs, job, "uid-a") == "foreign"
    # The hub's own cluster keeps the owner reference.
    assert workloads.build_job(cj, center="c1", pool="a100", accelerator_type="GPU", resource_name="nvidia.com/gpu",
                               node_selector={}, tolerations=[])["metadata"]["ownerReferences"][0]["uid"] == "uid-a"


def test_a_lost_members_jobs_go_back_to_the_queue_unless_they_had_finished() -> None:
    binding = records.Binding("guian", "a100", "GPU", 1, 8, 1.0, 0.4, bound_epoch=NOW, cluster="guian")
    running = kobj.PodInfo(("guian/team-a", "p"), "guian/n1", {}, False, "Running", "a", None, cluster="guian")
    lost = "member cluster guian has been unreachable for more than 300s (members.lost_after_seconds)"
    verdict = attempts.assess(phase="Running", binding=binding, workload=None, pods=[running], lost=None,
                              assumed=False, now=NOW, pods_ready_timeout=300, member_lost=lost)
    assert verdict == attempts.Verdict("requeue", lost, code="MemberLost")
    done = kobj.WorkloadInfo(("guian/team-a", "cj-a"), "a", 0, 1, 0, True, None, None, NOW, "uid-a", cluster="guian")
    verdict = attempts.assess(phase="Running", binding=binding, workload=done, pods=[], lost=None, assumed=False,
                              now=NOW, pods_ready_timeout=300, member_lost=lost)
    assert verdict.action == "progress"  # it finished before the member went: Succeeded, not requeued
    patch = attempt_end.requeued(lost, 1, 5, NOW + 10, 1, NOW, "MemberLost")
    assert patch["conditions"][0]["reason"] == "MemberLost"


def test_what_a_returning_member_deletes_is_every_job_not_a_current_attempt_of_a_live_compute_job() -> None:
    cache = fleet_cache()
    doc = cache_tests.cjob("a", status={
        "phase": "Running", "attempts": 1,
        "binding": {"center": "guian", "pool": "a100", "acceleratorType": "GPU", "model": "A100", "cluster": "guian"},
    })
    cache.upsert_job(doc, NOW)

    def labels(**extra: Any) -> dict[str, str]:
        base = {workloads.LABEL_NAMESPACE: "team-a", workloads.LABEL_JOB: "a", workloads.LABEL_UID: "uid-a",
                workloads.LABEL_ATTEMPT: "1"}
        return {**base, **extra}

    assert manager.superseded(cache, "guian", labels()) is None  # the current attempt
    assert manager.superseded(cache, "guian", labels(**{workloads.LABEL_ATTEMPT: "0"})) == "its attempt was superseded"
    assert manager.superseded(cache, "other", labels()) == "its attempt was superseded"  # bound elsewhere now
    assert manager.superseded(cache, "guian", labels(**{workloads.LABEL_UID: "uid-old"})) == "its ComputeJob was deleted"
    assert manager.superseded(cache, "guian", labels(**{workloads.LABEL_JOB: "gone"})) == "its ComputeJob was deleted"


# --- the connections, up to the point where a member's API server is needed ---------------------


def _members(secret: bytes | None = None, error: BaseException | None = None) -> tuple[Any, Any]:
    """A Members over the scheduler of tests/unit/test_lifecycle.py, whose hub API answers the Secret
    read with `secret` (or raises `error`). The Secret cases need no member API server; connecting
    to one is tests/e2e/test_members.py's part, against real local clusters."""
    sched, api, _, _ = lc.make()
    sched.cache.upsert_center(MEMBER)
    reads: list[tuple[str, str, str]] = []

    def read_secret_key(namespace: str, name: str, key: str) -> bytes | None:
        reads.append((namespace, name, key))
        if error is not None:
            raise error
        return secret

    api.read_secret_key = read_secret_key
    members = manager.Members(sched, "suanli-system", types.SimpleNamespace(cache=sched.cache, scheduler=sched))
    asyncio.run(members.reconcile())
    return members, reads


def test_a_secret_outside_the_operators_namespace_is_never_read() -> None:
    doc = copy.deepcopy(MEMBER)
    doc["spec"]["cluster"]["kubeconfigSecretRef"]["namespace"] = "kube-system"
    sched, api, _, _ = lc.make()
    sched.cache.upsert_center(doc)
    api.read_secret_key = lambda *a: (_ for _ in ()).throw(AssertionError("read a Secret outside its namespace"))
    members = manager.Members(sched, "suanli-system", types.SimpleNamespace(cache=sched.cache, scheduler=sched))
    asyncio.run(members.reconcile())
    reason, message = sched.cache.member_state.problems["guian"]
    assert reason == "MemberSecretRefused"
    assert "kube-system/guian-kubeconfig" in message and "create the Secret in suanli-system" in message


def test_a_missing_secret_says_how_to_make_one() -> None:
    members, reads = _members(error=ApiException(status=404, reason="Not Found"))
    assert reads == [("suanli-system", "guian-kubeconfig", "kubeconfig")]
    reason, message = members.cache.member_state.problems["guian"]
    assert reason == "MemberSecretMissing" and "suanli join guian --member-kubeconfig PATH" in message
    members, _ = _members(error=ApiException(status=403, reason="Forbidden"))
    assert members.cache.member_state.problems["guian"][0] == "MemberSecretUnreadable"
    members, _ = _members(secret=None)
    assert members.cache.member_state.problems["guian"] == (
        "MemberSecretMissing", "Secret suanli-system/guian-kubeconfig has no key kubeconfig (spec.cluster.kubeconfigSecretRef.key)")


def test_an_exec_kubeconfig_is_refused_naming_the_field_and_nothing_connects() -> None:
    text = yaml.safe_dump(creds_tests.kubeconfig({"exec": {"command": "touch", "args": ["/tmp/marker"]}})).encode()
    members, _ = _members(secret=text)
    reason, message = members.cache.member_state.problems["guian"]
    assert reason == "MemberCredentialsRefused" and "users[suanli].user.exec is not accepted" in message
    assert members.members["guian"].connection is None and members.members["guian"].watchers == []
    with pytest.raises(clusters.Unavailable, match="exec is not accepted"):
        members.sched.clusters.api("guian")


def test_a_center_that_stops_being_a_member_is_forgotten() -> None:
    members, _ = _members(secret=None)
    members.cache.upsert_node(cache_tests.node("n1"), "guian")
    plain = copy.deepcopy(MEMBER)
    del plain["spec"]["cluster"]
    members.cache.upsert_center(plain)
    asyncio.run(members.reconcile())
    assert "guian" not in members.members and members.cache.member_state.problems == {}
    assert "guian/n1" not in members.cache.nodes


def test_a_member_centers_own_prometheus_measures_its_jobs() -> None:
    sched, _, _, _ = lc.make()
    sched.settings = sched.settings.model_copy(update={"measured_energy": sched.settings.measured_energy.model_copy(
        update={"prometheus_url": "http://hub-prometheus:9090"})})
    doc = copy.deepcopy(MEMBER)
    doc["spec"]["cluster"]["prometheusUrl"] = "http://guian-prometheus:9090"
    sched.cache.upsert_center(doc)
    member = records.Binding("guian", "a100", "GPU", 1, 8, 1.0, 0.4, cluster="guian")
    local = records.Binding("c1", "a100", "GPU", 1, 8, 1.0, 0.4)
    assert sched.lifecycle._meter(member).prometheus_url == "http://guian-prometheus:9090"
    assert sched.lifecycle._meter(local).prometheus_url == "http://hub-prometheus:9090"
    del doc["spec"]["cluster"]["prometheusUrl"]
    sched.cache.upsert_center(doc)
    assert sched.lifecycle._meter(member).prometheus_url == "http://hub-prometheus:9090"


def test_a_member_jobs_job_is_not_judged_missing_before_the_members_objects_are_listed() -> None:
    """After a restart the hub's cache has its ComputeJobs before a member's Jobs and pods: a Running job
    in that member must not be requeued as "its Job was deleted" in between (the e2e restart test made
    every member Job twice before this)."""
    sched, api, _, _ = lc.make()
    sched.cache.upsert_center(MEMBER)
    doc = lc.bound_job("Running")
    doc["status"]["binding"].update({"center": "guian", "cluster": "guian", "nodes": ["n1"]})
    sched.cache.upsert_job(doc, NOW)
    asyncio.run(lc.step(sched))
    assert api.patches == []  # not listed yet: nothing judged
    sched.cache.member_state.synced.add("guian")
    sched.clusters.connected("guian", api)  # the fake API stands in for the member's
    asyncio.run(lc.step(sched))
    (patch,) = api.patches
    assert "batch Job was deleted while it ran" in patch["message"]


def test_a_members_relist_drops_what_its_watch_missed_and_runs_once_per_period() -> None:
    """The relist safety net covers members too: a member node whose deletion no watch delivered is
    dropped (the hub's node of the same name stays), and only every `relist_seconds` of a synced
    connection. (Fails on the code whose safety net covered the hub's own cluster only.)"""
    members, _ = _members(secret=None)
    members.relist_seconds = 300.0
    cache = members.cache
    for name in ("n1", "n2"):
        cache.upsert_node(cache_tests.node(name))
        cache.upsert_node(cache_tests.node(name), "guian")
    listing = {kind: set() for kind in relist.MEMBER_KINDS}
    listing["nodes"] = {("", "n1", "")}
    api = relist_tests.FakeApi(listing, gone={"n2"})
    dropped = asyncio.run(members.relist("guian", api))
    assert dropped == [("nodes", ("", "n2"))]
    assert "guian/n2" not in cache.nodes and {"n2", "n1", "guian/n1"} <= set(cache.nodes)
    spawned: list[Any] = []
    members.sched.spawn = lambda coro: spawned.append(coro.close())  # type: ignore[method-assign]
    member = members.members["guian"]
    member.last_relist = 1000.0
    members._relist_if_due("guian", member, api, 1200.0)  # not synced yet
    cache.member_state.synced.add("guian")
    members._relist_if_due("guian", member, api, 1200.0)  # synced, not due
    assert spawned == []
    members._relist_if_due("guian", member, api, 1300.0)
    members._relist_if_due("guian", member, api, 1301.0)
    assert len(spawned) == 1 and member.last_relist == 1300.0


def test_a_restarted_hub_plans_only_once_its_members_are_in_or_known_to_be_out() -> None:
    """Until a member center's nodes and pods are listed (or its problem is known), the queue waits, at
    most 2 x members.request_timeout_seconds: planning on a fleet without its members would bind every
    job to the next-best centers. (Fails on the loop that planned at once: the job went to c1.)"""
    async def go() -> None:
        sched, api, clock, _ = lc.make()
        sched.cache.upsert_center(MEMBER)
        sched.cache.upsert_job(wp.cjob("a", count=8), lc.NOW)
        await sched.cycle()
        assert api.patches == [] and sched.cache.jobs[lc.KEY].phase != "Bound"
        assert sched.timer <= clock.now() + 2 * sched.settings.members.request_timeout_seconds
        sched.cache.member_state.set("guian", ("MemberUnreachable", "it does not answer"))  # known to be out
        await sched.cycle()
        await wp.settle(sched)
        assert sched.cache.binding(sched.cache.jobs[lc.KEY]) is not None  # planned: bound on c1

    asyncio.run(go())
    # Neither in nor known out: planned anyway once the grace is over.
    async def later() -> None:
        sched, _, clock, _ = lc.make()
        sched.cache.upsert_center(MEMBER)
        sched.cache.upsert_job(wp.cjob("a", count=8), lc.NOW)
        await sched.cycle()
        assert sched.cache.binding(sched.cache.jobs[lc.KEY]) is None
        clock.advance(2 * sched.settings.members.request_timeout_seconds)
        await sched.cycle()
        assert sched.cache.binding(sched.cache.jobs[lc.KEY]) is not None

    asyncio.run(later())
