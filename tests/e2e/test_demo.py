"""`make demo` end to end, the way CI runs it: the driver in plain-line mode against the cluster
under test (the hub), its JSON summary checked against `suanli plan` on the same (reduced) fleet.

The driver starts its own operator; the test gives it a deadline and asserts that every job plan
binds ran to Succeeded in plan's pool, the Queued one still waits with a reason, and a Deferred one
waits with a plannedStart. As `make demo` does, the driver leaves that operator running: a third
test applies the job the summary suggests (`kubectl apply`, the real kubectl), sees it placed, and
stops the operator with `demo.py --stop` (what `make demo-down` runs first). The fixture stops it in
any case, so the tests after these never meet it.

Member clusters: with the local hub the driver brings up its two local member clusters
(`demo-west`, `demo-east`: `CLUSTER=NAME tests/cluster/up.sh`, reused when running) as `make demo`
does; with SUANLI_MEMBER_KUBECONFIGS naming two or more, it uses those instead. The second test checks
the fleet is mixed (the hub and at least two members, each with centers), that jobs ran in at least
two clusters, each in its center's cluster as its status says, and that a member job's Job and pods
are really in that member, on that center's nodes. With an external hub (KUBECONFIG) and no member
kubeconfigs no member cluster can be made: the demo then runs on the hub alone and only that test skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.cluster.fake_nodes import CENTER_LABEL
from tests.cluster.pytest_plugin import (
    LOCAL_CLUSTERS_ROOT,
    MEMBER_KUBECONFIGS_ENV,
    cluster_script_env,
    parse_member_kubeconfigs,
)

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "tests" / "cluster" / "demo.py"
SUANLI = Path(sys.executable).parent / "suanli"
DEMO_TIMEOUT_S = float(os.environ.get("SUANLI_DEMO_TIMEOUT_SECONDS", "300"))
LOCAL_MEMBERS = ("demo-west", "demo-east")  # the demo's default --members
MEMBERS_UP_S = 240.0  # bringing both local members up (the binaries are built by then), on top of the demo
JOB_LABEL = "suanli.io/job"


def _suanli() -> list[str]:
    return [str(SUANLI)] if SUANLI.exists() else [sys.executable, "-m", "suanli.cli"]


def _plan(paths: list[Path]) -> dict[str, dict[str, Any]]:
    cmd = [*_suanli(), "plan", "-o", "json"]
    for path in paths:
        cmd += ["-f", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return {f"{j['namespace']}/{j['name']}": j for j in json.loads(out)["jobs"]}


def _members(kube: Any) -> tuple[str, str | None]:
    """The demo's --members, and why the member checks cannot run (None: they run)."""
    configured = parse_member_kubeconfigs(os.environ.get(MEMBER_KUBECONFIGS_ENV, ""))
    if len(configured) >= 2:
        return ",".join(f"{name}={path}" for name, path in configured.items()), None
    if kube.is_local:
        return ",".join(LOCAL_MEMBERS), None
    return "none", (
        f"the hub is an external cluster (KUBECONFIG={kube.kubeconfig}) and {MEMBER_KUBECONFIGS_ENV} names "
        f"{len(configured)} member cluster(s), so no member clusters can be made (local members are started only "
        f"next to the local hub): the demo ran on the hub alone. Set {MEMBER_KUBECONFIGS_ENV}=a=/path,b=/path "
        "to two more clusters (with kwok) to run the multi-cluster checks"
    )


@dataclass
class DemoRun:
    proc: subprocess.CompletedProcess[str]
    output: str
    work: Path
    summary: dict[str, Any] | None
    members_skipped: str | None  # why the member checks cannot run


