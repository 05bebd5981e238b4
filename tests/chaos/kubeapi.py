"""The chaos suite's view of the cluster: API clients that read plain JSON dicts, every call bounded.

Snapshots are what the invariant checks read: LISTs of nodes, ComputeCenters, ComputeJobs (of the
run's namespace), Suanli's batch Jobs (label ``suanli.io/job``) and live pods (all namespaces, so a
pool's allocation counts every pod on its nodes), taken in that order (a ComputeJob is read before
its batch Job, so a Job seen finished was finished after its ComputeJob's phase was read).
Decoding the raw JSON ourselves keeps them plain dicts (what the pure checks take) and is far
cheaper than the client's models.
"""

from __future__ import annotations

import json
import time
from typing import Any

GROUP, VERSION = "suanli.io", "v1alpha1"
REQUEST_TIMEOUT_S = 10.0
LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"


class Api:
    """CoreV1, BatchV1 and custom-objects clients of one kubeconfig (one ApiClient of its own)."""

    def __init__(self, kubeconfig: str):
        from kubernetes import client, config

        self.api_client = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api_client)
        self.batch = client.BatchV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)

    @staticmethod
    def _items(resp: Any) -> list[dict[str, Any]]:
        return list(json.loads(resp.data).get("items") or [])

    def list_nodes(self) -> list[dict[str, Any]]:
        return self._items(self.core.list_node(_preload_content=False, _request_timeout=REQUEST_TIMEOUT_S))

    def list_centers(self) -> list[dict[str, Any]]:
        return self._items(self.custom.list_cluster_custom_object(
            GROUP, VERSION, "computecenters", _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S))

    def list_computejobs(self, namespace: str) -> list[dict[str, Any]]:
        return self._items(self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "computejobs", _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S))

    def list_jobs(self, namespace: str) -> list[dict[str, Any]]:
        return self._items(self.batch.list_namespaced_job(
            namespace, label_selector="suanli.io/job", _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S))

    def list_live_pods(self) -> list[dict[str, Any]]:
        return self._items(self.core.list_pod_for_all_namespaces(
            field_selector=LIVE_PODS, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S))

    def snapshot(self, namespace: str) -> dict[str, Any]:
        """One reading of everything the checks need (see the module docstring for the order)."""
        started = time.monotonic()
        nodes = self.list_nodes()
        centers = self.list_centers()
        computejobs = self.list_computejobs(namespace)
        jobs = self.list_jobs(namespace)
        pods = self.list_live_pods()
        return {"nodes": nodes, "centers": centers, "computejobs": computejobs, "jobs": jobs, "pods": pods,
                "read_seconds": time.monotonic() - started}

    def get_computejob(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "computejobs", name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(json.loads(resp.data))

    def create_computejob(self, doc: dict[str, Any]) -> dict[str, Any]:
        ns = doc["metadata"]["namespace"]
        resp = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, "computejobs", doc, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S)
        return dict(json.loads(resp.data))

    def patch_computejob(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "computejobs", name, body, _request_timeout=REQUEST_TIMEOUT_S)

    def delete_computejob(self, namespace: str, name: str, propagation: str) -> None:
        self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "computejobs", name, propagation_policy=propagation,
            _request_timeout=REQUEST_TIMEOUT_S)

    def node_exists(self, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.read_node(name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
