"""Status documents the operator writes, computed from decisions and the cache. Pure.

ComputeJob: Queued | Deferred -> Bound -> Running -> Succeeded | Failed, or Invalid.
ComputeCenter: per-pool accounting, energy of the current budget period, Ready/Degraded.
Only `status` is ever written; the operator never touches `spec`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from suanli.kube import attempts, records, workloads
from suanli.kube import objects as kobj
from suanli.kube import snapshot as snapshot_mod
from suanli.ledger import energy as energy_mod
from suanli.placement import decision as decision_mod
from suanli.placement import report


def rfc3339(epoch: float) -> str:
    return report.rfc3339(epoch)


def condition(
    ctype: str, status: bool, reason: str, message: str, now: float, generation: int | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": ctype,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": rfc3339(now),
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def decided(
    d: decision_mod.Decision, generation: int | None, now: float, nodes: Sequence[str] = (), cluster: str = ""
) -> dict[str, Any]:
    """Status of a job the planner just decided (Bound, Queued or Deferred); `nodes`: the node of each
    replica of a Bound job, by completion index (`status.binding.nodes`; qualified with `cluster`, the
    member center whose cluster they are in, as the cache names them)."""
    wire = report.decision(d)
    if nodes and wire["binding"] is not None:
        wire["binding"]["nodes"] = [kobj.local_name(n) for n in nodes]
    if cluster and wire["binding"] is not None:
        wire["binding"]["cluster"] = cluster
    status: dict[str, Any] = {
        "phase": d.phase,
        "message": d.message,
        "binding": wire["binding"],
        "estimates": wire["estimates"],
        "plannedStart": wire["plannedStart"],
        "candidates": wire["candidates"],
        "rejected": wire["rejected"][:10],
        "observedGeneration": generation,
        "conditions": [],
        "queue": d.job.queue,
    }
    if d.phase == "Bound":
        status["boundTime"] = rfc3339(now)
        status["requeueAt"] = None
        status["workloadRef"] = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "namespace": d.job.namespace,
            "name": workloads.job_name(d.job.name),
            **({"cluster": cluster} if cluster else {}),
        }
        status["conditions"] = [condition("Bound", True, "Placed", d.message, now, generation)]
    return status


def waiting_changed(current: dict[str, Any], new: dict[str, Any]) -> bool:
    """A Queued/Deferred status is rewritten only when what a person reads changed."""
    return any(current.get(k) != new.get(k) for k in ("phase", "message", "plannedStart", "observedGeneration", "queue"))


def invalid(field: str, message: str, generation: int | None, now: float) -> dict[str, Any]:
    text = f"{field}: {message}"
    return {
        "phase": "Invalid",
        "message": f"the job cannot be placed until its spec is fixed: {text}",
        "binding": None,
        "estimates": None,
        "candidates": [],
        "rejected": [],
        "observedGeneration": generation,
        "conditions": [condition("Invalid", True, "InvalidSpec", text, now, generation)],
    }


def unbound(message: str, generation: int | None) -> dict[str, Any]:
    """Back to the queue after a failed write."""
    return {
        "phase": "Queued",
        "message": message,
        "binding": None,
        "workloadRef": None,
        "boundTime": None,
        "observedGeneration": generation,
        "conditions": [],
    }


MAX_ATTEMPTS_LISTED = 100


def attempt(binding: records.Binding, now: float, outcome: str, message: str,
            exit_code: int | None = None) -> dict[str, Any]:
    """One entry of status.attempts: the bound attempt `binding` ended now with `outcome`."""
    out: dict[str, Any] = {"attempt": binding.attempt, "center": binding.center, "pool": binding.pool,
                           "bound": rfc3339(binding.bound_epoch) if binding.bound_epoch is not None else None,
                           "ended": rfc3339(now), "outcome": outcome, "message": message}
    if exit_code is not None:
        out["exitCode"] = exit_code
    return out


def with_attempt(history: list[dict[str, Any]], entry: dict[str, Any] | None) -> list[dict[str, Any]]:
    """status.attempts with `entry` added (none: as it is), the oldest dropped past MAX_ATTEMPTS_LISTED
    (the counters requeues, retries and suspensions keep counting)."""
    out = [*history, *([entry] if entry is not None else [])]
    return out[-MAX_ATTEMPTS_LISTED:]


def settled_energy(binding: records.Binding, runtime_seconds: float, power_watts: float, pue: float) -> tuple[float, float]:
    """(kWh, kg CO2e) of a finished run: runtime x accelerators x board power x PUE; carbon at the
    estimate's intensity (the estimate's kg per kWh)."""
    kwh = max(0.0, runtime_seconds) * binding.replicas * binding.count * power_watts * pue / 3.6e6
    per_kwh = binding.carbon_kg / binding.energy_kwh if binding.energy_kwh > 0 else 0.0
    return kwh, kwh * per_kwh


def finished_window(binding: records.Binding, workload: kobj.WorkloadInfo, now: float) -> tuple[float, float]:
    """(start, end) epoch of a finished workload's run: the Job's own times, else bind time / now."""
    start = workload.start_time or binding.bound_epoch or now
    end = workload.completion_time or now
    return start, max(start, end)


def progress(
    record: records.JobRecord,
    binding: records.Binding,
    workload: kobj.WorkloadInfo | None,
    pods: list[kobj.PodInfo],
    power_watts: float,
    pue: float,
    now: float,
    settled: tuple[float, str, str | None] | None = None,
) -> tuple[dict[str, Any], str, str, bool] | None:
    """The status patch for a bound job whose workload moved on, with the event (reason, message,
    warning). None when nothing changed. A finished job's energy is the estimate from its runtime
    (runtime x accelerators x board power x PUE) unless `settled` = (facility kWh, "measured"|"estimate")
    gives the settlement (with why, when it is the bind-time estimate); carbon is at the estimate's
    intensity."""
    phase = record.phase
    if workload is None or phase in records.DONE_PHASES:
        return None
    name = f"{workload.key[0]}/{workload.key[1]}"
    if workload.finished:
        start, end = finished_window(binding, workload, now)
        kwh, carbon = settled_energy(binding, end - start, power_watts, pue)
        source, why = "estimate", None
        if settled is not None:
            kwh, source, why = settled
            per_kwh = binding.carbon_kg / binding.energy_kwh if binding.energy_kwh > 0 else 0.0
            carbon = kwh * per_kwh
        energy: dict[str, Any] = {"kWh": round(kwh, 6), "carbonKg": round(carbon, 6), "source": source}
        if why:
            energy["reason"] = why
        base: dict[str, Any] = {
            "startTime": rfc3339(start),
            "completionTime": rfc3339(end),
            "energy": energy,
            "observedGeneration": record.generation,
        }
        if workload.complete:
            message = (
                f"all {binding.replicas} replica(s) on {binding.center}/{binding.pool} completed in "
                f"{end - start:.0f}s; {'measured' if source == 'measured' else 'about'} {kwh:.3f} kWh, {carbon:.3f} kg CO2e"
            )
            status: dict[str, Any] = {**base, "phase": "Succeeded", "message": message,
                                      "attempts": with_attempt(record.history, attempt(binding, end, "Succeeded", message))}
            status["conditions"] = [condition("Succeeded", True, "Completed", message, now, record.generation)]
            return status, "Succeeded", message, False
        failures = [p.failure for p in pods if p.failure]
        why = failures[0] if failures else (workload.failed_reason or "the Job failed")
        message = f"workload {name} failed: {why}"
        if failures and workload.failed_reason:
            message += f" (Job: {workload.failed_reason})"
        max_attempts = record.retry_policy[0]
        if failures and max_attempts > 1:
            message += (" (not an exit code spec.retry retries)" if record.retries + 1 < max_attempts
                        else f" (run {record.retries + 1} of {max_attempts}, spec.retry.maxAttempts)")
        exit_code = next((p.exit_code for p in pods if p.failure and p.exit_code is not None), None)
        failed: dict[str, Any] = {**base, "phase": "Failed", "message": message, "attempts": with_attempt(
            record.history, attempt(binding, end, "Failed", message, exit_code))}
        failed["conditions"] = [condition("Failed", True, "WorkloadFailed", message, now, record.generation)]
        return failed, "Failed", message, True
    # Running once the whole gang is up: every replica running (or already done) on a node.
    running = attempts.ready_replicas(pods) >= binding.replicas
    if running and phase != "Running":
        start = workload.start_time or now
        message = f"all {binding.replicas} replica(s) running on {binding.center}/{binding.pool}"
        return (
            {"phase": "Running", "message": message, "startTime": rfc3339(start)},
            "Running",
            message,
            False,
        )
    return None


def center(
    center_name: str,
    generation: int | None,
    usage: list[snapshot_mod.PoolUsage],
    account: energy_mod.CenterEnergy | None,
    problem: str | None,
    current: dict[str, Any],
    now: float,
    member: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """ComputeCenter status; condition transition times are kept when the condition did not change.
    A pool refused because its nodeSelector overlaps an earlier pool's (kube/pool_overlap.py) says
    why in its entry (`refused`) and in the PoolsOverlap condition. `member`: (reason, message) when
    the center's member cluster cannot be used now (suanli/members)."""
    pools = [
        {
            "name": u.pool,
            "capacity": u.capacity,
            "allocated": u.allocated,
            "reserved": u.reserved,
            "free": u.free,
            "readyNodes": u.ready_nodes,
            "expectedNodes": u.expected_nodes,
            **({"refused": u.refused} if u.refused else {}),
        }
        for u in usage
    ]
    refusals = [u.refused for u in usage if u.refused]
    short = [u for u in usage if u.ready_nodes < u.expected_nodes]
    empty = [u for u in usage if u.ready_nodes == 0]
    if problem is not None:
        ready = (False, "InvalidSpec", problem)
    elif member is not None:
        ready = (False, *member)
    elif usage and len(empty) == len(usage) and refusals:
        ready = (False, "PoolsOverlap", "; ".join(refusals))
    elif usage and len(empty) == len(usage):
        ready = (False, "NoNodes", "no Ready, schedulable node matches any pool's nodeSelector; check the node labels")
    else:
        ready = (True, "NodesReady", f"{sum(u.ready_nodes for u in usage)} Ready node(s) across {len(usage)} pool(s)")
    if short:
        detail = "; ".join(
            f"pool {u.pool}: refused, its nodeSelector overlaps an earlier pool's (see PoolsOverlap)"
            if u.refused
            else f"pool {u.pool}: {u.ready_nodes} of {u.expected_nodes} nodes Ready"
            for u in short
        )
        degraded = (True, "FewerNodesThanExpected", detail)
    else:
        degraded = (False, "AllNodesReady", "every pool has its expected nodes Ready")
    if refusals:
        overlap = (True, "SelectorsOverlap", "; ".join(refusals))
    else:
        overlap = (False, "Disjoint", "no pool of this center selects a node that an earlier pool selects")
    old = {c.get("type"): c for c in current.get("conditions") or []}
    conditions = []
    for ctype, (flag, reason, message) in (("Ready", ready), ("Degraded", degraded), ("PoolsOverlap", overlap)):
        cond = condition(ctype, flag, reason, message, now, generation)
        prev = old.get(ctype)
        if prev and prev.get("status") == cond["status"]:
            cond["lastTransitionTime"] = prev.get("lastTransitionTime", cond["lastTransitionTime"])
        conditions.append(cond)
    status: dict[str, Any] = {
        "pools": pools,
        "freeAccelerators": sum(u.free for u in usage),
        "conditions": conditions,
        "observedGeneration": generation,
    }
    if account is not None:
        remaining = account.remaining_kwh
        status["energy"] = {
            "periodStart": rfc3339(account.period_start) if math.isfinite(account.period_start) else None,
            "usedKWh": round(account.used_kwh, 3),
            "reservedKWh": round(account.reserved_kwh, 3),
            "remainingKWh": round(remaining, 3) if math.isfinite(remaining) else None,
        }
    return status


def center_changed(current: dict[str, Any], new: dict[str, Any]) -> bool:
    def strip(doc: dict[str, Any]) -> Any:
        conds = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in doc.get("conditions") or []]
        return {**doc, "conditions": conds}

    return bool(strip(current) != strip(new))
