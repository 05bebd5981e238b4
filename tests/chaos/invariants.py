"""What must hold while the chaos suite breaks things: small pure functions over plain API dicts.

Each ``check_*`` takes objects exactly as the API returns them (JSON decoded: ComputeCenters, Nodes,
Pods, batch Jobs, ComputeJobs) and returns ``Finding``s, one per thing that looks wrong *now*. A
finding is not yet a violation: the cluster is read with several LISTs at slightly different
instants and the operator reacts within a second or so, so most kinds must persist before they
count. ``Tracker`` applies those rules (``RULES``) over successive checks and turns findings into
``Violation``s; the time is passed in. No I/O, no clock: the unit tests
(tests/unit/test_chaos_invariants.py) feed crafted dicts.

The invariants (letters as in the issue):

(a) ``check_allocation``: a pool's reported ``allocated`` never exceeds its ``capacity`` (at once),
    and equals the accelerator requests of the non-terminated pods on the pool's usable nodes
    (Ready, schedulable, matching its nodeSelector: the operator's own definition of capacity) —
    a mismatch counts when the same offset persists over a resync window.
(b) ``check_bound_capacity``: the ComputeJobs whose status says Bound or Running in a pool need at
    most the pool's capacity (Ready nodes' allocatable, cordoned ones included since their pods keep
    running, plus what live pods still hold on nodes that are gone or NotReady, or what nodes lost a
    moment ago offered: the operator gets a grace period to requeue their gangs). At once when one
    of them has a finished batch Job (its accelerators were given away before its terminal phase
    was written), else when seen twice in a row.
(c) ``check_single_workload``: no ComputeJob has two batch Jobs (at once), nor live pods of two
    different batch Jobs (twice in a row).
(d) ``check_job_owners``: every batch Job labelled ``suanli.io/job`` is controlled by a live
    ComputeJob of that name and uid (after a grace for garbage collection: 45 s by default, since
    the garbage collector is down for ~35 s after an API-server restart while the
    controller-manager wins its lease back).
(e) ``check_pod_pools``: every running pod of a job (not being deleted) is on a node matching the
    nodeSelector of the pool its ComputeJob's status names (twice in a row); a running pod whose
    batch Job is gone is the garbage collector's, and counts after the same grace as (d).
(f) ``check_final``: at the end every ComputeJob is Succeeded, Failed with a real reason, or
    Queued/Deferred with a message.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

LABEL_JOB = "suanli.io/job"
BOUND_PHASES = ("Bound", "Running")
WAITING_PHASES = ("Queued", "Deferred")
TERMINAL_POD_PHASES = ("Succeeded", "Failed")
# Taints that make a node unusable for new pods (the operator's own list: kube/objects.py).
NOT_SCHEDULABLE_TAINTS = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/uninitialized")
# Failure messages that say nothing about why.
EMPTY_REASONS = frozenset({"", "failed", "error", "unknown", "none", "null", "job failed", "the job failed"})
MIN_REASON_CHARS = 12

Obj = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Finding:
    """Something that looks wrong in one check. ``key`` identifies it across checks (a finding seen
    again with the same kind and key continues a streak); ``immediate`` confirms it at once."""

    kind: str
    key: tuple[Any, ...]
    detail: str
    immediate: bool = False


@dataclasses.dataclass(frozen=True)
class Rule:
    """When a streak of findings becomes a violation: seen in at least ``min_checks`` checks in a
    row, spanning at least ``min_seconds`` from the first sighting to the latest."""

    min_checks: int = 2
    min_seconds: float = 0.0
    description: str = ""


def default_rules(resync_seconds: float = 10.0, gc_grace_seconds: float = 45.0) -> dict[str, Rule]:
    """The rule of each finding kind; the allocation mismatch must outlast the operator's resync."""
    return {
        "allocated-over-capacity": Rule(1, 0, "(a) a pool's status reports more allocated than capacity"),
        "allocated-mismatch": Rule(3, resync_seconds + 5, "(a) status allocated != live pods' requests, "
                                   "same offset for longer than a resync window"),
        "bound-over-capacity": Rule(2, 0, "(b) Bound/Running jobs in a pool need more than its capacity"),
        "two-jobs": Rule(1, 0, "(c) a ComputeJob has two batch Jobs"),
        "two-pod-sets": Rule(2, 2, "(c) a ComputeJob has live pods of two batch Jobs"),
        "orphan-job": Rule(2, gc_grace_seconds, "(d) a batch Job not controlled by a live ComputeJob of that "
                           "name and uid, past the garbage-collection grace"),
        "pod-outside-pool": Rule(2, 2, "(e) a running pod is not in the pool its ComputeJob's status names"),
        "orphan-pod": Rule(2, gc_grace_seconds, "(e) a pod whose batch Job is gone still runs, past the "
                           "garbage-collection grace"),
        "not-final": Rule(1, 0, "(f) at the end, a job neither final nor waiting with a reason"),
        "operator-exited": Rule(1, 0, "the operator process exited without being killed"),
    }


