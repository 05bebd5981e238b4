"""The Helm chart, rendered by the real Helm engine for a matrix of values, checked for invariants.

What must hold for every values set: a hardened pod (non-root, read-only root, no capabilities,
RuntimeDefault seccomp, requests and limits, probes on /healthz), least-privilege RBAC (no
wildcards, Secrets only in the release namespace, no `update` of our kinds, everything the
operator needs granted), a config that `Settings` accepts, CRDs identical to crds/.
The API-server dry run of the same objects is in tests/integration/test_helm_install.py.
With mode=member the chart renders only the hub's identity in a member cluster, the objects
`suanli join` creates (suanli.members.access), and no hub object.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.tools import helmkit  # noqa: E402

from suanli import settings  # noqa: E402
from suanli.members import access  # noqa: E402

pytestmark = pytest.mark.timeout(1800)  # the first test may build helm (minutes)

NS = "suanli-system"

# name -> (values, expectations)
MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "ha-off": {"replicaCount": 1},
    "monitoring-on": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
        "prometheusRule": {"enabled": True, "alertLabels": {"team": "platform"}},
    },
    "networkpolicy-off": {"networkPolicy": {"enabled": False}, "admissionPolicy": {"enabled": False}},
    "measured-energy": {
        "config": {"measured_energy": {"prometheus_url": "http://prometheus.monitoring:9090"}},
        "networkPolicy": {
            "extraEgress": [
                {
                    "to": [
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
                    ],
                    "ports": [{"port": 9090, "protocol": "TCP"}],
                }
            ]
        },
    },
    "custom-resources": {
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
    },
    "custom-config": {
        "config": {"scoring": {"carbon_share": 0.9, "candidates_shown": 3}, "deferral": {"enabled": False}},
        "extraArgs": ["--verbose"],
        "logFormat": "json",
    },
    "no-crd-watch": {
        "leaderElection": {"leaseName": "suanli-prod-leader"},
        "rbac": {"watchCustomResourceDefinitions": False},
    },
    "existing-sa-digest": {
        "serviceAccount": {"create": False, "name": "platform-suanli"},
        "image": {"digest": "sha256:" + "a" * 64},
        "fullnameOverride": "scheduler",
    },
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("values")
    return {name: helmkit.render(values, namespace=NS, tmp_dir=tmp) for name, values in MATRIX.items()}


def _merged(name: str) -> dict[str, Any]:
    """values.yaml with the matrix entry merged in (what Helm used)."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in over.items()}}
        return over

    return merge(yaml.safe_load((helmkit.CHART / "values.yaml").read_text()), MATRIX[name])


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return helmkit.one(objects, "Deployment")


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _deployment(objects)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return containers[0]


# --- the pod ----------------------------------------------------------------------


