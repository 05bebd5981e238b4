"""Writes to the API server: two thread pools over the plain requests of `kube/transport.py`.

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
import concurrent.futures
import datetime
import itertools
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from kubernetes.client.exceptions import ApiException

from suanli import metrics
from suanli.kube import errors as errors_mod
from suanli.kube import events as events_mod
from suanli.kube import priority_pool, workloads
from suanli.kube.transport import (
    COLLECTIONS,
    GROUP,
    JSON_PATCH,
    MERGE_PATCH,
    PAGE,
    VERSION,
    NotServed,
    Transport,
    api_client,
    k8s,
)

LOG = logging.getLogger("suanli.kube")
T = TypeVar("T")
__all__ = ["COLLECTIONS", "GROUP", "PAGE", "VERSION", "Api", "NamespaceMissing", "NotServed", "Replaced", "WorkloadBusy", "api_client", "k8s"]


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


class Api(Transport):
    """The operator's API calls: reads (`Transport`) and writes, each run on a write pool."""

    def __init__(self, api: Any, workers: int, events_namespace: str = "default", instance: str = "",
                 timeout: float | None = None):
        """`events_namespace`: where Events about cluster-scoped objects go. `instance`: this replica
        (its leader-election identity), the `reportingInstance` and `source.host` of its Events.
        `timeout`: of a request that names none, seconds (a member cluster's: one that stopped
        answering must not hold a write thread for ever)."""
        super().__init__(api, timeout)
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

    def patch_pod(self, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        """JSON-patch a pod (RFC 6902: its `test` operations are the preconditions, the pod's uid among
        them); the answer is not read. Raises `ApiException` (422 when a test fails)."""
        path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}"
        try:
            self.request("PATCH", path, operations, content_type=JSON_PATCH, decode=False, timeout=30)
        except ApiException as exc:
            self._count("patch", "pods", exc)
            raise

    def create_or_adopt_job(self, manifest: dict[str, Any], owner_uid: str, create_namespace: bool = False,
                            claim: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """Create the batch Job, or adopt the one with its deterministic name. Returns (job, created).
        `claim`: for a DRA pool, the device request (`workloads.device_request`) of the Job's
        ResourceClaimTemplate, made (like a gang's Service) once the Job is there.

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
            return self._with_companions(self.request("POST", jobs, manifest), claim), True
        except ApiException as exc:
            if exc.status == 404 and errors_mod.namespace_gone(exc):
                if not create_namespace:
                    raise NamespaceMissing(
                        f"namespace {ns} does not exist in the member cluster and members.create_namespaces is "
                        f"false; create it there (kubectl create namespace {ns})"
                    ) from None
                self.create_namespace(ns)
                return self._with_companions(self.request("POST", jobs, manifest), claim), True
            if exc.status != 409:
                self._count("create", "jobs", exc)
                raise
        existing: dict[str, Any] = self.request("GET", f"{jobs}/{quote(name)}")
        verdict = workloads.existing_job(existing, manifest, owner_uid)
        if verdict == "current":
            return self._with_companions(existing, claim), False
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

    def _with_companions(self, job: dict[str, Any], claim: dict[str, Any] | None) -> dict[str, Any]:
        """The Job, once it has what is made with it: a DRA pool's ResourceClaimTemplate (its pods
        wait for their claims until it is there) and a gang's Service. When a name is taken by
        someone else's object the Job is deleted again (its pods could not get their devices, or
        its replicas could not find each other) and the ValueError raised."""
        try:
            if claim is not None and workloads.claims_devices(job):
                self._ensure_owned(job, workloads.build_claim_template(job, claim), "resource.k8s.io/v1",
                                   "resourceclaimtemplates", "ResourceClaimTemplate",
                                   "the replicas of ComputeJob {job} can get their devices")
            if workloads.gang(job):
                self._ensure_owned(job, workloads.build_service(job), "v1", "services", "Service",
                                   "the replicas of ComputeJob {job} can find each other")
        except ValueError:
            meta = job["metadata"]
            self.delete_job(meta["namespace"], meta["name"], str(meta.get("uid") or ""))
            raise
        return job

    def _ensure_owned(self, job: dict[str, Any], manifest: dict[str, Any], api_version: str, plural: str,
                      kind: str, purpose: str) -> None:
        """Create an object the batch Job `job` owns (`manifest`), or leave the one there when it is
        already this Job's. One left by an earlier Job of the name (deleted, its objects not yet
        collected) is deleted and `WorkloadBusy` raised: it is made again once that is gone. Raises
        ValueError if an object of that name is someone else's (`purpose` says why it matters)."""
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        collection = f"{prefix}/namespaces/{quote(ns)}/{plural}"
        try:
            self.request("POST", collection, manifest, decode=False)
            return
        except ApiException as exc:
            if exc.status != 409:
                self._count("create", plural, exc)
                raise
        existing: dict[str, Any] = self.request("GET", f"{collection}/{quote(name)}")
        meta = existing.get("metadata") or {}
        owners = {r.get("uid") for r in meta.get("ownerReferences") or []}
        if job["metadata"]["uid"] in owners and not meta.get("deletionTimestamp"):
            return
        label = workloads.LABEL_JOB
        if (meta.get("labels") or {}).get(label) != manifest["metadata"]["labels"].get(label):
            raise ValueError(
                f"a {kind} {ns}/{name} already exists and is not Suanli's; delete or rename it so "
                + purpose.format(job=f"{ns}/{manifest['metadata']['labels'].get(label)}")
            )
        if not meta.get("deletionTimestamp"):
            self._delete(f"{collection}/{quote(name)}", plural, {"preconditions": {"uid": meta.get("uid")}})
        raise WorkloadBusy(
            f"the {kind} {ns}/{name} of an earlier Job of this name is being deleted; the new one is made once it is gone"
        )

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
