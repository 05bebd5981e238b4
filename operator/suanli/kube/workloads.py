"""The batch/v1 Job that runs a bound ComputeJob: a pure builder, plus the names and labels.

Decisions fixed here (see DESIGN.md "Running workloads"):

- Name: `cj-<name>`, or `cj-<first 40 chars>-<hash>` when longer than 52 characters, so an
  Indexed Job's pod host names (`<job>-<index>`) stay within 63. The name is a function of the
  ComputeJob's name alone: after a restart the operator finds (adopts) the Job it made instead of
  making a second one.
- In the ComputeJob's own namespace, owned by it (controller, blockOwnerDeletion): deleting the
  ComputeJob garbage-collects the Job and its pods.
- `completionMode: Indexed`, `parallelism = completions = replicas`: one pod per gang member.
- `backoffLimit: 0`: a gang is all or nothing, and the placement (and energy estimate) was made
  for one run. A failed pod fails the ComputeJob with the pod's reason; resubmitting is the
  user's choice (a retry in place could land on a pool that was since given to others).
- The chosen pool's accelerator resource is set as request AND limit on the main container
  (`main`, or the first one), its image is `spec.images[<type>]`, and the pool's nodeSelector
  and tolerations are merged into the pod template.

Pure: dictionaries in, dictionaries out; no I/O.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

LABEL_JOB = "suanli.io/job"
LABEL_CENTER = "suanli.io/center"
LABEL_POOL = "suanli.io/pool"
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
    resource_name: str,
    node_selector: dict[str, str],
    tolerations: list[dict[str, Any]],
) -> dict[str, Any]:
    """The batch/v1 Job manifest for ComputeJob `cj` (a dict as read from the API) bound to a pool."""
    meta = cj["metadata"]
    spec = cj["spec"]
    name = meta["name"]
    replicas = int(spec.get("replicas", 1))
    count = int(spec["accelerators"]["count"])
    labels = {LABEL_JOB: label_value(name), LABEL_CENTER: label_value(center), LABEL_POOL: label_value(pool)}

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
    for part in ("requests", "limits"):
        resources[part] = {**(resources.get(part) or {}), resource_name: str(count)}
    pod["nodeSelector"] = {**(pod.get("nodeSelector") or {}), **node_selector}
    existing = list(pod.get("tolerations") or [])
    pod["tolerations"] = existing + [t for t in tolerations if t not in existing]
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        pod["restartPolicy"] = "Never"

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name),
            "namespace": meta.get("namespace") or "default",
            "labels": labels,
            "annotations": {"suanli.io/compute-job": f"{meta.get('namespace') or 'default'}/{name}"},
            "ownerReferences": [owner_reference(cj)],
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": replicas,
            "parallelism": replicas,
            "backoffLimit": 0,
            "template": template,
        },
    }


def owned_by(job: dict[str, Any], uid: str) -> bool:
    """True if the batch Job's controller reference is the ComputeJob with this uid (adoption check)."""
    refs = (job.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)