@pytest.fixture(scope="module")
def demo_run(kube: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """The demo run once for this module's tests (the first one waits for it)."""
    members, members_skipped = _members(kube)
    local = members == ",".join(LOCAL_MEMBERS)  # the demo brings them up: the ones not there yet are new
    fresh = [n for n in LOCAL_MEMBERS if local and not (LOCAL_CLUSTERS_ROOT / n / "kubeconfig").exists()]
    tmp = tmp_path_factory.mktemp("demo")
    work, summary_file = tmp / "demo", tmp / "summary.json"
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--no-live", "--timeout", str(DEMO_TIMEOUT_S), "--members", members,
         "--kubeconfig", kube.kubeconfig, "--work-dir", str(work), "--summary-json", str(summary_file)],
        capture_output=True, text=True, timeout=DEMO_TIMEOUT_S + 150 + MEMBERS_UP_S, check=False, cwd=REPO,
    )  # fmt: skip
    output = f"exit {proc.returncode}\n--- stdout (tail)\n{proc.stdout[-8000:]}\n--- stderr (tail)\n{proc.stderr[-3000:]}"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
    try:
        yield DemoRun(proc, output, work, summary, members_skipped)
    finally:
        try:
            _remove_what_the_demo_made(kube, work)  # while its operator still runs (it removes finalizers)
        finally:
            _stop_demo_operator()
    if os.environ.get("SUANLI_CLUSTER_STOP") == "1":  # as member_cluster does: remove the members it started
        for name in fresh:
            subprocess.run(["bash", str(REPO / "tests" / "cluster" / "down.sh")], cwd=REPO,
                           env=cluster_script_env(name), capture_output=True, timeout=120, check=False)  # fmt: skip


@pytest.mark.timeout(DEMO_TIMEOUT_S + 180 + MEMBERS_UP_S)
def test_demo_runs_the_examples_as_planned(demo_run: DemoRun) -> None:
    proc, output, work = demo_run.proc, demo_run.output, demo_run.work
    assert proc.returncode == 0, f"the demo failed: {output}"
    summary = demo_run.summary
    assert summary is not None, output
    assert summary["finished"], output

    # What plan says about the very manifests the demo applied (its reduced fleet, its delays).
    planned = _plan([work / "centers.yaml", work / "jobs.yaml"])
    ran = {row["job"]: row for row in summary["jobs"]}
    assert set(ran) == set(planned), output
    assert planned["team-b/giant-pretrain"]["phase"] == "Queued", (
        "the giant gang must never fit (see jobs.yaml)"
    )

    for key, plan in planned.items():
        row = ran[key]
        if plan["phase"] == "Bound":
            b = plan["binding"]
            assert (row["phase"], row["center"], row["pool"]) == ("Succeeded", b["center"], b["pool"]), (
                f"{key}: plan binds it to {b['center']}/{b['pool']}; the demo ended with {row}\n{output}"
            )
            assert row["demoRunSeconds"] is not None and row["demoRunSeconds"] <= 60, row
        elif plan["phase"] == "Queued":
            assert row["phase"] == "Queued", f"{key}: plan queues it; the demo ended with {row}\n{output}"
            assert row["message"], f"{key}: Queued without a reason: {row}"
        elif plan["phase"] == "Deferred":
            assert row["phase"] == "Deferred", f"{key}: plan defers it; the demo ended with {row}\n{output}"
            assert row["plannedStart"], f"{key}: Deferred without a plannedStart: {row}"
        else:
            pytest.fail(f"{key}: unexpected planned phase {plan['phase']}")

    totals = summary["totals"]
    assert (
        totals["estimatedKWh"] > 0 and 0 < totals["estimatedCarbonKg"] < totals["nationalAverageCarbonKg"]
    ), totals
    assert (
        "kubectl get computejobs -A" in proc.stdout and "suanli explain team-b/giant-pretrain" in proc.stdout
    )
    assert summary.get("operatorPid") and "the operator keeps running: pid" in proc.stdout, output
    assert "make demo-down" in proc.stdout and "kubectl apply -f" in proc.stdout, output
    clusters = summary["clusters"]
    assert clusters["count"] == 1 + len(clusters["members"]), clusters
    assert f"clusters: {clusters['count']} - " in proc.stdout, output


