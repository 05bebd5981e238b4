"""Gang placement that any kube-scheduler honours: each replica of a bound job is pinned to the node
the capacity ledger chose for it before any scheduler may look at its pod (DESIGN.md "Running
workloads": the node-level decision reaches the pods).

The batch Job's pods are created with the scheduling gate `suanli.io/placement` (kube/workloads.py):
no scheduler considers them. For each such pod the `Lifter` reads its completion index, looks up the
node the binding gave that index (`status.binding.nodes`) and patches the pod once: a required node
affinity on that node's name (`matchFields` on `metadata.name`) added to every required term the pod
already has, or as its only term, and the gate removed. Kubernetes (1.30+) allows exactly that on a
gated pod: its node affinity may only be narrowed (a requirement added to each existing term, or the
terms set when there were none) and its gates only removed, in the same patch. The patch is a JSON
patch whose `test` operations check the pod's uid, the gate's position and the required terms it
extends: it applies to the pod it was computed from or not at all.

- A binding without nodes (a status written by an older operator) gets its pods' gates lifted without
  pinning: the pool's nodeSelector is in the template anyway.
- A pod whose node is gone, not Ready, out of the pool, or without room any more for the replicas
  bound to it stays gated (logged) and is looked at again with backoff: it is never pinned elsewhere,
  since that node was the ledger's decision. `unplaceable` says why for a whole job, for the
  pods-ready timeout that sends such a gang back to the queue.
- Pods of another ComputeJob of the same name, of an earlier bound attempt, or being deleted are
  left alone.

Writes run on the API client's main pool (`Api.run`). A failed write is logged and retried with the
work queue's backoff (`operator.retry_seconds` doubling to `operator.retry_max_seconds`); nothing is
raised into the pod watch. Only gated pods cost anything here: the pod watch calls `wake` for them
alone, with the object it just received, so most pods are patched without a read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from kubernetes.client.exceptions import ApiException

from suanli import logs
from suanli.kube import clusters as clusters_mod
from suanli.kube import errors, records, workloads, workqueue
from suanli.kube import objects as kobj

if TYPE_CHECKING:
    from suanli.kube import cache as cache_mod
    from suanli.kube import client as client_mod

LOG = logging.getLogger("suanli.gates")
Key = kobj.Key
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
NODE_NAME_FIELD = "metadata.name"


# --- the patch (pure) -------------------------------------------------------------------


def requirement(node: str) -> dict[str, Any]:
    """The node selector requirement that pins a pod to `node`."""
    return {"key": NODE_NAME_FIELD, "operator": "In", "values": [node]}


def operations(pod: Mapping[str, Any], node: str | None) -> list[dict[str, Any]] | None:
    """The JSON patch (RFC 6902) that pins `pod` to `node` (None: no pinning) and lifts Suanli's
    scheduling gate, its preconditions first; None if the pod does not carry the gate."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    gates = spec.get("schedulingGates") or []
    at = next((i for i, gate in enumerate(gates) if gate.get("name") == workloads.GATE), None)
    if at is None:
        return None
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/uid", "value": meta.get("uid")},
        {"op": "test", "path": f"/spec/schedulingGates/{at}/name", "value": workloads.GATE},
        {"op": "remove", "path": f"/spec/schedulingGates/{at}"},
    ]
    if node is not None:
        ops.extend(_pin(spec.get("affinity"), node))
    return ops


def _pin(affinity: Mapping[str, Any] | None, node: str) -> list[dict[str, Any]]:
    """Narrow the pod's required node affinity to `node`: the requirement goes into every existing
    term (terms are ORed: one more term would widen it, which the API server refuses), or becomes the
    only term when there is none."""
    req = requirement(node)
    only = {"nodeSelectorTerms": [{"matchFields": [req]}]}
    if not affinity:
        return [{"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": {REQUIRED: only}}}]
    node_affinity = affinity.get("nodeAffinity")
    if not node_affinity:
        return [{"op": "add", "path": "/spec/affinity/nodeAffinity", "value": {REQUIRED: only}}]
    base = f"/spec/affinity/nodeAffinity/{REQUIRED}"
    required = node_affinity.get(REQUIRED)
    terms = (required or {}).get("nodeSelectorTerms") or []
    if not terms:
        return [{"op": "add", "path": base, "value": only}]
    ops: list[dict[str, Any]] = [{"op": "test", "path": base, "value": required}]
    for i, term in enumerate(terms):
        if term.get("matchFields"):
            ops.append({"op": "add", "path": f"{base}/nodeSelectorTerms/{i}/matchFields/-", "value": req})
        else:
            ops.append({"op": "add", "path": f"{base}/nodeSelectorTerms/{i}/matchFields", "value": [req]})
    return ops


# --- what to do with a gated pod (reads the cache, no I/O) --------------------------------


