"""What a hub may do in a member cluster, and the objects that grant it. Pure.

One source for `suanli join` (which creates these objects in the member and writes the kubeconfig
Secret on the hub) and for the chart's member mode (`helm install suanli-member helm/suanli --set
mode=member`, whose rules file `helm/gen_chart.py` writes from `RULES`).

Least privilege, for what dispatch needs and nothing else: create, read and delete the batch Jobs
it runs (in any namespace: a job runs in the namespace of its ComputeJob's name); read and patch
pods (capacity, status back, and the patch that pins a gated replica to its node and lifts the
gate); read nodes (the pools' capacity); create, read and delete the headless Services that gangs
rendezvous through; and, when the hub may create namespaces (`members.create_namespaces`), create
namespaces. No Secrets, no ConfigMaps, no wildcard, no escalation.
"""

from __future__ import annotations

import base64
from typing import Any

import yaml

NAMESPACE = "suanli-member"  # where the hub's identity lives in the member
SERVICE_ACCOUNT = "suanli-hub"
CLUSTER_ROLE = "suanli-member"
TOKEN_SECRET = "suanli-hub-token"
MANAGED = {"app.kubernetes.io/managed-by": "suanli", "app.kubernetes.io/component": "member-access"}

RULES: list[dict[str, Any]] = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create", "delete"]},
    # DRA pools: the devices the nodes publish, the classes that select them, the claims that hold them;
    # and the ResourceClaimTemplate a DRA pool's Job claims its devices from.
    {"apiGroups": ["resource.k8s.io"], "resources": ["resourceslices", "deviceclasses", "resourceclaims"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaimtemplates"], "verbs": ["get", "create", "delete"]},
]
NAMESPACE_RULE: dict[str, Any] = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create"]}


def rules(create_namespaces: bool = True) -> list[dict[str, Any]]:
    return [*RULES, NAMESPACE_RULE] if create_namespaces else list(RULES)


def member_objects(create_namespaces: bool = True, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The objects `suanli join` creates in the member, in order: its namespace, the hub's
    ServiceAccount, the ClusterRole and its binding, and a Secret the token controller fills with a
    token for that ServiceAccount (no expiry: rotate it by deleting the Secret and joining again)."""
    meta = {"labels": dict(MANAGED)}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, **meta}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace, **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": CLUSTER_ROLE, **meta}, "rules": rules(create_namespaces)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": CLUSTER_ROLE, **meta},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}]},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
         "metadata": {"name": TOKEN_SECRET, "namespace": namespace, **meta,
                      "annotations": {"kubernetes.io/service-account.name": SERVICE_ACCOUNT}}},
    ]


def kubeconfig(center: str, server: str, ca_pem: bytes, token: str) -> str:
    """The kubeconfig the hub uses for member `center`: inline CA and token, nothing else
    (exactly what `credentials.parse` accepts)."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": center,
        "clusters": [{"name": center, "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": f"{SERVICE_ACCOUNT}@{center}", "user": {"token": token}}],
        "contexts": [{"name": center, "context": {"cluster": center, "user": f"{SERVICE_ACCOUNT}@{center}"}}],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def hub_secret(center: str, namespace: str, text: str, key: str = "kubeconfig") -> dict[str, Any]:
    """The Secret on the hub that the center's `spec.cluster.kubeconfigSecretRef` names."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": secret_name(center), "namespace": namespace,
                     "labels": {**MANAGED, "suanli.io/center": center}},
        "stringData": {key: text},
    }


def secret_name(center: str) -> str:
    return f"{center}-kubeconfig"[:253]


def center_patch(center: str, namespace: str, key: str = "kubeconfig") -> dict[str, Any]:
    """The merge patch that points the ComputeCenter at its kubeconfig Secret."""
    return {"spec": {"cluster": {"kubeconfigSecretRef": {"namespace": namespace, "name": secret_name(center), "key": key}}}}