@pytest.mark.timeout(DEMO_TIMEOUT_S + 180 + MEMBERS_UP_S)
def test_demo_spreads_the_fleet_over_member_clusters(demo_run: DemoRun) -> None:
    from kubernetes import client, config

    if demo_run.members_skipped:
        pytest.skip(demo_run.members_skipped)
    output = demo_run.output
    assert demo_run.proc.returncode == 0 and demo_run.summary is not None, f"the demo failed: {output}"
    clusters = demo_run.summary["clusters"]
    members = {m["name"]: m for m in clusters["members"]}
    assert len(members) >= 2, f"at least two member clusters: {clusters}"
    assert clusters["count"] == 1 + len(members) >= 3, clusters
    assert clusters["hub"]["centers"] and all(m["centers"] for m in members.values()), (
        f"a mixed fleet: centers in the hub and in every member: {clusters}"
    )
    center_cluster = {c: name for name, m in members.items() for c in m["centers"]}
    ran = [r for r in demo_run.summary["jobs"] if r["phase"] == "Succeeded"]
    where = {r["job"]: r["clusterName"] for r in ran}
    assert len(set(where.values())) >= 2, f"jobs ran in at least two clusters: {where}\n{output}"
    assert set(where.values()) & set(members), f"some job ran in a member cluster: {where}"
    assert sum(clusters["jobsRanIn"].values()) == len(
        [r for r in demo_run.summary["jobs"] if r["clusterName"]]
    )

    apis = {name: config.new_client_from_config(config_file=m["kubeconfig"]) for name, m in members.items()}
    for r in ran:
        member = center_cluster.get(r["center"])
        # The status names the member center whose cluster runs the job, and nothing for a hub center.
        assert r["cluster"] == (r["center"] if member else None), (
            f"{r['job']}: status says cluster {r['cluster']}: {r}"
        )
        assert r["clusterName"] == (member or "hub"), r
        if member is None:
            continue
        ns, name = r["job"].split("/", 1)
        jobs = (
            client.BatchV1Api(apis[member])
            .list_namespaced_job(ns, label_selector=f"{JOB_LABEL}={name}")
            .items
        )
        assert len(jobs) == 1 and (jobs[0].status.succeeded or 0) >= 1, (
            f"{r['job']}: one succeeded Job in member cluster {member}: {[j.status for j in jobs]}"
        )
        assert r["memberJob"] and r["memberJob"]["succeeded"] == jobs[0].status.succeeded, r
        core = client.CoreV1Api(apis[member])
        pods = core.list_namespaced_pod(ns, label_selector=f"{JOB_LABEL}={name}").items
        center_nodes = {
            n.metadata.name for n in core.list_node(label_selector=f"{CENTER_LABEL}={r['center']}").items
        }
        assert pods and all(p.spec.node_name in center_nodes for p in pods), (
            f"{r['job']}: its pods run in {member} on {r['center']}'s nodes {sorted(center_nodes)}: "
            f"{[(p.metadata.name, p.spec.node_name) for p in pods]}"
        )


