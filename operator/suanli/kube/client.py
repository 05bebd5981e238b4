"""Writes to the API server: two thread pools over the synchronous `kubernetes` client.

Requests go through the client's configuration, authentication, TLS and connection pool
(`ApiClient.param_serialize` / `call_api`) but skip its typed layer: bodies are plain
dictionaries in and out. The generated methods validate every argument with pydantic and turn
every answer into model objects the operator would only turn back into dictionaries; at
thousands of writes a minute that was a large part of the operator's CPU (`make bench`).

The scheduler never waits on the network in its loop: it submits writes here and gets
futures back. Binding-critical writes go to a pool of their own (`run_binding`), so they never
queue behind progress patches and Events on the main pool (`run`). In that pool a binding's
writes (its status, then its batch Job) keep the place in line the binding took when it was
decided (a `ticket`): a job's Job is created ahead of bindings decided after it, so in a burst or
after a restart a Job never waits behind an endless stream of newer bindings (`make bench`:
a job's Job follows its Bound status within a second, p99). Neither queue grows without bound:
the scheduler keeps at most one write chain in flight per job (progress patches are coalesced:
the latest status is computed when the previous write finished). Every failed write is counted in
`suanli_api_write_errors_total{verb,resource}`.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

from kubernetes import client as _k8s
from kubernetes import config as _k8s_config
from kubernetes.client.exceptions import ApiException

from suanli import metrics
from suanli.kube import errors as errors_mod
from suanli.kube import events as events_mod
from suanli.kube import priority_pool, workloads

GROUP, VERSION = "suanli.io", "v1alpha1"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
PAGE = 500  # objects per LIST page: bounded memory at startup, however large the cluster
# What the cache mirrors: (collection path, label selector).
COLLECTIONS = {
    "centers": (f"/apis/{GROUP}/{VERSION}/computecenters", None),
    "jobs": (f"/apis/{GROUP}/{VERSION}/computejobs", None),
    "nodes": ("/api/v1/nodes", None),
    "pods": ("/api/v1/pods", None),
    "workloads": ("/apis/batch/v1/jobs", "suanli.io/job"),
    "queues": (f"/apis/{GROUP}/{VERSION}/computequeues", None),
    "namespaces": ("/api/v1/namespaces", None),
}
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


class Replaced(Exception):
    """The ComputeJob a write was for is gone, or another of the same name (another uid) replaced it."""


class NamespaceMissing(Exception):
    """A member cluster has no namespace of the job's name, and the operator may not create it."""


class WorkloadBusy(Exception):
    """The batch Job cannot be created yet: an earlier one of the same name is being deleted."""


