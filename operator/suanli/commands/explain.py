"""`suanli explain NAMESPACE/NAME` (or NAME -n NAMESPACE; also `kubectl suanli explain`): why a live ComputeJob
is where it is, or why it waits. The kubeconfig, context and namespace are read as kubectl reads them.

Reads the job's status (written by the operator) and its Events; prints them for a person.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


def _line(out: TextIO, text: str = "") -> None:
    out.write(text + "\n")


def render(job: dict[str, Any], events: list[dict[str, Any]], out: TextIO) -> None:
    meta = job.get("metadata") or {}
    status = job.get("status") or {}
    phase = status.get("phase") or "Pending"
    _line(out, f"{meta.get('namespace')}/{meta.get('name')}: {phase}")
    if status.get("message"):
        _line(out, f"  {status['message']}")
    if phase == "Pending" and not status:
        _line(out, "  the operator has not looked at this job yet; is `suanli run` running?")
    b = status.get("binding")
    if b:
        bd = b.get("breakdown") or {}
        verb = "will run on" if phase == "Deferred" else "placed on"
        where = f", in member cluster {b['cluster']}" if b.get("cluster") else ""
        _line(out, f"\n{verb} {b['center']}/{b['pool']} ({b.get('acceleratorType')} {b.get('model')}){where}, "
                   f"score {b['score']:.3f}")
        _line(
            out,
            f"  accelerator {bd.get('accelerator', 0):.3f}  locality {bd.get('locality', 0):.3f}  energy {bd.get('energy', 0):.3f}",
        )
    if status.get("plannedStart"):
        _line(out, f"  planned start {status['plannedStart']}")
    est = status.get("estimates")
    if est:
        _line(
            out,
            f"  estimates: runtime {est['runtimeSeconds']:.0f}s, transfer {est['transferSeconds']:.0f}s, "
            f"{est['energyKWh']:.3f} kWh, {est['carbonKg']:.3f} kg CO2e, cost {est['cost']:.2f}",
        )
    if status.get("energy"):
        e = status["energy"]
        _line(out, f"  settled: {e.get('kWh')} kWh, {e.get('carbonKg')} kg CO2e ({e.get('source')})")
    ref = status.get("workloadRef")
    if ref:
        _line(out, f"  workload: {ref.get('kind')} {ref.get('namespace')}/{ref.get('name')}")
    cands = status.get("candidates") or []
    if cands:
        _line(out, "\ncandidates (best first):")
        for c in cands:
            bd = c.get("breakdown") or {}
            _line(
                out,
                f"  {c['center']}/{c['pool']}: {c['score']:.3f} (accelerator {bd.get('accelerator', 0):.2f}, "
                f"locality {bd.get('locality', 0):.2f}, energy {bd.get('energy', 0):.2f})",
            )
    rejected = status.get("rejected") or []
    if rejected:
        _line(out, "\nnot possible (closest first):")
        for r in rejected[:8]:
            _line(out, f"  {r['center']}/{r['pool']}: {r['reason']}")
    for c in status.get("conditions") or []:
        if c.get("type") == "Invalid" and c.get("status") == "True":
            _line(out, f"\nInvalid: {c.get('message')}")
    if events:
        _line(out, "\nevents (oldest first):")
        for ev in events[-15:]:
            when = ev.get("lastTimestamp") or ev.get("eventTime") or ""
            _line(out, f"  {when}  {ev.get('type', '')}  {ev.get('reason', '')}: {ev.get('message', '')}")


def run(
    target: str,
    kubeconfig: str | None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    *,
    context: str | None = None,
    namespace: str | None = None,
) -> int:
    """`target`: NAMESPACE/NAME, or NAME in `namespace` (-n), else in the context's namespace, as kubectl."""
    out = out or sys.stdout
    err = err or sys.stderr
    from kubernetes.client.exceptions import ApiException

    from suanli.kube import client as client_mod
    from suanli.kube import kubeconfig as kubeconfig_mod

    if "/" in target:
        namespace_in_target, name = target.split("/", 1)
        if namespace and namespace != namespace_in_target:
            print(f"suanli explain: {target} names namespace {namespace_in_target}, but -n says {namespace}; "
                  f"give one of them", file=err)
            return 2
        namespace = namespace_in_target or None
        if namespace is None:
            name = ""
    else:
        name = target
    if not name or "/" in name:
        print(f"suanli explain: give the job as NAMESPACE/NAME, or NAME with -n NAMESPACE (got {target!r})", file=err)
        return 2
    try:
        where = kubeconfig_mod.context(kubeconfig, context)["name"]
        api = kubeconfig_mod.client(kubeconfig, context)
        namespace = kubeconfig_mod.namespace(kubeconfig, context, namespace)
    except kubeconfig_mod.KubeconfigError as exc:
        print(f"suanli explain: {exc}", file=err)
        return 1
    try:
        k8s = client_mod.k8s
        custom = k8s.CustomObjectsApi(api)
        job: dict[str, Any] = custom.get_namespaced_custom_object(client_mod.GROUP, client_mod.VERSION, namespace, "computejobs", name)
        listed = k8s.CoreV1Api(api).list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=ComputeJob"
        )
        events = sorted(
            (api.sanitize_for_serialization(e) for e in listed.items),
            key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "",
        )
    except ApiException as exc:
        if exc.status == 404:
            print(f"suanli explain: no ComputeJob {namespace}/{name} (kubectl get cjob -n {namespace}; `cj` is CronJob to kubectl)", file=err)
        else:
            print(f"suanli explain: the API server refused: HTTP {exc.status} {exc.reason} (the context's user needs "
                  f"get on computejobs and list on events in namespace {namespace})", file=err)
        return 1
    except Exception as exc:
        print(f"suanli explain: cannot reach the cluster of context {where}: {exc} (is it the right --context? "
              f"kubectl config get-contexts)", file=err)
        return 1
    render(job, events, out)
    return 0
