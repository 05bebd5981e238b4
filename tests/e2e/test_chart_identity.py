"""The operator runs with the chart's identity: `helm install` the chart, then run `suanli run`
locally with a TokenRequest token of the chart's ServiceAccount (tests/tools/sa_kubeconfig.py)
against the real RBAC authorizer and the chart's ValidatingAdmissionPolicy, and run the e2e
scenario through it. If the chart's RBAC lacked a rule the operator needs, a write or watch here
is refused (403) and the scenario stalls, or the log shows the refusal: both fail the test.

The chart's Deployment is scaled to 0 (kwok nodes run no containers). `kubectl auth can-i` for
single verbs is in tests/integration/test_helm_install.py; here the whole grant is listed.
Live objects met on the way are captured as Argo CD health fixtures (tests/e2e/helpers.py).
Run it on a cluster no other operator test uses at the same time (an operator watches every
namespace, so another test's operator or unconstrained jobs would take part), e.g. a private one:
SUANLI_CLUSTER_DIR=/tmp/c2 SUANLI_APISERVER_PORT=37443 ... bash tests/cluster/up.sh, then KUBECONFIG=/tmp/c2/kubeconfig.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e import helpers
from tests.e2e.helpers import EXPECT_TIMEOUT_S, GROUP, VERSION
from tests.tools import sa_kubeconfig

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.timeout(900)]

MAX_NODES = 4
HEALTH = {  # Argo CD health of each ComputeJob phase (helm/argocd/README.md)
    "Pending": "Progressing", "Queued": "Progressing", "Bound": "Progressing", "Running": "Progressing",
    "Deferred": "Suspended", "Succeeded": "Healthy", "Failed": "Degraded", "Invalid": "Degraded",
}

MESSAGE = {"Failed": "exited with code 1", "Invalid": "NoSuchAccel9000"}  # what the Argo CD UI must say


@pytest.fixture(scope="module")
def release(kube: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with helpers.helm_release(kube.kubeconfig, tmp_path_factory.mktemp("release")) as rel:
        yield rel


def a10_center(name: str) -> dict[str, Any]:
    """One A10 node: a model no example center has, so the failing and long jobs land only here."""
    return helpers.small_center(name, nodes_expected=1, pool="a10", model="A10")


def a10_job(name: str, ns: str, annotations: dict[str, str], models: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ComputeJob", "metadata": {"name": name, "namespace": ns},
        "spec": {
            "accelerators": {"count": 2, "types": ["GPU"], "models": models or ["A10"]},
            "images": {"GPU": "registry.example.com/probe:cuda12"},
            "template": {"metadata": {"annotations": annotations},
                         "spec": {"containers": [{"name": "main", "command": ["probe"]}], "restartPolicy": "Never"}},
            "runtime": {"estimatedDuration": "30m"},
        },
    }


def test_operator_as_the_chart_service_account_runs_the_scenario(
    kube, release, namespace, custom_objects, batch_v1, core_v1, fake_nodes, wait_for, tmp_path: Path
) -> None:
    from suanli.api import manifests
    from suanli.commands import plan as plan_cmd

    sa_config = str(sa_kubeconfig.write(kube.kubeconfig, release["namespace"], release["sa"], tmp_path / "sa.kubeconfig", "1h"))
    who = helpers.kubectl(sa_config, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert who.stdout == f"system:serviceaccount:{release['namespace']}:{release['sa']}", (who.stdout, who.stderr)
    suffix = uuid.uuid4().hex[:5]
    fleet, renamed = helpers.example_fleet(suffix, MAX_NODES)
    probe = a10_center(f"e2e-id-{suffix}")
    nodes = fake_nodes([*fleet, probe], nodes_per_pool=None, max_nodes_per_pool=MAX_NODES)
    all_centers = [c["metadata"]["name"] for c in [*fleet, probe]]
    op = helpers.Operator(sa_config, tmp_path, ["--config", release["config"], "--namespace", release["namespace"]])
    op.start()
    captured: dict[str, Path] = {}
    source = "e2e: tests/e2e/test_chart_identity.py (operator as the chart's ServiceAccount)"
    try:
        for doc in [*fleet, probe]:
            custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)

        def all_ready() -> list[dict[str, Any]] | None:
            live = [helpers.get_center(custom_objects, n) for n in all_centers]
            return live if all(helpers.center_conditions(c).get("Ready") == "True" for c in live) else None

        live_centers = wait_for(all_ready, EXPECT_TIMEOUT_S, lambda: {n: helpers.center_conditions(
            helpers.get_center(custom_objects, n)) for n in all_centers},
            what="every center Ready (status written by the ServiceAccount)")
        captured["center-Ready"] = helpers.capture(live_centers[0], "Healthy", "", label="ready", source=source, tmp_dir=tmp_path)

        jobs = helpers.example_jobs(namespace)
        extra = [
            a10_job("doomed", namespace, {"pod-fail.stage.kwok.x-k8s.io/delay": "1s"}),
            a10_job("long", namespace, {"pod-complete.stage.kwok.x-k8s.io/delay": "10m"}),
            a10_job("unknown-model", namespace, {}, models=["NoSuchAccel9000"]),
        ]
        loaded = manifests.parse_text(yaml.safe_dump_all([*fleet, probe, *(d for d, _ in jobs)]), "examples")
        planned = {e["name"]: e for e in plan_cmd.plan_manifests(loaded, time.time())["jobs"]}
        for doc in [*(d for d, _ in jobs), *extra]:
            custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", copy.deepcopy(doc))

        def observe() -> dict[str, str] | None:
            """Capture the first live object seen in each phase; done when every job has settled."""
            items = custom_objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs")["items"]
            current = {}
            for item in items:
                phase = current[item["metadata"]["name"]] = (item.get("status") or {}).get("phase", "Pending")
                if f"job-{phase}" not in captured and (phase != "Pending" or not item.get("status")):
                    captured[f"job-{phase}"] = helpers.capture(item, HEALTH[phase], MESSAGE.get(phase, ""), label=phase if item.get("status") else "no-status", source=source, tmp_dir=tmp_path)
            waiting = {n: p for n, p in current.items() if p not in ("Succeeded", "Failed", "Queued", "Deferred", "Invalid")}
            waiting.pop("long", None) if current.get("long") == "Running" else None
            return None if waiting or len(current) < len(jobs) + len(extra) else current

        final = wait_for(observe, EXPECT_TIMEOUT_S, lambda: helpers.job_phases(custom_objects, namespace),
                         what="every job to settle", interval=0.1, max_interval=0.5)
        helpers.assert_example_outcomes(custom_objects, batch_v1, namespace, jobs, final, planned, renamed)
        assert final["doomed"] == "Failed", final
        assert final["unknown-model"] == "Invalid", final
        invalid = helpers.get_job(custom_objects, namespace, "unknown-model")
        assert "NoSuchAccel9000" in invalid["status"]["message"], invalid["status"]
        assert final["long"] == "Running", final

        # Deleting a ComputeJob removes its Job (and pods) — garbage collection through the owner reference.
        custom_objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", "long")
        wait_for(lambda: helpers.workload_gone(batch_v1, core_v1, namespace, "long"), EXPECT_TIMEOUT_S,
                 "the Job and pods of the deleted ComputeJob to go")
        wait_for(lambda: "long" not in helpers.job_phases(custom_objects, namespace), EXPECT_TIMEOUT_S,
                 "the ServiceAccount operator to remove its finalizer from the deleted ComputeJob")

        # A node goes away: its center reports Degraded.
        node = next(n for n in nodes if n.startswith(probe["metadata"]["name"]))
        core_v1.delete_node(node)

        def degraded() -> dict[str, Any] | None:
            live = helpers.get_center(custom_objects, probe["metadata"]["name"])
            return live if helpers.center_conditions(live).get("Degraded") == "True" else None

        live = wait_for(degraded, EXPECT_TIMEOUT_S, lambda: helpers.get_center(
            custom_objects, probe["metadata"]["name"]).get("status"), what="the center to be Degraded")
        captured["center-Degraded"] = helpers.capture(live, "Degraded", "", label="degraded", source=source, tmp_dir=tmp_path)

        # The RBAC was enough: nothing the operator asked for was refused.
        log = op.log_text()
        refusals = [line for line in log.splitlines() if " 403" in line or "forbidden" in line.lower()]
        assert not refusals, "the chart's RBAC refused the operator:\n" + "\n".join(refusals[:20])
        bound = [d["metadata"]["name"] for d, e in jobs if "/" in e]
        # ... and this operator (not another one on a shared cluster) did the binding.
        binds = helpers.metric_value(op.metrics(), "suanli_job_bind_latency_seconds_count")
        assert binds >= len(bound), f"the ServiceAccount's operator recorded {binds} binds, expected >= {len(bound)}"
        print(f"captured: {sorted(captured)}; bound by the ServiceAccount: {bound}")
    finally:
        helpers.stop_and_clean_up(op, custom_objects, namespace, all_centers)


def test_the_chart_grants_only_what_the_operator_uses(kube, release) -> None:
    """`kubectl auth can-i --list` as the ServiceAccount: no wildcard, no Secret outside its namespace,
    no kind beyond the ones the operator touches (single verbs: tests/integration/test_helm_install.py)."""
    user = f"system:serviceaccount:{release['namespace']}:{release['sa']}"
    # What every authenticated identity gets from the default ClusterRoles (system:basic-user, discovery).
    everyone = {"selfsubjectreviews.authentication.k8s.io", "selfsubjectaccessreviews.authorization.k8s.io",
                "selfsubjectrulesreviews.authorization.k8s.io", ""}
    operator_kinds = {
        "computecenters.suanli.io", "computejobs.suanli.io", "computecenters.suanli.io/status",
        "computejobs.suanli.io/status", "nodes", "pods", "jobs.batch", "events", "events.events.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
        "computequeues.suanli.io", "computequeues.suanli.io/status", "namespaces",  # tenants (ComputeQueues)
        "services",  # the headless Service a gang's replicas find each other through
        # DRA pools: the devices nodes publish, the classes selecting them, the claims holding them, and
        # the ResourceClaimTemplate a DRA pool's Job claims its devices from
        "resourceslices.resource.k8s.io", "deviceclasses.resource.k8s.io", "resourceclaims.resource.k8s.io",
        "resourceclaimtemplates.resource.k8s.io",
    }
    for ns, own in (("default", set()), (release["namespace"], {"secrets", "leases.coordination.k8s.io"})):
        rows = helpers.can_i_list(kube.kubeconfig, ns, user)
        assert rows, "kubectl auth can-i --list printed nothing"
        kinds = {r["resources"] for r in rows}
        assert {"computejobs.suanli.io", "jobs.batch"} <= kinds, rows
        assert kinds - everyone - operator_kinds - own == set(), f"in {ns}: unexpected grants {kinds - everyone - operator_kinds - own}"
        for row in rows:
            assert "*" not in row["verbs"] and "*" not in row["resources"], f"wildcard grant in {ns}: {row}"
            if row["resources"] in operator_kinds:
                assert not {"update", "deletecollection", "escalate", "bind", "impersonate"} & set(row["verbs"]), row
                if row["resources"].startswith("compute"):
                    assert not {"create", "delete"} & set(row["verbs"]), row
        assert "secrets" not in kinds or ns == release["namespace"], f"Secrets readable in {ns}"