# --- reading plain API dicts -----------------------------------------------------------------


def meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def status(obj: Obj) -> Mapping[str, Any]:
    return obj.get("status") or {}


def quantity(value: Any) -> int:
    """An accelerator quantity ("8", 8, "1k") as a whole number; anything unreadable is 0."""
    text = str(value).strip()
    try:
        if text.endswith("k"):
            return int(float(text[:-1]) * 1000)
        return int(float(text))
    except ValueError:
        return 0


@dataclasses.dataclass(frozen=True)
class Pool:
    center: str
    name: str
    selector: Mapping[str, str]
    resource: str


def pools(centers: Iterable[Obj]) -> list[Pool]:
    """Every pool of the given ComputeCenters (device-plugin pools: those with a resourceName)."""
    out = []
    for center in centers:
        for pool in (center.get("spec") or {}).get("pools") or []:
            if pool.get("resourceName"):
                out.append(Pool(meta(center).get("name", ""), pool.get("name", ""),
                                dict(pool.get("nodeSelector") or {}), pool["resourceName"]))
    return out


def find_pool(all_pools: Sequence[Pool], center: str, name: str) -> Pool | None:
    return next((p for p in all_pools if p.center == center and p.name == name), None)


def labels_match(labels: Mapping[str, str] | None, selector: Mapping[str, str]) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def node_ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status(node).get("conditions") or [])


def node_usable(node: Obj) -> bool:
    """Ready and schedulable: not cordoned, no not-ready/unreachable/unschedulable taint."""
    spec = node.get("spec") or {}
    blocked = any(
        t.get("effect") in ("NoSchedule", "NoExecute") and str(t.get("key", "")).startswith(NOT_SCHEDULABLE_TAINTS)
        for t in spec.get("taints") or []
    )
    return node_ready(node) and not spec.get("unschedulable") and not blocked


def allocatable(node: Obj, resource: str) -> int:
    return quantity((status(node).get("allocatable") or {}).get(resource, 0))


def pod_live(pod: Obj) -> bool:
    return status(pod).get("phase") not in TERMINAL_POD_PHASES


def pod_requests(pod: Obj, resource: str) -> int:
    """What a pod asks of ``resource`` (requests, else limits, summed over its containers)."""
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        res = container.get("resources") or {}
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        total += quantity(merged.get(resource, 0))
    return total


def controller_of(obj: Obj, kind: str | None = None) -> Mapping[str, Any] | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller") and (kind is None or ref.get("kind") == kind):
            return ref
    return None


def job_finished(job: Obj) -> str | None:
    """How a batch Job ended, or None while it runs: a Complete/Failed condition (or the
    SuccessCriteriaMet/FailureTarget ones the Job controller sets first), or its pods' counts
    (all completions succeeded; a failed pod past backoffLimit)."""
    for cond in status(job).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget"):
            return str(cond["type"])
    spec, st = job.get("spec") or {}, status(job)
    completions = int(spec.get("completions") or spec.get("parallelism") or 1)
    if int(st.get("succeeded") or 0) >= completions:
        return f"succeeded {st.get('succeeded')}/{completions}"
    if int(st.get("failed") or 0) > int(spec.get("backoffLimit") or 0):
        return f"failed {st.get('failed')}"
    return None


def job_state(job: Obj | None) -> str:
    """A batch Job's state in a few words, for evidence."""
    if job is None:
        return "no batch Job"
    st = status(job)
    done = job_finished(job)
    counts = f"active {st.get('active') or 0}, succeeded {st.get('succeeded') or 0}, failed {st.get('failed') or 0}"
    return f"Job {'finished (' + done + ')' if done else 'running'}: {counts}"


