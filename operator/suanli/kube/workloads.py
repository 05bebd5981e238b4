"""The batch/v1 Job that runs a bound ComputeJob: a pure builder, plus the names and labels.

Decisions fixed here (see DESIGN.md "Running workloads"):

- Name: `cj-<name>`, or `cj-<first 40 chars>-<hash>` when longer than 52 characters, so an
  Indexed Job's pod host names (`<job>-<index>`) stay within 63. The name is a function of the
  ComputeJob's name alone: after a restart the operator finds (adopts) the Job it made instead of
  making a second one.
- In the ComputeJob's own namespace, owned by it (controller, blockOwnerDeletion): deleting the
  ComputeJob garbage-collects the Job and its pods. In a member cluster (`member=True`) there is no
  owner to reference (the ComputeJob is in the hub): the Job is in the namespace of the same name
  there, labelled back to the ComputeJob (its namespace, name and uid) and to the hub that made it
  (`LABEL_HUB`), and the operator deletes it itself (kube/members).
- `completionMode: Indexed`, `parallelism = completions = replicas`: one pod per gang member.
- `backoffLimit: 0`: a gang is all or nothing, and the placement (and energy estimate) was made
  for one run. A pod that fails on its own (its container exits non-zero) fails the ComputeJob
  with the pod's reason; resubmitting is the user's choice. A pod lost to a disruption
  (`DisruptionTarget`: node lost, eviction, preemption) fails the Job through its pod failure
  policy, and the operator sends the gang back to the queue as a whole (`kube/lifecycle.py`).
- Labelled with the ComputeJob's uid and the bound attempt it was made for, so a Job (or pod) of
  an earlier attempt, or of a ComputeJob deleted and recreated under the same name, is never
  taken for the current one.
- The chosen pool's accelerator resource is set as request AND limit on the main container
  (`main`, or the first one), its image is `spec.images[<type>]`, and the pool's nodeSelector
  and tolerations are merged into the pod template. For a pool whose accelerators a DRA driver
  hands out (`deviceClassName`), the main container claims them instead (`resources.claims`) from
  a ResourceClaim each pod gets from the ResourceClaimTemplate named like the Job, which asks for
  `accelerators.count` devices of the class (and the pool's selectors); the template is owned by
  the Job in the Job's cluster, like the Service, so it goes with it.
- Rendezvous: a gang of more than one replica gets a headless Service named like the Job (dots made
  dashes), owned by the Job in the Job's cluster (so it goes with the Job: a requeue, a suspend, a
  member's Job deleted), selecting the attempt's pods and publishing them before they are ready; the
  pods' `subdomain` is that Service, so replica i is `<job>-<i>.<service>` (the Job controller sets an
  Indexed Job pod's hostname to `<job>-<i>`). Every container gets the launcher environment
  (`ENV_DOC`); a variable the template sets already is left as the user wrote it.
- Its pods are created with the scheduling gate `suanli.io/placement`: no scheduler looks at them
  until the operator has pinned each one to the node the capacity ledger chose for its completion
  index (`status.binding.nodes`) and lifted the gate (`kube/gates.py`), so the cluster's scheduler
  profile (spreading, say) cannot scatter a gang over the nodes another gang was counted on.

Pure: dictionaries in, dictionaries out; no I/O.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from typing import Any

LABEL_JOB = "suanli.io/job"
LABEL_CENTER = "suanli.io/center"
LABEL_POOL = "suanli.io/pool"
LABEL_UID = "suanli.io/job-uid"  # the ComputeJob's uid: a job recreated under the same name never sees these
LABEL_ATTEMPT = "suanli.io/attempt"  # which bound attempt (status.attempts when it was bound) made them
LABEL_NAMESPACE = "suanli.io/job-namespace"  # member Jobs: the hub namespace of their ComputeJob
LABEL_HUB = "suanli.io/hub"  # member Jobs: the hub that made them (members.hub_name); only it ever deletes them
GATE = "suanli.io/placement"  # the pods' scheduling gate, lifted once each is pinned to its node (kube/gates.py)
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # an Indexed Job pod's index (label and annotation)
CLAIM = "suanli-accelerators"  # the pod's claim (and the template's request) of a DRA pool's devices
MAX_JOB_NAME = 52
MAX_LABEL = 63
API_VERSION = "suanli.io/v1alpha1"
KIND = "ComputeJob"


def _short(text: str, limit: int, prefix: str = "") -> str:
    full = prefix + text
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{prefix}{text[: limit - len(prefix) - 11].rstrip('-.')}-{digest}"


def job_name(compute_job_name: str) -> str:
    """The deterministic batch Job name of a ComputeJob."""
    return _short(compute_job_name, MAX_JOB_NAME, "cj-")


def label_value(text: str) -> str:
    """A label value for a name (hashed when longer than 63 characters)."""
    return _short(text, MAX_LABEL)


def owner_reference(cj: dict[str, Any]) -> dict[str, Any]:
    meta = cj["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


DEFAULT_PORT = 29500
# Launcher environment (torchrun's contract, plus Suanli's own names), each variable's value by what it means.
ENV_DOC = {
    "WORLD_SIZE": "replicas", "SUANLI_REPLICAS": "replicas",
    "RANK": "the completion index", "SUANLI_REPLICA_INDEX": "the completion index",
    "MASTER_ADDR": "replica 0's stable name", "MASTER_PORT": "spec.rendezvous.port (default 29500)",
    "NPROC_PER_NODE": "accelerators per replica", "SUANLI_ACCELERATORS_PER_REPLICA": "accelerators per replica",
    "SUANLI_CENTER": "the bound center", "SUANLI_POOL": "the bound pool",
    "SUANLI_ACCELERATOR_TYPE": "GPU, NPU, DCU or MLU", "SUANLI_ACCELERATOR_MODEL": "the pool's model",
}
# What a type's own stack reads beyond torchrun's variables, set only for that type. Ascend NPUs: MindSpore's
# dynamic networking (msrun; Huawei's MindCluster ascend-operator sets the same for its AscendJobs) — MS_ROLE
# is left to msrun, which starts the scheduler process on node rank 0. NVIDIA (NCCL), Hygon DCU (DTK, RCCL)
# and Cambricon MLU (torch_mlu, CNCL) distributed training reads the torchrun variables above, nothing more.
# Never a *_VISIBLE_DEVICES: the device plugin (or DRA driver) sets those, and a container's own env is
# applied after the device plugin's (kubelet GenerateRunContainerOptions), so it would override them.
STACK_ENV_DOC = {
    "NPU": {
        "MS_SCHED_HOST": "replica 0's stable name (MASTER_ADDR)", "MS_SCHED_PORT": "MASTER_PORT",
        "MS_WORKER_NUM": "replicas x accelerators per replica", "MS_LOCAL_WORKER": "accelerators per replica",
        "MS_NODE_RANK": "the completion index", "MS_SERVER_NUM": "0 (no parameter servers)",
    },
}


def service_name(job: str) -> str:
    """The headless Service of a batch Job: its name, as a DNS label (a Service name has no dots)."""
    if "." not in job:
        return job
    digest = hashlib.sha256(job.encode()).hexdigest()[:10]
    return f"{job.replace('.', '-')[:MAX_LABEL - 11].rstrip('-')}-{digest}"


def rendezvous_env(cj: dict[str, Any], *, center: str, pool: str, accelerator_type: str, accelerator_model: str,
                   replicas: int, count: int) -> list[dict[str, Any]]:
    """The environment every container of the job's pods gets (see ENV_DOC, and STACK_ENV_DOC for its type)."""
    name = job_name(cj["metadata"]["name"])
    port = int(((cj["spec"].get("rendezvous") or {}).get("port")) or DEFAULT_PORT)
    master = f"{name}-0.{service_name(name)}" if replicas > 1 else f"{name}-0"
    index: dict[str, Any] = {"valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}
    plain = {
        "WORLD_SIZE": str(replicas), "SUANLI_REPLICAS": str(replicas),
        "MASTER_ADDR": master, "MASTER_PORT": str(port),
        "NPROC_PER_NODE": str(count), "SUANLI_ACCELERATORS_PER_REPLICA": str(count),
        "SUANLI_CENTER": center, "SUANLI_POOL": pool,
        "SUANLI_ACCELERATOR_TYPE": accelerator_type, "SUANLI_ACCELERATOR_MODEL": accelerator_model,
    }
    if accelerator_type == "NPU":
        plain.update({
            "MS_SCHED_HOST": master, "MS_SCHED_PORT": str(port), "MS_WORKER_NUM": str(replicas * count),
            "MS_LOCAL_WORKER": str(count), "MS_SERVER_NUM": "0",
        })
    out: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain.items()]
    out += [{"name": "RANK", **index}, {"name": "SUANLI_REPLICA_INDEX", **index}]
    if accelerator_type == "NPU":
        out.append({"name": "MS_NODE_RANK", **index})
    return sorted(out, key=lambda e: str(e["name"]))