def _remove_what_the_demo_made(kube: Any, work: Path) -> None:
    """The demo's ComputeJobs, ComputeCenters and the hub's fake nodes of those centers, so the tests
    after this module meet none of them (a job of theirs was placed on a demo center). The member
    clusters keep theirs: no other test uses demo-west or demo-east."""
    import yaml
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from tests.cluster import fake_nodes as fake_nodes_lib
    from tests.cluster.pytest_plugin import wait_for_value

    docs = [d for f in ("jobs.yaml", "one-more-job.yaml", "centers.yaml") if (work / f).exists()
            for d in yaml.safe_load_all((work / f).read_text()) if d]  # fmt: skip
    jobs = [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d.get("kind") == "ComputeJob"]
    centers = [d["metadata"]["name"] for d in docs if d.get("kind") == "ComputeCenter"]
    custom, core = client.CustomObjectsApi(kube.api_client), client.CoreV1Api(kube.api_client)

    def present(get: Any) -> bool:
        try:
            get()
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    for ns, name in jobs:
        present(lambda ns=ns, name=name: custom.delete_namespaced_custom_object(
            "suanli.io", "v1alpha1", ns, "computejobs", name, propagation_policy="Foreground"))  # fmt: skip
    left = lambda: [f"{ns}/{n}" for ns, n in jobs if present(  # noqa: E731
        lambda ns=ns, n=n: custom.get_namespaced_custom_object("suanli.io", "v1alpha1", ns, "computejobs", n))]  # fmt: skip
    wait_for_value(lambda: not left(), 180, left, what="the demo's ComputeJobs to be deleted")
    for name in centers:
        present(lambda name=name: custom.delete_cluster_custom_object("suanli.io", "v1alpha1", "computecenters", name))
    nodes = [n.metadata.name for c in centers
             for n in core.list_node(label_selector=f"{CENTER_LABEL}={c}").items]  # fmt: skip
    fake_nodes_lib.delete_nodes(core, nodes)


def _stop_demo_operator() -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(DEMO), "--stop"], capture_output=True, text=True,
                          timeout=60, check=False, cwd=REPO)  # fmt: skip


def _runs_suanli(pid: int) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}/status").exists() else ""
    return b"run" in args and "State:\tZ" not in status


@pytest.mark.timeout(300)
def test_demo_leaves_the_operator_running_for_one_more_job(
    demo_run: DemoRun, kube: Any, custom_objects: Any, wait_for: Any
) -> None:
    from kubernetes.client.exceptions import ApiException

    summary, output = demo_run.summary, demo_run.output
    assert demo_run.proc.returncode == 0 and summary is not None, f"the demo failed: {output}"
    pid = summary["operatorPid"]
    assert _runs_suanli(pid), f"the demo's operator (pid {pid}) is not running after the demo\n{output}"

    ns, name = summary["oneMoreJob"].split("/")
    local = [Path(kube.kubeconfig).parent / "bin" / "kubectl", LOCAL_CLUSTERS_ROOT / "bin" / "kubectl"]
    kubectl = next((str(k) for k in local if k.exists()), None) or shutil.which("kubectl")
    assert kubectl, "no kubectl: neither the local control plane's (.cluster/bin) nor one on PATH"
    applied = subprocess.run([kubectl, "--kubeconfig", kube.kubeconfig, "apply", "-f", summary["oneMoreJobFile"]],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert applied.returncode == 0, applied.stderr

    def phase() -> str | None:
        job = custom_objects.get_namespaced_custom_object("suanli.io", "v1alpha1", ns, "computejobs", name)
        return ((job.get("status") or {}).get("phase")) or None

    placed = wait_for(lambda: (phase() or "") in ("Bound", "Running", "Succeeded") and phase(), 120,
                      lambda: f"{ns}/{name} phase {phase()}", what=f"the operator the demo left to place {ns}/{name}")  # fmt: skip
    assert placed in ("Bound", "Running", "Succeeded")

    custom_objects.delete_namespaced_custom_object("suanli.io", "v1alpha1", ns, "computejobs", name)

    def gone() -> bool:
        try:
            custom_objects.get_namespaced_custom_object("suanli.io", "v1alpha1", ns, "computejobs", name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, 120, f"{ns}/{name} to be deleted (the running operator removes its finalizer)")
    _remove_what_the_demo_made(kube, demo_run.work)  # before the operator that removes finalizers stops

    stopped = _stop_demo_operator()
    assert stopped.returncode == 0 and f"(pid {pid})" in stopped.stdout, stopped.stdout + stopped.stderr
    assert not _runs_suanli(pid), f"pid {pid} still runs after demo.py --stop"
    again = _stop_demo_operator()  # idempotent: nothing left to stop
    assert again.returncode == 0 and "no operator left running" in again.stdout, again.stdout