def job_demand(cj: Obj, workload: Obj | None, resource: str) -> int:
    """Accelerators of ``resource`` a ComputeJob holds: its batch Job's (parallelism x the pod
    template's request) when there is one, else replicas x accelerators.count of its spec."""
    if workload is not None:
        wspec = workload.get("spec") or {}
        per_pod = pod_requests({"spec": (wspec.get("template") or {}).get("spec") or {}}, resource)
        return int(wspec.get("parallelism") or 1) * per_pod
    spec = cj.get("spec") or {}
    return int(spec.get("replicas") or 1) * int((spec.get("accelerators") or {}).get("count") or 0)


def workloads_by_owner(jobs: Iterable[Obj]) -> dict[str, Obj]:
    """Batch Jobs by the uid of the ComputeJob controlling them."""
    out: dict[str, Obj] = {}
    for job in jobs:
        ref = controller_of(job, "ComputeJob")
        if ref is not None and ref.get("uid"):
            out[str(ref["uid"])] = job
    return out


def job_owner_map(jobs: Iterable[Obj]) -> dict[str, str]:
    """batch Job uid -> uid of the ComputeJob controlling it (to attribute pods after a Job is gone)."""
    out = {}
    for job in jobs:
        ref = controller_of(job, "ComputeJob")
        if ref is not None and meta(job).get("uid"):
            out[str(meta(job)["uid"])] = str(ref.get("uid"))
    return out


# --- (a) allocation ------------------------------------------------------------------------


def real_allocation(pool: Pool, nodes: Iterable[Obj], pods: Iterable[Obj]) -> int:
    """Accelerators requested by live pods on the pool's usable nodes."""
    usable = {meta(n).get("name") for n in nodes if labels_match(meta(n).get("labels"), pool.selector) and node_usable(n)}
    return sum(pod_requests(p, pool.resource) for p in pods
               if pod_live(p) and (p.get("spec") or {}).get("nodeName") in usable)


def check_allocation(centers: Sequence[Obj], nodes: Sequence[Obj], pods: Sequence[Obj]) -> list[Finding]:
    out: list[Finding] = []
    all_pools = pools(centers)
    for center in centers:
        cname = meta(center).get("name", "")
        for entry in status(center).get("pools") or []:
            pname = entry.get("name", "")
            cap, alloc = int(entry.get("capacity") or 0), int(entry.get("allocated") or 0)
            if alloc > cap:
                out.append(Finding("allocated-over-capacity", (cname, pname),
                                   f"{cname}/{pname}: status allocated {alloc} > capacity {cap}", immediate=True))
            pool = find_pool(all_pools, cname, pname)
            if pool is None:
                continue
            real = real_allocation(pool, nodes, pods)
            if alloc != real:
                out.append(Finding("allocated-mismatch", (cname, pname, alloc - real),
                                   f"{cname}/{pname}: status allocated {alloc} (capacity {cap}) but live pods on its "
                                   f"usable nodes request {real}"))
    return out


# --- (b) bound jobs within capacity ----------------------------------------------------------


def pool_capacity(pool: Pool, nodes: Sequence[Obj], pods: Sequence[Obj], lost_nodes: Sequence[Obj] = ()) -> tuple[int, int]:
    """(allocatable of the pool's Ready nodes, and what is still held elsewhere: requests of live pods
    on a node of the pool that is gone or NotReady — a lost node's accelerators stay held until its
    pods go — or, if more, the allocatable of ``lost_nodes``: the pool's nodes lost a moment ago,
    whose jobs the operator has a grace period to requeue)."""
    ready = {meta(n).get("name"): n for n in nodes if node_ready(n)}
    cap = sum(allocatable(n, pool.resource) for n in ready.values() if labels_match(meta(n).get("labels"), pool.selector))
    stranded = sum(
        pod_requests(p, pool.resource) for p in pods
        if pod_live(p) and (p.get("spec") or {}).get("nodeName")
        and (p["spec"]["nodeName"] not in ready)
        and labels_match((p.get("spec") or {}).get("nodeSelector"), pool.selector)
    )
    lost = sum(allocatable(n, pool.resource) for n in lost_nodes
               if meta(n).get("name") not in ready and labels_match(meta(n).get("labels"), pool.selector))
    return cap, max(stranded, lost)