def _with_env(container: dict[str, Any], env: list[dict[str, Any]]) -> None:
    mine = list(container.get("env") or [])
    names = {e.get("name") for e in mine}
    container["env"] = mine + [e for e in env if e["name"] not in names]


def build_service(job: dict[str, Any]) -> dict[str, Any]:
    """The headless Service of a gang's batch Job `job` (as the API returned it: its uid is the owner)."""
    meta = job["metadata"]
    labels = dict(meta.get("labels") or {})
    selector = {k: labels[k] for k in (LABEL_JOB, LABEL_UID, LABEL_ATTEMPT) if k in labels}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"],
                                 "controller": True}],
        },
        "spec": {"clusterIP": "None", "selector": selector, "publishNotReadyAddresses": True},
    }


def device_request(device_class_name: str, selectors: Sequence[str], count: int) -> dict[str, Any]:
    """The ResourceClaim spec a replica of a DRA pool asks for: `count` devices of the class."""
    exactly: dict[str, Any] = {"deviceClassName": device_class_name, "allocationMode": "ExactCount", "count": count}
    if selectors:
        exactly["selectors"] = [{"cel": {"expression": e}} for e in selectors]
    return {"devices": {"requests": [{"name": "accelerators", "exactly": exactly}]}}


def build_claim_template(job: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """The ResourceClaimTemplate of a DRA pool's batch Job `job` (as the API returned it: its uid is
    the owner), with `request` (`device_request`) as every pod's claim."""
    meta = job["metadata"]
    labels = dict(meta.get("labels") or {})
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"],
                                 "controller": True}],
        },
        "spec": {"metadata": {"labels": labels}, "spec": request},
    }