def _pointer(key: str) -> str:
    """A JSON pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def now_rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api:
    """The operator's API calls, each run on the write pool."""

    def __init__(self, api: Any, workers: int, events_namespace: str = "default", instance: str = "",
                 timeout: float | None = None):
        """`events_namespace`: where Events about cluster-scoped objects go. `instance`: this replica
        (its leader-election identity), the `reportingInstance` and `source.host` of its Events.
        `timeout`: of a request that names none, seconds (a member cluster's: one that stopped
        answering must not hold a write thread for ever)."""
        self.timeout = timeout
        self.client: Any = api
        self.core: Any = k8s.CoreV1Api(api)
        self.batch: Any = k8s.BatchV1Api(api)
        self.custom: Any = k8s.CustomObjectsApi(api)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="suanli-write")
        self.binding = priority_pool.PriorityPool(priority_pool.binding_workers(workers), "suanli-bind")
        self._tickets = itertools.count()
        self.events_namespace = events_namespace
        self.events = events_mod.EventRecorder(self.request, default_namespace=events_namespace, instance=instance)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.binding.shutdown()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Progress patches, Events, center status, reads: the main pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(*args, **kwargs))

    def ticket(self) -> int:
        """A place in the binding pool's line, taken when a binding (or a missing Job) is decided."""
        return next(self._tickets)

    async def run_binding(self, ticket: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A write of a binding chain (its status, its batch Job, or undoing it): the binding pool,
        ahead of every chain that took a later ticket."""
        return await asyncio.wrap_future(self.binding.submit(ticket, lambda: fn(*args, **kwargs)))

    @staticmethod
    def _count(verb: str, resource: str, exc: BaseException) -> None:
        metrics.API_WRITE_ERRORS.labels(verb=verb, resource=resource).inc()
        LOG.debug("%s %s failed: %s", verb, resource, exc)

    # --- plain requests ---------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: list[tuple[str, Any]] | None = None,
        content_type: str = JSON,
        accept: str = JSON,
        timeout: float | None = None,
        decode: bool = True,
    ) -> Any:
        """One API call; the decoded JSON answer (None with `decode=False`: writes whose answer
        nobody reads skip decoding it). Raises `ApiException` (status, body) on an error."""
        response = self._send(method, path, body, query, content_type, accept, timeout if timeout is not None else self.timeout)
        response.read()
        return json.loads(response.data) if decode and response.data else None

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        query: list[tuple[str, Any]] | None,
        content_type: str,
        accept: str,
        timeout: Any,
    ) -> Any:
        """Send one call through the client's auth, TLS and pool; the response, body not read yet.
        Raises `ApiException` (status, body) on an error status."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        verb, url, headers, _, _ = self.client.param_serialize(
            method=method, resource_path=path, query_params=query, header_params=headers, auth_settings=["BearerToken"]
        )
        response = self.client.call_api(verb, url, headers, body, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response

    @staticmethod
    def _collection(kind: str, *query: tuple[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
        """The path of a mirrored kind and `query` with the kind's label selector, if it has one."""
        path, selector = COLLECTIONS[kind]
        return path, [*query, *([("labelSelector", selector)] if selector else [])]

    def page(self, kind: str, token: str = "", accept: str = JSON) -> tuple[list[dict[str, Any]], str, str]:
        """One page (at most `PAGE` objects) of a mirrored kind, the token of the next ("" at the end)
        and the LIST's resourceVersion (every page of one LIST is the same snapshot)."""
        path, query = self._collection(kind, ("limit", PAGE), *([("continue", token)] if token else []))
        page = self.request("GET", path, query=query, accept=accept, timeout=60)
        meta = page.get("metadata") or {}
        return list(page.get("items") or []), str(meta.get("continue") or ""), str(meta.get("resourceVersion") or "")

    def pages(self, kind: str, accept: str = JSON) -> list[dict[str, Any]]:
        """Every object of one mirrored kind, LISTed in pages of `PAGE`."""
        items, token, _ = self.page(kind, accept=accept)
        while token:
            more, token, _ = self.page(kind, token, accept)
            items.extend(more)
        return items

    def watch(self, kind: str, resource_version: str, timeout_seconds: int) -> Iterator[list[dict[str, Any]]]:
        """One WATCH of a mirrored kind from `resource_version` (bookmarks on), as the server sends it:
        each chunk's decoded events, until the server ends the stream (after `timeout_seconds`).
        Raises `ApiException` if the request itself fails."""
        path, query = self._collection(
            kind,
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_seconds),
        )
        response = self._send("GET", path, None, query, JSON, JSON, (10, timeout_seconds + 30))
        stream, finished = response.response, False
        try:
            rest = b""
            for chunk in stream.stream(65536):
                *lines, rest = (rest + chunk).split(b"\n")
                events = [json.loads(line) for line in lines if line.strip()]
                if events:
                    yield events
            finished = True
        finally:
            if finished:
                stream.release_conn()
            else:
                stream.close()  # left mid-stream: the connection cannot serve another request

    # --- reads --------------------------------------------------------------------------

    def list_keys(self, kinds: tuple[str, ...] = tuple(COLLECTIONS)) -> dict[str, set[tuple[str, str, str]]]:
        """(namespace or "", name, uid) of every object of `kinds` (default: all the cache mirrors), by
        kind: metadata-only LISTs (the relist safety net needs names and uids, not pods' specs)."""
        out: dict[str, set[tuple[str, str, str]]] = {}
        for kind in kinds:
            keys = set()
            for item in self.pages(kind, accept=METADATA_ONLY):
                meta = item.get("metadata") or {}
                keys.add((meta.get("namespace") or "", meta.get("name") or "", meta.get("uid") or ""))
            out[kind] = keys
        return out

    def exists(self, kind: str, key: tuple[str, str]) -> dict[str, Any] | None:
        """GET one mirrored object: the object (its uid tells whether it is the one cached or a
        successor of the same name), None only on 404 (any other error is raised)."""
        path = COLLECTIONS[kind][0]
        namespace, name = key
        if namespace:
            head, plural = path.rsplit("/", 1)
            path = f"{head}/namespaces/{quote(namespace)}/{plural}"
        try:
            found: dict[str, Any] = self.request("GET", f"{path}/{quote(name)}", timeout=10)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    # --- writes -------------------------------------------------------------------------

    def patch_job_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        answer: bool = True,
        uid: str | None = None,
        whole: bool = False,
    ) -> dict[str, Any] | None:
        """Patch a ComputeJob's status; the updated object, or None when `answer` is False.

        With `uid`, the patch applies only to the ComputeJob with that uid: a JSON patch whose first
        operation tests `/metadata/uid` (a merge patch cannot say so: the status subresource ignores
        metadata in it). Each key of `status` is set (None removes it); `whole` sets the status as one
        document, for a job whose status was never written (a JSON patch cannot add into a missing
        /status). Raises `Replaced` when the job is gone or another job of that name replaced it.
        """
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/computejobs/{quote(name)}/status"
        if uid is None:
            body: Any = {"status": status}
            content_type = MERGE_PATCH
        else:
            body = [{"op": "test", "path": "/metadata/uid", "value": uid}]
            if whole:
                body.append({"op": "add", "path": "/status", "value": status})
            else:
                body.extend({"op": "add", "path": f"/status/{_pointer(k)}", "value": v} for k, v in status.items())
            content_type = JSON_PATCH
        try:
            result: dict[str, Any] | None = self.request("PATCH", path, body, content_type=content_type, decode=answer)
            return result
        except ApiException as exc:
            self._count("patch", "computejobs/status", exc)
            if uid is not None and exc.status in (404, 422) and self._replaced(path[: -len("/status")], uid):
                raise Replaced(f"ComputeJob {namespace}/{name} with uid {uid} is gone") from None
            raise

    def _replaced(self, path: str, uid: str) -> bool:
        """After a failed uid-tested patch: True if the object is gone or has another uid (a 422 answers
        a failed test and a schema error alike)."""
        try:
            current = self.request("GET", path, timeout=10)
        except ApiException as exc:
            return bool(exc.status == 404)
        return bool((current.get("metadata") or {}).get("uid") != uid)

    def patch_center_status(self, name: str, status: dict[str, Any]) -> None:
        self._patch_cluster_status("computecenters", name, status)

    def patch_queue_status(self, name: str, status: dict[str, Any]) -> None:
        self._patch_cluster_status("computequeues", name, status)

    def _patch_cluster_status(self, plural: str, name: str, status: dict[str, Any]) -> None:
        path = f"/apis/{GROUP}/{VERSION}/{plural}/{quote(name)}/status"
        try:
            self.request("PATCH", path, {"status": status}, content_type=MERGE_PATCH, decode=False)
        except ApiException as exc:
            self._count("patch", f"{plural}/status", exc)
            raise

    def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """GET one pod; None if it is gone (any other error is raised)."""
        try:
            pod: dict[str, Any] = self.request("GET", f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}", timeout=30)
            return pod
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_pod(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        """JSON-patch a pod (RFC 6902: its `test` operations are the preconditions, the pod's uid among
        them); the answer is not read. Raises `ApiException` (422 when a test fails)."""
        path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}"
        try:
            self.request("PATCH", path, operations, content_type=JSON_PATCH, decode=False, timeout=30)
        except ApiException as exc:
            self._count("patch", "pods", exc)
            raise

    def create_or_adopt_job(self, manifest: dict[str, Any], owner_uid: str,
                            create_namespace: bool = False) -> tuple[dict[str, Any], bool]:
        """Create the batch Job, or adopt the one with its deterministic name. Returns (job, created).

        A missing namespace (a member cluster's) is created first when `create_namespace`, else
        `NamespaceMissing` is raised.

        An existing Job is adopted only if it is this ComputeJob's (owner uid), for the same attempt and
        pool, and not being deleted. One left by an earlier attempt, or by an earlier ComputeJob of the
        same name, is deleted (foreground: with its pods) and `WorkloadBusy` raised: the Job is created
        once that one is gone. Raises ValueError if the Job belongs to something else.
        """
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        jobs = f"/apis/batch/v1/namespaces/{quote(ns)}/jobs"
        try:
            return self.request("POST", jobs, manifest), True
        except ApiException as exc:
            if exc.status == 404 and errors_mod.namespace_gone(exc):
                if not create_namespace:
                    raise NamespaceMissing(
                        f"namespace {ns} does not exist in the member cluster and members.create_namespaces is "
                        f"false; create it there (kubectl create namespace {ns})"
                    ) from None
                self.create_namespace(ns)
                return self.request("POST", jobs, manifest), True
            if exc.status != 409:
                self._count("create", "jobs", exc)
                raise
        existing: dict[str, Any] = self.request("GET", f"{jobs}/{quote(name)}")
        verdict = workloads.existing_job(existing, manifest, owner_uid)
        if verdict == "current":
            return existing, False
        if verdict == "foreign":
            raise ValueError(
                f"a Job {ns}/{name} already exists and is not owned by this ComputeJob; "
                f"delete or rename it so Suanli can create the workload"
            )
        meta = existing.get("metadata") or {}
        if not meta.get("deletionTimestamp"):
            self.delete_job(ns, name, str(meta.get("uid") or ""))
        raise WorkloadBusy(
            f"the Job {ns}/{name} of an earlier attempt (or of an earlier ComputeJob of this name) is being deleted; "
            f"the new one is created once it is gone"
        )

    def read_secret_key(self, namespace: str, name: str, key: str) -> bytes | None:
        """One key of a Secret, decoded; None if the Secret has no such key. Raises `ApiException`
        (404: no such Secret)."""
        secret: dict[str, Any] = self.request(
            "GET", f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}", timeout=10
        )
        value = (secret.get("data") or {}).get(key)
        if value is None:
            text = (secret.get("stringData") or {}).get(key)
            return text.encode() if text is not None else None
        return base64.b64decode(value)

    def create_namespace(self, name: str) -> None:
        """Create a namespace (a member cluster's, for a job's Job); one that exists already is fine."""
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "suanli"}}}
        try:
            self.request("POST", "/api/v1/namespaces", body)
        except ApiException as exc:
            if exc.status != 409:
                self._count("create", "namespaces", exc)
                raise

    def delete_job(self, namespace: str, name: str, uid: str) -> bool:
        """Delete a batch Job and, before it goes, its pods (foreground), only if it still has this uid.
        False if it was already gone or replaced."""
        body = {"propagationPolicy": "Foreground", "preconditions": {"uid": uid} if uid else None}
        return self._delete(f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs/{quote(name)}", "jobs", body)

    def delete_pod(self, namespace: str, name: str, uid: str) -> bool:
        """Delete a pod only if it still has this uid; False if it was already gone or replaced."""
        body = {"preconditions": {"uid": uid}} if uid else None
        return self._delete(f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}", "pods", body)

    def _delete(self, path: str, resource: str, body: dict[str, Any] | None) -> bool:
        """One DELETE; False when the object is gone (404) or its uid precondition failed (409)."""
        try:
            self.request("DELETE", path, body, decode=False)
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            self._count("delete", resource, exc)
            raise
        return True

    def event(
        self,
        obj: dict[str, Any] | tuple[str, str, str, str],
        reason: str,
        message: str,
        warning: bool = False,
        now: float | None = None,
    ) -> None:
        """A core/v1 Event about a ComputeJob or ComputeCenter; failures are logged, never raised.

        `obj` is (kind, namespace, name, uid) or an object dictionary; `now` the occurrence's time
        (seconds, default: now). Repeats are aggregated into one Event with a rising count and an
        object's new Events are rate-limited (suanli.kube.events).
        """
        if isinstance(obj, dict):
            meta = obj.get("metadata") or {}
            kind, ns, name, uid = obj.get("kind", ""), meta.get("namespace") or "", meta.get("name", ""), meta.get("uid", "")
        else:
            kind, ns, name, uid = obj
        try:
            self.events.record((kind, ns, name, uid), reason, message, warning, now)
        except Exception as exc:  # the recorder logs its own failures; this is a last guard
            LOG.warning("could not record event %s on %s %s/%s: %s", reason, kind, ns, name, exc)