def check_bound_capacity(
    centers: Sequence[Obj], nodes: Sequence[Obj], pods: Sequence[Obj], jobs: Sequence[Obj], computejobs: Sequence[Obj],
    lost_nodes: Sequence[Obj] = (),
) -> list[Finding]:
    """``lost_nodes``: nodes that were Ready a moment ago and are gone or NotReady now (their
    capacity still counts, for a grace period the caller decides). A ComputeJob being deleted
    claims nothing any more (its phase is left as it was; what its pods still hold is (a)'s).

    At once (``immediate``) when one of the counted jobs is done in fact: its batch Job finished, or
    it reads Running with no live pod left — its accelerators went to the others before its own
    phase said so."""
    out: list[Finding] = []
    by_owner = workloads_by_owner(jobs)
    live = collections.Counter((meta(p).get("namespace"), (meta(p).get("labels") or {}).get(LABEL_JOB))
                               for p in pods if pod_live(p))
    for pool in pools(centers):
        counted = [
            cj for cj in computejobs
            if status(cj).get("phase") in BOUND_PHASES and not meta(cj).get("deletionTimestamp")
            and (status(cj).get("binding") or {}).get("center") == pool.center
            and (status(cj).get("binding") or {}).get("pool") == pool.name
        ]
        if not counted:
            continue
        workload = {meta(cj).get("name", ""): by_owner.get(str(meta(cj).get("uid"))) for cj in counted}
        need = {name: job_demand(cj, workload[name], pool.resource) for cj in counted if (name := meta(cj).get("name", ""))}
        cap, held = pool_capacity(pool, nodes, pods, lost_nodes)
        if sum(need.values()) <= cap + held:
            continue
        done: dict[str, str] = {}
        for cj in counted:
            name = meta(cj).get("name", "")
            pods_left = live[(meta(cj).get("namespace"), name)]
            job = workload[name]
            if job is not None and job_finished(job):
                done[name] = f"{job_state(job)}, live pods {pods_left}"
            elif status(cj).get("phase") == "Running" and pods_left == 0:
                done[name] = f"Running with no live pod ({job_state(job)})"

        lines = []
        for cj in sorted(counted, key=lambda cj: (meta(cj).get("name") not in done, meta(cj).get("name", ""))):
            name = meta(cj).get("name", "")
            bound = str(status(cj).get("boundTime") or "?")[11:19]
            lines.append(f"{name} {status(cj).get('phase')} {need[name]} "
                         f"(bound {bound}, {done.get(name) or job_state(workload[name])})")
        lead = (f"done in fact but still counted: {sorted(done)}. " if done else "")
        out.append(Finding(
            "bound-over-capacity", (pool.center, pool.name),
            f"{pool.center}/{pool.name}: Bound/Running jobs need {sum(need.values())} > capacity {cap}"
            f"{f' + {held} held on lost nodes' if held else ''}; {lead}Jobs: " + "; ".join(lines),
            immediate=bool(done),
        ))
    return out


# --- (c) one workload per ComputeJob -----------------------------------------------------------


def check_single_workload(
    jobs: Sequence[Obj], pods: Sequence[Obj], computejobs: Sequence[Obj], owner_history: Mapping[str, str] | None = None
) -> list[Finding]:
    """``owner_history``: batch Job uid -> ComputeJob uid seen in earlier checks, so pods whose Job is
    already gone are attributed to the right incarnation of a ComputeJob (deleted and recreated under
    the same name); pods of an unknown Job count for the live ComputeJob."""
    out: list[Finding] = []
    owners = {**(owner_history or {}), **job_owner_map(jobs)}
    for cj in computejobs:
        ns, name, uid = meta(cj).get("namespace"), meta(cj).get("name"), str(meta(cj).get("uid"))
        mine = [j for j in jobs if meta(j).get("namespace") == ns and (meta(j).get("labels") or {}).get(LABEL_JOB) == name]
        if len(mine) > 1:
            out.append(Finding("two-jobs", (ns, name),
                               f"{ns}/{name}: {len(mine)} batch Jobs {sorted(meta(j).get('name', '') for j in mine)}",
                               immediate=True))
        sets: dict[str, list[str]] = {}
        for pod in pods:
            if meta(pod).get("namespace") != ns or (meta(pod).get("labels") or {}).get(LABEL_JOB) != name or not pod_live(pod):
                continue
            ref = controller_of(pod, "Job")
            job_uid = str(ref.get("uid")) if ref else "none"
            if owners.get(job_uid, uid) != uid:
                continue  # a previous incarnation's pod (its own Job, its own ComputeJob uid)
            sets.setdefault(job_uid, []).append(meta(pod).get("name", ""))
        if len(sets) > 1:
            out.append(Finding("two-pod-sets", (ns, name, tuple(sorted(sets))),
                               f"{ns}/{name}: live pods of {len(sets)} batch Jobs at once: "
                               + "; ".join(f"Job uid {u[:8]}: {sorted(p)}" for u, p in sorted(sets.items()))))
    return out