@pytest.mark.parametrize("name", MATRIX)
def test_pod_is_hardened(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    pod = _deployment(rendered[name])["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = _container(rendered[name])["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc.get("privileged") is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    # A writable /tmp is the only writable path.
    mounts = {m["mountPath"]: m for m in _container(rendered[name])["volumeMounts"]}
    assert mounts["/etc/suanli"]["readOnly"] is True and "/tmp" in mounts


@pytest.mark.parametrize("name", MATRIX)
def test_resources_and_probes(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    container = _container(rendered[name])
    values = _merged(name)
    assert container["resources"] == values["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{kind} must set cpu and memory"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": values["ports"]["metrics"], "health": values["ports"]["health"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container[probe]["periodSeconds"] > 0
    args = container["args"]
    assert args[0] == "run"
    assert f"--health-port={values['ports']['health']}" in args
    assert f"--metrics-port={values['ports']['metrics']}" in args
    assert "--config=/etc/suanli/config.yaml" in args
    assert f"--namespace={NS}" in args
    assert f"--log-format={values['logFormat']}" in args
    assert not [a for a in args if a.startswith("--peering")], "kopf peering is gone: the Lease is the one leader election"
    assert args[len(args) - len(values["extraArgs"]) :] == values["extraArgs"]


@pytest.mark.parametrize("name", MATRIX)
def test_image_reference(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    image = _container(rendered[name])["image"]
    values = _merged(name)
    if values["image"]["digest"]:
        assert image == f"{values['image']['repository']}@{values['image']['digest']}"
    else:
        chart = yaml.safe_load((helmkit.CHART / "Chart.yaml").read_text())
        assert image == f"{values['image']['repository']}:{chart['appVersion']}"


@pytest.mark.parametrize("name", MATRIX)
def test_high_availability(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    objects = rendered[name]
    replicas = _merged(name)["replicaCount"]
    deployment = _deployment(objects)
    assert deployment["spec"]["replicas"] == replicas
    pdbs = helmkit.by_kind(objects, "PodDisruptionBudget")
    if replicas > 1:
        assert len(pdbs) == 1 and pdbs[0]["spec"]["minAvailable"] == 1
        assert pdbs[0]["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 1
    else:
        assert pdbs == [], "a PDB with minAvailable 1 on one replica would block every node drain"
    env = {e["name"]: e for e in _container(objects)["env"]}
    assert env["SUANLI_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["SUANLI_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


# --- leader election: the Lease, and nothing else ---------------------------------------


@pytest.mark.parametrize("name", MATRIX)
def test_only_lease_leader_election_is_rendered(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    """kopf peering paused only kopf's handlers while every replica's scheduler kept binding; it is gone.
    helmkit.render declares kopf.dev/v1/ClusterKopfPeering served, so nothing hides behind a capability check."""
    objects = rendered[name]
    assert not [o for o in objects if o["kind"] == "ClusterKopfPeering" or o["apiVersion"].startswith("kopf.dev/")]
    assert "peering" not in yaml.safe_dump_all(objects).lower()
    env = {e["name"]: e.get("value") for e in _container(objects)["env"]}
    assert env["SUANLI_LEADER_ELECTION"] == "lease"
    assert env["SUANLI_LEASE_NAME"] == _merged(name)["leaderElection"]["leaseName"]


@pytest.mark.parametrize(
    ("leader_election", "path"),
    [({"mode": "kopfPeering"}, "/leaderElection/mode"), ({"peeringName": "suanli"}, "/leaderElection")],
    ids=["kopfPeering-mode", "peeringName"],
)
def test_the_removed_kopf_peering_values_are_refused(leader_election: dict[str, str], path: str, tmp_path: Path) -> None:
    """An upgrade that still sets them fails at `helm install/upgrade` with the bad value's path, not
    silently with two binding replicas."""
    proc = helmkit.helm_run(helmkit.template_cmd({"leaderElection": leader_election}, tmp_dir=tmp_path))
    assert proc.returncode != 0, "the chart accepted a removed kopf peering value"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert path in proc.stderr, proc.stderr
    expected = "lease" if "mode" in leader_election else "peeringName"
    assert expected in proc.stderr, proc.stderr


def test_no_peering_template_is_left() -> None:
    leftovers = [p.name for p in (helmkit.CHART / "templates").iterdir() if "peering" in p.read_text().lower()]
    assert leftovers == []


# --- RBAC ---------------------------------------------------------------------------

WILDCARD = "*"


def _rules(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [rule for role in helmkit.by_kind(objects, kind) for rule in role["rules"]]


def _allows(
    rules: list[dict[str, Any]], group: str, resource: str, verb: str, name: str | None = None
) -> bool:
    """RBAC's own matching (no wildcards exist, so plain membership)."""
    for rule in rules:
        if (
            group in rule.get("apiGroups", [])
            and resource in rule.get("resources", [])
            and verb in rule["verbs"]
        ):
            names = rule.get("resourceNames")
            if not names or (name is not None and name in names):
                return True
    return False


# (group, resource, verb) the operator needs everywhere; from the brief and kopf's own needs.
CLUSTER_NEEDS = [
    *[
        ("suanli.io", r, v)
        for r in ("computecenters", "computejobs")
        for v in ("get", "list", "watch", "patch")
    ],
    *[("suanli.io", r, v) for r in ("computecenters/status", "computejobs/status") for v in ("get", "patch")],
    *[("", r, v) for r in ("nodes", "pods") for v in ("get", "list", "watch")],
    ("", "pods", "patch"),  # pin a gated replica to its node and lift the gate (kube/gates.py)
    *[("batch", "jobs", v) for v in ("get", "list", "watch", "create", "patch", "delete")],
    ("", "events", "create"),
    ("events.k8s.io", "events", "create"),
]
NEVER_CLUSTER = [
    ("", "secrets", "get"),
    ("", "secrets", "list"),
    ("", "configmaps", "get"),
    ("apps", "deployments", "create"),
    ("", "pods", "create"),
    ("", "pods", "delete"),
    ("suanli.io", "computejobs", "update"),
    ("suanli.io", "computecenters", "update"),
    ("suanli.io", "computejobs", "create"),
    ("suanli.io", "computejobs", "delete"),
    ("suanli.io", "computecenters", "delete"),
    ("suanli.io", "computejobs/status", "update"),
    ("rbac.authorization.k8s.io", "clusterroles", "bind"),
    ("rbac.authorization.k8s.io", "roles", "escalate"),
    ("", "serviceaccounts", "impersonate"),
    ("", "serviceaccounts/token", "create"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "create"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "patch"),
]


@pytest.mark.parametrize("name", MATRIX)
def test_rbac_has_no_wildcards(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    for kind in ("ClusterRole", "Role"):
        for rule in _rules(rendered[name], kind):
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert WILDCARD not in rule.get(field, []), f"{kind} rule {rule} has a wildcard in {field}"
                assert not any(WILDCARD in item for item in rule.get(field, [])), (
                    f"{kind} rule {rule}: {field}"
                )


@pytest.mark.parametrize("name", MATRIX)
def test_rbac_grants_what_the_operator_needs_and_nothing_more(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    objects = rendered[name]
    values = _merged(name)
    cluster = _rules(objects, "ClusterRole")
    role = helmkit.one(objects, "Role")
    assert role["metadata"]["namespace"] == NS
    for need in CLUSTER_NEEDS:
        assert _allows(cluster, *need), f"ClusterRole lacks {need}"
    for forbidden in NEVER_CLUSTER:
        assert not _allows(cluster, *forbidden), f"ClusterRole must not grant {forbidden}"
        assert not _allows(role["rules"], *forbidden) or forbidden[1] == "secrets", (
            f"Role must not grant {forbidden}"
        )
    assert _allows(role["rules"], "", "secrets", "get"), (
        "member-cluster kubeconfigs are read from the release namespace"
    )
    for verb in ("list", "watch", "create", "delete"):  # one Secret read by name at a time
        assert not _allows(role["rules"], "", "secrets", verb)
    lease = values["leaderElection"]["leaseName"]
    assert values["leaderElection"]["mode"] == "lease"
    assert _allows(role["rules"], "coordination.k8s.io", "leases", "create")
    for verb in ("get", "update", "patch"):
        assert _allows(role["rules"], "coordination.k8s.io", "leases", verb, lease)
        assert not _allows(role["rules"], "coordination.k8s.io", "leases", verb, "someone-elses-lease")
    for rules in (cluster, role["rules"]):
        assert not any("kopf.dev" in rule.get("apiGroups", []) for rule in rules), "kopf peering is gone"
    watches_crds = _allows(cluster, "apiextensions.k8s.io", "customresourcedefinitions", "watch")
    assert watches_crds == values["rbac"]["watchCustomResourceDefinitions"]


@pytest.mark.parametrize("name", MATRIX)
def test_bindings_point_at_the_service_account(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    objects = rendered[name]
    sa_name = _deployment(objects)["spec"]["template"]["spec"]["serviceAccountName"]
    sas = helmkit.by_kind(objects, "ServiceAccount")
    if _merged(name)["serviceAccount"]["create"]:
        assert [sa["metadata"]["name"] for sa in sas] == [sa_name]
    else:
        assert sas == [] and sa_name == "platform-suanli"
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = helmkit.one(objects, kind)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": NS}]
        assert binding["roleRef"]["kind"] == role_kind
        assert binding["roleRef"]["name"] == helmkit.one(objects, role_kind)["metadata"]["name"]


def test_admission_policy_guards_spec_for_the_operator_only(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["defaults"]
    policy = helmkit.one(objects, "ValidatingAdmissionPolicy")
    sa_name = _deployment(objects)["spec"]["template"]["spec"]["serviceAccountName"]
    assert policy["spec"]["matchConditions"][0]["expression"] == (
        f'request.userInfo.username == "system:serviceaccount:{NS}:{sa_name}"'
    )
    assert [v["expression"] for v in policy["spec"]["validations"]] == ["object.spec == oldObject.spec"]
    binding = helmkit.one(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert helmkit.by_kind(rendered["networkpolicy-off"], "ValidatingAdmissionPolicy") == []


# --- settings, services, monitoring -------------------------------------------------


@pytest.mark.parametrize("name", MATRIX)
def test_config_map_is_a_valid_settings_tree(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    config_maps = [cm for cm in helmkit.by_kind(rendered[name], "ConfigMap") if "config.yaml" in cm["data"]]
    assert len(config_maps) == 1
    tree = yaml.safe_load(config_maps[0]["data"]["config.yaml"])
    assert tree == _merged(name)["config"]
    parsed = settings.Settings.model_validate(tree)
    if name == "custom-config":
        assert parsed.scoring.carbon_share == 0.9 and parsed.deferral.enabled is False
    volumes = _deployment(rendered[name])["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": config_maps[0]["metadata"]["name"]}} in volumes


def test_default_config_is_the_settings_defaults() -> None:
    """The chart must not silently change the operator's defaults: every value equals the model's."""
    chart_config = yaml.safe_load((helmkit.CHART / "values.yaml").read_text())["config"]
    defaults = settings.Settings().model_dump(mode="json")

    def check(chart: dict[str, Any], model: dict[str, Any], path: str) -> None:
        for key, value in chart.items():
            assert key in model, f"values.yaml config.{path}{key} is not a Settings field"
            if isinstance(value, dict):
                check(value, model[key], f"{path}{key}.")
            else:
                assert value == model[key], (
                    f"values.yaml config.{path}{key}={value!r}, Settings default {model[key]!r}"
                )

    check(chart_config, defaults, "")


def test_config_change_restarts_the_pods(tmp_path: Path) -> None:
    def checksum(values: dict[str, Any]) -> str:
        pod = _deployment(helmkit.render(values, tmp_dir=tmp_path))["spec"]["template"]
        return str(pod["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) != checksum({"config": {"deferral": {"enabled": False}}})


@pytest.mark.parametrize("name", MATRIX)
def test_metrics_service_and_network_policy_select_the_pods(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    objects = rendered[name]
    values = _merged(name)
    pod_labels = _deployment(objects)["spec"]["template"]["metadata"]["labels"]
    service = helmkit.one(objects, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": values["ports"]["metrics"], "targetPort": "metrics", "protocol": "TCP"}
    ]
    policies = helmkit.by_kind(objects, "NetworkPolicy")
    if not values["networkPolicy"]["enabled"]:
        assert policies == []
        return
    (policy,) = policies
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    ingress_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ingress_ports == {"metrics", "health"}
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    extra_ports = {p["port"] for rule in values["networkPolicy"]["extraEgress"] for p in rule["ports"]}
    assert egress_ports == {443, 6443, 53} | extra_ports


def test_monitoring_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert helmkit.by_kind(rendered["defaults"], "ServiceMonitor") == []
    assert helmkit.by_kind(rendered["defaults"], "PrometheusRule") == []
    objects = rendered["monitoring-on"]
    monitor = helmkit.one(objects, "ServiceMonitor")
    service = helmkit.one(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    rules = [
        rule for group in helmkit.one(objects, "PrometheusRule")["spec"]["groups"] for rule in group["rules"]
    ]
    assert {r["alert"] for r in rules} == {
        "SuanliOperatorDown",
        "SuanliJobQueuedTooLong",
        "SuanliCenterNearEnergyBudget",
        "SuanliQueueNearBudget",
        "SuanliAPIWriteErrors",
    }
    for rule in rules:
        assert rule["labels"]["team"] == "platform"
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        assert rule["annotations"]["runbook_url"].endswith("#" + rule["alert"])


# Metrics the chart uses that suanli.metrics does not export yet (asked of the operator); the
# alert that uses it cannot fire until it is. Remove a name here once suanli.metrics has it.
PENDING_METRICS: set[str] = set()


def _exported_metrics() -> set[str]:
    try:
        from suanli import metrics
    except ImportError:  # the operator's metrics module not there yet: the names of the brief
        return {
            "suanli_jobs",
            "suanli_job_bind_latency_seconds_bucket",
            "suanli_scheduling_cycle_seconds_bucket",
            "suanli_pool_accelerators",
            "suanli_queue_length",
            "suanli_api_write_errors_total",
            "suanli_center_energy_kwh",
        }
    names: set[str] = set()
    for metric in metrics.ALL:
        kind = type(metric).__name__
        base = metric._name
        if kind == "Counter":
            names.add(base + "_total")
        elif kind == "Histogram":
            names.update({base + "_bucket", base + "_sum", base + "_count"})
        else:
            names.add(base)
    return names


def _metric_names(exprs: list[str]) -> set[str]:
    return set(re.findall(r"\bsuanli_[a-z_]+", " ".join(exprs)))


def test_grafana_dashboard_is_valid_json_using_exported_metrics(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    (cm,) = [
        cm for cm in helmkit.by_kind(rendered["defaults"], "ConfigMap") if "suanli.json" in cm.get("data", {})
    ]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["suanli.json"])
    assert dashboard["uid"] == "suanli-overview"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    unknown = _metric_names(exprs) - _exported_metrics() - PENDING_METRICS
    assert not unknown, f"the dashboard uses metrics suanli.metrics does not export: {sorted(unknown)}"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_alerts_use_exported_metrics(rendered: dict[str, list[dict[str, Any]]]) -> None:
    rules = [
        r
        for g in helmkit.one(rendered["monitoring-on"], "PrometheusRule")["spec"]["groups"]
        for r in g["rules"]
    ]
    unknown = _metric_names([r["expr"] for r in rules]) - _exported_metrics() - PENDING_METRICS
    assert not unknown, f"alerts use metrics suanli.metrics does not export: {sorted(unknown)}"


# --- CRDs and generated files ---------------------------------------------------------


def test_chart_crds_are_the_generated_crds(rendered: dict[str, list[dict[str, Any]]]) -> None:
    top = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    chart = sorted(p.name for p in (helmkit.CHART / "crds").glob("*.yaml"))
    assert top, "crds/ has no generated CRDs"
    assert chart == top, "helm/suanli/crds/ must hold exactly crds/*.yaml: run `make crds`"
    for name in top:
        assert (helmkit.CHART / "crds" / name).read_text() == (ROOT / "crds" / name).read_text(), (
            f"helm/suanli/crds/{name} differs from crds/{name}: run `make crds`"
        )
    rendered_crds = {
        c["metadata"]["name"] for c in helmkit.by_kind(rendered["defaults"], "CustomResourceDefinition")
    }
    assert rendered_crds == {"computecenters.suanli.io", "computejobs.suanli.io", "computequeues.suanli.io"}


def test_generated_chart_files_are_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "helm" / "gen_chart.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"stale generated chart files:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("name", MATRIX)
def test_every_object_is_labelled_and_namespaced(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for obj in rendered[name]:
        if obj["kind"] == "CustomResourceDefinition":
            continue
        meta = obj["metadata"]
        assert meta["labels"]["app.kubernetes.io/instance"] == "suanli", obj["kind"]
        assert meta["labels"]["app.kubernetes.io/part-of"] == "suanli", obj["kind"]
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in meta, f"{obj['kind']} is cluster-scoped"
        else:
            assert meta["namespace"] == NS, f"{obj['kind']} {meta['name']}"
        assert len(meta["name"]) <= 63


def test_helm_lint_passes_for_the_matrix(tmp_path: Path) -> None:
    for name, values in MATRIX.items():
        proc = helmkit.helm_run(
            [
                "lint",
                "--strict",
                str(helmkit.CHART),
                "--kube-version",
                helmkit.KUBE_VERSION,
                *helmkit.values_args(values, tmp_path),
            ]
        )
        assert proc.returncode == 0, f"helm lint --strict failed for {name}:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("name", MATRIX)
def test_container_args_parse_with_the_real_cli(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    """The chart and `suanli run` agree on flags: a renamed flag would crash-loop every install."""
    from suanli import cli

    parser = cli.build_parser()
    args = [a for a in _container(rendered[name])["args"] if a not in _merged(name)["extraArgs"]]
    parsed = parser.parse_args(args)
    values = _merged(name)
    assert parsed.command == "run"
    assert parsed.metrics_port == values["ports"]["metrics"]
    assert parsed.health_port == values["ports"]["health"]
    assert parsed.config == "/etc/suanli/config.yaml"
    assert parsed.namespace == NS
    assert parsed.log_format == values["logFormat"], "logFormat reaches `suanli run --log-format`"
    assert parsed.metrics_address == "0.0.0.0" and parsed.health_address == "0.0.0.0", (
        "in a pod, /metrics and /healthz must listen on the pod IP for Prometheus and the kubelet"
    )
    env = {e["name"]: e.get("value") for e in _container(rendered[name])["env"]}
    assert env["SUANLI_LEADER_ELECTION"] in cli.LEADER_ELECTION_MODES
    assert env["SUANLI_LEASE_NAME"] == values["leaderElection"]["leaseName"]


# --- mode=member: the hub's identity in a member cluster ------------------------------------

MEMBER_NS = access.NAMESPACE
MEMBER_RELEASE = "suanli-member"  # the README's command: ClusterRole and binding named like join's

# name -> (values, release, namespace)
MEMBER_MATRIX: dict[str, tuple[dict[str, Any], str, str]] = {
    "member": ({"mode": "member"}, MEMBER_RELEASE, MEMBER_NS),
    "member-no-namespaces": ({"mode": "member", "member": {"createNamespaces": False}}, MEMBER_RELEASE, MEMBER_NS),
    "member-custom-names": (
        {"mode": "member", "member": {"serviceAccountName": "hub-a"}, "fullnameOverride": "hub-a-access"},
        "edge",
        "platform",
    ),
    # Every optional hub object switched on, and hub values that would fail in mode=hub
    # (serviceAccount.create=false without a name): in mode=member no hub template is evaluated.
    "member-with-hub-values": (
        {
            "mode": "member",
            **MATRIX["monitoring-on"],
            "replicaCount": 3,
            "serviceAccount": {"create": False},
            "grafanaDashboard": {"enabled": True},
            "networkPolicy": {"enabled": True},
            "admissionPolicy": {"enabled": True},
        },
        MEMBER_RELEASE,
        MEMBER_NS,
    ),
}


@pytest.fixture(scope="module")
def member_rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """The objects of each member case, the CRDs left out (Helm installs crds/ in every mode; the
    README says --skip-crds)."""
    tmp = tmp_path_factory.mktemp("member-values")
    out = {}
    for name, (values, release, namespace) in MEMBER_MATRIX.items():
        objects = helmkit.render(values, release=release, namespace=namespace, tmp_dir=tmp)
        out[name] = [o for o in objects if o["kind"] != "CustomResourceDefinition"]
    return out


def _member_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((helmkit.CHART / "values.yaml").read_text())["member"] | MEMBER_MATRIX[name][0].get(
        "member", {}
    )


def _member_names(name: str) -> tuple[str, str]:
    """(ServiceAccount, ClusterRole and binding) names the case must render."""
    values, release, _ = MEMBER_MATRIX[name]
    fullname = values.get("fullnameOverride") or (release if "suanli" in release else f"{release}-suanli")
    return _member_values(name)["serviceAccountName"], fullname


def _named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, rendered {[(o['kind'], o['metadata']['name']) for o in objects]}"
    return found[0]


@pytest.mark.parametrize("name", MEMBER_MATRIX)
def test_member_mode_renders_exactly_the_hubs_identity(
    member_rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    sa, fullname = _member_names(name)
    rendered = sorted((o["kind"], o["metadata"]["name"]) for o in member_rendered[name])
    assert rendered == sorted(
        [("ServiceAccount", sa), ("Secret", f"{sa}-token"), ("ClusterRole", fullname), ("ClusterRoleBinding", fullname)]
    ), "mode=member must render the member objects and no hub object (Deployment, ConfigMap, Service, RBAC, ...)"


@pytest.mark.parametrize("name", MEMBER_MATRIX)
def test_member_cluster_role_grants_exactly_access_rules(
    member_rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    """The rules come from files/member-rules.yaml, generated from suanli.members.access: the one source."""
    objects = member_rendered[name]
    create_namespaces = _member_values(name)["createNamespaces"]
    role = _named(objects, "ClusterRole", _member_names(name)[1])
    assert role["rules"] == access.rules(create_namespaces)
    assert _allows(role["rules"], "", "namespaces", "create") is create_namespaces
    for forbidden in [*NEVER_CLUSTER, ("", "secrets", "watch"), ("", "configmaps", "list")]:
        assert not _allows(role["rules"], *forbidden), f"member ClusterRole must not grant {forbidden}"
    for rule in role["rules"]:
        assert not any(WILDCARD in item for field in ("apiGroups", "resources", "verbs") for item in rule[field])


@pytest.mark.parametrize("name", MEMBER_MATRIX)
def test_member_objects_are_bound_labelled_and_namespaced(
    member_rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    objects = member_rendered[name]
    _, release, namespace = MEMBER_MATRIX[name]
    sa, fullname = _member_names(name)
    binding = _named(objects, "ClusterRoleBinding", fullname)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": fullname}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]
    secret = _named(objects, "Secret", f"{sa}-token")
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": sa}
    assert "data" not in secret and "stringData" not in secret, "the token controller fills the token"
    for obj in objects:
        meta = obj["metadata"]
        assert meta["labels"]["app.kubernetes.io/instance"] == release, obj["kind"]
        assert meta["labels"]["app.kubernetes.io/part-of"] == "suanli", obj["kind"]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", obj["kind"]
        assert meta["labels"]["app.kubernetes.io/component"] == access.MANAGED["app.kubernetes.io/component"]
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            assert "namespace" not in meta, f"{obj['kind']} is cluster-scoped"
        else:
            assert meta["namespace"] == namespace, f"{obj['kind']} {meta['name']}"


@pytest.mark.parametrize("create_namespaces", [True, False], ids=["namespaces", "no-namespaces"])
def test_member_mode_creates_what_suanli_join_creates(
    member_rendered: dict[str, list[dict[str, Any]]], create_namespaces: bool
) -> None:
    """`helm install suanli-member helm/suanli -n suanli-member --set mode=member` and `suanli join`
    give the hub the same identity: same kinds, names, namespaces, rules, binding and token Secret.
    Only the Namespace (Helm's release namespace) and the managed-by label differ."""
    objects = member_rendered["member" if create_namespaces else "member-no-namespaces"]
    expected = [o for o in access.member_objects(create_namespaces) if o["kind"] != "Namespace"]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in expected
    )
    for want in expected:
        got = _named(objects, want["kind"], want["metadata"]["name"])
        assert got["apiVersion"] == want["apiVersion"]
        assert got["metadata"].get("namespace") == want["metadata"].get("namespace")
        assert got["metadata"].get("annotations") == want["metadata"].get("annotations")
        for field in ("type", "rules", "roleRef", "subjects"):
            assert got.get(field) == want.get(field), f"{want['kind']} {field}"


@pytest.mark.parametrize("name", MATRIX)
def test_hub_mode_renders_no_member_objects(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    objects = rendered[name]
    assert _merged(name)["mode"] == "hub"
    assert not [o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "member-access"]
    assert not [o for o in objects if o.get("type") == "kubernetes.io/service-account-token"]
    assert not [o for o in helmkit.by_kind(objects, "ServiceAccount") if o["metadata"]["name"] == access.SERVICE_ACCOUNT]
    for role in helmkit.by_kind(objects, "ClusterRole"):
        assert role["rules"] not in (access.rules(True), access.rules(False))
    _deployment(objects)  # and the operator is there


@pytest.mark.parametrize(
    ("values", "path", "named"),
    [
        ({"mode": "spoke"}, "/mode", "member"),
        ({"mode": "Member"}, "/mode", "member"),
        ({"mode": "member", "member": {"createNamespace": False}}, "/member", "createNamespace"),
        ({"mode": "member", "member": {"createNamespaces": "yes"}}, "/member/createNamespaces", "boolean"),
        ({"mode": "member", "member": {"serviceAccountName": "Hub_A"}}, "/member/serviceAccountName", "Hub_A"),
    ],
    ids=["unknown-mode", "mode-case", "member-typo", "member-not-bool", "member-bad-name"],
)
def test_invalid_mode_values_are_refused(values: dict[str, Any], path: str, named: str, tmp_path: Path) -> None:
    proc = helmkit.helm_run(helmkit.template_cmd(values, tmp_dir=tmp_path))
    assert proc.returncode != 0, f"the chart accepted {values}"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert path in proc.stderr and named in proc.stderr, proc.stderr


def test_member_mode_passes_helm_lint(tmp_path: Path) -> None:
    for name, (values, _, namespace) in MEMBER_MATRIX.items():
        proc = helmkit.helm_run(
            [
                "lint",
                "--strict",
                str(helmkit.CHART),
                "--namespace",
                namespace,
                "--kube-version",
                helmkit.KUBE_VERSION,
                *helmkit.values_args(values, tmp_path),
            ]
        )
        assert proc.returncode == 0, f"helm lint --strict failed for {name}:\n{proc.stdout}\n{proc.stderr}"


def _notes(values: dict[str, Any], tmp_path: Path, *, release: str, namespace: str) -> str:
    """templates/NOTES.txt as `helm install` prints it. `helm template` skips NOTES and `helm install
    --dry-run` needs a cluster, so a copy of the chart renders it through `tpl` as a plain value."""
    chart = tmp_path / "chart"
    shutil.copytree(helmkit.CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "NOTES.txt")
    (chart / "templates" / "notes.yaml").write_text('notes: {{ tpl (.Files.Get "NOTES.txt") . | toJson }}\n')
    cmd = helmkit.template_cmd(values, release=release, namespace=namespace, tmp_dir=tmp_path)
    cmd[cmd.index(str(helmkit.CHART))] = str(chart)
    proc = helmkit.helm_run([*cmd, "--show-only", "templates/notes.yaml"])
    assert proc.returncode == 0, proc.stderr
    return str(yaml.safe_load(proc.stdout)["notes"])


def test_member_notes_say_how_to_give_the_hub_its_kubeconfig(tmp_path: Path) -> None:
    notes = _notes({"mode": "member"}, tmp_path, release=MEMBER_RELEASE, namespace=MEMBER_NS)
    token_secret = f"{MEMBER_NS}/{access.TOKEN_SECRET}"
    assert f"ServiceAccount {MEMBER_NS}/{access.SERVICE_ACCOUNT}" in notes
    assert f"Secret {token_secret}" in notes
    assert f"get secret {access.TOKEN_SECRET} -o jsonpath='{{.data.token}}'" in notes
    assert f"get secret {access.TOKEN_SECRET} -o jsonpath='{{.data.ca\\.crt}}'" in notes
    assert "--embed-certs=true" in notes, "the hub accepts only an inline CA (credentials.parse)"
    assert f"create secret generic {access.secret_name('CENTER')} --from-file=kubeconfig=" in notes
    (patch,) = re.findall(r"patch computecenter CENTER --type merge -p '([^']+)'", notes)
    assert json.loads(patch) == access.center_patch("CENTER", "HUB_NS")
    assert "suanli join CENTER --member-kubeconfig PATH" in notes
    assert "Check the operator" not in notes
    no_ns = _notes(
        {"mode": "member", "member": {"createNamespaces": False}}, tmp_path / "no-ns", release=MEMBER_RELEASE,
        namespace=MEMBER_NS,
    )
    assert "config.members.create_namespaces=false" in no_ns


def test_hub_notes_still_guide_the_operator_and_point_at_member_mode(tmp_path: Path) -> None:
    notes = _notes({}, tmp_path, release="suanli", namespace=NS)
    assert "Check the operator" in notes and "logs deploy/suanli" in notes
    assert "mode=member" in notes and "token" not in notes
