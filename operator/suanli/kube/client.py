"""Writes to the API server: two thread pools over the synchronous `kubernetes` client.

The scheduler never waits on the network in its loop: it submits writes here and gets
futures back. Binding-critical writes (a new binding's status, its batch Job) go to a small
pool of their own (`run_urgent`), so they never queue behind progress patches and Events on the
main pool (`run`). Neither queue grows without bound: the scheduler keeps at most one write
chain in flight per job (progress patches are coalesced: the latest status is computed when
the previous write finished). Every failed write is counted in
`suanli_api_write_errors_total{verb,resource}`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client as _k8s
from kubernetes import config as _k8s_config
from kubernetes.client.exceptions import ApiException

from suanli import metrics

GROUP, VERSION = "suanli.io", "v1alpha1"
LOG = logging.getLogger("suanli.kube")
# The generated client is loosely typed; we pass and read plain dictionaries.
k8s: Any = _k8s
k8s_config: Any = _k8s_config
T = TypeVar("T")


def api_client(kubeconfig: str | None, pool_size: int = 32) -> Any:
    """A client from a kubeconfig file, else in-cluster, else the default kubeconfig."""
    configuration = k8s.Configuration()
    if kubeconfig:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return k8s.ApiClient(configuration)


def urgent_workers(workers: int) -> int:
    """Threads of the binding-critical pool, beside `workers` for everything else."""
    return max(2, workers // 4)


def namespace_gone(exc: BaseException) -> bool:
    """True if a create failed because its namespace is being deleted (403 "... because it is being
    terminated") or is already gone (404 for the namespace itself, not for the object)."""
    if not isinstance(exc, ApiException) or exc.status not in (403, 404):
        return False
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or "")
    try:
        doc: Any = json.loads(body)
    except ValueError:
        doc = {}
    details: Any = doc.get("details") if isinstance(doc, dict) else None
    details = details if isinstance(details, dict) else {}
    if exc.status == 403:
        causes = details.get("causes") or []
        return "being terminated" in body or any(
            isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes
        )
    return bool(details.get("kind") == "namespaces")


def now_rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api:
    """The operator's API calls, each run on the write pool."""

    def __init__(self, api: Any, workers: int, events_namespace: str = "default"):
        self.client: Any = api
        self.core: Any = k8s.CoreV1Api(api)
        self.batch: Any = k8s.BatchV1Api(api)
        self.custom: Any = k8s.CustomObjectsApi(api)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="suanli-write")
        self.urgent = concurrent.futures.ThreadPoolExecutor(
            max_workers=urgent_workers(workers), thread_name_prefix="suanli-bind"
        )
        self.events_namespace = events_namespace

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.urgent.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Progress patches, Events, center status, reads: the main pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(*args, **kwargs))

    async def run_urgent(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Binding-critical writes (Bound status, Job create): their own pool, ahead of the rest."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.urgent, lambda: fn(*args, **kwargs))

    @staticmethod
    def _count(verb: str, resource: str, exc: BaseException) -> None:
        metrics.API_WRITE_ERRORS.labels(verb=verb, resource=resource).inc()
        LOG.debug("%s %s failed: %s", verb, resource, exc)

    # --- reads (startup) ----------------------------------------------------------------

    def list_all(self) -> dict[str, list[dict[str, Any]]]:
        """Every object the cache mirrors, as plain dictionaries (startup priming)."""
        sanitize = self.client.sanitize_for_serialization
        centers = self.custom.list_cluster_custom_object(GROUP, VERSION, "computecenters")["items"]
        jobs = self.custom.list_cluster_custom_object(GROUP, VERSION, "computejobs")["items"]
        nodes = [sanitize(n) for n in self.core.list_node().items]
        pods = [sanitize(p) for p in self.core.list_pod_for_all_namespaces().items]
        workloads = [
            sanitize(j) for j in self.batch.list_job_for_all_namespaces(label_selector="suanli.io/job").items
        ]
        return {"centers": centers, "jobs": jobs, "nodes": nodes, "pods": pods, "workloads": workloads}

    # --- writes -------------------------------------------------------------------------

    def patch_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, "computejobs", name, {"status": status}
            )
            return result
        except ApiException as exc:
            self._count("patch", "computejobs/status", exc)
            raise

    def patch_center_status(self, name: str, status: dict[str, Any]) -> None:
        try:
            self.custom.patch_cluster_custom_object_status(GROUP, VERSION, "computecenters", name, {"status": status})
        except ApiException as exc:
            self._count("patch", "computecenters/status", exc)
            raise

    def create_or_adopt_job(self, manifest: dict[str, Any], owner_uid: str) -> tuple[dict[str, Any], bool]:
        """Create the batch Job, or adopt the one with its deterministic name. Returns (job, created).

        Raises ValueError if a Job of that name exists but belongs to something else.
        """
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            created = self.batch.create_namespaced_job(ns, manifest)
            return self.client.sanitize_for_serialization(created), True
        except ApiException as exc:
            if exc.status != 409:
                self._count("create", "jobs", exc)
                raise
        existing = self.client.sanitize_for_serialization(self.batch.read_namespaced_job(name, ns))
        refs = existing.get("metadata", {}).get("ownerReferences") or []
        if not any(r.get("uid") == owner_uid for r in refs):
            raise ValueError(
                f"a Job {ns}/{name} already exists and is not owned by this ComputeJob; "
                f"delete or rename it so Suanli can create the workload"
            )
        return existing, False

    def event(
        self,
        obj: dict[str, Any] | tuple[str, str, str, str],
        reason: str,
        message: str,
        warning: bool = False,
        now: float | None = None,
    ) -> None:
        """A core/v1 Event about a ComputeJob or ComputeCenter; failures are logged, never raised.

        `obj` is (kind, namespace, name, uid) or an object dictionary.
        """
        if isinstance(obj, dict):
            meta = obj.get("metadata") or {}
            kind, ns, name, uid = obj.get("kind", ""), meta.get("namespace") or "", meta.get("name", ""), meta.get("uid", "")
        else:
            kind, ns, name, uid = obj
        stamp = now_rfc3339(now) if now is not None else now_rfc3339(datetime.datetime.now(tz=datetime.UTC).timestamp())
        namespace = ns or self.events_namespace
        body = {
            "metadata": {"name": f"{name[:200]}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": kind,
                "name": name,
                "namespace": ns or None,
                "uid": uid,
            },
            "reason": reason,
            "message": message[:1000],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "suanli"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(namespace, body)
        except ApiException as exc:
            self._count("create", "events", exc)
            LOG.warning("could not post event %s on %s %s/%s: %s", reason, kind, ns, name, exc.reason)