# --- (d) every batch Job has a live owner ------------------------------------------------------


def check_job_owners(jobs: Sequence[Obj], computejobs: Sequence[Obj]) -> list[Finding]:
    out: list[Finding] = []
    live = {(meta(cj).get("namespace"), meta(cj).get("name")): str(meta(cj).get("uid"))
            for cj in computejobs if not meta(cj).get("deletionTimestamp")}
    for job in jobs:
        m = meta(job)
        name = (m.get("labels") or {}).get(LABEL_JOB)
        if name is None:
            continue
        ref = controller_of(job, "ComputeJob")
        owner_uid = live.get((m.get("namespace"), name))
        if ref is not None and ref.get("name") == name and owner_uid is not None and str(ref.get("uid")) == owner_uid:
            continue
        why = ("no ComputeJob controller reference" if ref is None
               else f"no live ComputeJob {name}" if owner_uid is None
               else f"controlled by uid {str(ref.get('uid'))[:8]} but the live {name} is {owner_uid[:8]}")
        deleting = " (being deleted)" if m.get("deletionTimestamp") else ""
        out.append(Finding("orphan-job", (m.get("namespace"), m.get("name"), m.get("uid")),
                           f"batch Job {m.get('namespace')}/{m.get('name')}{deleting}: {why}"))
    return out


# --- (e) pods run where the status says --------------------------------------------------------


def check_pod_pools(
    centers: Sequence[Obj], nodes: Sequence[Obj], pods: Sequence[Obj], computejobs: Sequence[Obj],
    jobs: Sequence[Obj] = (), owner_history: Mapping[str, str] | None = None,
) -> list[Finding]:
    out: list[Finding] = []
    all_pools = pools(centers)
    node_labels = {meta(n).get("name"): meta(n).get("labels") or {} for n in nodes}
    owners = {**(owner_history or {}), **job_owner_map(jobs)}
    by_name = {(meta(cj).get("namespace"), meta(cj).get("name")): cj for cj in computejobs}
    job_uids = {str(meta(j).get("uid")) for j in jobs}
    namespaces = {meta(o).get("namespace") for o in (*computejobs, *jobs)}
    for pod in pods:
        m = meta(pod)
        name = (m.get("labels") or {}).get(LABEL_JOB)
        node = (pod.get("spec") or {}).get("nodeName")
        if name is None or m.get("namespace") not in namespaces:
            continue
        if status(pod).get("phase") != "Running" or not node or m.get("deletionTimestamp"):
            continue  # only running pods that are not on their way out
        key = (m.get("namespace"), m.get("name"), m.get("uid"))
        where = f"pod {m.get('namespace')}/{m.get('name')} on node {node}"
        ref = controller_of(pod, "Job")
        if ref is not None and str(ref.get("uid")) not in job_uids:
            out.append(Finding("orphan-pod", key, f"{where} runs, but its batch Job (uid {str(ref.get('uid'))[:8]}) "
                               "is gone: the garbage collector has not deleted it"))
            continue
        cj = by_name.get((m.get("namespace"), name))
        if cj is None:
            continue  # its ComputeJob is gone: (d) covers its batch Job
        if ref is not None and owners.get(str(ref.get("uid")), str(meta(cj).get("uid"))) != str(meta(cj).get("uid")):
            continue  # a previous incarnation's pod
        st = status(cj)
        binding = st.get("binding") or {}
        if st.get("phase") not in BOUND_PHASES or not binding:
            out.append(Finding("pod-outside-pool", key,
                               f"{where} runs, but ComputeJob {name} is {st.get('phase') or 'Pending'} with no pool"))
            continue
        pool = find_pool(all_pools, binding.get("center", ""), binding.get("pool", ""))
        if pool is None:
            out.append(Finding("pod-outside-pool", key,
                               f"{where}: ComputeJob {name} is bound to {binding.get('center')}/{binding.get('pool')}, "
                               "which no ComputeCenter has"))
        elif node in node_labels and not labels_match(node_labels[node], pool.selector):
            out.append(Finding("pod-outside-pool", key,
                               f"{where}: ComputeJob {name} is bound to {pool.center}/{pool.name} "
                               f"(nodeSelector {dict(pool.selector)}), the node is not in it"))
    return out