def claims_devices(job: dict[str, Any]) -> bool:
    """Whether a batch Job made here asks for a DRA pool's devices (and so has a ResourceClaimTemplate)."""
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    return any(c.get("name") == CLAIM for c in pod.get("resourceClaims") or [])


def gang(job: dict[str, Any]) -> bool:
    """Whether a batch Job made here runs more than one replica (and so has a Service)."""
    return int((job.get("spec") or {}).get("completions") or 1) > 1


def _main_container(containers: list[dict[str, Any]]) -> dict[str, Any]:
    for container in containers:
        if container.get("name") == "main":
            return container
    return containers[0]


def build_job(
    cj: dict[str, Any],
    *,
    center: str,
    pool: str,
    accelerator_type: str,
    resource_name: str = "",
    device_class_name: str = "",
    accelerator_model: str = "",
    node_selector: dict[str, str],
    tolerations: list[dict[str, Any]],
    attempt: int = 0,
    hub: str | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job manifest for ComputeJob `cj` (a dict as read from the API) bound to a pool, for
    its bound attempt `attempt` (status.attempts when it was bound). `hub`: the hub's name when the Job
    goes to a member cluster (labelled back, no owner reference); None in the operator's own cluster.
    `resource_name`: the pool's device-plugin resource; or `device_class_name`: its DRA DeviceClass (the
    pods claim their devices from the ResourceClaimTemplate named like the Job: `build_claim_template`)."""
    meta = cj["metadata"]
    spec = cj["spec"]
    name = meta["name"]
    replicas = int(spec.get("replicas", 1))
    count = int(spec["accelerators"]["count"])
    labels = {
        LABEL_JOB: label_value(name),
        LABEL_CENTER: label_value(center),
        LABEL_POOL: label_value(pool),
        LABEL_UID: str(meta.get("uid") or ""),
        LABEL_ATTEMPT: str(attempt),
    }
    if hub is not None:
        labels[LABEL_NAMESPACE] = meta.get("namespace") or "default"
        labels[LABEL_HUB] = label_value(hub)

    template = copy.deepcopy(spec.get("template") or {})
    tmeta = template.setdefault("metadata", {}) or {}
    template["metadata"] = tmeta
    tmeta["labels"] = {**(tmeta.get("labels") or {}), **labels}
    pod = template.setdefault("spec", {}) or {}
    template["spec"] = pod
    containers = pod.get("containers") or [{"name": "main"}]
    pod["containers"] = containers
    main = _main_container(containers)
    main.setdefault("name", "main")
    main["image"] = spec["images"][accelerator_type]
    resources = main.setdefault("resources", {}) or {}
    main["resources"] = resources
    if device_class_name:
        claims = [c for c in resources.get("claims") or [] if c.get("name") != CLAIM]
        resources["claims"] = [*claims, {"name": CLAIM}]
        pod_claims = [c for c in pod.get("resourceClaims") or [] if c.get("name") != CLAIM]
        pod["resourceClaims"] = [*pod_claims, {"name": CLAIM, "resourceClaimTemplateName": job_name(name)}]
    else:
        for part in ("requests", "limits"):
            resources[part] = {**(resources.get(part) or {}), resource_name: str(count)}
    env = rendezvous_env(cj, center=center, pool=pool, accelerator_type=accelerator_type,
                         accelerator_model=accelerator_model, replicas=replicas, count=count)
    for container in [*containers, *(pod.get("initContainers") or [])]:
        _with_env(container, env)
    if replicas > 1:
        pod["subdomain"] = service_name(job_name(name))
    pod["nodeSelector"] = {**(pod.get("nodeSelector") or {}), **node_selector}
    existing = list(pod.get("tolerations") or [])
    pod["tolerations"] = existing + [t for t in tolerations if t not in existing]
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        pod["restartPolicy"] = "Never"
    # Held back from every scheduler until the operator pins the replica to the node its ledger chose.
    gates = [g for g in pod.get("schedulingGates") or [] if g.get("name") != GATE]
    pod["schedulingGates"] = [*gates, {"name": GATE}]
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": replicas,
        "parallelism": replicas,
        "backoffLimit": 0,
        "template": template,
    }
    if pod["restartPolicy"] == "Never":
        # A replica lost to a disruption (node lost, eviction, preemption) fails the Job with a reason that
        # says so; the operator sends the whole gang back to the queue instead of failing the ComputeJob.
        job_spec["podFailurePolicy"] = {
            "rules": [{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
        }

    job_meta: dict[str, Any] = {
        "name": job_name(name),
        "namespace": meta.get("namespace") or "default",
        "labels": labels,
        "annotations": {"suanli.io/compute-job": f"{meta.get('namespace') or 'default'}/{name}"},
    }
    if hub is None:
        job_meta["ownerReferences"] = [owner_reference(cj)]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": job_spec}


def existing_job(existing: dict[str, Any], manifest: dict[str, Any], owner_uid: str) -> str:
    """What an existing Job of the name `manifest` wants is, for the ComputeJob with uid `owner_uid`:

    - "current": this ComputeJob's Job for the same attempt and pool, not being deleted: adopt it;
    - "stale": made by Suanli for a ComputeJob of this name (an earlier attempt, another pool, being
      deleted, or an earlier ComputeJob deleted and recreated under the name): it must go first;
    - "foreign": anything else (someone's own Job of that name): never touched.
    """
    meta = existing.get("metadata") or {}
    labels = meta.get("labels") or {}
    want = manifest["metadata"]["labels"]
    if LABEL_HUB in want:  # a member cluster's: labelled back to the hub, no owner reference
        if labels.get(LABEL_HUB) != want[LABEL_HUB] or labels.get(LABEL_JOB) != want[LABEL_JOB] \
                or labels.get(LABEL_NAMESPACE) != want[LABEL_NAMESPACE]:
            return "foreign"
        uid = labels.get(LABEL_UID)
    else:
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
        ours = [r for r in refs if r.get("kind") == KIND and str(r.get("apiVersion", "")).startswith("suanli.io/")]
        owner_name = (manifest["metadata"].get("ownerReferences") or [{}])[0].get("name")
        if not ours or ours[0].get("name") != owner_name:
            return "foreign"
        uid = ours[0].get("uid")
    same = (
        uid == owner_uid
        and labels.get(LABEL_ATTEMPT, "0") == want.get(LABEL_ATTEMPT)
        and labels.get(LABEL_POOL) == want.get(LABEL_POOL)
        and labels.get(LABEL_CENTER) == want.get(LABEL_CENTER)
        and not meta.get("deletionTimestamp")
    )
    return "current" if same else "stale"


def owned_by(job: dict[str, Any], uid: str) -> bool:
    """True if the batch Job's controller reference is the ComputeJob with this uid (adoption check)."""
    refs = (job.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)