@dataclasses.dataclass(frozen=True)
class Verdict:
    """pin: to `node`; release: lift the gate without pinning; wait: look again later; skip: not ours
    to release. `reason` says why, for the log."""

    action: Literal["pin", "release", "wait", "skip"]
    node: str | None = None
    reason: str = ""


def decide(cache: cache_mod.Cache, pod: kobj.PodInfo) -> Verdict:
    """What to do with a gated pod now, from the cache alone."""
    if pod.job_key is None:
        return Verdict("skip", reason="it is not a pod of a Suanli Job")
    if pod.deleting:
        return Verdict("skip", reason="it is being deleted")
    record = cache.record_for_label(pod.job_key)
    if record is None:
        return Verdict("wait", reason=f"its ComputeJob {pod.key[0]}/{pod.job_label} is not known")
    if pod.job_uid and pod.job_uid != record.uid:
        return Verdict("skip", reason=f"it was made for an earlier ComputeJob named {record.key[1]}")
    binding = cache.binding(record)
    if binding is None:
        return Verdict("wait", reason=f"its ComputeJob {record.key[0]}/{record.key[1]} is not bound")
    if pod.attempt is not None and pod.attempt < binding.attempt:
        return Verdict("skip", reason=f"it was made for bound attempt {pod.attempt}, not {binding.attempt}")
    if not binding.nodes:
        return Verdict("release", reason="its binding names no nodes (a status written before status.binding.nodes)")
    if pod.index is None or not 0 <= pod.index < len(binding.nodes):
        return Verdict("release", reason=f"its completion index {pod.index} names no replica of the binding")
    node = binding.nodes[pod.index]
    problem = _node_problem(cache, binding, node, _placed(cache.job_pods(record)))
    if problem is not None:
        return Verdict("wait", node, problem.text)
    return Verdict("pin", node, f"replica {pod.index} was placed on node {node}")


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why replicas cannot go to the node their binding names now. `lasting`: they never will (the
    node is gone or left the pool, or the pool is gone), so waiting for the pods-ready timeout would
    only hold the gang's accelerators for nothing; otherwise (not Ready, cordoned, no room yet) it
    may pass."""

    text: str
    lasting: bool


def stranded(cache: cache_mod.Cache, record: records.JobRecord,
             pods: Sequence[kobj.PodInfo] | None = None) -> str | None:
    """Why replicas of a bound job that are not on a node yet can never go to the nodes their binding
    names (a node gone or out of the pool, the pool gone), or None. Such a gang goes back to the queue
    at once; a passing problem (not Ready, cordoned, no room yet) waits, as its pods stay gated, for
    the pods-ready timeout. `pods`: the bound attempt's (`cache.job_pods`), when the caller has them."""
    binding = cache.binding(record)
    if binding is None or not binding.nodes:
        return None
    placed = _placed(cache.job_pods(record) if pods is None else pods)
    for node in dict.fromkeys(n for i, n in enumerate(binding.nodes) if i not in placed):
        problem = _node_problem(cache, binding, node, placed)
        if problem is not None and problem.lasting:
            return problem.text
    return None


def _placed(pods: Sequence[kobj.PodInfo]) -> set[int | None]:
    """Completion indexes of the replicas whose pods (of the bound attempt) are on a node or finished."""
    return {p.index for p in pods if p.node is not None or p.terminated}


def _node_problem(cache: cache_mod.Cache, binding: records.Binding, node: str, placed: set[int | None]) -> Problem | None:
    info = cache.nodes.get(node)
    if info is None:
        return Problem(f"node {node} is gone", True)
    center = cache.centers.get(binding.center)
    spec = next((p for p in center.spec.pools if p.name == binding.pool), None) if center is not None else None
    if spec is None:
        return Problem(f"pool {binding.center}/{binding.pool} is gone", True)
    if spec.node_selector and not info.matches(spec.node_selector):
        return Problem(
            f"node {node} left pool {binding.center}/{binding.pool} "
            f"(its labels no longer match {dict(spec.node_selector)})", True)
    if not info.usable:
        return Problem(f"node {node} is not Ready or not schedulable", False)
    waiting = sum(1 for i, n in enumerate(binding.nodes) if n == node and i not in placed)
    need = waiting * binding.count
    pool = cache.fleet().pool_index(binding.center, binding.pool)
    if pool is None:
        return Problem(f"pool {binding.center}/{binding.pool} is gone", True)
    pool_info = cache.fleet().pools[pool]
    have, in_use = cache.accelerators_on(pool_info, node)
    free = have - in_use
    if free < need:
        return Problem(
            f"node {node} has {max(0, free)} {pool_info.resource} free; the {waiting} replica(s) bound to it and "
            f"not started need {need}", False)
    return None


# --- the lifter (I/O) ---------------------------------------------------------------------