# --- (f) the end state -----------------------------------------------------------------------


def real_reason(message: str | None) -> bool:
    """A failure message that says something: not empty, not a bare word like "Failed"."""
    text = (message or "").strip()
    return len(text) >= MIN_REASON_CHARS and text.lower().rstrip(".") not in EMPTY_REASONS and any(c.isalpha() for c in text)


def workload_state(cj: Obj, jobs: Iterable[Obj], pods: Iterable[Obj]) -> str:
    """What a person on call needs to see of a ComputeJob that did not finish: its uid, the batch Jobs
    of its name (owner uid, attempt, deletion, counts, conditions) and their live pods (phase, node,
    gates)."""
    name, ns = meta(cj).get("name"), meta(cj).get("namespace")
    parts = [f"uid {str(meta(cj).get('uid', ''))[:8]}"]
    for job in jobs:
        jm = meta(job)
        if jm.get("namespace") != ns or (jm.get("labels") or {}).get("suanli.io/job") != name:
            continue
        ref = controller_of(job, "ComputeJob") or {}
        st = status(job)
        conditions = ",".join(f"{c.get('type')}={c.get('status')}" for c in st.get("conditions") or [])
        parts.append(
            f"Job {jm.get('name')} uid {str(jm.get('uid', ''))[:8]} owner {str(ref.get('uid', ''))[:8]} "
            f"attempt {(jm.get('labels') or {}).get('suanli.io/attempt')} "
            f"{'deleting ' if jm.get('deletionTimestamp') else ''}created {jm.get('creationTimestamp')} "
            f"started {st.get('startTime')} "
            f"active {st.get('active', 0)} ready {st.get('ready', 0)} succeeded {st.get('succeeded', 0)} "
            f"failed {st.get('failed', 0)} [{conditions}]")
    for pod in pods:
        pm = meta(pod)
        if pm.get("namespace") != ns or (pm.get("labels") or {}).get("suanli.io/job") != name:
            continue
        spec = pod.get("spec") or {}
        gates = [g.get("name") for g in spec.get("schedulingGates") or []]
        parts.append(f"pod {pm.get('name')} job-uid {str((pm.get('labels') or {}).get('suanli.io/job-uid', ''))[:8]} "
                     f"{status(pod).get('phase')} on {spec.get('nodeName')} gates {gates}"
                     f"{' deleting' if pm.get('deletionTimestamp') else ''}")
    if len(parts) == 1:
        parts.append("no batch Job, no live pods")
    return "; ".join(parts)


def check_final(computejobs: Sequence[Obj], jobs: Sequence[Obj] = (), pods: Sequence[Obj] = ()) -> list[Finding]:
    """(f) on the last snapshot; a job that is not final carries what its workload looked like."""
    out: list[Finding] = []
    for cj in computejobs:
        st = status(cj)
        phase, message = st.get("phase") or "Pending", (st.get("message") or "").strip()
        ok = (phase == "Succeeded"
              or (phase == "Failed" and real_reason(message))
              or (phase in WAITING_PHASES and bool(message)))
        if not ok:
            out.append(Finding("not-final", (meta(cj).get("namespace"), meta(cj).get("name")),
                               f"{meta(cj).get('namespace')}/{meta(cj).get('name')}: {phase}"
                               f"{f' ({message})' if message else ' with no message'}"
                               f" [{workload_state(cj, jobs, pods)}]", immediate=True))
    return out


def check_all(snapshot: Mapping[str, Any], owner_history: Mapping[str, str] | None = None,
              lost_nodes: Sequence[Obj] = ()) -> list[Finding]:
    """Every periodic check (a)-(e) on one snapshot {centers, nodes, pods, jobs, computejobs}."""
    centers, nodes, pods = snapshot["centers"], snapshot["nodes"], snapshot["pods"]
    jobs, cjs = snapshot["jobs"], snapshot["computejobs"]
    return [
        *check_allocation(centers, nodes, pods),
        *check_bound_capacity(centers, nodes, pods, jobs, cjs, lost_nodes),
        *check_single_workload(jobs, pods, cjs, owner_history),
        *check_job_owners(jobs, cjs),
        *check_pod_pools(centers, nodes, pods, cjs, jobs, owner_history),
    ]


