"""Member clusters end to end: a hub (the cluster under test) and two member clusters, each a real
local control plane of its own (API server, etcd, controller-manager, scheduler, kwok; `member_cluster`),
joined with the real `suanli join`.

- Dispatch and status back: jobs go to the member the score picks (data locality decides between two
  members), their pods run on that member's nodes of the chosen pool, the status says which cluster,
  and a job pinned to a local center runs in the hub (a mixed fleet); deleting a ComputeJob deletes its
  Job in the member within seconds; a hub operator SIGKILLed mid-run and restarted adopts every
  member Job (counted by label in each member: one per job, the same uid as before the restart).
- Failover: a member's control plane stopped for longer than members.lost_after_seconds: its job goes
  back to the queue (MemberLost) and succeeds in the other member; once the member is back, the
  superseded Job there is deleted, and no ComputeJob ever has two Jobs.
- Credentials: an `exec` kubeconfig is refused naming `exec` and its command never runs; a rotated
  Secret reconnects; a deleted one makes the center not ready with that reason.
- Least privilege: the identity `suanli join` made can do in the member only what dispatch needs.

With SUANLI_MEMBER_KUBECONFIGS (members elsewhere, e.g. kind clusters), the failover test is skipped:
it has to stop a member's control plane.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from tests.cluster import fake_nodes as fake_nodes_module
from tests.e2e.helpers import (
    GROUP,
    SUANLI,
    VERSION,
    Operator,
    compute_job,
    get_center,
    kubectl,
    only_on,
    small_center,
    stop_and_clean_up,
)

from suanli.kube import workloads
from suanli.members import access

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

HUB_NAMESPACE = "suanli-e2e-hub"  # the operator's namespace on the hub: its member kubeconfig Secrets
EAST, WEST = "m-east", "m-west"  # the member clusters (local control planes)
DEADLINE_S = 90.0
LOST_AFTER_S = 12.0
SETTINGS = {"members": {"lost_after_seconds": LOST_AFTER_S, "probe_seconds": 1.0},
            "operator": {"pods_ready_timeout_seconds": 120}}


# --- the fleet: two member centers, one local center ---------------------------------------------


class Fleet:
    """Names, member clients and the centers of one test; `make` creates them."""

    def __init__(self, members: dict[str, Any], tag: str):
        self.tag = tag
        self.members = members  # center name -> MemberCluster
        self.core = {c: k8s.CoreV1Api(m.api_client) for c, m in members.items()}
        self.batch = {c: k8s.BatchV1Api(m.api_client) for c, m in members.items()}
        self.nodes: dict[str, list[str]] = {}

    def region(self, center: str) -> str:
        return center

    def jobs_in(self, center: str, ns: str, job: str) -> list[Any]:
        """The batch Jobs of ComputeJob `job` in member `center` (by label)."""
        return self.batch[center].list_namespaced_job(ns, label_selector=f"{workloads.LABEL_JOB}={job}").items


def member_center(name: str, grams_per_kwh: float) -> dict[str, Any]:
    doc = small_center(name, nodes_expected=2, per_node=8)
    doc["spec"]["region"] = name
    doc["spec"]["energy"]["carbonIntensity"] = {"gramsPerKWh": grams_per_kwh}
    return doc


def join(kubeconfig: str, center: str, member: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SUANLI), "join", center, "--member-kubeconfig", member.kubeconfig, "--kubeconfig", kubeconfig,
         "--namespace", HUB_NAMESPACE],
        capture_output=True, text=True, timeout=120, check=False)


def member_ready(custom_objects: Any, center: str) -> dict[str, Any] | None:
    cond = next((c for c in (get_center(custom_objects, center).get("status") or {}).get("conditions") or []
                 if c["type"] == "Ready"), None)
    return cond if cond is not None and cond["status"] == "True" else None


def ready_condition(custom_objects: Any, center: str) -> dict[str, Any]:
    status = get_center(custom_objects, center).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


@pytest.fixture
def fleet(kube: Any, member_cluster: Callable[..., Any], core_v1: Any, custom_objects: Any, wait_for: Any,
          tmp_path: Path) -> Iterator[tuple[Fleet, Operator, str]]:
    """Two member centers (east: dirtier power, west: cleaner), joined; one local center; the operator
    running with short member timeouts. Yields (fleet, operator, local center name)."""
    tag = uuid.uuid4().hex[:5]
    east, west, local = f"e2e-east-{tag}", f"e2e-west-{tag}", f"e2e-local-{tag}"
    members = {east: member_cluster(EAST), west: member_cluster(WEST)}
    fl = Fleet(members, tag)
    with contextlib.suppress(ApiException):
        core_v1.create_namespace({"metadata": {"name": HUB_NAMESPACE}})
    docs = {east: member_center(east, 600.0), west: member_center(west, 100.0)}
    for center, doc in docs.items():
        nodes = fake_nodes_module.nodes_for_centers([doc], nodes_per_pool=2)
        fl.nodes[center] = fake_nodes_module.apply_nodes(fl.core[center], nodes)
    local_doc = small_center(local, nodes_expected=1, per_node=8)
    only_on(local_doc)
    local_nodes = fake_nodes_module.apply_nodes(core_v1, fake_nodes_module.nodes_for_centers([local_doc], nodes_per_pool=1))
    for doc in [*docs.values(), local_doc]:
        custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)
    for center, member in members.items():
        done = join(kube.kubeconfig, center, member)
        assert done.returncode == 0, f"suanli join {center} failed:\n{done.stdout}\n{done.stderr}"
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(SETTINGS))
    op = Operator(kube.kubeconfig, tmp_path, ["--namespace", HUB_NAMESPACE, "--config", str(config)])
    op.start()
    try:
        for center in [east, west, local]:
            wait_for(lambda center=center: member_ready(custom_objects, center), DEADLINE_S,
                     lambda center=center: ready_condition(custom_objects, center),
                     what=f"ComputeCenter {center} Ready")
        yield fl, op, local
    finally:
        stop_and_clean_up(op, custom_objects, None, [east, west, local])
        for center, names in fl.nodes.items():
            with contextlib.suppress(Exception):
                fake_nodes_module.delete_nodes(fl.core[center], names)
        with contextlib.suppress(Exception):
            fake_nodes_module.delete_nodes(core_v1, local_nodes)
        for center in members:
            with contextlib.suppress(ApiException):
                core_v1.delete_namespaced_secret(access.secret_name(center), HUB_NAMESPACE)


def member_job(name: str, ns: str, *, region: str, allowed: list[str], run: str = "3s", size_gib: float = 20000) -> dict[str, Any]:
    doc = compute_job(name, ns, replicas=2, count=4, annotations={
        "pod-complete.stage.kwok.x-k8s.io/delay": run, "pod-complete.stage.kwok.x-k8s.io/jitter-delay": "1s"})
    doc["spec"]["data"] = {"region": region, "sizeGiB": size_gib, "allowedRegions": allowed}
    return doc


def status(custom_objects: Any, ns: str, name: str) -> dict[str, Any]:
    return custom_objects.get_namespaced_custom_object(GROUP, VERSION, ns, "computejobs", name).get("status") or {}


def phase_is(custom_objects: Any, ns: str, name: str, *phases: str) -> dict[str, Any] | None:
    st = status(custom_objects, ns, name)
    return st if st.get("phase") in phases else None


# --- dispatch, status back, deletion, restart ----------------------------------------------------


def test_jobs_run_in_the_member_the_score_picks_and_come_back_with_their_status(
    fleet: tuple[Fleet, Operator, str], namespace: str, custom_objects: Any, core_v1: Any, batch_v1: Any,
    wait_for: Any,
) -> None:
    fl, op, local = fleet
    east, west = list(fl.members)
    both = [east, west]
    jobs = {
        "near-east": member_job("near-east", namespace, region=east, allowed=both),  # its data is in east
        "near-west": member_job("near-west", namespace, region=west, allowed=both),
        "anywhere": member_job("anywhere", namespace, region=west, allowed=both, size_gib=0),  # cleaner power wins
    }
    local_job = compute_job("here", namespace, replicas=1, count=4)
    only_on({"metadata": {"name": local}, "spec": {}}, local_job)
    for doc in [*jobs.values(), local_job]:
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)
    for name in [*jobs, "here"]:
        wait_for(lambda name=name: phase_is(custom_objects, namespace, name, "Succeeded", "Failed"), DEADLINE_S,
                 lambda name=name: status(custom_objects, namespace, name), what=f"{name} finished")
    want = {"near-east": east, "near-west": west, "anywhere": west}
    for name, center in want.items():
        st = status(custom_objects, namespace, name)
        assert st["phase"] == "Succeeded", st
        assert st["binding"]["center"] == center and st["binding"]["cluster"] == center, st["binding"]
        assert st["workloadRef"]["cluster"] == center, st["workloadRef"]
        (job,) = fl.jobs_in(center, namespace, name)  # exactly one, in the member the score picked
        assert job.metadata.labels[workloads.LABEL_UID] == custom_objects.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "computejobs", name)["metadata"]["uid"]
        assert not job.metadata.owner_references
        other = west if center == east else east
        assert fl.jobs_in(other, namespace, name) == []
        assert batch_v1.list_namespaced_job(namespace, label_selector=f"{workloads.LABEL_JOB}={name}").items == []
        pods = fl.core[center].list_namespaced_pod(namespace, label_selector=f"{workloads.LABEL_JOB}={name}").items
        assert len(pods) == 2 and {p.spec.node_name for p in pods} <= set(fl.nodes[center]), \
            [(p.metadata.name, p.spec.node_name) for p in pods]
        assert sorted(p.spec.node_name for p in pods) == sorted(st["binding"]["nodes"])
    here = status(custom_objects, namespace, "here")
    assert here["phase"] == "Succeeded" and here["binding"]["center"] == local and "cluster" not in here["binding"]
    assert len(batch_v1.list_namespaced_job(namespace, label_selector=f"{workloads.LABEL_JOB}=here").items) == 1
    assert " 403 " not in op.log_text() and "Forbidden" not in op.log_text()


def test_deleting_a_compute_job_deletes_its_member_job_and_a_restarted_hub_adopts_the_rest(
    fleet: tuple[Fleet, Operator, str], namespace: str, custom_objects: Any, wait_for: Any,
) -> None:
    fl, op, _ = fleet
    east, west = list(fl.members)
    long = member_job("doomed", namespace, region=east, allowed=[east], run="120s")
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", long)
    wait_for(lambda: phase_is(custom_objects, namespace, "doomed", "Running"), DEADLINE_S,
             lambda: status(custom_objects, namespace, "doomed"), what="doomed Running in east")
    assert len(fl.jobs_in(east, namespace, "doomed")) == 1
    custom_objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", "doomed")
    started = time.monotonic()
    wait_for(lambda: fl.jobs_in(east, namespace, "doomed") == [] or None, 15.0,
             lambda: [j.metadata.name for j in fl.jobs_in(east, namespace, "doomed")],
             what="the member Job of a deleted ComputeJob gone")
    print(f"member Job deleted {time.monotonic() - started:.1f}s after its ComputeJob")

    names = [f"adopt-{i}" for i in range(4)]
    for i, name in enumerate(names):
        center = (east, west)[i % 2]
        doc = member_job(name, namespace, region=center, allowed=[center], run="15s")
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)
    for name in names:
        wait_for(lambda name=name: phase_is(custom_objects, namespace, name, "Running"), DEADLINE_S,
                 lambda name=name: status(custom_objects, namespace, name), what=f"{name} Running")
    before = {name: [j.metadata.uid for c in (east, west) for j in fl.jobs_in(c, namespace, name)] for name in names}
    assert all(len(uids) == 1 for uids in before.values()), before
    op.kill()
    op.start()
    for name in names:
        wait_for(lambda name=name: phase_is(custom_objects, namespace, name, "Succeeded", "Failed"), DEADLINE_S,
                 lambda name=name: status(custom_objects, namespace, name), what=f"{name} finished after the restart")
        assert status(custom_objects, namespace, name)["phase"] == "Succeeded"
    after = {name: [j.metadata.uid for c in (east, west) for j in fl.jobs_in(c, namespace, name)] for name in names}
    assert after == before  # adopted: the same Job, none made twice


# --- failover --------------------------------------------------------------------------------------


def test_a_lost_member_fails_over_and_its_superseded_job_is_deleted_when_it_returns(
    fleet: tuple[Fleet, Operator, str], namespace: str, custom_objects: Any, wait_for: Any,
) -> None:
    fl, op, _ = fleet
    east, west = list(fl.members)
    member = fl.members[east]
    if not member.is_local:
        pytest.skip(f"member cluster {member.name} is not a local control plane: it cannot be stopped here")
    doc = member_job("mover", namespace, region=east, allowed=[east, west], run="30s")
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)
    wait_for(lambda: phase_is(custom_objects, namespace, "mover", "Running"), DEADLINE_S,
             lambda: status(custom_objects, namespace, "mover"), what="mover Running in east")
    assert status(custom_objects, namespace, "mover")["binding"]["center"] == east
    (superseded,) = fl.jobs_in(east, namespace, "mover")
    stopped = time.monotonic()  # (stopping takes seconds: the member stops answering at its start)
    member.stop()
    try:
        st = wait_for(lambda: (s := status(custom_objects, namespace, "mover")).get("binding") and
                      s["binding"]["center"] == west and s, DEADLINE_S,
                      lambda: status(custom_objects, namespace, "mover"), what="mover rebound to west")
        took = time.monotonic() - stopped
        assert took >= LOST_AFTER_S - 1, f"requeued {took:.1f}s after the member stopped, before it was lost"
        assert st["requeues"] == 1 and [a["outcome"] for a in st["attempts"]] == ["MemberLost"]
        cond = ready_condition(custom_objects, east)
        assert cond.get("reason") in ("MemberLost", "MemberUnreachable"), cond
        wait_for(lambda: phase_is(custom_objects, namespace, "mover", "Succeeded", "Failed"), DEADLINE_S,
                 lambda: status(custom_objects, namespace, "mover"), what="mover finished in west")
        assert status(custom_objects, namespace, "mover")["phase"] == "Succeeded"
        assert len(fl.jobs_in(west, namespace, "mover")) == 1
    finally:
        member.start()
    wait_for(lambda: all(j.metadata.uid != superseded.metadata.uid or j.metadata.deletion_timestamp
                         for j in fl.jobs_in(east, namespace, "mover")), DEADLINE_S,
             lambda: [(j.metadata.name, j.metadata.labels.get(workloads.LABEL_ATTEMPT)) for j in fl.jobs_in(east, namespace, "mover")],
             what="the superseded Job in east deleted once east is back")
    wait_for(lambda: member_ready(custom_objects, east), DEADLINE_S, lambda: ready_condition(custom_objects, east),
             what="east Ready again")
    reasons = kubectl(op.kubeconfig, "get", "events", "-n", namespace, "--field-selector",
                      "involvedObject.name=mover", "-o", "json").stdout
    assert "MemberLost" in {e.get("reason") for e in json.loads(reasons)["items"]}


# --- credentials -----------------------------------------------------------------------------------


def test_an_exec_kubeconfig_never_runs_and_a_rotated_or_deleted_secret_is_followed(
    fleet: tuple[Fleet, Operator, str], core_v1: Any, custom_objects: Any, wait_for: Any, tmp_path: Path,
) -> None:
    fl, _, _ = fleet
    east, _ = list(fl.members)
    name = access.secret_name(east)
    good = core_v1.read_namespaced_secret(name, HUB_NAMESPACE)
    marker = tmp_path / "exec-ran"
    evil = yaml.safe_load(base64.b64decode(good.data["kubeconfig"]))
    evil["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "touch",
                                         "args": [str(marker)]}}
    core_v1.replace_namespaced_secret(name, HUB_NAMESPACE, {
        "metadata": {"name": name, "namespace": HUB_NAMESPACE}, "stringData": {"kubeconfig": yaml.safe_dump(evil)}})
    cond = wait_for(lambda: (c := ready_condition(custom_objects, east)).get("reason") == "MemberCredentialsRefused" and c,
                    DEADLINE_S, lambda: ready_condition(custom_objects, east), what="east refused for its exec kubeconfig")
    assert cond["status"] == "False" and "exec" in cond["message"], cond
    assert not marker.exists()
    # Rotated back to a good kubeconfig: connected again.
    core_v1.replace_namespaced_secret(name, HUB_NAMESPACE, {
        "metadata": {"name": name, "namespace": HUB_NAMESPACE}, "data": good.data})
    wait_for(lambda: member_ready(custom_objects, east), DEADLINE_S, lambda: ready_condition(custom_objects, east),
             what="east Ready with the rotated Secret")
    core_v1.delete_namespaced_secret(name, HUB_NAMESPACE)
    cond = wait_for(lambda: (c := ready_condition(custom_objects, east)).get("reason") == "MemberSecretMissing" and c,
                    DEADLINE_S, lambda: ready_condition(custom_objects, east), what="east not ready: Secret deleted")
    assert name in cond["message"]
    assert not marker.exists()


# --- least privilege -------------------------------------------------------------------------------


def test_the_joined_identity_can_do_only_what_dispatch_needs(fleet: tuple[Fleet, Operator, str]) -> None:
    fl, _, _ = fleet
    for member in fl.members.values():
        out = kubectl(member.kubeconfig, "auth", "can-i", "--list",
                      f"--as=system:serviceaccount:{access.NAMESPACE}:{access.SERVICE_ACCOUNT}", "-n", "default")
        assert out.returncode == 0, out.stderr
        granted: dict[str, set[str]] = {}
        for line in out.stdout.splitlines()[1:]:
            cols = line.split()
            resource, verbs = cols[0], line[line.rindex("[") + 1:line.rindex("]")].split()
            granted.setdefault(resource, set()).update(verbs)
        allowed = {"jobs.batch": {"get", "list", "watch", "create", "delete"}, "pods": {"get", "list", "watch", "patch"},
                   "nodes": {"get", "list", "watch"}, "services": {"get", "create", "delete"}, "namespaces": {"create"},
                   "resourceslices.resource.k8s.io": {"get", "list", "watch"},
                   "deviceclasses.resource.k8s.io": {"get", "list", "watch"},
                   "resourceclaims.resource.k8s.io": {"get", "list", "watch"},
                   "resourceclaimtemplates.resource.k8s.io": {"get", "create", "delete"}}
        public = {"selfsubjectreviews.authentication.k8s.io", "selfsubjectaccessreviews.authorization.k8s.io",
                  "selfsubjectrulesreviews.authorization.k8s.io"}
        for resource, verbs in granted.items():
            if resource in public or resource.startswith("["):  # non-resource URLs (/api, /version, ...)
                continue
            assert resource in allowed and verbs <= allowed[resource], (member.name, resource, verbs)
        assert "secrets" not in granted


# --- the hub operator with the chart's identity ------------------------------------------------------


def test_the_hub_operator_with_the_charts_identity_dispatches_to_a_member_without_a_refusal(
    kube: Any, member_cluster: Callable[..., Any], custom_objects: Any, namespace: str, wait_for: Any,
    tmp_path: Path,
) -> None:
    """`helm install` the chart on the hub, run `suanli run` with a token of the chart's ServiceAccount
    (tests/tools/sa_kubeconfig.py) and the identity `suanli join` made in the member: a job runs in the
    member and nothing is refused (the hub reads the member's kubeconfig Secret only in its namespace)."""
    from tests.e2e import helpers
    from tests.tools import sa_kubeconfig

    member = member_cluster(WEST)
    center = f"e2e-chart-{uuid.uuid4().hex[:5]}"
    core = k8s.CoreV1Api(member.api_client)
    doc = member_center(center, 200.0)
    nodes = fake_nodes_module.apply_nodes(core, fake_nodes_module.nodes_for_centers([doc], nodes_per_pool=2))
    with helpers.helm_release(kube.kubeconfig, tmp_path) as release:
        custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)
        done = subprocess.run(
            [str(SUANLI), "join", center, "--member-kubeconfig", member.kubeconfig, "--kubeconfig", kube.kubeconfig,
             "--namespace", release["namespace"]], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        sa_config = str(sa_kubeconfig.write(kube.kubeconfig, release["namespace"], release["sa"],
                                            tmp_path / "sa.kubeconfig", "1h"))
        op = Operator(sa_config, tmp_path, ["--config", release["config"], "--namespace", release["namespace"]])
        op.start()
        try:
            wait_for(lambda: member_ready(custom_objects, center), DEADLINE_S,
                     lambda: ready_condition(custom_objects, center), what=f"{center} Ready")
            job = member_job("charted", namespace, region=center, allowed=[center])
            custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", job)
            wait_for(lambda: phase_is(custom_objects, namespace, "charted", "Succeeded", "Failed"), DEADLINE_S,
                     lambda: status(custom_objects, namespace, "charted"), what="charted finished")
            st = status(custom_objects, namespace, "charted")
            assert st["phase"] == "Succeeded" and st["binding"]["cluster"] == center, st
            log = op.log_text()
            assert "403" not in log and "Forbidden" not in log, log[-3000:]
        finally:
            stop_and_clean_up(op, custom_objects, None, [center])
            fake_nodes_module.delete_nodes(core, nodes)