class Lifter:
    """Releases the gated pods of bound jobs, each once, in the background."""

    def __init__(self, cache: cache_mod.Cache, api: client_mod.Api, later: workqueue.Later | None = None,
                 clusters: clusters_mod.Clusters | None = None):
        """`clusters`: where a member cluster's pods are patched (default: the operator's own cluster only)."""
        self.cache, self.api = cache, api
        self.clusters = clusters if clusters is not None else clusters_mod.Clusters(api)
        self.retries = workqueue.WorkQueue(cache.settings.operator, later)  # per pod: backoff after a failure
        self.bodies: dict[Key, dict[str, Any]] = {}  # the latest watch object of a gated pod (else it is read)
        self.busy: set[Key] = set()  # pods being handled now (one at a time per pod)
        self.again: set[Key] = set()  # woken while busy: handle once more
        self.noted: dict[Key, str] = {}  # the last thing logged about a pod, so a waiting pod is logged once
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Release the gated pods already in the (primed) cache, then work as the watch wakes us."""
        for key, info in list(self.cache.pods.items()):
            if info.gated:
                self.wake(key)
        try:
            await asyncio.Event().wait()
        finally:
            for task in list(self.tasks):
                task.cancel()

    def wake(self, key: Key, body: dict[str, Any] | None = None) -> None:
        """A gated pod was seen (`body`: the object the watch delivered), deleted, or is due again."""
        if body is not None:
            self.bodies[key] = body
        if key in self.busy:
            self.again.add(key)
            return
        self.busy.add(key)
        task = asyncio.get_running_loop().create_task(self._handle(key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def forget(self, key: Key) -> None:
        self.bodies.pop(key, None)
        self.noted.pop(key, None)
        self.retries.drop(key)

    async def _handle(self, key: Key) -> None:
        try:
            while True:
                self.again.discard(key)
                try:
                    await self._lift(key)
                except Exception as exc:  # never into the watch; looked at again after the backoff
                    delay = self.retries.failed(key, "", lambda: self.wake(key))
                    LOG.error("pod %s/%s: releasing it failed unexpectedly (%r); again in %gs", *key, exc, delay,
                              exc_info=exc, extra=logs.about(key, "Pod"))
                if key not in self.again:
                    return
        finally:
            self.busy.discard(key)

    def _note(self, key: Key, level: int, message: str, detail: str = "") -> None:
        """Log `message` (and `detail`) at `level` when it is news for this pod, else at debug level."""
        if self.noted.get(key) != message:
            self.noted[key] = message
            LOG.log(level, "pod %s/%s: %s%s", *key, message, detail)
        else:
            LOG.debug("pod %s/%s: %s%s", *key, message, detail, extra=logs.about(key, "Pod"))

    async def _lift(self, key: Key) -> None:
        info = self.cache.pods.get(key)
        if info is None or not info.gated:
            self.forget(key)  # deleted, or released (by us, a moment ago)
            return
        verdict = decide(self.cache, info)
        if verdict.action == "skip":
            self.bodies.pop(key, None)
            self._note(key, logging.INFO, f"leaving its scheduling gate {workloads.GATE} alone: {verdict.reason}")
            return
        if verdict.action == "wait":
            delay = self.retries.failed(key, "", lambda: self.wake(key))
            level = logging.WARNING if verdict.node is not None else logging.INFO
            where = f" on node {verdict.node}" if verdict.node is not None else ""
            self._note(key, level, f"stays gated{where}: {verdict.reason}", f" (looked at again in {delay:g}s)")
            return
        body = self.bodies.pop(key, None)
        from_watch = body is not None
        namespace, name = info.namespace, key[1]  # as the pod's own cluster knows it
        node = kobj.local_name(verdict.node) if verdict.node is not None else None
        while True:
            try:
                api = self.clusters.api(info.cluster)
                if body is None:
                    body = await api.run(api.read_pod, namespace, name)
                    if body is None:
                        self.forget(key)  # gone
                        return
                ops = operations(body, node)
                if ops is None:
                    self.forget(key)  # released already
                    return
                await api.run(api.patch_pod, namespace, name, ops)
                break
            except Exception as exc:
                status = exc.status if isinstance(exc, ApiException) else None
                if status == 404:
                    self.forget(key)
                    return
                if status in (409, 422) and from_watch:
                    body, from_watch = None, False  # computed from an object the pod has moved past: read it
                    continue
                delay = self.retries.failed(key, "", lambda: self.wake(key))
                self._note(key, logging.WARNING, f"could not release it ({errors.short(exc)})", f"; again in {delay:g}s")
                return
        self.retries.succeeded(key)
        if verdict.action == "pin":  # the routine case: one line per pod only with --verbose
            LOG.debug("pod %s/%s: pinned to node %s (%s); scheduling gate lifted", *key, verdict.node, verdict.reason, extra=logs.about(key, "Pod"))
        else:
            LOG.info("pod %s/%s: scheduling gate lifted without pinning: %s", *key, verdict.reason, extra=logs.about(key, "Pod"))
        self.forget(key)