def waiting_but_fits(computejobs: Sequence[Obj], centers: Sequence[Obj], nodes: Sequence[Obj],
                     pods: Sequence[Obj]) -> list[str]:
    """Queued/Deferred jobs whose gang would fit now on the free, usable nodes of some pool it could
    use (type among its types) — not a violation (a job may wait with a reason), a hint."""
    out = []
    pool_types = {(meta(c).get("name"), p.get("name")): p.get("acceleratorType")
                  for c in centers for p in (c.get("spec") or {}).get("pools") or []}
    for cj in computejobs:
        if status(cj).get("phase") not in WAITING_PHASES:
            continue
        spec = cj.get("spec") or {}
        replicas, count = int(spec.get("replicas") or 1), int((spec.get("accelerators") or {}).get("count") or 0)
        types = (spec.get("accelerators") or {}).get("types") or []
        for pool in pools(centers):
            if types and pool_types.get((pool.center, pool.name)) not in types:
                continue
            free_nodes = 0
            for node in nodes:
                if not (labels_match(meta(node).get("labels"), pool.selector) and node_usable(node)):
                    continue
                used = sum(pod_requests(p, pool.resource) for p in pods
                           if pod_live(p) and (p.get("spec") or {}).get("nodeName") == meta(node).get("name"))
                if allocatable(node, pool.resource) - used >= count:
                    free_nodes += 1
            if free_nodes >= replicas:
                out.append(f"{meta(cj).get('name')} ({status(cj).get('phase')}, {replicas}x{count}) fits "
                           f"{pool.center}/{pool.name} now: {status(cj).get('message')}")
                break
    return out


# --- persistence -----------------------------------------------------------------------------


@dataclasses.dataclass
class Violation:
    kind: str
    key: tuple[Any, ...]
    detail: str  # the evidence when it was confirmed
    first_seen: float
    confirmed_at: float
    last_seen: float
    checks: int

    @property
    def persisted_seconds(self) -> float:
        return self.last_seen - self.first_seen


@dataclasses.dataclass
class _Streak:
    first: float
    checks: int
    detail: str


class Tracker:
    """Turns findings into violations by their kind's ``Rule``. ``observe(now, findings)`` after each
    check returns the violations confirmed by it. A streak ends when a check no longer sees its
    finding: one that ends unconfirmed is counted in ``transient``; a confirmed one is one violation
    (an episode, with how long it lasted), and the same kind and key seen again later is a new one."""

    def __init__(self, rules: Mapping[str, Rule]):
        self.rules = dict(rules)
        self.streaks: dict[tuple[str, tuple[Any, ...]], _Streak] = {}
        self.open: dict[tuple[str, tuple[Any, ...]], Violation] = {}  # confirmed, still seen
        self.violations: list[Violation] = []
        self.transient: dict[str, int] = {}
        self.transient_examples: dict[str, str] = {}

    def observe(self, now: float, findings: Iterable[Finding]) -> list[Violation]:
        new: list[Violation] = []
        seen: set[tuple[str, tuple[Any, ...]]] = set()
        for f in findings:
            k = (f.kind, f.key)
            if k in seen:
                continue
            seen.add(k)
            streak = self.streaks.get(k)
            if streak is None:
                streak = self.streaks[k] = _Streak(now, 0, f.detail)
            streak.checks += 1
            if k in self.open:
                v = self.open[k]
                v.last_seen, v.checks = now, v.checks + 1
                continue
            rule = self.rules.get(f.kind, Rule())
            if f.immediate or (streak.checks >= rule.min_checks and now - streak.first >= rule.min_seconds):
                v = Violation(f.kind, f.key, f.detail, streak.first, now, now, streak.checks)
                self.open[k] = v
                self.violations.append(v)
                new.append(v)
        for k in [k for k in self.streaks if k not in seen]:
            if self.open.pop(k, None) is None:
                self.transient[k[0]] = self.transient.get(k[0], 0) + 1
                self.transient_examples.setdefault(k[0], self.streaks[k].detail)
            del self.streaks[k]
        return new

    def by_kind(self) -> dict[str, list[Violation]]:
        out: dict[str, list[Violation]] = {}
        for v in self.violations:
            out.setdefault(v.kind, []).append(v)
        return out
