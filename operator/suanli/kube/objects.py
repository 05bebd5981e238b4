"""API objects as the cache keeps them: the few fields the operator reads, parsed once.

Pure: functions from API dictionaries to small frozen records. Keys are `(namespace, name)`
tuples (cluster-scoped objects: `("", name)`), never strings built by hand.

Objects of a member cluster (a ComputeCenter with `spec.cluster`) carry that center's name as
their `cluster` ("" for the operator's own cluster), and the names the cache keys them by are
qualified with it (`qualify`): node `guian/node-1`, pods and Jobs in namespace `guian/team-a`.
Kubernetes names never contain "/", so a qualified name is never a real one, and two clusters'
`node-1` are two nodes. `local_name` gives back the name in its own cluster, for the API.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from suanli.kube import workloads

Key = tuple[str, str]
NOT_SCHEDULABLE_TAINTS = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/uninitialized")


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def qualify(cluster: str, name: str) -> str:
    """`name` (a node's name, or a namespace) as the cache knows it: prefixed with its member cluster."""
    return f"{cluster}/{name}" if cluster and name else name


def split(qualified: str) -> tuple[str, str]:
    """(cluster, name in that cluster) of a qualified name (`qualify`)."""
    cluster, sep, name = qualified.partition("/")
    return (cluster, name) if sep else ("", qualified)


def local_name(qualified: str) -> str:
    """The name in its own cluster (what its API server knows it by)."""
    return split(qualified)[1]


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def quantity(text: Any) -> int:
    """Whole units of an extended-resource quantity ("8", 8, "8000m")."""
    value = str(text).strip()
    try:
        if value.endswith("m"):
            return int(float(value[:-1]) / 1000)
        if value.endswith("k"):
            return int(float(value[:-1]) * 1000)
        return int(float(value))
    except ValueError:
        return 0


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    name: str
    labels: Mapping[str, str]
    ready: bool
    schedulable: bool
    allocatable: Mapping[str, int]
    uid: str = ""  # metadata.uid: a node recreated under the same name is another node (kube/relist.py)
    cluster: str = ""  # the member center whose cluster it is in ("": the operator's own); `name` is qualified

    @property
    def usable(self) -> bool:
        return self.ready and self.schedulable

    def matches(self, selector: Mapping[str, str]) -> bool:
        return all(self.labels.get(k) == v for k, v in selector.items())


def node_info(obj: Mapping[str, Any], cluster: str = "") -> NodeInfo:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    blocking = [
        t
        for t in spec.get("taints") or []
        if t.get("effect") in ("NoSchedule", "NoExecute") and str(t.get("key", "")).startswith(NOT_SCHEDULABLE_TAINTS)
    ]
    allocatable = {str(k): quantity(v) for k, v in (status.get("allocatable") or {}).items() if "/" in str(k)}
    return NodeInfo(
        name=qualify(cluster, meta.get("name", "")),
        labels=dict(meta.get("labels") or {}),
        ready=ready,
        schedulable=not spec.get("unschedulable") and not blocking,
        allocatable=allocatable,
        uid=str(meta.get("uid") or ""),
        cluster=cluster,
    )


@dataclasses.dataclass(frozen=True)
class PodInfo:
    key: Key
    node: str | None
    requests: Mapping[str, int]  # extended resources only
    terminated: bool
    phase: str
    job_label: str | None  # suanli.io/job
    failure: str | None  # why it failed, for a person
    job_uid: str | None = None  # suanli.io/job-uid: the ComputeJob it runs for
    attempt: int | None = None  # suanli.io/attempt: which bound attempt of that ComputeJob
    deleting: bool = False  # deletionTimestamp set
    disruption: str | None = None  # why it was disrupted (DisruptionTarget condition), for a person
    gated: bool = False  # still carries Suanli's scheduling gate (workloads.GATE): not pinned to its node yet
    index: int | None = None  # its Indexed Job's completion index (the replica it runs)
    uid: str = ""  # metadata.uid: a pod recreated under the same name is another pod (kube/relist.py)
    cluster: str = ""  # the member center whose cluster it is in ("": the operator's own); key and node qualified
    exit_code: int | None = None  # a failed pod's first container that exited non-zero: its exit code

    @property
    def namespace(self) -> str:
        """Its namespace in its own cluster (the ComputeJob it runs for is in the hub's namespace of that name)."""
        return local_name(self.key[0])

    @property
    def job_key(self) -> Key | None:
        """(namespace, suanli.io/job label) of the ComputeJob it runs for, in the hub."""
        return (self.namespace, self.job_label) if self.job_label else None

    @property
    def lost(self) -> str | None:
        """Why this replica is lost to something other than the application (None if it is not): a
        DisruptionTarget condition (node lost, eviction, preemption), or deleted before it finished."""
        if self.disruption is not None:
            return self.disruption
        if self.deleting and not self.terminated:
            return f"pod {self.key[1]} was deleted while {self.phase}"
        return None


def _disruption(obj: Mapping[str, Any]) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "DisruptionTarget" and c.get("status") == "True":
            name = (obj.get("metadata") or {}).get("name", "")
            return f"pod {name} was disrupted ({c.get('reason') or 'DisruptionTarget'}: {c.get('message') or 'no message'})"
    return None


def _int_label(labels: Mapping[str, Any], key: str) -> int | None:
    try:
        return int(labels[key])
    except (KeyError, TypeError, ValueError):
        return None


def _failed_container(status: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """(name, terminated state) of the container a failed pod failed by: the first that exited with a
    non-zero code, else the first that terminated at all (a sidecar that exited 0 is not the failure)."""
    ended = [(str(cs.get("name") or ""), term) for cs in status.get("containerStatuses") or []
             if (term := (cs.get("state") or {}).get("terminated"))]
    return next(((n, t) for n, t in ended if t.get("exitCode") not in (0, None)), ended[0] if ended else None)


def _failure(obj: Mapping[str, Any]) -> str | None:
    status = obj.get("status") or {}
    if status.get("phase") != "Failed":
        return None
    name = (obj.get("metadata") or {}).get("name", "")
    failed = _failed_container(status)
    if failed is not None:
        container, term = failed
        extra = f": {term['message']}" if term.get("message") else ""
        return (
            f"pod {name}: container {container} exited with code {term.get('exitCode')} "
            f"({term.get('reason') or 'no reason given'}){extra}"
        )
    reason = status.get("reason") or "Failed"
    return f"pod {name}: {reason}: {status.get('message') or 'no message'}"


def _exit_code(obj: Mapping[str, Any]) -> int | None:
    """The exit code of the container the failed pod failed by (`_failed_container`), if not 0."""
    status = obj.get("status") or {}
    failed = _failed_container(status) if status.get("phase") == "Failed" else None
    code = failed[1].get("exitCode") if failed is not None else None
    return code if isinstance(code, int) and code != 0 else None


def pod_info(obj: Mapping[str, Any], cluster: str = "") -> PodInfo:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    requests: dict[str, int] = {}
    for container in spec.get("containers") or []:
        res = container.get("resources") or {}
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        for name, value in merged.items():
            if "/" in str(name):
                requests[str(name)] = requests.get(str(name), 0) + quantity(value)
    phase = status.get("phase") or "Pending"
    labels = meta.get("labels") or {}
    namespace, name = key_of(obj)
    node = spec.get("nodeName") or None
    return PodInfo(
        key=(qualify(cluster, namespace), name),
        node=qualify(cluster, node) if node else None,
        requests=requests,
        terminated=phase in ("Succeeded", "Failed"),
        phase=phase,
        job_label=labels.get(workloads.LABEL_JOB),
        failure=_failure(obj),
        job_uid=labels.get(workloads.LABEL_UID),
        attempt=_int_label(labels, workloads.LABEL_ATTEMPT),
        deleting=bool(meta.get("deletionTimestamp")),
        disruption=_disruption(obj),
        gated=_gated(spec),
        index=_completion_index(meta, labels),
        uid=str(meta.get("uid") or ""),
        cluster=cluster,
        exit_code=_exit_code(obj),
    )


def _gated(spec: Mapping[str, Any]) -> bool:
    gates = spec.get("schedulingGates")
    return any(g.get("name") == workloads.GATE for g in gates) if gates else False


def _completion_index(meta: Mapping[str, Any], labels: Mapping[str, Any]) -> int | None:
    """The completion index of a Suanli Job's pod: its label (Kubernetes 1.28+), else its annotation."""
    if not labels.get(workloads.LABEL_JOB):
        return None  # not Suanli's: nothing to read (the common case for most pods, kept cheap)
    index = _int_label(labels, workloads.COMPLETION_INDEX)
    if index is None:
        index = _int_label(meta.get("annotations") or {}, workloads.COMPLETION_INDEX)
    return index


def pod_info_relevant(info: PodInfo) -> bool:
    """Pods the cache keeps: Suanli's own, and any requesting an extended (accelerator) resource."""
    return bool(info.job_label or info.requests)


@dataclasses.dataclass(frozen=True)
class WorkloadInfo:
    """A batch Job made by Suanli, reduced to what the ComputeJob status needs."""

    key: Key  # the batch Job's own key
    job_label: str
    active: int
    succeeded: int
    failed: int
    complete: bool
    failed_reason: str | None  # "Reason: message" of the Failed condition
    start_time: float | None
    completion_time: float | None
    owner_uid: str | None
    uid: str = ""
    attempt: int | None = None  # suanli.io/attempt: the bound attempt it was made for
    pool: str | None = None  # suanli.io/pool
    deleting: bool = False  # deletionTimestamp set: going away with its pods
    disrupted: bool = False  # failed by its pod failure policy's DisruptionTarget rule
    cluster: str = ""  # the member center whose cluster it is in ("": the operator's own); key qualified

    @property
    def namespace(self) -> str:
        return local_name(self.key[0])

    @property
    def finished(self) -> bool:
        return self.complete or self.failed_reason is not None


def workload_info(obj: Mapping[str, Any], cluster: str = "") -> WorkloadInfo:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    complete, failed_reason, finished_at, disrupted = False, None, None, False
    for c in status.get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") == "Complete":
            complete = True
            finished_at = parse_time(c.get("lastTransitionTime"))
        elif c.get("type") == "Failed":
            failed_reason = f"{c.get('reason') or 'Failed'}: {c.get('message') or 'no message'}"
            finished_at = parse_time(c.get("lastTransitionTime"))
            disrupted = c.get("reason") == "PodFailurePolicy" and "DisruptionTarget" in str(c.get("message") or "")
    labels = meta.get("labels") or {}
    # In a member cluster there is no owner reference (the ComputeJob is in the hub): its uid label says.
    owner = next((r.get("uid") for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    if cluster:
        owner = labels.get(workloads.LABEL_UID)
    namespace, name = key_of(obj)
    return WorkloadInfo(
        key=(qualify(cluster, namespace), name),
        job_label=labels.get(workloads.LABEL_JOB, ""),
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        complete=complete,
        failed_reason=failed_reason,
        start_time=parse_time(status.get("startTime")),
        completion_time=parse_time(status.get("completionTime")) or finished_at,
        owner_uid=owner,
        uid=str(meta.get("uid") or ""),
        attempt=_int_label(labels, workloads.LABEL_ATTEMPT),
        pool=labels.get(workloads.LABEL_POOL),
        deleting=bool(meta.get("deletionTimestamp")),
        disrupted=disrupted,
        cluster=cluster,
    )
